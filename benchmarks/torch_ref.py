"""PyTorch's fused optimizers as a reference, when torch is installed (the ``bench`` extra).

Every function returns ``None`` when torch is absent or has no fused kernel for the case,
and the harness leaves the column empty.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

try:
    import torch
except ImportError:  # the harness runs without torch, minus its columns
    torch = None

# name -> (optimizer class name, keyword arguments); all use fused=True.
FUSED = {
    "adam": ("Adam", {"lr": 1e-3}),
    "adamw": ("AdamW", {"lr": 1e-3, "weight_decay": 1e-4}),
    "sgd+momentum": ("SGD", {"lr": 1e-3, "momentum": 0.9}),
}


def available() -> bool:
    """Whether torch is importable."""
    return torch is not None


def version() -> str | None:
    """torch's version, or None."""
    return None if torch is None else torch.__version__


def fused_step(optimizer: str, params: Any, grads: Any) -> Callable[[], None] | None:
    """A zero-argument function doing one fused ``torch.optim`` step on copies of ``params``
    (any JAX pytree of float32 arrays) with ``grads`` as their gradients, or ``None``."""
    if torch is None or optimizer not in FUSED:
        return None
    import jax

    cls_name, kwargs = FUSED[optimizer]
    tensors = []
    for p, g in zip(jax.tree.leaves(params), jax.tree.leaves(grads)):
        t = torch.nn.Parameter(torch.from_numpy(np.array(p, np.float32)))
        t.grad = torch.from_numpy(np.array(g, np.float32))
        tensors.append(t)
    opt = getattr(torch.optim, cls_name)(tensors, fused=True, **kwargs)
    opt.step()  # allocates the state
    return opt.step
