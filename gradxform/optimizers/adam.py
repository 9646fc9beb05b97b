"""The Adam family: Adam, AdamW, Nadam, NadamW, AMSGrad, Adamax, AdamaxW.

Adam divides a debiased first moment by the root of a debiased second moment::

    m_t = b1 m_{t-1} + (1 - b1) g_t              v_t = b2 v_{t-1} + (1 - b2) |g_t|^2
    m^_t = m_t / (1 - b1^t)                      v^_t = v_t / (1 - b2^t)
    u_t = -lr * m^_t / (sqrt(v^_t + eps_root) + eps)

Each line is a primitive; the optimizers below are compositions of them.

References:
  Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.
  https://arxiv.org/abs/1412.6980
"""

from __future__ import annotations

from typing import Any

from gradxform._factory import transformation
from gradxform.combinators import branch, chain, ratio
from gradxform.core import NON_NEGATIVE, UNIT, GradientTransformation
from gradxform.primitives.elementwise import absolute, add, scale, scale_by_learning_rate, sqrt, square
from gradxform.primitives.moments import bias_correction, decayed_max, ema
from gradxform.primitives.weight_decay import MaskOrFn, add_decayed_weights

_ADAM = {"b1": UNIT, "b2": UNIT, "eps": NON_NEGATIVE, "eps_root": NON_NEGATIVE}
_LR = {"learning_rate": NON_NEGATIVE}
_WD = {"weight_decay": NON_NEGATIVE}


def first_moment(b1: float, mu_dtype: Any = None, nesterov: bool = False) -> GradientTransformation:
    """Adam's debiased first moment; with ``nesterov``, Nadam's look-ahead form.

    Nadam (Dozat, 2016) replaces ``m^_t`` by ``b1 m_t / (1 - b1^(t+1)) + (1 - b1) g_t / (1 - b1^t)``.
    """
    if not nesterov:
        return ema(b1, accumulator_dtype=mu_dtype)
    return branch(
        chain(ema(b1, debias=False, accumulator_dtype=mu_dtype), bias_correction(b1, step_offset=1), scale(b1)),
        chain(scale(1 - b1), bias_correction(b1)),
        combine="add",
    )


def second_moment_root(
    b2: float, eps: float, eps_root: float, nu_dtype: Any = None, running_max: bool = False
) -> GradientTransformation:
    """``sqrt(v^_t + eps_root) + eps``; with ``running_max``, AMSGrad's maximum of ``v^``."""
    stages = [square(), ema(b2, accumulator_dtype=nu_dtype)]
    if running_max:
        stages.append(decayed_max(1.0, accumulator_dtype=nu_dtype))
    return chain(*stages, add(eps_root), sqrt(), add(eps))


@transformation(_ADAM)
def scale_by_adam(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    *,
    nesterov: bool = False,
    nu_dtype: Any = None,
) -> GradientTransformation:
    """Adam's preconditioner, without the learning rate (see `adam` for the equations).

    Args:
      b1: decay of the first moment, in [0, 1).
      b2: decay of the second moment, in [0, 1).
      eps: added to the root of the second moment, >= 0.
      eps_root: added inside the root, >= 0.
      mu_dtype: dtype of the first moment (default: the parameter's).
      nesterov: use Nadam's look-ahead first moment.
      nu_dtype: dtype of the second moment (default: the parameter's).

    Returns:
      A composition: ``ratio(first moment, root of second moment)``.

    References:
      Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.
      https://arxiv.org/abs/1412.6980

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.scale_by_adam()
      >>> [round(x, 4) for x in tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))[0].tolist()]
      [1.0]
    """
    return ratio(first_moment(b1, mu_dtype, nesterov), second_moment_root(b2, eps, eps_root, nu_dtype))


@transformation({**_LR, **_ADAM})
def adam(
    learning_rate: float,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    *,
    nesterov: bool = False,
    nu_dtype: Any = None,
) -> GradientTransformation:
    r"""Adam: a debiased first moment over the root of a debiased second moment.

    ``u_t = -lr * m^_t / (sqrt(v^_t + eps_root) + eps)`` with ``m^_t``, ``v^_t`` the
    bias-corrected exponential moving averages of ``g`` and ``|g|^2``.

    Args:
      learning_rate: a number >= 0 or a schedule.
      b1: decay of the first moment, in [0, 1).
      b2: decay of the second moment, in [0, 1).
      eps: added to the root of the second moment, >= 0.
      eps_root: added inside the root, >= 0 (useful when differentiating through Adam).
      mu_dtype: dtype of the first moment (default: the parameter's).
      nesterov: Nadam's look-ahead first moment (Dozat, 2016).
      nu_dtype: dtype of the second moment (default: the parameter's).

    Returns:
      The composition::

          chain(ratio(ema(b1),                                # debiased first moment
                      chain(square(), ema(b2), add(eps_root), sqrt(), add(eps))),
                scale_by_learning_rate(learning_rate))

    References:
      Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.
      https://arxiv.org/abs/1412.6980

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.adam(0.1)
      >>> params = jnp.array([1.0, -1.0])
      >>> updates, state = tx.update(2 * params, tx.init(params))
      >>> [round(x, 4) for x in gx.apply_updates(params, updates).tolist()]
      [0.9, -0.9]
    """
    return chain(
        scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov, nu_dtype=nu_dtype),
        scale_by_learning_rate(learning_rate),
    )


