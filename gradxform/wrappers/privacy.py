"""Differential privacy: the aggregation step of DP-SGD (Abadi et al., 2016).

`differentially_private_aggregate` turns per-example gradients into one noisy mean; the
optimizer `gradxform.dpsgd` composes it with SGD.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradxform._factory import transformation
from gradxform.core import NON_NEGATIVE, GradientTransformation, Updates
from gradxform.wrappers.clipping import _check_batched, per_example_global_norm_clip
from gradxform.wrappers.noise import _check_key, _key


class DifferentiallyPrivateAggregateState(NamedTuple):
    """State of `differentially_private_aggregate`: ``rng_key``, a typed PRNG key."""

    rng_key: jax.Array


_NO_BATCH_AXIS = (
    "differentially_private_aggregate expects per-example gradients, each leaf shaped "
    "(batch, *param.shape), but the gradient at {path} has shape {got} for a parameter of shape "
    "{want}. Gradients averaged over the batch (jax.grad of a mean loss) would here be taken for "
    "a batch of rows and come out wrong without any error; compute per-example gradients with "
    "jax.vmap(jax.grad(loss), in_axes=(None, 0))(params, batch)."
)


def _check_against_params(updates: Updates, params: Updates) -> None:
    """Raises ``ValueError`` naming the first leaf of ``updates`` that is not ``params``'s leaf
    with one leading batch axis; shapes are static, so this costs nothing under ``jit``."""
    flat_u, tree_u = jax.tree_util.tree_flatten_with_path(updates)
    flat_p, tree_p = jax.tree_util.tree_flatten_with_path(params)
    if tree_u != tree_p:
        return  # params of another layout (a wrapper's): nothing to compare leaf by leaf
    for (path, u), (_, p) in zip(flat_u, flat_p):
        if jnp.shape(u)[1:] != jnp.shape(p):
            raise ValueError(
                _NO_BATCH_AXIS.format(path=jax.tree_util.keystr(path) or "the root", got=jnp.shape(u), want=jnp.shape(p))
            )


@transformation({"l2_norm_clip": NON_NEGATIVE, "noise_multiplier": NON_NEGATIVE})
def differentially_private_aggregate(
    l2_norm_clip: float,
    noise_multiplier: float,
    key: jax.Array | int | None = None,
    *,
    seed: int | None = None,
) -> GradientTransformation:
    """Clips per-example gradients, sums them, adds Gaussian noise and averages (DP-SGD).

    Each example's gradient is rescaled to global L2 norm at most ``l2_norm_clip``
    (`per_example_global_norm_clip`); Gaussian noise of standard deviation
    ``l2_norm_clip * noise_multiplier`` is added to the sum, which is then divided by the
    batch size. The random stream is Optax's: each step splits the key into a new key and one
    key per leaf, in leaf order, so that the noise equals Optax's for the same key.

    It must come first in a composition, since it takes gradients with a batch axis in front
    and returns gradients without it. Accumulating over steps (`multi_steps`,
    `apply_every`) does not compose with it: the privacy accounting assumes one noisy mean
    per step.

    Args:
      l2_norm_clip: the largest allowed global norm of one example's gradient, >= 0.
      noise_multiplier: the noise's standard deviation relative to ``l2_norm_clip``, >= 0.
      key: a PRNG key or an integer seed. None (the default, as in Optax) is seed 0 with a
        warning: noise from a known key protects nothing.
      seed: deprecated alias of ``key`` (kept for Optax compatibility; removed in
        gradxform 0.2).

    Returns:
      A transformation with `DifferentiallyPrivateAggregateState` (inside the hyperparameters'
      state when called directly). Its ``update`` takes per-example gradients, every leaf
      shaped ``(batch, *param.shape)``, and returns updates shaped like the parameters.

    Raises:
      ValueError: if ``l2_norm_clip`` or ``noise_multiplier`` is negative, if ``key`` is neither
        a seed nor a PRNG key, or if both ``key`` and ``seed`` are given; at ``update``, if
        the gradients lack a common leading batch axis, or (when ``params`` is given) are not
        the parameters' shapes with one batch axis in front.

    References:
      Abadi, Chu, Goodfellow, McMahan, Mironov, Talwar & Zhang, "Deep Learning with
      Differential Privacy", CCS 2016. https://arxiv.org/abs/1607.00133

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.differentially_private_aggregate(l2_norm_clip=1.0, noise_multiplier=0.0, key=0)
      >>> per_example = jnp.array([[3.0, 4.0], [0.3, 0.4]])
      >>> out, _ = tx.update(per_example, tx.init(jnp.zeros(2)))
      >>> [round(x, 4) for x in out.tolist()]
      [0.45, 0.6]
    """
    if seed is not None:
        warnings.warn(
            "differentially_private_aggregate: seed is deprecated and will be removed in gradxform 0.2; use key.",
            DeprecationWarning,
            stacklevel=2,
        )
        if key is not None:
            raise ValueError(
                f"differentially_private_aggregate: give key or seed, not both; got key={key!r} and seed={seed!r}."
            )
        key = seed
    if key is None:
        warnings.warn(
            "differentially_private_aggregate: no key given, so the noise comes from seed 0 in every "
            "run; pass key= (a jax.random.key or an integer seed) kept out of the published results.",
            stacklevel=2,
        )
        key = 0
    _check_key("differentially_private_aggregate", key)

    def init(params):
        return DifferentiallyPrivateAggregateState(_key(key))

    def update(updates, state, params=None, **extra):
        _check_batched("differentially_private_aggregate", updates)
        if params is not None:
            _check_against_params(updates, params)
        leaves, treedef = jax.tree.flatten(updates)
        batch_size = leaves[0].shape[0]
        clipped, _ = per_example_global_norm_clip(leaves, l2_norm_clip)
        std = jnp.asarray(l2_norm_clip) * jnp.asarray(noise_multiplier)
        rng_key, *leaf_keys = jax.random.split(state.rng_key, len(leaves) + 1)
        noisy = [
            (g + std.astype(g.dtype) * jax.random.normal(k, g.shape, g.dtype)) / batch_size
            for g, k in zip(clipped, leaf_keys)
        ]
        return jax.tree.unflatten(treedef, noisy), DifferentiallyPrivateAggregateState(rng_key)

    return GradientTransformation(init, update)
