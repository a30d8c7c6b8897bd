"""A tiny PyTorch training loop for `keel mem record` tests: an MLP whose batch size changes
every step, so the recorded trace has large allocations of several sizes and their frees."""

import sys

import torch

torch.manual_seed(0)
torch.set_num_threads(1)
model = torch.nn.Sequential(torch.nn.Linear(512, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 512))
opt = torch.optim.SGD(model.parameters(), lr=0.01)
for batch in (512, 1024, 768, 1536):
    x = torch.randn(batch, 512)
    loss = model(x).square().mean()
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
print("trained", file=sys.stderr)
sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