@transformation({**_LR, **_ADAM, **_WD})
def adamw(
    learning_rate: float,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    weight_decay: float = 1e-4,
    mask: MaskOrFn = None,
    *,
    nesterov: bool = False,
    nu_dtype: Any = None,
) -> GradientTransformation:
    """AdamW: Adam with weight decay added after the preconditioner (decoupled).

    ``u_t = -lr * (m^_t / (sqrt(v^_t + eps_root) + eps) + weight_decay * w_t)``.

    Args:
      learning_rate, b1, b2, eps, eps_root, mu_dtype, nesterov, nu_dtype: as in `adam`.
      weight_decay: decay rate, >= 0.
      mask: which parameters to decay (a boolean tree or a function of the parameters).

    Returns:
      ``chain(scale_by_adam(...), add_decayed_weights(weight_decay, mask),
      scale_by_learning_rate(learning_rate))``.

    References:
      Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019.
      https://arxiv.org/abs/1711.05101

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.adamw(0.1, weight_decay=0.5)
      >>> p = jnp.array([1.0])
      >>> [round(x, 4) for x in tx.update(jnp.array([1.0]), tx.init(p), p)[0].tolist()]
      [-0.15]
    """
    return chain(
        scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov, nu_dtype=nu_dtype),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


@transformation({**_LR, **_ADAM})
def nadam(
    learning_rate: float,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    *,
    nesterov: bool = True,
    nu_dtype: Any = None,
) -> GradientTransformation:
    """Nadam: Adam with a Nesterov look-ahead first moment (`adam` with ``nesterov=True``).

    Args:
      learning_rate, b1, b2, eps, eps_root, mu_dtype, nu_dtype: as in `adam`.
      nesterov: kept for Optax compatibility; ``False`` gives plain Adam.

    Returns:
      The `adam` composition with the look-ahead first moment.

    References:
      Dozat, "Incorporating Nesterov Momentum into Adam", ICLR workshop 2016.
      https://openreview.net/forum?id=OM0jvwB8jIp57ZJjtNEZ

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.nadam(0.1)
      >>> tx.update(jnp.ones(1), tx.init(jnp.zeros(1)))[0].shape
      (1,)
    """
    return adam(learning_rate, b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov, nu_dtype=nu_dtype)


@transformation({**_LR, **_ADAM, **_WD})
def nadamw(
    learning_rate: float,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    weight_decay: float = 1e-4,
    mask: MaskOrFn = None,
    *,
    nesterov: bool = True,
    nu_dtype: Any = None,
) -> GradientTransformation:
    """NadamW: Nadam with decoupled weight decay (`adamw` with ``nesterov=True``).

    Args:
      learning_rate, b1, b2, eps, eps_root, mu_dtype, weight_decay, mask, nu_dtype: as in
        `adamw`.
      nesterov: kept for Optax compatibility; ``False`` gives plain AdamW.

    Returns:
      The `adamw` composition with the look-ahead first moment.

    References:
      Dozat, 2016 (see `nadam`); Loshchilov & Hutter, 2019 (see `adamw`).

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.nadamw(0.1)
      >>> p = jnp.zeros(1)
      >>> tx.update(jnp.ones(1), tx.init(p), p)[0].shape
      (1,)
    """
    return adamw(
        learning_rate, b1, b2, eps, eps_root, mu_dtype, weight_decay, mask, nesterov=nesterov, nu_dtype=nu_dtype
    )


@transformation({**_LR, **_ADAM})
def amsgrad(
    learning_rate: float,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    bias_correction_mu: bool = True,
    bias_correction_nu: bool = True,
    *,
    nu_dtype: Any = None,
) -> GradientTransformation:
    """AMSGrad: Adam whose denominator uses the running maximum of the second moment.

    ``u_t = -lr * m^_t / (sqrt(max_{s<=t} v^_s + eps_root) + eps)``.

    Args:
      learning_rate, b1, b2, eps, eps_root, mu_dtype, nu_dtype: as in `adam`.
      bias_correction_mu: debias the first moment.
      bias_correction_nu: debias the second moment before taking the maximum.

    Returns:
      ``chain(scale_by_amsgrad(...), scale_by_learning_rate(learning_rate))``.

    References:
      Reddi, Kale & Kumar, "On the Convergence of Adam and Beyond", ICLR 2018.
      https://openreview.net/forum?id=ryQu7f-RZ

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.amsgrad(0.1)
      >>> [round(x, 4) for x in tx.update(jnp.ones(1), tx.init(jnp.zeros(1)))[0].tolist()]
      [-0.1]
    """
    return chain(
        scale_by_amsgrad(b1, b2, eps, eps_root, mu_dtype, bias_correction_mu, bias_correction_nu, nu_dtype=nu_dtype),
        scale_by_learning_rate(learning_rate),
    )


