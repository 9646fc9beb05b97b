"""Stateful primitives over the update stream: averages, sums, maxima, momentum.

Each keeps one array per parameter, in a dtype the user may choose (default: the
parameter's), and returns its result in that dtype; the optimizer casts the final update
back to the gradients' dtype.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradxform._factory import transformation
from gradxform.core import (
    UNIT,
    UNIT_CLOSED,
    REAL,
    GradientTransformation,
    Updates,
    check_same_tree,
    new_count,
    path_str,
    safe_increment,
    tree_full_like,
)


@functools.lru_cache(maxsize=None)
def _real_dtype(dtype: Any) -> Any:
    # NumPy, not jnp: under a trace, jnp.zeros would record operations for every leaf.
    # At least float32: in bfloat16, b2 = 0.999 rounds to 1.0 and 1 - b2 to 0, so low
    # precision moments are updated in float32 and rounded once, when stored.
    return jnp.promote_types(np.zeros((), dtype).real.dtype, jnp.float32)


def _coef(x: Any, like: jax.Array) -> jax.Array:
    """A hyperparameter as a scalar of ``like``'s real dtype, and at least float32."""
    return jnp.asarray(x, _real_dtype(like.dtype))


def debias(decay: Any, t: jax.Array) -> jax.Array:
    """Adam's debiasing factor ``1 - decay**t`` (float32), for the 1-based step ``t``."""
    return 1 - jnp.asarray(decay, jnp.float32) ** t


REAL_AVERAGE_OF_COMPLEX = (
    "ema: the update at '{path}' is {got} but the average is kept in {kept} (accumulator_dtype, "
    "mu_dtype or dtype_momentum), which has no imaginary part: the imaginary part of the "
    "average would be lost every step (Optax drops it silently). Keep it in a complex dtype "
    "(for example jnp.complex64) or pass None to keep it in the parameter's dtype."
)


def _check_not_complex_into_real(updates: Updates, average: Updates) -> None:
    for (path, g), m in zip(jax.tree_util.tree_flatten_with_path(updates)[0], jax.tree.leaves(average)):
        if jnp.iscomplexobj(g) and not jnp.iscomplexobj(m):
            raise ValueError(REAL_AVERAGE_OF_COMPLEX.format(path=path_str(path), got=g.dtype, kept=m.dtype))


class EmaState(NamedTuple):
    """State of `ema`: ``ema`` is the running average, one array per parameter."""

    ema: Updates


@transformation({"decay": UNIT})
def ema(
    decay: float, debias: bool = True, accumulator_dtype: Any = None, *, initial_value: float = 0.0
) -> GradientTransformation:
    """Exponential moving average ``m <- decay * m + (1 - decay) * g``; outputs ``m``.

    Args:
      decay: in [0, 1).
      debias: follow with `bias_correction` (divide by ``1 - decay**t``), as Optax's ``ema``.
      accumulator_dtype: dtype of the average (default: the parameter's).
      initial_value: the average's starting value (RMSProp's ``initial_scale``).

    Returns:
      A transformation with `EmaState` (and, when debiasing, a step count).

    Raises:
      ValueError: at the first update, if a complex update would be averaged into a real
        ``accumulator_dtype`` (Optax silently drops the average's imaginary part).

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.ema(0.5, debias=False)
      >>> tx.update(jnp.ones(1), tx.init(jnp.zeros(1)))[0].tolist()
      [0.5]
    """
    if debias:
        from gradxform.combinators import chain

        return chain(
            ema(decay, debias=False, accumulator_dtype=accumulator_dtype, initial_value=initial_value),
            bias_correction(decay),
        )

    def init(params):
        return EmaState(tree_full_like(params, initial_value, accumulator_dtype))

    def update(updates, state, params=None, **extra):
        check_same_tree(updates, state.ema, "updates", "ema's state")
        _check_not_complex_into_real(updates, state.ema)
        new = jax.tree.map(
            lambda g, m: ((1 - _coef(decay, m)) * g + _coef(decay, m) * m).astype(m.dtype), updates, state.ema
        )
        return new, EmaState(new)

    return GradientTransformation(init, update)


class CountState(NamedTuple):
    """A step counter (int32 scalar, saturating)."""

    count: jax.Array


@transformation({"decay": UNIT})
def bias_correction(decay: float, step_offset: int = 0) -> GradientTransformation:
    """Divides by ``1 - decay**(t + step_offset)``, t the 1-based step (Adam's debiasing).

    Args:
      decay: the decay rate of the moving average being corrected, in [0, 1).
      step_offset: look-ahead in steps (Nadam corrects its momentum term one step ahead).

    Returns:
      A transformation with a `CountState`.

    References:
      Kingma & Ba, "Adam: A Method for Stochastic Optimization", 2015, section 3.
      https://arxiv.org/abs/1412.6980

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.bias_correction(0.5)
      >>> tx.update(jnp.ones(1), tx.init(jnp.zeros(1)))[0].tolist()  # 1 / (1 - 0.5)
      [2.0]
    """

    def update(updates, state, params=None, **extra):
        count = safe_increment(state.count)
        t = count + step_offset if step_offset else count
        correction = debias(decay, t)
        return jax.tree.map(lambda g: g / correction.astype(g.dtype), updates), CountState(count)

    return GradientTransformation(lambda params: CountState(new_count()), update)


class AccumulateState(NamedTuple):
    """State of `accumulate`: the running sum, one array per parameter."""

    total: Updates


