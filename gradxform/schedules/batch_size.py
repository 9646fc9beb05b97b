"""Batch-size schedules: grow the batch instead of decaying the learning rate.

Smith, Kindermans, Ying & Le (ICLR 2018) model SGD's gradient noise by the scale
``g = lr * N / (B * (1 - m))`` (learning rate ``lr``, data-set size ``N``, batch ``B``,
momentum ``m``). Multiplying ``B`` by ``k`` has the effect of dividing ``lr`` by ``k``, with
``k`` times fewer parameter updates. This module has

- `accumulate_micro_batches`: gradient accumulation whose number of micro-batches per
  update follows a schedule (one buffer of the parameters' size);
- `lr_to_batch_size_schedule`: the batch-size schedule equivalent to a learning-rate decay
  at constant noise scale, with the paper's hybrid (grow to a maximum batch, then decay
  the rate) and momentum forms;
- `noise_scale` and `training_profile`: the noise scale over training and the number of
  parameter updates of a learning-rate and batch-size schedule pair.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradxform._factory import transformation
from gradxform.core import (
    POSITIVE,
    UNIT,
    GradientTransformation,
    Updates,
    call_update,
    cast_like,
    check_hyperparam,
    check_positive_int,
    check_same_tree,
    check_transformation,
    new_count,
    safe_increment,
    tree_zeros_like,
)
from gradxform.schedules.piecewise import StepwiseSchedule, stepwise_schedule
from gradxform.schedules.plotting import evaluate

REFERENCE = (
    'Smith, Kindermans, Ying & Le, "Don\'t Decay the Learning Rate, Increase the Batch Size", '
    "ICLR 2018. https://arxiv.org/abs/1711.00489"
)

# --------------------------------------------------------------------------- accumulation


class MicroBatchState(NamedTuple):
    """State of `accumulate_micro_batches`.

    Attributes:
      count: int32 scalar, parameter updates made so far (the schedules' step).
      micro_step: int32 scalar, micro-batches accumulated towards the next update.
      num_micro_batches: int32 scalar, how many the current update averages (for logging:
        the effective batch is this times the micro-batch size).
      accumulator: the sum of those micro-batches' gradients, one array per parameter.
      inner_state: the wrapped optimizer's state.
    """

    count: jax.Array
    micro_step: jax.Array
    num_micro_batches: jax.Array
    accumulator: Updates
    inner_state: Any


def _micro_batches(schedule: int | Callable[[Any], Any], count: jax.Array) -> jax.Array:
    k = schedule(count) if callable(schedule) else schedule
    return jnp.maximum(jnp.round(jnp.asarray(k, jnp.float32)), 1).astype(jnp.int32)


@transformation()
def accumulate_micro_batches(
    inner: GradientTransformation,
    num_micro_batches: int | Callable[[Any], Any],
    accumulator_dtype: Any = None,
) -> GradientTransformation:
    """Averages gradients over a scheduled number of micro-batches per parameter update.

    Each call to ``update`` gives one micro-batch's gradient. The gradients are summed in
    one buffer of the parameters' size; once ``num_micro_batches(count)`` of them are in,
    their mean goes through ``inner`` and the parameters change, otherwise the updates are
    zero. ``count`` is the number of parameter updates, not of micro-batches, and so is
    the step of ``inner``'s own schedules: a learning-rate schedule inside ``inner``
    advances once per parameter update. The micro-batch size stays fixed (it fits on the
    device) while the effective batch, ``num_micro_batches * micro_batch_size``, grows.

    Args:
      inner: the optimizer applied to the averaged gradient.
      num_micro_batches: an integer >= 1, or a schedule of the update count whose values
        are rounded to integers >= 1 (for example ``plan.num_micro_batches`` of
        `lr_to_batch_size_schedule`).
      accumulator_dtype: dtype of the buffer (default: the parameters').

    Returns:
      A transformation with a `MicroBatchState`; extra keyword arguments (``value=``)
      reach ``inner`` at the micro-batch that completes an update.

    Raises:
      TypeError: if ``inner`` is not a transformation.
      ValueError: if ``num_micro_batches`` is neither an integer >= 1 nor a schedule.

    References:
      Smith, Kindermans, Ying & Le, "Don't Decay the Learning Rate, Increase the Batch
      Size", ICLR 2018. https://arxiv.org/abs/1711.00489

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.accumulate_micro_batches(gx.sgd(1.0), num_micro_batches=2)
      >>> state = tx.init(jnp.zeros(1))
      >>> u1, state = tx.update(jnp.array([1.0]), state)
      >>> u2, state = tx.update(jnp.array([3.0]), state)
      >>> u1.tolist(), u2.tolist(), int(state.count)
      ([0.0], [-2.0], 1)
    """
    check_transformation("accumulate_micro_batches", "inner", inner)
    if not callable(num_micro_batches):
        check_positive_int("accumulate_micro_batches", "num_micro_batches", num_micro_batches, 1)

    def init(params):
        count = new_count()
        return MicroBatchState(
            count, new_count(), _micro_batches(num_micro_batches, count),
            tree_zeros_like(params, accumulator_dtype), inner.init(params),
        )

    def update(updates, state, params=None, **extra):
        check_same_tree(updates, state.accumulator, "updates", "accumulator")
        k = _micro_batches(num_micro_batches, state.count)
        total = jax.tree.map(lambda a, g: a + g.astype(a.dtype), state.accumulator, updates)
        micro = state.micro_step + 1
        ready = micro >= k

        def apply(_):
            mean = jax.tree.map(lambda a, g: (a / micro.astype(jnp.real(a).dtype)).astype(g.dtype), total, updates)
            new_updates, inner_state = call_update(inner, mean, state.inner_state, params, extra)
            return cast_like(new_updates, updates), inner_state

        def wait(_):
            return jax.tree.map(jnp.zeros_like, updates), state.inner_state

        new_updates, inner_state = jax.lax.cond(ready, apply, wait, None)
        count = jnp.where(ready, safe_increment(state.count), state.count)
        return new_updates, MicroBatchState(
            count=count,
            micro_step=jnp.where(ready, 0, micro).astype(jnp.int32),
            num_micro_batches=_micro_batches(num_micro_batches, count),
            accumulator=jax.tree.map(lambda a: jnp.where(ready, jnp.zeros_like(a), a), total),
            inner_state=inner_state,
        )

    return GradientTransformation(init, update)


# --------------------------------------------------------------------------- conversion


class BatchSizePlan(NamedTuple):
    """A batch-size schedule equivalent to a learning-rate decay (see `lr_to_batch_size_schedule`).

    Attributes:
      batch_size: `StepwiseSchedule` of the update count: the effective batch size.
      learning_rate: `StepwiseSchedule` of the update count: the learning rate to use.
      num_micro_batches: `StepwiseSchedule` of the update count: ``batch_size /
        micro_batch_size``, for `accumulate_micro_batches`.
      micro_batch_size: the fixed per-call batch.
      momentum: the momentum to train with.
      num_updates: parameter updates in the whole plan.
      reference_num_updates: parameter updates of the learning-rate decay it replaces.
    """

    batch_size: StepwiseSchedule
    learning_rate: StepwiseSchedule
    num_micro_batches: StepwiseSchedule
    micro_batch_size: int
    momentum: float
    num_updates: int
    reference_num_updates: int


def _runs(values: list[float]) -> StepwiseSchedule:
    """A stepwise schedule of a per-update list, one entry per run of equal values (in
    float32, the precision the schedule returns)."""
    values = [float(np.float32(v)) for v in values]
    starts = [i for i in range(1, len(values)) if values[i] != values[i - 1]]
    return stepwise_schedule([values[0]] + [values[i] for i in starts], starts)


def lr_to_batch_size_schedule(
    learning_rate: Callable[[Any], Any],
    batch_size: int,
    num_steps: int,
    *,
    max_batch_size: int | None = None,
    num_examples: int | None = None,
    micro_batch_size: int | None = None,
    momentum: float = 0.0,
    new_momentum: float | None = None,
) -> BatchSizePlan:
    """Converts a learning-rate decay into the batch-size growth with the same noise scale.

    The reference run uses ``learning_rate(t)`` with batch ``B0 = batch_size`` and momentum
    ``m0 = momentum`` for ``num_steps`` updates; its noise scale is ``lr(t) N / (B0 (1 -
    m0))``. The plan walks through the same examples: an update that starts where the
    reference is at step ``t`` uses the batch ``B = B0 * lr(0) / lr(t) * (1 - m0) / (1 -
    m1)`` (``m1 = new_momentum``), rounded to whole micro-batches and capped at
    ``max_batch_size``, and the learning rate that keeps the noise scale,
    ``lr(t) * B (1 - m1) / (B0 (1 - m0))``: ``lr(0)`` while the batch can grow, decaying
    once it is capped (the paper's hybrid schedule). A larger momentum (the paper's
    momentum form) multiplies every batch by ``(1 - m0) / (1 - m1)``.

    Args:
      learning_rate: the reference's schedule, positive, a function of the step.
      batch_size: the reference's batch size ``B0``, an integer >= 1.
      num_steps: the reference's number of updates, an integer >= 1.
      max_batch_size: the largest batch (hardware limit); default ``num_examples // 10``
        (the paper's advice) when ``num_examples`` is given, else unbounded.
      num_examples: the data-set size ``N`` (only for the default maximum).
      micro_batch_size: batches are whole multiples of it (default ``batch_size``).
      momentum: the reference's momentum ``m0``, in [0, 1).
      new_momentum: the momentum of the plan ``m1``, in [0, 1) (default ``m0``).

    Returns:
      A `BatchSizePlan`: schedules of the update count for the batch size, the learning
      rate and the number of micro-batches, and both runs' numbers of updates.

    Raises:
      ValueError: for an argument out of range or a learning rate that is not positive.

    References:
      Smith, Kindermans, Ying & Le, "Don't Decay the Learning Rate, Increase the Batch
      Size", ICLR 2018. https://arxiv.org/abs/1711.00489

    Example:
      >>> import gradxform as gx
      >>> lr = gx.schedules.piecewise_constant_schedule(0.1, {100: 0.2})
      >>> plan = gx.schedules.lr_to_batch_size_schedule(lr, batch_size=32, num_steps=200)
      >>> [int(plan.batch_size(t)) for t in (0, 99, 100)], plan.num_updates
      ([32, 32, 160], 120)
    """
    owner = "lr_to_batch_size_schedule"
    check_positive_int(owner, "batch_size", batch_size, 1)
    check_positive_int(owner, "num_steps", num_steps, 1)
    if num_examples is not None:
        check_positive_int(owner, "num_examples", num_examples, 1)
    micro = batch_size if micro_batch_size is None else micro_batch_size
    check_positive_int(owner, "micro_batch_size", micro, 1)
    if max_batch_size is None and num_examples is not None:
        max_batch_size = max(num_examples // 10, micro)
    if max_batch_size is not None:
        check_positive_int(owner, "max_batch_size", max_batch_size, micro)
    check_hyperparam(owner, "momentum", momentum, UNIT)
    m1 = momentum if new_momentum is None else new_momentum
    check_hyperparam(owner, "new_momentum", m1, UNIT)
    if not callable(learning_rate):
        raise ValueError(f"{owner}: learning_rate must be a schedule (a function of the step), got {learning_rate!r}.")

    rates = evaluate(learning_rate, num_steps)
    if not (np.isfinite(rates).all() and (rates > 0).all()):
        bad = int(np.argmin(np.isfinite(rates) & (rates > 0)))
        raise ValueError(f"{owner}: learning_rate must be positive and finite at every step, got {rates[bad]!r} at step {bad}.")
    lr0 = rates[0]
    momentum_gain = (1.0 - momentum) / (1.0 - m1)
    most = math.inf if max_batch_size is None else max_batch_size // micro
    sizes: list[float] = []
    lrs: list[float] = []
    position = 0.0  # how far the reference run is, in its own updates
    while position < num_steps - 1e-9:
        rate = rates[min(int(math.floor(position + 1e-9)), num_steps - 1)]
        ideal = batch_size * lr0 / rate * momentum_gain
        k = int(max(1, min(round(ideal / micro), most)))
        size = k * micro
        sizes.append(float(size))
        # lr(t) * size / (B0 * gain), written as lr(0) * size / ideal so that a batch that
        # absorbs the whole decay keeps exactly lr(0) (no float noise splitting its runs)
        ratio = size / ideal
        lrs.append(float(lr0 * (1.0 if abs(ratio - 1.0) < 1e-6 else ratio)))
        position += size / batch_size
    return BatchSizePlan(
        batch_size=_runs(sizes),
        learning_rate=_runs(lrs),
        num_micro_batches=_runs([s / micro for s in sizes]),
        micro_batch_size=micro,
        momentum=float(m1),
        num_updates=len(sizes),
        reference_num_updates=num_steps,
    )


# --------------------------------------------------------------------------- reports


def noise_scale(learning_rate: Any, batch_size: Any, num_examples: int, momentum: Any = 0.0) -> Any:
    """The gradient noise scale ``g = lr * N / (B * (1 - m))`` of SGD.

    Args:
      learning_rate: the learning rate (a number or an array).
      batch_size: the batch size (a number or an array of the same shape).
      num_examples: the data-set size ``N``.
      momentum: the momentum ``m``, in [0, 1).

    Returns:
      ``g``, of the broadcast shape of the inputs (the paper's ``lr (N / B - 1)``,
      simplified for ``B << N``, divided by ``1 - m``).

    Raises:
      ValueError: for a non-positive ``num_examples`` or a momentum outside [0, 1).

    References:
      Smith, Kindermans, Ying & Le, "Don't Decay the Learning Rate, Increase the Batch
      Size", ICLR 2018, equation (6). https://arxiv.org/abs/1711.00489

    Example:
      >>> import gradxform as gx
      >>> round(float(gx.schedules.noise_scale(0.1, 100, 50_000, momentum=0.9)), 6)
      500.0
    """
    check_positive_int("noise_scale", "num_examples", num_examples, 1)
    check_hyperparam("noise_scale", "momentum", momentum, UNIT)
    return np.asarray(learning_rate, np.float64) * num_examples / (np.asarray(batch_size, np.float64) * (1.0 - momentum))


class TrainingProfile(NamedTuple):
    """What a learning-rate and batch-size schedule pair does over training.

    Attributes:
      epoch: float64 array, epochs completed when each update starts.
      learning_rate: float64 array, the learning rate of each update.
      batch_size: float64 array, the batch size of each update.
      noise_scale: float64 array, ``lr * N / (B * (1 - m))`` of each update.
      num_updates: the number of parameter updates.
    """

    epoch: np.ndarray
    learning_rate: np.ndarray
    batch_size: np.ndarray
    noise_scale: np.ndarray
    num_updates: int


def training_profile(
    learning_rate: Any, batch_size: Any, num_examples: int, num_epochs: float, momentum: float = 0.0
) -> TrainingProfile:
    """The noise scale over training and the number of parameter updates.

    Updates are counted until ``num_epochs * num_examples`` examples have been used, each
    update taking ``batch_size(count)`` of them.

    Args:
      learning_rate: a number or a schedule of the update count.
      batch_size: a number or a schedule of the update count (values >= 1).
      num_examples: the data-set size ``N``.
      num_epochs: how many passes over the data, > 0.
      momentum: the momentum ``m``, in [0, 1).

    Returns:
      A `TrainingProfile`.

    Raises:
      ValueError: for a non-positive size or length, or a batch size below 1.

    References:
      Smith, Kindermans, Ying & Le, "Don't Decay the Learning Rate, Increase the Batch
      Size", ICLR 2018. https://arxiv.org/abs/1711.00489

    Example:
      >>> import gradxform as gx
      >>> lr = gx.schedules.piecewise_constant_schedule(0.1, {100: 0.2})
      >>> plan = gx.schedules.lr_to_batch_size_schedule(lr, batch_size=32, num_steps=200)
      >>> ref = gx.schedules.training_profile(lr, 32, num_examples=3200, num_epochs=2)
      >>> new = gx.schedules.training_profile(plan.learning_rate, plan.batch_size, 3200, 2)
      >>> ref.num_updates, new.num_updates
      (200, 120)
      >>> round(float(ref.noise_scale[-1]), 5), round(float(new.noise_scale[-1]), 5)
      (2.0, 2.0)
    """
    owner = "training_profile"
    check_positive_int(owner, "num_examples", num_examples, 1)
    check_hyperparam(owner, "num_epochs", num_epochs, POSITIVE)
    check_hyperparam(owner, "momentum", momentum, UNIT)
    total = num_epochs * num_examples
    as_schedule = lambda v: v if callable(v) else (lambda t: jnp.full(jnp.shape(t), v, jnp.float32))
    lr_fn, bs_fn = as_schedule(learning_rate), as_schedule(batch_size)
    sizes: list[np.ndarray] = []
    used, start, chunk = 0.0, 0, 1024
    while used < total - 1e-9:
        block = evaluate(lambda t: bs_fn(t + start), chunk)
        if (block < 1).any():
            raise ValueError(f"{owner}: batch_size must be >= 1, got {block[block < 1][0]!r}.")
        sizes.append(block)
        used += float(block.sum())
        start += chunk
        chunk *= 2
    b = np.concatenate(sizes)
    seen = np.concatenate([[0.0], np.cumsum(b)[:-1]])
    n = int(np.searchsorted(seen, total - 1e-9, side="left"))
    b, seen = b[:n], seen[:n]
    lr = evaluate(lr_fn, n)
    return TrainingProfile(seen / num_examples, lr, b, noise_scale(lr, b, num_examples, momentum), n)


__all__ = [
    "BatchSizePlan",
    "MicroBatchState",
    "TrainingProfile",
    "accumulate_micro_batches",
    "lr_to_batch_size_schedule",
    "noise_scale",
    "training_profile",
]
