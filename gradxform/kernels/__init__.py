"""Hand-written CPU kernels for steps that XLA:CPU cannot fuse into one pass.

`update_and_apply` runs an optimizer step, through a kernel where one exists (Adam and
AdamW, float32); `kernel_status` says whether the kernels could be built on this machine.
"""

from gradxform.kernels._build import kernel_status as kernel_status
from gradxform.kernels._step import update_and_apply as update_and_apply
