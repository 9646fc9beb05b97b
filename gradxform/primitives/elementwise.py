"""Stateless elementwise primitives: scale, learning rate, square, root, shift, sign, abs.

Each keeps no state and maps every leaf of the update tree. `stateless` and
`stateless_with_tree_map` (Optax's names) make such a stage from a user's function. The mathematics of the
optimizers that use them is documented on the optimizers (see `gradxform.optimizers`).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from gradxform._factory import transformation
from gradxform.core import (
    NON_NEGATIVE,
    REAL,
    EmptyState,
    GradientTransformation,
    Params,
    Updates,
    abs_sq,
    check_function,
    check_same_tree,
)


def elementwise(fn: Callable[[jax.Array], jax.Array]) -> GradientTransformation:
    """A stateless transformation applying ``fn`` to every leaf of the updates.

    Args:
      fn: maps one array to an array of the same shape.

    Returns:
      A `GradientTransformation` with `EmptyState`.
    """

    def update(updates, state, params=None, **extra):
        return jax.tree.map(fn, updates), state

    return GradientTransformation(lambda params: EmptyState(), update)


def _factor_dtype(g: jax.Array) -> jnp.dtype:
    """The dtype a scale factor takes to multiply ``g``: ``g``'s real dtype, or float32 for
    an integer ``g``, whose dtype would truncate the factor (a learning rate of 0.1 to 0)."""
    return jnp.real(g).dtype if jnp.issubdtype(g.dtype, jnp.inexact) else jnp.dtype(jnp.float32)


@transformation()
def stateless(f: Callable[[Updates, Params | None], Updates]) -> GradientTransformation:
    """A transformation that keeps no state, made from a function of the updates and parameters.

    Optax's ``stateless``: ``update(updates, state, params)`` returns
    ``f(updates, params)`` and an empty state. ``f`` sees whole trees; for a function of
    one array, use `stateless_with_tree_map`.

    Args:
      f: ``(updates, params) -> updates``; ``params`` is ``None`` when ``update`` is not
        given them.

    Returns:
      A transformation with `EmptyState`.

    Raises:
      TypeError: if ``f`` is not a function (a transformation, a class or a value).

    Example:
      >>> import gradxform as gx, jax, jax.numpy as jnp
      >>> tx = gx.stateless(lambda u, p: jax.tree.map(lambda g: -0.1 * g, u))
      >>> tx.update({"w": jnp.ones(2)}, tx.init(None))[0]["w"].tolist()
      [-0.10000000149011612, -0.10000000149011612]
    """
    check_function("stateless", "f", f, "(updates, params) -> updates")

    def update(updates, state, params=None, **extra):
        return f(updates, params), EmptyState()

    return GradientTransformation(lambda params: EmptyState(), update)


@transformation()
def stateless_with_tree_map(f: Callable[[jax.Array, jax.Array | None], jax.Array]) -> GradientTransformation:
    """A transformation that keeps no state, applying a function to each update and its parameter.

    Optax's ``stateless_with_tree_map``: each leaf of the output is ``f(u, p)`` for the
    matching update ``u`` and parameter ``p``, or ``f(u, None)`` for every leaf when
    ``update`` is not given the parameters.

    Args:
      f: ``(update array, parameter array or None) -> update array``.

    Returns:
      A transformation with `EmptyState`.

    Raises:
      TypeError: if ``f`` is not a function.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.stateless_with_tree_map(lambda g, p: g + 0.5 * p)   # L2 penalty
      >>> p = jnp.array([2.0])
      >>> tx.update(jnp.array([1.0]), tx.init(p), p)[0].tolist()
      [2.0]
    """
    check_function("stateless_with_tree_map", "f", f, "(update, param) -> update of one array")

    def update(updates, state, params=None, **extra):
        if params is None:
            return jax.tree.map(lambda u: f(u, None), updates), EmptyState()
        check_same_tree(updates, params, "updates", "params", shapes=False)
        return jax.tree.map(f, updates, params), EmptyState()

    return GradientTransformation(lambda params: EmptyState(), update)


@transformation({"step_size": REAL})
def scale(step_size: float) -> GradientTransformation:
    """Multiplies updates by ``step_size``.

    Args:
      step_size: the factor (a number, or a schedule when called directly).

    Returns:
      A stateless transformation.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.scale(-2.0)
      >>> tx.update(jnp.ones(2), tx.init(jnp.ones(2)))[0].tolist()
      [-2.0, -2.0]
    """
    return elementwise(lambda g: g * jnp.asarray(step_size).astype(_factor_dtype(g)))


@transformation({"learning_rate": NON_NEGATIVE})
def scale_by_learning_rate(learning_rate: float, *, flip_sign: bool = True) -> GradientTransformation:
    """Multiplies updates by the learning rate, negated for descent (as Optax does).

    Args:
      learning_rate: a number >= 0, or a schedule of the step count.
      flip_sign: multiply by ``-learning_rate`` (descent) rather than ``learning_rate``.

    Returns:
      A stateless transformation (the schedule's step count lives in the state that keeps
      the hyperparameters).

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.scale_by_learning_rate(0.5)
      >>> tx.update(jnp.ones(2), tx.init(jnp.ones(2)))[0].tolist()
      [-0.5, -0.5]
    """
    sign = -1.0 if flip_sign else 1.0
    return elementwise(lambda g: g * (sign * jnp.asarray(learning_rate)).astype(_factor_dtype(g)))


@transformation({"step_size_fn": REAL})
def scale_by_schedule(step_size_fn: Callable[[jax.Array], jax.Array]) -> GradientTransformation:
    """Multiplies updates by ``step_size_fn(count)``, with no sign flip (Optax's name).

    This is `scale` given a schedule; ``count`` is the number of updates before this one.

    Args:
      step_size_fn: a schedule (from `gradxform.schedules`, or any function of the step
        count).

    Returns:
      A transformation whose state holds the step count and the current step size.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.scale_by_schedule(gx.linear_schedule(1.0, 0.0, 4))
      >>> state, sizes = tx.init(jnp.ones(1)), []
      >>> for _ in range(3):
      ...     updates, state = tx.update(jnp.ones(1), state)
      ...     sizes.append(float(updates[0]))
      >>> sizes
      [1.0, 0.75, 0.5]
    """
    return scale(step_size_fn)


@transformation()
def square() -> GradientTransformation:
    """Replaces each update by its squared magnitude ``|g|**2`` (real for complex ``g``).

    Returns:
      A stateless transformation.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.square().update(jnp.array([-3.0]), gx.EmptyState())[0].tolist()
      [9.0]
    """
    return elementwise(abs_sq)


@transformation()
def sqrt() -> GradientTransformation:
    """Replaces each update by its square root.

    Returns:
      A stateless transformation.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.sqrt().update(jnp.array([9.0]), gx.EmptyState())[0].tolist()
      [3.0]
    """
    return elementwise(jnp.sqrt)


@transformation({"value": REAL})
def add(value: float) -> GradientTransformation:
    """Adds a constant to every update (the ``eps`` of adaptive methods).

    Args:
      value: the constant.

    Returns:
      A stateless transformation.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.add(0.5)
      >>> tx.update(jnp.array([1.0]), tx.init(jnp.zeros(1)))[0].tolist()
      [1.5]
    """
    return elementwise(lambda g: g + jnp.asarray(value).astype(jnp.real(g).dtype))


@transformation()
def scale_by_sign() -> GradientTransformation:
    """Replaces each update by its sign (signSGD; Bernstein et al., 2018).

    Returns:
      A stateless transformation.

    References:
      Bernstein, Wang, Azizzadenesheli & Anandkumar, "signSGD: Compressed Optimisation for
      Non-Convex Problems", 2018. https://arxiv.org/abs/1802.04434

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.scale_by_sign().update(jnp.array([-3.0, 0.0, 2.0]), gx.EmptyState())[0].tolist()
      [-1.0, 0.0, 1.0]
    """
    return elementwise(jnp.sign)


@transformation()
def absolute() -> GradientTransformation:
    """Replaces each update by its magnitude ``|g|`` (Adamax's infinity norm uses it).

    Returns:
      A stateless transformation.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.absolute().update(jnp.array([-3.0]), gx.EmptyState())[0].tolist()
      [3.0]
    """
    return elementwise(jnp.abs)