@transformation()
def accumulate(initial_value: float = 0.0, accumulator_dtype: Any = None) -> GradientTransformation:
    """Running sum ``s <- s + g``; outputs ``s`` (AdaGrad's sum of squares).

    Args:
      initial_value: the sum's starting value.
      accumulator_dtype: dtype of the sum (default: the parameter's).

    Returns:
      A transformation with `AccumulateState`.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.accumulate(1.0)
      >>> tx.update(jnp.ones(1), tx.init(jnp.zeros(1)))[0].tolist()
      [2.0]
    """

    def init(params):
        return AccumulateState(tree_full_like(params, initial_value, accumulator_dtype))

    def update(updates, state, params=None, **extra):
        check_same_tree(updates, state.total, "updates", "accumulate's state")
        new = jax.tree.map(lambda g, s: (s + g).astype(s.dtype), updates, state.total)
        return new, AccumulateState(new)

    return GradientTransformation(init, update)


class MaxState(NamedTuple):
    """State of `decayed_max`: the running maximum, one array per parameter."""

    max: Updates


@transformation({"decay": UNIT_CLOSED})
def decayed_max(decay: float = 1.0, accumulator_dtype: Any = None) -> GradientTransformation:
    """Decayed running maximum ``m <- max(decay * m, g)``; outputs ``m``.

    With ``decay < 1`` over ``|g|`` this is Adamax's infinity norm; with ``decay = 1`` over
    the second moment it is AMSGrad's maximum.

    Args:
      decay: in [0, 1].
      accumulator_dtype: dtype of the maximum (default: the parameter's).

    Returns:
      A transformation with `MaxState`, initialised at zero.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.decayed_max(0.5)
      >>> s = tx.init(jnp.zeros(1))
      >>> u, s = tx.update(jnp.array([4.0]), s)
      >>> tx.update(jnp.array([1.0]), s)[0].tolist()
      [2.0]
    """

    def init(params):
        return MaxState(tree_full_like(params, 0.0, accumulator_dtype))

    def update(updates, state, params=None, **extra):
        check_same_tree(updates, state.max, "updates", "decayed_max's state")
        new = jax.tree.map(
            lambda g, m: jnp.maximum(_coef(decay, m) * m, g).astype(m.dtype), updates, state.max
        )
        return new, MaxState(new)

    return GradientTransformation(init, update)


class TraceState(NamedTuple):
    """State of `trace`: the momentum buffer, one array per parameter."""

    trace: Updates


@transformation({"decay": REAL})
def trace(decay: float, nesterov: bool = False, accumulator_dtype: Any = None) -> GradientTransformation:
    """Heavy-ball momentum ``v <- g + decay * v``; outputs ``v``, or ``g + decay * v`` (Nesterov).

    Args:
      decay: the momentum coefficient.
      nesterov: output the Nesterov look-ahead ``g + decay * v_new``.
      accumulator_dtype: dtype of the buffer (default: the parameter's).

    Returns:
      A transformation with `TraceState`.

    References:
      Polyak, "Some methods of speeding up the convergence of iteration methods", 1964.
      Sutskever, Martens, Dahl & Hinton, "On the importance of initialization and momentum
      in deep learning", ICML 2013.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.trace(0.9)
      >>> s = tx.init(jnp.zeros(1))
      >>> u, s = tx.update(jnp.ones(1), s)
      >>> [round(x, 4) for x in tx.update(jnp.ones(1), s)[0].tolist()]
      [1.9]
    """

    def init(params):
        return TraceState(tree_full_like(params, 0.0, accumulator_dtype))

    def update(updates, state, params=None, **extra):
        check_same_tree(updates, state.trace, "updates", "trace's state")
        step = lambda g, v: g + _coef(decay, v) * v
        new = jax.tree.map(step, updates, state.trace)
        out = jax.tree.map(step, updates, new) if nesterov else new
        new = jax.tree.map(lambda v, t: v.astype(t.dtype), new, state.trace)
        return out, TraceState(new)

    return GradientTransformation(init, update)


class UpdateRmsState(NamedTuple):
    """State of `scale_by_update_rms`: running mean of the squared outputs."""

    e_x: Updates


@transformation({"decay": UNIT, "eps": REAL})
def scale_by_update_rms(decay: float = 0.9, eps: float = 1e-6, accumulator_dtype: Any = None) -> GradientTransformation:
    """Multiplies by ``sqrt(E[x**2] + eps)``, the RMS of this stage's own past outputs.

    AdaDelta's numerator: the output feeds back into the state, which no chain of
    feed-forward stages can express, so it is one primitive.

    Args:
      decay: the decay of the running mean of squared outputs (AdaDelta's ``rho``).
      eps: added inside the root.
      accumulator_dtype: dtype of the running mean (default: the parameter's).

    Returns:
      A transformation with `UpdateRmsState`.

    References:
      Zeiler, "ADADELTA: An Adaptive Learning Rate Method", 2012. https://arxiv.org/abs/1212.5701

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.scale_by_update_rms(0.9, 0.0)
      >>> tx.update(jnp.ones(1), tx.init(jnp.zeros(1)))[0].tolist()
      [0.0]
    """

    def init(params):
        return UpdateRmsState(tree_full_like(params, 0.0, accumulator_dtype))

    def update(updates, state, params=None, **extra):
        check_same_tree(updates, state.e_x, "updates", "scale_by_update_rms's state")
        out = jax.tree.map(lambda g, e: g * jnp.sqrt(e + _coef(eps, e)), updates, state.e_x)
        new = jax.tree.map(
            lambda x, e: (_coef(decay, e) * e + (1 - _coef(decay, e)) * jnp.real(x * jnp.conj(x))).astype(e.dtype),
            out,
            state.e_x,
        )
        return out, UpdateRmsState(new)

    return GradientTransformation(init, update)
