"""Safe steps: skip a step whose gradients are not finite (or too large), zero out NaNs.

A skipped step returns updates of negative zero, the one value whose addition leaves every
float bit-for-bit unchanged (``-0.0 + x == x`` for ``x = +0.0`` too), and leaves the
inner state untouched, so parameters and optimizer state are exactly as before the step.
"""

from __future__ import annotations

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
    check_positive_int,
    check_transformation,
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


def cond_update(apply: jax.Array, inner: GradientTransformation, updates, state, params, extra):
    """``inner``'s update where ``apply`` is true, else skipped updates with ``state`` untouched.

    Args:
      apply: a boolean scalar (may be traced).
      inner: the transformation to run.
      updates: its input updates.
      state: its state.
      params: the parameters (or ``None``).
      extra: extra keyword arguments for ``inner.update``.

    Returns:
      ``(updates, state)``: ``inner``'s, or `skipped_updates` and ``state`` itself.

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
    return jax.lax.cond(apply, run, lambda u, s: (skipped_updates(shapes), s), updates, state)


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
