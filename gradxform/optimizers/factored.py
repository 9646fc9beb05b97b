"""Memory-efficient adaptive optimizers: Adafactor and SM3.

Their second moments take sublinear memory and are single stages
(`gradxform.primitives.factored` says why); everything around them is composed:

    adafactor  chain(scale_by_factored_rms, clip_by_block_rms, learning rate,
                     scale_by_param_block_rms, ema (momentum), add_decayed_weights, scale(-1))
    sm3        chain(sm3_accumulator, ema (momentum), learning rate)
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from gradxform._factory import transformation
from gradxform.combinators import chain
from gradxform.core import NON_NEGATIVE, POSITIVE, UNIT, UNIT_CLOSED, GradientTransformation, check_positive_int
from gradxform.primitives.elementwise import scale, scale_by_learning_rate
from gradxform.primitives.factored import scale_by_factored_rms, sm3_accumulator
from gradxform.primitives.layerwise import scale_by_param_block_rms
from gradxform.primitives.moments import ema
from gradxform.primitives.weight_decay import MaskOrFn, add_decayed_weights
from gradxform.wrappers.clipping import clip_by_block_rms


@transformation(
    {
        "learning_rate": NON_NEGATIVE,
        "decay_rate": NON_NEGATIVE,
        "clipping_threshold": POSITIVE,
        "momentum": UNIT,
        "weight_decay_rate": NON_NEGATIVE,
        "eps": NON_NEGATIVE,
    }
)
def adafactor(
    learning_rate: float | None = None,
    min_dim_size_to_factor: int = 128,
    decay_rate: float = 0.8,
    decay_offset: int = 0,
    multiply_by_parameter_scale: bool = True,
    clipping_threshold: float | None = 1.0,
    momentum: float | None = None,
    dtype_momentum: Any = jnp.float32,
    weight_decay_rate: float | None = None,
    eps: float = 1e-30,
    factored: bool = True,
    weight_decay_mask: MaskOrFn = None,
) -> GradientTransformation:
    """Adafactor: RMS scaling by a factored second moment, with relative step sizes.

    ``U_t = G_t / sqrt(V^_t)`` with the factored estimate ``V^_t`` of
    `scale_by_factored_rms` (decay ``1 - t^-decay_rate``); each array's ``U_t`` is divided
    by ``max(1, rms(U_t) / clipping_threshold)``, multiplied by ``learning_rate`` and, with
    ``multiply_by_parameter_scale``, by ``max(rms(w_t), 1e-3)``; optionally averaged with
    ``momentum`` and decayed by ``weight_decay_rate``; the step is its negative.

    Args:
      learning_rate: a number >= 0, a schedule, or ``None`` (no learning-rate stage: the
        relative step size alone).
      min_dim_size_to_factor: factor a parameter only if its two largest axes are at
        least this long.
      decay_rate: the exponent of the second moment's decay schedule.
      decay_offset: the step the decay schedule starts from (fine-tuning); a state whose
        count is below it uses the schedule's step-0 decay (Optax's updates are NaN there).
      multiply_by_parameter_scale: scale each array's step by its parameter's RMS.
      clipping_threshold: the largest RMS of an array's normalised update, > 0, or
        ``None`` for no clipping.
      momentum: decay of an average of the updates, in [0, 1), or ``None`` for none.
      dtype_momentum: dtype of that average; a complex one (jnp.complex64) for complex
        parameters, whose momentum float32 cannot hold (Optax drops its imaginary part).
      weight_decay_rate: weight decay rate, >= 0, or ``None``.
      eps: added to the squared gradient, >= 0.
      factored: whether to factor the second moment of matrices.
      weight_decay_mask: which parameters to decay.

    Returns:
      The composition above; its ``update`` needs ``params``.

    Raises:
      ValueError: for an invalid ``min_dim_size_to_factor`` or ``decay_offset``.

    References:
      Shazeer & Stern, "Adafactor: Adaptive Learning Rates with Sublinear Memory Cost",
      ICML 2018. https://arxiv.org/abs/1804.04235

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.adafactor(0.1)
      >>> p = jnp.array([2.0, -2.0])
      >>> [round(x, 4) for x in tx.update(jnp.array([1.0, -3.0]), tx.init(p), p)[0].tolist()]
      [-0.2, 0.2]
    """
    check_positive_int("adafactor", "decay_offset", decay_offset, minimum=0)
    stages = [scale_by_factored_rms(factored, decay_rate, decay_offset, min_dim_size_to_factor, eps)]
    if clipping_threshold is not None:
        stages.append(clip_by_block_rms(clipping_threshold))
    if learning_rate is not None:
        stages.append(scale_by_learning_rate(learning_rate, flip_sign=False))
    if multiply_by_parameter_scale:
        stages.append(scale_by_param_block_rms())
    if momentum is not None:
        stages.append(ema(momentum, debias=False, accumulator_dtype=dtype_momentum))
    if weight_decay_rate is not None:
        stages.append(add_decayed_weights(weight_decay_rate, weight_decay_mask))
    stages.append(scale(-1.0))
    return chain(*stages)


@transformation({"b1": UNIT, "b2": UNIT_CLOSED, "eps": NON_NEGATIVE})
def scale_by_sm3(b1: float = 0.9, b2: float = 1.0, eps: float = 1e-8) -> GradientTransformation:
    """SM3's preconditioner with momentum, without the learning rate (see `sm3`).

    Args:
      b1: decay of the momentum, in [0, 1).
      b2: decay of the accumulators, in [0, 1] (1: sums, as in the paper).
      eps: added inside the root, >= 0.

    Returns:
      ``chain(sm3_accumulator(b2, eps), ema(b1, debias=False))``.

    References:
      Anil, Gupta, Koren & Singer, "Memory-Efficient Adaptive Optimization", NeurIPS 2019.
      https://arxiv.org/abs/1901.11150

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.scale_by_sm3(eps=0.0)
      >>> [round(x, 4) for x in tx.update(jnp.array([[3.0, -4.0]]), tx.init(jnp.zeros((1, 2))))[0].ravel().tolist()]
      [0.1, -0.1]
    """
    return chain(sm3_accumulator(b2, eps), ema(b1, debias=False))


@transformation({"learning_rate": NON_NEGATIVE, "momentum": UNIT})
def sm3(learning_rate: float, momentum: float = 0.9) -> GradientTransformation:
    """SM3: AdaGrad whose sum of squares is bounded by one accumulator per axis (cover sets).

    For a parameter of shape ``(n1, ..., nk)`` it keeps ``n1 + ... + nk`` numbers instead of
    ``n1 ... nk``: ``nu_t = g_t^2 + min_i mu_{t-1, i}``, ``mu_{t, i}`` the maximum of ``nu_t``
    over all axes but ``i``; ``m_t = momentum m_{t-1} + (1 - momentum) g_t / sqrt(nu_t)``;
    ``u_t = -lr * m_t``. Real parameters only.

    Args:
      learning_rate: a number >= 0 or a schedule.
      momentum: decay of the momentum, in [0, 1).

    Returns:
      ``chain(scale_by_sm3(momentum), scale_by_learning_rate(learning_rate))``.

    Raises:
      ValueError: at ``init``, for complex parameters.

    References:
      Anil, Gupta, Koren & Singer, "Memory-Efficient Adaptive Optimization", NeurIPS 2019.
      https://arxiv.org/abs/1901.11150

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.sm3(1.0, momentum=0.0)
      >>> [round(x, 4) for x in tx.update(jnp.array([[3.0, -4.0]]), tx.init(jnp.zeros((1, 2))))[0].ravel().tolist()]
      [-1.0, 1.0]
    """
    return chain(scale_by_sm3(momentum), scale_by_learning_rate(learning_rate))
