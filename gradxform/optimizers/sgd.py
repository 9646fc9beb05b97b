"""Gradient descent and its sign-based relatives: SGD, momentum, Nesterov, signSGD, Signum, Lion."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradxform._factory import transformation
from gradxform.combinators import chain, identity
from gradxform.core import (
    NON_NEGATIVE,
    UNIT,
    UNIT_CLOSED,
    GradientTransformation,
    Interval,
    Updates,
    check_choice,
    check_same_tree,
    tree_full_like,
)
from gradxform.primitives.elementwise import elementwise, scale_by_learning_rate, scale_by_sign
from gradxform.primitives.moments import _coef, ema, trace
from gradxform.primitives.weight_decay import MaskOrFn, add_decayed_weights


@transformation({"learning_rate": NON_NEGATIVE, "momentum": UNIT_CLOSED})
def sgd(
    learning_rate: float, momentum: float | None = None, nesterov: bool = False, accumulator_dtype: Any = None
) -> GradientTransformation:
    """Stochastic gradient descent, optionally with heavy-ball or Nesterov momentum.

    ``v_t = g_t + momentum * v_{t-1}``; ``u_t = -lr * v_t`` (or ``-lr * (g_t + momentum * v_t)``
    with Nesterov).

    Args:
      learning_rate: a number >= 0 or a schedule.
      momentum: in [0, 1], or ``None`` for none.
      nesterov: use Nesterov's look-ahead.
      accumulator_dtype: dtype of the momentum buffer (default: the parameter's).

    Returns:
      ``chain(trace(momentum, nesterov), scale_by_learning_rate(learning_rate))``.

    References:
      Robbins & Monro, "A Stochastic Approximation Method", 1951.
      Sutskever, Martens, Dahl & Hinton, "On the importance of initialization and momentum
      in deep learning", ICML 2013.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.sgd(0.1, momentum=0.9)
      >>> tx.update(jnp.ones(1), tx.init(jnp.zeros(1)))[0].tolist()
      [-0.10000000149011612]
    """
    return chain(
        trace(momentum, nesterov, accumulator_dtype) if momentum is not None else identity(),
        scale_by_learning_rate(learning_rate),
    )


@transformation({"learning_rate": NON_NEGATIVE})
def sign_sgd(learning_rate: float) -> GradientTransformation:
    """signSGD: step by the sign of the gradient.

    Args:
      learning_rate: a number >= 0 or a schedule.

    Returns:
      ``chain(scale_by_sign(), scale_by_learning_rate(learning_rate))``.

    References:
      Bernstein, Wang, Azizzadenesheli & Anandkumar, "signSGD: Compressed Optimisation for
      Non-Convex Problems", ICML 2018. https://arxiv.org/abs/1802.04434

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.sign_sgd(0.1)
      >>> tx.update(jnp.array([-5.0]), tx.init(jnp.zeros(1)))[0].tolist()
      [0.10000000149011612]
    """
    return chain(scale_by_sign(), scale_by_learning_rate(learning_rate))


@transformation({"learning_rate": NON_NEGATIVE, "beta": UNIT})
def signum(learning_rate: float, beta: float = 0.9, accumulator_dtype: Any = None) -> GradientTransformation:
    """Signum: step by the sign of an exponential moving average of the gradient.

    Args:
      learning_rate: a number >= 0 or a schedule.
      beta: decay of the moving average, in [0, 1).
      accumulator_dtype: dtype of the average (default: the parameter's).

    Returns:
      ``chain(ema(beta, debias=False), scale_by_sign(), scale_by_learning_rate(learning_rate))``
      (debiasing would not change the sign).

    References:
      Bernstein et al., "signSGD: Compressed Optimisation for Non-Convex Problems", 2018.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.signum(0.1)
      >>> tx.update(jnp.array([-5.0]), tx.init(jnp.zeros(1)))[0].tolist()
      [0.10000000149011612]
    """
    return chain(
        ema(beta, debias=False, accumulator_dtype=accumulator_dtype),
        scale_by_sign(),
        scale_by_learning_rate(learning_rate),
    )


class InterpolateState(NamedTuple):
    """State of `interpolate_momentum`: the momentum ``m``, one array per parameter."""

    mu: Updates


# Lion's momentum decay: b2 = 0 would make the output depend on a momentum already
# overwritten (see `interpolate_momentum`), so it is excluded.
_LION_B2 = Interval(0.0, 1.0, low_closed=False)


@transformation({"b1": UNIT_CLOSED, "b2": _LION_B2})
def interpolate_momentum(b1: float = 0.9, b2: float = 0.99, mu_dtype: Any = None) -> GradientTransformation:
    """Outputs ``(1 - b1) g + b1 m`` with the old ``m``, then sets ``m <- b2 m + (1 - b2) g``.

    Lion's momentum: the direction uses one interpolation rate, the memory another. Reading
    the state before writing it is what a chain of `ema` stages cannot do.

    The output is computed from the new momentum, ``(b1 / b2) m_t + (1 - b1 / b2) g_t``,
    which equals ``(1 - b1) g_t + b1 m_{t-1}``: reading the old ``m`` after the new one is
    computed makes XLA copy the whole buffer before updating it in place, an extra pass
    that made Lion take twice Adam's time. Hence ``b2 > 0``. With ``b1 <= b2`` (Lion's
    settings) the two weights are a convex combination, so nothing cancels. Only when ``m``
    is stored in another dtype than the gradient (and the stored ``m_t`` is rounded) is the
    old ``m`` read instead.

    Args:
      b1: interpolation rate of the output, in [0, 1].
      b2: decay of the momentum, in (0, 1].
      mu_dtype: dtype of the momentum (default: the parameter's).

    Returns:
      A transformation with `InterpolateState`.

    References:
      Chen et al., "Symbolic Discovery of Optimization Algorithms", 2023 (see `lion`).

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.interpolate_momentum(0.5, 0.5)
      >>> tx.update(jnp.ones(1), tx.init(jnp.zeros(1)))[0].tolist()
      [0.5]
    """

    def init(params):
        return InterpolateState(tree_full_like(params, 0.0, mu_dtype))

    def update(updates, state, params=None, **extra):
        check_same_tree(updates, state.mu, "updates", "interpolate_momentum's state")
        mu = jax.tree.map(
            lambda g, m: ((1 - _coef(b2, m)) * g + _coef(b2, m) * m).astype(m.dtype), updates, state.mu
        )

        if any(g.dtype != m.dtype for g, m in zip(jax.tree.leaves(updates), jax.tree.leaves(mu))):
            out = jax.tree.map(lambda g, m: (1 - _coef(b1, m)) * g + _coef(b1, m) * m, updates, state.mu)
            return out, InterpolateState(mu)

        def from_new(g, m):
            r = _coef(b1, m) / _coef(b2, m)
            return r * m + (1 - r) * g

        return jax.tree.map(from_new, updates, mu), InterpolateState(mu)

    return GradientTransformation(init, update)


_LION_MODES = ("hard", "smooth", "refined")


def _slope(owner: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
        raise ValueError(f"{owner}: {name} must be a finite number > 0, got {name}={value!r}.")
    return float(value)


@transformation()
def smooth_sign(beta: float) -> GradientTransformation:
    """``tanh(beta * u)`` for each update ``u``: a sign with slope ``beta`` at 0 (Lion's
    ``"smooth"`` mode, see `scale_by_lion`).

    Args:
      beta: the slope at 0, a finite number > 0.

    Returns:
      A stateless transformation.

    Raises:
      ValueError: if ``beta`` is not a finite number > 0.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> [round(x, 4) for x in gx.smooth_sign(2.0).update(jnp.array([-3.0, 0.1]), gx.EmptyState())[0].tolist()]
      [-1.0, 0.1974]
    """
    slope = _slope("smooth_sign", "beta", beta)
    return elementwise(lambda u: jnp.tanh(slope * u))


@transformation()
def refined_sign() -> GradientTransformation:
    """Each update ``u`` where ``|u| < 1``, its sign elsewhere (Lion's ``"refined"`` mode, see
    `scale_by_lion`): linear near 0, saturated beyond.

    Returns:
      A stateless transformation.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.refined_sign().update(jnp.array([-3.0, 0.5]), gx.EmptyState())[0].tolist()
      [-1.0, 0.5]
    """
    return elementwise(lambda u: jnp.where(jnp.abs(u) < 1, u, jnp.sign(u)))


@transformation({"b1": UNIT_CLOSED, "b2": _LION_B2})
def scale_by_lion(
    b1: float = 0.9, b2: float = 0.99, mu_dtype: Any = None, *, mode: str = "hard", smooth_beta: float = 1.0
) -> GradientTransformation:
    """Lion's preconditioner: the sign of the interpolated momentum (see `lion`).

    Args:
      b1, b2, mu_dtype: as in `lion`.
      mode: how the interpolated momentum ``x`` becomes the direction: ``"hard"``, its sign
        (the paper's Lion); ``"smooth"``, ``tanh(smooth_beta * x)``; ``"refined"``, ``x``
        where ``|x| < 1`` and its sign elsewhere (as Optax's ``scale_by_lion`` offers).
      smooth_beta: the slope of ``"smooth"`` at 0, a finite number > 0 (only read there).

    Returns:
      ``chain(interpolate_momentum(b1, b2, mu_dtype), scale_by_sign())`` in ``"hard"``
      mode, with `smooth_sign` or `refined_sign` in place of `scale_by_sign` otherwise.

    Raises:
      ValueError: for an unknown ``mode``, or in ``"smooth"`` mode a ``smooth_beta`` that
        is not > 0.

    References:
      Chen et al., "Symbolic Discovery of Optimization Algorithms", 2023.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.scale_by_lion()
      >>> tx.update(jnp.array([-3.0]), tx.init(jnp.zeros(1)))[0].tolist()
      [-1.0]
      >>> tx = gx.scale_by_lion(b1=0.0, mode="refined")
      >>> tx.update(jnp.array([-3.0, 0.5]), tx.init(jnp.zeros(2)))[0].tolist()
      [-1.0, 0.5]
    """
    check_choice("scale_by_lion", "mode", mode, _LION_MODES)
    if mode == "smooth":
        _slope("scale_by_lion", "smooth_beta", smooth_beta)
    direction = {"hard": scale_by_sign, "refined": refined_sign}.get(mode)
    return chain(interpolate_momentum(b1, b2, mu_dtype), direction() if direction else smooth_sign(smooth_beta))


@transformation({"learning_rate": NON_NEGATIVE, "b1": UNIT_CLOSED, "b2": _LION_B2, "weight_decay": NON_NEGATIVE})
def lion(
    learning_rate: float,
    b1: float = 0.9,
    b2: float = 0.99,
    mu_dtype: Any = None,
    weight_decay: float = 1e-3,
    mask: MaskOrFn = None,
) -> GradientTransformation:
    """Lion (EvoLved Sign Momentum).

    ``u_t = -lr * (sign((1 - b1) g_t + b1 m_{t-1}) + weight_decay * w_t)``, then
    ``m_t = b2 m_{t-1} + (1 - b2) g_t``.

    Args:
      learning_rate: a number >= 0 or a schedule.
      b1: interpolation rate of the update direction.
      b2: decay of the momentum.
      mu_dtype: dtype of the momentum (default: the parameter's).
      weight_decay: decoupled weight decay rate, >= 0.
      mask: which parameters to decay.

    Returns:
      ``chain(scale_by_lion(b1, b2), add_decayed_weights(weight_decay, mask),
      scale_by_learning_rate(learning_rate))``.

    References:
      Chen et al., "Symbolic Discovery of Optimization Algorithms", NeurIPS 2023.
      https://arxiv.org/abs/2302.06675

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.lion(0.1, weight_decay=0.0)
      >>> p = jnp.zeros(1)
      >>> tx.update(jnp.array([2.0]), tx.init(p), p)[0].tolist()
      [-0.10000000149011612]
    """
    return chain(
        scale_by_lion(b1, b2, mu_dtype), add_decayed_weights(weight_decay, mask), scale_by_learning_rate(learning_rate)
    )
