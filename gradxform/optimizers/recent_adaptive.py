"""Recent Adam relatives from Optax's contrib: ADOPT, AdEMAMix and Prodigy.

- ADOPT normalises the gradient by the second moment of the *previous* steps, clips it,
  then takes its moving average (momentum after normalisation, not before).
- AdEMAMix adds a slow, undebiased moving average (decay ``b3``) to Adam's numerator.
- Prodigy runs Adam on ``d * g`` where ``d`` is a running estimate of the distance to the
  solution, so that the learning rate can stay at 1.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradxform._factory import transformation
from gradxform.combinators import branch, chain, identity, ratio
from gradxform.core import (
    NON_NEGATIVE,
    POSITIVE,
    REAL,
    UNIT,
    GradientTransformation,
    Updates,
    check_same_tree,
    new_count,
    require_params,
    safe_increment,
    tree_zeros_like,
)
from gradxform.optimizers.adam import second_moment_root
from gradxform.primitives.inner import tree_vdot
from gradxform.primitives.elementwise import scale, scale_by_learning_rate
from gradxform.primitives.lagged import clip_by_step, scale_by_lagged_rms
from gradxform.primitives.moments import ema
from gradxform.primitives.weight_decay import MaskOrFn, add_decayed_weights

_ADOPT = {"b1": UNIT, "b2": UNIT, "eps": NON_NEGATIVE}


def _quarter_root(count: jax.Array) -> jax.Array:
    return count**0.25


@transformation(_ADOPT)
def scale_by_adopt(
    b1: float = 0.9,
    b2: float = 0.9999,
    eps: float = 1e-6,
    mu_dtype: Any = None,
    *,
    nesterov: bool = False,
    use_clipping: bool = True,
    clip_value_fn: Callable[[jax.Array], jax.Array] = _quarter_root,
) -> GradientTransformation:
    """ADOPT's preconditioner, without the learning rate (see `adopt` for the equations).

    Args:
      b1: decay of the momentum, in [0, 1).
      b2: decay of the second moment, in [0, 1).
      eps: lower bound of the second moment's root, >= 0.
      mu_dtype: dtype of the momentum (default: the parameter's).
      nesterov: output the Nesterov look-ahead ``b1 m_t + (1 - b1) x_t``.
      use_clipping: clip the normalised gradient to ``clip_value_fn(t)``.
      clip_value_fn: the clipping bound as a function of the 0-based step.

    Returns:
      ``chain(scale_by_lagged_rms(b2, eps), clip_by_step(clip_value_fn), ema(b1, debias=False))``
      (with a look-ahead branch when ``nesterov``).

    References:
      Taniguchi et al., "ADOPT: Modified Adam Can Converge with Any beta_2 with the Optimal
      Rate", NeurIPS 2024. https://arxiv.org/abs/2411.02853

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.scale_by_adopt()
      >>> tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))[0].tolist()  # first step: no move
      [0.0]
    """
    momentum = ema(b1, debias=False, accumulator_dtype=mu_dtype)
    if nesterov:
        momentum = branch(chain(momentum, scale(b1)), scale(1 - b1), combine="add")
    return chain(
        scale_by_lagged_rms(b2, eps),
        clip_by_step(clip_value_fn) if use_clipping else identity(),
        momentum,
    )


@transformation({"learning_rate": NON_NEGATIVE, **_ADOPT})
def adopt(
    learning_rate: float,
    b1: float = 0.9,
    b2: float = 0.9999,
    eps: float = 1e-6,
    mu_dtype: Any = None,
    *,
    nesterov: bool = False,
    use_clipping: bool = True,
    clip_value_fn: Callable[[jax.Array], jax.Array] = _quarter_root,
) -> GradientTransformation:
    r"""ADOPT: Adam with the current gradient left out of its own normaliser.

    ::

        x_t = clip(g_t / max(sqrt(v_{t-1}), eps), clip_value_fn(t))
        m_t = b1 m_{t-1} + (1 - b1) x_t,          u_t = -lr m_t
        v_t = b2 v_{t-1} + (1 - b2) |g_t|^2       (v_0 = |g_0|^2; the first step moves nothing)

    Args:
      learning_rate: a number >= 0 or a schedule.
      b1: decay of the momentum, in [0, 1).
      b2: decay of the second moment, in [0, 1).
      eps: lower bound of the second moment's root, >= 0.
      mu_dtype: dtype of the momentum (default: the parameter's).
      nesterov: use the Nesterov look-ahead momentum.
      use_clipping: clip the normalised gradient (recommended by the paper's authors).
      clip_value_fn: the clipping bound as a function of the 0-based step (``t ** 0.25``).

    Returns:
      ``chain(scale_by_adopt(...), scale_by_learning_rate(learning_rate))``.

    References:
      Taniguchi et al., "ADOPT: Modified Adam Can Converge with Any beta_2 with the Optimal
      Rate", NeurIPS 2024. https://arxiv.org/abs/2411.02853

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.adopt(0.1)
      >>> _, state = tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))
      >>> [round(x, 4) for x in tx.update(jnp.array([2.0]), state)[0].tolist()]  # -lr (1 - b1) 1
      [-0.01]
    """
    return chain(
        scale_by_adopt(
            b1, b2, eps, mu_dtype, nesterov=nesterov, use_clipping=use_clipping, clip_value_fn=clip_value_fn
        ),
        scale_by_learning_rate(learning_rate),
    )


_ADEMAMIX = {"b1": UNIT, "b2": UNIT, "b3": UNIT, "alpha": REAL, "eps": NON_NEGATIVE, "eps_root": NON_NEGATIVE}


@transformation(_ADEMAMIX)
def scale_by_ademamix(
    b1: float = 0.9,
    b2: float = 0.999,
    b3: float = 0.9999,
    alpha: float = 6.0,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
) -> GradientTransformation:
    """AdEMAMix's preconditioner, without the learning rate (see `ademamix`).

    Args:
      b1: decay of the fast (debiased) moving average, in [0, 1).
      b2: decay of the second moment, in [0, 1).
      b3: decay of the slow (not debiased) moving average, in [0, 1); may be a schedule.
      alpha: weight of the slow average; may be a schedule.
      eps: added to the root of the second moment, >= 0.
      eps_root: added inside the root, >= 0.
      mu_dtype: dtype of the three moving averages (default: the parameter's).

    Returns:
      ``ratio(branch(ema(b1), chain(ema(b3, debias=False), scale(alpha))), root of ema(b2))``.

    References:
      Pagliardini, Ablin & Grangier, "The AdEMAMix Optimizer: Better, Faster, Older", 2024.
      https://arxiv.org/abs/2409.03137

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.scale_by_ademamix(alpha=0.0)  # plain Adam
      >>> [round(x, 4) for x in tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))[0].tolist()]
      [1.0]
    """
    fast = ema(b1, accumulator_dtype=mu_dtype)
    slow = chain(ema(b3, debias=False, accumulator_dtype=mu_dtype), scale(alpha))
    return ratio(branch(fast, slow, combine="add"), second_moment_root(b2, eps, eps_root, mu_dtype))


@transformation({"learning_rate": NON_NEGATIVE, **_ADEMAMIX, "weight_decay": NON_NEGATIVE})
def ademamix(
    learning_rate: float,
    b1: float = 0.9,
    b2: float = 0.999,
    b3: float = 0.9999,
    alpha: float = 5.0,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    weight_decay: float = 0.0,
    mask: MaskOrFn = None,
) -> GradientTransformation:
    r"""AdEMAMix: Adam whose numerator mixes a fast and a slow moving average.

    ::

        m1_t = b1 m1_{t-1} + (1 - b1) g_t        (debiased)
        m2_t = b3 m2_{t-1} + (1 - b3) g_t        (not debiased: it fills up slowly)
        v_t  = b2 v_{t-1}  + (1 - b2) |g_t|^2    (debiased)
        u_t  = -lr ((m1^_t + alpha m2_t) / (sqrt(v^_t + eps_root) + eps) + weight_decay w_t)

    The paper warms up ``alpha`` and ``b3`` with schedules; pass them as schedules.

    Args:
      learning_rate: a number >= 0 or a schedule.
      b1, b2, b3, alpha, eps, eps_root, mu_dtype: as in `scale_by_ademamix`.
      weight_decay: decoupled weight decay, >= 0.
      mask: which parameters to decay (a boolean tree or a function of the parameters).

    Returns:
      ``chain(scale_by_ademamix(...), add_decayed_weights(weight_decay, mask),
      scale_by_learning_rate(learning_rate))``.

    References:
      Pagliardini, Ablin & Grangier, "The AdEMAMix Optimizer: Better, Faster, Older", 2024.
      https://arxiv.org/abs/2409.03137

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.ademamix(0.1, alpha=0.0)
      >>> p = jnp.zeros(1)
      >>> [round(x, 4) for x in tx.update(jnp.array([2.0]), tx.init(p), p)[0].tolist()]
      [-0.1]
    """
    return chain(
        scale_by_ademamix(b1, b2, b3, alpha, eps, eps_root, mu_dtype),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


class ProdigyState(NamedTuple):
    """State of `prodigy`.

    Attributes:
      exp_avg: moving average of ``d g`` (parameter dtype).
      exp_avg_sq: moving average of ``(d g)^2``.
      grad_sum: the weighted sum ``s`` of past ``d g`` whose L1 norm is the denominator of
        the distance estimate.
      params0: the parameters at ``init`` (the distance is measured from them).
      estim_lr: the distance estimate ``d`` (scalar, the parameters' lowest dtype).
      numerator_weighted: the numerator of the distance estimate (scalar).
      count: int32 scalar, updates applied so far.
    """

    exp_avg: Updates
    exp_avg_sq: Updates
    grad_sum: Updates
    params0: Updates
    estim_lr: jax.Array
    numerator_weighted: jax.Array
    count: jax.Array


def _lowest_dtype(params: Any) -> Any:
    dtypes = [jnp.asarray(x).dtype if not hasattr(x, "dtype") else x.dtype for x in jax.tree.leaves(params)]
    return min(dtypes, key=lambda d: jnp.finfo(d).bits) if dtypes else jnp.float32


def _betas_ok(betas: Any) -> None:
    if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
        raise ValueError(f"prodigy: betas must be a pair (beta1, beta2), got betas={betas!r}.")
    for b in betas:
        if isinstance(b, jax.core.Tracer):
            continue
        if not 0.0 <= float(b) < 1.0:
            raise ValueError(f"prodigy: each of betas must be in [0, 1), got betas={betas!r}.")


@transformation(
    {
        "learning_rate": NON_NEGATIVE,
        "beta3": UNIT,
        "eps": NON_NEGATIVE,
        "estim_lr0": POSITIVE,
        "estim_lr_coef": POSITIVE,
        "weight_decay": NON_NEGATIVE,
    }
)
def prodigy(
    learning_rate: float = 1.0,
    betas: tuple[float, float] = (0.9, 0.999),
    beta3: float | None = None,
    eps: float = 1e-8,
    estim_lr0: float = 1e-6,
    estim_lr_coef: float = 1.0,
    weight_decay: float = 0.0,
    safeguard_warmup: bool = False,
) -> GradientTransformation:
    r"""Prodigy: Adam on ``d g``, with ``d`` a running estimate of the distance to the solution.

    With ``lr_t = learning_rate * d_t * sqrt(1 - beta2^t) / (1 - beta1^t)``::

        m_t = beta1 m + (1 - beta1) d_t g_t,   v_t = beta2 v + (1 - beta2) (d_t g_t)^2
        s_t = beta3 s + lr_t d_t g_t / d_0      (``d_t`` in place of ``lr_t`` with
                                                 ``safeguard_warmup``)
        r_t = beta3 r + (d_t / d_0) lr_t <g_t, w_0 - w_t>
        d_{t+1} = max(d_t, estim_lr_coef * r_t / ||s_t||_1)
        u_t = -lr_t (m_t / (sqrt(v_t) + d_{t+1} eps) + weight_decay w_t)

    One stage rather than a composition: the scalar ``d`` couples every parameter and
    enters the moments, the step and the epsilon at once, and it is itself estimated from
    the sum over all parameters of the moments it scales.

    Args:
      learning_rate: a number >= 0 or a schedule (1 is the intended value).
      betas: the pair ``(beta1, beta2)`` of Adam's decays, each in [0, 1) (structural).
      beta3: decay of the distance estimate's sums, in [0, 1); ``None`` for ``sqrt(beta2)``.
      eps: Adam's epsilon (scaled by ``d``), >= 0.
      estim_lr0: the initial distance estimate ``d_0``, > 0.
      estim_lr_coef: multiplies the distance estimate, > 0.
      weight_decay: decoupled weight decay, >= 0.
      safeguard_warmup: leave the learning rate out of ``s`` (for warm-up schedules).

    Returns:
      A transformation with `ProdigyState`; its ``update`` needs ``params``.

    Raises:
      ValueError: if ``betas`` is not a pair in [0, 1); at ``update`` without ``params``.

    References:
      Mishchenko & Defazio, "Prodigy: An Expeditiously Adaptive Parameter-Free Learner",
      ICML 2024. https://arxiv.org/abs/2306.06101

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.prodigy()
      >>> p = jnp.array([1.0, 2.0])
      >>> tx.update(jnp.array([1.0, 1.0]), tx.init(p), p)[0].shape
      (2,)
    """
    _betas_ok(betas)
    beta1, beta2 = betas
    if beta3 is None:
        beta3 = beta2**0.5

    def init(params):
        low = _lowest_dtype(params)
        return ProdigyState(
            tree_zeros_like(params),
            tree_zeros_like(params),
            tree_zeros_like(params),
            jax.tree.map(lambda p: jnp.asarray(p).copy(), params),
            jnp.asarray(estim_lr0, low),
            jnp.zeros((), low),
            new_count(),
        )

    def update(updates, state, params=None, **extra):
        require_params("prodigy", params)
        check_same_tree(updates, state.exp_avg, "updates", "prodigy's state")
        count = safe_increment(state.count)
        d = state.estim_lr
        b1, b2, b3 = (jnp.asarray(b, jnp.float32) for b in (beta1, beta2, beta3))
        correction = ((1 - b2**count) ** 0.5) / (1 - b1**count)
        dlr = (d * learning_rate * correction).astype(d.dtype)
        dg = jax.tree.map(lambda g: d * g, updates)
        gap = tree_vdot(updates, jax.tree.map(lambda p0, p: p0 - p, state.params0, params))
        keep = lambda new, old: new.astype(old.dtype)
        exp_avg = jax.tree.map(lambda m, x: keep(b1 * m + (1 - b1) * x, m), state.exp_avg, dg)
        exp_avg_sq = jax.tree.map(lambda v, x: keep(b2 * v + (1 - b2) * x * x, v), state.exp_avg_sq, dg)
        rate = d if safeguard_warmup else dlr
        grad_sum = jax.tree.map(lambda s, x: keep(b3 * s + rate * x / estim_lr0, s), state.grad_sum, dg)
        numerator = b3 * state.numerator_weighted + (d / estim_lr0) * dlr * gap
        l1 = sum(jnp.sum(jnp.abs(s)) for s in jax.tree.leaves(grad_sum))
        estim_lr = jnp.maximum(d, estim_lr_coef * numerator / l1).astype(d.dtype)
        out = jax.tree.map(
            lambda m, v, p: -weight_decay * dlr * p - dlr * m / (jnp.sqrt(v) + estim_lr * eps),
            exp_avg,
            exp_avg_sq,
            params,
        )
        new_state = ProdigyState(
            exp_avg, exp_avg_sq, grad_sum, state.params0, estim_lr, numerator.astype(d.dtype), count
        )
        return out, new_state

    return GradientTransformation(init, update)
