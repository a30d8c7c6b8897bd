"""keel: elastic training, optimizers, LLM inference, embedding store and GPU memory tools.

The C++ core is ``keel._C``. Tensors cross between PyTorch and keel through DLPack without
copies (see docs/python-tensors.md).
"""

from keel import _C
from keel._progress import report_step

__version__ = _C.__version__
build_info = dict(_C.build_info)

__all__ = ["__version__", "build_info", "report_step"]
