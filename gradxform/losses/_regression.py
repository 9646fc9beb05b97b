"""Regression and similarity losses."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from gradxform.losses._checks import Axis, _compatible, _fits, _floating, _mask, _same_shape



def _errors(predictions: ArrayLike, targets: ArrayLike | None) -> jax.Array:
    predictions = _floating(predictions, "predictions")
    if targets is None:
        return predictions
    _fits(predictions, "predictions", targets, "targets")
    return predictions - jnp.asarray(targets)


def squared_error(predictions: ArrayLike, targets: ArrayLike | None = None) -> jax.Array:
    """Elementwise squared error ``(predictions - targets) ** 2``; its mean is the MSE.

    Args:
      predictions: any shape, floating.
      targets: the same shape as ``predictions`` (as Optax requires); zeros if omitted.

    Returns:
      The squared errors, with ``predictions``' shape.

    Raises:
      TypeError: if ``predictions`` is not floating.
      ValueError: if ``targets`` has another shape.

    References:
      `Mean squared error <https://en.wikipedia.org/wiki/Mean_squared_error>`_, Wikipedia.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.squared_error(jnp.array([1.0, 3.0]), jnp.array([0.0, 1.0])).tolist()
      [1.0, 4.0]
    """
    if targets is not None:
        _same_shape(predictions, "predictions", targets, "targets")
    return _errors(predictions, targets) ** 2


def l2_loss(predictions: ArrayLike, targets: ArrayLike | None = None) -> jax.Array:
    """Half the squared error, ``0.5 * (predictions - targets) ** 2`` (Bishop's convention).

    Args:
      predictions: any shape, floating.
      targets: the same shape as ``predictions``; zeros if omitted.

    Returns:
      The losses, with ``predictions``' shape.

    Raises:
      TypeError: if ``predictions`` is not floating.
      ValueError: if ``targets`` has another shape.

    References:
      Bishop, Pattern Recognition and Machine Learning, 2006, section 1.1.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.l2_loss(jnp.array([1.0, 3.0]), jnp.array([0.0, 1.0])).tolist()
      [0.5, 2.0]
    """
    return 0.5 * squared_error(predictions, targets)


def huber_loss(
    predictions: ArrayLike,
    targets: ArrayLike | None = None,
    *,
    delta: ArrayLike = 1.0,
) -> jax.Array:
    """Huber loss: ``0.5 e**2`` for ``|e| <= delta``, ``delta * (|e| - 0.5 delta)`` beyond.

    Its gradient is the error clipped to ``[-delta, delta]``.

    Args:
      predictions: any shape, floating.
      targets: broadcastable to ``predictions``' shape; zeros if omitted.
      delta: where the loss turns from quadratic to linear.

    Returns:
      The losses, with ``predictions``' shape.

    Raises:
      TypeError: if ``predictions`` is not floating.
      ValueError: if ``targets`` would broadcast ``predictions`` to a larger shape.

    References:
      Huber, `Robust Estimation of a Location Parameter
      <https://doi.org/10.1214/aoms/1177703732>`_, 1964.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.huber_loss(jnp.array([0.5, 3.0])).tolist()
      [0.125, 2.5]
    """
    abs_errors = jnp.abs(_errors(predictions, targets))
    quadratic = jnp.minimum(abs_errors, delta)
    return 0.5 * quadratic**2 + delta * (abs_errors - quadratic)


def log_cosh(predictions: ArrayLike, targets: ArrayLike | None = None) -> jax.Array:
    """``log(cosh(predictions - targets))``: quadratic near 0, linear far away, smooth.

    Computed as ``logaddexp(e, -e) - log 2``, which does not overflow for large errors.

    Args:
      predictions: any shape, floating.
      targets: broadcastable to ``predictions``' shape; zeros if omitted.

    Returns:
      The losses, with ``predictions``' shape.

    Raises:
      TypeError: if ``predictions`` is not floating.
      ValueError: if ``targets`` would broadcast ``predictions`` to a larger shape.

    References:
      Chen et al., `Log Hyperbolic Cosine Loss Improves Variational Auto-Encoder
      <https://openreview.net/forum?id=rkglvsC9Ym>`_, 2019.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> [round(v, 4) for v in gx.log_cosh(jnp.array([0.0, 1.0, 100.0])).tolist()]
      [0.0, 0.4338, 99.3069]
    """
    errors = _errors(predictions, targets)
    return jnp.logaddexp(errors, -errors) - jnp.log(2.0).astype(errors.dtype)


def cosine_similarity(
    predictions: ArrayLike,
    targets: ArrayLike,
    *,
    epsilon: ArrayLike = 0.0,
    axis: Axis = -1,
    where: ArrayLike | None = None,
) -> jax.Array:
    """Cosine of the angle between ``predictions`` and ``targets`` along ``axis``.

    Args:
      predictions: vectors, shape ``[..., dim]``, floating.
      targets: vectors, broadcastable with ``predictions``, floating.
      epsilon: lower bound applied, as in Optax, to each *squared* norm before the square
        root; 0 gives NaN for a zero vector.
      axis: the axis or axes of the vectors.
      where: optional mask of the elements to include.

    Returns:
      The similarities, the broadcast shape without ``axis``.

    Raises:
      TypeError: if an input is not floating, or ``where`` is not boolean.
      ValueError: if the shapes (``where``'s too) do not broadcast together.

    References:
      `Cosine similarity <https://en.wikipedia.org/wiki/Cosine_similarity>`_, Wikipedia.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> [round(v, 4) for v in gx.cosine_similarity(jnp.array([[1.0, 0.0]]), jnp.array([[1.0, 1.0]])).tolist()]
      [0.7071]
    """
    predictions = _floating(predictions, "predictions")
    targets = _floating(targets, "targets")
    where = _mask(where)
    _compatible((predictions, "predictions"), (targets, "targets"), (where, "where"))

    def unit(x: jax.Array) -> jax.Array:
        norm_sq = jnp.sum(jnp.square(x), axis=axis, where=where, keepdims=True)
        return x / jnp.sqrt(jnp.clip(norm_sq, epsilon))

    return jnp.sum(unit(predictions) * unit(targets), axis=axis, where=where)


def cosine_distance(
    predictions: ArrayLike,
    targets: ArrayLike,
    *,
    epsilon: ArrayLike = 0.0,
    axis: Axis = -1,
    where: ArrayLike | None = None,
) -> jax.Array:
    """``1 - cosine_similarity(predictions, targets)``; arguments as in `cosine_similarity`.

    Args:
      predictions: vectors, shape ``[..., dim]``, floating.
      targets: vectors, broadcastable with ``predictions``, floating.
      epsilon: lower bound of each squared norm.
      axis: the axis or axes of the vectors.
      where: optional mask of the elements to include.

    Returns:
      The distances, in ``[0, 2]``, the broadcast shape without ``axis``.

    Raises:
      TypeError: if an input is not floating, or ``where`` is not boolean.
      ValueError: if the shapes (``where``'s too) do not broadcast together.

    References:
      `Cosine distance <https://en.wikipedia.org/wiki/Cosine_similarity#Cosine_distance>`_,
      Wikipedia.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.cosine_distance(jnp.array([[1.0, 0.0]]), jnp.array([[-1.0, 0.0]])).tolist()
      [2.0]
    """
    return 1.0 - cosine_similarity(predictions, targets, epsilon=epsilon, axis=axis, where=where)
