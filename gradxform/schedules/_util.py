"""Shared pieces of the schedule classes: a readable repr, argument checks, step casting.

Every schedule class is a frozen dataclass whose fields are the arguments of the public
function that builds it (``factory``), so a schedule is rebuilt from its type name and its
fields, and its repr reads like the call that made it.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from gradxform.core import Interval, Schedule, check_hyperparam, is_schedule

FLOAT = jnp.float32


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return repr(value)
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        text = f"{float(value):g}"
        return text if any(c in text for c in ".ein") else text + ".0"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_fmt(k)}: {_fmt(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (tuple, list)):
        shown = [_fmt(v) for v in value[:8]] + (["..."] if len(value) > 8 else [])
        return "[" + ", ".join(shown) + "]"
    if isinstance(value, (jax.Array, np.ndarray)) and np.ndim(value) == 0 and not isinstance(value, jax.core.Tracer):
        return f"{float(value):g}"
    if isinstance(value, Schedule):
        return repr(value)
    if callable(value):
        return f"<function {getattr(value, '__name__', type(value).__name__)}>"
    return repr(value)


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


class BaseSchedule(Schedule):
    """Base of the library's schedules: a repr that reads like the public call.

    Subclasses are ``@dataclasses.dataclass(frozen=True, repr=False, eq=False)`` and set ``factory``
    to the public function's name. Fields named in ``dynamic`` whose value is ``None``
    are structural ("off") and are not kept in the state.
    """

    factory: ClassVar[str] = ""

    def __repr__(self) -> str:
        args = ", ".join(f"{f.name}={_fmt(getattr(self, f.name))}" for f in dataclasses.fields(self))  # type: ignore[arg-type]
        return f"{self.factory or type(self).__name__}({args})"

    def _key(self) -> tuple[Any, ...]:
        return (type(self), *(_freeze(getattr(self, f.name)) for f in dataclasses.fields(self)))  # type: ignore[arg-type]

    # Fields may be dicts and lists (plain data for configs), so equality and hashing
    # (jax.jit hashes the functions it compiles) go through a frozen copy of them.
    def __eq__(self, other: object) -> bool:
        return isinstance(other, BaseSchedule) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def dynamic_args(self) -> dict[str, Any]:
        """The current values of the numeric fields named in ``dynamic`` (``None`` skipped)."""
        return {n: getattr(self, n) for n in self.dynamic if getattr(self, n) is not None}


def public_function(cls: Any) -> Callable[..., Any] | None:
    """The public function that builds the schedule class ``cls`` (named by its
    ``factory``), if it takes each field of ``cls`` as an argument and needs no other;
    else ``None``. The class alone skips the function's checks."""
    from gradxform import schedules

    function = getattr(schedules, getattr(cls, "factory", "") or "", None)
    if not inspect.isfunction(function) or not dataclasses.is_dataclass(cls):
        return None
    fields = {f.name for f in dataclasses.fields(cls)}
    params = inspect.signature(function).parameters
    others_optional = all(p.default is not p.empty for name, p in params.items() if name not in fields)
    return function if fields <= set(params) and others_optional else None


def checked(schedule: Any) -> Any:
    """``schedule`` built again from its fields by its public function (its nested
    schedules first), so that fields set after construction (from a config, or with
    ``set_hyperparams``) go through the function's checks. A schedule without such a
    function is returned as it is.

    Raises:
      ValueError: with the public function's message, for a field it rejects.
    """
    function = public_function(type(schedule))
    if function is None:
        return schedule

    def rebuilt(value: Any) -> Any:
        if isinstance(value, Schedule):
            return checked(value)
        if isinstance(value, (tuple, list)) and any(isinstance(v, Schedule) for v in value):
            return type(value)(rebuilt(v) for v in value)
        return value

    return function(**{f.name: rebuilt(getattr(schedule, f.name)) for f in dataclasses.fields(schedule)})


def step(count: Any) -> jax.Array:
    """The step count as float32 (exact up to 2**24, and never overflowing int32)."""
    return jnp.asarray(count).astype(FLOAT)


def check_number(owner: str, name: str, value: Any, allowed: Interval) -> None:
    """A schedule's numeric argument: a finite number in ``allowed`` (no schedules)."""
    if is_schedule(value):
        raise ValueError(f"{owner}: {name} must be a number, got a schedule {name}={value!r}.")
    check_hyperparam(owner, name, value, allowed)
    if not isinstance(value, jax.core.Tracer) and not math.isfinite(float(np.asarray(value))):
        raise ValueError(f"{owner}: {name} must be finite, got {name}={value!r}.")


def check_int(owner: str, name: str, value: Any, minimum: int = 0) -> int:
    """A step-count argument: a Python integer >= ``minimum``; returned as ``int``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{owner}: {name} must be an integer >= {minimum}, got {type(value).__name__} {name}={value!r}.")
    if value < minimum:
        raise ValueError(f"{owner}: {name} must be an integer >= {minimum}, got {name}={value!r}.")
    return int(value)


def check_scales(owner: str, boundaries_and_scales: Any) -> dict[int, float] | None:
    """Validates an Optax-style ``{step: scale}`` dict: integer steps >= 0, scales >= 0."""
    if boundaries_and_scales is None:
        return None
    if not isinstance(boundaries_and_scales, Mapping):
        raise ValueError(
            f"{owner}: boundaries_and_scales must be a dict {{step: scale}}, got "
            f"{type(boundaries_and_scales).__name__} boundaries_and_scales={boundaries_and_scales!r}."
        )
    out = {}
    for b, s in boundaries_and_scales.items():
        b = check_int(owner, f"boundaries_and_scales key {b!r}", b, 0)
        check_number(owner, f"boundaries_and_scales[{b}]", s, Interval(0.0))
        out[b] = float(s)
    return dict(sorted(out.items()))
