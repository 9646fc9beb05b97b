"""Steps taken or skipped by a condition: skip a step whose gradients are not finite (or
too large), zero out NaNs, or run a transformation only at the steps a function of the step
count chooses (Optax's ``conditionally_transform`` and ``conditionally_mask``).

A skipped step returns updates of negative zero, the one value whose addition leaves every
float bit-for-bit unchanged (``-0.0 + x == x`` for ``x = +0.0`` too), and leaves the
inner state untouched, so parameters and optimizer state are exactly as before the step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradxform._factory import transformation
from gradxform.core import (
    COUNT_DTYPE,
    GradientTransformation,
    Params,
    Updates,
    abs_sq,
    call_update,
    cast_like,
    check_function,
    check_positive_int,
    check_transformation,
    new_count,
    safe_increment,
)


def all_finite(tree: Updates) -> jax.Array:
    """Whether every element of every leaf of ``tree`` is finite (a boolean scalar).

    Args:
      tree: a pytree of arrays.

    Returns:
      A boolean scalar array.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> bool(gx.all_finite({"a": jnp.ones(2), "b": jnp.array([jnp.inf])}))
      False
    """
    leaves = jax.tree.leaves(tree)
    if not leaves:
        return jnp.asarray(True)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def skipped_updates(like: Any) -> Any:
    """Updates that leave parameters bit-for-bit unchanged: negative zeros shaped like ``like``.

    Args:
      like: a pytree of arrays or ``jax.ShapeDtypeStruct`` leaves.

    Returns:
      A pytree of ``-0.0`` arrays with ``like``'s shapes, dtypes and shardings. The
      sharding matters over a mesh with ``Explicit`` axes, where it is part of the type:
      as the skipping branch of a ``lax.cond`` these must have the type of the updates of
      the other branch.

    Example:
      >>> from gradxform.wrappers.finite import skipped_updates
      >>> import jax.numpy as jnp
      >>> skipped_updates(jnp.ones(2)).tolist()
      [-0.0, -0.0]
    """
    return jax.tree.map(lambda x: jnp.full_like(x, -0.0), like)


class ApplyIfFiniteState(NamedTuple):
    """State of `apply_if_finite`.

    Attributes:
      notfinite_count: int32 scalar, consecutive non-finite steps (0 after a finite one).
      last_finite: bool scalar, whether the latest gradients were finite.
      total_notfinite: int32 scalar, non-finite steps so far.
      inner_state: the inner transformation's state.
    """

    notfinite_count: jax.Array
    last_finite: jax.Array
    total_notfinite: jax.Array
    inner_state: Any


@transformation()
def apply_if_finite(inner: GradientTransformation, max_consecutive_errors: int) -> GradientTransformation:
    """Skips any step whose gradients hold a NaN or Inf, as Optax's ``apply_if_finite``.

    A skipped step returns zero updates and leaves ``inner``'s state bit-for-bit unchanged;
    it counts consecutive and total skips. After more than ``max_consecutive_errors``
    consecutive bad steps it gives up skipping and applies ``inner`` anyway (the
    non-finite values then reach the parameters, which makes the failure visible).

    Args:
      inner: the transformation to protect.
      max_consecutive_errors: how many consecutive non-finite steps to skip, >= 0.

    Returns:
      A transformation with `ApplyIfFiniteState`.

    Raises:
      TypeError: if ``inner`` is not a transformation.
      ValueError: if ``max_consecutive_errors`` is not an integer >= 0.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.apply_if_finite(gx.sgd(1.0), max_consecutive_errors=3)
      >>> out, state = tx.update(jnp.array([jnp.nan]), tx.init(jnp.zeros(1)))
      >>> out.tolist(), int(state.total_notfinite)
      ([-0.0], 1)
    """
    check_transformation("apply_if_finite", "inner", inner)
    check_positive_int("apply_if_finite", "max_consecutive_errors", max_consecutive_errors, minimum=0)

    def init(params):
        zero = jnp.zeros([], COUNT_DTYPE)
        return ApplyIfFiniteState(zero, jnp.array(True), zero, inner.init(params))

    def update(updates, state, params=None, **extra):
        finite = all_finite(updates)
        notfinite_count = jnp.where(finite, jnp.zeros([], COUNT_DTYPE), safe_increment(state.notfinite_count))
        apply = jnp.logical_or(finite, notfinite_count > max_consecutive_errors)
        out, inner_state = cond_update(apply, inner, updates, state.inner_state, params, extra)
        total = jnp.where(finite, state.total_notfinite, safe_increment(state.total_notfinite))
        return out, ApplyIfFiniteState(notfinite_count, finite, total, inner_state)

    return GradientTransformation(init, update)


def cond_update(
    apply: jax.Array, inner: GradientTransformation, updates, state, params, extra, *, passthrough: bool = False
):
    """``inner``'s update where ``apply`` is true, else skipped updates with ``state`` untouched.

    Args:
      apply: a boolean scalar (may be traced).
      inner: the transformation to run.
      updates: its input updates.
      state: its state.
      params: the parameters (or ``None``).
      extra: extra keyword arguments for ``inner.update``.
      passthrough: where ``apply`` is false, output the input updates (in the dtypes
        ``inner`` would give, as both branches must have one type) instead of
        `skipped_updates`.

    Returns:
      ``(updates, state)``: ``inner``'s, or the skipped (or passed-through) updates and
      ``state`` itself.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> from gradxform.wrappers.finite import cond_update
      >>> tx = gx.sgd(1.0)
      >>> cond_update(jnp.array(False), tx, jnp.ones(1), tx.init(jnp.ones(1)), None, {})[0].tolist()
      [-0.0]
    """

    def run(u, s):
        return call_update(inner, u, s, params, extra)

    shapes, _ = jax.eval_shape(run, updates, state)
    skip = (lambda u, s: (cast_like(u, shapes), s)) if passthrough else (lambda u, s: (skipped_updates(shapes), s))
    return jax.lax.cond(apply, run, skip, updates, state)


def skip_not_finite(updates: Updates, gradient_step: jax.Array, params: Params | None) -> tuple[jax.Array, dict]:
    """A ``should_skip_update_fn`` for `MultiSteps`: skip gradients holding a NaN or Inf.

    Args:
      updates: the gradients of this mini-step.
      gradient_step: the optimizer step (unused).
      params: the parameters (unused).

    Returns:
      ``(should_skip, {"should_skip": ..., "num_not_finite": ...})``, as Optax's.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> skip, info = gx.skip_not_finite(jnp.array([1.0, jnp.nan]), 0, None)
      >>> bool(skip), int(info["num_not_finite"])
      (True, 1)
    """
    del gradient_step, params
    counts = [jnp.sum(jnp.logical_not(jnp.isfinite(x))) for x in jax.tree.leaves(updates)]
    num_not_finite = jnp.sum(jnp.stack(counts)) if counts else jnp.zeros([], jnp.int32)
    should_skip = num_not_finite > 0
    return should_skip, {"should_skip": should_skip, "num_not_finite": num_not_finite}


def skip_large_updates(
    updates: Updates, gradient_step: jax.Array, params: Params | None, max_squared_norm: float
) -> tuple[jax.Array, dict]:
    """A ``should_skip_update_fn`` for `MultiSteps`: skip gradients whose squared norm is large.

    Bind ``max_squared_norm`` with ``functools.partial``. A non-finite norm is also skipped.

    Args:
      updates: the gradients of this mini-step.
      gradient_step: the optimizer step (unused).
      params: the parameters (unused).
      max_squared_norm: skip when the squared global norm is not below this.

    Returns:
      ``(should_skip, {"should_skip": ..., "norm_squared": ...})``, as Optax's.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> skip, info = gx.skip_large_updates(jnp.array([3.0, 4.0]), 0, None, max_squared_norm=20.0)
      >>> bool(skip), float(info["norm_squared"])
      (True, 25.0)
    """
    del gradient_step, params
    leaves = jax.tree.leaves(updates)
    norm_sq = jnp.sum(jnp.stack([jnp.sum(abs_sq(x)) for x in leaves])) if leaves else jnp.zeros([])
    should_skip = jnp.logical_not(norm_sq < max_squared_norm)
    return should_skip, {"should_skip": should_skip, "norm_squared": norm_sq}


class ZeroNansState(NamedTuple):
    """State of `zero_nans`: ``found_nan`` holds, per parameter, whether its latest
    update had a NaN (a boolean scalar per leaf)."""

    found_nan: Any


@transformation()
def zero_nans() -> GradientTransformation:
    """Replaces NaNs in the updates by zeros and records where it found them (Optax's ``zero_nans``).

    Returns:
      A transformation with `ZeroNansState`.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.zero_nans()
      >>> out, state = tx.update(jnp.array([1.0, jnp.nan]), tx.init(jnp.zeros(2)))
      >>> out.tolist(), bool(state.found_nan)
      ([1.0, 0.0], True)
    """

    def init(params):
        return ZeroNansState(jax.tree.map(lambda _: jnp.array(False), params))

    def update(updates, state, params=None, **extra):
        found = jax.tree.map(lambda g: jnp.any(jnp.isnan(g)), updates)
        out = jax.tree.map(lambda g: jnp.where(jnp.isnan(g), jnp.zeros_like(g), g), updates)
        return out, ZeroNansState(found)

    return GradientTransformation(init, update)


ConditionFn = Callable[..., Any]


class ConditionallyTransformState(NamedTuple):
    """State of `conditionally_transform` (fields in Optax's order).

    Attributes:
      inner_state: the inner transformation's state (unchanged by a step it skipped).
      step: int32 scalar, calls of ``update`` so far (saturating).
    """

    inner_state: Any
    step: jax.Array


class ConditionallyMaskState(NamedTuple):
    """State of `conditionally_mask` (fields in Optax's order).

    Attributes:
      step: int32 scalar, calls of ``update`` so far (saturating).
      inner_state: the inner transformation's state (unchanged by a step it masked).
    """

    step: jax.Array
    inner_state: Any


# What `conditionally_transform` and `conditionally_mask` take as should_transform_fn.
_CONDITION = "of the step count returning a boolean scalar, such as lambda step: step % 4 == 0"


def _condition(owner: str, should_transform_fn: ConditionFn, step: jax.Array, extra: dict, forward: bool) -> jax.Array:
    """``should_transform_fn(step, **extra)`` (``extra`` only when forwarded), checked to be a
    boolean scalar: ``jax.lax.cond``'s own error would not say which function was at fault."""
    result = jnp.asarray(should_transform_fn(step, **(extra if forward else {})))
    if result.shape != () or not (result.dtype == jnp.bool_ or jnp.issubdtype(result.dtype, jnp.integer)):
        raise ValueError(
            f"{owner}: should_transform_fn must return a boolean scalar, got an array of dtype "
            f"{result.dtype} and shape {result.shape}."
        )
    return result.astype(jnp.bool_)


@transformation()
def conditionally_transform(
    inner: GradientTransformation, should_transform_fn: ConditionFn, forward_extra_args: bool = False
) -> GradientTransformation:
    """Runs ``inner`` only at the steps ``should_transform_fn`` chooses; passes updates through otherwise.

    Optax's ``conditionally_transform``. ``should_transform_fn(step)`` is called with the
    number of previous ``update`` calls (an int32 scalar, possibly traced) and returns a
    boolean scalar. When it is false the updates come out unchanged and ``inner``'s state
    is left as it was; ``jax.lax.cond`` chooses, so the condition may depend on traced
    values. To output zeros instead, use `conditionally_mask`.

    Args:
      inner: the transformation to run at the chosen steps.
      should_transform_fn: ``(step, **extra) -> bool scalar``.
      forward_extra_args: also give ``should_transform_fn`` the extra keyword arguments of
        ``update`` (``value=loss``, ...); ``inner`` always gets those it accepts.

    Returns:
      A transformation with `ConditionallyTransformState`.

    Raises:
      TypeError: if ``inner`` is not a transformation or ``should_transform_fn`` is not
        callable.
      ValueError: if ``forward_extra_args`` is not a bool, or at ``update`` if
        ``should_transform_fn`` does not return a boolean scalar.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.conditionally_transform(gx.scale(10.0), lambda step: step % 2 == 0)
      >>> state, outs = tx.init(jnp.zeros(1)), []
      >>> for _ in range(3):
      ...     u, state = tx.update(jnp.ones(1), state)
      ...     outs.append(float(u[0]))
      >>> outs
      [10.0, 1.0, 10.0]
    """
    check_transformation("conditionally_transform", "inner", inner)
    check_function("conditionally_transform", "should_transform_fn", should_transform_fn, _CONDITION)

    def init(params):
        return ConditionallyTransformState(inner.init(params), new_count())

    def update(updates, state, params=None, **extra):
        go = _condition("conditionally_transform", should_transform_fn, state.step, extra, forward_extra_args)
        out, inner_state = cond_update(go, inner, updates, state.inner_state, params, extra, passthrough=True)
        return out, ConditionallyTransformState(inner_state, safe_increment(state.step))

    return GradientTransformation(init, update)


@transformation()
def conditionally_mask(
    inner: GradientTransformation, should_transform_fn: ConditionFn, forward_extra_args: bool = False
) -> GradientTransformation:
    """Runs ``inner`` only at the steps ``should_transform_fn`` chooses; outputs zero updates otherwise.

    Optax's ``conditionally_mask``: as `conditionally_transform`, except that a step the
    condition rejects outputs zeros (negative zeros, which leave every parameter
    bit-for-bit unchanged, as `apply_if_finite`'s skipped steps), and ``inner``'s state is
    left as it was.

    Args:
      inner: the transformation to run at the chosen steps.
      should_transform_fn: ``(step, **extra) -> bool scalar``, ``step`` being the number
        of previous ``update`` calls (int32).
      forward_extra_args: also give ``should_transform_fn`` the extra keyword arguments of
        ``update``.

    Returns:
      A transformation with `ConditionallyMaskState`.

    Raises:
      TypeError, ValueError: on the same arguments as `conditionally_transform`.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.conditionally_mask(gx.sgd(1.0), lambda step: step >= 1)
      >>> state = tx.init(jnp.zeros(1))
      >>> u0, state = tx.update(jnp.ones(1), state)
      >>> u1, state = tx.update(jnp.ones(1), state)
      >>> u0.tolist(), u1.tolist()
      ([-0.0], [-1.0])
    """
    check_transformation("conditionally_mask", "inner", inner)
    check_function("conditionally_mask", "should_transform_fn", should_transform_fn, _CONDITION)

    def init(params):
        return ConditionallyMaskState(new_count(), inner.init(params))

    def update(updates, state, params=None, **extra):
        go = _condition("conditionally_mask", should_transform_fn, state.step, extra, forward_extra_args)
        out, inner_state = cond_update(go, inner, updates, state.inner_state, params, extra)
        return out, ConditionallyMaskState(safe_increment(state.step), inner_state)

    return GradientTransformation(init, update)
