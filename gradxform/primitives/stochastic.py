"""Stages of stochastic-approximation methods: polynomially decaying step sizes, Gaussian
(Langevin) noise, compensation of stale gradients, and averaging of the iterates.

The optimizers built from them (`gradxform.sgld`, `gradxform.asgd`, `gradxform.dcasgd`)
carry the equations and references.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradxform._factory import transformation
from gradxform.core import (
    NON_NEGATIVE,
    EmptyState,
    GradientTransformation,
    Params,
    abs_sq,
    check_same_tree,
    find_states,
    new_count,
    require_params,
    safe_increment,
    tree_zeros_like,
)
from gradxform.primitives.moments import CountState


def power_decay(count: jax.Array, rate: Any, power: Any) -> jax.Array:
    """``(1 + rate * count) ** -power`` as a float32 scalar (``count`` = updates so far).

    Args:
      count: an integer scalar.
      rate: how fast the decay sets in, >= 0.
      power: the exponent, >= 0.

    Returns:
      A float32 scalar in (0, 1].

    References:
      Robbins & Monro, "A Stochastic Approximation Method", Annals of Mathematical
      Statistics, 1951. https://doi.org/10.1214/aoms/1177729586

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> float(gx.power_decay(jnp.int32(3), 1.0, 0.5))
      0.5
    """
    t = jnp.asarray(count).astype(jnp.float32)
    return (1 + jnp.asarray(rate, jnp.float32) * t) ** -jnp.asarray(power, jnp.float32)


@transformation({"rate": NON_NEGATIVE, "power": NON_NEGATIVE})
def scale_by_power_decay(rate: float, power: float) -> GradientTransformation:
    """Multiplies the ``t``-th update (``t = 0, 1, ...``) by ``(1 + rate * t) ** -power``.

    The step-size decay of stochastic approximation: Welling & Teh's ``a (b + t) ** -gamma``
    is ``rate = 1 / b``, ``power = gamma`` (see `gradxform.sgld`); ASGD's
    ``(1 + lambd * lr * t) ** -alpha`` is ``rate = lambd * lr`` (see `gradxform.asgd`).

    Args:
      rate: >= 0; 0 leaves the updates unchanged.
      power: >= 0.

    Returns:
      A transformation with a `CountState`.

    References:
      Robbins & Monro, "A Stochastic Approximation Method", Annals of Mathematical
      Statistics, 1951. https://doi.org/10.1214/aoms/1177729586

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.scale_by_power_decay(1.0, 1.0)
      >>> u, s = tx.update(jnp.ones(1), tx.init(jnp.zeros(1)))
      >>> tx.update(jnp.ones(1), s)[0].tolist()
      [0.5]
    """

    def update(updates, state, params=None, **extra):
        factor = power_decay(state.count, rate, power)
        out = jax.tree.map(lambda g: g * factor.astype(jnp.real(g).dtype), updates)
        return out, CountState(safe_increment(state.count))

    return GradientTransformation(lambda params: CountState(new_count()), update)


class NoiseState(NamedTuple):
    """State of `add_gaussian_noise`.

    Attributes:
      count: int32 scalar, updates so far.
      key: the PRNG key of the next draw (uint32 raw key data, split at every update).
    """

    count: jax.Array
    key: jax.Array


def _check_seed(owner: str, seed: Any) -> None:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"{owner}: seed must be a non-negative integer, got seed={seed!r}.")


@transformation({"variance": NON_NEGATIVE, "rate": NON_NEGATIVE, "power": NON_NEGATIVE})
def add_gaussian_noise(variance: float, rate: float = 0.0, power: float = 0.0, seed: int = 0) -> GradientTransformation:
    """Adds independent Gaussian noise of variance ``variance * (1 + rate * t) ** -power``.

    For a complex parameter the real and imaginary parts each get that variance (the
    parameter is a point of the real plane). With the same ``rate`` and ``power`` as a
    `scale_by_power_decay` stage, the noise follows the same decaying step size (SGLD).

    Args:
      variance: the variance of the first update's noise, >= 0.
      rate: decay rate, >= 0 (0: constant variance).
      power: decay exponent, >= 0.
      seed: seed of the PRNG key kept in the state.

    Returns:
      A transformation with `NoiseState`.

    Raises:
      ValueError: if ``seed`` is not a non-negative integer.

    References:
      Welling & Teh, "Bayesian Learning via Stochastic Gradient Langevin Dynamics", ICML 2011.
      https://www.stats.ox.ac.uk/~teh/research/compstats/WelTeh2011a.pdf

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.add_gaussian_noise(0.0)
      >>> tx.update(jnp.ones(2), tx.init(jnp.zeros(2)))[0].tolist()
      [1.0, 1.0]
    """
    _check_seed("add_gaussian_noise", seed)

    def init(params):
        return NoiseState(new_count(), jax.random.PRNGKey(seed))

    def update(updates, state, params=None, **extra):
        leaves, treedef = jax.tree.flatten(updates)
        key, *keys = jax.random.split(state.key, len(leaves) + 1)
        std = jnp.sqrt(jnp.asarray(variance, jnp.float32) * power_decay(state.count, rate, power))

        def noisy(g, k):
            real = jnp.real(g).dtype
            if jnp.iscomplexobj(g):
                kr, ki = jax.random.split(k)
                xi = jax.random.normal(kr, g.shape, real) + 1j * jax.random.normal(ki, g.shape, real)
            else:
                xi = jax.random.normal(k, g.shape, real)
            return (g + std.astype(real) * xi).astype(g.dtype)

        out = treedef.unflatten([noisy(g, k) for g, k in zip(leaves, keys)])
        return out, NoiseState(safe_increment(state.count), key)

    return GradientTransformation(init, update)


@transformation({"lamda": NON_NEGATIVE})
def delay_compensation(lamda: float) -> GradientTransformation:
    """Corrects a stale gradient: ``g + lamda * |g|^2 * (w_now - w_then)``.

    ``w_then`` are the parameters at which the gradient was computed, given to ``update`` as
    the keyword argument ``stale_params`` (a tree like the parameters); without it the
    gradient is taken to be fresh and passes unchanged. ``lamda * g * g`` is the diagonal of
    the outer-product approximation of the Hessian (see `gradxform.dcasgd`).

    Args:
      lamda: strength of the compensation, >= 0 (spelled as in the paper and MXNet).

    Returns:
      A stateless transformation; its ``update`` needs ``params`` when ``stale_params`` is given.

    Raises:
      ValueError: at ``update`` if ``stale_params`` is given without ``params``, or does not
        have the parameters' tree.

    References:
      Zheng, Meng, Wang, Chen, Yu, Ma & Liu, "Asynchronous Stochastic Gradient Descent with
      Delay Compensation", ICML 2017. https://arxiv.org/abs/1609.08326

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.delay_compensation(0.5)
      >>> p, then = jnp.array([1.0]), jnp.array([0.0])
      >>> tx.update(jnp.array([2.0]), tx.init(p), p, stale_params=then)[0].tolist()
      [4.0]
    """

    def update(updates, state, params=None, *, stale_params: Params | None = None, **extra):
        if stale_params is None:
            return updates, state
        if params is None:
            raise ValueError(
                "delay_compensation was given stale_params but not the current parameters: call "
                "update(updates, state, params, stale_params=...)."
            )
        check_same_tree(stale_params, params, "stale_params", "parameters")

        def one(g, w, w_then):
            c = jnp.asarray(lamda).astype(jnp.real(g).dtype)
            return (g + c * abs_sq(g) * (w - w_then).astype(g.dtype)).astype(g.dtype)

        return jax.tree.map(one, updates, params, stale_params), state

    return GradientTransformation(lambda params: EmptyState(), update)


class AverageState(NamedTuple):
    """State of `average_iterates`.

    Attributes:
      count: int32 scalar, updates so far.
      average: the running average of the iterates, one array per parameter.
    """

    count: jax.Array
    average: Params


@transformation({"t0": NON_NEGATIVE})
def average_iterates(t0: float = 1e6, accumulator_dtype: Any = None) -> GradientTransformation:
    """Passes updates through and keeps the average of the iterates ``w + u`` since step ``t0``.

    At the ``t``-th update (``t = 1, 2, ...``) the new iterate ``x = w + u`` enters the
    average with weight ``mu = 1 / max(1, t - 1 - t0)``: before ``t0`` the average just
    follows the iterate, after it it is the mean of the iterates since ``t0`` (Polyak-Ruppert
    averaging, as in ``torch.optim.ASGD``). Read it with `averaged_iterates`.

    Args:
      t0: the step at which averaging starts, >= 0.
      accumulator_dtype: dtype of the average (default: the parameter's).

    Returns:
      A transformation with `AverageState` (the average starts at zero); its ``update``
      needs ``params``.

    Raises:
      ValueError: at ``update`` if ``params`` is not given.

    References:
      Polyak & Juditsky, "Acceleration of Stochastic Approximation by Averaging", SIAM J.
      Control and Optimization, 1992. https://doi.org/10.1137/0330046

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.average_iterates(t0=0.0)
      >>> p, s = jnp.zeros(1), tx.init(jnp.zeros(1))
      >>> for _ in range(4):
      ...     u, s = tx.update(jnp.ones(1), s, p)
      ...     p = p + u
      >>> gx.averaged_iterates(s).tolist()  # mean of the iterates 2, 3, 4 after the first
      [3.0]
    """

    def init(params):
        return AverageState(new_count(), tree_zeros_like(params, accumulator_dtype))

    def update(updates, state, params=None, **extra):
        require_params("average_iterates", params)
        check_same_tree(updates, state.average, "updates", "average_iterates' state")
        mu = 1 / jnp.maximum(1.0, state.count.astype(jnp.float32) - jnp.asarray(t0, jnp.float32))

        def one(u, w, avg):
            x = (w + u.astype(w.dtype)).astype(avg.dtype)
            m = mu.astype(jnp.real(avg).dtype)
            return jnp.where(mu == 1, x, avg + m * (x - avg)).astype(avg.dtype)

        average = jax.tree.map(one, updates, params, state.average)
        return updates, AverageState(safe_increment(state.count), average)

    return GradientTransformation(init, update)


def averaged_iterates(state: Any) -> Params:
    """The averaged parameters kept by the `average_iterates` stage inside an optimizer state.

    Args:
      state: the state of `gradxform.asgd` or of any composition holding one
        `average_iterates` stage.

    Returns:
      The average, a tree like the parameters.

    Raises:
      ValueError: if the state holds no `AverageState`, or more than one.

    References:
      Polyak & Juditsky, "Acceleration of Stochastic Approximation by Averaging", SIAM J.
      Control and Optimization, 1992. https://doi.org/10.1137/0330046

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> state = gx.asgd(0.1).init({"w": jnp.ones(2)})
      >>> gx.averaged_iterates(state)["w"].tolist()
      [0.0, 0.0]
    """
    found = find_states(state, AverageState)
    if len(found) != 1:
        raise ValueError(
            f"averaged_iterates: expected exactly one average_iterates stage in the state, found "
            f"{len(found)}. Is this the state of gx.asgd (or of a chain holding gx.average_iterates)?"
        )
    return found[0].average


__all__ = [
    "AverageState",
    "NoiseState",
    "add_gaussian_noise",
    "average_iterates",
    "averaged_iterates",
    "delay_compensation",
    "power_decay",
    "scale_by_power_decay",
]
