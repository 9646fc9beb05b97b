"""Diagonal-curvature optimizers from Optax's contrib: Sophia.

Sophia divides a bias-corrected momentum by a moving average of an estimate of the
Hessian's diagonal, refreshed every few steps, and clips the result elementwise. The
default estimate is Hutchinson's (`gradxform.hutchinson_estimator_diag_hessian`), which
needs the objective at ``update`` as ``obj_fn=``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradxform._factory import transformation
from gradxform.core import (
    NON_NEGATIVE,
    POSITIVE,
    UNIT,
    GradientTransformation,
    Updates,
    call_update,
    check_positive_int,
    check_transformation,
    new_count,
    safe_increment,
    tree_zeros_like,
)
from gradxform.combinators import chain
from gradxform.hutchinson import hutchinson_estimator_diag_hessian
from gradxform.primitives.elementwise import scale_by_learning_rate
from gradxform.primitives.weight_decay import add_decayed_weights

# One shared default, as in Optax: a transformation is a pair of pure functions, so sharing
# it between optimizers shares no state.
_HUTCHINSON = hutchinson_estimator_diag_hessian()


class SophiaState(NamedTuple):
    """State of `scale_by_sophia` (and so of `sophia`).

    Attributes:
      count: int32 scalar, updates applied so far.
      mu: momentum of the gradients (``mu_dtype``, else the parameters' dtype).
      nu: moving average of the Hessian-diagonal estimates (the parameters' dtype).
      hessian_fn_state: the state of ``hessian_diagonal_fn``.
    """

    count: jax.Array
    mu: Updates
    nu: Updates
    hessian_fn_state: Any


def _check_structural(owner: str, update_interval: Any, hessian_diagonal_fn: Any, every: Any) -> None:
    check_positive_int(owner, "update_interval", update_interval)
    check_positive_int(owner, "print_win_rate_every_n_steps", every, minimum=0)
    check_transformation(owner, "hessian_diagonal_fn", hessian_diagonal_fn)


@transformation({"b1": UNIT, "b2": UNIT, "eps": POSITIVE, "gamma": POSITIVE, "clip_threshold": POSITIVE})
def scale_by_sophia(
    b1: float = 0.965,
    b2: float = 0.99,
    eps: float = 1e-8,
    gamma: float = 0.01,
    clip_threshold: float | None = 1.0,
    update_interval: int = 10,
    hessian_diagonal_fn: GradientTransformation = _HUTCHINSON,
    mu_dtype: Any = None,
    verbose: bool = False,
    print_win_rate_every_n_steps: int = 0,
) -> GradientTransformation:
    """Sophia's preconditioner: clipped momentum over the averaged Hessian diagonal.

    The equations are in `sophia`, which adds weight decay and the learning rate. One stage
    rather than a composition: the curvature estimate is refreshed only every
    ``update_interval`` steps, inside a ``lax.cond`` that also holds the estimator's state.

    Args:
      b1: decay of the momentum, in [0, 1).
      b2: decay of the Hessian-diagonal average, in [0, 1) (applied once per refresh, so
        per step it is about ``1 - (1 - b2) / update_interval``).
      eps: lower bound of the denominator ``gamma * h``, > 0.
      gamma: multiplies the Hessian diagonal, > 0 (raise it if few coordinates escape the
        clipping).
      clip_threshold: elementwise clipping bound, > 0, or None for no clipping.
      update_interval: refresh the Hessian estimate every this many steps, an integer >= 1
        (structural).
      hessian_diagonal_fn: the transformation whose ``update`` returns the estimate of the
        Hessian's diagonal; it receives the gradients, ``params`` and every extra keyword
        argument given to this ``update``.
      mu_dtype: dtype of the momentum, a floating dtype or None (the parameters').
      verbose: print the win rate (fraction of coordinates not clipped) with
        ``jax.debug.print``.
      print_win_rate_every_n_steps: print it every this many steps, an integer >= 0 (0: never).

    Returns:
      A transformation with `SophiaState`; its ``update`` needs ``params`` and, with the
      default estimator, ``obj_fn=`` (a function of the parameters returning the loss).

    Raises:
      ValueError: for a hyperparameter out of range or a bad integer, naming it; at
        ``update`` without ``params``.
      TypeError: if ``hessian_diagonal_fn`` is not a transformation.

    References:
      Liu, Li, Hall, Liang & Ma, "Sophia: A Scalable Stochastic Second-order Optimizer for
      Language Model Pre-training", 2023. https://arxiv.org/abs/2305.14342

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.scale_by_sophia()
      >>> p = jnp.array([1.0, -2.0])
      >>> u, state = tx.update(p, tx.init(p), p, obj_fn=lambda w: jnp.sum(w ** 2))
      >>> u.tolist()  # no curvature yet: the step is clipped to the threshold
      [1.0, -1.0]
    """
    _check_structural("scale_by_sophia", update_interval, hessian_diagonal_fn, print_win_rate_every_n_steps)

    def init(params):
        return SophiaState(
            new_count(),
            tree_zeros_like(params, mu_dtype),
            tree_zeros_like(params),
            hessian_diagonal_fn.init(params),
        )

    def update(updates, state, params=None, **extra):
        if params is None:
            raise ValueError(
                "scale_by_sophia needs the parameters (the Hessian is estimated at them): call "
                "update(updates, state, params, obj_fn=loss_of_params)."
            )
        count = safe_increment(state.count)
        mu = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, state.mu, updates)
        debias = 1 - b1**count
        out = jax.tree.map(
            lambda m, h, g: ((m / debias) / jnp.maximum(gamma * h, eps)).astype(g.dtype), mu, state.nu, updates
        )
        if clip_threshold is not None:
            if verbose and print_win_rate_every_n_steps > 0:
                kept = sum(jnp.sum(jnp.abs(u) < clip_threshold) for u in jax.tree.leaves(out))
                rate = kept / sum(u.size for u in jax.tree.leaves(out))
                jax.lax.cond(
                    count % print_win_rate_every_n_steps == 0,
                    lambda: jax.debug.print("Sophia optimizer win rate: {}", rate),
                    lambda: None,
                )
            out = jax.tree.map(lambda u: jnp.clip(u, -clip_threshold, clip_threshold).astype(u.dtype), out)

        def refresh(hess_state, nu):
            diag, hess_state = call_update(hessian_diagonal_fn, updates, hess_state, params, extra)
            return hess_state, jax.tree.map(lambda n, h: (b2 * n + (1 - b2) * h).astype(n.dtype), nu, diag)

        hess_state, nu = jax.lax.cond(
            state.count % update_interval == 0, refresh, lambda h, n: (h, n), state.hessian_fn_state, state.nu
        )
        mu = jax.tree.map(lambda m, old: m.astype(old.dtype), mu, state.mu)
        return out, SophiaState(count, mu, nu, hess_state)

    return GradientTransformation(init, update)


@transformation(
    {
        "learning_rate": NON_NEGATIVE,
        "b1": UNIT,
        "b2": UNIT,
        "eps": POSITIVE,
        "weight_decay": NON_NEGATIVE,
        "gamma": POSITIVE,
        "clip_threshold": POSITIVE,
    }
)
def sophia(
    learning_rate: float,
    b1: float = 0.965,
    b2: float = 0.99,
    eps: float = 1e-8,
    weight_decay: float = 1e-4,
    weight_decay_mask: Any = None,
    gamma: float = 0.01,
    clip_threshold: float | None = 1.0,
    update_interval: int = 10,
    hessian_diagonal_fn: GradientTransformation = _HUTCHINSON,
    mu_dtype: Any = None,
    verbose: bool = False,
    print_win_rate_every_n_steps: int = 0,
) -> GradientTransformation:
    r"""Sophia: momentum divided by a clipped, periodically refreshed Hessian diagonal.

    With ``h_t`` the estimate of ``diag(H)`` returned by ``hessian_diagonal_fn`` and
    ``k = update_interval``::

        m_t = b1 m + (1 - b1) g_t
        u_t = clip((m_t / (1 - b1^t)) / max(gamma nu_{t-1}, eps), -clip_threshold, clip_threshold)
        nu_t = b2 nu_{t-1} + (1 - b2) h_t  if (t - 1) mod k == 0, else nu_{t-1}
        w_{t+1} = w_t - learning_rate (u_t + weight_decay w_t)

    The step uses the average from before this step's refresh; the first step, with
    ``nu = 0``, divides by ``eps`` and is therefore clipped. The default estimator is
    Hutchinson's (Sophia-H), with Rademacher probes where the paper uses Gaussian ones;
    give ``update`` the loss as ``obj_fn=lambda params: loss(params, batch)``. On several
    devices, make ``hessian_diagonal_fn`` average its estimate across them.

    Args:
      learning_rate: the step size, a number >= 0 or a schedule.
      b1: decay of the momentum, in [0, 1).
      b2: decay of the Hessian-diagonal average, in [0, 1).
      eps: lower bound of the denominator, > 0.
      weight_decay: decoupled weight decay, >= 0.
      weight_decay_mask: a tree of booleans (or a function of the parameters returning
        one) selecting the parameters to decay; None decays all.
      gamma: multiplies the Hessian diagonal, > 0.
      clip_threshold: elementwise clipping bound, > 0, or None.
      update_interval: refresh the Hessian estimate every this many steps, an integer >= 1.
      hessian_diagonal_fn: the estimator of the Hessian's diagonal (a transformation).
      mu_dtype: dtype of the momentum, or None (the parameters').
      verbose: print the fraction of coordinates not clipped.
      print_win_rate_every_n_steps: how often to print it, an integer >= 0 (0: never).

    Returns:
      A transformation whose state holds `SophiaState`; its ``update`` needs ``params``
      and, with the default estimator, ``obj_fn=``.

    Raises:
      ValueError: for a hyperparameter out of range or a bad integer, naming it; at
        ``update`` without ``params``.
      TypeError: if ``hessian_diagonal_fn`` is not a transformation.

    References:
      Liu, Li, Hall, Liang & Ma, "Sophia: A Scalable Stochastic Second-order Optimizer for
      Language Model Pre-training", 2023. https://arxiv.org/abs/2305.14342

    Example:
      >>> import gradxform as gx, jax, jax.numpy as jnp
      >>> f = lambda w: jnp.sum(w ** 2)
      >>> tx, w = gx.sophia(0.1, weight_decay=0.0), jnp.array([1.0, -2.0])
      >>> u, state = tx.update(jax.grad(f)(w), tx.init(w), w, obj_fn=f)
      >>> [round(x, 4) for x in u.tolist()]
      [-0.1, 0.1]
    """
    _check_structural("sophia", update_interval, hessian_diagonal_fn, print_win_rate_every_n_steps)
    return chain(
        scale_by_sophia(
            b1, b2, eps, gamma, clip_threshold, update_interval, hessian_diagonal_fn, mu_dtype, verbose,
            print_win_rate_every_n_steps,
        ),
        add_decayed_weights(weight_decay, weight_decay_mask),
        scale_by_learning_rate(learning_rate),
    )
