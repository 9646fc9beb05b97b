"""Loss functions under Optax's names, arguments and numbers (``optax.losses``).

Most functions return per-example losses (reduce them with ``.mean()`` yourself); ``ntxent``,
``multiclass_generalized_dice_loss`` and ``ranking_softmax_loss`` (with its default
``reduce_fn``) return one number for the batch. Unlike Optax, inputs whose shapes would
broadcast into a silently wrong answer (labels of shape ``(B, 1)`` against logits of shape
``(B,)`` give a ``(B, B)`` loss) are refused at call time with a ``ValueError`` that names
both shapes.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Union

import jax
import jax.numpy as jnp
import jax.scipy.special
import numpy as np
from jax.typing import ArrayLike

Axis = Union[int, tuple[int, ...], None]

_NOT_FLOATING = "{name} must have a floating dtype, got {name}.dtype={dtype}; cast it with .astype(jnp.float32)."
_NOT_INTEGER = "{name} must have an integer dtype (class indices), got {name}.dtype={dtype}."
_ENLARGES = (
    "{b} of shape {b_shape} does not fit {a} of shape {a_shape}: broadcasting them gives shape {out}, "
    "so the loss would be computed for every pairing of the two and come back with the wrong shape. "
    "Reshape {b} to {a_shape} (for example with .reshape({a}.shape) or .squeeze())."
)
_INCOMPATIBLE = "{a} of shape {a_shape} and {b} of shape {b_shape} do not broadcast together."
_LABEL_SHAPE = (
    "labels of shape {labels_shape} do not match {logits} of shape {logits_shape}: integer labels "
    "hold one class index per example, so their shape must be {logits}' shape without the class "
    "axis (here {expected})."
)


# --------------------------------------------------------------------------- validation


def _floating(x: ArrayLike, name: str) -> jax.Array:
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(_NOT_FLOATING.format(name=name, dtype=x.dtype))
    return x


def _shape(x: ArrayLike) -> tuple[int, ...]:
    return tuple(np.shape(x))


def _fits(a: ArrayLike, a_name: str, b: ArrayLike, b_name: str) -> None:
    """Raises unless ``b`` broadcasts to ``a``'s shape without enlarging it."""
    a_shape, b_shape = _shape(a), _shape(b)
    try:
        out = np.broadcast_shapes(a_shape, b_shape)
    except ValueError:
        raise ValueError(_INCOMPATIBLE.format(a=a_name, a_shape=a_shape, b=b_name, b_shape=b_shape)) from None
    if out != a_shape:
        raise ValueError(_ENLARGES.format(a=a_name, a_shape=a_shape, b=b_name, b_shape=b_shape, out=out))


def _compatible(*named: tuple[ArrayLike, str]) -> None:
    """Raises unless the arrays broadcast together."""
    shapes = [_shape(x) for x, _ in named]
    try:
        np.broadcast_shapes(*shapes)
    except ValueError:
        listed = ", ".join(f"{n} of shape {s}" for (_, n), s in zip(named, shapes))
        raise ValueError(f"{listed} do not broadcast together.") from None


def _check_label_shape(
    labels: jax.Array, logits_shape: tuple[int, ...], batch_shape: tuple[int, ...], logits: str = "logits"
) -> None:
    """Raises unless integer ``labels`` broadcast to ``batch_shape`` without enlarging it."""
    try:
        fits = np.broadcast_shapes(batch_shape, labels.shape) == batch_shape
    except ValueError:
        fits = False
    if not fits:
        message = _LABEL_SHAPE.format(
            labels_shape=labels.shape, logits=logits, logits_shape=logits_shape, expected=batch_shape
        )
        raise ValueError(message)


def _normalize_axis(axis: int, ndim: int) -> int:
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis={axis} is out of range for logits with {ndim} dimensions.")
    return axis % ndim


def _expand_where(where: ArrayLike | None, logits: jax.Array, axis: Axis) -> jax.Array | None:
    # A mask given per example (without the class axis) applies to all of that example's classes.
    if where is None:
        return None
    where = jnp.asarray(where)
    return jnp.expand_dims(where, axis) if where.ndim != logits.ndim else where


