"""Label smoothing and metric-learning losses (triplet margin, NT-Xent)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from gradxform.losses._checks import Axis, _floating, _compatible
from gradxform.losses._regression import cosine_similarity


def smooth_labels(
    labels: ArrayLike,
    alpha: ArrayLike,
    *,
    axis: Axis = -1,
    where: ArrayLike | None = None,
) -> jax.Array:
    """Label smoothing: ``(1 - alpha) * labels + alpha / num_classes``.

    Args:
      labels: one-hot labels, floating.
      alpha: the smoothing factor in ``[0, 1]``.
      axis: the class axis or axes.
      where: optional mask of the classes that count in ``num_classes`` (every element still
        gets the uniform share, as in Optax).

    Returns:
      The smoothed labels, with ``labels``' shape.

    Raises:
      TypeError: if ``labels`` is not floating.
      ValueError: if ``alpha`` (when not traced) is not in ``[0, 1]``.

    References:
      Szegedy et al., `Rethinking the Inception Architecture for Computer Vision
      <https://arxiv.org/abs/1512.00567>`_, 2016; Müller, Kornblith and Hinton, `When Does
      Label Smoothing Help? <https://arxiv.org/abs/1906.02629>`_, 2019.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> [round(v, 4) for v in gx.smooth_labels(jnp.array([1.0, 0.0, 0.0, 0.0]), 0.2).tolist()]
      [0.85, 0.05, 0.05, 0.05]
    """
    labels = _floating(labels, "labels")
    if not isinstance(alpha, jax.core.Tracer):
        value = np.asarray(alpha)
        if not np.issubdtype(value.dtype, np.number) or not np.all((value >= 0.0) & (value <= 1.0)):
            raise ValueError(f"alpha must be in [0, 1], got alpha={alpha!r}.")
    if where is None:
        num_classes = jnp.size(labels, axis)
    else:
        num_classes = jnp.sum(where, axis, keepdims=True)
    return (1.0 - alpha) * labels + alpha / num_classes


def triplet_margin_loss(
    anchors: ArrayLike,
    positives: ArrayLike,
    negatives: ArrayLike,
    axis: int = -1,
    norm_degree: ArrayLike = 2,
    margin: ArrayLike = 1.0,
    eps: ArrayLike = 1e-6,
) -> jax.Array:
    """Triplet loss ``max(0, d(a, p) - d(a, n) + margin)`` with ``d`` a p-norm distance.

    ``d(x, y) = (sum |x - y| ** norm_degree + eps) ** (1 / norm_degree)``. Optax omits the
    absolute value, which is the same for even degrees but wrong for odd ones (its "L1
    distance" can be negative); this function takes it.

    Args:
      anchors: anchor embeddings, shape ``[batch, dim]``, floating.
      positives: embeddings similar to the anchors, same shape.
      negatives: embeddings dissimilar to the anchors, same shape.
      axis: the embedding axis.
      norm_degree: the degree ``p`` of the norm (2 is Euclidean).
      margin: how much closer the positive should be than the negative.
      eps: added inside the root, which keeps the gradient finite at distance 0.

    Returns:
      The loss per triplet, the broadcast shape without ``axis``.

    Raises:
      TypeError: if an input is not floating.
      ValueError: if the shapes do not broadcast together.

    References:
      Balntas, Riba, Ponsa and Mikolajczyk, `Learning local feature descriptors with
      triplets and shallow convolutional neural networks
      <https://bmva-archive.org.uk/bmvc/2016/papers/paper119/>`_, 2016.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> a = jnp.array([[0.0, 0.0], [1.0, 1.0]])
      >>> p = jnp.array([[0.1, 0.1], [1.1, 1.1]])
      >>> n = jnp.array([[1.0, 0.0], [0.0, 1.0]])
      >>> [round(v, 4) for v in gx.losses.triplet_margin_loss(a, p, n).tolist()]
      [0.1414, 0.1414]
    """
    anchors = _floating(anchors, "anchors")
    positives = _floating(positives, "positives")
    negatives = _floating(negatives, "negatives")
    _compatible((anchors, "anchors"), (positives, "positives"), (negatives, "negatives"))

    def distance(x: jax.Array) -> jax.Array:
        return jnp.power(jnp.sum(jnp.power(jnp.abs(anchors - x), norm_degree), axis) + eps, 1 / norm_degree)

    return jnp.maximum(distance(positives) - distance(negatives) + margin, 0)


def ntxent(embeddings: ArrayLike, labels: ArrayLike, temperature: ArrayLike = 0.07) -> jax.Array:
    """NT-Xent, the normalised temperature-scaled cross entropy of SimCLR (a batch loss).

    For each ordered pair ``(i, j)`` of distinct embeddings with the same label, the loss is
    the cross entropy of picking ``j`` among ``j`` and all embeddings with another label,
    with cosine similarities over ``temperature`` as logits; the result is the mean over
    those pairs.

    Args:
      embeddings: shape ``[batch, dim]``, floating.
      labels: shape ``[batch]``; equal labels mark positive pairs.
      temperature: the temperature of the softmax.

    Returns:
      A scalar.

    Raises:
      TypeError: if ``embeddings`` is not floating.
      ValueError: if ``embeddings`` is not 2-D or ``labels``' shape is not ``[batch]``.

    References:
      Chen, Kornblith, Norouzi and Hinton, `A Simple Framework for Contrastive Learning of
      Visual Representations <https://arxiv.org/abs/2002.05709>`_, 2020.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> x = jnp.array([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0]])
      >>> round(gx.ntxent(x, jnp.array([0, 0, 1, 1]), temperature=1.0).tolist(), 4)
      0.5978
    """
    embeddings = _floating(embeddings, "embeddings")
    labels = jnp.asarray(labels)
    if embeddings.ndim != 2 or labels.shape != embeddings.shape[:1]:
        raise ValueError(
            f"embeddings must have shape [batch, dim] and labels shape [batch], got embeddings of "
            f"shape {embeddings.shape} and labels of shape {labels.shape}."
        )
    eps = jnp.finfo(embeddings.dtype).eps
    logits = cosine_similarity(embeddings[None, :, :], embeddings[:, None, :], epsilon=eps) / temperature
    same = labels[:, None] == labels[None, :]
    positive = same & ~jnp.eye(labels.shape[0], dtype=bool)
    negative = ~same
    # Shift each row by its largest logit among the pairs that count, for a stable exp.
    row_max = jnp.max(jnp.where(positive | negative, logits, -jnp.inf), axis=1, keepdims=True)
    shifted = logits - jax.lax.stop_gradient(row_max)
    negatives_sum = jnp.sum(jnp.where(negative, jnp.exp(shifted), 0.0), axis=1, keepdims=True)
    log_prob = shifted - jnp.log(negatives_sum + jnp.exp(shifted))
    return -jnp.sum(jnp.where(positive, log_prob, 0.0)) / jnp.sum(positive)
