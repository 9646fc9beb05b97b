"""Clipping beyond value and global norm: per-leaf norm, block RMS, AGC, per-example.

Clipping by value (`gradxform.clip`) and by global norm (`gradxform.clip_by_global_norm`)
are primitives; this module adds the clipping rules that look at one parameter at a time,
at the parameters themselves, or at a batch of per-example gradients.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gradxform._factory import transformation
from gradxform.core import POSITIVE, EmptyState, GradientTransformation, Updates, abs_sq
from gradxform.primitives.clipping import global_norm


@transformation({"max_norm": POSITIVE})
def clip_by_norm(max_norm: float) -> GradientTransformation:
    """Rescales each leaf separately so that its L2 norm is at most ``max_norm``.

    This is Keras's ``clipnorm`` and TensorFlow's ``tf.clip_by_norm`` applied to every
    parameter; `gradxform.clip_by_global_norm` clips all leaves together.

    Args:
      max_norm: the largest allowed norm of one leaf, > 0.

    Returns:
      A stateless transformation.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> g = {"a": jnp.array([3.0, 4.0]), "b": jnp.array([0.6, 0.8])}
      >>> tx = gx.clip_by_norm(1.0)
      >>> out, _ = tx.update(g, tx.init(g))
      >>> [round(x, 4) for x in out["a"].tolist()], [round(x, 4) for x in out["b"].tolist()]
      ([0.6, 0.8], [0.6, 0.8])
    """

    def clip_leaf(g):
        norm = jnp.sqrt(jnp.sum(abs_sq(g)))
        limit = jnp.asarray(max_norm).astype(norm.dtype)
        return jnp.where(norm <= limit, g, g * (limit / norm).astype(g.dtype))

    def update(updates, state, params=None, **extra):
        return jax.tree.map(clip_leaf, updates), state

    return GradientTransformation(lambda params: EmptyState(), update)


@transformation({"threshold": POSITIVE})
def clip_by_block_rms(threshold: float) -> GradientTransformation:
    """Divides each leaf by ``max(1, rms(leaf) / threshold)`` (Optax's ``clip_by_block_rms``).

    Args:
      threshold: the largest allowed root-mean-square of one leaf, > 0.

    Returns:
      A stateless transformation.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.clip_by_block_rms(1.0)
      >>> tx.update(jnp.array([2.0, -2.0]), tx.init(jnp.zeros(2)))[0].tolist()
      [1.0, -1.0]
    """

    def clip_leaf(g):
        rms = jnp.sqrt(jnp.mean(abs_sq(g)))
        denom = jnp.maximum(1.0, rms / jnp.asarray(threshold).astype(rms.dtype))
        return g / denom.astype(g.dtype)

    def update(updates, state, params=None, **extra):
        return jax.tree.map(clip_leaf, updates), state

    return GradientTransformation(lambda params: EmptyState(), update)


def unitwise_norm(x: jax.Array, axis: int | tuple[int, ...] | None = None) -> jax.Array:
    """The L2 norm of each output unit of ``x``, broadcast to ``x``'s shape (for `adaptive_grad_clip`).

    Without ``axis``: scalars and vectors are one unit; matrices (in, out) and 3-D kernels
    reduce over axis 0; 4-D (HWIO) and 5-D (DHWIO) convolution kernels over all but the last.

    Args:
      x: an array.
      axis: the axes to reduce over, overriding the rule above.

    Returns:
      An array of ``x``'s shape.

    Raises:
      ValueError: for an array of rank above 5 without ``axis``.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.unitwise_norm(jnp.array([[3.0, 0.0], [4.0, 1.0]])).tolist()
      [[5.0, 1.0], [5.0, 1.0]]
    """
    if axis is None:
        if jnp.squeeze(x).ndim <= 1:
            axis = tuple(range(x.ndim))
        elif x.ndim in (2, 3):
            axis = 0
        elif x.ndim in (4, 5):
            axis = tuple(range(x.ndim - 1))
        else:
            raise ValueError(
                f"unitwise_norm: cannot tell the units of an array of shape {x.shape}; pass axis= "
                "(the axes that index the inputs of one unit)."
            )
    squared = jnp.sum(abs_sq(x), axis=axis, keepdims=True)
    # Broadcast by multiplying with ones laid out like x, not by broadcast_to: over a mesh
    # with Explicit axes the result must carry x's sharding (a vector's norm, reduced over
    # its only axis, would come back replicated and adaptive_grad_clip's select of it
    # against the sharded gradient failed to trace). The product by one is exact.
    return jnp.sqrt(squared) * jnp.ones_like(x, dtype=squared.dtype)


@transformation({"clipping": POSITIVE, "eps": POSITIVE})
def adaptive_grad_clip(
    clipping: float, eps: float = 1e-3, axis: int | tuple[int, ...] | None = None
) -> GradientTransformation:
    """Adaptive gradient clipping (AGC): clips each unit's gradient relative to its weights.

    For every unit (`unitwise_norm`), a gradient ``g`` whose norm exceeds
    ``clipping * max(|w|, eps)`` is rescaled to that norm.

    Args:
      clipping: the largest allowed ratio of gradient norm to weight norm, > 0.
      eps: the smallest weight norm used, > 0 (so that zero-initialised units can move).
      axis: reduction axes for `unitwise_norm` (default: its rule by rank).

    Returns:
      A stateless transformation; its ``update`` needs ``params``.

    Raises:
      ValueError: at ``update``, if ``params`` is not given.

    References:
      Brock, De, Smith & Simonyan, "High-Performance Large-Scale Image Recognition Without
      Normalization", ICML 2021. https://arxiv.org/abs/2102.06171

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.adaptive_grad_clip(0.1)
      >>> p = jnp.array([3.0, 4.0])
      >>> [round(x, 4) for x in tx.update(jnp.array([6.0, 8.0]), tx.init(p), p)[0].tolist()]
      [0.3, 0.4]
    """

    def clip_leaf(g, p):
        g_norm = unitwise_norm(g, axis)
        p_norm = unitwise_norm(p, axis)
        max_norm = jnp.asarray(clipping).astype(p_norm.dtype) * jnp.maximum(p_norm, jnp.asarray(eps).astype(p_norm.dtype))
        clipped = g * (max_norm / jnp.maximum(g_norm, 1e-6)).astype(g.dtype)
        return jnp.where(g_norm < max_norm, g, clipped)

    def update(updates, state, params=None, **extra):
        if params is None:
            raise ValueError("adaptive_grad_clip needs the parameters: call update(updates, state, params).")
        return jax.tree.map(clip_leaf, updates, params), state

    return GradientTransformation(lambda params: EmptyState(), update)


def _check_batched(owner: str, grads: Updates) -> None:
    leaves = jax.tree.leaves(grads)
    if not leaves or any(g.ndim < 1 or g.shape[0] != leaves[0].shape[0] for g in leaves):
        raise ValueError(
            f"{owner} expects per-example gradients: every leaf with the batch in axis 0 and the "
            f"same batch size; got shapes {jax.tree.map(jnp.shape, grads)}. Compute them with "
            "jax.vmap(jax.grad(loss), in_axes=(None, 0))(params, batch)."
        )


def per_example_global_norm_clip(grads: Updates, l2_norm_clip: float) -> tuple[Updates, jax.Array]:
    """Clips each example's gradient to global norm ``l2_norm_clip`` and sums over the batch.

    As Optax's function of the same name (the step of DP-SGD before noise is added).

    Args:
      grads: per-example gradients, every leaf with the batch in axis 0.
      l2_norm_clip: the largest allowed global norm of one example's gradient.

    Returns:
      ``(sum of clipped gradients, number of examples clipped)``.

    Raises:
      ValueError: if the leaves do not share a leading batch axis.

    References:
      Abadi et al., "Deep Learning with Differential Privacy", CCS 2016.
      https://arxiv.org/abs/1607.00133

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> total, n = gx.per_example_global_norm_clip(jnp.array([[3.0, 4.0], [0.3, 0.4]]), 1.0)
      >>> [round(x, 4) for x in total.tolist()], int(n)
      ([0.9, 1.2], 1)
    """
    _check_batched("per_example_global_norm_clip", grads)
    norms = jax.vmap(global_norm)(grads)
    multipliers = jnp.nan_to_num(jnp.minimum(l2_norm_clip / norms, 1.0), nan=1.0)
    num_clipped = jnp.sum(multipliers < 1.0)
    total = jax.tree.map(lambda g: jnp.tensordot(multipliers.astype(g.dtype), g, axes=1), grads)
    return total, num_clipped
