"""Adaptive step sizes from Optax's contrib: D-Adaptation (AdamW) and MoMo.

- D-Adapt AdamW runs AdamW whose base learning rate ``d`` is a running lower estimate of the
  distance to the solution, grown from the sum of past steps and their alignment with the
  gradients.
- MoMo (and MoMo-Adam) runs heavy-ball momentum (or Adam) with a Polyak-type step size: the
  step that would reach a lower bound of the loss on a model built from moving averages of
  the losses, gradients and ``<g, w>``, capped by the learning rate. Its ``update`` needs
  the loss as ``value=``.

Each needs the parameters at ``update``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradxform._factory import transformation
from gradxform.core import (
    NON_NEGATIVE,
    POSITIVE,
    REAL,
    UNIT,
    GradientTransformation,
    Updates,
    check_same_tree,
    check_scalar_value,
    new_count,
    require_params,
    safe_increment,
    tree_zeros_like,
)
from gradxform.optimizers.parameter_free import _lowest_dtype
from gradxform.primitives.inner import tree_vdot

# Optax compares the squared momentum norm against float64's epsilon whatever the dtype.
_TINY = float(np.finfo(np.float64).eps)

MISSING_VALUE = (
    "{owner} needs the loss at the current parameters: call update(grads, state, params, value=loss), "
    "for instance with loss, grads = jax.value_and_grad(f)(params). MoMo's step size is the gap "
    "between a model of the loss and its lower bound, so it cannot be computed without it."
)


def _keep(new: jax.Array, old: jax.Array) -> jax.Array:
    return new.astype(old.dtype)


def _check_betas(betas: Any) -> None:
    if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
        raise ValueError(f"dadapt_adamw: betas must be a pair (beta1, beta2), got betas={betas!r}.")
    for b in betas:
        if not isinstance(b, jax.core.Tracer) and not 0.0 <= float(b) < 1.0:
            raise ValueError(f"dadapt_adamw: each of betas must be in [0, 1), got betas={betas!r}.")


class DAdaptAdamWState(NamedTuple):
    """State of `dadapt_adamw`.

    Attributes:
      exp_avg: moving average ``m`` of ``dlr g`` (parameter dtype).
      exp_avg_sq: moving average ``v`` of ``g^2``.
      grad_sum: the weighted sum ``s`` of past ``dlr g``.
      estim_lr: the distance estimate ``d`` (scalar, the parameters' lowest dtype).
      numerator_weighted: ``r``, the numerator of the distance estimate (scalar).
      count: int32 scalar, updates applied so far.
    """

    exp_avg: Updates
    exp_avg_sq: Updates
    grad_sum: Updates
    estim_lr: jax.Array
    numerator_weighted: jax.Array
    count: jax.Array


@transformation(
    {"learning_rate": NON_NEGATIVE, "eps": NON_NEGATIVE, "estim_lr0": POSITIVE, "weight_decay": NON_NEGATIVE}
)
def dadapt_adamw(
    learning_rate: float = 1.0,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    estim_lr0: float = 1e-6,
    weight_decay: float = 0.0,
) -> GradientTransformation:
    r"""D-Adapt AdamW: AdamW whose base learning rate estimates the distance to the solution.

    With ``b3 = sqrt(beta2)``, ``d_0 = estim_lr0`` and
    ``dlr_t = learning_rate * d_t * sqrt(1 - beta2^t) / (1 - beta1^t)``::

        r_t = b3 r + (1 - b3) dlr_t <g_t, s_{t-1} / (sqrt(v_{t-1}) + eps)>
        m_t = beta1 m + (1 - beta1) dlr_t g_t,   v_t = beta2 v + (1 - beta2) g_t^2
        s_t = b3 s + (1 - b3) dlr_t g_t
        d_{t+1} = max(d_t, r_t / ((1 - b3) ||s_t||_1))
        u_t = -m_t / (sqrt(v_t) + eps) - weight_decay dlr_t w_t

    One stage rather than a composition: the scalar ``d`` scales the moments and the weight
    decay at once, and is itself estimated from sums over all parameters of the moments it
    scaled, so no per-coordinate primitive can compute it.

    Args:
      learning_rate: multiplies ``d``, a number >= 0 or a schedule (1 is the intended peak;
        the paper recommends warm-up then linear decay to 0).
      betas: the pair ``(beta1, beta2)`` of Adam's decays, each in [0, 1) (structural: not
        kept in the state).
      eps: added to ``sqrt(v)``, >= 0.
      estim_lr0: the first (under-)estimate ``d_0`` of the distance, > 0 (with 0 the
        estimate, and every step, would stay 0).
      weight_decay: decoupled (AdamW) weight decay, scaled by ``dlr``, >= 0.

    Returns:
      A transformation with `DAdaptAdamWState`; its ``update`` needs ``params``.

    Raises:
      ValueError: for a hyperparameter out of range or ``betas`` not a pair in [0, 1),
        naming it; at ``update`` without ``params``.

    References:
      Defazio & Mishchenko, "Learning-Rate-Free Learning by D-Adaptation", ICML 2023.
      https://arxiv.org/abs/2301.07733

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.dadapt_adamw()
      >>> p = jnp.array([1.0, -2.0])
      >>> u, state = tx.update(jnp.array([1.0, -1.0]), tx.init(p), p)
      >>> [round(x, 6) for x in u.tolist()]  # the first step is about estim_lr0 * sign(g)
      [-1e-06, 1e-06]
    """
    _check_betas(betas)
    beta1, beta2 = betas

    def init(params):
        low = _lowest_dtype(params)
        return DAdaptAdamWState(
            tree_zeros_like(params),
            tree_zeros_like(params),
            tree_zeros_like(params),
            jnp.asarray(estim_lr0, low),
            jnp.zeros((), low),
            new_count(),
        )

    def update(updates, state, params=None, **extra):
        require_params("dadapt_adamw", params)
        check_same_tree(updates, state.exp_avg, "updates", "dadapt_adamw's state")
        count = safe_increment(state.count)
        b1, b2 = (jnp.asarray(b, jnp.float32) for b in (beta1, beta2))
        b3 = jnp.sqrt(b2)
        d = state.estim_lr
        dlr = (d * learning_rate * jnp.sqrt(1 - b2**count) / (1 - b1**count)).astype(d.dtype)
        # The alignment of this gradient with the past steps, before they include it.
        weighted = jax.tree.map(lambda s, v: s / (jnp.sqrt(v) + eps), state.grad_sum, state.exp_avg_sq)
        alignment = tree_vdot(updates, weighted)
        exp_avg = jax.tree.map(lambda m, g: _keep(b1 * m + (1 - b1) * dlr * g, m), state.exp_avg, updates)
        exp_avg_sq = jax.tree.map(lambda v, g: _keep(b2 * v + (1 - b2) * g * g, v), state.exp_avg_sq, updates)
        grad_sum = jax.tree.map(lambda s, g: _keep(b3 * s + (1 - b3) * dlr * g, s), state.grad_sum, updates)
        numerator = _keep(b3 * state.numerator_weighted + (1 - b3) * dlr * alignment, d)
        l1 = sum(jnp.sum(jnp.abs(s)) for s in jax.tree.leaves(grad_sum))
        estim_lr = _keep(jnp.maximum(d, numerator / ((1 - b3) * l1)), d)
        out = jax.tree.map(
            lambda m, v, p, g: (-weight_decay * dlr * p - m / (jnp.sqrt(v) + eps)).astype(g.dtype),
            exp_avg,
            exp_avg_sq,
            params,
            updates,
        )
        return out, DAdaptAdamWState(exp_avg, exp_avg_sq, grad_sum, estim_lr, numerator, count)

    return GradientTransformation(init, update)


def _lower_bounds(cap, decay_factor, bias, lb, lower_bound, adapt):
    """The lower bound used this step: unchanged, or (adapting) halved towards ``cap``."""
    if not adapt:
        return lb
    lowered = jnp.maximum(cap / (2 * bias * decay_factor), lower_bound)
    return jnp.where(cap < decay_factor * bias * lb, lowered, lb).astype(lb.dtype)


class MomoState(NamedTuple):
    """State of `momo`.

    Attributes:
      exp_avg: moving average ``d`` of the gradients (parameter dtype).
      barf: moving average ``f̄`` of the losses (scalar, the parameters' lowest dtype).
      gamma: moving average ``γ`` of ``<g, w>`` (scalar).
      lb: the current lower bound of the loss (scalar).
      count: int32 scalar, updates applied so far.
    """

    exp_avg: Updates
    barf: jax.Array
    gamma: jax.Array
    lb: jax.Array
    count: jax.Array


@transformation({"learning_rate": NON_NEGATIVE, "beta": UNIT, "lower_bound": REAL, "weight_decay": NON_NEGATIVE})
def momo(
    learning_rate: float = 1.0,
    beta: float = 0.9,
    lower_bound: float = 0.0,
    weight_decay: float = 0.0,
    adapt_lower_bound: bool = False,
) -> GradientTransformation:
    r"""MoMo: SGD with momentum and a Polyak-type step size capped by the learning rate.

    With ``f_t`` the loss (``value=``), ``b = 0`` at the first step and ``beta`` after,
    ``a = learning_rate``, ``c = 1 + a weight_decay`` and ``f*`` the lower bound::

        d_t = b d + (1 - b) g_t,   f̄_t = b f̄ + (1 - b) f_t,   γ_t = b γ + (1 - b) <g_t, w_t>
        τ_t = min(a, max(c (f̄_t - f* - γ_t) + <d_t, w_t>, 0) / ||d_t||^2)
        u_t = -a weight_decay / c * w_t - τ_t d_t

    (``τ_t = 0`` when ``||d_t||^2`` is below float64's epsilon). With
    ``adapt_lower_bound`` the bound starts at ``lower_bound`` and is re-estimated each
    step from the model, never below ``lower_bound``.

    One stage rather than a composition: ``τ`` is one scalar computed from the loss, the
    momentum's global norm and its inner product with the parameters, and the weight decay
    is folded into both the step size and the step.

    Args:
      learning_rate: the largest step size, a number >= 0 or a schedule (chosen large; the
        adaptive term usually decides).
      beta: momentum of the averages, in [0, 1).
      lower_bound: a lower bound of the loss (0 for most losses).
      weight_decay: weight decay, >= 0.
      adapt_lower_bound: estimate the lower bound on the fly, starting from
        ``lower_bound`` (structural).

    Returns:
      A transformation with `MomoState`; its ``update`` needs ``params`` and ``value=``
      (the loss at ``params``).

    Raises:
      ValueError: for a hyperparameter out of range, naming it; at ``update`` without
        ``params`` or ``value``.

    References:
      Schaipp, Ohana, Eickenberg, Defazio & Gower, "MoMo: Momentum Models for Adaptive
      Learning Rates", ICML 2024. https://arxiv.org/abs/2305.07583

    Example:
      >>> import gradxform as gx, jax, jax.numpy as jnp
      >>> f = lambda w: jnp.sum(w ** 2)
      >>> tx, w = gx.momo(), jnp.array([1.0, 2.0, 3.0])
      >>> value, grad = jax.value_and_grad(f)(w)
      >>> u, state = tx.update(grad, tx.init(w), w, value=value)
      >>> float(f(gx.apply_updates(w, u)))
      3.5
    """

    def init(params):
        low = _lowest_dtype(params)
        zero = jnp.zeros((), low)
        return MomoState(tree_zeros_like(params), zero, zero, jnp.asarray(lower_bound, low), new_count())

    def update(updates, state, params=None, *, value=None, **extra):
        require_params("momo", params)
        if value is None:
            raise ValueError(MISSING_VALUE.format(owner="momo"))
        check_scalar_value("momo", "value", value, "the loss f(params)")
        check_same_tree(updates, state.exp_avg, "updates", "momo's state")
        b = jnp.where(state.count == 0, 0.0, jnp.asarray(beta, jnp.float32))
        barf = _keep(b * state.barf + (1 - b) * jnp.asarray(value, state.barf.dtype), state.barf)
        exp_avg = jax.tree.map(lambda d, g: _keep(b * d + (1 - b) * g, d), state.exp_avg, updates)
        gamma = _keep(b * state.gamma + (1 - b) * tree_vdot(updates, params), state.gamma)
        sq_norm = tree_vdot(exp_avg, exp_avg)
        inner = tree_vdot(exp_avg, params)
        decay_factor = 1 + learning_rate * weight_decay
        cap = decay_factor * (barf - gamma) + inner
        lb = _lower_bounds(cap, decay_factor, 1.0, state.lb, lower_bound, adapt_lower_bound)
        gap = jnp.maximum(decay_factor * (barf - lb - gamma) + inner, 0.0)
        tau = jnp.minimum(learning_rate, jnp.where(sq_norm <= _TINY, 0.0, gap / sq_norm))
        shrink = learning_rate * weight_decay / decay_factor
        out = jax.tree.map(lambda d, p, g: (-shrink * p - tau * d).astype(g.dtype), exp_avg, params, updates)
        if adapt_lower_bound:
            lb = _keep(jnp.maximum(barf + inner - gamma - 0.5 * tau * sq_norm, lower_bound), state.lb)
        else:
            lb = state.lb
        return out, MomoState(exp_avg, barf, gamma, lb, safe_increment(state.count))

    return GradientTransformation(init, update)


class MomoAdamState(NamedTuple):
    """State of `momo_adam`.

    Attributes:
      exp_avg: moving average ``m`` of the gradients (parameter dtype).
      exp_avg_sq: moving average ``v`` of the squared gradients.
      barf: moving average ``f̄`` of the losses (scalar, the parameters' lowest dtype).
      gamma: moving average ``γ`` of ``<g, w>`` (scalar).
      lb: the current lower bound of the loss (scalar).
      count: int32 scalar, updates applied so far.
    """

    exp_avg: Updates
    exp_avg_sq: Updates
    barf: jax.Array
    gamma: jax.Array
    lb: jax.Array
    count: jax.Array


@transformation(
    {
        "learning_rate": NON_NEGATIVE,
        "b1": UNIT,
        "b2": UNIT,
        "eps": NON_NEGATIVE,
        "lower_bound": REAL,
        "weight_decay": NON_NEGATIVE,
    }
)
def momo_adam(
    learning_rate: float = 1e-2,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    lower_bound: float = 0.0,
    weight_decay: float = 0.0,
    adapt_lower_bound: bool = False,
) -> GradientTransformation:
    r"""MoMo-Adam: Adam(W) with a Polyak-type step size capped by the learning rate.

    As `momo`, with Adam's preconditioner ``D_t = eps + sqrt(v_t / (1 - b2^t))``, the
    averages decayed by ``b1`` from the first step, ``ρ_t = 1 - b1^t`` and
    ``a = learning_rate``, ``c = 1 + a weight_decay``::

        m_t = b1 m + (1 - b1) g_t,   v_t = b2 v + (1 - b2) g_t^2
        f̄_t = b1 f̄ + (1 - b1) f_t,   γ_t = b1 γ + (1 - b1) <g_t, w_t>
        τ_t = min(a / ρ_t, max(c (f̄_t - ρ_t f* - γ_t) + <m_t, w_t>, 0) / <m_t, m_t / D_t>)
        u_t = -a weight_decay / c * w_t - τ_t m_t / D_t

    One stage rather than a composition, for the reason given in `momo`.

    Args:
      learning_rate: the largest step size (before bias correction), a number >= 0 or a
        schedule.
      b1: decay of the first moment and of the loss and ``<g, w>`` averages, in [0, 1).
      b2: decay of the second moment, in [0, 1).
      eps: added to the preconditioner, >= 0.
      lower_bound: a lower bound of the loss (0 for most losses).
      weight_decay: AdamW-style weight decay, >= 0.
      adapt_lower_bound: estimate the lower bound on the fly, starting from
        ``lower_bound`` (structural).

    Returns:
      A transformation with `MomoAdamState`; its ``update`` needs ``params`` and
      ``value=`` (the loss at ``params``).

    Raises:
      ValueError: for a hyperparameter out of range, naming it; at ``update`` without
        ``params`` or ``value``.

    References:
      Schaipp, Ohana, Eickenberg, Defazio & Gower, "MoMo: Momentum Models for Adaptive
      Learning Rates", ICML 2024. https://arxiv.org/abs/2305.07583

    Example:
      >>> import gradxform as gx, jax, jax.numpy as jnp
      >>> f = lambda w: jnp.sum(w ** 2)
      >>> tx, w = gx.momo_adam(), jnp.array([1.0, 2.0, 3.0])
      >>> value, grad = jax.value_and_grad(f)(w)
      >>> u, state = tx.update(grad, tx.init(w), w, value=value)
      >>> [round(x, 4) for x in u.tolist()]  # capped: Adam's first step, learning_rate * sign(g)
      [-0.01, -0.01, -0.01]
    """

    def init(params):
        low = _lowest_dtype(params)
        zero = jnp.zeros((), low)
        return MomoAdamState(
            tree_zeros_like(params),
            tree_zeros_like(params),
            zero,
            zero,
            jnp.asarray(lower_bound, low),
            new_count(),
        )

    def update(updates, state, params=None, *, value=None, **extra):
        require_params("momo_adam", params)
        if value is None:
            raise ValueError(MISSING_VALUE.format(owner="momo_adam"))
        check_scalar_value("momo_adam", "value", value, "the loss f(params)")
        check_same_tree(updates, state.exp_avg, "updates", "momo_adam's state")
        count = safe_increment(state.count)
        barf = _keep(b1 * state.barf + (1 - b1) * jnp.asarray(value, state.barf.dtype), state.barf)
        exp_avg = jax.tree.map(lambda m, g: _keep(b1 * m + (1 - b1) * g, m), state.exp_avg, updates)
        exp_avg_sq = jax.tree.map(lambda v, g: _keep(b2 * v + (1 - b2) * g * g, v), state.exp_avg_sq, updates)
        bias2 = (1 - b2**count).astype(barf.dtype)
        precond = jax.tree.map(lambda v: eps + jnp.sqrt(v / bias2), exp_avg_sq)
        direction = jax.tree.map(lambda m, pc: m / pc, exp_avg, precond)
        sq_norm = tree_vdot(exp_avg, direction)
        gamma = _keep(b1 * state.gamma + (1 - b1) * tree_vdot(updates, params), state.gamma)
        inner = tree_vdot(exp_avg, params)
        bias1 = (1 - b1**count).astype(barf.dtype)
        decay_factor = 1 + learning_rate * weight_decay
        cap = decay_factor * (barf - gamma) + inner
        lb = _lower_bounds(cap, decay_factor, bias1, state.lb, lower_bound, adapt_lower_bound)
        gap = jnp.maximum(decay_factor * (barf - bias1 * lb - gamma) + inner, 0.0)
        tau = jnp.minimum(learning_rate / bias1, jnp.where(sq_norm <= _TINY, 0.0, gap / sq_norm))
        shrink = learning_rate * weight_decay / decay_factor
        out = jax.tree.map(lambda x, p, g: (-shrink * p - tau * x).astype(g.dtype), direction, params, updates)
        if adapt_lower_bound:
            new_lb = (barf + inner - gamma - 0.5 * tau * sq_norm) / bias1
            lb = _keep(jnp.maximum(new_lb, lower_bound), state.lb)
        else:
            lb = state.lb
        return out, MomoAdamState(exp_avg, exp_avg_sq, barf, gamma, lb, count)

    return GradientTransformation(init, update)