# --------------------------------------------------------------------------- classification


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
      TypeError: if ``logits`` is not floating.
      ValueError: if ``labels`` would broadcast ``logits`` to a larger shape.

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
      TypeError: if ``logits`` is not floating or ``labels`` is not integer.
      ValueError: if ``axis`` is neither an int nor a tuple, is out of range, or
        ``labels``' shape is not ``logits``' shape without ``axis``.

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
    class_axes = (axis,) if isinstance(axis, int) else axis
    class_axes = tuple(_normalize_axis(a, logits.ndim) for a in class_axes)
    batch_axes = tuple(a for a in range(logits.ndim) if a not in class_axes)
    batch_shape = tuple(logits.shape[a] for a in batch_axes)
    _check_label_shape(labels, logits.shape, batch_shape)
    where = _expand_where(where, logits, axis)
    # Classes go last, flattened into one axis, so that a label is an index along it.
    order = batch_axes + class_axes
    if where is not None:
        where = jnp.broadcast_to(where, logits.shape).transpose(order).reshape(batch_shape + (-1,))
    logits = logits.transpose(order).reshape(batch_shape + (-1,))
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
      where: optional mask of the elements to include, of ``logits``' shape.

    Returns:
      The loss per example, ``logits``' shape without ``axis``.

    Raises:
      TypeError: if ``logits`` or ``labels`` is not floating.
      ValueError: if ``labels`` would broadcast ``logits`` to a larger shape.

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
    probs = jax.nn.softmax(logits, axis=axis, where=where)
    one_minus_pt = jnp.sum(labels * (1.0 - probs), axis=axis, where=where)
    return softmax_cross_entropy(logits, labels, axis=axis, where=where) + epsilon * one_minus_pt


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


