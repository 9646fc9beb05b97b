"""Clipping of updates by value and by global norm, and normalization by the global norm."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gradxform._factory import transformation
from gradxform.core import NON_NEGATIVE, POSITIVE, REAL, EmptyState, GradientTransformation, Updates, abs_sq
from gradxform.primitives.elementwise import elementwise


def global_norm(updates: Updates) -> jax.Array:
    """The L2 norm of all leaves of ``updates`` together (real even for complex leaves).

    Args:
      updates: a pytree of arrays (Optax's argument name).

    Returns:
      A scalar.
    """
    return jnp.sqrt(sum(jnp.sum(abs_sq(x)) for x in jax.tree.leaves(updates)))


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


@transformation({"scale_factor": REAL, "eps": NON_NEGATIVE})
def normalize_by_update_norm(scale_factor: float = 1.0, eps: float = 1e-6) -> GradientTransformation:
    """Divides all updates by their global L2 norm, then multiplies by ``scale_factor``.

    As Optax's ``normalize_by_update_norm``: the output is
    ``g / ((||g|| + eps) / scale_factor)``, a step of length about ``|scale_factor|`` in the
    direction of the updates (normalized gradient descent with ``scale_factor = -lr``).
    Unlike `clip_by_global_norm` it also lengthens small updates.

    Args:
      scale_factor: the length of the output (negative for descent); a number or a schedule.
      eps: added to the norm before dividing, >= 0, so that zero updates stay zero.

    Returns:
      A stateless transformation (the two numbers are kept as data in the state when it is
      called directly). Updates keep their dtype.

    References:
      Hazan, Levy & Shalev-Shwartz, "Beyond Convexity: Stochastic Quasi-Convex
      Optimization", NeurIPS 2015 (normalized gradient descent). https://arxiv.org/abs/1507.02030

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.normalize_by_update_norm(scale_factor=-1.0, eps=0.0)
      >>> tx.update(jnp.array([3.0, 4.0]), tx.init(jnp.zeros(2)))[0].tolist()
      [-0.6000000238418579, -0.800000011920929]
    """

    def update(updates, state, params=None, **extra):
        divisor = (global_norm(updates) + jnp.asarray(eps)) / jnp.asarray(scale_factor)
        return jax.tree.map(lambda g: (g / divisor).astype(g.dtype), updates), state

    return GradientTransformation(lambda params: EmptyState(), update)


@transformation()
def normalize() -> GradientTransformation:
    """Divides all updates by their global L2 norm, so that together they have norm 1.

    Optax's ``optax.contrib.normalize``, which sharpness-aware minimization uses for its
    adversarial ascent step. Unlike Optax's, all-zero updates
    stay zero instead of becoming NaN. `normalize_by_update_norm` adds a scale and an epsilon.

    Returns:
      A stateless transformation. Updates keep their dtype.

    References:
      Foret, Kleiner, Mobahi & Neyshabur, "Sharpness-Aware Minimization for Efficiently
      Improving Generalization", ICLR 2021. https://arxiv.org/abs/2010.01412

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.normalize()
      >>> tx.update({"a": jnp.array([3.0]), "b": jnp.array([4.0])}, tx.init(None))[0]["b"].tolist()
      [0.800000011920929]
    """

    def update(updates, state, params=None, **extra):
        norm = global_norm(updates)
        # A zero norm has no direction to keep: zeros stay zeros rather than 0 / 0 = NaN.
        divisor = jnp.where(norm == 0, jnp.ones_like(norm), norm)
        return jax.tree.map(lambda g: (g / divisor).astype(g.dtype), updates), state

    return GradientTransformation(lambda params: EmptyState(), update)
