"""One-pass optimizer steps on a CPU, where XLA:CPU compiles one loop per updated array.

`update_and_apply` runs an optimizer step through a hand-written kernel (Adam, AdamW, SGD
with momentum) or through generated per-leaf programs (any other elementwise step), and
`kernel_status` says whether the kernels could be built on this machine.
"""

from gradxform.kernels._build import kernel_status as kernel_status
from gradxform.kernels._step import update_and_apply as update_and_apply
