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


def device(jax_platform: str) -> str:
    """The torch device that runs where JAX runs: ``"cuda"`` when JAX's device is a GPU and
    torch sees one (a ROCm build of torch names its GPUs ``cuda`` too), else ``"cpu"``."""
    if torch is not None and jax_platform in ("gpu", "cuda", "rocm") and torch.cuda.is_available():
        return "cuda"
    return "cpu"


def fused_step(optimizer: str, params: Any, grads: Any) -> Callable[[], None] | None:
    """A zero-argument function doing one fused ``torch.optim`` step on copies of ``params``
    (any JAX pytree of float32 arrays) with ``grads`` as their gradients, or ``None``.

    The tensors live on the device JAX's arrays are on (see `device`); on a GPU the function
    returns when the step has finished, as the JAX candidates do. Its ``relocate`` attribute
    moves the parameters and the optimizer's state to newly allocated memory, values
    unchanged (see `benchmarks.timing.Candidate.relocate`); ``parameters`` lists the
    parameter tensors, in the order of ``params``'s leaves."""
    if torch is None or optimizer not in FUSED:
        return None
    import jax

    leaves = jax.tree.leaves(params)
    where = device(next(iter(leaves[0].devices())).platform if leaves else "cpu")
    cls_name, kwargs = FUSED[optimizer]
    tensors = []
    for p, g in zip(leaves, jax.tree.leaves(grads)):
        t = torch.nn.Parameter(torch.from_numpy(np.array(p, np.float32)).to(where))
        t.grad = torch.from_numpy(np.array(g, np.float32)).to(where)
        tensors.append(t)
    opt = getattr(torch.optim, cls_name)(tensors, fused=True, **kwargs)
    opt.step()  # allocates the state

    def step() -> None:
        opt.step()
        if where == "cuda":
            torch.cuda.synchronize()

    def relocate() -> None:
        # The parameters and the state to newly allocated memory, values unchanged, as the
        # harness does for the JAX candidates before each round (see `benchmarks.timing`).
        for t in tensors:
            t.data = t.data.clone()
            state = opt.state[t]
            for key, value in state.items():
                if torch.is_tensor(value) and value.numel() > 1:
                    state[key] = value.clone()

    step.relocate = relocate
    step.parameters = tensors
    return step
