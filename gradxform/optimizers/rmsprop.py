"""Per-coordinate adaptive step sizes: AdaGrad, RMSProp (plain, centered, momentum), AdaDelta."""

from __future__ import annotations

from gradxform._factory import transformation
from gradxform.combinators import branch, chain, identity, ratio
from gradxform.core import NON_NEGATIVE, UNIT, UNIT_CLOSED, GradientTransformation
from gradxform.primitives.elementwise import add, scale_by_learning_rate, sqrt, square
from gradxform.primitives.moments import accumulate, ema, scale_by_update_rms, trace
from gradxform.primitives.weight_decay import MaskOrFn, add_decayed_weights


def _root(eps: float, eps_in_sqrt: bool) -> list[GradientTransformation]:
    """``sqrt(x + eps)`` or ``sqrt(x) + eps``."""
    return [add(eps), sqrt()] if eps_in_sqrt else [sqrt(), add(eps)]


@transformation({"decay": UNIT, "eps": NON_NEGATIVE, "initial_scale": NON_NEGATIVE})
def scale_by_rms(
    decay: float = 0.9,
    eps: float = 1e-8,
    initial_scale: float = 0.0,
    eps_in_sqrt: bool = True,
    bias_correction: bool = False,
) -> GradientTransformation:
    """Divides by the root of a moving average of squared gradients (RMSProp; see `rmsprop`).

    Args:
      decay: decay of the average, in [0, 1).
      eps: added inside the root (``eps_in_sqrt``) or to it, >= 0.
      initial_scale: starting value of the average.
      eps_in_sqrt: where ``eps`` goes.
      bias_correction: debias the average.

    Returns:
      ``ratio(identity(), chain(square(), ema(decay), add(eps), sqrt()))``.

    References:
      Tieleman & Hinton, Lecture 6.5, COURSERA: Neural Networks for Machine Learning, 2012.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.scale_by_rms(decay=0.0, eps=0.0)
      >>> tx.update(jnp.array([-3.0]), tx.init(jnp.zeros(1)))[0].tolist()
      [-1.0]
    """
    second = ema(decay, debias=bias_correction, initial_value=initial_scale)
    return ratio(identity(), chain(square(), second, *_root(eps, eps_in_sqrt)))


@transformation({"decay": UNIT, "eps": NON_NEGATIVE, "initial_scale": NON_NEGATIVE})
def scale_by_stddev(
    decay: float = 0.9,
    eps: float = 1e-8,
    initial_scale: float = 0.0,
    eps_in_sqrt: bool = True,
    bias_correction: bool = False,
) -> GradientTransformation:
    """Divides by a running standard deviation ``sqrt(E[g^2] - |E[g]|^2)`` (centered RMSProp).

    Args:
      decay, eps, initial_scale, eps_in_sqrt, bias_correction: as in `scale_by_rms`.

    Returns:
      ``ratio(identity(), chain(branch(E[g^2], |E[g]|^2, "subtract"), add(eps), sqrt()))``.

    References:
      Graves, "Generating Sequences With Recurrent Neural Networks", 2013, eq. 38-45.
      https://arxiv.org/abs/1308.0850

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.scale_by_stddev(decay=0.5, eps=0.0)
      >>> tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))[0].tolist()
      [2.0]
    """
    variance = branch(
        chain(square(), ema(decay, debias=bias_correction, initial_value=initial_scale)),
        chain(ema(decay, debias=bias_correction), square()),
        combine="subtract",
    )
    return ratio(identity(), chain(variance, *_root(eps, eps_in_sqrt)))


@transformation(
    {"learning_rate": NON_NEGATIVE, "decay": UNIT, "eps": NON_NEGATIVE, "initial_scale": NON_NEGATIVE, "momentum": UNIT_CLOSED}
)
def rmsprop(
    learning_rate: float,
    decay: float = 0.9,
    eps: float = 1e-8,
    initial_scale: float = 0.0,
    eps_in_sqrt: bool = True,
    centered: bool = False,
    momentum: float | None = None,
    nesterov: bool = False,
    bias_correction: bool = False,
) -> GradientTransformation:
    """RMSProp: divide by the root of a moving average of squared gradients.

    ``v_t = decay v_{t-1} + (1 - decay) g_t^2``; ``u_t = -lr g_t / sqrt(v_t + eps)``. Centered
    (Graves, 2013) subtracts the squared mean; momentum traces the scaled update.

    Args:
      learning_rate: a number >= 0 or a schedule.
      decay: decay of the average, in [0, 1).
      eps: added inside (or to) the root, >= 0.
      initial_scale: starting value of the average.
      eps_in_sqrt: where ``eps`` goes.
      centered: divide by the running standard deviation instead.
      momentum: momentum applied after the learning rate, or ``None``.
      nesterov: Nesterov form of that momentum.
      bias_correction: debias the averages.

    Returns:
      ``chain(scale_by_rms | scale_by_stddev, scale_by_learning_rate, trace)``.

    References:
      Tieleman & Hinton, Lecture 6.5, COURSERA: Neural Networks for Machine Learning, 2012.
      Graves, "Generating Sequences With Recurrent Neural Networks", 2013.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.rmsprop(0.1, decay=0.0, eps=0.0)
      >>> tx.update(jnp.array([4.0]), tx.init(jnp.zeros(1)))[0].tolist()
      [-0.10000000149011612]
    """
    precondition = scale_by_stddev if centered else scale_by_rms
    return chain(
        precondition(decay, eps, initial_scale, eps_in_sqrt, bias_correction),
        scale_by_learning_rate(learning_rate),
        trace(momentum, nesterov) if momentum is not None else identity(),
    )


