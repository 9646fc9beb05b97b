"""Layer-wise trust-ratio optimizers for large batches: LAMB, LARS, Fromage.

Each is a familiar optimizer with a `scale_by_trust_ratio` stage, which rescales every
parameter array's update to a size proportional to the array's norm:

    lamb     chain(scale_by_adam, add_decayed_weights, scale_by_trust_ratio, learning rate)
    lars     chain(add_decayed_weights, scale_by_trust_ratio, learning rate, trace)
    fromage  chain(scale_by_trust_ratio, learning rate, shrink the parameters)
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from gradxform._factory import transformation
from gradxform.combinators import chain
from gradxform.core import NON_NEGATIVE, REAL, UNIT, UNIT_CLOSED, GradientTransformation
from gradxform.optimizers.adam import scale_by_adam
from gradxform.primitives.elementwise import scale_by_learning_rate
from gradxform.primitives.layerwise import add_scaled_params, scale_by_trust_ratio
from gradxform.primitives.moments import trace
from gradxform.primitives.weight_decay import MaskOrFn, add_decayed_weights
from gradxform.wrappers.groups import masked


@transformation(
    {"learning_rate": NON_NEGATIVE, "b1": UNIT, "b2": UNIT, "eps": NON_NEGATIVE, "eps_root": NON_NEGATIVE, "weight_decay": NON_NEGATIVE}
)
def lamb(
    learning_rate: float,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-6,
    eps_root: float = 0.0,
    weight_decay: float = 0.0,
    mask: MaskOrFn = None,
) -> GradientTransformation:
    """LAMB: AdamW whose step for each parameter array is rescaled by its trust ratio.

    ``a_t = m^_t / (sqrt(v^_t + eps_root) + eps) + weight_decay w_t`` (AdamW's direction),
    ``u_t = -lr * ||w_t|| / ||a_t|| * a_t`` per array (ratio 1 where a norm is zero).

    Args:
      learning_rate: a number >= 0 or a schedule.
      b1: decay of the first moment, in [0, 1).
      b2: decay of the second moment, in [0, 1).
      eps: added to the root, >= 0.
      eps_root: added inside the root, >= 0.
      weight_decay: decoupled weight decay rate, >= 0.
      mask: which parameters to decay.

    Returns:
      ``chain(scale_by_adam(...), add_decayed_weights(weight_decay, mask),
      scale_by_trust_ratio(), scale_by_learning_rate(learning_rate))``.

    References:
      You et al., "Large Batch Optimization for Deep Learning: Training BERT in 76
      minutes", ICLR 2020. https://arxiv.org/abs/1904.00962

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.lamb(0.1)
      >>> p = jnp.array([3.0, 4.0])
      >>> [round(x, 4) for x in tx.update(jnp.array([1.0, 1.0]), tx.init(p), p)[0].tolist()]
      [-0.3536, -0.3536]
    """
    return chain(
        scale_by_adam(b1, b2, eps, eps_root),
        add_decayed_weights(weight_decay, mask),
        scale_by_trust_ratio(),
        scale_by_learning_rate(learning_rate),
    )


def _as_mask(mask: Any) -> Any:
    """Optax's LARS masks default to ``True`` (every parameter); a bool is a tree prefix."""
    if mask is True:
        return None
    if mask is False:
        return lambda params: jax.tree.map(lambda _: False, params)
    return mask


@transformation(
    {"learning_rate": NON_NEGATIVE, "weight_decay": NON_NEGATIVE, "trust_coefficient": REAL, "eps": NON_NEGATIVE, "momentum": UNIT_CLOSED}
)
def lars(
    learning_rate: float,
    weight_decay: float = 0.0,
    weight_decay_mask: MaskOrFn = True,
    trust_coefficient: float = 0.001,
    eps: float = 0.0,
    trust_ratio_mask: MaskOrFn = True,
    momentum: float = 0.9,
    nesterov: bool = False,
) -> GradientTransformation:
    """LARS: momentum SGD with a layer-wise learning rate proportional to ``||w|| / ||g||``.

    ``a_t = g_t + weight_decay w_t``; ``b_t = trust_coefficient ||w_t|| / (||a_t|| + eps) a_t``
    per array (ratio 1 where a norm is zero); ``v_t = -lr b_t + momentum v_{t-1}``;
    ``u_t = v_t`` (or Nesterov's ``-lr b_t + momentum v_t``).

    Args:
      learning_rate: a number >= 0 or a schedule.
      weight_decay: weight decay rate, >= 0.
      weight_decay_mask: which parameters to decay (``True``: all).
      trust_coefficient: multiplies the trust ratio.
      eps: added to the update's norm, >= 0.
      trust_ratio_mask: which parameters get the trust ratio (``True``: all; excluded
        ones, often biases and norms, keep the plain step).
      momentum: the momentum coefficient, in [0, 1].
      nesterov: Nesterov's look-ahead.

    Returns:
      ``chain(add_decayed_weights(...), masked(scale_by_trust_ratio(...), trust_ratio_mask),
      scale_by_learning_rate(learning_rate), trace(momentum, nesterov))``.

    References:
      You, Gitman & Ginsburg, "Large Batch Training of Convolutional Networks", 2017.
      https://arxiv.org/abs/1708.03888

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.lars(1.0, trust_coefficient=1.0)
      >>> p = jnp.array([3.0, 4.0])
      >>> tx.update(jnp.array([0.0, 0.5]), tx.init(p), p)[0].tolist()  # ||w|| / ||g|| = 10
      [0.0, -5.0]
    """
    trust = scale_by_trust_ratio(trust_coefficient=trust_coefficient, eps=eps)
    ratio_mask = _as_mask(trust_ratio_mask)
    return chain(
        add_decayed_weights(weight_decay, _as_mask(weight_decay_mask)),
        trust if ratio_mask is None else masked(trust, ratio_mask),
        scale_by_learning_rate(learning_rate),
        trace(momentum, nesterov),
    )


@transformation({"learning_rate": NON_NEGATIVE, "min_norm": NON_NEGATIVE})
def fromage(learning_rate: float, min_norm: float = 1e-6) -> GradientTransformation:
    """Fromage: steps of relative size ``lr`` per layer, then a shrink that keeps norms bounded.

    Per parameter array: ``w_{t+1} = (w_t - lr ||w_t|| / ||g_t|| g_t) / sqrt(1 + lr^2)``, the
    norms floored at ``min_norm``. As a composition the update is
    ``-lr / sqrt(1 + lr^2) * trust_ratio(g) + (1 / sqrt(1 + lr^2) - 1) w_t``.

    Args:
      learning_rate: a number >= 0 or a schedule.
      min_norm: floor of the norms, >= 0.

    Returns:
      ``chain(scale_by_trust_ratio(min_norm), scale_by_learning_rate(lr / sqrt(1 + lr^2)),
      add_scaled_params(1 / sqrt(1 + lr^2) - 1))``.

    References:
      Bernstein, Vahdat, Yue & Liu, "On the distance between two neural networks and the
      stability of learning", NeurIPS 2020. https://arxiv.org/abs/2002.03432

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.fromage(0.75)
      >>> p = jnp.array([3.0, 4.0])
      >>> u, _ = tx.update(jnp.array([0.0, 1.0]), tx.init(p), p)
      >>> [round(x, 4) for x in gx.apply_updates(p, u).tolist()]  # (w - 0.75 * 5 g) / 1.25
      [2.4, 0.2]
    """
    lr = jnp.asarray(learning_rate, jnp.float32)
    root = jnp.sqrt(1 + lr * lr)
    # 1 / root - 1 written without cancellation, so small learning rates keep full precision.
    shrink = -lr * lr / (root * (1 + root))
    return chain(
        scale_by_trust_ratio(min_norm), scale_by_learning_rate(lr / root), add_scaled_params(shrink)
    )