@transformation(_ADAM)
def scale_by_amsgrad(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    bias_correction_mu: bool = True,
    bias_correction_nu: bool = True,
    *,
    nu_dtype: Any = None,
) -> GradientTransformation:
    """AMSGrad's preconditioner, without the learning rate (see `amsgrad`).

    Args:
      b1, b2, eps, eps_root, mu_dtype, bias_correction_mu, bias_correction_nu, nu_dtype: as
        in `amsgrad`.

    Returns:
      Adam's ratio with `decayed_max` (decay 1) after the second moment.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.scale_by_amsgrad()
      >>> [round(x, 4) for x in tx.update(jnp.ones(1), tx.init(jnp.zeros(1)))[0].tolist()]
      [1.0]
    """
    stages = [square(), ema(b2, debias=bias_correction_nu, accumulator_dtype=nu_dtype)]
    denominator = chain(*stages, decayed_max(1.0, accumulator_dtype=nu_dtype), add(eps_root), sqrt(), add(eps))
    return ratio(ema(b1, debias=bias_correction_mu, accumulator_dtype=mu_dtype), denominator)


@transformation({"b1": UNIT, "b2": UNIT, "eps": NON_NEGATIVE})
def scale_by_adamax(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> GradientTransformation:
    """Adamax's preconditioner: debiased first moment over a decayed max of ``|g| + eps``.

    Args:
      b1: decay of the first moment, in [0, 1).
      b2: decay of the infinity norm, in [0, 1).
      eps: added to ``|g|`` before the maximum, >= 0.

    Returns:
      ``ratio(ema(b1), chain(absolute(), add(eps), decayed_max(b2)))``.

    References:
      Kingma & Ba, 2015, section 7.1 (see `adamax`).

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.scale_by_adamax(eps=0.0)
      >>> tx.update(jnp.array([-2.0]), tx.init(jnp.zeros(1)))[0].tolist()
      [-1.0]
    """
    return ratio(ema(b1), chain(absolute(), add(eps), decayed_max(b2)))


@transformation({**_LR, "b1": UNIT, "b2": UNIT, "eps": NON_NEGATIVE})
def adamax(learning_rate: float, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> GradientTransformation:
    """Adamax: Adam with the infinity norm in place of the second moment.

    ``u_t = -lr * m^_t / max(b2 * u_{t-1}, |g_t| + eps)``.

    Args:
      learning_rate: a number >= 0 or a schedule.
      b1: decay of the first moment, in [0, 1).
      b2: decay of the infinity norm, in [0, 1).
      eps: added to ``|g|``, >= 0.

    Returns:
      ``chain(scale_by_adamax(b1, b2, eps), scale_by_learning_rate(learning_rate))``.

    References:
      Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015, section 7.1.
      https://arxiv.org/abs/1412.6980

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.adamax(0.1)
      >>> [round(x, 4) for x in tx.update(jnp.ones(1), tx.init(jnp.zeros(1)))[0].tolist()]
      [-0.1]
    """
    return chain(scale_by_adamax(b1, b2, eps), scale_by_learning_rate(learning_rate))


@transformation({**_LR, "b1": UNIT, "b2": UNIT, "eps": NON_NEGATIVE, **_WD})
def adamaxw(
    learning_rate: float,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 1e-4,
    mask: MaskOrFn = None,
) -> GradientTransformation:
    """AdamaxW: Adamax with decoupled weight decay.

    Args:
      learning_rate, b1, b2, eps: as in `adamax`.
      weight_decay: decay rate, >= 0.
      mask: which parameters to decay.

    Returns:
      ``chain(scale_by_adamax(...), add_decayed_weights(...), scale_by_learning_rate(...))``.

    References:
      Kingma & Ba, 2015 (see `adamax`); Loshchilov & Hutter, 2019 (see `adamw`).

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.adamaxw(0.1)
      >>> p = jnp.zeros(1)
      >>> tx.update(jnp.ones(1), tx.init(p), p)[0].shape
      (1,)
    """
    return chain(
        scale_by_adamax(b1, b2, eps), add_decayed_weights(weight_decay, mask), scale_by_learning_rate(learning_rate)
    )
