"""Adam's relatives that change its second moment: AdaBelief, Yogi, RAdam, Adan, NovoGrad.

Yogi, RAdam and NovoGrad are Adam's composition (`gradxform.optimizers.adam`) with one
stage swapped:

    adam       ratio(ema(b1), chain(square(), ema(b2), sqrt(), add(eps)))
    yogi       ratio(ema(b1), chain(square(), yogi_moment(b2), bias_correction(b2), sqrt(), add(eps)))
    radam      ratio(ema(b1), chain(square(), ema(b2), sqrt(), add(eps), rectify(b2)))
    novograd   chain(ratio(identity(), root of layer_moment(b2)), add_decayed_weights, trace(b1))

AdaBelief and Adan are single stages (`scale_by_belief`, `scale_by_adan`): each side of
their ratio needs two quantities (the gradient and its prediction error; the gradient and
its change) from one stored array, and a composition passes one stream, so its stages would
each keep a copy of that array (see those functions).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradxform._factory import transformation
from gradxform.combinators import chain, identity, ratio
from gradxform.core import (
    NON_NEGATIVE,
    REAL,
    UNIT,
    GradientTransformation,
    Updates,
    abs_sq,
    check_hyperparam,
    check_same_tree,
    new_count,
    safe_increment,
    tree_map_unzip,
    tree_zeros_like,
)
from gradxform.optimizers.adam import first_moment
from gradxform.primitives.elementwise import add, scale_by_learning_rate, sqrt, square
from gradxform.primitives.moments import _coef, bias_correction, debias, ema, trace
from gradxform.primitives.second_moments import layer_moment, rectify, yogi_moment
from gradxform.primitives.weight_decay import MaskOrFn, add_decayed_weights

_LR = {"learning_rate": NON_NEGATIVE}
_ADAM = {"b1": UNIT, "b2": UNIT, "eps": NON_NEGATIVE, "eps_root": NON_NEGATIVE}


def _debias(decay: Any, count: jax.Array, like: jax.Array) -> jax.Array:
    """`debias` in ``like``'s dtype, as `bias_correction` divides by it."""
    return debias(decay, count).astype(like.dtype)


class ScaleByBeliefState(NamedTuple):
    """State of `scale_by_belief`, as Optax's.

    Attributes:
      count: int32 scalar, steps taken (saturating).
      mu: the first moment ``m_t``, one array per parameter.
      nu: the belief ``s_t`` (second moment of ``g_t - m_t``), one array per parameter.
    """

    count: jax.Array
    mu: Updates
    nu: Updates


@transformation(_ADAM)
def scale_by_belief(
    b1: float = 0.9, b2: float = 0.999, eps: float = 1e-16, eps_root: float = 1e-16, *, nesterov: bool = False
) -> GradientTransformation:
    """AdaBelief's preconditioner, without the learning rate (see `adabelief`).

    Args:
      b1, b2, eps, eps_root, nesterov: as in `adabelief`.

    Returns:
      A transformation with `ScaleByBeliefState`. It is one stage, not the composition
      ``ratio(ema(b1), chain(prediction_error(b1), square(), ema(b2), sqrt(), add(eps)))``,
      because both sides of that ratio need the first moment and `branch` gives each side
      its own state: the composition keeps ``m_t`` twice (1.5 times Optax's state).

    References:
      Zhuang et al., "AdaBelief Optimizer: Adapting Stepsizes by the Belief in Observed
      Gradients", NeurIPS 2020. https://arxiv.org/abs/2010.07468

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.scale_by_belief()
      >>> tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))[0].shape
      (1,)
    """

    def init(params):
        return ScaleByBeliefState(new_count(), tree_zeros_like(params), tree_zeros_like(params))

    def update(updates, state, params=None, **extra):
        check_same_tree(updates, state.mu, "updates", "scale_by_belief's state")
        count = safe_increment(state.count)

        def leaf(g, m_old, s_old):
            c1, c2 = _coef(b1, m_old), _coef(b2, s_old)
            m = (1 - c1) * g + c1 * m_old
            s = (1 - c2) * abs_sq(g - m) + c2 * s_old + _coef(eps_root, s_old)
            if nesterov:
                m_hat = c1 * (m / _debias(b1, safe_increment(count), m)) + (1 - c1) * (g / _debias(b1, count, m))
            else:
                m_hat = m / _debias(b1, count, m)
            u = m_hat / (jnp.sqrt(s / _debias(b2, count, s)) + _coef(eps, s))
            return u.astype(g.dtype), m.astype(m_old.dtype), s.astype(s_old.dtype)

        out, mu, nu = tree_map_unzip(leaf, updates, state.mu, state.nu)
        return out, ScaleByBeliefState(count, mu, nu)

    return GradientTransformation(init, update)


