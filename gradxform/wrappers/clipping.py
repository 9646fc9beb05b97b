"""Clipping beyond value and global norm: per-leaf norm, block RMS, AGC, per-example.

Clipping by value (`gradxform.clip`) and by global norm (`gradxform.clip_by_global_norm`)
are primitives; this module adds the clipping rules that look at one parameter at a time,
at the parameters themselves, or at a batch of per-example gradients.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradxform._factory import transformation
from gradxform.core import POSITIVE, EmptyState, GradientTransformation, Updates, abs_sq, check_number, is_tracer, require_params
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


def unitwise_clip(
    g_norm: jax.Array, max_norm: jax.Array, grad: jax.Array, div_eps: float = 1e-6
) -> jax.Array:
    """Rescales each unit of ``grad`` whose norm ``g_norm`` reaches ``max_norm`` down to it.

    The clipping step of `adaptive_grad_clip`, given the norms (from `unitwise_norm`): where
    ``g_norm < max_norm`` the gradient passes unchanged, elsewhere it becomes
    ``grad * max_norm / max(g_norm, div_eps)``.

    Args:
      g_norm: each unit's gradient norm, broadcast to ``grad``'s shape.
      max_norm: each unit's largest allowed norm, of the same shape.
      grad: the gradient.
      div_eps: the smallest divisor, > 0; it only guards the division (a unit with a norm
        below it is never clipped unless ``max_norm`` is smaller still).

    Returns:
      The clipped gradient, in ``grad``'s dtype.

    Raises:
      ValueError: if the three shapes differ, or ``div_eps`` is not a positive number.

    References:
      Brock, De, Smith & Simonyan, "High-Performance Large-Scale Image Recognition Without
      Normalization", ICML 2021. https://arxiv.org/abs/2102.06171

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> g = jnp.array([[3.0, 0.1], [4.0, 0.0]])
      >>> gx.unitwise_clip(gx.unitwise_norm(g), jnp.ones_like(g), g).tolist()
      [[0.6000000238418579, 0.10000000149011612], [0.800000011920929, 0.0]]
    """
    check_number("unitwise_clip", "div_eps", div_eps, POSITIVE)
    shapes = {"g_norm": jnp.shape(g_norm), "max_norm": jnp.shape(max_norm), "grad": jnp.shape(grad)}
    if len(set(shapes.values())) != 1:
        raise ValueError(
            f"unitwise_clip: g_norm, max_norm and grad must have the same shape (broadcast the "
            f"norms with gx.unitwise_norm), got shapes {shapes}."
        )
    grad = jnp.asarray(grad)
    clipped = grad * (max_norm / jnp.maximum(g_norm, div_eps)).astype(grad.dtype)
    return jnp.where(g_norm < max_norm, grad, clipped)


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
        p_norm = unitwise_norm(p, axis)
        max_norm = jnp.asarray(clipping).astype(p_norm.dtype) * jnp.maximum(p_norm, jnp.asarray(eps).astype(p_norm.dtype))
        return unitwise_clip(unitwise_norm(g, axis), max_norm, g)

    def update(updates, state, params=None, **extra):
        require_params("adaptive_grad_clip", params)
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


def _check_clip_norm(value: Any) -> None:
    # Not check_number: an infinite bound is allowed here (it clips nothing, as in Optax).
    if is_tracer(value):
        return
    numeric = isinstance(value, (int, float, np.integer, np.floating)) or (
        isinstance(value, (np.ndarray, jax.Array)) and jnp.issubdtype(value.dtype, jnp.floating) and np.ndim(value) == 0
    )
    if isinstance(value, (bool, np.bool_)) or not numeric or not float(value) >= 0:
        raise ValueError(
            "per_example_layer_norm_clip: global_l2_norm_clip must be a number >= 0 (jnp.inf clips "
            f"nothing), got {type(value).__name__} global_l2_norm_clip={value!r}."
        )


def per_example_layer_norm_clip(
    grads: Updates, global_l2_norm_clip: float, uniform: bool = True
) -> tuple[Updates, Updates]:
    """Clips each example's gradient layer by layer, then sums each layer over the batch.

    Each leaf ("layer") ``i`` of the ``K`` leaves is clipped, example by example, to its own
    norm ``C_i`` (as `per_example_global_norm_clip` with that leaf alone), where ``C`` is
    ``global_l2_norm_clip``: ``C_i = C / sqrt(K)`` if ``uniform``, else
    ``C * sqrt(D_i / D)`` with ``D_i`` the leaf's size per example and ``D`` the total. Either
    way ``sum_i C_i^2 = C^2``, so each example's whole gradient has norm at most ``C``.

    Args:
      grads: per-example gradients, every leaf with the batch in axis 0.
      global_l2_norm_clip: the overall norm bound ``C``, >= 0 (``jnp.inf`` clips nothing).
      uniform: split ``C`` equally between the leaves (True) or by their sizes (False).

    Returns:
      ``(sums, counts)``: two trees shaped like ``grads`` without the batch axis, holding each
      leaf's sum of clipped gradients and its number of examples clipped (int32 scalars).

    Raises:
      ValueError: if the leaves do not share a leading batch axis, ``global_l2_norm_clip`` is
        negative or not a number, or ``uniform`` is not a bool.

    References:
      McMahan, Ramage, Talwar & Zhang, "Learning Differentially Private Recurrent Language
      Models", ICLR 2018. https://arxiv.org/abs/1710.06963

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> g = {"a": jnp.array([[3.0, 4.0], [0.3, 0.4]]), "b": jnp.zeros((2, 3))}
      >>> sums, counts = gx.per_example_layer_norm_clip(g, 2.0 ** 0.5)
      >>> [round(x, 4) for x in sums["a"].tolist()], int(counts["a"]), int(counts["b"])
      ([0.9, 1.2], 1, 0)
    """
    _check_batched("per_example_layer_norm_clip", grads)
    _check_clip_norm(global_l2_norm_clip)
    if not isinstance(uniform, (bool, jnp.bool_)):
        raise ValueError(f"per_example_layer_norm_clip: uniform must be True or False, got uniform={uniform!r}.")
    leaves, treedef = jax.tree.flatten(grads)
    sizes = [g[0].size for g in leaves]
    total = sum(sizes)
    if uniform:
        bounds = [global_l2_norm_clip * (1.0 / len(leaves)) ** 0.5 for _ in leaves]
    else:
        bounds = [global_l2_norm_clip * (size / total) ** 0.5 for size in sizes]
    clipped = [per_example_global_norm_clip(g, bound) for g, bound in zip(leaves, bounds)]
    return treedef.unflatten([c[0] for c in clipped]), treedef.unflatten([c[1] for c in clipped])
