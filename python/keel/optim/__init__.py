"""keel.optim: AGD, WSAM, Group Adam / Adagrad / FTRL, and AdamW / Adagrad on keel's kernels.

    opt = keel.optim.AGD(model.parameters(), lr=1e-4, betas=(0.9, 0.999), delta=1e-5)
    opt = keel.optim.WSAM(model.parameters(), base_optimizer=torch.optim.SGD, rho=0.05,
                          gamma=0.9, lr=0.1, momentum=0.9)
    opt.step(closure)   # WSAM: the closure does zero_grad + forward + backward, returns loss
    opt = keel.optim.GroupAdam(embedding.parameters(), lr=1e-3, l21=1e-4)

All are ``torch.optim.Optimizer`` subclasses (param groups, state_dict, schedulers). CPU
float32/bfloat16 tensors use keel's C++ kernels; ``impl="torch"`` forces the torch-ops math,
which is what CUDA tensors use. See docs/optim.md.
"""

from keel.optim.optimizers import AGD, AdamW, Adagrad, GroupAdagrad, GroupAdam, GroupFTRL
from keel.optim.wsam import WSAM, disable_running_stats, enable_running_stats

__all__ = ["AGD", "AdamW", "Adagrad", "GroupAdam", "GroupAdagrad", "GroupFTRL", "WSAM",
           "disable_running_stats", "enable_running_stats"]
