"""Combinators: transformations built from other transformations.

- `chain`: stages in sequence.
- `branch`: two compositions see the same input; their outputs are combined elementwise.
  `ratio` (numerator over denominator) is the case Adam needs.
- `named`: gives a stage a name, which appears in ``describe`` and in hyperparameter paths.
- `named_chain`: Optax's chain of named stages, its state keyed by those names.

Extra keyword arguments given to ``update`` (``value=loss``, ...) flow through every
combinator to the stages that accept them.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradxform._factory import transformation
from gradxform.core import EmptyState, GradientTransformation, call_update, check_transformation, is_transformation


def _stage_name(tx: Any) -> str:
    spec = getattr(tx, "spec", None)
    return spec.name if spec is not None else type(tx).__name__


class StageError(ValueError):
    """A stage of a composition failed; the message names the stage."""


class _StageTypeError(StageError, TypeError):
    """A stage failed with a ``TypeError``: still a `StageError` naming the stage, and still
    a ``TypeError``, so that ``except TypeError`` catches it as it would unchained."""


def _run_stages(
    labels: list[str], transforms: Any, states: Any, updates: Any, params: Any, extra: dict[str, Any]
) -> tuple[Any, list[Any]]:
    """Runs the stages in order, each on the previous one's updates; returns the last updates
    and the stages' new states. A stage's ValueError or TypeError becomes a `StageError`
    naming it (``labels[i]`` and the stage's own name), one that is also a TypeError for a
    TypeError; a nested `StageError` passes as is."""
    new_states = []
    for label, t, s in zip(labels, transforms, states):
        try:
            updates, s = call_update(t, updates, s, params, extra)
        except StageError:
            raise
        except (ValueError, TypeError) as e:
            kind = _StageTypeError if isinstance(e, TypeError) else StageError
            raise kind(f"{label} ({_stage_name(t)}): {e}") from e
        new_states.append(s)
    return updates, new_states


@transformation()
def chain(*transforms: GradientTransformation) -> GradientTransformation:
    """Applies transformations in sequence: each stage's output is the next one's input.

    Args:
      *transforms: the stages, gradxform or Optax transformations.

    Returns:
      A transformation whose state is the tuple of the stages' states.

    Raises:
      TypeError: if a stage is not a transformation (naming its index).
      StageError: at ``update``, if the state does not have one entry per stage, or a stage
        fails; the message names the stage by index and name.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.chain(gx.clip(1.0), gx.scale(-0.5))
      >>> tx.update(jnp.array([4.0, -0.2]), tx.init(jnp.zeros(2)))[0].tolist()
      [-0.5, 0.10000000149011612]
    """
    for i, t in enumerate(transforms):
        check_transformation("chain", f"stage {i}", t)

    labels = [f"chain stage {i}" for i in range(len(transforms))]

    def init(params):
        return tuple(t.init(params) for t in transforms)

    def update(updates, state, params=None, **extra):
        if not isinstance(state, tuple) or len(state) != len(transforms):
            got = f"{len(state)} entries" if isinstance(state, tuple) else type(state).__name__
            raise StageError(
                f"chain has {len(transforms)} stages but its state has {got}; was this state "
                "made by another optimizer's init()?"
            )
        updates, new_state = _run_stages(labels, transforms, state, updates, params, extra)
        return updates, tuple(new_state)

    return GradientTransformation(init, update)


COMBINE: dict[str, Callable[[jax.Array, jax.Array], jax.Array]] = {
    "divide": lambda a, b: a / b,
    "multiply": lambda a, b: a * b,
    "add": lambda a, b: a + b,
    "subtract": lambda a, b: a - b,
}


class BranchState(NamedTuple):
    """State of `branch`: the two sides' states."""

    left: Any
    right: Any


@transformation()
def branch(
    left: GradientTransformation, right: GradientTransformation, combine: str = "add"
) -> GradientTransformation:
    """Feeds the same input to two compositions and combines their outputs elementwise.

    Args:
      left: the first composition.
      right: the second composition.
      combine: ``"add"``, ``"subtract"``, ``"multiply"`` or ``"divide"`` (left op right).

    Returns:
      A transformation whose state is ``BranchState(left, right)``.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.branch(gx.scale(2.0), gx.scale(3.0), combine="multiply")
      >>> tx.update(jnp.array([1.0, 2.0]), tx.init(jnp.zeros(2)))[0].tolist()
      [6.0, 24.0]
    """
    check_transformation("branch", "left", left)
    check_transformation("branch", "right", right)
    if combine not in COMBINE:
        raise ValueError(f"branch: combine must be one of {sorted(COMBINE)}, got combine={combine!r}.")
    op = COMBINE[combine]

    def init(params):
        return BranchState(left.init(params), right.init(params))

    def update(updates, state, params=None, **extra):
        a, sa = call_update(left, updates, state.left, params, extra)
        b, sb = call_update(right, updates, state.right, params, extra)
        out = jax.tree.map(lambda x, y, g: op(x, y).astype(jnp.result_type(g)), a, b, updates)
        return out, BranchState(sa, sb)

    return GradientTransformation(init, update)


@transformation()
def ratio(numerator: GradientTransformation, denominator: GradientTransformation) -> GradientTransformation:
    """Divides one composition's output by another's, both fed the same input.

    This is how adaptive methods are written: Adam is the first moment over the root of the
    second (see `gradxform.adam`).

    Args:
      numerator: composition whose output is divided.
      denominator: composition it is divided by.

    Returns:
      ``branch(numerator, denominator, combine="divide")``.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.ratio(gx.identity(), gx.chain(gx.square(), gx.sqrt()))  # g / |g|
      >>> tx.update(jnp.array([-3.0, 2.0]), tx.init(jnp.zeros(2)))[0].tolist()
      [-1.0, 1.0]
    """
    return branch(numerator, denominator, combine="divide")


def _check_stage_name(owner: str, what: str, name: Any, shown: str) -> None:
    """Stage names key hyperparameter paths (``head/learning_rate``) and schedule arguments
    (``learning_rate.peak_value``), so they may not contain ``/`` or ``.``."""
    if not isinstance(name, str) or not name or "/" in name or "." in name:
        raise ValueError(f"{owner}: {what} must be a non-empty string without '/' or '.', got {shown}{name!r}.")


@transformation()
def named_chain(*args: tuple[str, GradientTransformation]) -> GradientTransformation:
    """Applies named transformations in sequence; the state maps each name to its stage's state.

    Optax's ``named_chain``: `chain` with a name for each stage, so that a stage's state is
    ``state[name]`` and ``gx.hyperparams`` qualifies a hyperparameter that several stages
    have by the stage's name (``"decay/learning_rate"``). The state is a ``collections.OrderedDict`` in stage order,
    as Optax's, so checkpoints of either library's state have the same tree.

    Args:
      *args: ``(name, transformation)`` pairs; names are unique non-empty strings without
        ``/`` or ``.``, transformations are gradxform's or Optax's.

    Returns:
      A transformation whose state is an ``OrderedDict`` from name to stage state.

    Raises:
      TypeError: if an argument is not a ``(name, transformation)`` pair, naming its index.
      ValueError: if a name is repeated or not a valid name.
      StageError: at ``update``, if the state lacks a stage's name or a stage fails; the
        message names the stage.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.named_chain(("clip", gx.clip(1.0)), ("sgd", gx.sgd(0.5)))
      >>> state = tx.init(jnp.zeros(2))
      >>> list(state), tx.update(jnp.array([4.0, -0.2]), state)[0].tolist()
      (['clip', 'sgd'], [-0.5, 0.10000000149011612])
    """
    stages: list[tuple[str, GradientTransformation]] = []
    for i, pair in enumerate(args):
        if is_transformation(pair) or not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise TypeError(
                f"named_chain: argument {i} must be a (name, transformation) pair, got "
                f"{type(pair).__name__}: {pair!r}."
            )
        name, tx = pair
        _check_stage_name("named_chain", f"the name of argument {i}", name, "")
        check_transformation("named_chain", f"the transformation named {name!r}", tx, f"gx.named_chain(({name!r}, {{arg}}))")
        stages.append((name, tx))
    names = [name for name, _ in stages]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"named_chain: stage names must be unique, got {repeated} more than once in {names}.")

    labels = [f"named_chain stage {name!r}" for name in names]
    txs = [tx for _, tx in stages]

    def init(params):
        return collections.OrderedDict((name, tx.init(params)) for name, tx in stages)

    def update(updates, state, params=None, **extra):
        if not isinstance(state, Mapping) or list(state) != names:
            got = list(state) if isinstance(state, Mapping) else type(state).__name__
            raise StageError(
                f"named_chain has the stages {names} but its state has {got}; was this state made "
                "by another optimizer's init()?"
            )
        updates, new_states = _run_stages(labels, txs, [state[name] for name in names], updates, params, extra)
        return updates, collections.OrderedDict(zip(names, new_states))

    return GradientTransformation(init, update)


@transformation()
def named(name: str, inner: GradientTransformation) -> GradientTransformation:
    """Gives a stage a name, shown by ``describe`` and used in hyperparameter paths.

    Args:
      name: a non-empty string.
      inner: the named transformation.

    Returns:
      A transformation whose state is ``{name: inner_state}``.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.chain(gx.named("head", gx.sgd(0.1)), gx.named("body", gx.sgd(0.2)))
      >>> sorted(gx.hyperparams(tx.init(jnp.zeros(2))))
      ['body/learning_rate', 'head/learning_rate']
    """
    _check_stage_name("named", "name", name, "name=")
    check_transformation("named", "inner", inner)

    def init(params):
        return {name: inner.init(params)}

    def update(updates, state, params=None, **extra):
        updates, s = call_update(inner, updates, state[name], params, extra)
        return updates, {name: s}

    return GradientTransformation(init, update)


@transformation()
def identity() -> GradientTransformation:
    """Passes updates through unchanged (keeps no state).

    Returns:
      The identity transformation.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.identity().update(jnp.ones(1), gx.EmptyState())[0].tolist()
      [1.0]
    """
    return GradientTransformation(lambda params: EmptyState(), lambda u, s, p=None, **extra: (u, s))
