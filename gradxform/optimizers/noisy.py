"""Gradient descent with annealed Gaussian noise (noisy SGD)."""

from __future__ import annotations

import warnings

import jax

from gradxform._factory import transformation
from gradxform.combinators import chain
from gradxform.core import NON_NEGATIVE, GradientTransformation
from gradxform.primitives.elementwise import scale_by_learning_rate
from gradxform.wrappers.noise import add_noise


@transformation({"learning_rate": NON_NEGATIVE, "eta": NON_NEGATIVE, "gamma": NON_NEGATIVE})
def noisy_sgd(
    learning_rate: float,
    eta: float = 0.01,
    gamma: float = 0.55,
    key: jax.Array | int | None = None,
    *,
    seed: int | None = None,
) -> GradientTransformation:
    """SGD on gradients plus Gaussian noise of variance ``eta / t^gamma`` at step ``t``.

    ``u_t = -lr * (g_t + n_t)``, ``n_t ~ N(0, eta / t^gamma)`` per coordinate. The PRNG key
    is kept in the state and split at every step, so a jitted step is deterministic given
    the state.

    Args:
      learning_rate: a number >= 0 or a schedule.
      eta: the initial noise variance, >= 0.
      gamma: the decay exponent of the variance, >= 0.
      key: a PRNG key or an integer seed (``None``: seed 0).
      seed: deprecated alias of ``key`` (kept for Optax compatibility; removed in
        gradxform 0.2).

    Returns:
      ``chain(add_noise(eta, gamma, key), scale_by_learning_rate(learning_rate))``.

    Raises:
      ValueError: if both ``key`` and ``seed`` are given.

    References:
      Neelakantan, Vilnis, Le, Sutskever, Kaiser, Kurach & Martens, "Adding Gradient Noise
      Improves Learning for Very Deep Networks", 2015. https://arxiv.org/abs/1511.06807

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.noisy_sgd(0.1, eta=0.0, key=0)
      >>> tx.update(jnp.array([1.0]), tx.init(jnp.zeros(1)))[0].tolist()
      [-0.10000000149011612]
    """
    if seed is not None:
        if key is not None:
            raise ValueError(f"noisy_sgd: give key or seed, not both; got key={key!r}, seed={seed!r}.")
        warnings.warn(
            "noisy_sgd: seed is deprecated and will be removed in gradxform 0.2; use key.",
            DeprecationWarning,
            stacklevel=2,
        )
        key = seed
    return chain(add_noise(eta, gamma, key), scale_by_learning_rate(learning_rate))
