"""Public factories, and hyperparameters kept as data in the optimizer state.

Every public transformation is made by a function decorated with `transformation`, which
declares its scalar hyperparameters and their allowed ranges. The decorator

1. validates those hyperparameters eagerly, naming the argument and value, and checks that
   every argument choosing a state's dtype (``mu_dtype``, ``accumulator_dtype``, ...) is a
   floating-point dtype and every argument typed ``bool`` is a bool;
2. records a `Spec` (name, arguments, the composition it expands to) for ``describe`` and
   configs, and registers the name for ``from_config``;
3. when the user calls the factory directly (not from inside another factory), keeps the
   hyperparameters in the state as float32 scalars. Each ``update`` rebuilds the
   composition, inside the trace, from the values in the state. Changing them between steps
   is then a change of data, not of code, and the compiled step is reused.

A hyperparameter given as a schedule is evaluated at the stage's own step count; the
schedule's numeric arguments (a `Schedule`'s ``dynamic`` fields) are kept in the state too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import math
import threading
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradxform.core import (
    COUNT_DTYPE,
    HYPERPARAM_DTYPE,
    as_arrays,
    GradientTransformation,
    Interval,
    REAL,
    Schedule,
    Spec,
    call_update,
    cast_like,
    check_hyperparam,
    check_state_dtype,
    is_schedule,
    is_transformation,
    is_tracer,
    new_count,
    path_str,
    safe_increment,
)

REGISTRY: dict[str, Callable[..., Any]] = {}

# Each factory's declared hyperparameters and their allowed ranges. A state does not record
# which factory made it (it holds arrays only), so set_hyperparams finds the factories whose
# hyperparameters are exactly the state's (else a superset of them) and accepts a value that
# one of them allows: this stops a negative learning rate or b1 = 1.5.
_DECLARED: dict[str, dict[str, Interval]] = {}

# The latest schedules given to factories (distinct by value, oldest dropped first). A state
# keeps only a schedule's dynamic arguments, so set_hyperparams finds the schedules whose
# arguments match the state's, to check a change of them as the schedule's public function
# and the factory would (a cosine decay's alpha < 0 decays a learning rate below zero).
_SCHEDULES: dict[Schedule, None] = {}
_SCHEDULES_KEPT = 256

_local = threading.local()


@contextlib.contextmanager
def _nested():
    _local.depth = getattr(_local, "depth", 0) + 1
    try:
        yield
    finally:
        _local.depth -= 1


def _is_nested() -> bool:
    return getattr(_local, "depth", 0) > 0


class HyperparamsState(NamedTuple):
    """State of a transformation whose hyperparameters are data.

    Attributes:
      count: int32 scalar, updates applied so far (saturating); schedules are evaluated at it.
      hyperparams: float32 scalars by name: the values used by the latest update (before the
        first update: the values the first update will use).
      schedule_args: for each schedule-valued hyperparameter, its numeric arguments
        (float32 scalars) by name.
      inner_state: the state of the composition itself.
    """

    count: jax.Array
    hyperparams: dict[str, jax.Array]
    schedule_args: dict[str, dict[str, jax.Array]]
    inner_state: Any


def _f32(x: Any) -> jax.Array:
    return jnp.asarray(x, dtype=HYPERPARAM_DTYPE)


def transformation(
    hyperparams: Mapping[str, Interval] | None = None,
    *,
    name: str | None = None,
) -> Callable[[Callable[..., GradientTransformation]], Callable[..., GradientTransformation]]:
    """Declares a public transformation factory and its scalar hyperparameters.

    Args:
      hyperparams: the factory's arguments that are scalar hyperparameters, each with its
        allowed `Interval`. Such an argument may be a number, a schedule or ``None``
        (``None`` means "off" and is structural, not data).
      name: the public name, if not the function's.

    Returns:
      A decorator. The decorated factory returns a `GradientTransformation` with a `Spec`.

    Inside a factory, hyperparameters may be tracers: compute with them using ``jnp``,
    never branch on their values in Python.

    A hyperparameter given as a number or a schedule is kept in the state (see
    `set_hyperparams`); one given as a JAX array, concrete or traced, is used as given and
    not kept, as when Optax's ``inject_hyperparams`` rebuilds the optimizer with each
    step's values.
    """
    declared = dict(hyperparams or {})

    def decorate(factory: Callable[..., GradientTransformation]) -> Callable[..., GradientTransformation]:
        public_name = name or factory.__name__
        sig = inspect.signature(factory)
        missing = set(declared) - set(sig.parameters)
        if missing:
            raise TypeError(f"{public_name}: declared hyperparameters {sorted(missing)} are not arguments")

        # Every argument that chooses the dtype of a state (mu_dtype, accumulator_dtype, ...).
        state_dtypes = [a for a in sig.parameters if a.endswith("_dtype") or a.startswith("dtype_")]
        # Flags typed ``bool``: a string such as "false" would be truthy and switch them on.
        flags = [a for a, p in sig.parameters.items() if p.annotation in ("bool", bool)]

        def build(arguments: dict[str, Any]) -> GradientTransformation:
            bound = inspect.BoundArguments(sig, arguments)  # type: ignore[arg-type]
            with _nested():
                return factory(*bound.args, **bound.kwargs)

        @functools.wraps(factory)
        def public(*args: Any, **kwargs: Any) -> GradientTransformation:
            try:
                bound = sig.bind(*args, **kwargs)
            except TypeError as e:
                raise TypeError(f"{public_name}(): {e}") from None
            bound.apply_defaults()
            arguments = dict(bound.arguments)
            for arg, allowed in declared.items():
                check_hyperparam(public_name, arg, arguments[arg], allowed)
            for arg in state_dtypes:
                check_state_dtype(public_name, arg, arguments[arg])
            for arg in flags:
                if not isinstance(arguments[arg], (bool, np.bool_)):
                    raise ValueError(
                        f"{public_name}: {arg} must be True or False, got "
                        f"{type(arguments[arg]).__name__} {arg}={arguments[arg]!r}."
                    )
            # A JAX array (or tracer) is the caller's to manage: Optax's inject_hyperparams
            # passes each step's values so, rebuilding the optimizer at every update. Kept in
            # the state, they would be ignored after init (and a traced call would expect
            # another state than an eager init made).
            dynamic = [
                a for a in declared if arguments[a] is not None and not isinstance(arguments[a], jax.Array)
            ]
            if _is_nested() or not dynamic:
                body = build(arguments)
                spec = Spec(public_name, arguments, _body_of(body), tuple(dynamic))
                if _is_nested():
                    return GradientTransformation(body.init, body.update, spec)
                return GradientTransformation(
                    lambda params: _own_buffers(body.init(as_arrays(params, f"{public_name}.init()", "params")), params),
                    _checked_update(public_name, body),
                    spec,
                )
            for arg in dynamic:
                _check_schedule_values(public_name, arg, arguments[arg], declared[arg])
            return _inject(public_name, arguments, dynamic, build, declared)

        public.__gradxform_hyperparams__ = tuple(declared)  # type: ignore[attr-defined]
        _DECLARED[public_name] = declared
        REGISTRY[public_name] = public
        return public

    return decorate


def _body_of(tx: GradientTransformation) -> GradientTransformation | None:
    """The composition a factory returned, or None for a leaf made from two functions."""
    return tx if getattr(tx, "spec", None) is not None else None


def _inject(
    public_name: str,
    arguments: dict[str, Any],
    dynamic: list[str],
    build: Callable[[dict[str, Any]], GradientTransformation],
    declared: Mapping[str, Interval] | None = None,
) -> GradientTransformation:
    schedules = {a: arguments[a] for a in dynamic if is_schedule(arguments[a])}
    constants = {a: arguments[a] for a in dynamic if a not in schedules}
    for s in schedules.values():
        _remember(s)

    def schedule_args() -> dict[str, dict[str, jax.Array]]:
        # Every schedule gets an entry (empty for a plain function), which is how the
        # state records that this hyperparameter follows a schedule.
        return {
            a: {k: _f32(v) for k, v in s.dynamic_args().items()} if isinstance(s, Schedule) else {}
            for a, s in schedules.items()
        }

    def current_values(count, hyper, sched_args) -> dict[str, jax.Array]:
        values = {a: hyper[a] for a in constants}
        for a, s in schedules.items():
            if isinstance(s, Schedule) and sched_args.get(a):
                s = s.replace(**sched_args[a])
            values[a] = _f32(s(count))
        return values

    # Built once eagerly: validates the whole composition and gives the state's structure.
    initial = {a: _first_value(public_name, a, arguments[a], (declared or {}).get(a, REAL)) if a in schedules else arguments[a] for a in dynamic}
    eager = build({**arguments, **initial})
    eager_hyper = tuple(dynamic)

    def init(params):
        count = new_count()
        sargs = schedule_args()
        hyper = current_values(count, {a: _f32(v) for a, v in constants.items()}, sargs)
        return _own_buffers(HyperparamsState(count, hyper, sargs, eager.init(as_arrays(params, f"{public_name}.init()", "params"))), params)

    def update(updates, state, params=None, **extra):
        if not isinstance(state, HyperparamsState):
            raise ValueError(
                f"{public_name}.update() was given a state of type {type(state).__name__}; "
                f"expected the HyperparamsState returned by {public_name}.init()."
            )
        if set(state.hyperparams) != set(eager_hyper) or set(state.schedule_args) != set(schedules):
            raise ValueError(
                f"{public_name}.update() was given the state of another optimizer: it holds "
                f"hyperparameters {sorted(state.hyperparams)}, {public_name} has {sorted(eager_hyper)}."
            )
        values = current_values(state.count, state.hyperparams, state.schedule_args)
        inner = build({**arguments, **values})
        updates = as_arrays(updates, f"{public_name}.update()", "updates")
        new_updates, inner_state = _call_checked(public_name, inner, eager, updates, state.inner_state, params, extra)
        new_updates = cast_like(new_updates, updates)
        return new_updates, HyperparamsState(
            safe_increment(state.count), values, state.schedule_args, inner_state
        )

    spec = Spec(public_name, arguments, _body_of(eager), tuple(dynamic))
    return GradientTransformation(init, update, spec)


def _remember(schedule: Any) -> None:
    """Keeps ``schedule`` (a `Schedule`) among the latest `_SCHEDULES`."""
    if not isinstance(schedule, Schedule):
        return
    with contextlib.suppress(TypeError):  # an unhashable schedule is not kept
        _SCHEDULES.pop(schedule, None)
        _SCHEDULES[schedule] = None
        if len(_SCHEDULES) > _SCHEDULES_KEPT:
            del _SCHEDULES[next(iter(_SCHEDULES))]


def _own_buffers(state: Any, params: Any) -> Any:
    """``state`` with every array that is also one of ``params``' leaves, or another leaf of
    ``state``, replaced by a copy (same dtype, sharding and commitment).

    A stage may start two counters from one zero, or keep the parameters themselves as its
    first snapshot; a jitted step that donates its state (``donate_argnums``, as with Flax's
    ``TrainState``) then fails with "Attempt to donate the same buffer twice" on its first
    call. Only an eager ``init`` can alias: under a trace the leaves are fresh values."""
    seen = {id(x) for x in jax.tree.leaves(params) if isinstance(x, jax.Array)}

    def own(x: Any) -> Any:
        if not isinstance(x, jax.Array) or is_tracer(x):
            return x
        if id(x) in seen:
            return jnp.copy(x)
        seen.add(id(x))
        return x

    return jax.tree.map(own, state)


def _check_schedule_values(public_name: str, arg: str, schedule: Any, allowed: Interval) -> None:
    """Raises ``ValueError`` if a `Schedule` given as ``arg`` leaves ``arg``'s range: if a
    value field (its initial, peak or end value) is outside it, or if the schedule is outside
    it at one of its `_event_steps` (a cosine decay with ``alpha < 0`` ends negative, a
    piecewise scale can push ``b1`` past 1). Only the value at step 0 is otherwise checked,
    and a learning rate decaying below zero would turn into gradient ascent."""
    if not isinstance(schedule, Schedule):
        return
    for field, value in schedule.dynamic_args().items():
        if field.endswith("value") and not is_tracer(value) and not allowed.contains(float(value)):
            raise ValueError(
                f"{public_name}: {arg} follows a schedule whose {field} is {value!r}, but {arg} "
                f"must be {allowed} at every step."
            )
    steps = _event_steps(schedule)
    try:
        values = jax.vmap(schedule)(jnp.asarray(steps, COUNT_DTYPE))
    except Exception:  # a subclass that cannot take a batch of steps: step 0 is still checked
        return
    if is_tracer(values):
        return
    for step, value in zip(steps, np.asarray(values, np.float64).ravel().tolist()):
        # Finite, as a constant must be: a polynomial decay with a negative power is inf at
        # its last step, which a learning rate's range would otherwise admit.
        if not math.isfinite(value) or not allowed.contains(value):
            must = f"{allowed}" if math.isfinite(value) else "finite"
            raise ValueError(
                f"{public_name}: {arg} follows a schedule that is {value:g} at step {step}, but {arg} "
                f"must be {must} at every step."
            )


_LAST_STEP = int(np.iinfo(np.int32).max)  # where step counts saturate


def _event_steps(schedule: Schedule) -> list[int]:
    """The steps where a schedule of the library can reach its extremes: 0, 1 (where a
    negative factor first flips the sign), the last step, and each step count among its
    fields (boundaries, warm-up and decay lengths, table lengths, also those of nested
    schedules) with its neighbours and their sum (a decay that starts after a warm-up).
    Between such steps each piece is monotone."""
    found: set[int] = set()

    def walk(value: Any) -> None:
        if isinstance(value, (bool, np.bool_)):
            return
        if isinstance(value, (int, np.integer)):
            found.add(int(value))
        elif isinstance(value, Mapping):
            for k, v in value.items():
                walk(k)
                walk(v)
        elif isinstance(value, (list, tuple)):
            found.add(len(value))
            for v in value:
                walk(v)
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            for field in dataclasses.fields(value):
                walk(getattr(value, field.name))

    walk(schedule)
    steps = {0, 1, _LAST_STEP, min(sum(found), _LAST_STEP)}
    steps |= {min(max(n + d, 0), _LAST_STEP) for n in found for d in (-1, 0, 1)}
    return sorted(steps)


def _first_value(public_name: str, arg: str, schedule: Callable[[Any], Any], allowed: Interval) -> jax.Array:
    """``schedule(0)`` as a float32 scalar, or an error naming the argument it was given as
    (also if the value is outside ``allowed``)."""
    try:
        value = _f32(schedule(new_count()))
    except Exception as e:
        raise TypeError(
            f"{public_name}: the schedule given as {arg} failed at step 0 with "
            f"{type(e).__name__}: {e}. A schedule is a function of the step count (an int32 "
            "scalar) that returns a number, such as gx.schedules.cosine_decay_schedule(1e-3, 1000)."
        ) from e
    if value.shape != ():
        raise ValueError(
            f"{public_name}: the schedule given as {arg} must return a scalar, got shape "
            f"{value.shape} at step 0."
        )
    if not is_tracer(value) and not allowed.contains(float(value)):
        raise ValueError(
            f"{public_name}: the schedule given as {arg} is {float(value):g} at step 0, but {arg} "
            f"must be {allowed} at every step."
        )
    return value


def _checked_update(public_name: str, body: GradientTransformation) -> Callable[..., Any]:
    """``body.update``, turning a failure caused by a foreign state (``multi_steps`` given its
    inner optimizer's state) into an error that says so; costs nothing when it succeeds."""

    def update(updates, state, params=None, **extra):
        return _call_checked(public_name, body, body, as_arrays(updates, f"{public_name}.update()", "updates"), state, params, extra)

    return update


INTEGER_GRADIENT = (
    "{name}: the gradient at {path} has the integer dtype {dtype}, and the update computed for it "
    "is {new_dtype}. Updates come back in the gradients' dtype, so it would be truncated to an "
    "integer (an SGD step with a learning rate below 1 would be zero). Cast "
    "the gradients to a floating-point dtype, or keep integer leaves out of the optimizer (for "
    "example with gx.masked)."
)


def _check_integer_gradients(public_name: str, updates: Any, new_updates: Any) -> None:
    """Raises ``ValueError`` naming the first leaf whose gradient is an integer (or bool) but
    whose update is floating point, which casting back to the gradient's dtype would truncate.
    A transformation whose updates are not shaped like its input (`lookahead` takes and gives
    a pair of trees) has no leaf-for-leaf comparison to make, and passes.

    The dtypes are static, so this costs nothing under ``jit``.
    """
    is_none = lambda x: x is None
    if jax.tree.structure(updates, is_leaf=is_none) != jax.tree.structure(new_updates, is_leaf=is_none):
        return

    def check(path: Any, u: Any, new: Any) -> None:
        if u is None or new is None:
            return
        if not jnp.issubdtype(u.dtype, jnp.inexact) and jnp.issubdtype(jnp.result_type(new), jnp.inexact):
            raise ValueError(
                INTEGER_GRADIENT.format(name=public_name, path=path_str(path), dtype=u.dtype, new_dtype=jnp.result_type(new))
            )

    jax.tree_util.tree_map_with_path(check, updates, new_updates, is_leaf=is_none)


def _check_float0(public_name: str, updates: Any) -> None:
    """Raises ``ValueError`` naming the first gradient of dtype ``float0``, the "no gradient"
    that ``jax.grad(..., allow_int=True)`` returns for an integer input, on which no
    arithmetic is defined (JAX's own error would come from deep inside the step)."""

    def check(path: Any, u: Any) -> None:
        if u is not None and getattr(u, "dtype", None) == jax.dtypes.float0:
            raise ValueError(
                f"{public_name}: the gradient at {path_str(path)} has dtype float0, the empty gradient "
                "jax.grad(..., allow_int=True) gives an integer input; no update can be computed from "
                "it. Leave integer leaves out of the differentiated parameters, or replace their "
                "gradients with zeros (jnp.zeros(shape, jnp.float32)) and keep them out of the "
                "optimizer with gx.masked."
            )

    jax.tree_util.tree_map_with_path(check, updates, is_leaf=lambda x: x is None)


def _call_checked(
    public_name: str,
    tx: GradientTransformation,
    eager: GradientTransformation,
    updates: Any,
    state: Any,
    params: Any,
    extra: dict[str, Any],
) -> tuple[Any, Any]:
    """``tx``'s update on arrays (Python-number leaves made arrays); if it fails as a foreign
    state makes it fail, the error says so, comparing ``state`` with ``eager.init``'s.
    Gradients no update can be computed from (float0), or whose update an integer dtype
    would truncate, are errors naming the leaf, for every factory-built transformation."""
    params = as_arrays(params, f"{public_name}.update()", "params")
    _check_float0(public_name, updates)
    try:
        new_updates, new_state = call_update(tx, updates, state, params, extra)
    except (AttributeError, IndexError, KeyError, TypeError) as e:  # a TypeError: tuple["label"]
        _check_inner_state(public_name, eager, updates, state, e)
        raise
    _check_integer_gradients(public_name, updates, new_updates)
    return new_updates, new_state


def _check_inner_state(
    public_name: str, eager: GradientTransformation, updates: Any, inner_state: Any, error: Exception
) -> None:
    """After ``update`` failed: raises a ``ValueError`` saying the state was made by another
    optimizer if its structure is not the one ``init`` gives (optimizers with the same
    hyperparameters, such as adam and nadam, pass the check on hyperparameter names, and
    wrappers keep no hyperparameters to check)."""
    try:
        expected = jax.tree.structure(jax.eval_shape(eager.init, updates))
    except Exception:  # the updates themselves are at fault: keep the original error
        return
    if expected != jax.tree.structure(inner_state):
        raise ValueError(
            f"{public_name}.update() was given a state that {public_name}.init() does not make "
            f"(was it made by another optimizer's init(), or by the optimizer this one wraps?). "
            f"Build it with {public_name}.init(params), or restore the "
            f"checkpoint this optimizer saved."
        ) from error


# --------------------------------------------------------------------------- reading and writing


def _collect(state: Any) -> list[tuple[tuple[tuple[str, str], ...], HyperparamsState]]:
    """Every HyperparamsState inside ``state``, with its path as (kind, key) pairs, kind
    being "key" (a dict key: a stage or group name), "index" or "field"."""
    found: list[tuple[tuple[tuple[str, str], ...], HyperparamsState]] = []

    def walk(node: Any, path: tuple[tuple[str, str], ...]) -> None:
        if isinstance(node, HyperparamsState):
            found.append((path, node))
            walk(node.inner_state, path)
        elif isinstance(node, tuple) and hasattr(node, "_fields"):
            for f in node._fields:
                walk(getattr(node, f), path + (("field", f),))
        elif isinstance(node, (tuple, list)):
            for i, child in enumerate(node):
                walk(child, path + (("index", str(i)),))
        elif isinstance(node, Mapping):
            for k, child in node.items():
                walk(child, path + (("key", str(k)),))

    walk(state, ())
    return found


_GENERIC = {"inner_state", "inner", "state"}


def _keys(found, with_schedule_args: bool):
    """Maps each hyperparameter to the name users see: the bare name where unique, else
    qualified by the stage names above it (``head/learning_rate``), else by the full path."""
    entries = []
    for path, st in found:
        names = [(k, v) for k, v in path if not (k == "field" and v in _GENERIC)]
        short = "/".join(v for k, v in names if k == "key")
        full = "/".join(v for _, v in names)
        for n in st.hyperparams:
            entries.append((short, full, n, path, None))
        if with_schedule_args:
            for n, args in st.schedule_args.items():
                for k in args:
                    entries.append((short, full, f"{n}.{k}", path, (n, k)))

    def count(keys):
        out: dict[str, int] = {}
        for key in keys:
            out[key] = out.get(key, 0) + 1
        return out

    bare = count(n for _, _, n, _, _ in entries)
    qualified = [f"{short}/{n}" if short else n for short, _, n, _, _ in entries]
    by_short = count(qualified)
    keyed = {}
    for (short, full, n, path, sched), q in zip(entries, qualified):
        full_key = f"{full}/{n}" if full else n
        key = n if bare[n] == 1 else q if by_short[q] == 1 else full_key
        keyed[key] = (full_key, path, n, sched)
    return keyed


def hyperparams(state: Any, *, schedule_args: bool = False) -> dict[str, jax.Array]:
    """Reads the current hyperparameters of an optimizer from its state.

    Args:
      state: the state of any transformation, however nested (a chain, a wrapper, a Flax
        ``TrainState.opt_state``).
      schedule_args: also list the numeric arguments of schedule-valued hyperparameters, as
        ``"learning_rate.peak_value"``.

    Returns:
      A dict from name to float32 scalar. A name that occurs in several stages is qualified
      by the stage's path (``"decay/learning_rate"``). For a hyperparameter that follows a
      schedule, the value is the one used by the latest update (before any update, by the
      first).

    Raises:
      TypeError: if ``state`` is a transformation rather than its state.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> state = gx.adam(1e-3).init(jnp.zeros(3))
      >>> round(float(gx.hyperparams(state)["b1"]), 6)
      0.9
    """
    _check_state_arg("hyperparams", state)
    out = {}
    for key, (_, path, n, sched) in _keys(_collect(state), schedule_args).items():
        st = _find(state, path)
        out[key] = _bare(st.schedule_args[sched[0]][sched[1]] if sched else st.hyperparams[n])
    return out


def _check_state_arg(owner: str, state: Any) -> None:
    """Raises ``TypeError`` if ``state`` is a transformation: hyperparameters live in the
    state, and a transformation would silently read as having none."""
    if is_transformation(state):
        raise TypeError(
            f"{owner}: state is a transformation; pass its state instead, as in "
            f"gx.{owner}(tx.init(params), ...) or the opt_state of a train state."
        )


def _find(state: Any, path: tuple[tuple[str, str], ...]) -> HyperparamsState:
    for path_i, st in _collect(state):
        if path_i == path:
            return st
    raise KeyError(path)


def set_hyperparams(state: Any, **values: Any) -> Any:
    """Returns ``state`` with some hyperparameters changed; the compiled step is reused.

    Args:
      state: an optimizer state.
      **values: new values by the names `hyperparams` uses (qualified names such as
        ``decay/learning_rate`` go through ``**{"decay/learning_rate": 0.1}``). A
        schedule's argument is set as ``**{"learning_rate.peak_value": 0.1}``.

    Returns:
      A new state of the same structure and dtypes, so a jitted step does not recompile.

    Raises:
      TypeError: if ``state`` is a transformation rather than its state.
      KeyError: for an unknown or ambiguous name, listing the available ones.
      ValueError: for a value that is not a finite real scalar, that is outside the range
        the hyperparameter allows (a negative learning rate, ``b1`` >= 1), or for a
        hyperparameter that follows a schedule (set the schedule's arguments instead). A
        schedule's changed arguments are checked as building the optimizer with the
        changed schedule would: by the schedule's public function (``decay_rate > 0``),
        and the hyperparameter's range at every step (a cosine decay's ``alpha < 0``
        takes a learning rate below zero).

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> state = gx.sgd(0.1).init(jnp.zeros(3))
      >>> state = gx.set_hyperparams(state, learning_rate=0.01)
      >>> round(float(gx.hyperparams(state)["learning_rate"]), 6)
      0.01
    """
    _check_state_arg("set_hyperparams", state)
    found = _collect(state)
    keyed = _keys(found, True)
    by_full = {full: v for v in keyed.values() for full in [v[0]]}
    changes: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
    schedule_changes: dict[tuple[Any, str], dict[str, tuple[str, float]]] = {}
    for key, value in values.items():
        entry = keyed.get(key) or by_full.get(key)
        if entry is None:
            raise KeyError(
                f"No hyperparameter named {key!r} in this state. Available: {sorted(keyed)}. "
                "(A hyperparameter given to the optimizer as a JAX array is used as given and "
                "not kept in the state; give it as a number to change it here.)"
            )
        full, path, n, sched = entry
        st = _find(state, path)
        if sched is None and n in st.schedule_args:
            raise ValueError(
                f"{full} follows a schedule; set its arguments instead: "
                f"{sorted(k for k in keyed if k.startswith(n + '.'))}."
            )
        try:
            arr = jnp.asarray(value)
        except TypeError:  # a string, None, an object: JAX's message would not name the key
            arr = None
        if arr is None or arr.shape != () or not jnp.issubdtype(arr.dtype, jnp.number) or jnp.iscomplexobj(arr):
            raise ValueError(f"{full} must be a real scalar, got {type(value).__name__} {value!r}.")
        if not is_tracer(arr):
            if not bool(jnp.isfinite(arr)):
                raise ValueError(f"{full} must be finite, got {value!r}.")
            if sched is None:
                bounds = _bounds(n, set(st.hyperparams))
            elif sched[1].endswith("value"):  # an initial, peak or end value of the schedule
                bounds = _bounds(sched[0], set(st.hyperparams))
            else:
                bounds = []
            if bounds and not any(b.contains(float(arr)) for b in bounds):
                allowed = " or ".join(sorted({str(b) for b in bounds}))
                raise ValueError(f"{full} must be {allowed}, got {full}={value!r}.")
            if sched is not None:
                schedule_changes.setdefault((path, sched[0]), {})[sched[1]] = (full, float(arr))
        changes.setdefault(path, {})[f"{sched[0]}.{sched[1]}" if sched else n] = _f32(arr)
    for (path, arg), new_args in schedule_changes.items():
        _check_schedule_change(_find(state, path), arg, new_args)
    return _replace(state, changes)


def _check_schedule_change(st: HyperparamsState, arg: str, new_args: dict[str, tuple[str, float]]) -> None:
    """Raises ``ValueError`` if setting the arguments ``new_args`` (name -> (key the user
    gave, value)) of the schedule that ``arg`` follows gives a schedule that its public
    function rejects, or that leaves ``arg``'s range at some step, as building the optimizer
    with it would. The schedule is one of those given to a live factory whose dynamic
    arguments and their values are the state's; where there is none (the optimizer was
    built in another process), the range check of `set_hyperparams` on value fields is all
    there is. The changed schedule is kept, so that it is found by the next change."""
    from gradxform.schedules._util import checked

    current = {k: _bare(v) for k, v in st.schedule_args[arg].items()}
    if any(is_tracer(v) for v in current.values()):
        return
    now = {k: float(v) for k, v in current.items()}

    def same_values(s: Schedule) -> bool:
        try:
            return all(np.float32(float(v)) == np.float32(now[k]) for k, v in s.dynamic_args().items())
        except (TypeError, ValueError):
            return False

    candidates = [s for s in list(_SCHEDULES) if set(s.dynamic_args()) == set(now) and same_values(s)]
    bounds = _bounds(arg, set(st.hyperparams)) or [REAL]
    errors = []
    for schedule in candidates:
        try:
            new = checked(schedule.replace(**{**now, **{k: v for k, (_, v) in new_args.items()}}))
            failures = []
            for allowed in bounds:
                try:
                    _check_schedule_values("set_hyperparams", arg, new, allowed)
                except ValueError as e:
                    failures.append(e)
            if len(failures) == len(bounds):
                raise failures[0]
            _remember(new)
            return
        except (ValueError, TypeError) as e:
            errors.append(e)
    if errors:
        given = ", ".join(f"{full}={value!r}" for full, value in new_args.values())
        raise ValueError(f"{given} is rejected: {errors[0]}") from None


def _bounds(name: str, names: set[str]) -> list[Interval]:
    """The ranges allowed for ``name`` by the factories that may have made a state holding
    the hyperparameters ``names``."""
    exact = [d for d in _DECLARED.values() if set(d) == names]
    owners = exact or [d for d in _DECLARED.values() if names <= set(d)]
    return [d[name] for d in owners if name in d]


def _replace(node: Any, changes: dict, path: tuple[tuple[str, str], ...] = ()) -> Any:
    # Only the containers on the way to a change are rebuilt, and each new value takes the
    # wrapper of the value it replaces: an nnx.Optimizer keeps its state's leaves in
    # OptArray variables and its parameter-shaped trees in nested nnx State, which a
    # rebuilt container or a bare array would turn into another tree structure (the next
    # step then fails or compiles again).
    if not any(p[: len(path)] == path for p in changes):
        return node
    if isinstance(node, HyperparamsState):
        inner = _replace(node.inner_state, changes, path)
        hyper = dict(node.hyperparams)
        sargs = {k: dict(v) for k, v in node.schedule_args.items()}
        for key, value in changes.get(path, {}).items():
            if "." in key:
                a, k = key.split(".", 1)
                sargs[a][k] = _like(sargs[a][k], value)
            else:
                hyper[key] = _like(hyper[key], value)
        return node._replace(hyperparams=hyper, schedule_args=sargs, inner_state=inner)
    if isinstance(node, tuple) and hasattr(node, "_fields"):
        return type(node)(*(_replace(getattr(node, f), changes, path + (("field", f),)) for f in node._fields))
    if isinstance(node, (tuple, list)):
        return type(node)(_replace(c, changes, path + (("index", str(i)),)) for i, c in enumerate(node))
    if isinstance(node, Mapping):
        return type(node)({k: _replace(c, changes, path + (("key", str(k)),)) for k, c in node.items()})
    return node


def _like(old: Any, value: jax.Array) -> Any:
    """``value`` in the pytree wrapper ``old`` is in (an nnx ``OptArray``), or bare."""
    return jax.tree.unflatten(jax.tree.structure(old), [value])


def _bare(value: Any) -> jax.Array:
    """The array inside a state's scalar: ``value`` itself, or the one an nnx ``OptArray``
    wraps (the inverse of `_like`)."""
    return jax.tree.leaves(value)[0]


__all__ = ["transformation", "HyperparamsState", "hyperparams", "set_hyperparams", "REGISTRY", "path_str"]
