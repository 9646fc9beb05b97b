"""Gradient accumulation over micro-batches: Optax's ``MultiSteps`` and ``apply_every``.

Both keep one accumulation buffer and nothing else of the parameters' size. `multi_steps`
runs the inner optimizer only on the mini-step that completes a batch (its state, step
count and schedules advance once per optimizer step); `apply_every` sums updates that were
already transformed.
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
    call_update,
    cast_like,
    check_positive_int,
    check_transformation,
    is_tracer,
    new_count,
    safe_increment,
    tree_zeros_like,
)
from gradxform.wrappers.finite import skipped_updates

ShouldSkipFn = Callable[[Updates, jax.Array, Params | None], tuple[jax.Array, Any]]


class ApplyEveryState(NamedTuple):
    """State of `apply_every`: ``count`` (int32, mini-steps modulo k) and ``grad_acc``, the sum."""

    count: jax.Array
    grad_acc: Updates


@transformation()
def apply_every(k: int = 1) -> GradientTransformation:
    """Sums updates over ``k`` steps and emits the sum every ``k``-th step, zeros otherwise.

    As Optax's ``apply_every``: the stages before it still update their state every step;
    for exact equivalence with a k-times larger batch use `MultiSteps`.

    Args:
      k: the number of steps to accumulate, >= 1.

    Returns:
      A transformation with `ApplyEveryState`.

    Raises:
      ValueError: if ``k`` is not an integer >= 1.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.apply_every(2)
      >>> s = tx.init(jnp.zeros(1))
      >>> u1, s = tx.update(jnp.ones(1), s)
      >>> u2, s = tx.update(jnp.ones(1), s)
      >>> u1.tolist(), u2.tolist()
      ([0.0], [2.0])
    """
    check_positive_int("apply_every", "k", k)

    def init(params):
        return ApplyEveryState(new_count(), tree_zeros_like(params))

    def update(updates, state, params=None, **extra):
        c = state.count % k
        keep = c != 0
        acc = jax.tree.map(lambda g, a: (jnp.where(keep, a, jnp.zeros_like(a)) + g).astype(a.dtype), updates, state.grad_acc)
        emit = c == k - 1
        out = jax.tree.map(lambda a, g: jnp.where(emit, a, jnp.zeros_like(a)).astype(g.dtype), acc, updates)
        return out, ApplyEveryState(safe_increment(state.count) % k, acc)

    return GradientTransformation(init, update)


class MultiStepsState(NamedTuple):
    """State of `MultiSteps`.

    Attributes:
      mini_step: int32 scalar, micro-batches accumulated in the current step (0..k-1).
      gradient_step: int32 scalar, optimizer steps done.
      inner_opt_state: the inner optimizer's state.
      acc_grads: the accumulation buffer (mean or sum so far), in ``accumulator_dtype``.
      skip_state: what ``should_skip_update_fn`` returned last (``()`` without one).
    """

    mini_step: jax.Array
    gradient_step: jax.Array
    inner_opt_state: Any
    acc_grads: Updates
    skip_state: Any = ()


def _no_skip(updates, gradient_step, params):
    return jnp.array(False), ()


@transformation()
def multi_steps(
    opt: GradientTransformation,
    every_k_schedule: int | Callable[[jax.Array], jax.Array],
    use_grad_mean: bool = True,
    should_skip_update_fn: ShouldSkipFn | None = None,
    accumulator_dtype: Any = jnp.float32,
) -> GradientTransformation:
    """Accumulates gradients over ``k`` micro-batches, then takes one step of ``opt``.

    The transformation form of `MultiSteps` (same arguments, state and results as Optax's
    ``MultiSteps``). On the mini-steps in between it returns zero updates and leaves
    ``opt``'s state untouched; ``opt`` runs only on the completing mini-step, so its step
    count and schedules count optimizer steps. A mini-step that ``should_skip_update_fn``
    rejects changes nothing but ``skip_state``.

    Args:
      opt: the optimizer to apply to the accumulated gradients.
      every_k_schedule: micro-batches per step: an int >= 1, or a function of the optimizer
        step returning one.
      use_grad_mean: accumulate the mean (``True``) or the sum of the gradients.
      should_skip_update_fn: ``(updates, gradient_step, params) -> (skip, info)``, such as
        `skip_not_finite`.
      accumulator_dtype: dtype of the buffer.

    Returns:
      A transformation with `MultiStepsState`.

    Raises:
      TypeError: if ``opt`` is not a transformation.
      ValueError: if ``every_k_schedule`` is < 1 (a function: at step 0, or not a whole
        number there), or ``should_skip_update_fn`` does not return a boolean scalar.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.multi_steps(gx.sgd(1.0), every_k_schedule=2)
      >>> s = tx.init(jnp.zeros(1))
      >>> u1, s = tx.update(jnp.array([1.0]), s)
      >>> u2, s = tx.update(jnp.array([3.0]), s)
      >>> u1.tolist(), u2.tolist()
      ([-0.0], [-2.0])
    """
    check_transformation("multi_steps", "opt", opt)
    if callable(every_k_schedule):
        _check_every_k_schedule(every_k_schedule)
        k_of = every_k_schedule
    else:
        check_positive_int("multi_steps", "every_k_schedule", every_k_schedule)
        k_of = lambda step: every_k_schedule  # noqa: E731
    skip_fn = should_skip_update_fn or _no_skip
    acc_dtype = jnp.dtype(accumulator_dtype) if accumulator_dtype is not None else None

    def init(params):
        zero = new_count()
        _, skip_state = skip_fn(tree_zeros_like(params), zero, params)
        return MultiStepsState(zero, zero, opt.init(params), tree_zeros_like(params, acc_dtype), skip_state)

    def update(updates, state, params=None, **extra):
        k = k_of(state.gradient_step)
        skip, skip_state = skip_fn(updates, state.gradient_step, params)
        skip = jnp.asarray(skip)
        if (skip.dtype, skip.shape) != (jnp.bool_, ()):
            raise ValueError(
                "multi_steps: should_skip_update_fn must return a boolean scalar first, got an array of "
                f"dtype {skip.dtype} and shape {skip.shape}."
            )
        n = state.mini_step
        if use_grad_mean:
            acc = jax.tree.map(lambda g, a: a + (g.astype(a.dtype) - a) / (n + 1).astype(a.dtype), updates, state.acc_grads)
        else:
            acc = jax.tree.map(lambda g, a: a + g.astype(a.dtype), updates, state.acc_grads)
        # >= rather than ==: a state saved mid-accumulation with a larger k (restored into
        # this optimizer) completes its step now instead of never again.
        emit = jnp.logical_and(jnp.logical_not(skip), n >= k - 1)

        def run(a, s):
            return call_update(opt, cast_like(a, updates), s, params, extra)

        shapes, _ = jax.eval_shape(run, acc, state.inner_opt_state)
        out, inner_state = jax.lax.cond(
            emit, run, lambda a, s: (skipped_updates(shapes), s), acc, state.inner_opt_state
        )
        acc = jax.tree.map(
            lambda new, old: jnp.where(skip, old, jnp.where(emit, jnp.zeros_like(new), new)), acc, state.acc_grads
        )
        mini_step = jnp.where(skip, n, jnp.where(emit, 0, safe_increment(n))).astype(COUNT_DTYPE)
        gradient_step = jnp.where(emit, safe_increment(state.gradient_step), state.gradient_step)
        return out, MultiStepsState(mini_step, gradient_step, inner_state, acc, skip_state)

    return GradientTransformation(init, update)


def _check_every_k_schedule(schedule: Callable[[jax.Array], jax.Array]) -> None:
    """Raises ``ValueError`` unless ``schedule`` gives a whole number >= 1 at step 0: with
    0, a negative or a fractional count of micro-batches no mini-step would complete an
    optimizer step, and training would silently stop."""
    try:
        k = jnp.asarray(schedule(new_count()))
    except Exception as e:
        raise ValueError(
            f"multi_steps: every_k_schedule failed at step 0 with {type(e).__name__}: {e}. It must be "
            "an integer >= 1 or a function of the optimizer step returning one."
        ) from e
    if is_tracer(k):  # built inside a trace from traced values: nothing to check yet
        return
    if k.shape != () or not jnp.issubdtype(k.dtype, jnp.number) or jnp.iscomplexobj(k):
        raise ValueError(
            f"multi_steps: every_k_schedule must return an integer scalar, got dtype {k.dtype} and "
            f"shape {k.shape} at step 0."
        )
    value = float(k)
    if not (value >= 1 and value == int(value)):
        raise ValueError(
            f"multi_steps: every_k_schedule must return an integer >= 1 (micro-batches per step), "
            f"got {value:g} at step 0."
        )


class MultiSteps:
    """Optax's ``MultiSteps`` class: the interface of Optax's over `multi_steps`.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> ms = gx.MultiSteps(gx.sgd(1.0), every_k_schedule=2)
      >>> s = ms.init(jnp.zeros(1))
      >>> _, s = ms.update(jnp.ones(1), s)
      >>> bool(ms.has_updated(s))
      False
    """

    def __init__(
        self,
        opt: GradientTransformation,
        every_k_schedule: int | Callable[[jax.Array], jax.Array],
        use_grad_mean: bool = True,
        should_skip_update_fn: ShouldSkipFn | None = None,
        accumulator_dtype: Any = jnp.float32,
    ) -> None:
        """Builds the accumulation; the arguments are those of `multi_steps`.

        Args:
          opt: the optimizer to apply to the accumulated gradients.
          every_k_schedule: micro-batches per step (int or function of the step).
          use_grad_mean: accumulate the mean rather than the sum.
          should_skip_update_fn: optional skip rule, such as `skip_not_finite`.
          accumulator_dtype: dtype of the buffer.

        Raises:
          TypeError, ValueError: as `multi_steps`.
        """
        self._opt = opt
        self._tx = multi_steps(opt, every_k_schedule, use_grad_mean, should_skip_update_fn, accumulator_dtype)

    @property
    def inner_opt(self) -> GradientTransformation:
        """The wrapped optimizer."""
        return self._opt

    def init(self, params: Params) -> MultiStepsState:
        """The initial state (see `multi_steps`)."""
        return self._tx.init(params)

    def update(self, updates: Updates, state: MultiStepsState, params: Params | None = None, **extra: Any):
        """One mini-step (see `multi_steps`)."""
        return self._tx.update(updates, state, params, **extra)

    def has_updated(self, state: MultiStepsState) -> jax.Array:
        """Whether the latest mini-step completed an optimizer step.

        Args:
          state: a `MultiStepsState`.

        Returns:
          A boolean scalar.
        """
        return jnp.logical_and(state.mini_step == 0, state.gradient_step > 0)

    def gradient_transformation(self) -> GradientTransformation:
        """The same accumulation as a `GradientTransformation` (for Flax's ``TrainState``)."""
        return self._tx
