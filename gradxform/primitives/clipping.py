"""Clipping of updates by value and by global norm."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gradxform._factory import transformation
from gradxform.core import NON_NEGATIVE, POSITIVE, EmptyState, GradientTransformation, Updates, abs_sq
from gradxform.primitives.elementwise import elementwise


def global_norm(tree: Updates) -> jax.Array:
    """The L2 norm of all leaves of ``tree`` together (real even for complex leaves).

    Args:
      tree: a pytree of arrays.

    Returns:
      A scalar.
    """
    return jnp.sqrt(sum(jnp.sum(abs_sq(x)) for x in jax.tree.leaves(tree)))


@transformation({"max_delta": NON_NEGATIVE})
def clip(max_delta: float) -> GradientTransformation:
    """Clips every update coordinate to ``[-max_delta, max_delta]``.

    Args:
      max_delta: the bound, >= 0.

    Returns:
      A stateless transformation.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.clip(1.0)
      >>> tx.update(jnp.array([-3.0, 0.5]), tx.init(jnp.zeros(2)))[0].tolist()
      [-1.0, 0.5]
    """
    return elementwise(lambda g: jnp.clip(g, -jnp.asarray(max_delta, g.dtype), jnp.asarray(max_delta, g.dtype)))


@transformation({"max_norm": POSITIVE})
def clip_by_global_norm(max_norm: float) -> GradientTransformation:
    """Rescales all updates together so that their global L2 norm is at most ``max_norm``.

    Args:
      max_norm: the largest allowed global norm, > 0.

    Returns:
      A stateless transformation.

    References:
      Pascanu, Mikolov & Bengio, "On the difficulty of training recurrent neural networks",
      ICML 2013. https://arxiv.org/abs/1211.5063

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.clip_by_global_norm(1.0)
      >>> tx.update(jnp.array([3.0, 4.0]), tx.init(jnp.zeros(2)))[0].tolist()
      [0.6000000238418579, 0.800000011920929]
    """

    def update(updates, state, params=None, **extra):
        norm = global_norm(updates)
        inside = norm < max_norm
        out = jax.tree.map(
            lambda g: jnp.where(inside, g, (g / norm.astype(g.dtype)) * jnp.asarray(max_norm).astype(g.dtype)),
            updates,
        )
        return out, state

    return GradientTransformation(lambda params: EmptyState(), update)
