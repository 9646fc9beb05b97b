"""The optimizer test harness: a non-separable objective over a mixed-shape pytree, and
runners that apply a transformation for many steps, jitted (one compiled scan) or eagerly.

Every parity test compares two runs of the same harness, one with a gradxform optimizer
and one with its oracle (Optax, or a NumPy loop of the paper's equations).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import gradxform as gx


def mixed_params(dtype: Any = jnp.float32, scale: float = 1.0) -> dict[str, jax.Array]:
    """A matrix, a 4-D kernel, a vector and a scalar (fixed seed); complex if ``dtype`` is."""
    rng = np.random.default_rng(0)
    shapes = {"w": (4, 3), "kernel": (2, 2, 3, 2), "b": (3,), "s": ()}
    out = {}
    for name, shape in shapes.items():
        x = rng.normal(size=shape)
        if np.issubdtype(np.dtype(dtype), np.complexfloating):
            x = x + 1j * rng.normal(size=shape)
        out[name] = jnp.asarray(scale * x, dtype=dtype)
    return out


def _flat(p: Any) -> jax.Array:
    return jnp.concatenate([jnp.ravel(x) for x in jax.tree.leaves(p)])


def coupled_loss(p: Any) -> jax.Array:
    """``0.5 x^T A x + sum(cos x)`` with a dense positive-definite ``A``: every coordinate is
    coupled to every other (non-separable); for complex ``x`` it uses ``|x|^2`` terms."""
    x = _flat(p)
    n = x.shape[0]
    i = jnp.arange(n, dtype=jnp.float32)
    m = jnp.sin(i[:, None] * 0.3 + i[None, :] * 0.7)
    a = m @ m.T / n + jnp.eye(n)
    if jnp.iscomplexobj(x):
        return jnp.real(0.5 * jnp.conj(x) @ (a @ x)) + jnp.sum(jnp.cos(jnp.real(x)))
    return 0.5 * x @ (a @ x) + jnp.sum(jnp.cos(x))


def grad_fn(loss: Callable[[Any], jax.Array]) -> Callable[[Any], Any]:
    """Gradient for descent: for complex parameters, the conjugate (as Optax expects)."""
    g = jax.grad(loss)
    return lambda p: jax.tree.map(jnp.conj, g(p))


def run(
    tx: Any,
    steps: int = 100,
    *,
    jit: bool = True,
    params: Any = None,
    loss: Callable[[Any], jax.Array] = coupled_loss,
    extra: dict[str, Any] | None = None,
) -> tuple[Any, Any]:
    """Applies ``tx`` for ``steps`` steps from ``params``; returns (params, state).

    With ``jit`` the whole run is one ``lax.scan`` in one compiled function; without it,
    every step runs eagerly, op by op.
    """
    params = mixed_params() if params is None else params
    # The gradient is always compiled: "eager" means the optimizer runs op by op.
    grad = jax.jit(grad_fn(loss))
    extra = extra or {}

    def step(carry, _):
        p, s = carry
        u, s = tx.update(grad(p), s, p, **extra)
        return (gx.apply_updates(p, u), s), None

    carry = (params, tx.init(params))
    if jit:
        carry, _ = jax.jit(lambda c: jax.lax.scan(step, c, None, length=steps))(carry)
    else:
        for _ in range(steps):
            carry, _ = step(carry, None)
    return carry


def assert_trees_close(a: Any, b: Any, rtol: float = 1e-5, atol: float = 1e-6, nan_ok: bool = False) -> None:
    """Leafwise ``|a - b| <= atol + rtol |b|``, naming the first leaf that fails.

    NaNs in the same places compare equal, so a reference ``b`` holding a NaN fails unless
    ``nan_ok``: two runs that both diverged would otherwise pass without checking a number.
    """
    assert jax.tree.structure(a) == jax.tree.structure(b), (jax.tree.structure(a), jax.tree.structure(b))
    for (path, x), y in zip(jax.tree_util.tree_flatten_with_path(a)[0], jax.tree.leaves(b)):
        if not nan_ok and np.issubdtype(np.asarray(y).dtype, np.inexact):
            assert not np.isnan(np.asarray(y)).any(), f"the reference holds NaN at {jax.tree_util.keystr(path)}"
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol, err_msg=jax.tree_util.keystr(path))
