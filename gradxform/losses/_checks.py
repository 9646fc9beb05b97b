"""Argument checks shared by the losses: dtypes, shapes that would broadcast wrongly, axes."""

from __future__ import annotations

from typing import Union

import jax
import jax.numpy as jnp
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
_NOT_MASK = "where must be a boolean mask, got where.dtype={dtype}; build it with a comparison or .astype(bool)."
_WHERE_SHAPE = (
    "where of shape {where_shape} does not fit logits of shape {logits_shape}: a mask is either of "
    "logits' shape (one flag per class) or of the shape of the loss, logits' shape without the "
    "class axes (one flag per example, here {batch_shape})."
)
_LABEL_SHAPE = (
    "labels of shape {labels_shape} do not match {logits} of shape {logits_shape}: integer labels "
    "hold one class index per example, so their shape must be {logits}' shape without the class "
    "axis (here {expected})."
)


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
    """Raises unless the arrays broadcast together; ``None`` entries (an absent mask) are skipped."""
    named = tuple((x, n) for x, n in named if x is not None)
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


def _class_axes(axis: Axis, ndim: int) -> tuple[int, ...]:
    """``axis`` (an int, a tuple of ints, or ``None`` for every axis) as non-negative axes of
    logits with ``ndim`` dimensions, in the order given."""
    axes = tuple(range(ndim)) if axis is None else (axis,) if isinstance(axis, int) else tuple(axis)
    return tuple(_normalize_axis(a, ndim) for a in axes)


def _mask(where: ArrayLike | None) -> jax.Array | None:
    """``where`` as an array, refused unless it is a boolean mask."""
    if where is None:
        return None
    where = jnp.asarray(where)
    if where.dtype != jnp.bool_:
        raise TypeError(_NOT_MASK.format(dtype=where.dtype))
    return where


def _expand_where(where: ArrayLike | None, logits: jax.Array, axis: Axis) -> jax.Array | None:
    """Checks ``where`` against ``logits`` and gives it ``logits``' rank.

    A mask of another rank than ``logits`` (as in Optax) is one per example, without the
    class axes, and applies to all of that example's classes.
    """
    where = _mask(where)
    if where is None:
        return None
    classes = tuple(sorted(set(_class_axes(axis, logits.ndim))))
    batch_shape = tuple(n for i, n in enumerate(logits.shape) if i not in classes)
    target = batch_shape if where.ndim != logits.ndim else logits.shape
    try:
        fits = np.broadcast_shapes(target, where.shape) == target
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(_WHERE_SHAPE.format(where_shape=where.shape, logits_shape=logits.shape, batch_shape=batch_shape))
    return jnp.expand_dims(where, classes) if where.ndim != logits.ndim else where


def _same_shape(a: ArrayLike, a_name: str, b: ArrayLike, b_name: str) -> None:
    if _shape(a) != _shape(b):
        raise ValueError(f"{a_name} and {b_name} must have the same shape, got {_shape(a)} and {_shape(b)}.")
