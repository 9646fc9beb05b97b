"""Piecewise schedules: constant with scaled jumps, interpolated between boundaries,
the linear and cosine one-cycle policies built on them, and a stepwise table of values.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from gradxform.core import POSITIVE, REAL, UNIT_CLOSED
from gradxform.schedules._util import FLOAT, BaseSchedule, check_int, check_number, check_scales, step

# ----------------------------------------------------------------------------- formulas


def interpolate_value(t: jax.Array, kind: str, init_value, boundaries: Sequence[int], scales: Sequence) -> jax.Array:
    """Interpolates (``"linear"`` or ``"cosine"``) between the running products
    ``init * scale_1 * ... * scale_i`` reached at each boundary, starting from step 0."""
    bounds = (0, *boundaries)
    values = init_value * jnp.cumprod(jnp.stack([jnp.ones((), FLOAT), *[jnp.asarray(s, FLOAT) for s in scales]]))
    out = jnp.zeros(jnp.shape(t), FLOAT)
    for i in range(len(bounds) - 1):
        lo, hi = bounds[i], bounds[i + 1]
        pct = (t - lo) / max(hi - lo, 1)
        start, end = values[i], values[i + 1]
        if kind == "linear":
            piece = start + (end - start) * pct
        else:
            piece = end + (start - end) / 2 * (jnp.cos(jnp.pi * pct) + 1)
        out = out + jnp.where((lo <= t) & (t < hi), piece, 0.0)
    return out + jnp.where(t >= bounds[-1], values[-1], 0.0)


def _onecycle_points(transition_steps: int, pct_start: float, pct_final: float | None, div_factor, final_div_factor):
    # A dict, so that boundaries that coincide after rounding keep the later scale (as Optax).
    if pct_final is None:
        points = {int(pct_start * transition_steps): div_factor, transition_steps: 1.0 / (div_factor * final_div_factor)}
    else:
        points = {
            int(pct_start * transition_steps): div_factor,
            int(pct_final * transition_steps): 1.0 / div_factor,
            transition_steps: 1.0 / final_div_factor,
        }
    keys = sorted(points)
    return keys, [points[k] for k in keys]


# ----------------------------------------------------------------------------- classes


@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class PiecewiseConstantSchedule(BaseSchedule):
    """See `piecewise_constant_schedule`."""

    init_value: float
    boundaries_and_scales: dict[int, float] | None = None
    dynamic = ("init_value",)
    factory = "piecewise_constant_schedule"

    def __call__(self, count: Any) -> jax.Array:
        t = step(count)
        value = jnp.broadcast_to(jnp.asarray(self.init_value, FLOAT), jnp.shape(t))
        for boundary, scale in sorted((self.boundaries_and_scales or {}).items()):
            value = jnp.where(t >= int(boundary), value * scale, value)
        return value


@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class PiecewiseInterpolateSchedule(BaseSchedule):
    """See `piecewise_interpolate_schedule`."""

    interpolate_type: str
    init_value: float
    boundaries_and_scales: dict[int, float] | None = None
    dynamic = ("init_value",)
    factory = "piecewise_interpolate_schedule"

    def __call__(self, count: Any) -> jax.Array:
        items = sorted((int(b), s) for b, s in (self.boundaries_and_scales or {}).items())
        return interpolate_value(
            step(count), self.interpolate_type, self.init_value, [b for b, _ in items], [s for _, s in items]
        )


@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class LinearOnecycleSchedule(BaseSchedule):
    """See `linear_onecycle_schedule`."""

    transition_steps: int
    peak_value: float
    pct_start: float = 0.3
    pct_final: float = 0.85
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    dynamic = ("peak_value", "div_factor", "final_div_factor")
    factory = "linear_onecycle_schedule"

    def __call__(self, count: Any) -> jax.Array:
        keys, scales = _onecycle_points(
            self.transition_steps, self.pct_start, self.pct_final, self.div_factor, self.final_div_factor
        )
        return interpolate_value(step(count), "linear", self.peak_value / self.div_factor, keys, scales)


@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class CosineOnecycleSchedule(BaseSchedule):
    """See `cosine_onecycle_schedule`."""

    transition_steps: int
    peak_value: float
    pct_start: float = 0.3
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    dynamic = ("peak_value", "div_factor", "final_div_factor")
    factory = "cosine_onecycle_schedule"

    def __call__(self, count: Any) -> jax.Array:
        keys, scales = _onecycle_points(self.transition_steps, self.pct_start, None, self.div_factor, self.final_div_factor)
        return interpolate_value(step(count), "cosine", self.peak_value / self.div_factor, keys, scales)


@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class StepwiseSchedule(BaseSchedule):
    """See `stepwise_schedule`."""

    values: tuple[float, ...]
    boundaries: tuple[int, ...] = ()
    factory = "stepwise_schedule"

    def __call__(self, count: Any) -> jax.Array:
        t = step(count)
        index = jnp.sum(t[..., None] >= jnp.asarray(self.boundaries, FLOAT).reshape(-1), axis=-1)
        return jnp.asarray(self.values, FLOAT)[index]


# ----------------------------------------------------------------------------- public


def piecewise_constant_schedule(
    init_value: float, boundaries_and_scales: dict[int, float] | None = None
) -> PiecewiseConstantSchedule:
    """Constant, multiplied by a scale at each boundary.

    The value at step ``t`` is ``init_value`` times every scale whose boundary is ``<= t``.

    Args:
      init_value: the value before the first boundary.
      boundaries_and_scales: ``{step: scale}``, integer steps >= 0, scales >= 0.

    Returns:
      A `PiecewiseConstantSchedule`.

    Raises:
      ValueError: for a negative or non-integer boundary or a negative scale.

    Example:
      >>> import gradxform as gx
      >>> s = gx.schedules.piecewise_constant_schedule(1.0, {10: 0.5, 20: 0.5})
      >>> [float(s(t)) for t in (9, 10, 20)]
      [1.0, 0.5, 0.25]
    """
    check_number("piecewise_constant_schedule", "init_value", init_value, REAL)
    return PiecewiseConstantSchedule(init_value, check_scales("piecewise_constant_schedule", boundaries_and_scales))


def piecewise_interpolate_schedule(
    interpolate_type: str, init_value: float, boundaries_and_scales: dict[int, float] | None = None
) -> PiecewiseInterpolateSchedule:
    """Interpolates, linearly or along a half cosine, between values reached at boundaries.

    The value reached at a boundary is ``init_value`` times the scales of every boundary up
    to it; between two boundaries (and from step 0 to the first) the schedule moves from
    one such value to the next.

    Args:
      interpolate_type: ``"linear"`` or ``"cosine"``.
      init_value: the value at step 0.
      boundaries_and_scales: ``{step: scale}``, integer steps >= 0, scales >= 0.

    Returns:
      A `PiecewiseInterpolateSchedule`.

    Raises:
      ValueError: for an unknown ``interpolate_type``, a negative or non-integer boundary,
        or a negative scale.

    Example:
      >>> import gradxform as gx
      >>> s = gx.schedules.piecewise_interpolate_schedule("linear", 1.0, {10: 0.5})
      >>> [float(s(t)) for t in (0, 5, 10, 15)]
      [1.0, 0.75, 0.5, 0.5]
    """
    owner = "piecewise_interpolate_schedule"
    if interpolate_type not in ("linear", "cosine"):
        raise ValueError(f"{owner}: interpolate_type must be 'linear' or 'cosine', got interpolate_type={interpolate_type!r}.")
    check_number(owner, "init_value", init_value, REAL)
    return PiecewiseInterpolateSchedule(interpolate_type, init_value, check_scales(owner, boundaries_and_scales))


def _check_onecycle(owner: str, transition_steps, peak_value, div_factor, final_div_factor, pcts) -> int:
    t = check_int(owner, "transition_steps", transition_steps, 1)
    check_number(owner, "peak_value", peak_value, REAL)
    check_number(owner, "div_factor", div_factor, POSITIVE)
    check_number(owner, "final_div_factor", final_div_factor, POSITIVE)
    for name, v in pcts:
        check_number(owner, name, v, UNIT_CLOSED)
    if len(pcts) == 2 and not pcts[0][1] <= pcts[1][1]:
        raise ValueError(f"{owner}: pct_start must be <= pct_final, got pct_start={pcts[0][1]!r}, pct_final={pcts[1][1]!r}.")
    return t


def linear_onecycle_schedule(
    transition_steps: int,
    peak_value: float,
    pct_start: float = 0.3,
    pct_final: float = 0.85,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> LinearOnecycleSchedule:
    """The one-cycle policy with linear phases.

    From ``peak_value / div_factor`` up to ``peak_value`` at ``pct_start`` of the cycle,
    back down to ``peak_value / div_factor`` at ``pct_final``, then down to
    ``peak_value / (div_factor * final_div_factor)`` at ``transition_steps``.

    Args:
      transition_steps: the cycle's length, an integer >= 1.
      peak_value: the maximum value.
      pct_start: the fraction of the cycle spent rising, in [0, 1].
      pct_final: the fraction of the cycle at which the descent to the initial value
        ends, in [pct_start, 1].
      div_factor: ``peak_value / initial value``, > 0.
      final_div_factor: ``initial value / final value``, > 0.

    Returns:
      A `LinearOnecycleSchedule`.

    Raises:
      ValueError: for an argument outside those ranges.

    References:
      Smith & Topin, "Super-Convergence: Very Fast Training of Neural Networks Using Large
      Learning Rates", 2017. https://arxiv.org/abs/1708.07120

    Example:
      >>> import gradxform as gx
      >>> s = gx.schedules.linear_onecycle_schedule(100, peak_value=1.0)
      >>> [round(float(s(t)), 4) for t in (0, 30, 85)]
      [0.04, 1.0, 0.04]
    """
    owner = "linear_onecycle_schedule"
    t = _check_onecycle(
        owner, transition_steps, peak_value, div_factor, final_div_factor, [("pct_start", pct_start), ("pct_final", pct_final)]
    )
    return LinearOnecycleSchedule(t, peak_value, pct_start, pct_final, div_factor, final_div_factor)


def cosine_onecycle_schedule(
    transition_steps: int,
    peak_value: float,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> CosineOnecycleSchedule:
    """The one-cycle policy with half-cosine phases.

    From ``peak_value / div_factor`` up to ``peak_value`` at ``pct_start`` of the cycle,
    then down to ``peak_value / (div_factor * final_div_factor)`` at ``transition_steps``.

    Args:
      transition_steps: the cycle's length, an integer >= 1.
      peak_value: the maximum value.
      pct_start: the fraction of the cycle spent rising, in [0, 1].
      div_factor: ``peak_value / initial value``, > 0.
      final_div_factor: ``initial value / final value``, > 0.

    Returns:
      A `CosineOnecycleSchedule`.

    Raises:
      ValueError: for an argument outside those ranges.

    References:
      Smith & Topin, "Super-Convergence: Very Fast Training of Neural Networks Using Large
      Learning Rates", 2017. https://arxiv.org/abs/1708.07120

    Example:
      >>> import gradxform as gx
      >>> s = gx.schedules.cosine_onecycle_schedule(100, peak_value=1.0)
      >>> [round(float(s(t)), 4) for t in (0, 30)]
      [0.04, 1.0]
    """
    owner = "cosine_onecycle_schedule"
    t = _check_onecycle(owner, transition_steps, peak_value, div_factor, final_div_factor, [("pct_start", pct_start)])
    return CosineOnecycleSchedule(t, peak_value, pct_start, div_factor, final_div_factor)


def stepwise_schedule(values: Sequence[float], boundaries: Sequence[int] = ()) -> StepwiseSchedule:
    """A table of values: ``values[i]`` from ``boundaries[i - 1]`` (or step 0) on.

    Used for schedules computed ahead of time, such as the batch-size plans of
    `lr_to_batch_size_schedule`.

    Args:
      values: one more value than boundaries, finite numbers.
      boundaries: strictly increasing integer steps >= 1.

    Returns:
      A `StepwiseSchedule`.

    Raises:
      ValueError: if the lengths do not match, a value is not finite, or the boundaries
        are not strictly increasing positive integers.

    Example:
      >>> import gradxform as gx
      >>> s = gx.schedules.stepwise_schedule([4.0, 2.0, 1.0], [10, 20])
      >>> [float(s(t)) for t in (0, 10, 25)]
      [4.0, 2.0, 1.0]
    """
    owner = "stepwise_schedule"
    values, boundaries = tuple(values), tuple(boundaries)
    if len(values) != len(boundaries) + 1:
        raise ValueError(
            f"{owner}: values must have one more entry than boundaries, got {len(values)} values and "
            f"{len(boundaries)} boundaries."
        )
    for i, v in enumerate(values):
        check_number(owner, f"values[{i}]", v, REAL)
    marks = tuple(check_int(owner, f"boundaries[{i}]", b, 1) for i, b in enumerate(boundaries))
    if any(b <= a for a, b in zip(marks, marks[1:])):
        raise ValueError(f"{owner}: boundaries must be strictly increasing, got boundaries={list(boundaries)!r}.")
    return StepwiseSchedule(tuple(float(v) for v in values), marks)


__all__ = [
    "CosineOnecycleSchedule",
    "LinearOnecycleSchedule",
    "PiecewiseConstantSchedule",
    "PiecewiseInterpolateSchedule",
    "StepwiseSchedule",
    "cosine_onecycle_schedule",
    "linear_onecycle_schedule",
    "piecewise_constant_schedule",
    "piecewise_interpolate_schedule",
    "stepwise_schedule",
]
