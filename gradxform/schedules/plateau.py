"""Reduce on plateau: scale updates down when a monitored value stops improving.

A transformation, not a schedule: its scale depends on the values it is given
(``update(..., value=loss)``), which reach it through every combinator. Its decisions follow
Keras' ``ReduceLROnPlateau`` step for step; the current scale is kept in its state, where
`plateau_scale` reads it for logging.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradxform._factory import transformation
from gradxform.core import (
    check_scalar_value,
    find_states,
    HYPERPARAM_DTYPE,
    NON_NEGATIVE,
    UNIT_CLOSED,
    GradientTransformation,
    Interval,
    check_choice,
    check_positive_int,
    new_count,
    safe_increment,
)

MISSING_VALUE = (
    "reduce_on_plateau needs the monitored value at every update: call "
    "`update(grads, state, params, value=loss)` (the keyword flows through gx.chain and every "
    "other gradxform combinator; optax.chain passes keywords only to Optax's own "
    "GradientTransformationExtraArgs, so chain with gx.chain, which also takes Optax's "
    "transformations). For a metric computed every few steps, give the latest one each step "
    "and raise accumulation_size, or update it only when the metric is computed."
)


class ReduceLROnPlateauState(NamedTuple):
    """State of `reduce_on_plateau` (Optax's field names).

    Attributes:
      scale: float32 scalar, the factor applied to the updates (1 at the start).
      best_value: float32 scalar, the best average seen (``inf`` for ``"min"`` at the
        start, ``-inf`` for ``"max"``).
      plateau_count: int32 scalar, decisions since the last improvement (Keras' ``wait``).
      cooldown_count: int32 scalar, decisions of cooldown left.
      count: int32 scalar, values accumulated towards the next decision.
      avg_value: float32 scalar, the running mean of those values.
    """

    scale: jax.Array
    best_value: jax.Array
    plateau_count: jax.Array
    cooldown_count: jax.Array
    count: jax.Array
    avg_value: jax.Array


def _f32(x: Any) -> jax.Array:
    return jnp.asarray(x, HYPERPARAM_DTYPE)


@transformation(
    {
        "factor": Interval(0.0, 1.0, low_closed=False, high_closed=False),
        "rtol": UNIT_CLOSED,
        "atol": NON_NEGATIVE,
        "min_scale": UNIT_CLOSED,
    }
)
def reduce_on_plateau(
    factor: float = 0.1,
    patience: int = 10,
    rtol: float = 1e-4,
    atol: float = 0.0,
    cooldown: int = 0,
    accumulation_size: int = 1,
    min_scale: float = 0.0,
    mode: str = "min",
) -> GradientTransformation:
    """Multiplies updates by a scale that drops by ``factor`` when a value stops improving.

    Every ``accumulation_size`` updates the mean of the values given as ``value=`` is one
    *decision* (Keras' epoch end). With ``v`` that mean and ``best`` the best mean so far,
    ``v`` improves on ``best`` when ``v < best - (rtol * |best| + atol)`` in mode
    ``"min"`` (``v > best + (rtol * |best| + atol)`` in mode ``"max"``); the tolerance
    uses ``|best|``, so negative values (log-likelihoods) are handled correctly. Then, as
    Keras' ``ReduceLROnPlateau`` does at each decision:

    1. if in cooldown, the cooldown counter goes down by one and the wait is reset;
    2. an improvement makes ``v`` the best and resets the wait;
    3. otherwise, if no longer in cooldown, the wait grows by one and, once it reaches
       ``patience``, the scale (if above ``min_scale``) becomes
       ``max(scale * factor, min_scale)``, the cooldown counter is set to ``cooldown`` and
       the wait is reset.

    A cooldown of ``c`` therefore ignores the ``c - 1`` decisions after a reduction (Keras'
    count; PyTorch and Optax ignore ``c``). With ``mode="min"``, non-negative values and
    ``cooldown=0`` the scales equal ``optax.contrib.reduce_on_plateau``'s.

    Args:
      factor: the multiplier of the scale at each reduction, in (0, 1).
      patience: decisions without improvement before a reduction, an integer >= 0.
      rtol: relative improvement required (a fraction of ``|best|``), in [0, 1]; Keras'
        ``min_delta`` is ``atol``.
      atol: absolute improvement required, >= 0.
      cooldown: decisions after a reduction before the wait counts again (see above).
      accumulation_size: updates whose values are averaged into one decision, >= 1.
      min_scale: the scale never goes below this, in [0, 1] (Keras' ``min_lr`` divided by
        the base learning rate).
      mode: ``"min"`` (a loss) or ``"max"`` (an accuracy).

    Returns:
      A transformation with a `ReduceLROnPlateauState`; its ``update`` requires
      ``value=`` (a scalar). `plateau_scale` reads the current scale from any state.

    Raises:
      ValueError: for an argument out of range, and at ``update`` if ``value`` is missing
        or not a scalar.
      TypeError: at ``update``, if ``value`` is not a real number (a string ``"1.0"``).

    References:
      Keras, ``keras.callbacks.ReduceLROnPlateau``.
      https://keras.io/api/callbacks/reduce_lr_on_plateau/

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.chain(gx.sgd(1.0), gx.reduce_on_plateau(factor=0.5, patience=1))
      >>> state = tx.init(jnp.zeros(1))
      >>> for loss in [3.0, 2.0, 2.0]:
      ...     updates, state = tx.update(jnp.ones(1), state, value=loss)
      >>> float(gx.plateau_scale(state)), updates.tolist()
      (0.5, [-0.5])
    """
    check_positive_int("reduce_on_plateau", "patience", patience, 0)
    check_positive_int("reduce_on_plateau", "cooldown", cooldown, 0)
    check_positive_int("reduce_on_plateau", "accumulation_size", accumulation_size, 1)
    check_choice("reduce_on_plateau", "mode", mode, ("min", "max"))
    sign = 1.0 if mode == "min" else -1.0

    def init(params):
        del params
        zero = new_count()
        return ReduceLROnPlateauState(
            scale=_f32(1.0), best_value=_f32(sign * jnp.inf), plateau_count=zero,
            cooldown_count=zero, count=zero, avg_value=_f32(0.0),
        )

    def decide(state: ReduceLROnPlateauState, value: jax.Array) -> ReduceLROnPlateauState:
        in_cooldown = state.cooldown_count > 0
        cooldown_left = jnp.where(in_cooldown, state.cooldown_count - 1, state.cooldown_count)
        wait = jnp.where(in_cooldown, 0, state.plateau_count)
        best = state.best_value
        margin = jnp.where(jnp.isfinite(best), rtol * jnp.abs(best) + atol, 0.0)
        improved = sign * value < sign * best - margin
        still_cooling = cooldown_left > 0
        wait = jnp.where(improved, 0, jnp.where(still_cooling, wait, safe_increment(wait)))
        reduce = (~improved) & (~still_cooling) & (wait >= patience) & (state.scale > min_scale)
        return ReduceLROnPlateauState(
            scale=jnp.where(reduce, jnp.maximum(state.scale * factor, min_scale), state.scale).astype(HYPERPARAM_DTYPE),
            best_value=jnp.where(improved, value, best).astype(HYPERPARAM_DTYPE),
            plateau_count=jnp.where(reduce, 0, wait).astype(state.plateau_count.dtype),
            cooldown_count=jnp.where(reduce, cooldown, cooldown_left).astype(state.cooldown_count.dtype),
            count=jnp.zeros_like(state.count),
            avg_value=jnp.zeros_like(state.avg_value),
        )

    def update(updates, state, params=None, *, value=None, **extra):
        if value is None:
            raise ValueError(MISSING_VALUE)
        check_scalar_value("reduce_on_plateau", "value", value, "the monitored value, such as the loss")
        count = safe_increment(state.count)
        avg = (state.count * state.avg_value + _f32(value)) / count
        pending = state._replace(count=count, avg_value=avg.astype(HYPERPARAM_DTYPE))
        decided = decide(pending, pending.avg_value)
        new_state = jax.tree.map(lambda d, p: jnp.where(count >= accumulation_size, d, p), decided, pending)
        scaled = jax.tree.map(lambda g: g * new_state.scale.astype(jnp.real(g).dtype), updates)
        return scaled, new_state

    return GradientTransformation(init, update)


def plateau_scale(state: Any) -> jax.Array:
    """The current scale of the `reduce_on_plateau` stage inside an optimizer's state.

    Args:
      state: any optimizer state (a chain's, a wrapper's, ``TrainState.opt_state``); it
        works inside ``jit`` too.

    Returns:
      The float32 scale that multiplied the latest update (1 before any reduction).

    Raises:
      ValueError: if the state holds no `reduce_on_plateau` stage, or several (then read
        each one's ``scale`` field directly).

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.chain(gx.sgd(0.1), gx.reduce_on_plateau())
      >>> float(gx.plateau_scale(tx.init(jnp.zeros(2))))
      1.0
    """
    found = find_states(state, ReduceLROnPlateauState)
    if len(found) != 1:
        raise ValueError(
            f"plateau_scale: the state holds {len(found)} reduce_on_plateau stages; expected exactly one. "
            "Read each stage's ReduceLROnPlateauState.scale directly."
        )
    return found[0].scale


__all__ = ["ReduceLROnPlateauState", "plateau_scale", "reduce_on_plateau"]
