"""Margin and sparsemax losses: hinge, perceptron, sparsemax and Fenchel-Young."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import jax.scipy.special
from jax.typing import ArrayLike

from gradxform.losses._checks import _floating, _fits, _check_label_shape, _same_shape


def hinge_loss(predictor_outputs: ArrayLike, targets: ArrayLike) -> jax.Array:
    """Binary hinge loss ``max(0, 1 - y * f(x))`` for targets in ``{-1, 1}``.

    Args:
      predictor_outputs: outputs of the decision function.
      targets: -1 or 1, broadcastable to ``predictor_outputs``' shape.

    Returns:
      The loss for each element, with ``predictor_outputs``' shape.

    Raises:
      ValueError: if ``targets`` would broadcast ``predictor_outputs`` to a larger shape.

    References:
      `Hinge loss <https://en.wikipedia.org/wiki/Hinge_loss>`_, Wikipedia.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.hinge_loss(jnp.array([0.5, 2.0, -1.0]), jnp.array([1.0, 1.0, 1.0])).tolist()
      [0.5, 0.0, 2.0]
    """
    _fits(predictor_outputs, "predictor_outputs", targets, "targets")
    return jnp.maximum(0, 1 - jnp.asarray(predictor_outputs) * jnp.asarray(targets))


def perceptron_loss(predictor_outputs: ArrayLike, targets: ArrayLike) -> jax.Array:
    """Binary perceptron loss ``max(0, -y * f(x))`` for targets in ``{-1, 1}``.

    Args:
      predictor_outputs: scores of the model.
      targets: -1 or 1, of the same shape as ``predictor_outputs``.

    Returns:
      The loss for each element.

    Raises:
      ValueError: if the two shapes differ (as Optax requires).

    References:
      `Perceptron <https://en.wikipedia.org/wiki/Perceptron>`_, Wikipedia.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.losses.perceptron_loss(jnp.array([0.5, -2.0]), jnp.array([1.0, 1.0])).tolist()
      [0.0, 2.0]
    """
    _same_shape(predictor_outputs, "predictor_outputs", targets, "targets")
    return jnp.maximum(0, -jnp.asarray(predictor_outputs) * jnp.asarray(targets))


def _label_score(scores: jax.Array, labels: ArrayLike) -> tuple[jax.Array, jax.Array]:
    """The one-hot encoding of ``labels`` and the score of each example's true class."""
    labels = jnp.asarray(labels)
    batch_shape = scores.shape[:-1]
    _check_label_shape(labels, scores.shape, batch_shape, "scores")
    one_hot = jax.nn.one_hot(jnp.broadcast_to(labels, batch_shape), scores.shape[-1], dtype=scores.dtype)
    return one_hot, jnp.sum(scores * one_hot, axis=-1)


def multiclass_hinge_loss(scores: ArrayLike, labels: ArrayLike) -> jax.Array:
    """Multiclass hinge loss ``max_k (s_k + [k != y]) - s_y`` (Crammer and Singer).

    Args:
      scores: scores of the model, shape ``[..., num_classes]``.
      labels: integer classes, shape ``[...]``.

    Returns:
      The loss per example, shape ``[...]``.

    Raises:
      ValueError: if ``labels``' shape is not ``scores``' shape without its last axis.

    References:
      Crammer and Singer, `On the Algorithmic Implementation of Multiclass Kernel-based
      Vector Machines <https://jmlr.org/papers/v2/crammer01a.html>`_, 2001.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.losses.multiclass_hinge_loss(jnp.array([[2.0, 1.5, 0.0]]), jnp.array([0])).tolist()
      [0.5]
    """
    scores = jnp.asarray(scores)
    one_hot, true_score = _label_score(scores, labels)
    return jnp.max(scores + 1.0 - one_hot, axis=-1) - true_score


def multiclass_perceptron_loss(scores: ArrayLike, labels: ArrayLike) -> jax.Array:
    """Multiclass perceptron loss ``max_k s_k - s_y``.

    Args:
      scores: scores of the model, shape ``[..., num_classes]``.
      labels: integer classes, shape ``[...]``.

    Returns:
      The loss per example, shape ``[...]``.

    Raises:
      ValueError: if ``labels``' shape is not ``scores``' shape without its last axis.

    References:
      Collins, `Discriminative Training Methods for Hidden Markov Models: Theory and
      Experiments with Perceptron Algorithms <https://aclanthology.org/W02-1001/>`_, 2002.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.losses.multiclass_perceptron_loss(jnp.array([[2.0, 1.5, 0.0]]), jnp.array([1])).tolist()
      [0.5]
    """
    scores = jnp.asarray(scores)
    _, true_score = _label_score(scores, labels)
    return jnp.max(scores, axis=-1) - true_score