def ctc_loss_with_forward_probs(
    logits: ArrayLike,
    logit_paddings: ArrayLike,
    labels: ArrayLike,
    label_paddings: ArrayLike,
    *,
    blank_id: int = 0,
    log_epsilon: ArrayLike = -1e5,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """CTC loss and the forward (alpha) log-probabilities of its alignment lattice.

    The lattice has, for each label position ``n``, a blank state (``n = 0..N``: blank
    after ``n`` labels) and a label state (``n = 1..N``: emitting label ``n``); impossible
    transitions get ``log_epsilon`` instead of ``-inf`` so that everything stays finite.

    Args:
      logits: shape ``[B, T, K]``, floating; ``K`` counts the blank class too.
      logit_paddings: shape ``[B, T]``, 1.0 where a frame is padding, else 0.0.
      labels: integer labels, shape ``[B, N]``, right-padded.
      label_paddings: shape ``[B, N]``, 1.0 where a label is padding, else 0.0; each row is
        zeros followed by ones.
      blank_id: the class of the blank symbol.
      log_epsilon: the stand-in for ``log(0)``.

    Returns:
      ``(loss, log_alpha_blank, log_alpha_label)``: the loss per sequence, shape ``[B]``,
      and the forward log-probabilities of the blank and label states, each of shape
      ``[T, B, N + 1]`` and ``[T, B, N]``.

    Raises:
      TypeError: if ``logits`` is not floating.
      ValueError: if the ranks or shapes of the four arrays do not agree.

    References:
      Graves, Fernández, Gomez and Schmidhuber, `Connectionist Temporal Classification:
      Labelling Unsegmented Sequence Data with Recurrent Neural Networks
      <https://www.cs.toronto.edu/~graves/icml_2006.pdf>`_, 2006.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> loss, blank, label = gx.ctc_loss_with_forward_probs(
      ...     jnp.zeros((1, 3, 2)), jnp.zeros((1, 3)), jnp.array([[1]]), jnp.zeros((1, 1)))
      >>> blank.shape, label.shape
      ((3, 1, 2), (3, 1, 1))
    """
    logits = _floating(logits, "logits")
    labels = jnp.asarray(labels)
    logit_paddings, label_paddings = jnp.asarray(logit_paddings), jnp.asarray(label_paddings)
    if logits.ndim != 3 or labels.ndim != 2 or labels.shape[0] != logits.shape[0]:
        raise ValueError(
            f"logits must have shape [B, T, K] and labels shape [B, N], got logits of shape {logits.shape} "
            f"and labels of shape {labels.shape}."
        )
    if logit_paddings.shape != logits.shape[:2]:
        raise ValueError(
            f"logit_paddings must have shape [B, T] = {logits.shape[:2]}, got {logit_paddings.shape}."
        )
    if label_paddings.shape != labels.shape:
        raise ValueError(f"label_paddings must have labels' shape {labels.shape}, got {label_paddings.shape}.")
    batch, _, _ = logits.shape
    max_labels = labels.shape[1]
    log_probs = jax.nn.log_softmax(logits)
    label_lengths = max_labels - jnp.sum(label_paddings, axis=1).astype(jnp.int32)
    # repeat[b, n] is 1 when label n + 1 equals label n: between them a blank is required.
    repeat = jnp.pad((labels[:, :-1] == labels[:, 1:]).astype(jnp.float32), ((0, 0), (0, 1)))
    blank_scores = jnp.moveaxis(log_probs[:, :, blank_id : blank_id + 1], 1, 0)  # [T, B, 1]
    label_index = jnp.broadcast_to(labels[:, None, :], (batch, logits.shape[1], max_labels))
    label_scores = jnp.take_along_axis(log_probs, label_index, axis=2)
    label_scores = jnp.moveaxis(label_scores, 1, 0)  # [T, B, N]

    def join_tail(blank: jax.Array, score: jax.Array) -> jax.Array:
        # Adds, in log space, ``score`` (one per label) to the blank states after each label.
        return jnp.concatenate([blank[:, :1], jnp.logaddexp(blank[:, 1:], score)], axis=-1)

    def step(carry, frame):
        blank, label = carry
        label_score, blank_score, pad = frame
        # A label state may hand over to the blank after it without consuming a frame,
        # except before a repeated label.
        reachable = join_tail(blank, label + log_epsilon * repeat)
        new_label = jnp.logaddexp(reachable[:, :-1] + label_score, label + label_score)
        new_blank = join_tail(reachable + blank_score, label + blank_score + log_epsilon * (1.0 - repeat))
        padded = pad[:, None] > 0
        new_blank = jnp.where(padded, blank, new_blank)
        new_label = jnp.where(padded, label, new_label)
        return (new_blank, new_label), (new_blank, new_label)

    init_blank = jnp.full((batch, max_labels + 1), log_epsilon, jnp.float32).at[:, 0].set(0.0)
    init_label = jnp.full((batch, max_labels), log_epsilon, jnp.float32)
    frames = (label_scores, blank_scores, jnp.moveaxis(logit_paddings, 1, 0))
    _, (log_alpha_blank, log_alpha_label) = jax.lax.scan(step, (init_blank, init_label), frames)
    # After the last frame the final label state may still hand over to its blank.
    final = join_tail(log_alpha_blank[-1], log_alpha_label[-1])
    log_alpha_blank = log_alpha_blank.at[-1].set(final)
    loss = -jnp.take_along_axis(final, label_lengths[:, None], axis=1)[:, 0]
    return loss, log_alpha_blank, log_alpha_label


def ctc_loss(
    logits: ArrayLike,
    logit_paddings: ArrayLike,
    labels: ArrayLike,
    label_paddings: ArrayLike,
    *,
    blank_id: int = 0,
    log_epsilon: ArrayLike = -1e5,
) -> jax.Array:
    """Connectionist temporal classification loss: ``-log p(labels | logits)`` over alignments.

    Args:
      logits: shape ``[B, T, K]``, floating; ``K`` counts the blank class too.
      logit_paddings: shape ``[B, T]``, 1.0 where a frame is padding, else 0.0.
      labels: integer labels, shape ``[B, N]``, right-padded.
      label_paddings: shape ``[B, N]``, 1.0 where a label is padding, else 0.0.
      blank_id: the class of the blank symbol.
      log_epsilon: the stand-in for ``log(0)``.

    Returns:
      The loss per sequence, shape ``[B]``.

    Raises:
      TypeError: if ``logits`` is not floating.
      ValueError: if the ranks or shapes of the four arrays do not agree.

    References:
      Graves, Fernández, Gomez and Schmidhuber, `Connectionist Temporal Classification:
      Labelling Unsegmented Sequence Data with Recurrent Neural Networks
      <https://www.cs.toronto.edu/~graves/icml_2006.pdf>`_, 2006.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> # Two equally likely classes, three frames, label "1": 6 of the 8 paths align (not 000, 101).
      >>> loss = gx.ctc_loss(jnp.zeros((1, 3, 2)), jnp.zeros((1, 3)), jnp.array([[1]]), jnp.zeros((1, 1)))
      >>> [round(v, 4) for v in loss.tolist()]
      [0.2877]
    """
    loss, _, _ = ctc_loss_with_forward_probs(
        logits, logit_paddings, labels, label_paddings, blank_id=blank_id, log_epsilon=log_epsilon
    )
    return loss


def ranking_softmax_loss(
    logits: ArrayLike,
    labels: ArrayLike,
    *,
    where: ArrayLike | None = None,
    weights: ArrayLike | None = None,
    reduce_fn: Callable[..., ArrayLike] | None = jnp.mean,
) -> jax.Array:
    """Listwise softmax loss for ranking: ``-sum_i y_i log softmax(s)_i`` over each list.

    As in Optax, the relevance labels are used as given, not normalised to sum to 1.

    Args:
      logits: item scores, shape ``[..., list_size]``, floating.
      labels: item relevances, broadcastable to ``logits``' shape.
      where: optional mask of the valid items; a list with no valid item has no loss.
      weights: optional per-item weights, multiplied into the labels.
      reduce_fn: reduces the per-list losses (``jnp.mean`` or ``jnp.sum``, called with
        ``where=``); ``None`` returns them (0 for lists with no valid item). A mean over no
        valid list is 0, not NaN.

    Returns:
      The reduced loss, or the loss per list, shape ``[...]``, when ``reduce_fn`` is None.

    Raises:
      TypeError: if ``logits`` is not floating.
      ValueError: if ``labels`` would broadcast ``logits`` to a larger shape.

    References:
      Cao, Qin, Liu, Tsai and Li, `Learning to Rank: From Pairwise Approach to Listwise
      Approach <https://doi.org/10.1145/1273496.1273513>`_, 2007.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> scores, relevance = jnp.array([[0.0, 0.0]]), jnp.array([[1.0, 0.0]])
      >>> round(gx.losses.ranking_softmax_loss(scores, relevance).tolist(), 4)
      0.6931
    """
    logits = _floating(logits, "logits")
    _fits(logits, "logits", labels, "labels")
    labels = jnp.asarray(labels).astype(logits.dtype)
    if where is not None:
        labels = jnp.where(where, labels, 0.0)
        logits = jnp.where(where, logits, -jnp.inf)
    if weights is not None:
        labels = labels * weights
    loss = -jnp.sum(labels * jax.nn.log_softmax(logits, axis=-1), axis=-1, where=where)
    valid = None if where is None else jnp.any(where, axis=-1)
    if reduce_fn is None:
        return loss if valid is None else jnp.where(valid, loss, 0.0)
    out = reduce_fn(loss, where=valid)
    if reduce_fn is jnp.mean:
        # No valid list at all gives 0/0; that is an empty batch, not a broken input.
        out = jnp.where(jnp.isnan(out) & ~jnp.any(jnp.isnan(loss)), 0.0, out)
    return out


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


# --------------------------------------------------------------------------- divergences


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
      TypeError: if an input is not floating.
      ValueError: if the shapes do not broadcast together.

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
    _compatible((log_predictions, "log_predictions"), (targets, "targets"))
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
      TypeError: if an input is not floating.
      ValueError: if the shapes do not broadcast together.

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
    _compatible((log_predictions, "log_predictions"), (log_targets, "log_targets"))
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
      TypeError: if an input is not floating.
      ValueError: if the shapes do not broadcast together.

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


# --------------------------------------------------------------------------- regression


def _same_shape(a: ArrayLike, a_name: str, b: ArrayLike, b_name: str) -> None:
    if _shape(a) != _shape(b):
        raise ValueError(f"{a_name} and {b_name} must have the same shape, got {_shape(a)} and {_shape(b)}.")


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
      TypeError: if an input is not floating.
      ValueError: if the shapes do not broadcast together.

    References:
      `Cosine similarity <https://en.wikipedia.org/wiki/Cosine_similarity>`_, Wikipedia.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> [round(v, 4) for v in gx.cosine_similarity(jnp.array([[1.0, 0.0]]), jnp.array([[1.0, 1.0]])).tolist()]
      [0.7071]
    """
    predictions = _floating(predictions, "predictions")
    targets = _floating(targets, "targets")
    _compatible((predictions, "predictions"), (targets, "targets"))

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
      TypeError: if an input is not floating.
      ValueError: if the shapes do not broadcast together.

    References:
      `Cosine distance <https://en.wikipedia.org/wiki/Cosine_similarity#Cosine_distance>`_,
      Wikipedia.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.cosine_distance(jnp.array([[1.0, 0.0]]), jnp.array([[-1.0, 0.0]])).tolist()
      [2.0]
    """
    return 1.0 - cosine_similarity(predictions, targets, epsilon=epsilon, axis=axis, where=where)


# --------------------------------------------------------------------------- segmentation

_REDUCTIONS = ("mean", "sum", "none")


def dice_loss(
    predictions: ArrayLike,
    targets: ArrayLike,
    *,
    class_weights: ArrayLike | None = None,
    smooth: ArrayLike = 1.0,
    alpha: ArrayLike = 0.5,
    beta: ArrayLike = 0.5,
    apply_softmax: bool = True,
    reduction: str = "mean",
    ignore_background: bool = False,
    axis: ArrayLike | None = None,
) -> jax.Array:
    """Dice (Tversky) loss per class: ``1 - (TP + smooth) / (TP + alpha FP + beta FN + smooth)``.

    ``TP``, ``FP`` and ``FN`` are soft counts (sums of probabilities) of true positives, false
    positives and false negatives. ``alpha = beta = 0.5`` is the Dice loss, ``alpha = beta =
    1`` the Jaccard (IoU) loss.

    Args:
      predictions: logits (or probabilities, with ``apply_softmax=False``), shape
        ``[batch, ..., num_classes]``, or ``[batch, ...]`` for one binary class.
      targets: one-hot or binary targets of the same shape (a missing class axis of size 1 is
        added to either).
      class_weights: optional weights of shape ``[num_classes]``.
      smooth: added to numerator and denominator, so empty classes give a finite loss.
      alpha: weight of false positives.
      beta: weight of false negatives.
      apply_softmax: turn logits into probabilities (a sigmoid for one class, else a softmax).
      reduction: over the classes: ``"mean"``, ``"sum"`` or ``"none"`` (per-class losses).
      ignore_background: leave class 0 out (when there are several classes).
      axis: the axes summed over; by default all but the first (batch) and the last (class).

    Returns:
      The loss per example, shape ``[batch]`` (``[batch, num_classes]`` for ``"none"``).

    Raises:
      TypeError: if ``predictions`` is not floating.
      ValueError: if ``reduction`` is unknown, the shapes differ, ``class_weights`` is not
        1-D, or, with ``apply_softmax=False`` and several classes, concrete (not traced)
        predictions do not sum to 1 over the classes. Under ``jit`` that last check is
        skipped (Optax fails there with a tracer error).

    References:
      Milletari, Navab and Ahmadi, `V-Net: Fully Convolutional Neural Networks for Volumetric
      Medical Image Segmentation <https://arxiv.org/abs/1606.04797>`_, 2016; Salehi, Erdogmus
      and Gholipour, `Tversky loss function for image segmentation
      <https://arxiv.org/abs/1706.05721>`_, 2017.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> target = jnp.array([[[1.0, 0.0], [0.0, 1.0]]])            # batch 1, 2 pixels, 2 classes
      >>> gx.losses.dice_loss(target * 20.0, target, smooth=0.0).round(3).tolist()
      [0.0]
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got reduction={reduction!r}.")
    predictions = _floating(predictions, "predictions")
    targets = jnp.asarray(targets)
    if predictions.ndim == targets.ndim - 1:
        predictions = predictions[..., None]
    elif targets.ndim == predictions.ndim - 1:
        targets = targets[..., None]
    _same_shape(predictions, "predictions", targets, "targets")
    num_classes = predictions.shape[-1]
    if apply_softmax:
        probs = jax.nn.sigmoid(predictions) if num_classes == 1 else jax.nn.softmax(predictions, axis=-1)
    else:
        probs = predictions
        if num_classes > 1 and not isinstance(predictions, jax.core.Tracer):
            sums = jnp.sum(predictions, axis=-1)
            if not jnp.allclose(sums, 1.0, rtol=1e-5):
                raise ValueError(
                    "with apply_softmax=False, predictions must be probabilities that sum to 1 over the "
                    f"class axis; their sums range over [{float(sums.min()):.6f}, {float(sums.max()):.6f}]."
                )
    if axis is None:
        axis = tuple(range(1, probs.ndim - 1))
    intersection = jnp.sum(probs * targets, axis=axis)
    false_positives = jnp.sum(probs, axis=axis) - intersection
    false_negatives = jnp.sum(targets, axis=axis) - intersection
    denominator = intersection + alpha * false_positives + beta * false_negatives + smooth
    loss = 1.0 - (intersection + smooth) / denominator
    if class_weights is not None:
        if jnp.ndim(class_weights) != 1:
            raise ValueError(f"class_weights must be 1-D [num_classes], got shape {_shape(class_weights)}.")
        loss = loss * class_weights
    if ignore_background and num_classes > 1:
        loss = loss[..., 1:]
    if reduction == "mean":
        return jnp.mean(loss, axis=-1)
    return jnp.sum(loss, axis=-1) if reduction == "sum" else loss


def multiclass_generalized_dice_loss(
    predictions: ArrayLike,
    targets: ArrayLike,
    *,
    smooth: ArrayLike = 1.0,
    apply_softmax: bool = True,
    ignore_background: bool = False,
) -> jax.Array:
    """Generalised Dice loss: `dice_loss` with each class weighted by 1 / (its frequency)².

    Weights are normalised to average 1; rare classes then count as much as frequent ones.

    Args:
      predictions: logits, shape ``[batch, ..., num_classes]``.
      targets: one-hot targets of the same shape.
      smooth: added to numerator and denominator.
      apply_softmax: turn logits into probabilities.
      ignore_background: leave class 0 out.

    Returns:
      A scalar: the mean over examples and classes.

    Raises:
      TypeError: if ``predictions`` is not floating.
      ValueError: if the shapes differ.

    References:
      Sudre et al., `Generalised Dice overlap as a deep learning loss function for highly
      unbalanced segmentations <https://arxiv.org/abs/1707.03237>`_, 2017.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> target = jnp.array([[[1.0, 0.0], [0.0, 1.0]]])
      >>> round(gx.losses.multiclass_generalized_dice_loss(target * 20.0, target, smooth=0.0).tolist(), 3)
      0.0
    """
    _same_shape(predictions, "predictions", targets, "targets")
    targets = jnp.asarray(targets)
    frequencies = jnp.sum(targets, axis=tuple(range(targets.ndim - 1)))
    weights = 1.0 / (frequencies**2 + 1e-7)
    weights = weights / jnp.sum(weights) * weights.shape[0]
    per_class = dice_loss(
        predictions,
        targets,
        class_weights=weights,
        smooth=smooth,
        apply_softmax=apply_softmax,
        reduction="none",
        ignore_background=ignore_background,
    )
    return jnp.mean(per_class)


def binary_dice_loss(
    predictions: ArrayLike,
    targets: ArrayLike,
    *,
    smooth: ArrayLike = 1.0,
    apply_sigmoid: bool = True,
) -> jax.Array:
    """`dice_loss` of one binary class.

    With ``apply_sigmoid=False`` the predictions are probabilities of the positive class;
    Optax 0.2.8 refuses those unless they are all 1 (it checks that they sum to 1 over a
    class axis of size 1), this function takes them.

    Args:
      predictions: logits (or probabilities), shape ``[batch, ...]`` or ``[batch, ..., 1]``.
      targets: 0/1 targets of the same shape.
      smooth: added to numerator and denominator.
      apply_sigmoid: turn logits into probabilities.

    Returns:
      The loss per example, shape ``[batch]``.

    Raises:
      TypeError: if ``predictions`` is not floating.
      ValueError: if the shapes differ.

    References:
      Milletari, Navab and Ahmadi, `V-Net: Fully Convolutional Neural Networks for Volumetric
      Medical Image Segmentation <https://arxiv.org/abs/1606.04797>`_, 2016.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> probs, target = jnp.array([[0.9, 0.1]]), jnp.array([[1.0, 0.0]])
      >>> [round(v, 4) for v in gx.losses.binary_dice_loss(probs, target, apply_sigmoid=False).tolist()]
      [0.05]
    """
    predictions, targets = jnp.asarray(predictions), jnp.asarray(targets)
    if predictions.ndim == targets.ndim and predictions.shape[-1] != 1:
        predictions, targets = predictions[..., None], targets[..., None]
    return dice_loss(predictions, targets, smooth=smooth, apply_softmax=apply_sigmoid, reduction="mean")


# --------------------------------------------------------------------------- smoothing, metric learning


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
