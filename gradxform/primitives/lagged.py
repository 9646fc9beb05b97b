"""Primitives that depend on the step: normalisation by the previous second moment, and
clipping by a bound that is a function of the step count (both used by ADOPT).

The mathematics lives on `gradxform.adopt`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradxform._factory import transformation
from gradxform.core import (
    NON_NEGATIVE,
    UNIT,
    GradientTransformation,
    Updates,
    abs_sq,
    check_same_tree,
    new_count,
    safe_increment,
    tree_zeros_like,
)


class LaggedRmsState(NamedTuple):
    """State of `scale_by_lagged_rms`.

    Attributes:
      count: int32 scalar, updates seen so far (saturating).
      nu: the running second moment of the inputs, one array per parameter.
    """

    count: jax.Array
    nu: Updates


@transformation({"decay": UNIT, "eps": NON_NEGATIVE})
def scale_by_lagged_rms(decay: float = 0.9999, eps: float = 1e-6, nu_dtype: Any = None) -> GradientTransformation:
    """Divides by the root of the second moment *before* this step: ``g_t / max(sqrt(v_{t-1}), eps)``.

    Then ``v_t = decay v_{t-1} + (1 - decay) |g_t|^2``, except ``v_1 = |g_1|^2``; the first
    update only initialises ``v`` and outputs zeros. Leaving the current gradient out of
    its own normaliser is what makes ADOPT converge for any ``decay`` (see `adopt`).

    Args:
      decay: decay of the second moment, in [0, 1).
      eps: lower bound of the root, >= 0.
      nu_dtype: dtype of the second moment (default: the parameter's).

    Returns:
      A transformation with `LaggedRmsState`.

    References:
      Taniguchi et al., "ADOPT: Modified Adam Can Converge with Any beta_2 with the Optimal
      Rate", NeurIPS 2024. https://arxiv.org/abs/2411.02853

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.scale_by_lagged_rms()
      >>> u, s = tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))
      >>> u.tolist(), tx.update(jnp.array([3.0]), s)[0].tolist()
      ([0.0], [1.5])
    """

    def init(params):
        return LaggedRmsState(new_count(), tree_zeros_like(params, nu_dtype))

    def update(updates, state, params=None, **extra):
        check_same_tree(updates, state.nu, "updates", "scale_by_lagged_rms's state")
        first = state.count == 0
        d = jnp.where(first, 0.0, jnp.asarray(decay, jnp.float32))

        def leaf(g, v):
            out = g / jnp.maximum(jnp.sqrt(v), jnp.asarray(eps).astype(v.dtype))
            new_v = ((1 - d.astype(v.dtype)) * abs_sq(g) + d.astype(v.dtype) * v).astype(v.dtype)
            return jnp.where(first, jnp.zeros_like(out), out), new_v

        pairs = jax.tree.map(leaf, updates, state.nu)
        out, nu = (jax.tree.map(lambda _, p: p[i], updates, pairs) for i in range(2))
        return out, LaggedRmsState(safe_increment(state.count), nu)

    return GradientTransformation(init, update)


class StepCountState(NamedTuple):
    """A step counter (int32 scalar, saturating), for stages whose output depends on it."""

    count: jax.Array


@transformation()
def clip_by_step(clip_value_fn: Callable[[jax.Array], jax.Array]) -> GradientTransformation:
    """Clips every coordinate to ``[-c_t, c_t]`` with ``c_t = clip_value_fn(t)``, t from 0.

    Args:
      clip_value_fn: maps the int32 step count (0 at the first update) to the bound.

    Returns:
      A transformation with `StepCountState`.

    Raises:
      TypeError: if ``clip_value_fn`` is not callable.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.clip_by_step(lambda t: t + 1.0)
      >>> u, s = tx.update(jnp.array([-3.0, 0.5]), tx.init(jnp.zeros(2)))
      >>> u.tolist(), tx.update(jnp.array([-3.0, 0.5]), s)[0].tolist()
      ([-1.0, 0.5], [-2.0, 0.5])
    """
    if not callable(clip_value_fn):
        raise TypeError(f"clip_by_step: clip_value_fn must be callable, got {clip_value_fn!r}.")

    def update(updates, state, params=None, **extra):
        bound = clip_value_fn(state.count)
        out = jax.tree.map(lambda g: jnp.clip(g, -bound, bound).astype(g.dtype), updates)
        return out, StepCountState(safe_increment(state.count))

    return GradientTransformation(lambda params: StepCountState(new_count()), update)