@transformation({**_LR, **_ADAM})
def adabelief(
    learning_rate: float,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-16,
    eps_root: float = 1e-16,
    *,
    nesterov: bool = False,
) -> GradientTransformation:
    """AdaBelief: Adam whose second moment is the variance of the gradient around its mean.

    ``m_t = b1 m_{t-1} + (1 - b1) g_t``; ``s_t = b2 s_{t-1} + (1 - b2) |g_t - m_t|^2 + eps_root``;
    ``u_t = -lr * m^_t / (sqrt(s^_t) + eps)`` with Adam's bias corrections ``^``. A gradient
    close to its prediction ``m_t`` (high belief) gets a large step.

    Args:
      learning_rate: a number >= 0 or a schedule.
      b1: decay of the first moment, in [0, 1).
      b2: decay of the second moment, in [0, 1).
      eps: added to the root, >= 0.
      eps_root: added to the second moment at every step, >= 0.
      nesterov: Nadam's look-ahead first moment.

    Returns:
      ``chain(scale_by_belief(...), scale_by_learning_rate(learning_rate))``.

    References:
      Zhuang et al., "AdaBelief Optimizer: Adapting Stepsizes by the Belief in Observed
      Gradients", NeurIPS 2020. https://arxiv.org/abs/2010.07468

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.adabelief(0.1)
      >>> tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))[0].shape
      (1,)
    """
    return chain(scale_by_belief(b1, b2, eps, eps_root, nesterov=nesterov), scale_by_learning_rate(learning_rate))


@transformation(_ADAM)
def scale_by_yogi(
    b1: float = 0.9, b2: float = 0.999, eps: float = 1e-3, eps_root: float = 0.0, initial_accumulator_value: float = 1e-6
) -> GradientTransformation:
    """Yogi's preconditioner, without the learning rate (see `yogi`).

    Args:
      b1, b2, eps: as in `yogi`.
      eps_root: added inside the root, >= 0.
      initial_accumulator_value: starting value of both moments, >= 0.

    Returns:
      ``ratio(ema(b1, initial_value=...), chain(square(), yogi_moment(b2, ...),
      bias_correction(b2), add(eps_root), sqrt(), add(eps)))``.

    Raises:
      ValueError: if ``initial_accumulator_value`` is negative.

    References:
      Zaheer, Reddi, Sachan, Kale & Kumar, "Adaptive Methods for Nonconvex Optimization",
      NeurIPS 2018. https://papers.nips.cc/paper/8186-adaptive-methods-for-nonconvex-optimization

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.scale_by_yogi()
      >>> tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))[0].shape
      (1,)
    """
    check_hyperparam("scale_by_yogi", "initial_accumulator_value", initial_accumulator_value, NON_NEGATIVE)
    return ratio(
        ema(b1, initial_value=initial_accumulator_value),
        chain(
            square(),
            yogi_moment(b2, initial_value=float(initial_accumulator_value)),
            bias_correction(b2),
            add(eps_root),
            sqrt(),
            add(eps),
        ),
    )


