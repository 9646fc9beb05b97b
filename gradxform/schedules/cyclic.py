"""Cyclical schedules (Smith, 2017): triangular, triangular2 and exp_range."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from gradxform.core import REAL, Interval
from gradxform.schedules._util import BaseSchedule, check_int, check_number, step

MODES = ("triangular", "triangular2", "exp_range")


@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class CyclicSchedule(BaseSchedule):
    """See `cyclic_schedule`."""

    init_value: float
    peak_value: float
    step_size_up: int = 2000
    step_size_down: int | None = None
    mode: str = "triangular"
    gamma: float = 1.0
    dynamic = ("init_value", "peak_value", "gamma")
    factory = "cyclic_schedule"

    def __call__(self, count: Any) -> jax.Array:
        t = step(count)
        up = self.step_size_up
        length = up + (up if self.step_size_down is None else self.step_size_down)
        cycle = jnp.floor(1 + t / length)
        x = 1 + t / length - cycle
        rise = up / length
        shape = jnp.where(x <= rise, x / rise, (x - 1) / (rise - 1))
        amplitude = (self.peak_value - self.init_value) * shape
        if self.mode == "triangular2":
            amplitude = amplitude / jnp.power(2.0, cycle - 1)
        elif self.mode == "exp_range":
            amplitude = amplitude * jnp.power(jnp.asarray(self.gamma, jnp.float32), t)
        return self.init_value + amplitude


def cyclic_schedule(
    init_value: float,
    peak_value: float,
    step_size_up: int = 2000,
    step_size_down: int | None = None,
    mode: str = "triangular",
    gamma: float = 1.0,
) -> CyclicSchedule:
    """Cyclical learning rate: linear rise from ``init_value`` to ``peak_value`` and back.

    A cycle rises for ``step_size_up`` steps and falls for ``step_size_down``. The
    amplitude ``peak_value - init_value`` is kept (``"triangular"``), halved every cycle
    (``"triangular2"``), or multiplied by ``gamma**t`` at step ``t`` (``"exp_range"``).
    PyTorch's ``CyclicLR`` with ``base_lr=init_value`` and ``max_lr=peak_value``.

    Args:
      init_value: the value at the bottom of a cycle.
      peak_value: the value at the top of the first cycle.
      step_size_up: steps from bottom to top, an integer >= 1.
      step_size_down: steps from top to bottom, an integer >= 1 (default: ``step_size_up``).
      mode: ``"triangular"``, ``"triangular2"`` or ``"exp_range"``.
      gamma: the per-step decay of the amplitude in ``"exp_range"`` mode, in (0, 1].

    Returns:
      A `CyclicSchedule`.

    Raises:
      ValueError: for an unknown mode, a step size < 1, ``gamma`` outside (0, 1] or a
        non-finite value.

    References:
      Smith, "Cyclical Learning Rates for Training Neural Networks", WACV 2017.
      https://arxiv.org/abs/1506.01186

    Example:
      >>> import gradxform as gx
      >>> s = gx.schedules.cyclic_schedule(0.0, 1.0, step_size_up=2, mode="triangular2")
      >>> [float(s(t)) for t in range(7)]
      [0.0, 0.5, 1.0, 0.5, 0.0, 0.25, 0.5]
    """
    owner = "cyclic_schedule"
    check_number(owner, "init_value", init_value, REAL)
    check_number(owner, "peak_value", peak_value, REAL)
    up = check_int(owner, "step_size_up", step_size_up, 1)
    down = None if step_size_down is None else check_int(owner, "step_size_down", step_size_down, 1)
    if mode not in MODES:
        raise ValueError(f"{owner}: mode must be one of {MODES}, got mode={mode!r}.")
    check_number(owner, "gamma", gamma, Interval(0.0, 1.0, low_closed=False))
    return CyclicSchedule(init_value, peak_value, up, down, mode, gamma)


__all__ = ["CyclicSchedule", "cyclic_schedule"]
