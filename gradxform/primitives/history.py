"""Primitives that look one step back: the previous input of the update stream.

With `previous`, a difference of consecutive gradients is a composition
(``branch(identity(), previous(), "subtract")``), which is what optimistic gradient
descent is made of; `ema_difference` averages such differences in one array (Adan's ``v``).
The mathematics lives on those optimizers.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradxform._factory import transformation
from gradxform.core import UNIT, GradientTransformation, Updates, check_same_tree, tree_map_unzip, tree_zeros_like
from gradxform.primitives.moments import _coef


class PreviousState(NamedTuple):
    """State of `previous`.

    Attributes:
      started: bool scalar, whether an input has been seen.
      previous: the last input, one array per parameter (zeros before the first step).
    """

    started: jax.Array
    previous: Updates


@transformation()
def previous(accumulator_dtype: Any = None) -> GradientTransformation:
    """Outputs the input of the previous step (at the first step: the current input).

    Starting from the current input makes a difference ``g_t - g_{t-1}`` zero at the first
    step, as Optax's optimistic gradient and Adan have it.

    Args:
      accumulator_dtype: dtype of the stored input (default: the parameter's).

    Returns:
      A transformation with `PreviousState`.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.previous()
      >>> out, s = tx.update(jnp.array([1.0]), tx.init(jnp.zeros(1)))
      >>> out.tolist(), tx.update(jnp.array([5.0]), s)[0].tolist()
      ([1.0], [1.0])
    """

    def init(params):
        return PreviousState(jnp.zeros([], jnp.bool_), tree_zeros_like(params, accumulator_dtype))

    def update(updates, state, params=None, **extra):
        check_same_tree(updates, state.previous, "updates", "previous's state")
        out = jax.tree.map(
            lambda g, h: jnp.where(state.started, h.astype(g.dtype), g), updates, state.previous
        )
        stored = jax.tree.map(lambda g, h: g.astype(h.dtype), updates, state.previous)
        return out, PreviousState(jnp.ones([], jnp.bool_), stored)

    return GradientTransformation(init, update)


class EmaDifferenceState(NamedTuple):
    """State of `ema_difference`.

    Attributes:
      started: bool scalar, whether an input has been seen.
      carry: ``decay v_t - (1 - decay) g_t``, one array per parameter: all that the next
        step needs of both the average ``v_t`` and the input ``g_t``.
    """

    started: jax.Array
    carry: Updates


@transformation({"decay": UNIT})
def ema_difference(decay: float, accumulator_dtype: Any = None) -> GradientTransformation:
    """Moving average of the change of the input: ``v_t = decay v_{t-1} + (1 - decay)(g_t - g_{t-1})``.

    ``v_1 = 0``. The same as ``chain(branch(identity(), previous(), "subtract"), ema(decay,
    debias=False))`` but with one array per parameter instead of two: the stage keeps
    ``decay v_t - (1 - decay) g_t``, from which ``v_{t+1}`` follows given ``g_{t+1}``.

    Args:
      decay: in [0, 1).
      accumulator_dtype: dtype of the stored array (default: the parameter's).

    Returns:
      A transformation with `EmaDifferenceState`; outputs ``v_t`` (not debiased).

    References:
      Xie, Zhou, Li, Lin & Yan, "Adan: Adaptive Nesterov Momentum Algorithm for Faster
      Optimizing Deep Models", 2022 (see `adan`). https://arxiv.org/abs/2208.06677

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.ema_difference(0.5)
      >>> _, s = tx.update(jnp.array([1.0]), tx.init(jnp.zeros(1)))
      >>> tx.update(jnp.array([5.0]), s)[0].tolist()  # 0.5 * 0 + 0.5 * (5 - 1)
      [2.0]
    """

    def init(params):
        return EmaDifferenceState(jnp.zeros([], jnp.bool_), tree_zeros_like(params, accumulator_dtype))

    def update(updates, state, params=None, **extra):
        check_same_tree(updates, state.carry, "updates", "ema_difference's state")

        def step(g, c):
            d = _coef(decay, c)
            v = jnp.where(state.started, c + (1 - d) * g, jnp.zeros_like(g))
            return v, (d * v - (1 - d) * g).astype(c.dtype)

        out, carry = tree_map_unzip(step, updates, state.carry)
        return out, EmaDifferenceState(jnp.ones([], jnp.bool_), carry)

    return GradientTransformation(init, update)