@transformation({**_LR, "b1": UNIT, "b2": UNIT, "eps": NON_NEGATIVE})
def yogi(learning_rate: float, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-3) -> GradientTransformation:
    """Yogi: Adam whose second moment moves by at most ``(1 - b2) |g|^2`` per step.

    ``v_t = v_{t-1} - (1 - b2) sign(v_{t-1} - |g_t|^2) |g_t|^2``; otherwise as `adam`
    (both moments start at ``1e-6``).

    Args:
      learning_rate: a number >= 0 or a schedule.
      b1: decay of the first moment, in [0, 1).
      b2: rate of the second moment, in [0, 1).
      eps: added to the root, >= 0.

    Returns:
      ``chain(scale_by_yogi(b1, b2, eps), scale_by_learning_rate(learning_rate))``.

    References:
      Zaheer, Reddi, Sachan, Kale & Kumar, "Adaptive Methods for Nonconvex Optimization",
      NeurIPS 2018. https://papers.nips.cc/paper/8186-adaptive-methods-for-nonconvex-optimization

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.yogi(0.1)
      >>> tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))[0].shape
      (1,)
    """
    return chain(scale_by_yogi(b1, b2, eps), scale_by_learning_rate(learning_rate))


@transformation({**_ADAM, "threshold": REAL})
def scale_by_radam(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    threshold: float = 5.0,
    *,
    nesterov: bool = False,
) -> GradientTransformation:
    """RAdam's preconditioner, without the learning rate (see `radam`).

    Args:
      b1, b2, eps, eps_root, threshold, nesterov: as in `radam`.

    Returns:
      ``ratio(ema(b1), chain(square(), ema(b2), add(eps_root), sqrt(), add(eps),
      rectify(b2, threshold)))``.

    References:
      Liu et al., "On the Variance of the Adaptive Learning Rate and Beyond", ICLR 2020.
      https://arxiv.org/abs/1908.03265

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.scale_by_radam()
      >>> tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))[0].tolist()  # first steps: momentum
      [2.0]
    """
    denominator = chain(square(), ema(b2), add(eps_root), sqrt(), add(eps), rectify(b2, threshold))
    return ratio(first_moment(b1, nesterov=nesterov), denominator)


@transformation({**_LR, **_ADAM, "threshold": REAL})
def radam(
    learning_rate: float,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    threshold: float = 5.0,
    *,
    nesterov: bool = False,
) -> GradientTransformation:
    """Rectified Adam: momentum SGD until the second moment is reliable, then rectified Adam.

    With ``rho_inf = 2 / (1 - b2) - 1`` and ``rho_t = rho_inf - 2 t b2^t / (1 - b2^t)``, the
    step is ``-lr * m^_t`` while ``rho_t < threshold`` and
    ``-lr * r_t m^_t / (sqrt(v^_t + eps_root) + eps)`` after, where
    ``r_t = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))``.

    Args:
      learning_rate: a number >= 0 or a schedule.
      b1: decay of the first moment, in [0, 1).
      b2: decay of the second moment, in [0, 1).
      eps: added to the root, >= 0.
      eps_root: added inside the root, >= 0.
      threshold: the ``rho_t`` from which the adaptive step is used.
      nesterov: Nadam's look-ahead first moment.

    Returns:
      ``chain(scale_by_radam(...), scale_by_learning_rate(learning_rate))``.

    References:
      Liu et al., "On the Variance of the Adaptive Learning Rate and Beyond", ICLR 2020.
      https://arxiv.org/abs/1908.03265

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.radam(0.1)
      >>> [round(x, 4) for x in tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))[0].tolist()]
      [-0.2]
    """
    return chain(
        scale_by_radam(b1, b2, eps, eps_root, threshold, nesterov=nesterov), scale_by_learning_rate(learning_rate)
    )


_ADAN = {"b1": UNIT, "b2": UNIT, "b3": UNIT, "eps": NON_NEGATIVE, "eps_root": NON_NEGATIVE}


class ScaleByAdanState(NamedTuple):
    """State of `scale_by_adan`, as Optax's: four arrays per parameter.

    Attributes:
      count: int32 scalar, steps taken (saturating).
      m: the gradient's average ``m_t``.
      v: the average ``v_t`` of the gradient's change.
      n: the second moment ``n_t`` of the look-ahead gradient.
      previous: the last gradient ``g_t``.
    """

    count: jax.Array
    m: Updates
    v: Updates
    n: Updates
    previous: Updates


