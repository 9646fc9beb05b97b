"""Large-batch SGD as in MXNet's ``LBSGD``: a learning-rate multiplier that either warms up
over the first epochs (``linear``, ``power2``, ``sqrt``) or is chosen layer by layer from the
norms of the weights and gradients (``lars``), followed by SGD with MXNet's momentum.

The two multiplier stages are defined here because their conventions (the warm-up curves,
the LARS ratio clipped to [0.01, 100] with the weight decay inside the norm) are MXNet's.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from gradxform._factory import transformation
from gradxform.combinators import chain, identity
from gradxform.core import (
    NON_NEGATIVE,
    POSITIVE,
    UNIT_CLOSED,
    EmptyState,
    GradientTransformation,
    Interval,
    abs_sq,
    check_choice,
    check_positive_int,
    check_same_tree,
    new_count,
    require_params,
    safe_increment,
)
from gradxform.primitives.elementwise import scale_by_learning_rate
from gradxform.primitives.moments import CountState, trace
from gradxform.primitives.weight_decay import add_decayed_weights

WARMUP_STRATEGIES = ("linear", "power2", "sqrt", "lars")
_AT_LEAST_ONE = Interval(1.0)


@transformation({"batch_scale": _AT_LEAST_ONE})
def lbsgd_warmup(
    batch_scale: float, strategy: str = "linear", warmup_steps: int = 160, begin_step: int = 0
) -> GradientTransformation:
    """Multiplies updates by a factor that grows from 1 to ``batch_scale`` during warm-up.

    At the ``t``-th update (``t = 1, 2, ...``) let ``s = begin_step + t`` and ``W = warmup_steps``;
    the factor is ``batch_scale`` once ``s >= W`` and before that
    ``1 + (batch_scale - 1) * f(s / W)`` with ``f(x) = x`` (``linear``), ``x ** 2``
    (``power2``) or ``sqrt(x)`` (``sqrt``).

    Args:
      batch_scale: the final factor (the ratio of the large batch to the base batch), >= 1.
      strategy: ``"linear"``, ``"power2"`` or ``"sqrt"``.
      warmup_steps: length of the warm-up in updates, >= 0 (0: no warm-up).
      begin_step: updates already done before this optimizer started, >= 0.

    Returns:
      A transformation with a `CountState`.

    Raises:
      ValueError: for an unknown strategy or a negative or non-integer step count.

    References:
      Goyal et al., "Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour", 2017,
      section 2.2. https://arxiv.org/abs/1706.02677

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.lbsgd_warmup(3.0, "linear", warmup_steps=4)
      >>> tx.update(jnp.ones(1), tx.init(jnp.zeros(1)))[0].tolist()  # 1 + 2 * 1/4
      [1.5]
    """
    check_choice("lbsgd_warmup", "strategy", strategy, WARMUP_STRATEGIES[:3])
    check_positive_int("lbsgd_warmup", "warmup_steps", warmup_steps, 0)
    check_positive_int("lbsgd_warmup", "begin_step", begin_step, 0)
    curve = {"linear": lambda x: x, "power2": lambda x: x * x, "sqrt": jnp.sqrt}[strategy]

    def update(updates, state, params=None, **extra):
        count = safe_increment(state.count)
        top = jnp.asarray(batch_scale, jnp.float32)
        if warmup_steps == 0:
            factor = top
        else:
            s = (count + begin_step).astype(jnp.float32)
            x = jnp.minimum(s / warmup_steps, 1.0)
            factor = jnp.where(s >= warmup_steps, top, 1 + (top - 1) * curve(x))
        return jax.tree.map(lambda g: g * factor.astype(jnp.real(g).dtype), updates), CountState(count)

    return GradientTransformation(lambda params: CountState(new_count()), update)


@transformation({"weight_decay": NON_NEGATIVE, "min_ratio": POSITIVE, "max_ratio": POSITIVE})
def lars_layer_rate(
    weight_decay: float = 0.0, min_ratio: float = 0.01, max_ratio: float = 100.0
) -> GradientTransformation:
    """MXNet's LARS: ``(g + wd * w) * clip(||w|| / sqrt(||g||^2 + wd ||w||^2), min, max)``.

    Each leaf of the parameter tree is a layer with its own ratio (a tiny constant, 1e-18,
    under the root keeps a zero gradient and zero weights finite).

    Args:
      weight_decay: ``wd``, added to the gradient and inside the norm, >= 0.
      min_ratio: lower clip of the ratio, > 0.
      max_ratio: upper clip of the ratio, > 0.

    Returns:
      A stateless transformation; its ``update`` needs ``params``.

    Raises:
      ValueError: at ``update`` if ``params`` is not given.

    References:
      You, Gitman & Ginsburg, "Large Batch Training of Convolutional Networks", 2017.
      https://arxiv.org/abs/1708.03888

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.lars_layer_rate()
      >>> p = jnp.array([3.0, 4.0])
      >>> tx.update(jnp.array([0.0, 0.5]), tx.init(p), p)[0].tolist()  # ratio 5 / 0.5
      [0.0, 5.0]
    """

    def update(updates, state, params=None, **extra):
        require_params("lars_layer_rate", params)
        check_same_tree(updates, params, "updates", "parameters")

        def one(g, w):
            rdt = jnp.real(g).dtype
            wd = jnp.asarray(weight_decay, jnp.float32)
            w2 = jnp.sum(abs_sq(w).astype(jnp.float32))
            g2 = jnp.sum(abs_sq(g).astype(jnp.float32))
            ratio = jnp.sqrt(w2 / (g2 + wd * w2 + 1e-18))
            ratio = jnp.clip(ratio, jnp.asarray(min_ratio, jnp.float32), jnp.asarray(max_ratio, jnp.float32))
            return ((g + wd.astype(rdt) * w.astype(g.dtype)) * ratio.astype(rdt)).astype(g.dtype)

        return jax.tree.map(one, updates, params), state

    return GradientTransformation(lambda params: EmptyState(), update)


@transformation(
    {"learning_rate": NON_NEGATIVE, "momentum": UNIT_CLOSED, "batch_scale": _AT_LEAST_ONE, "weight_decay": NON_NEGATIVE}
)
def lbsgd(
    learning_rate: float,
    momentum: float | None = None,
    warmup_strategy: str = "linear",
    warmup_epochs: int = 5,
    batch_scale: float = 1.0,
    updates_per_epoch: int = 32,
    begin_epoch: int = 0,
    weight_decay: float = 0.0,
    accumulator_dtype: Any = None,
) -> GradientTransformation:
    r"""Large-batch SGD (MXNet's ``LBSGD``): warm-up or LARS learning-rate multipliers.

    With ``m_t`` the multiplier of the ``t``-th update::

        v_t = momentum * v_{t-1} - learning_rate * m_t * (g + weight_decay * w)
        u_t = v_t

    (MXNet's momentum, which accumulates already-scaled steps). For the warm-up strategies
    ``m_t`` rises from 1 to ``batch_scale`` over ``warmup_epochs * updates_per_epoch`` updates,
    counted from ``begin_epoch * updates_per_epoch`` (see `lbsgd_warmup` for the curves); for
    ``"lars"`` it is each layer's ratio ``||w|| / sqrt(||g||^2 + wd ||w||^2)`` clipped to
    [0.01, 100] (see `lars_layer_rate`), at every step. MXNet also sums ``batch_scale``
    micro-batch gradients before each step; here the gradients given are those of the large
    batch (accumulate micro-batches with a gradient-accumulation wrapper).

    Args:
      learning_rate: the base learning rate, >= 0, or a schedule.
      momentum: in [0, 1], or ``None`` for none.
      warmup_strategy: ``"linear"``, ``"power2"``, ``"sqrt"`` or ``"lars"``.
      warmup_epochs: length of the warm-up in epochs, >= 0.
      batch_scale: the multiplier reached after warm-up, >= 1.
      updates_per_epoch: updates per epoch, >= 1.
      begin_epoch: the epoch training starts from (when resuming), >= 0.
      weight_decay: L2 penalty added to the gradient, >= 0.
      accumulator_dtype: dtype of the momentum buffer (default: the parameter's).

    Returns:
      ``chain(add_decayed_weights(weight_decay), lbsgd_warmup(...), scale_by_learning_rate(lr),
      trace(momentum))``, or with ``lars_layer_rate(weight_decay)`` in place of the first two.

    Raises:
      ValueError: for an unknown strategy or an invalid epoch count.

    References:
      You, Gitman & Ginsburg, "Large Batch Training of Convolutional Networks", 2017.
      https://arxiv.org/abs/1708.03888
      Apache MXNet, ``mxnet.optimizer.LBSGD``.
      https://mxnet.apache.org/versions/1.9.1/api/python/docs/api/optimizer/index.html

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.lbsgd(0.1, warmup_epochs=1, updates_per_epoch=2, batch_scale=3.0)
      >>> p = jnp.zeros(1)
      >>> tx.update(jnp.ones(1), tx.init(p), p)[0].tolist()  # multiplier 1 + 2 * 1/2
      [-0.20000000298023224]
    """
    check_choice("lbsgd", "warmup_strategy", warmup_strategy, WARMUP_STRATEGIES)
    check_positive_int("lbsgd", "warmup_epochs", warmup_epochs, 0)
    check_positive_int("lbsgd", "updates_per_epoch", updates_per_epoch, 1)
    check_positive_int("lbsgd", "begin_epoch", begin_epoch, 0)
    if warmup_strategy == "lars":
        multiplier = [lars_layer_rate(weight_decay)]
    else:
        multiplier = [
            add_decayed_weights(weight_decay),
            lbsgd_warmup(
                batch_scale,
                warmup_strategy,
                warmup_steps=warmup_epochs * updates_per_epoch,
                begin_step=begin_epoch * updates_per_epoch,
            ),
        ]
    return chain(
        *multiplier,
        scale_by_learning_rate(learning_rate),
        trace(momentum, accumulator_dtype=accumulator_dtype) if momentum is not None else identity(),
    )

