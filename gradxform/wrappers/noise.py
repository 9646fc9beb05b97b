"""Gradient noise (Neelakantan et al., 2015) and gradient centralization (Yong et al., 2020)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradxform._factory import transformation
from gradxform.core import NON_NEGATIVE, EmptyState, GradientTransformation, new_count, safe_increment
from gradxform.kernels._noise import add_gaussian_noise


class AddNoiseState(NamedTuple):
    """State of `add_noise`: ``count`` (int32, steps so far) and ``rng_key`` (a typed PRNG key)."""

    count: jax.Array
    rng_key: jax.Array


def _check_key(owner: str, key: object) -> None:
    """Raises ``ValueError`` naming ``key`` unless it is an integer seed or a PRNG key (typed,
    or the legacy uint32 pair); JAX would otherwise fail at ``init``, without naming it."""
    if isinstance(key, jax.Array) and (
        jnp.issubdtype(key.dtype, jax.dtypes.prng_key) or (key.shape == (2,) and key.dtype == jnp.uint32)
    ):
        return
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        return
    raise ValueError(
        f"{owner}: key must be an integer seed or a PRNG key (jax.random.key(0)), got "
        f"{type(key).__name__} key={key!r}."
    )


def _key(key: jax.Array | int) -> jax.Array:
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    if isinstance(key, jax.Array) and key.shape == (2,) and key.dtype == jnp.uint32:
        return jax.random.wrap_key_data(key)
    return jax.random.key(key)


@transformation({"eta": NON_NEGATIVE, "gamma": NON_NEGATIVE})
def add_noise(eta: float, gamma: float, key: jax.Array | int | None = None) -> GradientTransformation:
    """Adds annealed Gaussian noise to the updates, as Optax's ``add_noise``.

    At step ``t`` (1-based) every coordinate gets noise of variance ``eta / t**gamma``.

    Args:
      eta: the initial variance, >= 0 (the paper uses 0.01, 0.3 or 1.0).
      gamma: the decay exponent of the variance, >= 0 (the paper uses 0.55).
      key: a PRNG key or an integer seed; None (the default, as in Optax) is seed 0.

    Returns:
      A transformation with `AddNoiseState`.

    Raises:
      ValueError: if ``key`` is neither an integer seed nor a PRNG key.

    References:
      Neelakantan, Vilnis, Le, Sutskever, Kaiser, Kurach & Martens, "Adding Gradient Noise
      Improves Learning for Very Deep Networks", 2015. https://arxiv.org/abs/1511.06807

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.add_noise(0.0, 0.55, key=0)
      >>> tx.update(jnp.ones(2), tx.init(jnp.zeros(2)))[0].tolist()
      [1.0, 1.0]
    """
    key = 0 if key is None else key
    _check_key("add_noise", key)

    def init(params):
        return AddNoiseState(new_count(), _key(key))

    def update(updates, state, params=None, **extra):
        count = safe_increment(state.count)
        std = jnp.sqrt(jnp.asarray(eta, jnp.float32) / count.astype(jnp.float32) ** jnp.asarray(gamma, jnp.float32))
        rng_key, sample_key = jax.random.split(state.rng_key)
        leaves, treedef = jax.tree.flatten(updates)
        keys = jax.random.split(sample_key, len(leaves))
        noisy = add_gaussian_noise(leaves, keys, std)
        return jax.tree.unflatten(treedef, noisy), AddNoiseState(count, rng_key)

    return GradientTransformation(init, update)


@transformation()
def centralize() -> GradientTransformation:
    """Gradient centralization: subtracts from each leaf of rank > 1 its mean over all axes but the first.

    Scalars and vectors (biases, norms) pass unchanged, as in Optax's ``centralize``.

    Returns:
      A stateless transformation.

    References:
      Yong, Huang, Hua & Zhang, "Gradient Centralization: A New Optimization Technique for
      Deep Neural Networks", ECCV 2020. https://arxiv.org/abs/2004.01461

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.centralize().update(jnp.array([[1.0, 2.0, 3.0]]), gx.EmptyState())[0].tolist()
      [[-1.0, 0.0, 1.0]]
    """

    def center(g):
        return g - g.mean(tuple(range(1, g.ndim)), keepdims=True) if g.ndim > 1 else g

    def update(updates, state, params=None, **extra):
        return jax.tree.map(center, updates), state

    return GradientTransformation(lambda params: EmptyState(), update)
