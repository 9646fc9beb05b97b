"""The harness's objective in plain NumPy (float64), for the paper-equation oracles.

``harness.coupled_loss`` flattens the parameter tree (leaves in JAX's order) into one vector
``x`` and evaluates ``0.5 x^T A x + sum(cos x)``; its gradient is ``A x - sin(x)``. The
oracles run on that flat vector and compare with the flattened result of the gradxform run.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from harness import mixed_params


def flat(tree: Any) -> np.ndarray:
    """The leaves of ``tree`` in JAX's order, raveled and concatenated, as float64."""
    return np.concatenate([np.asarray(x, np.float64).ravel() for x in jax.tree.leaves(tree)])


def layer_slices(tree: Any = None) -> list[slice]:
    """The slice of the flat vector that each leaf (layer) occupies."""
    out, start = [], 0
    for leaf in jax.tree.leaves(mixed_params() if tree is None else tree):
        out.append(slice(start, start + int(np.size(leaf))))
        start += int(np.size(leaf))
    return out


def coupling_matrix(n: int) -> np.ndarray:
    """``A = M M^T / n + I`` with ``M[i, j] = sin(0.3 i + 0.7 j)`` (as in the harness)."""
    i = np.arange(n, dtype=np.float64)
    m = np.sin(i[:, None] * 0.3 + i[None, :] * 0.7)
    return m @ m.T / n + np.eye(n)


def coupled_grad(x: np.ndarray, shift: np.ndarray | None = None) -> np.ndarray:
    """Gradient of ``0.5 y^T A y + sum(cos y)`` at ``y = x - shift``."""
    y = x if shift is None else x - shift
    return coupling_matrix(x.size) @ y - np.sin(y)
