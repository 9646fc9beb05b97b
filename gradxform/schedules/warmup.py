"""Linear warm-up followed by a constant, a cosine decay or an exponential decay; and SGDR,
cosine cycles with warm restarts."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from gradxform.core import POSITIVE, REAL
from gradxform.schedules._util import BaseSchedule, check_int, check_number, step
from gradxform.schedules.decay import cosine_value, polynomial_value
from gradxform.schedules.join import split_nested
from gradxform.schedules.multiplicative import exponential_value


@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class WarmupConstantSchedule(BaseSchedule):
    """See `warmup_constant_schedule`."""

    init_value: float
    peak_value: float
    warmup_steps: int
    dynamic = ("init_value", "peak_value")
    factory = "warmup_constant_schedule"

    def __call__(self, count: Any) -> jax.Array:
        return polynomial_value(step(count), self.init_value, self.peak_value, 1.0, self.warmup_steps, 0)


@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class WarmupCosineDecaySchedule(BaseSchedule):
    """See `warmup_cosine_decay_schedule`."""

    init_value: float
    peak_value: float
    warmup_steps: int
    decay_steps: int
    end_value: float = 0.0
    exponent: float = 1.0
    dynamic = ("init_value", "peak_value", "end_value", "exponent")
    factory = "warmup_cosine_decay_schedule"

    def __call__(self, count: Any) -> jax.Array:
        t = step(count)
        peak = jnp.asarray(self.peak_value, jnp.float32)
        alpha = jnp.where(peak == 0, 0.0, self.end_value / jnp.where(peak == 0, 1.0, peak))
        warm = polynomial_value(t, self.init_value, peak, 1.0, self.warmup_steps, 0)
        decay = cosine_value(t - self.warmup_steps, peak, self.decay_steps - self.warmup_steps, alpha, self.exponent)
        return jnp.where(t < self.warmup_steps, warm, decay)


@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class WarmupExponentialDecaySchedule(BaseSchedule):
    """See `warmup_exponential_decay_schedule`."""

    init_value: float
    peak_value: float
    warmup_steps: int
    transition_steps: int
    decay_rate: float
    transition_begin: int = 0
    staircase: bool = False
    end_value: float | None = None
    dynamic = ("init_value", "peak_value", "decay_rate", "end_value")
    factory = "warmup_exponential_decay_schedule"

    def __call__(self, count: Any) -> jax.Array:
        t = step(count)
        warm = polynomial_value(t, self.init_value, self.peak_value, 1.0, self.warmup_steps, 0)
        decay = exponential_value(
            t - self.warmup_steps, self.peak_value, self.transition_steps, self.decay_rate,
            self.transition_begin, self.staircase, self.end_value,
        )
        return jnp.where(t < self.warmup_steps, warm, decay)


@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class SGDRSchedule(BaseSchedule):
    """See `sgdr_schedule`. Each cycle's numeric arguments are dynamic, named
    ``"<cycle>.<name>"`` (``"1.peak_value"``)."""

    cosine_kwargs: tuple[dict[str, Any], ...]
    factory = "sgdr_schedule"

    def dynamic_args(self) -> dict[str, Any]:
        return {
            f"{i}.{k}": kw[k]
            for i, kw in enumerate(self.cosine_kwargs)
            for k in WarmupCosineDecaySchedule.dynamic
            if kw.get(k) is not None
        }

    def replace(self, **changes: Any) -> SGDRSchedule:
        nested = split_nested(changes)
        cycles = tuple({**kw, **nested.get(i, {})} for i, kw in enumerate(self.cosine_kwargs))
        return dataclasses.replace(self, cosine_kwargs=cycles)

    def __call__(self, count: Any) -> jax.Array:
        t = step(count)
        start = 0
        out = WarmupCosineDecaySchedule(**self.cosine_kwargs[0])(t)
        for previous, kw in zip(self.cosine_kwargs, self.cosine_kwargs[1:]):
            start += int(previous["decay_steps"])
            out = jnp.where(t < start, out, WarmupCosineDecaySchedule(**kw)(t - start))
        return out


def _check_warmup(owner: str, init_value: Any, peak_value: Any, warmup_steps: Any) -> int:
    check_number(owner, "init_value", init_value, REAL)
    check_number(owner, "peak_value", peak_value, REAL)
    return check_int(owner, "warmup_steps", warmup_steps)


def warmup_constant_schedule(init_value: float, peak_value: float, warmup_steps: int) -> WarmupConstantSchedule:
    """Linear warm-up from ``init_value`` to ``peak_value``, then constant.

    Args:
      init_value: the value at step 0.
      peak_value: the value from ``warmup_steps`` on.
      warmup_steps: the warm-up's length, an integer >= 0 (0 keeps ``init_value``, as
        Optax's ``linear_schedule`` with no transition does).

    Returns:
      A `WarmupConstantSchedule`.

    Raises:
      ValueError: for a non-finite value or a negative or non-integer ``warmup_steps``.

    Example:
      >>> import gradxform as gx
      >>> s = gx.schedules.warmup_constant_schedule(0.0, 1.0, warmup_steps=4)
      >>> [float(s(t)) for t in (0, 2, 4, 8)]
      [0.0, 0.5, 1.0, 1.0]
    """
    w = _check_warmup("warmup_constant_schedule", init_value, peak_value, warmup_steps)
    return WarmupConstantSchedule(init_value, peak_value, w)


def warmup_cosine_decay_schedule(
    init_value: float,
    peak_value: float,
    warmup_steps: int,
    decay_steps: int,
    end_value: float = 0.0,
    exponent: float = 1.0,
) -> WarmupCosineDecaySchedule:
    """Linear warm-up to ``peak_value``, then cosine decay to ``end_value``.

    Args:
      init_value: the value at step 0.
      peak_value: the value reached at ``warmup_steps``.
      warmup_steps: the warm-up's length, an integer >= 0.
      decay_steps: the whole schedule's length, warm-up included (> ``warmup_steps``).
      end_value: the value from ``decay_steps`` on.
      exponent: power applied to the cosine factor.

    Returns:
      A `WarmupCosineDecaySchedule` (``"learning_rate.peak_value"`` and the other numbers
      can be set between steps with `gradxform.set_hyperparams`).

    Raises:
      ValueError: for ``decay_steps <= warmup_steps``, a non-finite number or a negative
        or non-integer step count.

    References:
      Loshchilov & Hutter, "SGDR: Stochastic Gradient Descent with Warm Restarts", ICLR
      2017. https://arxiv.org/abs/1608.03983

    Example:
      >>> import gradxform as gx
      >>> s = gx.schedules.warmup_cosine_decay_schedule(0.0, 1.0, warmup_steps=10, decay_steps=110)
      >>> [round(float(s(t)), 4) for t in (5, 10, 60, 110)]
      [0.5, 1.0, 0.5, 0.0]
    """
    owner = "warmup_cosine_decay_schedule"
    w = _check_warmup(owner, init_value, peak_value, warmup_steps)
    d = check_int(owner, "decay_steps", decay_steps, 1)
    if d <= w:
        raise ValueError(
            f"{owner}: decay_steps counts the warm-up, so it must be > warmup_steps, got "
            f"decay_steps={decay_steps!r}, warmup_steps={warmup_steps!r}."
        )
    check_number(owner, "end_value", end_value, REAL)
    check_number(owner, "exponent", exponent, REAL)
    return WarmupCosineDecaySchedule(init_value, peak_value, w, d, end_value, exponent)


def warmup_exponential_decay_schedule(
    init_value: float,
    peak_value: float,
    warmup_steps: int,
    transition_steps: int,
    decay_rate: float,
    transition_begin: int = 0,
    staircase: bool = False,
    end_value: float | None = None,
) -> WarmupExponentialDecaySchedule:
    """Linear warm-up to ``peak_value``, then `exponential_decay` from it.

    Args:
      init_value: the value at step 0.
      peak_value: the value reached at ``warmup_steps``.
      warmup_steps: the warm-up's length, an integer >= 0.
      transition_steps: steps over which the value is multiplied by ``decay_rate`` (>= 1).
      decay_rate: the factor per ``transition_steps``, > 0.
      transition_begin: steps after the warm-up before the decay starts.
      staircase: decay in discrete steps.
      end_value: the bound at which the decay stops, or ``None``.

    Returns:
      A `WarmupExponentialDecaySchedule`.

    Raises:
      ValueError: for an argument out of range (see `exponential_decay`).

    Example:
      >>> import gradxform as gx
      >>> s = gx.schedules.warmup_exponential_decay_schedule(0.0, 1.0, 2, transition_steps=1, decay_rate=0.5)
      >>> [float(s(t)) for t in (1, 2, 3, 4)]
      [0.5, 1.0, 0.5, 0.25]
    """
    owner = "warmup_exponential_decay_schedule"
    w = _check_warmup(owner, init_value, peak_value, warmup_steps)
    t = check_int(owner, "transition_steps", transition_steps, 1)
    check_number(owner, "decay_rate", decay_rate, POSITIVE)
    b = check_int(owner, "transition_begin", transition_begin)
    if not isinstance(staircase, bool):
        raise ValueError(f"{owner}: staircase must be a bool, got staircase={staircase!r}.")
    if end_value is not None:
        check_number(owner, "end_value", end_value, REAL)
    return WarmupExponentialDecaySchedule(init_value, peak_value, w, t, decay_rate, b, staircase, end_value)


def sgdr_schedule(cosine_kwargs: Iterable[Mapping[str, Any]]) -> SGDRSchedule:
    """Stochastic gradient descent with warm restarts: warm-up + cosine cycles end to end.

    Args:
      cosine_kwargs: one dict per cycle, the arguments of `warmup_cosine_decay_schedule`;
        a cycle lasts its ``decay_steps``, after which the next starts from its step 0.

    Returns:
      An `SGDRSchedule`.

    Raises:
      ValueError: if there is no cycle or a cycle's arguments are invalid (naming it).

    References:
      Loshchilov & Hutter, "SGDR: Stochastic Gradient Descent with Warm Restarts", ICLR
      2017. https://arxiv.org/abs/1608.03983

    Example:
      >>> import gradxform as gx
      >>> cycle = dict(init_value=0.0, peak_value=1.0, warmup_steps=0, decay_steps=10)
      >>> s = gx.schedules.sgdr_schedule([cycle, cycle])
      >>> [round(float(s(t)), 4) for t in (0, 5, 10, 15)]
      [1.0, 0.5, 1.0, 0.5]
    """
    cycles = []
    for i, kw in enumerate(cosine_kwargs):
        if not isinstance(kw, Mapping):
            raise ValueError(f"sgdr_schedule: cosine_kwargs[{i}] must be a dict of warmup_cosine_decay_schedule arguments, got {kw!r}.")
        try:
            full = warmup_cosine_decay_schedule(**kw)
        except (TypeError, ValueError) as e:
            raise ValueError(f"sgdr_schedule: cosine_kwargs[{i}]: {e}") from None
        cycles.append({f.name: getattr(full, f.name) for f in dataclasses.fields(full)})
    if not cycles:
        raise ValueError("sgdr_schedule: cosine_kwargs must hold at least one cycle, got none.")
    return SGDRSchedule(tuple(cycles))


__all__ = [
    "SGDRSchedule",
    "WarmupConstantSchedule",
    "WarmupCosineDecaySchedule",
    "WarmupExponentialDecaySchedule",
    "sgdr_schedule",
    "warmup_constant_schedule",
    "warmup_cosine_decay_schedule",
    "warmup_exponential_decay_schedule",
]
