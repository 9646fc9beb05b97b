"""Stages that scale each parameter array by a statistic of the array or of its parameter.

- `scale_by_trust_ratio`: the layer-wise trust ratio ``||w|| / ||u||`` of LARS, LAMB and
  Fromage (the mathematics lives on `lars`, `lamb` and `fromage`);
- `scale_by_param_block_rms` / `scale_by_param_block_norm`: multiply by the parameter
  array's RMS or norm (Adafactor's relative step size);
- `add_scaled_params`: adds ``factor * w`` to the updates for any real factor (Fromage
  shrinks the parameters with a negative one after its learning-rate stage).

All of them need ``params`` in ``update``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gradxform._factory import transformation
from gradxform.core import NON_NEGATIVE, REAL, EmptyState, GradientTransformation, Params, abs_sq, check_same_tree, require_params


def _need_params(owner: str, updates, params: Params | None) -> None:
    require_params(owner, params)
    check_same_tree(updates, params, "updates", "parameters")


def _block_norm(x: jax.Array, floor=0.0, *, mean: bool = False) -> jax.Array:
    """The L2 norm (or RMS, with ``mean``) of a whole array, at least ``floor``.

    The root is never taken of zero when the result is ``floor``, so the gradient stays
    finite when differentiating through an optimizer step.

    Args:
      x: an array (real or complex).
      floor: the smallest value returned, >= 0.
      mean: the root of the mean of squares instead of the sum.

    Returns:
      A real scalar.
    """
    sq = jnp.mean(abs_sq(x)) if mean else jnp.sum(abs_sq(x))
    floor = jnp.asarray(floor).astype(sq.dtype)
    small = sq <= floor * floor
    return jnp.where(small, floor, jnp.sqrt(jnp.where(small, jnp.ones_like(sq), sq)))


@transformation({"min_norm": NON_NEGATIVE, "trust_coefficient": REAL, "eps": NON_NEGATIVE})
def scale_by_trust_ratio(
    min_norm: float = 0.0, trust_coefficient: float = 1.0, eps: float = 0.0
) -> GradientTransformation:
    """Multiplies each array's update by ``trust_coefficient * ||w|| / (||u|| + eps)``.

    Both norms are floored at ``min_norm``; where either is zero the ratio is 1, so a
    parameter that is still zero (a bias at initialisation) keeps its update.

    Args:
      min_norm: floor of both norms, >= 0.
      trust_coefficient: the factor applied to the ratio.
      eps: added to the update's norm, >= 0.

    Returns:
      A stateless transformation; its ``update`` needs ``params``.

    Raises:
      ValueError: at ``update``, if ``params`` is not given or differs from the updates.

    References:
      You, Gitman & Ginsburg, "Large Batch Training of Convolutional Networks", 2017
      (see `lars`). https://arxiv.org/abs/1708.03888

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.scale_by_trust_ratio()
      >>> w = jnp.array([3.0, 4.0])
      >>> tx.update(jnp.array([0.0, 0.5]), tx.init(w), w)[0].tolist()  # ||w|| / ||u|| = 10
      [0.0, 5.0]
    """

    def scale_leaf(u, w):
        w_norm = _block_norm(w, min_norm)
        u_norm = _block_norm(u, min_norm)
        ratio = jnp.asarray(trust_coefficient).astype(w_norm.dtype) * w_norm / (u_norm + jnp.asarray(eps).astype(u_norm.dtype))
        ratio = jnp.where((w_norm == 0) | (u_norm == 0), jnp.ones_like(ratio), ratio)
        return u * ratio.astype(u.dtype)

    def update(updates, state, params=None, **extra):
        _need_params("scale_by_trust_ratio", updates, params)
        return jax.tree.map(scale_leaf, updates, params), state

    return GradientTransformation(lambda params: EmptyState(), update)


@transformation({"min_scale": NON_NEGATIVE})
def scale_by_param_block_rms(min_scale: float = 1e-3) -> GradientTransformation:
    """Multiplies each array's update by its parameter's RMS, at least ``min_scale``.

    Args:
      min_scale: floor of the RMS, >= 0.

    Returns:
      A stateless transformation; its ``update`` needs ``params``.

    Raises:
      ValueError: at ``update``, if ``params`` is not given or differs from the updates.

    References:
      Shazeer & Stern, "Adafactor: Adaptive Learning Rates with Sublinear Memory Cost",
      ICML 2018, section 8 (see `adafactor`). https://arxiv.org/abs/1804.04235

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.scale_by_param_block_rms()
      >>> w = jnp.array([2.0, -2.0])
      >>> tx.update(jnp.ones(2), tx.init(w), w)[0].tolist()
      [2.0, 2.0]
    """

    def update(updates, state, params=None, **extra):
        _need_params("scale_by_param_block_rms", updates, params)
        out = jax.tree.map(lambda u, w: u * _block_norm(w, min_scale, mean=True).astype(u.dtype), updates, params)
        return out, state

    return GradientTransformation(lambda params: EmptyState(), update)


@transformation({"min_scale": NON_NEGATIVE})
def scale_by_param_block_norm(min_scale: float = 1e-3) -> GradientTransformation:
    """Multiplies each array's update by its parameter's L2 norm, at least ``min_scale``.

    Args:
      min_scale: floor of the norm, >= 0.

    Returns:
      A stateless transformation; its ``update`` needs ``params``.

    Raises:
      ValueError: at ``update``, if ``params`` is not given or differs from the updates.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.scale_by_param_block_norm()
      >>> w = jnp.array([3.0, 4.0])
      >>> tx.update(jnp.ones(2), tx.init(w), w)[0].tolist()
      [5.0, 5.0]
    """

    def update(updates, state, params=None, **extra):
        _need_params("scale_by_param_block_norm", updates, params)
        out = jax.tree.map(lambda u, w: u * _block_norm(w, min_scale).astype(u.dtype), updates, params)
        return out, state

    return GradientTransformation(lambda params: EmptyState(), update)


@transformation({"factor": REAL})
def add_scaled_params(factor: float) -> GradientTransformation:
    """Adds ``factor * w`` to the updates, for any real ``factor``.

    `add_decayed_weights` is the usual form (a non-negative rate, before the learning
    rate). Placed after the learning-rate stage with ``factor < 0``, this stage shrinks the
    parameters towards zero by a fixed fraction, as Fromage does.

    Args:
      factor: the multiple of the parameters to add.

    Returns:
      A stateless transformation; its ``update`` needs ``params``.

    Raises:
      ValueError: at ``update``, if ``params`` is not given or differs from the updates.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.add_scaled_params(-0.5)
      >>> w = jnp.array([2.0])
      >>> tx.update(jnp.ones(1), tx.init(w), w)[0].tolist()
      [0.0]
    """

    def update(updates, state, params=None, **extra):
        _need_params("add_scaled_params", updates, params)
        out = jax.tree.map(
            lambda u, w: (u + jnp.asarray(factor).astype(jnp.real(w).dtype) * w).astype(u.dtype), updates, params
        )
        return out, state

    return GradientTransformation(lambda params: EmptyState(), update)
