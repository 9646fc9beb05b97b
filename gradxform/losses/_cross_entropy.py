"""Cross-entropy losses over classes: softmax, sigmoid, focal and poly."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import jax.scipy.special
from jax.typing import ArrayLike

from gradxform.losses._checks import _NOT_INTEGER, Axis, _check_label_shape, _class_axes, _expand_where, _fits, _floating


def sigmoid_binary_cross_entropy(logits: ArrayLike, labels: ArrayLike) -> jax.Array:
    """Elementwise cross entropy of independent binary predictions given as logits.

    Args:
      logits: unnormalised log-odds of the positive class, any shape, floating.
      labels: 0/1 labels or target probabilities, broadcastable to ``logits``' shape.

    Returns:
      The loss for each element, with ``logits``' shape.

    Raises:
      TypeError: if ``logits`` is not floating.
      ValueError: if ``labels`` would broadcast ``logits`` to a larger shape.

    References:
      Goodfellow, Bengio and Courville, `Deep Learning
      <http://www.deeplearningbook.org/contents/prob.html>`_, 2016, section 3.10.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> loss = gx.sigmoid_binary_cross_entropy(jnp.array([0.0, 2.0]), jnp.array([1.0, 0.0]))
      >>> [round(v, 4) for v in loss.tolist()]
      [0.6931, 2.1269]
    """
    logits = _floating(logits, "logits")
    _fits(logits, "logits", labels, "labels")
    labels = jnp.asarray(labels).astype(logits.dtype)
    return -labels * jax.nn.log_sigmoid(logits) - (1.0 - labels) * jax.nn.log_sigmoid(-logits)


def sigmoid_focal_loss(
    logits: ArrayLike,
    labels: ArrayLike,
    *,
    alpha: ArrayLike | None = None,
    gamma: ArrayLike = 2.0,
) -> jax.Array:
    """Sigmoid cross entropy scaled by ``(1 - p_t) ** gamma``, to focus on hard examples.

    ``p_t`` is the probability given to the true outcome; ``(1 - p_t)`` is computed in log
    space, so the weight stays accurate for confident predictions.

    Args:
      logits: unnormalised log-odds, any shape, floating.
      labels: 0/1 labels or soft targets in ``[0, 1]``, broadcastable to ``logits``' shape.
      alpha: optional weight in ``(0, 1)`` of positive examples (negatives get ``1 - alpha``).
      gamma: exponent of the modulating factor; 0 gives plain sigmoid cross entropy.

    Returns:
      The loss for each element, with ``logits``' shape.

    Raises:
      TypeError: if ``logits`` is not floating.
      ValueError: if ``labels`` would broadcast ``logits`` to a larger shape.

    References:
      Lin, Goyal, Girshick, He and Dollár, `Focal Loss for Dense Object Detection
      <https://arxiv.org/abs/1708.02002>`_, 2017.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> loss = gx.sigmoid_focal_loss(jnp.array([0.0, 2.0]), jnp.array([1.0, 1.0]))
      >>> [round(v, 4) for v in loss.tolist()]
      [0.1733, 0.0018]
    """
    logits = _floating(logits, "logits")
    _fits(logits, "logits", labels, "labels")
    labels = jnp.asarray(labels).astype(logits.dtype)
    cross_entropy = sigmoid_binary_cross_entropy(logits, labels)
    # log(1 - p_t) = log((1 - y) p + y (1 - p)), as a weighted log-sum-exp of log p and log(1 - p).
    log_terms = jnp.stack([jax.nn.log_sigmoid(logits), jax.nn.log_sigmoid(-logits)], axis=-1)
    weights = jnp.stack([1.0 - labels, labels], axis=-1)
    log_one_minus_pt = jax.scipy.special.logsumexp(log_terms, axis=-1, b=weights)
    loss = cross_entropy * jnp.exp(gamma * log_one_minus_pt)
    if alpha is None:
        return loss
    return (alpha * labels + (1.0 - alpha) * (1.0 - labels)) * loss


def softmax_cross_entropy(
    logits: ArrayLike,
    labels: ArrayLike,
    axis: Axis = -1,
    where: ArrayLike | None = None,
) -> jax.Array:
    """Cross entropy between softmax(logits) and target distributions (categorical cross entropy).

    With ``logits = -inf`` where ``labels = 0`` the result is NaN, as in Optax; use
    `safe_softmax_cross_entropy` for masked-out classes.

    Args:
      logits: unnormalised log probabilities, shape ``[..., num_classes]``, floating.
      labels: target distributions (one-hot or soft), broadcastable to ``logits``' shape.
      axis: the class axis or axes.
      where: optional mask of the elements to include, of ``logits``' shape or of the
        per-example shape (then it applies to all classes of an example).

    Returns:
      The loss per example, ``logits``' shape without ``axis``.

    Raises:
      TypeError: if ``logits`` is not floating or ``where`` is not boolean.
      ValueError: if ``labels`` would broadcast ``logits`` to a larger shape, or ``where``
        has neither ``logits``' shape nor the per-example shape.

    References:
      `Cross entropy <https://en.wikipedia.org/wiki/Cross-entropy>`_, Wikipedia.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> logits = jnp.array([[1.2, -0.8, -0.5], [0.9, -1.2, 1.1]])
      >>> labels = jnp.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
      >>> [round(v, 4) for v in gx.softmax_cross_entropy(logits, labels).tolist()]
      [0.2761, 2.9518]
    """
    logits = _floating(logits, "logits")
    _fits(logits, "logits", labels, "labels")
    where = _expand_where(where, logits, axis)
    log_probs = jax.nn.log_softmax(logits, axis, where=where)
    return -jnp.sum(labels * log_probs, axis=axis, where=where)


@jax.custom_jvp
def _weighted_log_softmax(x: jax.Array, weights: jax.Array) -> jax.Array:
    """``weights * log_softmax(x)`` over the last axis, with 0 wherever a weight is 0."""
    log_probs = jax.nn.log_softmax(x, axis=-1)
    return jnp.where(weights != 0.0, weights * log_probs, 0.0)


@_weighted_log_softmax.defjvp
def _weighted_log_softmax_jvp(primals, tangents):
    # The derivative of log_softmax is written out so that -inf logits with zero weight
    # contribute 0 instead of the NaN that autodiff would propagate through 0 * -inf.
    x, weights = primals
    x_dot, weights_dot = tangents
    log_probs = jax.nn.log_softmax(x, axis=-1)
    out = jnp.where(weights != 0.0, weights * log_probs, 0.0)
    centred = x_dot - jnp.sum(x_dot * jax.nn.softmax(x, axis=-1), axis=-1, keepdims=True)
    return out, weights * centred + weights_dot * log_probs


def safe_softmax_cross_entropy(logits: ArrayLike, labels: ArrayLike) -> jax.Array:
    """Softmax cross entropy that takes ``0 * log 0 = 0``, so ``-inf`` logits may mask classes.

    Args:
      logits: unnormalised log probabilities, shape ``[..., num_classes]``, floating; may
        hold ``-inf`` where ``labels`` is 0.
      labels: target distributions, broadcastable to ``logits``' shape.

    Returns:
      The loss per example, shape ``[...]``; value and gradient are finite where
      `softmax_cross_entropy` gives NaN.

    Raises:
      TypeError: if ``logits`` is not floating.
      ValueError: if ``labels`` would broadcast ``logits`` to a larger shape.

    References:
      `Cross entropy <https://en.wikipedia.org/wiki/Cross-entropy>`_, Wikipedia.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> logits = jnp.array([[0.0, -jnp.inf, 0.0]])
      >>> gx.safe_softmax_cross_entropy(logits, jnp.array([[1.0, 0.0, 0.0]])).tolist()
      [0.6931471824645996]
    """
    logits = _floating(logits, "logits")
    _fits(logits, "logits", labels, "labels")
    labels = jnp.broadcast_to(jnp.asarray(labels, logits.dtype), logits.shape)
    return -jnp.sum(_weighted_log_softmax(logits, labels), axis=-1)


def softmax_cross_entropy_with_integer_labels(
    logits: ArrayLike,
    labels: ArrayLike,
    axis: int | tuple[int, ...] = -1,
    where: ArrayLike | None = None,
) -> jax.Array:
    """Softmax cross entropy with the true class given as an index instead of one-hot.

    Args:
      logits: unnormalised log probabilities, floating.
      labels: integer class indices in ``[0, num_classes)``, of ``logits``' shape without
        ``axis``. Out-of-range labels are not checked (their loss is undefined).
      axis: the class axis, or a tuple of axes whose elements are the classes; a label then
        indexes the flattened (row-major) slice ``logits[..., axis]``.
      where: optional mask of the classes to include, of ``logits``' shape or of the
        per-example shape; an example with nothing included has loss 0.

    Returns:
      The loss per example, ``labels``' shape.

    Raises:
      TypeError: if ``logits`` is not floating, ``labels`` is not integer or ``where`` is
        not boolean.
      ValueError: if ``axis`` is neither an int nor a tuple, is out of range, or
        ``labels``' shape is not ``logits``' shape without ``axis``, or ``where`` has neither
        ``logits``' shape nor the per-example shape.

    References:
      `Multinomial logistic regression
      <https://en.wikipedia.org/wiki/Multinomial_logistic_regression>`_, Wikipedia.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> logits = jnp.array([[1.2, -0.8, -0.5], [0.9, -1.2, 1.1]])
      >>> loss = gx.softmax_cross_entropy_with_integer_labels(logits, jnp.array([0, 1]))
      >>> [round(v, 4) for v in loss.tolist()]
      [0.2761, 2.9518]
    """
    logits = _floating(logits, "logits")
    labels = jnp.asarray(labels)
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(_NOT_INTEGER.format(name="labels", dtype=labels.dtype))
    if isinstance(axis, bool) or not isinstance(axis, (int, tuple)):
        raise ValueError(f"axis must be an int or a tuple of ints, got axis={axis!r}.")
    class_axes = _class_axes(axis, logits.ndim)
    batch_axes = tuple(a for a in range(logits.ndim) if a not in class_axes)
    batch_shape = tuple(logits.shape[a] for a in batch_axes)
    _check_label_shape(labels, logits.shape, batch_shape)
    where = _expand_where(where, logits, axis)
    # Classes go last, flattened into one axis, so that a label is an index along it.
    order = batch_axes + class_axes
    # The class count is spelled out: reshape cannot infer a -1 when the batch is empty.
    flat_shape = batch_shape + (math.prod(logits.shape[a] for a in class_axes),)
    if where is not None:
        where = jnp.broadcast_to(where, logits.shape).transpose(order).reshape(flat_shape)
    logits = logits.transpose(order).reshape(flat_shape)
    labels = jnp.broadcast_to(labels, batch_shape)
    label_logits = jnp.take_along_axis(logits, labels[..., None], axis=-1)[..., 0]
    out = jax.nn.logsumexp(logits, axis=-1, where=where) - label_logits
    if where is not None:
        out = jnp.where(jnp.any(where, axis=-1), out, 0.0)
    return out


def poly_loss_cross_entropy(
    logits: ArrayLike,
    labels: ArrayLike,
    *,
    epsilon: ArrayLike = 2.0,
    axis: Axis = -1,
    where: ArrayLike | None = None,
) -> jax.Array:
    """Poly-1 loss: softmax cross entropy plus ``epsilon * (1 - p_t)``.

    Args:
      logits: unnormalised log probabilities, shape ``[..., num_classes]``, floating.
      labels: target distributions, floating, broadcastable to ``logits``' shape.
      epsilon: coefficient of the first polynomial term (the paper recommends 2 for
        ImageNet classification, -1 for detection and segmentation).
      axis: the class axis or axes.
      where: optional mask of the elements to include, of ``logits``' shape or of the
        per-example shape (then it applies to all classes of an example).

    Returns:
      The loss per example, ``logits``' shape without ``axis``.

    Raises:
      TypeError: if ``logits`` or ``labels`` is not floating, or ``where`` is not boolean.
      ValueError: if ``labels`` would broadcast ``logits`` to a larger shape, or ``where``
        has neither ``logits``' shape nor the per-example shape.

    References:
      Leng et al., `PolyLoss: A Polynomial Expansion Perspective of Classification Loss
      Functions <https://arxiv.org/abs/2204.12511>`_, 2022.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> logits, labels = jnp.array([[0.0, 0.0]]), jnp.array([[1.0, 0.0]])
      >>> [round(v, 4) for v in gx.losses.poly_loss_cross_entropy(logits, labels).tolist()]
      [1.6931]
    """
    logits = _floating(logits, "logits")
    labels = _floating(labels, "labels")
    _fits(logits, "logits", labels, "labels")
    where = _expand_where(where, logits, axis)
    probs = jax.nn.softmax(logits, axis=axis, where=where)
    one_minus_pt = jnp.sum(labels * (1.0 - probs), axis=axis, where=where)
    return softmax_cross_entropy(logits, labels, axis=axis, where=where) + epsilon * one_minus_pt
