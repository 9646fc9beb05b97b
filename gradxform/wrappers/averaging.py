"""Averages of the parameters: EMA (Polyak-Ruppert), SWA, lookahead, periodic averaging.

`ema_params` and `swa` wrap an optimizer and keep an average of the parameters it produces
in the state (one extra copy of the parameters); `averaged_params` returns it for
evaluation. `lookahead` (Optax's semantics) keeps slow weights in the parameters.
`periodic_average` averages the parameters across devices every few steps (local SGD).
`incremental_update` and `periodic_update` are Optax's tree utilities for a slow copy of the
parameters kept outside the optimizer (a reinforcement-learning target network).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradxform._factory import transformation
from gradxform.core import (
    COUNT_DTYPE,
    UNIT,
    UNIT_CLOSED,
    GradientTransformation,
    Params,
    call_update,
    check_hyperparam,
    check_number,
    check_positive_int,
    check_same_tree,
    check_transformation,
    find_states,
    is_tracer,
    new_count,
    require_params,
    safe_increment,
    tree_paths,
)


class AveragedParamsState(NamedTuple):
    """State of `ema_params` and `swa`.

    Attributes:
      count: int32 scalar, optimizer steps so far.
      n_averaged: int32 scalar, parameter snapshots folded into the average.
      average: the averaged parameters (starting from the initial parameters).
      inner_state: the inner optimizer's state.
    """

    count: jax.Array
    n_averaged: jax.Array
    average: Params
    inner_state: Any


def _new_params(owner: str, params: Params | None, updates: Any, average: Params) -> Params:
    require_params(owner, params)
    return jax.tree.map(lambda p, u, a: p.astype(a.dtype) + u.astype(a.dtype), params, updates, average)


def _init_average(params: Params, accumulator_dtype: Any) -> Params:
    return jax.tree.map(lambda p: jnp.array(p, dtype=accumulator_dtype or p.dtype, copy=True), params)


@transformation({"decay": UNIT})
def ema_params(inner: GradientTransformation, decay: float = 0.999, accumulator_dtype: Any = None) -> GradientTransformation:
    """Keeps an exponential moving average of the parameters that ``inner`` produces.

    After each step, ``average <- decay * average + (1 - decay) * new_params``, starting
    from the initial parameters (Keras's ``use_ema`` with ``ema_momentum=decay``, PyTorch's
    ``AveragedModel`` with an EMA). The updates are ``inner``'s, unchanged; get the average
    with `averaged_params`.

    Args:
      inner: the optimizer.
      decay: the EMA decay, in [0, 1) (a number or a schedule).
      accumulator_dtype: dtype of the average (default: each parameter's).

    Returns:
      A transformation with `AveragedParamsState`; its ``update`` needs ``params``.

    Raises:
      TypeError: if ``inner`` is not a transformation.
      ValueError: at ``update``, if ``params`` is not given.

    References:
      Polyak & Juditsky, "Acceleration of Stochastic Approximation by Averaging", SIAM J.
      Control Optim. 1992. https://doi.org/10.1137/0330046

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.ema_params(gx.sgd(1.0), decay=0.5)
      >>> p = jnp.zeros(1)
      >>> u, state = tx.update(jnp.array([-2.0]), tx.init(p), p)   # new params: 2
      >>> gx.averaged_params(state).tolist()
      [1.0]
    """
    check_transformation("ema_params", "inner", inner)

    def init(params):
        return AveragedParamsState(new_count(), new_count(), _init_average(params, accumulator_dtype), inner.init(params))

    def update(updates, state, params=None, **extra):
        out, inner_state = call_update(inner, updates, state.inner_state, params, extra)
        new = _new_params("ema_params", params, out, state.average)
        average = jax.tree.map(
            lambda a, x: (jnp.asarray(decay).astype(a.dtype) * a + (1 - jnp.asarray(decay)).astype(a.dtype) * x).astype(a.dtype),
            state.average,
            new,
        )
        count = safe_increment(state.count)
        return out, AveragedParamsState(count, count, average, inner_state)

    return GradientTransformation(init, update)


@transformation()
def swa(
    inner: GradientTransformation, start: int = 0, every: int = 1, accumulator_dtype: Any = None
) -> GradientTransformation:
    """Stochastic weight averaging: the equal-weight mean of parameter snapshots.

    After ``start`` steps, every ``every``-th step's parameters are folded into a running
    mean (``average <- average + (new - average) / (n + 1)``); before the first snapshot
    the average is the initial parameters. Use a cyclic or constant learning rate, and get
    the average with `averaged_params` (recompute batch-norm statistics for it).

    Args:
      inner: the optimizer.
      start: steps before the first snapshot, >= 0.
      every: steps between snapshots, >= 1 (the cycle length of a cyclic schedule).
      accumulator_dtype: dtype of the average (default: each parameter's).

    Returns:
      A transformation with `AveragedParamsState`; its ``update`` needs ``params``.

    Raises:
      TypeError: if ``inner`` is not a transformation.
      ValueError: for a negative ``start`` or ``every`` < 1, or at ``update`` without ``params``.

    References:
      Izmailov, Podoprikhin, Garipov, Vetrov & Wilson, "Averaging Weights Leads to Wider
      Optima and Better Generalization", UAI 2018. https://arxiv.org/abs/1803.05407

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.swa(gx.sgd(1.0))
      >>> p, state = jnp.zeros(1), tx.init(jnp.zeros(1))
      >>> for g in (-2.0, -2.0):                         # params 2, then 4
      ...     u, state = tx.update(jnp.array([g]), state, p)
      ...     p = gx.apply_updates(p, u)
      >>> gx.averaged_params(state).tolist()
      [3.0]
    """
    check_transformation("swa", "inner", inner)
    check_positive_int("swa", "start", start, minimum=0)
    check_positive_int("swa", "every", every)

    def init(params):
        return AveragedParamsState(new_count(), new_count(), _init_average(params, accumulator_dtype), inner.init(params))

    def update(updates, state, params=None, **extra):
        out, inner_state = call_update(inner, updates, state.inner_state, params, extra)
        new = _new_params("swa", params, out, state.average)
        count = safe_increment(state.count)
        take = jnp.logical_and(count > start, (count - start) % every == 0)
        n = state.n_averaged
        average = jax.tree.map(
            lambda a, x: jnp.where(take, a + (x - a) / (n + 1).astype(a.dtype), a).astype(a.dtype), state.average, new
        )
        n = jnp.where(take, safe_increment(n), n).astype(COUNT_DTYPE)
        return out, AveragedParamsState(count, n, average, inner_state)

    return GradientTransformation(init, update)


def _check_tensor_trees(owner: str, new_tensors: Params, old_tensors: Params) -> None:
    """Raises ``ValueError`` naming ``owner`` unless the two trees match in structure and shapes."""
    is_none = lambda x: x is None  # noqa: E731
    if jax.tree.structure(new_tensors, is_leaf=is_none) != jax.tree.structure(old_tensors, is_leaf=is_none):
        only_new = sorted(set(tree_paths(new_tensors, is_none)) - set(tree_paths(old_tensors, is_none)))
        only_old = sorted(set(tree_paths(old_tensors, is_none)) - set(tree_paths(new_tensors, is_none)))
        raise ValueError(
            f"{owner}: new_tensors and old_tensors must have the same tree structure; paths only in "
            f"new_tensors: {only_new[:10]}, only in old_tensors: {only_old[:10]} "
            f"(structures {jax.tree.structure(new_tensors)} and {jax.tree.structure(old_tensors)})."
        )
    try:
        check_same_tree(new_tensors, old_tensors, "new_tensors", "old_tensors", allow_none=True)
    except ValueError as e:
        raise ValueError(f"{owner}: {e}") from None


def incremental_update(new_tensors: Params, old_tensors: Params, step_size: Any) -> Params:
    """Polyak averaging of a tree: ``step_size * new + (1 - step_size) * old``, leaf by leaf.

    Optax's ``incremental_update``, the soft update of a target network (``step_size`` is
    the tau of DDPG and SAC). Each leaf comes back in the dtype of ``old_tensors``' leaf,
    so a float32 ``step_size`` does not promote a bfloat16 target network.

    Args:
      new_tensors: the latest values (the online network's parameters).
      old_tensors: the moving average so far (the target network's), with the same tree
        structure and shapes as ``new_tensors``.
      step_size: the weight of the new values, in [0, 1]; a number or a scalar array
        (traced values are not checked).

    Returns:
      The updated average. A ``None`` leaf of ``new_tensors`` stays ``None``.

    Raises:
      ValueError: if the two trees differ in structure or shapes, or ``step_size`` is not a
        number in [0, 1].

    References:
      Polyak & Juditsky, "Acceleration of Stochastic Approximation by Averaging", SIAM J.
      Control Optim. 1992. https://doi.org/10.1137/0330046

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.incremental_update({"w": jnp.ones(2)}, {"w": jnp.zeros(2)}, 0.25)["w"].tolist()
      [0.25, 0.25]
    """
    check_number("incremental_update", "step_size", step_size, UNIT_CLOSED)
    _check_tensor_trees("incremental_update", new_tensors, old_tensors)

    def average(new: Any, old: Any) -> Any:
        if new is None:
            return None
        mixed = step_size * new + (1.0 - step_size) * old
        return jnp.asarray(mixed).astype(jnp.asarray(old).dtype)

    return jax.tree.map(average, new_tensors, old_tensors, is_leaf=lambda x: x is None)


def _check_step_arg(owner: str, name: str, value: Any, minimum: int) -> None:
    """An integer (Python, NumPy or a 0-d integer array) >= ``minimum``; tracers pass."""
    if is_tracer(value):
        return
    if isinstance(value, (jax.Array, np.ndarray)) and np.ndim(value) == 0 and np.issubdtype(value.dtype, np.integer):
        value = int(value)
    check_positive_int(owner, name, value, minimum=minimum)


def periodic_update(new_tensors: Params, old_tensors: Params, steps: Any, update_period: Any) -> Params:
    """``new_tensors`` every ``update_period`` steps, else ``old_tensors`` (Optax's ``periodic_update``).

    The hard update of a target network (DQN) or of a slow copy of the parameters (BYOL):
    it returns the new values when ``steps`` is a multiple of ``update_period`` (step 0
    included), and the old ones otherwise. The choice is made by ``jax.lax.cond``, so
    ``steps`` may be traced. Each leaf keeps the dtype of ``old_tensors``' leaf, as both
    branches of the condition must have one type.

    Args:
      new_tensors: the latest values (the online network's parameters).
      old_tensors: the slow copy, with the same tree structure and shapes.
      steps: how many updates the online network has had (an integer >= 0, or a traced
        integer scalar).
      update_period: copy every this many steps (an integer >= 1, or a traced integer
        scalar).

    Returns:
      ``new_tensors`` or ``old_tensors``.

    Raises:
      ValueError: if the two trees differ in structure or shapes, ``steps`` is not an
        integer >= 0, or ``update_period`` is not an integer >= 1.

    References:
      Mnih et al., "Human-level control through deep reinforcement learning", Nature 2015.
      https://doi.org/10.1038/nature14236

      Grill et al., "Bootstrap Your Own Latent", 2020. https://arxiv.org/abs/2006.07733

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> new, old = jnp.ones(1), jnp.zeros(1)
      >>> gx.periodic_update(new, old, 4, 2).tolist(), gx.periodic_update(new, old, 5, 2).tolist()
      ([1.0], [0.0])
    """
    _check_step_arg("periodic_update", "steps", steps, 0)
    _check_step_arg("periodic_update", "update_period", update_period, 1)
    _check_tensor_trees("periodic_update", new_tensors, old_tensors)
    new_tensors = jax.tree.map(
        lambda n, o: None if n is None else jnp.asarray(n).astype(jnp.asarray(o).dtype),
        new_tensors,
        old_tensors,
        is_leaf=lambda x: x is None,
    )
    return jax.lax.cond(jnp.mod(steps, update_period) == 0, lambda: new_tensors, lambda: old_tensors)


def averaged_params(state: Any, params: Params | None = None) -> Params:
    """The averaged parameters kept by `ema_params` or `swa` in an optimizer state.

    Args:
      state: an optimizer state holding one `AveragedParamsState` (at any depth).
      params: if given, the average is cast to each parameter's dtype.

    Returns:
      The averaged parameters, for evaluation.

    Raises:
      ValueError: if the state holds no average, or several.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.averaged_params(gx.ema_params(gx.sgd(0.1)).init(jnp.ones(2))).tolist()
      [1.0, 1.0]
    """
    found = find_states(state, AveragedParamsState)
    if len(found) != 1:
        raise ValueError(
            f"averaged_params: expected one ema_params/swa state in this optimizer state, found {len(found)}."
        )
    average = found[0].average
    return average if params is None else jax.tree.map(lambda a, p: a.astype(p.dtype), average, params)


class LookaheadState(NamedTuple):
    """State of `lookahead`: the fast optimizer's state and ``steps_since_sync`` (int32)."""

    fast_state: Any
    steps_since_sync: jax.Array


class LookaheadParams(NamedTuple):
    """Parameters for `lookahead`: the ``fast`` weights (trained) and the ``slow`` ones."""

    fast: Params
    slow: Params

    @classmethod
    def init_synced(cls, params: Params) -> LookaheadParams:
        """Fast and slow weights both set to ``params``."""
        return cls(fast=params, slow=params)


@transformation()
def lookahead(
    fast_optimizer: GradientTransformation,
    sync_period: int,
    slow_step_size: float,
    reset_state: bool = False,
) -> GradientTransformation:
    """Lookahead: every ``sync_period`` steps, move the slow weights toward the fast ones.

    As Optax's ``lookahead``: parameters are `LookaheadParams`, gradients are taken at the
    fast weights, and on a sync step ``slow <- slow + slow_step_size * (fast - slow)`` and
    the fast weights are reset to the new slow ones. Evaluate with ``params.slow``.
    ``slow_step_size`` is a fixed number here: the updates have the structure of
    `LookaheadParams`, not of the gradients, which hyperparameters kept as data require.

    Args:
      fast_optimizer: the inner optimizer, applied to the fast weights.
      sync_period: fast steps between synchronisations, >= 1.
      slow_step_size: the slow weights' step toward the fast ones, in [0, 1].
      reset_state: reset the fast optimizer's state at each synchronisation.

    Returns:
      A transformation with `LookaheadState`; ``update`` needs ``params`` as
      `LookaheadParams` and returns updates of that structure.

    Raises:
      TypeError: if ``fast_optimizer`` is not a transformation.
      ValueError: for ``sync_period`` < 1, ``slow_step_size`` outside [0, 1], or at
        ``update`` if ``params`` are not `LookaheadParams`.

    References:
      Zhang, Lucas, Hinton & Ba, "Lookahead Optimizer: k steps forward, 1 step back",
      NeurIPS 2019. https://arxiv.org/abs/1907.08610

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.lookahead(gx.sgd(1.0), sync_period=1, slow_step_size=0.5)
      >>> p = gx.LookaheadParams.init_synced(jnp.zeros(1))
      >>> u, _ = tx.update(jnp.array([-2.0]), tx.init(p), p)
      >>> gx.apply_updates(p, u).slow.tolist()
      [1.0]
    """
    check_transformation("lookahead", "fast_optimizer", fast_optimizer)
    check_positive_int("lookahead", "sync_period", sync_period)
    check_hyperparam("lookahead", "slow_step_size", slow_step_size, UNIT_CLOSED)
    if callable(slow_step_size):
        raise ValueError("lookahead: slow_step_size must be a number, not a schedule.")
    alpha = float(slow_step_size)

    def init(params):
        fast = params.fast if isinstance(params, LookaheadParams) else params
        return LookaheadState(fast_optimizer.init(fast), jnp.zeros([], COUNT_DTYPE))

    def update(updates, state, params=None, **extra):
        if not isinstance(params, LookaheadParams):
            raise ValueError(
                "lookahead needs params=gx.LookaheadParams(fast, slow) in update(); start from "
                "gx.LookaheadParams.init_synced(params) and take gradients at params.fast."
            )
        out, fast_state = call_update(fast_optimizer, updates, state.fast_state, params.fast, extra)
        sync = state.steps_since_sync == sync_period - 1
        diff = jax.tree.map(lambda f, u, s: f + u - s, params.fast, out, params.slow)
        slow_updates = jax.tree.map(lambda d: (alpha * sync * d).astype(d.dtype), diff)
        fast_updates = jax.tree.map(lambda u, d: (u - sync * (1 - alpha) * d).astype(u.dtype), out, diff)
        if reset_state:
            fresh = fast_optimizer.init(params.fast)
            fast_state = jax.tree.map(lambda cur, new: jnp.where(sync, new, cur), fast_state, fresh)
        steps = (state.steps_since_sync + 1) % sync_period
        return LookaheadParams(fast=fast_updates, slow=slow_updates), LookaheadState(fast_state, steps)

    return GradientTransformation(init, update)


class PeriodicAverageState(NamedTuple):
    """State of `periodic_average`: ``count`` (int32, steps so far) and the inner state."""

    count: jax.Array
    inner_state: Any


@transformation()
def periodic_average(
    inner: GradientTransformation, period: int, warmup_steps: int = 0, axis_name: Any = "batch"
) -> GradientTransformation:
    """Local SGD: each replica steps alone; every ``period`` steps the replicas' parameters are averaged.

    Runs inside ``shard_map``, ``pmap`` or ``vmap`` over ``axis_name``, with gradients *not*
    averaged across replicas. Step ``t`` (0-based) averages when ``t >= warmup_steps`` and
    ``(t - warmup_steps) % period == 0``, as PyTorch's ``PeriodicModelAverager``: the
    update becomes ``pmean(params + u) - params``.

    Args:
      inner: the optimizer each replica runs.
      period: steps between averagings, >= 1.
      warmup_steps: steps before the first averaging, >= 0.
      axis_name: the mapped axis over which replicas are averaged.

    Returns:
      A transformation with `PeriodicAverageState`; its ``update`` needs ``params``.

    Raises:
      TypeError: if ``inner`` is not a transformation.
      ValueError: for ``period`` < 1 or negative ``warmup_steps``, or at ``update`` without ``params``.

    References:
      Lin, Stich, Patel & Jaggi, "Don't Use Large Mini-Batches, Use Local SGD", ICLR 2020.
      https://arxiv.org/abs/1808.07217

    Example:
      >>> import gradxform as gx, jax, jax.numpy as jnp
      >>> tx = gx.periodic_average(gx.sgd(1.0), period=1, axis_name="r")
      >>> p = jnp.zeros((2, 1))
      >>> step = lambda g, p: tx.update(g, tx.init(p), p)[0]
      >>> jax.vmap(step, axis_name="r")(jnp.array([[-1.0], [-3.0]]), p).tolist()
      [[2.0], [2.0]]
    """
    check_transformation("periodic_average", "inner", inner)
    check_positive_int("periodic_average", "period", period)
    check_positive_int("periodic_average", "warmup_steps", warmup_steps, minimum=0)

    def init(params):
        return PeriodicAverageState(new_count(), inner.init(params))

    def update(updates, state, params=None, **extra):
        require_params("periodic_average", params)
        out, inner_state = call_update(inner, updates, state.inner_state, params, extra)
        t = state.count
        sync = jnp.logical_and(t >= warmup_steps, (t - warmup_steps) % period == 0)
        new = jax.tree.map(lambda p, u: p + u, params, out)
        mean = jax.lax.pmean(new, axis_name)
        out = jax.tree.map(lambda u, m, p: jnp.where(sync, (m - p).astype(u.dtype), u), out, mean, params)
        return out, PeriodicAverageState(safe_increment(t), inner_state)

    return GradientTransformation(init, update)
