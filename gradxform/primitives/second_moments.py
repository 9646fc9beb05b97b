"""Variants of the second-moment estimate of adaptive methods.

Adam's denominator is ``chain(square(), ema(b2), sqrt(), add(eps))``. Its relatives change
one stage of it, and each changed stage is a primitive here:

- `prediction_error`: AdaBelief squares ``g - m`` instead of ``g`` (see `adabelief`);
- `yogi_moment`: Yogi's additive, sign-controlled update replaces `ema` (see `yogi`);
- `rectify`: RAdam's variance rectification of the denominator (see `radam`);
- `layer_moment`: NovoGrad's one second moment per parameter array (see `novograd`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradxform._factory import transformation
from gradxform.core import (
    NON_NEGATIVE,
    REAL,
    UNIT,
    GradientTransformation,
    Updates,
    check_hyperparam,
    check_same_tree,
    new_count,
    safe_increment,
    tree_full_like,
)
from gradxform.primitives.moments import CountState, _coef


class PredictionErrorState(NamedTuple):
    """State of `prediction_error`: ``mu``, the running mean of the inputs."""

    mu: Updates


@transformation({"decay": UNIT})
def prediction_error(decay: float, accumulator_dtype: Any = None) -> GradientTransformation:
    """Outputs ``g_t - m_t``, the input minus its updated moving average ``m_t``.

    ``m_t = decay m_{t-1} + (1 - decay) g_t``. In AdaBelief the average is the same as the
    numerator's first moment, and the two sides of a `branch` cannot share state: AdaBelief
    built from this primitive keeps ``m_t`` twice, which is why `scale_by_belief` is one stage.

    Args:
      decay: decay of the moving average, in [0, 1).
      accumulator_dtype: dtype of the average (default: the parameter's).

    Returns:
      A transformation with `PredictionErrorState`.

    References:
      Zhuang et al., "AdaBelief Optimizer: Adapting Stepsizes by the Belief in Observed
      Gradients", NeurIPS 2020 (see `adabelief`).

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.prediction_error(0.5)
      >>> tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))[0].tolist()  # 2 - 0.5 * 2
      [1.0]
    """

    def init(params):
        return PredictionErrorState(tree_full_like(params, 0.0, accumulator_dtype))

    def update(updates, state, params=None, **extra):
        check_same_tree(updates, state.mu, "updates", "prediction_error's state")
        mu = jax.tree.map(
            lambda g, m: ((1 - _coef(decay, m)) * g + _coef(decay, m) * m).astype(m.dtype), updates, state.mu
        )
        return jax.tree.map(lambda g, m: g - m, updates, mu), PredictionErrorState(mu)

    return GradientTransformation(init, update)


class YogiMomentState(NamedTuple):
    """State of `yogi_moment`: ``nu``, the second-moment estimate."""

    nu: Updates


@transformation({"decay": UNIT})
def yogi_moment(decay: float, initial_value: float = 1e-6, accumulator_dtype: Any = None) -> GradientTransformation:
    """Yogi's second moment: ``v <- v - (1 - decay) sign(v - x) x`` for an input ``x = |g|^2``.

    Unlike `ema`, the change of ``v`` is bounded by ``(1 - decay) x`` whatever ``v`` is, so
    a burst of large gradients cannot make the effective step size collapse.

    Args:
      decay: the rate, in [0, 1) (Yogi's ``b2``).
      initial_value: the estimate's starting value (Optax: ``1e-6``), >= 0.
      accumulator_dtype: dtype of the estimate (default: the parameter's).

    Returns:
      A transformation with `YogiMomentState`; feed it squared gradients (`square`).

    Raises:
      ValueError: if ``initial_value`` is negative or not a number.

    References:
      Zaheer, Reddi, Sachan, Kale & Kumar, "Adaptive Methods for Nonconvex Optimization",
      NeurIPS 2018 (see `yogi`).

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.yogi_moment(0.5, initial_value=0.0)
      >>> tx.update(jnp.array([4.0]), tx.init(jnp.zeros(1)))[0].tolist()  # 0 + 0.5 * 4
      [2.0]
    """
    check_hyperparam("yogi_moment", "initial_value", initial_value, NON_NEGATIVE)
    if callable(initial_value):
        raise ValueError(f"yogi_moment: initial_value must be a number >= 0, got initial_value={initial_value!r}.")

    def init(params):
        return YogiMomentState(tree_full_like(params, initial_value, accumulator_dtype))

    def update(updates, state, params=None, **extra):
        check_same_tree(updates, state.nu, "updates", "yogi_moment's state")
        nu = jax.tree.map(
            lambda x, v: (v - (1 - _coef(decay, v)) * jnp.sign(v - x) * x).astype(v.dtype), updates, state.nu
        )
        return nu, YogiMomentState(nu)

    return GradientTransformation(init, update)


@transformation({"decay": UNIT, "threshold": REAL})
def rectify(decay: float = 0.999, threshold: float = 5.0) -> GradientTransformation:
    """RAdam's rectification, applied to Adam's denominator ``d``.

    With ``rho_inf = 2 / (1 - decay) - 1`` and ``rho_t = rho_inf - 2 t decay^t / (1 - decay^t)``,
    outputs ``d / r_t`` where ``r_t = sqrt((rho_t - 4)(rho_t - 2) rho_inf /
    ((rho_inf - 4)(rho_inf - 2) rho_t))`` once ``rho_t >= threshold``, and ``1`` before
    (the step is then the un-adapted first moment).

    Args:
      decay: the decay of the second moment (RAdam's ``b2``), in [0, 1).
      threshold: the smallest ``rho_t`` at which the adaptive step is used.

    Returns:
      A transformation with a `CountState`.

    References:
      Liu et al., "On the Variance of the Adaptive Learning Rate and Beyond", ICLR 2020
      (see `radam`).

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.rectify()
      >>> tx.update(jnp.array([3.0]), tx.init(jnp.zeros(1)))[0].tolist()  # rho_1 = 1 < 5
      [1.0]
    """

    def update(updates, state, params=None, **extra):
        count = safe_increment(state.count)
        b2 = jnp.asarray(decay, jnp.float32)
        rho_inf = 2.0 / (1.0 - b2) - 1.0
        b2t = b2**count
        rho = rho_inf - 2 * count * b2t / (1 - b2t)
        r = jnp.sqrt((rho - 4.0) * (rho - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho))
        use = rho >= jnp.asarray(threshold, jnp.float32)
        out = jax.tree.map(lambda d: jnp.where(use, d / r.astype(d.dtype), jnp.ones_like(d)), updates)
        return out, CountState(count)

    return GradientTransformation(lambda params: CountState(new_count()), update)


class LayerMomentState(NamedTuple):
    """State of `layer_moment`.

    Attributes:
      count: int32 scalar, updates seen so far (saturating).
      nu: one real scalar per parameter array, the moving average of its squared norm.
    """

    count: jax.Array
    nu: Updates


@transformation({"decay": UNIT})
def layer_moment(decay: float) -> GradientTransformation:
    """Moving average of each array's squared L2 norm, one scalar per parameter array.

    ``v_1 = ||g_1||^2`` and ``v_t = decay v_{t-1} + (1 - decay) ||g_t||^2``; outputs ``v_t``
    (a scalar per leaf, which broadcasts against the leaf in a `ratio`).

    Args:
      decay: in [0, 1) (NovoGrad's ``b2``).

    Returns:
      A transformation with `LayerMomentState`.

    References:
      Ginsburg et al., "Stochastic Gradient Methods with Layer-wise Adaptive Moments for
      Training of Deep Networks", 2019 (see `novograd`).

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.layer_moment(0.5)
      >>> out, s = tx.update(jnp.array([3.0, 4.0]), tx.init(jnp.zeros(2)))
      >>> float(out), float(tx.update(jnp.array([0.0, 1.0]), s)[0])
      (25.0, 13.0)
    """

    def init(params):
        return LayerMomentState(
            new_count(), jax.tree.map(lambda p: jnp.zeros([], jnp.real(jnp.zeros((), p.dtype)).dtype), params)
        )

    def update(updates, state, params=None, **extra):
        check_same_tree(updates, state.nu, "updates", "layer_moment's state", shapes=False)
        first = state.count == 0

        def step(g, v):
            sq = (jnp.linalg.norm(g) ** 2).astype(v.dtype)
            return jnp.where(first, sq, (1 - _coef(decay, v)) * sq + _coef(decay, v) * v).astype(v.dtype)

        nu = jax.tree.map(step, updates, state.nu)
        return nu, LayerMomentState(safe_increment(state.count), nu)

    return GradientTransformation(init, update)

