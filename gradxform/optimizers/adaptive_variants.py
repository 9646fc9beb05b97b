"""Adam's relatives that change its second moment: AdaBelief, Yogi, RAdam, Adan, NovoGrad.

Each is Adam's composition (`gradxform.optimizers.adam`) with one stage swapped:

    adam       ratio(ema(b1), chain(square(), ema(b2), sqrt(), add(eps)))
    adabelief  ratio(ema(b1), chain(prediction_error(b1), square(), ema(b2), sqrt(), add(eps)))
    yogi       ratio(ema(b1), chain(square(), yogi_moment(b2), bias_correction(b2), sqrt(), add(eps)))
    radam      ratio(ema(b1), chain(square(), ema(b2), sqrt(), add(eps), rectify(b2)))
    adan       ratio(ema(b1) + (1 - b2) ema_difference(b2),
                     root of ema(b3) of |g_t + (1 - b2)(g_t - g_{t-1})|^2)
    novograd   chain(ratio(identity(), root of layer_moment(b2)), add_decayed_weights, trace(b1))
"""

from __future__ import annotations

from typing import Any

from gradxform._factory import transformation
from gradxform.combinators import branch, chain, identity, ratio
from gradxform.core import NON_NEGATIVE, REAL, UNIT, GradientTransformation, check_hyperparam
from gradxform.optimizers.adam import first_moment
from gradxform.primitives.elementwise import add, scale, scale_by_learning_rate, sqrt, square
from gradxform.optimizers.optimistic import scale_by_optimistic_gradient
from gradxform.primitives.history import ema_difference
from gradxform.primitives.moments import bias_correction, ema, trace
from gradxform.primitives.second_moments import layer_moment, prediction_error, rectify, yogi_moment
from gradxform.primitives.weight_decay import MaskOrFn, add_decayed_weights

_LR = {"learning_rate": NON_NEGATIVE}
_ADAM = {"b1": UNIT, "b2": UNIT, "eps": NON_NEGATIVE, "eps_root": NON_NEGATIVE}


@transformation(_ADAM)
def scale_by_belief(
    b1: float = 0.9, b2: float = 0.999, eps: float = 1e-16, eps_root: float = 1e-16, *, nesterov: bool = False
) -> GradientTransformation:
    """AdaBelief's preconditioner, without the learning rate (see `adabelief`).

    Args:
      b1, b2, eps, eps_root, nesterov: as in `adabelief`.

    Returns:
      ``ratio(ema(b1), chain(prediction_error(b1), square(), add(eps_root / (1 - b2)),
      ema(b2), sqrt(), add(eps)))``: adding ``eps_root / (1 - b2)`` before the average is
      adding ``eps_root`` to the stored average at every step, as the paper does.

    References:
      Zhuang et al., "AdaBelief Optimizer: Adapting Stepsizes by the Belief in Observed
      Gradients", NeurIPS 2020. https://arxiv.org/abs/2010.07468

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.scale_by_belief()
      >>> tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))[0].shape
      (1,)
    """
    belief = chain(prediction_error(b1), square(), add(eps_root / (1 - b2)), ema(b2), sqrt(), add(eps))
    return ratio(first_moment(b1, nesterov=nesterov), belief)


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


@transformation(_ADAN)
def scale_by_adan(
    b1: float = 0.98, b2: float = 0.92, b3: float = 0.99, eps: float = 1e-8, eps_root: float = 0.0
) -> GradientTransformation:
    """Adan's preconditioner, without the learning rate (see `adan`).

    Args:
      b1, b2, b3, eps, eps_root: as in `adan`.

    Returns:
      ``ratio(branch(ema(b1), chain(ema_difference(b2), bias_correction(b2),
      scale(1 - b2)), "add"), chain(lookahead, square(), ema(b3), add(eps_root), sqrt(),
      add(eps)))`` with the look-ahead gradient ``g_t + (1 - b2)(g_t - g_{t-1})`` from
      ``scale_by_optimistic_gradient(1, 1 - b2)``: four arrays per parameter, as a
      monolithic Adan keeps.

    References:
      Xie, Zhou, Li, Lin & Yan, "Adan: Adaptive Nesterov Momentum Algorithm for Faster
      Optimizing Deep Models", 2022. https://arxiv.org/abs/2208.06677

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.scale_by_adan()
      >>> tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))[0].shape
      (1,)
    """
    numerator = branch(ema(b1), chain(ema_difference(b2), bias_correction(b2), scale(1 - b2)), combine="add")
    # g_t + (1 - b2)(g_t - g_{t-1}) is the optimistic extrapolation with alpha = 1, beta = 1 - b2.
    lookahead = scale_by_optimistic_gradient(1.0, 1 - b2)
    return ratio(numerator, chain(lookahead, square(), ema(b3), add(eps_root), sqrt(), add(eps)))


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
