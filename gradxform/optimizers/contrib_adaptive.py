"""More of Optax contrib's adaptive optimizers: MADGRAD, Simplified AdEMAMix and ACProp.

- MADGRAD is dual averaging: it does not step from the current point but recomputes a point
  from the starting parameters, a weighted sum of all gradients and a cube-root normaliser,
  then moves part of the way there (momentum by averaging iterates).
- Simplified AdEMAMix divides an undamped heavy-ball sum plus ``alpha`` times the gradient
  by Adam's debiased second-moment root: one momentum buffer instead of AdEMAMix's two.
- ACProp is AdaBelief with the *previous* step's centred second moment as its denominator
  and the raw gradient (not the momentum) as its numerator.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradxform._factory import transformation
from gradxform.combinators import branch, chain, ratio
from gradxform.core import (
    NON_NEGATIVE,
    REAL,
    UNIT,
    GradientTransformation,
    Updates,
    abs_sq,
    check_same_tree,
    new_count,
    require_params,
    safe_increment,
    tree_map_unzip,
    tree_zeros_like,
)
from gradxform.optimizers.adam import second_moment_root
from gradxform.optimizers.adaptive_variants import ScaleByBeliefState
from gradxform.primitives.elementwise import scale, scale_by_learning_rate
from gradxform.primitives.moments import _coef, trace
from gradxform.primitives.weight_decay import MaskOrFn, add_decayed_weights

class MadgradState(NamedTuple):
    """State of `scale_by_madgrad`, as Optax's.

    Attributes:
      count: int32 scalar, steps taken (saturating).
      grad_sum_sq: ``G_k``, the ``lambda``-weighted sum of squared gradients (parameter dtype).
      s: ``s_k``, the ``lambda``-weighted sum of gradients (parameter dtype).
      x0: the parameters at ``init``, the centre of the dual averaging.
    """

    count: jax.Array
    grad_sum_sq: Updates
    s: Updates
    x0: Updates


_MADGRAD = {"learning_rate": NON_NEGATIVE, "momentum": UNIT, "eps": NON_NEGATIVE}


@transformation(_MADGRAD)
def scale_by_madgrad(learning_rate: float, momentum: float = 0.9, eps: float = 1e-6) -> GradientTransformation:
    """MADGRAD's step, learning rate included (see `madgrad` for the equations).

    One stage rather than a composition: the output is not a rescaled gradient but the
    distance from the current parameters to a point rebuilt from ``x0`` and the sums, and
    the learning rate enters inside the sums' weights, not as a final factor.

    Args:
      learning_rate: a number >= 0 or a schedule.
      momentum: the weight of the current point in the iterate average, in [0, 1).
      eps: added to the learning rate in the weights and to the cube root, >= 0.

    Returns:
      A transformation with `MadgradState`; its ``update`` needs ``params``. Its output is
      already a descent step (apply it as is, with no ``scale_by_learning_rate``).

    Raises:
      ValueError: at ``update`` without ``params``.

    References:
      Defazio & Jelassi, "Adaptivity without Compromise: A Momentumized, Adaptive, Dual
      Averaged Gradient Method for Stochastic Optimization", JMLR 2022.
      https://arxiv.org/abs/2101.11075

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.scale_by_madgrad(0.1, momentum=0.0, eps=0.0)
      >>> p = jnp.zeros(1)
      >>> [round(x, 4) for x in tx.update(jnp.array([1.0]), tx.init(p), p)[0].tolist()]  # -(0.1)^(2/3)
      [-0.2154]
    """

    def init(params):
        return MadgradState(
            new_count(),
            tree_zeros_like(params),
            tree_zeros_like(params),
            jax.tree.map(lambda p: jnp.asarray(p).copy(), params),
        )

    def update(updates, state, params=None, **extra):
        require_params("scale_by_madgrad", params)
        check_same_tree(updates, state.s, "updates", "scale_by_madgrad's state")
        lr = learning_rate(state.count) if callable(learning_rate) else learning_rate
        # The weight lambda_k = (lr + eps) sqrt(k + 1) grows with k: later gradients count more.
        weight = (jnp.asarray(lr, jnp.float32) + eps) * jnp.sqrt(state.count.astype(jnp.float32) + 1)
        beta = jnp.asarray(momentum, jnp.float32)

        def leaf(g, sq_old, s_old, x0, x):
            sq = sq_old + (weight * abs_sq(g)).astype(sq_old.dtype)
            s = s_old + (weight * g).astype(s_old.dtype)
            z = x0 - s / (jnp.cbrt(sq) + _coef(eps, sq))
            step = (1 - beta).astype(z.dtype) * (z - x)
            return step.astype(g.dtype), sq, s

        out, grad_sum_sq, s = tree_map_unzip(leaf, updates, state.grad_sum_sq, state.s, state.x0, params)
        return out, MadgradState(safe_increment(state.count), grad_sum_sq, s, state.x0)

    return GradientTransformation(init, update)


@transformation({**_MADGRAD, "weight_decay": NON_NEGATIVE})
def madgrad(
    learning_rate: float, momentum: float = 0.9, weight_decay: float = 0.0, eps: float = 1e-6
) -> GradientTransformation:
    r"""MADGRAD: momentumized, adaptive dual averaging.

    With ``lambda_k = (lr_k + eps) sqrt(k + 1)`` (``k`` from 0) and ``g_k`` including the L2
    term ``weight_decay x_k``::

        s_{k+1} = s_k + lambda_k g_k                 G_{k+1} = G_k + lambda_k g_k^2
        z_{k+1} = x_0 - s_{k+1} / (cbrt(G_{k+1}) + eps)
        x_{k+1} = momentum x_k + (1 - momentum) z_{k+1}

    Args:
      learning_rate: a number >= 0 or a schedule.
      momentum: the weight of the current point in the iterate average, in [0, 1).
      weight_decay: L2 regularisation added to the gradient (coupled, not decoupled), >= 0.
      eps: added to the learning rate in the weights and to the cube root, >= 0.

    Returns:
      ``chain(add_decayed_weights(weight_decay), scale_by_madgrad(learning_rate, momentum, eps))``.

    References:
      Defazio & Jelassi, "Adaptivity without Compromise: A Momentumized, Adaptive, Dual
      Averaged Gradient Method for Stochastic Optimization", JMLR 2022.
      https://arxiv.org/abs/2101.11075

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.madgrad(0.1)
      >>> p = jnp.array([1.0, -1.0])
      >>> u, _ = tx.update(2 * p, tx.init(p), p)
      >>> [round(x, 4) for x in (p + u).tolist()]
      [0.9729, -0.9729]
    """
    return chain(
        add_decayed_weights(weight_decay),
        scale_by_madgrad(learning_rate, momentum, eps),
    )


_SIMPLIFIED = {"b1": UNIT, "b2": UNIT, "alpha": REAL, "eps": NON_NEGATIVE, "eps_root": NON_NEGATIVE}


@transformation(_SIMPLIFIED)
def scale_by_simplified_ademamix(
    b1: float = 0.99,
    b2: float = 0.95,
    alpha: float = 0.0,
    eps: float = 1e-8,
    eps_root: float = 0.0,
) -> GradientTransformation:
    """Simplified AdEMAMix's preconditioner, without the learning rate (see `simplified_ademamix`).

    Args:
      b1: decay of the (undamped) momentum sum, in [0, 1).
      b2: decay of the second moment, in [0, 1).
      alpha: weight of the current gradient added to the momentum; may be a schedule.
      eps: added to the root of the second moment, >= 0.
      eps_root: added inside the root, >= 0.

    Returns:
      ``ratio(branch(trace(b1), scale(alpha), combine="add"), root of debiased ema(b2))``.

    References:
      Morwani, Vyas, Ghosh, Kakade & Jelassi, "Connections between Schedule-Free Optimizers,
      AdEMAMix, and Accelerated SGD Variants", 2025. https://arxiv.org/abs/2502.02431

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.scale_by_simplified_ademamix(alpha=1.0)
      >>> [round(x, 4) for x in tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))[0].tolist()]
      [2.0]
    """
    numerator = branch(trace(b1), scale(alpha), combine="add")
    return ratio(numerator, second_moment_root(b2, eps, eps_root))


@transformation({"learning_rate": NON_NEGATIVE, **_SIMPLIFIED, "weight_decay": NON_NEGATIVE})
def simplified_ademamix(
    learning_rate: float,
    b1: float = 0.99,
    b2: float = 0.95,
    alpha: float = 0.0,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    weight_decay: float = 0.0,
    mask: MaskOrFn = None,
) -> GradientTransformation:
    r"""Simplified AdEMAMix: Adam's denominator under a heavy-ball sum plus ``alpha`` g.

    ::

        m_t = b1 m_{t-1} + g_t                    (a sum, not an average: no 1 - b1)
        v_t = b2 v_{t-1} + (1 - b2) |g_t|^2        v^_t = v_t / (1 - b2^t)
        u_t = -lr ((m_t + alpha g_t) / (sqrt(v^_t + eps_root) + eps) + weight_decay w_t)

    With ``alpha = 0`` it is Adam up to a rescaling of ``lr`` and ``b1``; the single
    momentum buffer replaces AdEMAMix's fast and slow averages, and ``alpha`` needs no
    warm-up schedule.

    Args:
      learning_rate: a number >= 0 or a schedule.
      b1, b2, alpha, eps, eps_root: as in `scale_by_simplified_ademamix`.
      weight_decay: decoupled weight decay (multiplied by the learning rate), >= 0.
      mask: which parameters to decay (a boolean tree or a function of the parameters).

    Returns:
      ``chain(scale_by_simplified_ademamix(...), add_decayed_weights(weight_decay, mask),
      scale_by_learning_rate(learning_rate))``.

    References:
      Morwani, Vyas, Ghosh, Kakade & Jelassi, "Connections between Schedule-Free Optimizers,
      AdEMAMix, and Accelerated SGD Variants", 2025. https://arxiv.org/abs/2502.02431

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.simplified_ademamix(0.1)
      >>> p = jnp.zeros(1)
      >>> [round(x, 4) for x in tx.update(jnp.array([2.0]), tx.init(p), p)[0].tolist()]
      [-0.1]
    """
    return chain(
        scale_by_simplified_ademamix(b1, b2, alpha, eps, eps_root),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


_ACPROP = {"b1": UNIT, "b2": UNIT, "eps": NON_NEGATIVE, "eps_root": NON_NEGATIVE}


@transformation(_ACPROP)
def scale_by_acprop(
    b1: float = 0.9, b2: float = 0.999, eps: float = 1e-16, eps_root: float = 1e-16
) -> GradientTransformation:
    """ACProp's preconditioner, without the learning rate (see `acprop` for the equations).

    One stage, with AdaBelief's state: the denominator needs both stored moments of the
    previous step (the prediction error is measured against ``m_{t-1}``), and a composition
    would keep the first moment once per branch (see `scale_by_belief`).

    Args:
      b1: decay of the first moment (the gradient's prediction), in [0, 1).
      b2: decay of the centred second moment, in [0, 1).
      eps: added to the root, >= 0.
      eps_root: added to the centred second moment at every step, >= 0.

    Returns:
      A transformation with `ScaleByBeliefState` (``mu``: ``m_t``; ``nu``: ``s_t``).

    References:
      Zhuang, Ding, Tang, Dvornek, Tatikonda & Duncan, "Momentum Centering and Asynchronous
      Update for Adaptive Gradient Methods", NeurIPS 2021. https://arxiv.org/abs/2110.05454

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.scale_by_acprop()
      >>> tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))[0].tolist()  # s^_0 is taken as 1
      [2.0]
    """

    def init(params):
        return ScaleByBeliefState(new_count(), tree_zeros_like(params), tree_zeros_like(params))

    def update(updates, state, params=None, **extra):
        check_same_tree(updates, state.mu, "updates", "scale_by_acprop's state")
        first = state.count == 0
        # The denominator is s_{t-1} debiased by its own step; before any step it is 1.
        lagged_t = jnp.maximum(state.count, 1)

        def leaf(g, m_old, s_old):
            c1, c2 = _coef(b1, m_old), _coef(b2, s_old)
            m = (1 - c1) * g + c1 * m_old
            s = (1 - c2) * abs_sq(g - m_old) + c2 * s_old + _coef(eps_root, s_old)
            s_hat = jnp.where(first, jnp.ones_like(s_old), s_old / (1 - c2**lagged_t))
            u = g / (jnp.sqrt(s_hat) + _coef(eps, s_old))
            return u.astype(g.dtype), m.astype(m_old.dtype), s.astype(s_old.dtype)

        out, mu, nu = tree_map_unzip(leaf, updates, state.mu, state.nu)
        return out, ScaleByBeliefState(safe_increment(state.count), mu, nu)

    return GradientTransformation(init, update)


@transformation({"learning_rate": NON_NEGATIVE, **_ACPROP, "weight_decay": NON_NEGATIVE})
def acprop(
    learning_rate: float,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-16,
    eps_root: float = 1e-16,
    weight_decay: float = 0.0,
    mask: MaskOrFn = None,
) -> GradientTransformation:
    r"""ACProp: the raw gradient over the root of the previous step's centred second moment.

    ::

        m_t = b1 m_{t-1} + (1 - b1) g_t
        s_t = b2 s_{t-1} + (1 - b2) |g_t - m_{t-1}|^2 + eps_root
        u_t = -lr (g_t / (sqrt(s_{t-1} / (1 - b2^(t-1))) + eps) + weight_decay w_t)

    (``t`` from 1; at ``t = 1`` the root is taken as 1). Using ``s_{t-1}``, independent of
    ``g_t``, is the "asynchronous" update; centring on the prediction ``m`` is AdaBelief's.

    Args:
      learning_rate: a number >= 0 or a schedule.
      b1, b2, eps, eps_root: as in `scale_by_acprop`.
      weight_decay: decoupled weight decay (multiplied by the learning rate), >= 0.
      mask: which parameters to decay (a boolean tree or a function of the parameters).

    Returns:
      ``chain(scale_by_acprop(...), add_decayed_weights(weight_decay, mask),
      scale_by_learning_rate(learning_rate))``.

    References:
      Zhuang, Ding, Tang, Dvornek, Tatikonda & Duncan, "Momentum Centering and Asynchronous
      Update for Adaptive Gradient Methods", NeurIPS 2021. https://arxiv.org/abs/2110.05454

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.acprop(0.1)
      >>> p = jnp.zeros(1)
      >>> [round(x, 4) for x in tx.update(jnp.array([2.0]), tx.init(p), p)[0].tolist()]
      [-0.2]
    """
    return chain(
        scale_by_acprop(b1, b2, eps, eps_root),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


__all__ = [
    "MadgradState",
    "acprop",
    "madgrad",
    "scale_by_acprop",
    "scale_by_madgrad",
    "scale_by_simplified_ademamix",
    "simplified_ademamix",
]
