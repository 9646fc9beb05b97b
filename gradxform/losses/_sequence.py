"""Losses over sequences and rankings: CTC and the ranking softmax."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from gradxform.losses._checks import _NOT_INTEGER, _fits, _floating, _mask


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
      TypeError: if ``logits`` is not floating or ``labels`` is not integer.
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
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(_NOT_INTEGER.format(name="labels", dtype=labels.dtype))
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
      TypeError: if ``logits`` is not floating or ``labels`` is not integer.
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
      TypeError: if ``logits`` is not floating or ``where`` is not boolean.
      ValueError: if ``labels`` or ``where`` would broadcast ``logits`` to a larger shape.

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
    where = _mask(where)
    if where is not None:
        _fits(logits, "logits", where, "where")
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