def sparsemax_loss(logits: ArrayLike, labels: ArrayLike) -> jax.Array:
    """Binary sparsemax loss, zero exactly when ``jax.nn.sparse_sigmoid(logits) == labels``.

    Args:
      logits: scores of the model.
      labels: 0/1 labels, broadcastable to ``logits``' shape.

    Returns:
      The loss for each element, with ``logits``' shape.

    Raises:
      ValueError: if ``labels`` would broadcast ``logits`` to a larger shape.

    References:
      Blondel, Martins and Niculae, `Learning with Fenchel-Young Losses
      <https://arxiv.org/abs/1901.02324>`_, 2020, section 4.4.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.losses.sparsemax_loss(jnp.array([2.0, 0.0]), jnp.array([1, 1])).tolist()
      [0.0, 0.25]
    """
    _fits(logits, "logits", labels, "labels")
    logits = jnp.asarray(logits)
    return jax.nn.sparse_plus(jnp.where(jnp.asarray(labels), -logits, logits))


@jax.custom_jvp
def _project_onto_simplex(x: jax.Array) -> jax.Array:
    """Euclidean projection of each row (last axis) onto the probability simplex (sparsemax)."""
    n = x.shape[-1]
    desc = -jnp.sort(-x, axis=-1)
    cumulative = jnp.cumsum(desc, axis=-1)
    k = jnp.arange(1, n + 1, dtype=x.dtype)
    support_size = jnp.sum(1.0 / k + desc - cumulative / k > 0, axis=-1, keepdims=True)
    threshold = (jnp.take_along_axis(cumulative, support_size - 1, axis=-1) - 1.0) / support_size
    return jax.nn.relu(x - threshold)


@_project_onto_simplex.defjvp
def _project_onto_simplex_jvp(primals, tangents):
    # On the support the projection is the identity minus the mean over the support.
    (x,), (x_dot,) = primals, tangents
    p = _project_onto_simplex(x)
    support = (p > 0).astype(x.dtype)
    mean = jnp.sum(support * x_dot, axis=-1, keepdims=True) / jnp.sum(support, axis=-1, keepdims=True)
    return p, support * (x_dot - mean)


def multiclass_sparsemax_loss(scores: ArrayLike, labels: ArrayLike) -> jax.Array:
    """Multiclass sparsemax loss, the Fenchel-Young loss of sparsemax (0 iff sparsemax is one-hot on y).

    Args:
      scores: scores of the model, shape ``[batch, num_classes]``, floating.
      labels: integer classes, shape ``[batch]``.

    Returns:
      The loss per example, shape ``[batch]``; its gradient is ``sparsemax(scores) - one_hot(labels)``.

    Raises:
      TypeError: if ``scores`` is not floating.
      ValueError: if ``scores`` is not 2-D or ``labels``' shape is not ``[batch]``.

    References:
      Martins and Astudillo, `From Softmax to Sparsemax: A Sparse Model of Attention and
      Multi-Label Classification <https://arxiv.org/abs/1602.02068>`_, 2016.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.losses.multiclass_sparsemax_loss(jnp.array([[1.0, 0.0, -1.0]]), jnp.array([1])).tolist()
      [1.0]
    """
    scores = _floating(scores, "scores")
    if scores.ndim != 2:
        raise ValueError(f"scores must have shape [batch, num_classes], got scores of shape {scores.shape}.")
    one_hot, true_score = _label_score(scores, labels)
    proba = _project_onto_simplex(scores)
    # <p, s - s_y> over the support, plus the Gini entropy 0.5 (1 - |p|^2).
    gaps = jnp.where(one_hot > 0, 0.0, scores - true_score[:, None])
    return jnp.sum(proba * jnp.where(proba > 0, gaps, 0.0), axis=-1) + 0.5 * (1.0 - jnp.sum(proba**2, axis=-1))



def make_fenchel_young_loss(max_fun: Callable[..., ArrayLike]) -> Callable[..., jax.Array]:
    """Builds the Fenchel-Young loss ``max_fun(scores) - <targets, scores>`` of a max function.

    With ``jax.scipy.special.logsumexp`` it is the softmax cross entropy; with the sparsemax
    conjugate, the sparsemax loss.

    Args:
      max_fun: a convex "max" function of one score vector (1-D) to a scalar; it is applied
        to each vector along the last axis, with any extra arguments of the loss.

    Returns:
      ``loss(scores, targets, *args, **kwargs)``, of ``scores``' shape without its last axis.

    References:
      Blondel, Martins and Niculae, `Learning with Fenchel-Young Losses
      <https://arxiv.org/abs/1901.02324>`_, 2020.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> from jax.scipy.special import logsumexp
      >>> loss = gx.losses.make_fenchel_young_loss(logsumexp)
      >>> [round(v, 4) for v in loss(jnp.array([[1.2, -0.8, -0.5]]), jnp.array([[1.0, 0.0, 0.0]])).tolist()]
      [0.2761]
    """
    per_vector = jnp.vectorize(max_fun, signature="(n)->()")
    inner = jnp.vectorize(jnp.vdot, signature="(n),(n)->()")

    def fenchel_young_loss(scores: ArrayLike, targets: ArrayLike, *args, **kwargs) -> jax.Array:
        return per_vector(scores, *args, **kwargs) - inner(targets, scores)

    return fenchel_young_loss
