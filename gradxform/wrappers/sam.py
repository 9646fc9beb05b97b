"""Sharpness-aware minimisation (SAM): Optax contrib's ``sam`` wrapper of two optimizers.

An adversarial optimizer climbs ``sync_period - 1`` steps away from the parameters; the outer
optimizer then steps from the *original* parameters with the gradient taken at the
adversarial point. In transparent mode each ``update`` call is one of those steps (the
training loop sees the adversarial parameters); in opaque mode one call runs them all through
a ``grad_fn`` and returns only the outer update.
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
    apply_updates,
    call_update,
    check_positive_int,
    check_transformation,
    require_params,
)

GradFn = Callable[[Params, int], Updates]


class SAMState(NamedTuple):
    """State of `sam` (Optax's fields and order).

    Attributes:
      steps_since_sync: int32 scalar, calls since the last outer step (0..sync_period-1);
        always 0 in opaque mode.
      opt_state: the outer optimizer's state.
      adv_state: the adversarial optimizer's state.
      cache: in transparent mode, the parameters at the start of the current cycle (those
        the outer step starts from); ``None`` in opaque mode.
    """

    steps_since_sync: jax.Array
    opt_state: Any
    adv_state: Any
    cache: Params | None


def _select(cond: jax.Array, on_true: Any, on_false: Any) -> Any:
    # jnp.where rather than Optax's ``c * a + (1 - c) * b``: the same for finite values, and
    # an infinite value in the branch not taken does not leak a NaN into the one taken.
    return jax.tree.map(lambda a, b: jnp.where(cond, a, b).astype(jnp.result_type(b)), on_true, on_false)


def _negate(tree: Updates) -> Updates:
    return jax.tree.map(lambda x: -x, tree)


@transformation()
def sam(
    optimizer: GradientTransformation,
    adv_optimizer: GradientTransformation,
    sync_period: int = 2,
    reset_state: bool = True,
    opaque_mode: bool = False,
    batch_axis_name: str | None = None,
) -> GradientTransformation:
    """Sharpness-aware minimisation: an outer step taken with the gradient at an adversarial point.

    With ``adv_optimizer = chain(normalize(), sgd(rho))`` and ``sync_period=2`` this is the
    SAM of the paper: ``w_adv = w + rho * g(w) / ||g(w)||``, then ``w <- w + u`` where ``u``
    is ``optimizer``'s update for the gradient ``g(w_adv)`` (computed with ``params=w``).
    The adversarial optimizer's updates are negated, so a descent optimizer ascends.

    *Transparent mode* (default): calls cycle through ``sync_period`` steps. The first
    ``sync_period - 1`` calls return adversarial updates (evaluate the next gradient at the
    parameters they lead to); the last returns the update that brings the parameters from
    where they are to the cycle's starting point plus the outer step. *Opaque mode*: each
    call runs the whole cycle inside, calling ``grad_fn(adv_params, i)`` for
    ``i = 0 .. sync_period - 2`` (pass it as ``update(..., grad_fn=grad_fn)``), and returns
    only the outer update; use it when each call has side effects (batch-norm statistics).

    Other extra keyword arguments of ``update`` are passed on to both optimizers.

    Args:
      optimizer: the outer optimizer.
      adv_optimizer: the adversarial optimizer (its updates are negated).
      sync_period: steps per cycle, >= 1: ``sync_period - 1`` adversarial steps, then one
        outer step.
      reset_state: re-initialise ``adv_optimizer``'s state after each outer step.
      opaque_mode: run the adversarial steps inside ``update`` through ``grad_fn``.
      batch_axis_name: in opaque mode, the mapped axis over which ``grad_fn``'s gradients
        are averaged (``jax.lax.pmean``); ``None`` for no averaging.

    Returns:
      A transformation with `SAMState`. Its ``update`` needs ``params`` and, in opaque mode,
      the keyword argument ``grad_fn: (params, i) -> gradients``.

    Raises:
      TypeError: if ``optimizer`` or ``adv_optimizer`` is not a transformation.
      ValueError: if ``sync_period`` is not an integer >= 1; at ``update``, without
        ``params``, or in opaque mode without ``grad_fn``.

    References:
      Foret, Kleiner, Mobahi & Neyshabur, "Sharpness-Aware Minimization for Efficiently
      Improving Generalization", ICLR 2021. https://arxiv.org/abs/2010.01412

    Example:
      >>> import gradxform as gx, jax, jax.numpy as jnp
      >>> loss = lambda w: jnp.sum(w ** 2)
      >>> tx = gx.sam(gx.sgd(0.1), gx.chain(gx.normalize(), gx.sgd(0.5)), opaque_mode=True)
      >>> w = jnp.array([1.0, 0.0])
      >>> u, _ = tx.update(jax.grad(loss)(w), tx.init(w), w, grad_fn=lambda p, i: jax.grad(loss)(p))
      >>> [round(x, 4) for x in gx.apply_updates(w, u).tolist()]   # gradient at w_adv = [1.5, 0]
      [0.7, 0.0]
    """
    check_transformation("sam", "optimizer", optimizer)
    check_transformation("sam", "adv_optimizer", adv_optimizer)
    check_positive_int("sam", "sync_period", sync_period)

    def init(params):
        return SAMState(
            jnp.zeros([], COUNT_DTYPE),
            optimizer.init(params),
            adv_optimizer.init(params),
            None if opaque_mode else params,
        )


    def transparent_update(updates, state, params=None, *, grad_fn: GradFn | None = None, **extra):
        del grad_fn  # transparent mode takes the gradients from the training loop
        require_params("sam", params)
        first = state.steps_since_sync == 0
        last = state.steps_since_sync == sync_period - 1
        # On a cycle's first call the cycle starts here. Optax reads the cache before
        # refreshing it, the same unless sync_period == 1, where it would step from a
        # stale point; ours then equals ``optimizer`` alone.
        cache = _select(first, params, state.cache)
        adv_out, adv_state = call_update(adv_optimizer, updates, state.adv_state, params, extra)
        adv_out = _negate(adv_out)
        opt_out, opt_state = call_update(optimizer, updates, state.opt_state, cache, extra)
        opt_out = jax.tree.map(lambda c, p, u: (c - p + u).astype(u.dtype), cache, params, opt_out)
        out = _select(last, opt_out, adv_out)
        if reset_state:
            adv_state = _select(last, adv_optimizer.init(params), adv_state)
        else:
            adv_state = _select(last, state.adv_state, adv_state)
        opt_state = _select(last, opt_state, state.opt_state)
        steps = ((state.steps_since_sync + 1) % sync_period).astype(COUNT_DTYPE)
        return out, SAMState(steps, opt_state, adv_state, cache)

    def opaque_update(updates, state, params=None, *, grad_fn: GradFn | None = None, **extra):
        if grad_fn is None:
            raise ValueError(
                "sam(opaque_mode=True) needs grad_fn: call update(updates, state, params, "
                "grad_fn=grad_fn) with grad_fn(params, i) returning the loss's gradients."
            )
        require_params("sam", params)
        adv_params, grads, adv_state = params, updates, state.adv_state
        for i in range(sync_period - 1):
            step, adv_state = call_update(adv_optimizer, grads, adv_state, adv_params, extra)
            adv_params = apply_updates(adv_params, _negate(step))
            grads = grad_fn(adv_params, i)
            if batch_axis_name is not None:
                grads = jax.lax.pmean(grads, axis_name=batch_axis_name)
        if reset_state:
            adv_state = adv_optimizer.init(params)
        out, opt_state = call_update(optimizer, grads, state.opt_state, params, extra)
        return out, SAMState(jnp.zeros([], COUNT_DTYPE), opt_state, adv_state, None)

    return GradientTransformation(init, opaque_update if opaque_mode else transparent_update)
