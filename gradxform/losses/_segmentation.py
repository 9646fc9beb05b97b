"""Dice losses for segmentation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from gradxform.losses._checks import _floating, _shape, _same_shape


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
