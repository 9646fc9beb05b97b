"""Numerics that stay finite and differentiable: norms with a floor, saturating counters."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gradxform.core import abs_sq, safe_increment

# Optax's older name; the counter's dtype is whatever the caller gives, not only int32.
safe_int32_increment = safe_increment


def safe_norm(
    x: jax.typing.ArrayLike,
    min_norm: jax.typing.ArrayLike,
    ord: int | float | str | None = None,  # noqa: A002 (numpy's and Optax's name)
    axis: None | tuple[int, ...] | int = None,
    keepdims: bool = False,
) -> jax.Array:
    """``max(norm(x), min_norm)`` whose gradient is 0, not NaN, where the floor applies.

    ``jnp.maximum(jnp.linalg.norm(x), min_norm)`` differentiates the norm even where the
    floor wins, and the norm's derivative at ``x = 0`` is NaN. Here ``x`` is replaced by
    ones wherever the floor applies, so that branch is finite and then discarded.

    Args:
      x: an array.
      min_norm: the floor of the result.
      ord: the order of the norm, as for ``jnp.linalg.norm`` (None, non-zero int, inf,
        -inf, ``'fro'``, ``'nuc'``).
      axis: None (the whole vector or matrix), an axis, or a pair of axes holding matrices.
      keepdims: keep the normed axes as axes of size one.

    Returns:
      The floored norm, shaped as ``jnp.linalg.norm``'s.

    Example:
      >>> import gradxform as gx, jax, jax.numpy as jnp
      >>> jax.grad(lambda v: gx.safe_norm(v, 1e-6))(jnp.zeros(2)).tolist()
      [0.0, 0.0]
    """
    norm = jnp.linalg.norm(x, ord=ord, axis=axis, keepdims=True)
    floored = norm <= min_norm
    safe_x = jnp.where(floored, jnp.ones_like(x), x)
    if not keepdims:
        floored = jnp.squeeze(floored, axis=axis)
    return jnp.where(floored, min_norm, jnp.linalg.norm(safe_x, ord=ord, axis=axis, keepdims=keepdims))


def safe_root_mean_squares(x: jax.typing.ArrayLike, min_rms: jax.typing.ArrayLike) -> jax.Array:
    """``max(sqrt(mean(|x|**2)), min_rms)`` whose gradient is 0, not NaN, at the floor.

    Args:
      x: an array (real or complex).
      min_rms: the floor of the result.

    Returns:
      A scalar.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> round(float(gx.safe_root_mean_squares(jnp.array([3.0, 4.0]), 1.0)), 4)
      3.5355
    """
    rms = jnp.sqrt(jnp.mean(abs_sq(x)))
    floored = rms <= min_rms
    safe_x = jnp.where(floored, jnp.ones_like(x), x)
    return jnp.where(floored, min_rms, jnp.sqrt(jnp.mean(abs_sq(safe_x))))
