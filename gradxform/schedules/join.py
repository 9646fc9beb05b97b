"""Joining schedules end to end (`join_schedules`), keeping the pieces' arguments as data."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from gradxform.core import Schedule, is_schedule
from gradxform.schedules._util import BaseSchedule, check_int


def split_nested(changes: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """``{"0.peak_value": x}`` -> ``{0: {"peak_value": x}}`` (for nested dynamic arguments)."""
    out: dict[int, dict[str, Any]] = {}
    for key, value in changes.items():
        index, _, rest = key.partition(".")
        out.setdefault(int(index), {})[rest] = value
    return out


@dataclasses.dataclass(frozen=True, repr=False, eq=False)
class JoinedSchedule(BaseSchedule):
    """See `join_schedules`. The numeric arguments of the pieces that are `Schedule`\\ s
    are this schedule's dynamic arguments, named ``"<index>.<name>"``."""

    schedules: tuple[Callable[[Any], Any], ...]
    boundaries: tuple[int, ...]
    factory = "join_schedules"

    def dynamic_args(self) -> dict[str, Any]:
        return {
            f"{i}.{k}": v
            for i, s in enumerate(self.schedules)
            if isinstance(s, Schedule)
            for k, v in s.dynamic_args().items()
        }

    def replace(self, **changes: Any) -> JoinedSchedule:
        nested = split_nested(changes)
        pieces = tuple(s.replace(**nested[i]) if i in nested else s for i, s in enumerate(self.schedules))
        return dataclasses.replace(self, schedules=pieces)

    def __call__(self, count: Any) -> jax.Array:
        t = jnp.asarray(count)
        out = self.schedules[0](t)
        for boundary, piece in zip(self.boundaries, self.schedules[1:]):
            out = jnp.where(t < boundary, out, piece(t - boundary))
        return out


def join_schedules(schedules: Sequence[Callable[[Any], Any]], boundaries: Sequence[int]) -> JoinedSchedule:
    """Runs schedules one after the other, each restarting its count at its boundary.

    From ``boundaries[i - 1]`` on, the value is ``schedules[i](t - boundaries[i - 1])``.

    Args:
      schedules: the pieces, one more than the boundaries; `Schedule`\\ s keep their
        arguments as data (set them as ``"learning_rate.<index>.<name>"``).
      boundaries: the steps at which to switch, non-decreasing integers >= 0.

    Returns:
      A `JoinedSchedule`.

    Raises:
      ValueError: if a piece is not callable, the lengths do not match, or a boundary is
        negative, not an integer, or smaller than the one before.

    Example:
      >>> import gradxform as gx
      >>> s = gx.schedules.join_schedules(
      ...     [gx.schedules.constant_schedule(1.0), gx.schedules.linear_schedule(1.0, 0.0, 10)], [5])
      >>> [float(s(t)) for t in (4, 5, 10)]
      [1.0, 1.0, 0.5]
    """
    owner = "join_schedules"
    schedules = tuple(schedules)
    for i, s in enumerate(schedules):
        if not is_schedule(s):
            raise ValueError(f"{owner}: schedules[{i}] must be a function of the step, got {type(s).__name__} {s!r}.")
    marks = tuple(check_int(owner, f"boundaries[{i}]", b, 0) for i, b in enumerate(boundaries))
    if len(schedules) != len(marks) + 1:
        raise ValueError(
            f"{owner}: give one more schedule than boundaries, got {len(schedules)} schedules and {len(marks)} boundaries."
        )
    if any(b < a for a, b in zip(marks, marks[1:])):
        raise ValueError(f"{owner}: boundaries must be non-decreasing, got boundaries={list(boundaries)!r}.")
    return JoinedSchedule(schedules, marks)


__all__ = ["JoinedSchedule", "join_schedules"]
