"""Schedule-free optimisation: averaging in place of a learning-rate schedule.

A base optimizer drives a sequence ``z``; the model is evaluated at ``x``, a running
average of the ``z``'s weighted by ``max_lr^weight_lr_power``; gradients are taken at the
interpolation ``y`` between them. The parameters the optimizer updates are ``y``::

    z_{t+1} = z_t + base_update(grad f(y_t))
    c_{t+1} = w_{t+1} / sum_{i <= t+1} w_i,          w_t = max_{i <= t} lr_i ^ weight_lr_power
    x_{t+1} = (1 - c_{t+1}) x_t + c_{t+1} z_{t+1}
    y_{t+1} = b1 x_{t+1} + (1 - b1) z_{t+1}

``x`` is not stored: it is recovered from ``y`` and ``z`` as ``(y - (1 - b1) z) / b1``, which
is also how `schedule_free_eval_params` gives the parameters to evaluate the model at.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradxform._factory import transformation
from gradxform.combinators import chain
from gradxform.core import (
    NON_NEGATIVE,
    REAL,
    UNIT,
    GradientTransformation,
    Interval,
    Params,
    check_positive_int,
    check_same_tree,
    find_states,
    is_transformation,
    require_params,
    safe_increment,
)
from gradxform.optimizers.rmsprop import scale_by_rms
from gradxform.primitives.elementwise import scale_by_learning_rate
from gradxform.primitives.weight_decay import add_decayed_weights

OPEN_UNIT = Interval(0.0, 1.0, False, False)


class ScheduleFreeState(NamedTuple):
    """State of the schedule-free wrapper.

    Attributes:
      b1: the interpolation coefficient in use (scalar, the parameters' lowest dtype); kept
        here so that `schedule_free_eval_params` needs only the state.
      weight_sum: the sum of the averaging weights so far.
      step_count: int32, 1 before the first update.
      max_lr: the largest learning rate seen so far.
      base_optimizer_state: the base optimizer's state.
      z: the base optimizer's sequence (``state_dtype``, default the parameters').
    """

    b1: jax.Array
    weight_sum: jax.Array
    step_count: jax.Array
    max_lr: jax.Array
    base_optimizer_state: Any
    z: Params


def _lowest_dtype(params: Any) -> Any:
    dtypes = [jnp.asarray(x).dtype for x in jax.tree.leaves(params)]
    return min(dtypes, key=lambda d: jnp.finfo(d).bits) if dtypes else jnp.float32


def _warmed_up(peak: Any, count: jax.Array, warmup_steps: int | None) -> Any:
    """A linear warm-up from 0 to ``peak`` over ``warmup_steps`` steps, then ``peak``."""
    if warmup_steps is None:
        return peak
    done = jnp.clip(count, 0, warmup_steps) / warmup_steps
    return -jnp.asarray(peak) * (1 - done) + peak


def _wrap(
    owner: str,
    make_base: Callable[[Any], GradientTransformation],
    learning_rate: Any,
    b1: Any,
    weight_lr_power: Any,
    state_dtype: Any,
    warmup_steps: int | None,
) -> GradientTransformation:
    """The wrapper; ``make_base(lr)`` builds the base optimizer, whose last stage scales by
    ``lr``. With a warm-up it is built with ``lr = 1`` and its output scaled by the warmed-up
    rate at step ``t`` (from 0), while the averaging weight uses the rate at ``t + 1``."""
    if warmup_steps is not None:
        check_positive_int(owner, "warmup_steps", warmup_steps)
    base = make_base(learning_rate if warmup_steps is None else 1.0)

    def init(params):
        low = _lowest_dtype(params)
        z = jax.tree.map(lambda p: jnp.array(p, dtype=state_dtype or jnp.asarray(p).dtype, copy=True), params)
        return ScheduleFreeState(
            jnp.asarray(b1, low), jnp.zeros([], low), jnp.ones([], jnp.int32), jnp.zeros([], low), base.init(params), z
        )

    def update(updates, state, params=None, **extra):
        require_params(owner, params)
        check_same_tree(updates, state.z, "updates", f"{owner}'s state")
        dt = state.max_lr.dtype
        lr = jnp.asarray(_warmed_up(learning_rate, state.step_count, warmup_steps), dt)
        max_lr = jnp.maximum(state.max_lr, lr)
        weight = max_lr**weight_lr_power
        total = state.weight_sum + weight
        c = jnp.where(
            jnp.isnan(weight) | jnp.isnan(total),
            jnp.full(weight.shape, jnp.nan),
            jnp.nan_to_num(weight / total, nan=0.0, posinf=jnp.inf),
        )
        base_updates, base_state = base.update(updates, state.base_optimizer_state, params, **extra)
        if warmup_steps is not None:
            base_lr = _warmed_up(learning_rate, state.step_count - 1, warmup_steps)
            base_updates = jax.tree.map(lambda u: u * jnp.asarray(base_lr).astype(jnp.real(u).dtype), base_updates)
        z = jax.tree.map(lambda zi, ui: jnp.asarray(zi + ui).astype(zi.dtype), state.z, base_updates)
        x = jax.tree.map(lambda y, zi: (y - (1.0 - b1) * zi) / b1, params, state.z)
        x = jax.tree.map(lambda xi, zi: (1.0 - c) * xi + c * zi, x, z)
        y = jax.tree.map(lambda xi, zi: b1 * xi + (1.0 - b1) * zi, x, z)
        out = jax.tree.map(lambda new, old: (new - old).astype(old.dtype), y, params)
        new_state = ScheduleFreeState(
            jnp.asarray(b1, state.b1.dtype), total.astype(dt), safe_increment(state.step_count), max_lr, base_state, z
        )
        return out, new_state

    return GradientTransformation(init, update)


_SF = {"learning_rate": NON_NEGATIVE, "b1": OPEN_UNIT, "weight_lr_power": REAL}


@transformation(_SF)
def schedule_free(
    base_optimizer: GradientTransformation,
    learning_rate: float,
    b1: float = 0.9,
    weight_lr_power: float = 2.0,
    state_dtype: Any = None,
) -> GradientTransformation:
    """Makes any optimizer schedule-free (equations in this module's docstring).

    One stage wrapping the base optimizer rather than a chain after it: its output is a
    function of the parameters and of a second sequence ``z`` that only the base
    optimizer's steps move, which no stage placed after the base optimizer can see.

    Args:
      base_optimizer: the optimizer that drives ``z`` (its learning rate included; for
        example ``gx.sgd(lr)``).
      learning_rate: the base optimizer's learning rate, used for the averaging weights.
        A schedule is evaluated at the 0-based step, like every gradxform hyperparameter
        (Optax's schedule-free evaluates it one step ahead; pass ``warmup_steps`` to
        `schedule_free_sgd` / `schedule_free_adamw` for the usual warm-up).
      b1: the interpolation between the average ``x`` and ``z``, in (0, 1).
      weight_lr_power: the averaging weight is ``max_lr ** weight_lr_power``.
      state_dtype: dtype of ``z`` (default: the parameters').

    Returns:
      A transformation with `ScheduleFreeState`; its ``update`` needs ``params``. Evaluate
      the model at `schedule_free_eval_params` ``(state, params)``.

    Raises:
      TypeError: if ``base_optimizer`` is not a transformation.

    References:
      Defazio, Yang, Mehta, Mishchenko, Khaled & Cutkosky, "The Road Less Scheduled",
      NeurIPS 2024. https://arxiv.org/abs/2405.15682

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.schedule_free(gx.sgd(0.1), 0.1)
      >>> p = jnp.array([1.0])
      >>> u, state = tx.update(2 * p, tx.init(p), p)
      >>> [round(x, 4) for x in u.tolist()]  # y moves by (1 - b1) * z's step, x jumps to z
      [-0.2]
    """
    if not is_transformation(base_optimizer):
        raise TypeError(f"schedule_free: base_optimizer must be a transformation, got {base_optimizer!r}.")
    return _wrap("schedule_free", lambda lr: base_optimizer, learning_rate, b1, weight_lr_power, state_dtype, None)


@transformation({**_SF, "weight_decay": NON_NEGATIVE})
def schedule_free_sgd(
    learning_rate: float = 1.0,
    warmup_steps: int | None = None,
    b1: float = 0.9,
    weight_decay: float | None = None,
    weight_lr_power: float = 2.0,
    state_dtype: Any = None,
) -> GradientTransformation:
    """Schedule-free SGD: `schedule_free` around plain SGD, with an optional linear warm-up.

    Args:
      learning_rate: the peak learning rate, >= 0.
      warmup_steps: linear warm-up from 0 over this many steps (an int >= 1), or ``None``.
      b1: the interpolation coefficient, in (0, 1) (plays momentum's role).
      weight_decay: L2 weight decay added to the gradient (``None`` for none).
      weight_lr_power: the averaging weight is ``max_lr ** weight_lr_power``.
      state_dtype: dtype of ``z`` (default: the parameters').

    Returns:
      ``schedule_free(chain(add_decayed_weights(weight_decay), sgd(learning_rate)), ...)``.

    Raises:
      ValueError: if ``warmup_steps`` is not ``None`` or an int >= 1.

    References:
      Defazio et al., "The Road Less Scheduled", NeurIPS 2024. https://arxiv.org/abs/2405.15682

    Example:
      >>> import gradxform as gx, jax, jax.numpy as jnp
      >>> f = lambda w: jnp.sum((w - 2.0) ** 2)
      >>> tx = gx.schedule_free_sgd(0.25)
      >>> step = jax.jit(lambda w, state: tx.update(jax.grad(f)(w), state, w))
      >>> w = jnp.zeros(2)
      >>> state = tx.init(w)
      >>> for _ in range(20):
      ...     u, state = step(w, state)
      ...     w = gx.apply_updates(w, u)
      >>> bool(f(gx.schedule_free_eval_params(state, w)) < 0.01 * f(jnp.zeros(2)))
      True
    """

    def make_base(lr):
        step = scale_by_learning_rate(lr)
        return step if weight_decay is None else chain(add_decayed_weights(weight_decay), step)

    return _wrap("schedule_free_sgd", make_base, learning_rate, b1, weight_lr_power, state_dtype, warmup_steps)


@transformation({**_SF, "b2": UNIT, "eps": NON_NEGATIVE, "weight_decay": NON_NEGATIVE})
def schedule_free_adamw(
    learning_rate: float = 0.0025,
    warmup_steps: int | None = None,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    weight_lr_power: float = 2.0,
    state_dtype: Any = None,
) -> GradientTransformation:
    """Schedule-free AdamW: `schedule_free` around AdamW without its momentum.

    The base optimizer divides by the root of the debiased second moment (eps outside the
    root), adds decoupled weight decay and scales by the learning rate; ``b1`` is the
    schedule-free interpolation, which replaces Adam's first moment.

    Args:
      learning_rate: the peak learning rate, >= 0.
      warmup_steps: linear warm-up from 0 over this many steps (an int >= 1), or ``None``.
      b1: the interpolation coefficient, in (0, 1).
      b2: decay of the second moment, in [0, 1).
      eps: added to the root of the second moment, >= 0.
      weight_decay: decoupled weight decay, >= 0.
      weight_lr_power: the averaging weight is ``max_lr ** weight_lr_power``.
      state_dtype: dtype of ``z`` (default: the parameters').

    Returns:
      ``schedule_free(chain(scale_by_rms(b2, eps, eps_in_sqrt=False, bias_correction=True),
      add_decayed_weights(weight_decay), scale_by_learning_rate(learning_rate)), ...)``.

    Raises:
      ValueError: if ``warmup_steps`` is not ``None`` or an int >= 1.

    References:
      Defazio et al., "The Road Less Scheduled", NeurIPS 2024. https://arxiv.org/abs/2405.15682

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.schedule_free_adamw(0.1, warmup_steps=10)
      >>> p = jnp.ones(2)
      >>> u, state = tx.update(p, tx.init(p), p)
      >>> u.tolist()  # the warm-up starts from 0
      [0.0, 0.0]
    """

    def make_base(lr):
        return chain(
            scale_by_rms(decay=b2, eps=eps, eps_in_sqrt=False, bias_correction=True),
            add_decayed_weights(weight_decay),
            scale_by_learning_rate(lr),
        )

    return _wrap("schedule_free_adamw", make_base, learning_rate, b1, weight_lr_power, state_dtype, warmup_steps)


def _find_state(state: Any) -> ScheduleFreeState | None:
    found = find_states(state, ScheduleFreeState)
    return found[0] if found else None


def schedule_free_eval_params(state: Any, params: Params) -> Params:
    """The parameters at which to evaluate a schedule-free model: ``x = (y - (1 - b1) z) / b1``.

    Args:
      state: the state of a schedule-free optimizer, however nested (a chain, a wrapper, a
        Flax ``TrainState.opt_state``), or Optax's ``ScheduleFreeState``.
      params: the parameters the optimizer updates (``y``).

    Returns:
      The averaged parameters ``x``, with ``params``' structure.

    Raises:
      ValueError: if ``state`` holds no schedule-free state.

    References:
      Defazio et al., "The Road Less Scheduled", NeurIPS 2024. https://arxiv.org/abs/2405.15682

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.schedule_free_sgd(0.1)
      >>> p = jnp.array([1.0])
      >>> gx.schedule_free_eval_params(tx.init(p), p).tolist()  # x = y = z at the start
      [1.0]
    """
    found = _find_state(state)
    if found is None and hasattr(state, "b1") and hasattr(state, "z"):
        found = state
    if found is None:
        raise ValueError(
            "schedule_free_eval_params needs the state of a schedule-free optimizer "
            f"(gx.schedule_free, gx.schedule_free_sgd, gx.schedule_free_adamw); got {type(state).__name__}."
        )
    b1, z = found.b1, found.z
    return jax.tree.map(lambda y, zi: (y - (1.0 - b1) * zi) / b1, params, z)