@transformation(_ADAN)
def scale_by_adan(
    b1: float = 0.98, b2: float = 0.92, b3: float = 0.99, eps: float = 1e-8, eps_root: float = 0.0
) -> GradientTransformation:
    """Adan's preconditioner, without the learning rate (see `adan`).

    Args:
      b1, b2, b3, eps, eps_root: as in `adan`.

    Returns:
      A transformation with `ScaleByAdanState`. It is one stage because its numerator needs
      both the gradient and its change ``d_t = g_t - g_{t-1}`` and its denominator their
      mix ``g_t + (1 - b2) d_t``, while a composition passes one stream: composed as
      ``ratio(branch(ema(b1), chain(ema_difference(b2), ...)), chain(
      scale_by_optimistic_gradient(1, 1 - b2), square(), ema(b3), ...))``, it stores the
      previous gradient twice (once mixed into `ema_difference`'s carry), which XLA must
      copy at every step: 1.4 times Optax's step time on a 16M array.

    References:
      Xie, Zhou, Li, Lin & Yan, "Adan: Adaptive Nesterov Momentum Algorithm for Faster
      Optimizing Deep Models", 2022. https://arxiv.org/abs/2208.06677

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.scale_by_adan()
      >>> tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))[0].shape
      (1,)
    """

    def init(params):
        return ScaleByAdanState(new_count(), *(tree_zeros_like(params) for _ in range(4)))

    def update(updates, state, params=None, **extra):
        check_same_tree(updates, state.m, "updates", "scale_by_adan's state")
        count = safe_increment(state.count)

        def leaf(g, m_old, v_old, n_old, g_old):
            c1, c2, c3 = _coef(b1, m_old), _coef(b2, v_old), _coef(b3, n_old)
            d = jnp.where(state.count == 0, jnp.zeros_like(g), g - g_old)
            m = (1 - c1) * g + c1 * m_old
            v = (1 - c2) * d + c2 * v_old
            n = (1 - c3) * abs_sq(g + (1 - c2) * d) + c3 * n_old
            u = m / _debias(b1, count, m) + (1 - c2) * (v / _debias(b2, count, v))
            u = u / (jnp.sqrt(n / _debias(b3, count, n) + _coef(eps_root, n)) + _coef(eps, n))
            stored = ((m, m_old), (v, v_old), (n, n_old), (g, g_old))
            return (u.astype(g.dtype), *(new.astype(old.dtype) for new, old in stored))

        out, m, v, n, previous = tree_map_unzip(leaf, updates, state.m, state.v, state.n, state.previous)
        return out, ScaleByAdanState(count, m, v, n, previous)

    return GradientTransformation(init, update)