@transformation({"eps": NON_NEGATIVE})
def scale_by_rss(initial_accumulator_value: float = 0.1, eps: float = 1e-7) -> GradientTransformation:
    """Divides by the root of the running sum of squared gradients (AdaGrad; see `adagrad`).

    Args:
      initial_accumulator_value: starting value of the sum, >= 0.
      eps: added inside the root, >= 0.

    Returns:
      ``ratio(identity(), chain(square(), accumulate(initial), add(eps), sqrt()))``.

    References:
      Duchi, Hazan & Singer, "Adaptive Subgradient Methods for Online Learning and Stochastic
      Optimization", JMLR 2011.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.scale_by_rss(0.0, 0.0)
      >>> tx.update(jnp.array([-3.0]), tx.init(jnp.zeros(1)))[0].tolist()
      [-1.0]
    """
    if initial_accumulator_value < 0:
        raise ValueError(
            f"scale_by_rss: initial_accumulator_value must be >= 0, got {initial_accumulator_value!r}."
        )
    return ratio(identity(), chain(square(), accumulate(initial_accumulator_value), add(eps), sqrt()))


@transformation({"learning_rate": NON_NEGATIVE, "eps": NON_NEGATIVE})
def adagrad(learning_rate: float, initial_accumulator_value: float = 0.1, eps: float = 1e-7) -> GradientTransformation:
    """AdaGrad: per-coordinate steps shrinking with the root of the summed squared gradients.

    ``s_t = s_{t-1} + g_t^2``; ``u_t = -lr g_t / sqrt(s_t + eps)``.

    Args:
      learning_rate: a number >= 0 or a schedule.
      initial_accumulator_value: starting value of the sum, >= 0.
      eps: added inside the root, >= 0.

    Returns:
      ``chain(scale_by_rss(...), scale_by_learning_rate(learning_rate))``.

    References:
      Duchi, Hazan & Singer, "Adaptive Subgradient Methods for Online Learning and Stochastic
      Optimization", JMLR 2011. https://jmlr.org/papers/v12/duchi11a.html

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.adagrad(1.0, 0.0, 0.0)
      >>> tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))[0].tolist()
      [-1.0]
    """
    return chain(scale_by_rss(initial_accumulator_value, eps), scale_by_learning_rate(learning_rate))


@transformation({"rho": UNIT, "eps": NON_NEGATIVE})
def scale_by_adadelta(rho: float = 0.9, eps: float = 1e-6) -> GradientTransformation:
    """AdaDelta's preconditioner (see `adadelta`).

    Args:
      rho: decay of both running averages, in [0, 1).
      eps: added inside both roots, >= 0.

    Returns:
      ``chain(ratio(identity(), RMS of g), scale_by_update_rms(rho, eps))``.

    References:
      Zeiler, "ADADELTA: An Adaptive Learning Rate Method", 2012. https://arxiv.org/abs/1212.5701

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.scale_by_adadelta(0.0, 1.0)
      >>> tx.update(jnp.array([0.0]), tx.init(jnp.zeros(1)))[0].tolist()
      [0.0]
    """
    rms_g = chain(square(), ema(rho, debias=False), add(eps), sqrt())
    return chain(ratio(identity(), rms_g), scale_by_update_rms(rho, eps))


@transformation({"learning_rate": NON_NEGATIVE, "rho": UNIT, "eps": NON_NEGATIVE, "weight_decay": NON_NEGATIVE})
def adadelta(
    learning_rate: float | None = None,
    rho: float = 0.9,
    eps: float = 1e-6,
    weight_decay: float = 0.0,
    weight_decay_mask: MaskOrFn = None,
) -> GradientTransformation:
    """AdaDelta: steps scaled by the ratio of the RMS of past steps to the RMS of gradients.

    ``E[g^2]_t = rho E[g^2]_{t-1} + (1 - rho) g_t^2``;
    ``d_t = sqrt(E[d^2]_{t-1} + eps) / sqrt(E[g^2]_t + eps) * g_t``;
    ``E[d^2]_t = rho E[d^2]_{t-1} + (1 - rho) d_t^2``; ``u_t = -lr d_t``.

    Args:
      learning_rate: a number >= 0 or a schedule; ``None`` applies no scaling (and no sign
        flip), as Optax does.
      rho: decay of the running averages, in [0, 1).
      eps: added inside the roots, >= 0.
      weight_decay: weight decay added to the gradient before preconditioning, >= 0.
      weight_decay_mask: which parameters to decay.

    Returns:
      ``chain(add_decayed_weights, scale_by_adadelta, scale_by_learning_rate)``.

    References:
      Zeiler, "ADADELTA: An Adaptive Learning Rate Method", 2012. https://arxiv.org/abs/1212.5701

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.adadelta(1.0)
      >>> p = jnp.zeros(1)
      >>> tx.update(jnp.ones(1), tx.init(p), p)[0].shape
      (1,)
    """
    return chain(
        add_decayed_weights(weight_decay, weight_decay_mask),
        scale_by_adadelta(rho, eps),
        scale_by_learning_rate(learning_rate) if learning_rate is not None else identity(),
    )
