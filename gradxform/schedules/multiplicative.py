"""Multiplicative decay schedules: the value is multiplied by factors as steps pass.
Exponential decay (continuous or staircase), step decay at given epochs (PyTorch's StepLR and
MultiStepLR), and a factor per step (PyTorch's MultiplicativeLR).

Each public function validates its arguments and returns a frozen-dataclass `Schedule`
whose numeric fields (``dynamic``) the optimizer keeps in its state, so they can be changed
between steps without recompiling. All are pure functions of the step, jit-compatible.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradxform.core import NON_NEGATIVE, POSITIVE, REAL
from gradxform.schedules._util import FLOAT, BaseSchedule, check_int, check_number, step

# ----------------------------------------------------------------------------- formulas


def exponential_value(
    t: jax.Array, init_value, transition_steps: int, decay_rate, transition_begin: int, staircase: bool, end_value
):
    """``init * decay_rate**((t - begin) / T)``, floored exponent if ``staircase``, clipped at
    ``end_value`` (a floor when decaying, a ceiling when growing)."""
    elapsed = t - transition_begin
    p = elapsed / transition_steps
    if staircase:
        p = jnp.floor(p)
    value = jnp.where(elapsed <= 0, init_value, init_value * jnp.power(decay_rate, p))
    if end_value is not None:
        value = jnp.where(decay_rate < 1, jnp.maximum(value, end_value), jnp.minimum(value, end_value))
    return value


# ----------------------------------------------------------------------------- classes


@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class ExponentialDecay(BaseSchedule):
    """See `exponential_decay`."""

    init_value: float
    transition_steps: int
    decay_rate: float
    transition_begin: int = 0
    staircase: bool = False
    end_value: float | None = None
    dynamic = ("init_value", "decay_rate", "end_value")
    factory = "exponential_decay"

    def __call__(self, count: Any) -> jax.Array:
        return exponential_value(
            step(count), self.init_value, self.transition_steps, self.decay_rate,
            self.transition_begin, self.staircase, self.end_value,
        )


@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class StepDecaySchedule(BaseSchedule):
    """See `step_decay_schedule`."""

    init_value: float
    milestones: int | tuple[int, ...]
    factor: float = 0.1
    steps_per_epoch: int = 1
    dynamic = ("init_value", "factor")
    factory = "step_decay_schedule"

    def __call__(self, count: Any) -> jax.Array:
        epoch = jnp.floor(jnp.maximum(step(count), 0) / self.steps_per_epoch)
        if isinstance(self.milestones, (int, np.integer)):
            n = jnp.floor(epoch / self.milestones)
        else:
            marks = jnp.asarray(self.milestones, FLOAT)
            n = jnp.sum(epoch[..., None] >= marks, axis=-1).astype(FLOAT)
        return self.init_value * jnp.power(jnp.asarray(self.factor, FLOAT), n)


@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class MultiplicativeSchedule(BaseSchedule):
    """See `multiplicative_schedule`. ``factor`` is a number, or the tuple of the factors
    applied at steps 1, 2, ..., n."""

    init_value: float
    factor: float | tuple[float, ...]
    dynamic = ("init_value", "factor")
    factory = "multiplicative_schedule"

    def dynamic_args(self) -> dict[str, Any]:
        args = super().dynamic_args()
        if isinstance(self.factor, (tuple, list)):
            del args["factor"]
        return args

    def __call__(self, count: Any) -> jax.Array:
        t = jnp.maximum(step(count), 0)
        if not isinstance(self.factor, (tuple, list)):
            return self.init_value * jnp.power(jnp.asarray(self.factor, FLOAT), t)
        products = jnp.cumprod(jnp.concatenate([jnp.ones(1, FLOAT), jnp.asarray(self.factor, FLOAT)]))
        index = jnp.clip(t, 0, len(self.factor)).astype(jnp.int32)
        return self.init_value * products[index]


# ----------------------------------------------------------------------------- public


def exponential_decay(
    init_value: float,
    transition_steps: int,
    decay_rate: float,
    transition_begin: int = 0,
    staircase: bool = False,
    end_value: float | None = None,
) -> ExponentialDecay:
    """Exponential decay: ``init_value * decay_rate**((t - transition_begin) / transition_steps)``.

    Args:
      init_value: the value up to ``transition_begin``.
      transition_steps: steps over which the value is multiplied by ``decay_rate`` (> 0).
      decay_rate: the factor per ``transition_steps`` (> 0; above 1 the value grows).
      transition_begin: the step at which the decay starts.
      staircase: floor the exponent, so the value changes every ``transition_steps`` steps.
      end_value: a floor on the value when ``decay_rate < 1``, a ceiling when it is above
        1; ``None`` for no bound.

    Returns:
      An `ExponentialDecay`.

    Raises:
      ValueError: for ``transition_steps < 1``, ``decay_rate <= 0``, a non-finite number
        or a negative ``transition_begin``.

    Example:
      >>> import gradxform as gx
      >>> s = gx.schedules.exponential_decay(1.0, transition_steps=10, decay_rate=0.5)
      >>> float(s(20))
      0.25
    """
    owner = "exponential_decay"
    check_number(owner, "init_value", init_value, REAL)
    check_number(owner, "decay_rate", decay_rate, POSITIVE)
    if end_value is not None:
        check_number(owner, "end_value", end_value, REAL)
    t = check_int(owner, "transition_steps", transition_steps, 1)
    b = check_int(owner, "transition_begin", transition_begin)
    if not isinstance(staircase, bool):
        raise ValueError(f"{owner}: staircase must be a bool, got staircase={staircase!r}.")
    return ExponentialDecay(init_value, t, decay_rate, b, staircase, end_value)


def step_decay_schedule(
    init_value: float, milestones: int | Sequence[int], factor: float = 0.1, steps_per_epoch: int = 1
) -> StepDecaySchedule:
    """Multiplies the value by ``factor`` at given epochs (PyTorch's StepLR and MultiStepLR).

    With ``epoch = t // steps_per_epoch``, the value is ``init_value * factor**n``, where
    ``n`` is the number of milestones ``<= epoch`` (a list), or ``epoch // milestones``
    (an integer period).

    Args:
      init_value: the value before the first milestone.
      milestones: strictly increasing epochs >= 1 at which to decay, or one integer >= 1
        to decay every that many epochs.
      factor: the multiplier at each milestone, >= 0.
      steps_per_epoch: optimizer steps per epoch, an integer >= 1.

    Returns:
      A `StepDecaySchedule`.

    Raises:
      ValueError: for milestones that are not increasing positive integers, a negative
        ``factor`` or ``steps_per_epoch < 1``.

    Example:
      >>> import gradxform as gx
      >>> s = gx.schedules.step_decay_schedule(1.0, milestones=[2, 4], factor=0.5)
      >>> [float(s(t)) for t in range(6)]
      [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
    """
    owner = "step_decay_schedule"
    check_number(owner, "init_value", init_value, REAL)
    check_number(owner, "factor", factor, NON_NEGATIVE)
    spe = check_int(owner, "steps_per_epoch", steps_per_epoch, 1)
    if isinstance(milestones, (int, np.integer)) and not isinstance(milestones, bool):
        marks: int | tuple[int, ...] = check_int(owner, "milestones", milestones, 1)
    elif isinstance(milestones, (list, tuple)) and milestones:
        marks = tuple(check_int(owner, f"milestones[{i}]", m, 1) for i, m in enumerate(milestones))
        if any(b <= a for a, b in zip(marks, marks[1:])):
            raise ValueError(f"{owner}: milestones must be strictly increasing, got milestones={list(milestones)!r}.")
    else:
        raise ValueError(
            f"{owner}: milestones must be a non-empty list of epochs or one integer period, "
            f"got milestones={milestones!r}."
        )
    return StepDecaySchedule(init_value, marks, factor, spe)


def multiplicative_schedule(
    init_value: float, factor: float | Sequence[float] | Callable[[int], float], num_steps: int | None = None
) -> MultiplicativeSchedule:
    """Multiplies the value by a factor at every step (PyTorch's MultiplicativeLR).

    The value at step ``t`` is ``init_value * f(1) * f(2) * ... * f(t)``. A constant factor
    gives ``init_value * factor**t``. A factor that is a function of the step is
    tabulated once, here, for steps 1 to ``num_steps``; the value stays at its step
    ``num_steps`` value afterwards. The table itself (a list of the factors of steps 1,
    2, ...) is also accepted: it is how a config written by ``gx.to_config`` gives it.

    Args:
      init_value: the value at step 0.
      factor: a number > 0, a Python function ``step -> factor`` (called with
        ``1, ..., num_steps``, returning numbers > 0), or a non-empty list of the
        factors (> 0) of steps 1, 2, ...
      num_steps: how many steps to tabulate; required when ``factor`` is a function
        (with a list, its length if given).

    Returns:
      A `MultiplicativeSchedule`.

    Raises:
      ValueError: for a non-positive factor, a function factor without ``num_steps``, or
        an empty list of factors or one whose length is not ``num_steps``.

    Example:
      >>> import gradxform as gx
      >>> s = gx.schedules.multiplicative_schedule(1.0, lambda t: 0.5 if t % 2 else 1.0, num_steps=4)
      >>> [float(s(t)) for t in range(6)]
      [1.0, 0.5, 0.5, 0.25, 0.25, 0.25]
    """
    owner = "multiplicative_schedule"
    check_number(owner, "init_value", init_value, REAL)
    if isinstance(factor, (tuple, list)):
        if not factor or (num_steps is not None and num_steps != len(factor)):
            raise ValueError(
                f"{owner}: factor given as a list must hold the factors of steps 1 to num_steps, "
                f"got {len(factor)} factors and num_steps={num_steps!r}."
            )
        for i, f in enumerate(factor):
            check_number(owner, f"factor[{i}]", f, POSITIVE)
        return MultiplicativeSchedule(init_value, tuple(float(f) for f in factor))
    if not callable(factor):
        check_number(owner, "factor", factor, POSITIVE)
        return MultiplicativeSchedule(init_value, factor)
    if num_steps is None:
        raise ValueError(f"{owner}: num_steps is required when factor is a function (it is tabulated for steps 1..num_steps).")
    n = check_int(owner, "num_steps", num_steps, 1)
    table = []
    for t in range(1, n + 1):
        f = factor(t)
        check_number(owner, f"factor({t})", float(f), POSITIVE)
        table.append(float(f))
    return MultiplicativeSchedule(init_value, tuple(table))


__all__ = [
    "ExponentialDecay",
    "MultiplicativeSchedule",
    "StepDecaySchedule",
    "exponential_decay",
    "multiplicative_schedule",
    "step_decay_schedule",
]