@transformation({**_LR, **_ADAN, "weight_decay": NON_NEGATIVE})
def adan(
    learning_rate: float,
    b1: float = 0.98,
    b2: float = 0.92,
    b3: float = 0.99,
    eps: float = 1e-8,
    eps_root: float = 1e-8,
    weight_decay: float = 0.0,
    mask: MaskOrFn = None,
) -> GradientTransformation:
    """Adan: adaptive Nesterov momentum from moving averages of the gradient and its change.

    With ``d_t = g_t - g_{t-1}`` (``d_1 = 0``)::

        m_t = b1 m_{t-1} + (1 - b1) g_t         v_t = b2 v_{t-1} + (1 - b2) d_t
        n_t = b3 n_{t-1} + (1 - b3) |g_t + (1 - b2) d_t|^2
        u_t = -lr * ((m^_t + (1 - b2) v^_t) / (sqrt(n^_t + eps_root) + eps) + weight_decay w_t)

    (``^``: Adam's bias corrections; the decay is decoupled, as Optax does).

    Args:
      learning_rate: a number >= 0 or a schedule.
      b1: decay of the gradient average, in [0, 1).
      b2: decay of the difference average, in [0, 1).
      b3: decay of the second moment, in [0, 1).
      eps: added to the root, >= 0.
      eps_root: added inside the root, >= 0.
      weight_decay: decoupled weight decay rate, >= 0.
      mask: which parameters to decay.

    Returns:
      ``chain(scale_by_adan(...), add_decayed_weights(weight_decay, mask),
      scale_by_learning_rate(learning_rate))``.

    References:
      Xie, Zhou, Li, Lin & Yan, "Adan: Adaptive Nesterov Momentum Algorithm for Faster
      Optimizing Deep Models", 2022. https://arxiv.org/abs/2208.06677

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.adan(0.1)
      >>> p = jnp.zeros(1)
      >>> tx.update(jnp.array([2.0]), tx.init(p), p)[0].shape
      (1,)
    """
    return chain(
        scale_by_adan(b1, b2, b3, eps, eps_root),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


@transformation({"b1": REAL, **{k: v for k, v in _ADAM.items() if k != "b1"}, "weight_decay": NON_NEGATIVE})
def scale_by_novograd(
    b1: float = 0.9,
    b2: float = 0.25,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    weight_decay: float = 0.0,
    mu_dtype: Any = None,
) -> GradientTransformation:
    """NovoGrad's preconditioner, without the learning rate (see `novograd`).

    Args:
      b1, b2, eps, eps_root, weight_decay: as in `novograd`.
      mu_dtype: dtype of the momentum (default: the parameter's).

    Returns:
      ``chain(ratio(identity(), chain(layer_moment(b2), add(eps_root), sqrt(), add(eps))),
      add_decayed_weights(weight_decay), trace(b1))``.

    References:
      Ginsburg et al., "Stochastic Gradient Methods with Layer-wise Adaptive Moments for
      Training of Deep Networks", 2019. https://arxiv.org/abs/1905.11286

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.scale_by_novograd(eps=0.0)
      >>> p = jnp.zeros(2)
      >>> tx.update(jnp.array([3.0, 4.0]), tx.init(p), p)[0].tolist()  # g / ||g||
      [0.6000000238418579, 0.800000011920929]
    """
    layer_root = chain(layer_moment(b2), add(eps_root), sqrt(), add(eps))
    return chain(
        ratio(identity(), layer_root), add_decayed_weights(weight_decay), trace(b1, accumulator_dtype=mu_dtype)
    )


@transformation({**_LR, "b1": REAL, **{k: v for k, v in _ADAM.items() if k != "b1"}, "weight_decay": NON_NEGATIVE})
def novograd(
    learning_rate: float,
    b1: float = 0.9,
    b2: float = 0.25,
    eps: float = 1e-6,
    eps_root: float = 0.0,
    weight_decay: float = 0.0,
) -> GradientTransformation:
    """NovoGrad: momentum over gradients normalised by a per-layer second moment.

    For each parameter array: ``v_1 = ||g_1||^2``, ``v_t = b2 v_{t-1} + (1 - b2) ||g_t||^2``;
    ``m_t = b1 m_{t-1} + g_t / (sqrt(v_t + eps_root) + eps) + weight_decay w_t``;
    ``u_t = -lr * m_t``.

    Args:
      learning_rate: a number >= 0 or a schedule.
      b1: the momentum coefficient.
      b2: decay of the per-layer second moment, in [0, 1).
      eps: added to the root, >= 0.
      eps_root: added inside the root, >= 0.
      weight_decay: weight decay rate (inside the momentum), >= 0.

    Returns:
      ``chain(scale_by_novograd(...), scale_by_learning_rate(learning_rate))``.

    References:
      Ginsburg et al., "Stochastic Gradient Methods with Layer-wise Adaptive Moments for
      Training of Deep Networks", 2019. https://arxiv.org/abs/1905.11286

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.novograd(0.1)
      >>> p = jnp.zeros(2)
      >>> [round(x, 4) for x in tx.update(jnp.array([3.0, 4.0]), tx.init(p), p)[0].tolist()]
      [-0.06, -0.08]
    """
    return chain(scale_by_novograd(b1, b2, eps, eps_root, weight_decay), scale_by_learning_rate(learning_rate))
