"""``inject_hyperparams``: Optax's way of making hyperparameters data, for code written for it,
and ``inject_stateful_hyperparams`` for schedules that keep a state of their own.

gradxform's own factories keep their hyperparameters in the state already (see
`set_hyperparams`); this wrapper gives the same to any other factory (Optax's, a user's) and
accepts Optax's spelling around gradxform's, so ``opt_state.hyperparams["learning_rate"]``
works whichever library built the optimizer.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradxform._factory import _body_of, _f32, _inject, _nested
from gradxform.core import (
    HYPERPARAM_DTYPE,
    GradientTransformation,
    Spec,
    as_arrays,
    call_update,
    cast_like,
    is_schedule,
    is_transformation,
    new_count,
    safe_increment,
)


def _is_float_value(value: Any) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, float):
        return True
    return isinstance(value, (jax.Array, np.ndarray, np.floating)) and jnp.issubdtype(jnp.asarray(value).dtype, jnp.floating) and jnp.ndim(value) == 0


def _bound_arguments(name: str, signature: inspect.Signature, args: tuple, kwargs: dict) -> dict[str, Any]:
    """The factory's arguments by name, defaults filled in; a mismatch is a TypeError naming ``name``."""
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as e:
        raise TypeError(f"{name}: {e}") from None
    bound.apply_defaults()
    return dict(bound.arguments)


def inject_hyperparams(
    inner_factory: Callable[..., Any],
    static_args: str | Iterable[str] = (),
    hyperparam_dtype: Any = None,
) -> Callable[..., GradientTransformation]:
    """Wraps a factory so that its float hyperparameters (or schedules) live in the state.

    ``inject_hyperparams(factory)(**kwargs)`` is ``factory(**kwargs)`` whose state holds each
    float hyperparameter under ``state.hyperparams[name]``: read it, or replace the value
    there (``state.hyperparams["learning_rate"] = 1e-4``) or with `set_hyperparams`, and the
    next update uses it without recompiling. A callable argument is a schedule of the step
    count, evaluated every update, as in Optax.

    - For gradxform's own factories (``gx.adam``, ...) this is the factory itself: their
      declared hyperparameters are already data, with their ranges checked.
    - For any other factory (Optax's, a user's), the float arguments and callables are
      made data, in float32; booleans, integers, strings, dtypes and ``static_args`` stay
      Python values, so a factory may branch on them. (Optax also makes integer arguments
      data; here they stay static, since a factory usually needs them as Python ints.)

    Args:
      inner_factory: a function returning a gradient transformation.
      static_args: names of arguments to keep as Python values (a name or several).
      hyperparam_dtype: the dtype of the injected values; gradxform keeps hyperparameters in
        float32, so only ``None`` or float32 are accepted.

    Returns:
      A factory with ``inner_factory``'s arguments, returning a `GradientTransformation`
      whose state is a `HyperparamsState` (``.hyperparams``, ``.inner_state``).

    Raises:
      ValueError: if ``static_args`` names an argument ``inner_factory`` does not have, or
        ``hyperparam_dtype`` is not float32.
      TypeError: if ``inner_factory`` is not callable.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.inject_hyperparams(gx.sgd)(learning_rate=0.1)
      >>> state = tx.init(jnp.zeros(2))
      >>> state.hyperparams["learning_rate"] = jnp.asarray(0.5)
      >>> tx.update(jnp.ones(2), state)[0].tolist()
      [-0.5, -0.5]
    """
    if not callable(inner_factory):
        raise TypeError(f"inject_hyperparams: inner_factory must be a factory function, got {inner_factory!r}.")
    static = {static_args} if isinstance(static_args, str) else set(static_args)
    signature = inspect.signature(inner_factory)
    unknown = static - set(signature.parameters)
    if unknown:
        raise ValueError(
            f"inject_hyperparams: static_args {sorted(unknown)} are not arguments of "
            f"{getattr(inner_factory, '__name__', inner_factory)!r}, whose arguments are {list(signature.parameters)}."
        )
    if hyperparam_dtype is not None and jnp.dtype(hyperparam_dtype) != HYPERPARAM_DTYPE:
        raise ValueError(
            f"inject_hyperparams: gradxform keeps hyperparameters in float32, got hyperparam_dtype={hyperparam_dtype!r}."
        )
    if hasattr(inner_factory, "__gradxform_hyperparams__"):
        return inner_factory
    name = f"inject_hyperparams({getattr(inner_factory, '__name__', 'factory')})"

    @functools.wraps(inner_factory)
    def wrapped(*args: Any, **kwargs: Any) -> GradientTransformation:
        arguments = _bound_arguments(name, signature, args, kwargs)
        dynamic = [
            a for a, v in arguments.items() if a not in static and (_is_float_value(v) or is_schedule(v))
        ]

        def build(values: dict[str, Any]) -> Any:
            call = inspect.BoundArguments(signature, values)  # type: ignore[arg-type]
            return inner_factory(*call.args, **call.kwargs)

        return _inject(name, arguments, dynamic, build)

    return wrapped


class InjectStatefulHyperparamsState(NamedTuple):
    """State of `inject_stateful_hyperparams` when a stateful schedule is given (Optax's fields).

    Attributes:
      count: int32 scalar, updates applied so far (saturating); plain schedules use it.
      hyperparams: float32 scalars by name: the values the latest update used (before the
        first update: those the first will use). Constants may be replaced between steps.
      hyperparams_states: each stateful schedule's own state, by argument name.
      inner_state: the state of the wrapped transformation.
    """

    count: jax.Array
    hyperparams: dict[str, jax.Array]
    hyperparams_states: dict[str, Any]
    inner_state: Any


