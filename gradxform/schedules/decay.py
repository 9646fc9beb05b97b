"""Decay schedules given by a formula of the step: constant, polynomial and linear,
cosine, and inverse-time.

Each public function validates its arguments and returns a frozen-dataclass `Schedule`
whose numeric fields (``dynamic``) the optimizer keeps in its state, so they can be changed
between steps without recompiling. All are pure functions of the step, jit-compatible.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from gradxform.core import NON_NEGATIVE, REAL
from gradxform.schedules._util import FLOAT, BaseSchedule, check_int, check_number, step

# ----------------------------------------------------------------------------- formulas


def polynomial_value(t: jax.Array, init_value, end_value, power, transition_steps: int, transition_begin: int):
    """``(init - end) * (1 - clip(t - begin, 0, T) / T)**power + end`` (constant if T = 0)."""
    if transition_steps <= 0:
        return jnp.broadcast_to(jnp.asarray(init_value, FLOAT), jnp.shape(t))
    done = jnp.clip(t - transition_begin, 0, transition_steps)
    frac = 1 - done / transition_steps
    return (init_value - end_value) * frac**power + end_value


def cosine_value(t: jax.Array, init_value, decay_steps: int, alpha, exponent):
    """``init * ((1 - alpha) * (0.5 * (1 + cos(pi * min(t, T) / T)))**exponent + alpha)``."""
    t = jnp.minimum(t, decay_steps)
    half = 0.5 * (1 + jnp.cos(jnp.pi * t / decay_steps))
    return init_value * ((1 - alpha) * half**exponent + alpha)


# ----------------------------------------------------------------------------- classes


@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class ConstantSchedule(BaseSchedule):
    """See `constant_schedule`."""

    value: float
    dynamic = ("value",)
    factory = "constant_schedule"

    def __call__(self, count: Any) -> jax.Array:
        return jnp.broadcast_to(jnp.asarray(self.value, FLOAT), jnp.shape(count))


@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class PolynomialSchedule(BaseSchedule):
    """See `polynomial_schedule`."""

    init_value: float
    end_value: float
    power: float
    transition_steps: int
    transition_begin: int = 0
    dynamic = ("init_value", "end_value", "power")
    factory = "polynomial_schedule"

    def __call__(self, count: Any) -> jax.Array:
        return polynomial_value(
            step(count), self.init_value, self.end_value, self.power, self.transition_steps, self.transition_begin
        )


@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class LinearSchedule(BaseSchedule):
    """See `linear_schedule`."""

    init_value: float
    end_value: float
    transition_steps: int
    transition_begin: int = 0
    dynamic = ("init_value", "end_value")
    factory = "linear_schedule"

    def __call__(self, count: Any) -> jax.Array:
        return polynomial_value(step(count), self.init_value, self.end_value, 1.0, self.transition_steps, self.transition_begin)


@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class CosineDecaySchedule(BaseSchedule):
    """See `cosine_decay_schedule`."""

    init_value: float
    decay_steps: int
    alpha: float = 0.0
    exponent: float = 1.0
    dynamic = ("init_value", "alpha", "exponent")
    factory = "cosine_decay_schedule"

    def __call__(self, count: Any) -> jax.Array:
        return cosine_value(step(count), self.init_value, self.decay_steps, self.alpha, self.exponent)


@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class InverseTimeDecay(BaseSchedule):
    """See `inverse_time_decay`."""

    init_value: float
    decay_rate: float
    transition_steps: int = 1
    staircase: bool = False
    dynamic = ("init_value", "decay_rate")
    factory = "inverse_time_decay"

    def __call__(self, count: Any) -> jax.Array:
        p = jnp.maximum(step(count), 0) / self.transition_steps
        if self.staircase:
            p = jnp.floor(p)
        return self.init_value / (1 + self.decay_rate * p)


# ----------------------------------------------------------------------------- public


def constant_schedule(value: float) -> ConstantSchedule:
    """A schedule that always returns ``value``.

    Args:
      value: the constant, a finite number.

    Returns:
      A `ConstantSchedule` (``value`` is kept in the optimizer state).

    Raises:
      ValueError: if ``value`` is not a finite number.

    Example:
      >>> import gradxform as gx
      >>> float(gx.schedules.constant_schedule(0.5)(100))
      0.5
    """
    check_number("constant_schedule", "value", value, REAL)
    return ConstantSchedule(value)


def polynomial_schedule(
    init_value: float, end_value: float, power: float, transition_steps: int, transition_begin: int = 0
) -> PolynomialSchedule:
    """Polynomial transition from ``init_value`` to ``end_value``.

    ``(init - end) * (1 - (t - begin) / T)**power + end`` for ``begin <= t < begin + T``;
    ``init_value`` before, ``end_value`` after. Optax's schedule of the same name.

    Args:
      init_value: the value up to ``transition_begin``.
      end_value: the value from ``transition_begin + transition_steps`` on.
      power: the polynomial's power, a finite number.
      transition_steps: the transition's length; 0 keeps ``init_value`` throughout.
      transition_begin: the step at which the transition starts.

    Returns:
      A `PolynomialSchedule`.

    Raises:
      ValueError: for a non-finite number or a negative or non-integer step count.

    Example:
      >>> import gradxform as gx
      >>> s = gx.schedules.polynomial_schedule(1.0, 0.0, power=2, transition_steps=10)
      >>> round(float(s(5)), 4)
      0.25
    """
    owner = "polynomial_schedule"
    for name, v in (("init_value", init_value), ("end_value", end_value), ("power", power)):
        check_number(owner, name, v, REAL)
    t = check_int(owner, "transition_steps", transition_steps)
    b = check_int(owner, "transition_begin", transition_begin)
    return PolynomialSchedule(init_value, end_value, power, t, b)


def linear_schedule(
    init_value: float, end_value: float, transition_steps: int, transition_begin: int = 0
) -> LinearSchedule:
    """Linear transition from ``init_value`` to ``end_value`` (`polynomial_schedule` with power 1).

    Args:
      init_value: the value up to ``transition_begin``.
      end_value: the value from ``transition_begin + transition_steps`` on.
      transition_steps: the transition's length; 0 keeps ``init_value`` throughout.
      transition_begin: the step at which the transition starts.

    Returns:
      A `LinearSchedule`.

    Raises:
      ValueError: for a non-finite number or a negative or non-integer step count.

    Example:
      >>> import gradxform as gx
      >>> float(gx.schedules.linear_schedule(1.0, 0.0, transition_steps=4)(1))
      0.75
    """
    owner = "linear_schedule"
    check_number(owner, "init_value", init_value, REAL)
    check_number(owner, "end_value", end_value, REAL)
    t = check_int(owner, "transition_steps", transition_steps)
    b = check_int(owner, "transition_begin", transition_begin)
    return LinearSchedule(init_value, end_value, t, b)


def cosine_decay_schedule(
    init_value: float, decay_steps: int, alpha: float = 0.0, exponent: float = 1.0
) -> CosineDecaySchedule:
    """Cosine decay from ``init_value`` to ``alpha * init_value`` over ``decay_steps``.

    ``init * ((1 - alpha) * (0.5 * (1 + cos(pi * t / T)))**exponent + alpha)`` for
    ``t <= T``, then ``alpha * init``.

    Args:
      init_value: the starting value.
      decay_steps: the decay's length, an integer >= 1.
      alpha: the final value as a fraction of ``init_value``.
      exponent: power applied to the cosine factor.

    Returns:
      A `CosineDecaySchedule`.

    Raises:
      ValueError: for ``decay_steps < 1`` or a non-finite number.

    References:
      Loshchilov & Hutter, "SGDR: Stochastic Gradient Descent with Warm Restarts", ICLR
      2017. https://arxiv.org/abs/1608.03983

    Example:
      >>> import gradxform as gx
      >>> round(float(gx.schedules.cosine_decay_schedule(1.0, decay_steps=10)(5)), 4)
      0.5
    """
    owner = "cosine_decay_schedule"
    check_number(owner, "init_value", init_value, REAL)
    check_number(owner, "alpha", alpha, REAL)
    check_number(owner, "exponent", exponent, REAL)
    d = check_int(owner, "decay_steps", decay_steps, 1)
    return CosineDecaySchedule(init_value, d, alpha, exponent)


def inverse_time_decay(
    init_value: float, decay_rate: float, transition_steps: int = 1, staircase: bool = False
) -> InverseTimeDecay:
    """Inverse-time decay: ``init_value / (1 + decay_rate * t / transition_steps)``.

    The classic ``lr / (1 + decay * t)`` of Robbins-Monro step sizes (Keras'
    ``InverseTimeDecay``); Optax has no equivalent.

    Args:
      init_value: the value at step 0.
      decay_rate: the decay per ``transition_steps`` steps, >= 0.
      transition_steps: the unit of time, an integer >= 1.
      staircase: floor ``t / transition_steps``, so the value changes in steps.

    Returns:
      An `InverseTimeDecay`.

    Raises:
      ValueError: for a negative ``decay_rate``, ``transition_steps < 1`` or a non-finite
        number.

    References:
      Robbins & Monro, "A Stochastic Approximation Method", Annals of Mathematical
      Statistics, 1951. https://doi.org/10.1214/aoms/1177729586

    Example:
      >>> import gradxform as gx
      >>> float(gx.schedules.inverse_time_decay(1.0, decay_rate=0.5)(2))
      0.5
    """
    owner = "inverse_time_decay"
    check_number(owner, "init_value", init_value, REAL)
    check_number(owner, "decay_rate", decay_rate, NON_NEGATIVE)
    t = check_int(owner, "transition_steps", transition_steps, 1)
    if not isinstance(staircase, bool):
        raise ValueError(f"{owner}: staircase must be a bool, got staircase={staircase!r}.")
    return InverseTimeDecay(init_value, decay_rate, t, staircase)


__all__ = [
    "ConstantSchedule",
    "CosineDecaySchedule",
    "InverseTimeDecay",
    "LinearSchedule",
    "PolynomialSchedule",
    "constant_schedule",
    "cosine_decay_schedule",
    "inverse_time_decay",
    "linear_schedule",
    "polynomial_schedule",
]
