"""Kullback-Leibler divergences."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from gradxform.losses._checks import Axis, _compatible, _floating, _mask


def kl_divergence(
    log_predictions: ArrayLike,
    targets: ArrayLike,
    axis: Axis = -1,
    where: ArrayLike | None = None,
) -> jax.Array:
    """Kullback-Leibler divergence ``KL(targets || predictions)``, predictions in log space.

    Zero targets contribute 0 (``0 log 0 = 0``), to the value and to the gradient.

    Args:
      log_predictions: log probabilities of the predicted distribution, floating.
      targets: probabilities of the target distribution, floating, non-negative.
      axis: the axis or axes to sum over.
      where: optional mask of the elements to include.

    Returns:
      The divergence, the broadcast shape without ``axis``.

    Raises:
      TypeError: if an input is not floating, or ``where`` is not boolean.
      ValueError: if the shapes (``where``'s too) do not broadcast together.

    References:
      Kullback and Leibler, `On Information and Sufficiency
      <https://www.jstor.org/stable/2236703>`_, 1951.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> p = jnp.array([[0.5, 0.5]])
      >>> round(gx.kl_divergence(jnp.log(jnp.array([[0.25, 0.75]])), p).tolist()[0], 4)
      0.1438
    """
    log_predictions = _floating(log_predictions, "log_predictions")
    targets = _floating(targets, "targets")
    where = _mask(where)
    _compatible((log_predictions, "log_predictions"), (targets, "targets"), (where, "where"))
    # log is taken of 1 where the target is 0, so that the gradient there is 0, not NaN.
    log_targets = jnp.where(targets == 0, 0.0, jnp.log(jnp.where(targets == 0, 1.0, targets)))
    return jnp.sum(targets * (log_targets - log_predictions), axis=axis, where=where)


def kl_divergence_with_log_targets(
    log_predictions: ArrayLike,
    log_targets: ArrayLike,
    axis: Axis = -1,
    where: ArrayLike | None = None,
) -> jax.Array:
    """`kl_divergence` with the targets, too, given as log probabilities.

    Args:
      log_predictions: log probabilities of the predicted distribution, floating.
      log_targets: log probabilities of the target distribution, floating.
      axis: the axis or axes to sum over.
      where: optional mask of the elements to include.

    Returns:
      The divergence, the broadcast shape without ``axis``.

    Raises:
      TypeError: if an input is not floating, or ``where`` is not boolean.
      ValueError: if the shapes (``where``'s too) do not broadcast together.

    References:
      Kullback and Leibler, `On Information and Sufficiency
      <https://www.jstor.org/stable/2236703>`_, 1951.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> log_p = jnp.log(jnp.array([[0.5, 0.5]]))
      >>> round(gx.losses.kl_divergence_with_log_targets(jnp.log(jnp.array([[0.25, 0.75]])), log_p).tolist()[0], 4)
      0.1438
    """
    log_predictions = _floating(log_predictions, "log_predictions")
    log_targets = _floating(log_targets, "log_targets")
    where = _mask(where)
    _compatible((log_predictions, "log_predictions"), (log_targets, "log_targets"), (where, "where"))
    return jnp.sum(jnp.exp(log_targets) * (log_targets - log_predictions), axis=axis, where=where)


def generalized_kl_divergence(
    log_predictions: ArrayLike,
    targets: ArrayLike,
    axis: Axis = -1,
    where: ArrayLike | None = None,
) -> jax.Array:
    """KL divergence for unnormalised distributions: ``KL + sum(predictions - targets)``.

    It is the Bregman divergence of ``x log x - x``; it equals `kl_divergence` when both
    distributions sum to 1.

    Args:
      log_predictions: logs of the predicted (unnormalised) masses, floating.
      targets: the target masses, floating, non-negative.
      axis: the axis or axes to sum over.
      where: optional mask of the elements to include.

    Returns:
      The divergence, the broadcast shape without ``axis``.

    Raises:
      TypeError: if an input is not floating, or ``where`` is not boolean.
      ValueError: if the shapes (``where``'s too) do not broadcast together.

    References:
      Bregman, `The relaxation method of finding the common point of convex sets
      <https://doi.org/10.1016/0041-5553(67)90040-7>`_, 1967; Boyd and Vandenberghe,
      `Convex Optimization <https://stanford.edu/~boyd/cvxbook/>`_, 2004, p. 90.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> round(gx.generalized_kl_divergence(jnp.log(jnp.array([2.0])), jnp.array([1.0])).tolist(), 4)
      0.3069
    """
    divergence = kl_divergence(log_predictions, targets, axis=axis, where=where)
    mass = jnp.exp(jnp.asarray(log_predictions)) - jnp.asarray(targets)
    return divergence + jnp.sum(mass, axis=axis, where=where)


def convex_kl_divergence(
    log_predictions: ArrayLike,
    targets: ArrayLike,
    axis: Axis = -1,
    where: ArrayLike | None = None,
) -> jax.Array:
    """Deprecated (in Optax as here): use `generalized_kl_divergence`, which it calls.

    It is kept while Optax keeps it, so that Optax code runs unchanged, and warns with a
    ``DeprecationWarning`` on every call; it goes when Optax removes it.

    Args:
      log_predictions: logs of the predicted (unnormalised) masses, floating.
      targets: the target masses, floating, non-negative.
      axis: the axis or axes to sum over.
      where: optional mask of the elements to include.

    Returns:
      ``generalized_kl_divergence(log_predictions, targets, axis=axis, where=where)``.

    References:
      See `generalized_kl_divergence`.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp, warnings
      >>> with warnings.catch_warnings():
      ...     warnings.simplefilter("ignore", DeprecationWarning)
      ...     round(gx.convex_kl_divergence(jnp.log(jnp.array([2.0])), jnp.array([1.0])).tolist(), 4)
      0.3069
    """
    warnings.warn(
        "convex_kl_divergence is deprecated (as in Optax); use generalized_kl_divergence.",
        DeprecationWarning,
        stacklevel=2,
    )
    return generalized_kl_divergence(log_predictions, targets, axis=axis, where=where)
