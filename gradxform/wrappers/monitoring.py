"""Measurements of the update stream kept in the state: Optax's ``snapshot``, ``monitor``
and ``measure_with_ema``. The updates pass through unchanged (``measure_with_ema`` alone
outputs its average; it is meant as a measure of ``monitor``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradxform._factory import transformation
from gradxform.core import (
    UNIT,
    GradientTransformation,
    Updates,
    call_update,
    check_function,
    check_hyperparam,
    is_transformation,
)

Measure = Callable[[Updates], Any]


class SnapshotState(NamedTuple):
    """State of `snapshot`: ``measurement`` maps the measure's name to its latest value
    (at ``init``, the measure of the parameters)."""

    measurement: dict[str, Any]


@transformation()
def snapshot(measure_name: str, measure: Measure) -> GradientTransformation:
    """Stores ``measure(updates)`` in the state under ``measure_name``; updates pass unchanged.

    Optax's ``snapshot``, for looking at the updates in the middle of a chain (the norm
    before clipping, say): read it as ``state[i].measurement[measure_name]``.

    Args:
      measure_name: the key of the measurement, a non-empty string.
      measure: a function of the updates returning arrays.

    Returns:
      A transformation with `SnapshotState`.

    Raises:
      ValueError: if ``measure_name`` is not a non-empty string.
      TypeError: if ``measure`` is not a function.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.chain(gx.snapshot("norm", gx.global_norm), gx.clip_by_global_norm(1.0))
      >>> _, state = tx.update(jnp.array([3.0, 4.0]), tx.init(jnp.zeros(2)))
      >>> float(state[0].measurement["norm"])
      5.0
    """
    if not isinstance(measure_name, str) or not measure_name:
        raise ValueError(f"snapshot: measure_name must be a non-empty string, got measure_name={measure_name!r}.")
    check_function("snapshot", "measure", measure, "of the updates")

    def update(updates, state, params=None, **extra):
        return updates, SnapshotState({measure_name: measure(updates)})

    return GradientTransformation(lambda params: SnapshotState({measure_name: measure(params)}), update)


class MonitorState(NamedTuple):
    """State of `monitor`.

    Attributes:
      measurements: the latest value of each measure, by name.
      measure_states: the state of each measure that is a transformation (an empty state
        for a function), in the order of ``measures``.
    """

    measurements: dict[str, Any]
    measure_states: tuple[Any, ...]


def _as_measure(measure: Any) -> GradientTransformation:
    if is_transformation(measure):
        return measure
    return GradientTransformation(lambda params: (), lambda u, s, p=None, **extra: (measure(u), s))


@transformation()
def monitor(measures: Mapping[str, GradientTransformation | Measure]) -> GradientTransformation:
    """Keeps several measurements of the updates in the state; updates pass unchanged.

    Optax's ``monitor``: each measure is a function of the updates or a transformation
    whose output is the measurement (such as `measure_with_ema`), given the updates,
    parameters and extra arguments. Unlike Optax's, ``init`` already holds every
    measurement (zeros of the right shapes), so the state keeps one structure and a jitted
    loop can carry it.

    Args:
      measures: a non-empty mapping from name to measure.

    Returns:
      A transformation with `MonitorState`.

    Raises:
      ValueError: if ``measures`` is not a non-empty mapping with string keys.
      TypeError: if a measure is neither a function nor a transformation (naming it).

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.monitor({"norm": gx.global_norm, "ema": gx.measure_with_ema(gx.global_norm, 0.5)})
      >>> _, state = tx.update(jnp.array([3.0, 4.0]), tx.init(jnp.zeros(2)))
      >>> float(state.measurements["norm"]), float(state.measurements["ema"])
      (5.0, 5.0)
    """
    if not isinstance(measures, Mapping) or not measures or not all(isinstance(k, str) for k in measures):
        raise ValueError(f"monitor: measures must be a non-empty mapping from name (str) to measure, got {measures!r}.")
    for name, m in measures.items():
        if not is_transformation(m):
            check_function("monitor", f"measures[{name!r}]", m, "of the updates")
    stages = {name: _as_measure(m) for name, m in measures.items()}

    def measure_all(updates, states, params, extra):
        out, new_states = {}, []
        for (name, tx), s in zip(stages.items(), states):
            out[name], s = call_update(tx, updates, s, params, extra)
            new_states.append(s)
        return out, tuple(new_states)

    def init(params):
        states = tuple(tx.init(params) for tx in stages.values())
        shapes, _ = jax.eval_shape(lambda p, s: measure_all(p, s, p, {}), params, states)
        return MonitorState(jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), shapes), states)

    def update(updates, state, params=None, **extra):
        out, states = measure_all(updates, state.measure_states, params, extra)
        return updates, MonitorState(out, states)

    return GradientTransformation(init, update)


@transformation()
def measure_with_ema(
    measure: Measure, decay: float, debias: bool = True, accumulator_dtype: Any = None
) -> GradientTransformation:
    """An exponential moving average of ``measure(updates)``, output as the updates.

    Optax's ``measure_with_ema``, meant as a measure of `monitor`: it outputs the average
    (debiased as Adam's moments when ``debias``), not the updates.

    Args:
      measure: a function of the updates returning arrays.
      decay: the decay of the average, in [0, 1).
      debias: divide by ``1 - decay**t``.
      accumulator_dtype: dtype of the average (default: the measurement's, float32 for a
        boolean or integer one).

    Returns:
      A transformation whose output is the averaged measurement.

    Raises:
      TypeError: if ``measure`` is not a function.
      ValueError: if ``decay`` is not in [0, 1).

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.measure_with_ema(gx.global_norm, decay=0.5, debias=False)
      >>> float(tx.update(jnp.array([3.0, 4.0]), tx.init(jnp.zeros(2)))[0])
      2.5
    """
    from gradxform.combinators import chain
    from gradxform.primitives.elementwise import stateless
    from gradxform.primitives.moments import ema

    check_function("measure_with_ema", "measure", measure, "of the updates")
    # Checked here rather than declared as a hyperparameter kept in the state: that state
    # casts the output like the updates, and this output is a measurement of another shape.
    check_hyperparam("measure_with_ema", "decay", decay, UNIT)
    average = ema(decay, debias=debias, accumulator_dtype=accumulator_dtype)
    # The average has the measurement's shape, not the parameters'. A boolean or integer
    # measurement (a clipping indicator) is averaged in float32, as all state of such
    # leaves is (`gradxform.core.state_dtype`).
    on_measurement = GradientTransformation(lambda params: average.init(measure(params)), average.update)
    return chain(stateless(lambda updates, params: measure(updates)), on_measurement)