def _is_stateful_schedule(value: Any) -> bool:
    """Optax's ``StatefulSchedule`` protocol: ``init()``, ``update(state, **extra)`` and
    ``__call__(state, **extra)``."""
    return (
        callable(value)
        and callable(getattr(value, "init", None))
        and callable(getattr(value, "update", None))
        and not is_transformation(value)
        and not isinstance(value, type)
    )


def inject_stateful_hyperparams(
    inner_factory: Callable[..., Any],
    static_args: str | Iterable[str] = (),
    hyperparam_dtype: Any = None,
) -> Callable[..., GradientTransformation]:
    """`inject_hyperparams` that also takes stateful schedules (Optax's ``StatefulSchedule``).

    A stateful schedule is an object with ``init() -> state``, ``update(state, **extra) ->
    state`` and ``__call__(state, **extra) -> value``: its value may depend on what the
    training loop passes to ``update`` as extra keyword arguments (a loss, say), not only
    on the step. Each update evaluates it on its current state and then advances the state,
    as Optax does. Without any stateful schedule among the arguments, this is exactly
    `inject_hyperparams`. (Optax 0.2.8 keeps this name as a deprecated alias of its
    ``inject_hyperparams``, which accepts both; here it is not deprecated.)

    Args:
      inner_factory: a function returning a gradient transformation.
      static_args: names of arguments to keep as Python values (a name or several).
      hyperparam_dtype: the dtype of the injected values; only ``None`` or float32.

    Returns:
      A factory with ``inner_factory``'s arguments. With a stateful schedule among them, its
      transformations' state is an `InjectStatefulHyperparamsState`; otherwise the
      `HyperparamsState` of `inject_hyperparams`.

    Raises:
      ValueError: as `inject_hyperparams` (an unknown ``static_args`` name, a dtype other
        than float32).
      TypeError: if ``inner_factory`` is not callable, or at the call if the arguments do
        not fit its signature or a stateful schedule fails at its first value.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> class Halving:  # halves the learning rate whenever update gets bad=True
      ...     def init(self):
      ...         return jnp.asarray(0.5)
      ...     def update(self, state, bad=False, **extra):
      ...         return jnp.where(bad, state / 2, state)
      ...     def __call__(self, state, **extra):
      ...         return state
      >>> tx = gx.inject_stateful_hyperparams(gx.sgd)(learning_rate=Halving())
      >>> state = tx.init(jnp.zeros(1))
      >>> u, state = tx.update(jnp.ones(1), state, bad=True)
      >>> u.tolist(), tx.update(jnp.ones(1), state)[0].tolist()
      ([-0.5], [-0.25])
    """
    plain = inject_hyperparams(inner_factory, static_args, hyperparam_dtype)
    static = {static_args} if isinstance(static_args, str) else set(static_args)
    signature = inspect.signature(inner_factory)
    name = f"inject_stateful_hyperparams({getattr(inner_factory, '__name__', 'factory')})"

    @functools.wraps(inner_factory)
    def wrapped(*args: Any, **kwargs: Any) -> GradientTransformation:
        arguments = _bound_arguments(name, signature, args, kwargs)
        stateful = {a: v for a, v in arguments.items() if a not in static and _is_stateful_schedule(v)}
        if not stateful:
            return plain(*args, **kwargs)
        schedules = {a: v for a, v in arguments.items() if a not in static and a not in stateful and is_schedule(v)}
        constants = [a for a, v in arguments.items() if a not in static and _is_float_value(v)]

        def values_at(count: jax.Array, hyper: dict[str, Any], states: dict[str, Any], extra: dict[str, Any]) -> dict[str, jax.Array]:
            values = {a: _f32(hyper[a]) for a in constants}
            values.update({a: _f32(s(count)) for a, s in schedules.items()})
            values.update({a: _f32(s(states[a], **extra)) for a, s in stateful.items()})
            return values

        def build(values: dict[str, Any]) -> Any:
            call = inspect.BoundArguments(signature, {**arguments, **values})  # type: ignore[arg-type]
            # Nested, a gradxform factory builds its composition directly: the state has the
            # same structure whether the values are numbers (here) or traced (in update).
            with _nested():
                return inner_factory(*call.args, **call.kwargs)

        def first_states() -> dict[str, Any]:
            return {a: s.init() for a, s in stateful.items()}

        try:
            first = values_at(new_count(), {a: arguments[a] for a in constants}, first_states(), {})
        except Exception as e:
            raise TypeError(
                f"{name}: a schedule failed at its first value with {type(e).__name__}: {e}. A stateful "
                "schedule has init(), update(state, **extra) and __call__(state, **extra)."
            ) from e
        eager = build(first)

        def init(params):
            count, states = new_count(), first_states()
            hyper = values_at(count, {a: arguments[a] for a in constants}, states, {})
            return InjectStatefulHyperparamsState(count, hyper, states, eager.init(as_arrays(params, f"{name}.init()", "params")))

        def update(updates, state, params=None, **extra):
            if not isinstance(state, InjectStatefulHyperparamsState):
                raise ValueError(
                    f"{name}.update() was given a state of type {type(state).__name__}; expected the "
                    f"InjectStatefulHyperparamsState returned by its init()."
                )
            values = values_at(state.count, state.hyperparams, state.hyperparams_states, extra)
            states = {a: s.update(state.hyperparams_states[a], **extra) for a, s in stateful.items()}
            updates = as_arrays(updates, f"{name}.update()", "updates")
            new_updates, inner_state = call_update(build(values), updates, state.inner_state, params, extra)
            return cast_like(new_updates, updates), InjectStatefulHyperparamsState(
                safe_increment(state.count), values, states, inner_state
            )

        spec = Spec(name, arguments, _body_of(eager), tuple([*constants, *schedules, *stateful]))
        return GradientTransformation(init, update, spec)

    return wrapped
