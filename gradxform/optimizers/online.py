"""Online-learning optimizers: FTRL-Proximal and Follow the Moving Leader.

Both keep a linear term ``z`` that sums (or averages) the gradients minus a proximal
correction ``sigma * w`` computed from the *current parameters*, and set the parameters in
closed form from ``z``: ``w_new = argmin_w <z, w> + (penalty)``. The stage outputs
``w_new - w``. Each is one monolithic stage: the increment of ``z`` needs the gradient, the
change of the per-coordinate step size between two steps and the parameters at once, three
inputs that a chain of single-input stages cannot carry. The closed form itself reuses
`gradxform.soft_threshold`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradxform._factory import transformation
from gradxform.core import (
    NON_NEGATIVE,
    POSITIVE,
    UNIT,
    GradientTransformation,
    Params,
    Updates,
    abs_sq,
    check_same_tree,
    new_count,
    safe_increment,
    tree_zeros_like,
)
from gradxform.primitives.moments import debias
from gradxform.primitives.proximal import soft_threshold, to_updates


def _needs_params(owner: str, params: Params | None) -> None:
    if params is None:
        raise ValueError(
            f"{owner} sets the parameters in closed form, so its update() needs them: call "
            "update(updates, state, params)."
        )


def _real(x: Any, like: jax.Array) -> jax.Array:
    return jnp.asarray(x).astype(jnp.real(like).dtype)


class FtrlState(NamedTuple):
    """State of `ftrl`, one array per parameter each.

    Attributes:
      z: the linear term, sum of ``g - sigma * w``.
      n: the sum of squared gradient magnitudes (real).
    """

    z: Updates
    n: Updates


@transformation({"learning_rate": POSITIVE, "l1": NON_NEGATIVE, "l2": NON_NEGATIVE, "beta": NON_NEGATIVE})
def ftrl(
    learning_rate: float,
    l1: float = 0.0,
    l2: float = 0.0,
    beta: float = 1.0,
    accumulator_dtype: Any = None,
) -> GradientTransformation:
    r"""FTRL-Proximal with per-coordinate learning rates and L1/L2 regularisation.

    Per coordinate, with gradient ``g`` at the current parameters ``w`` (McMahan et al.,
    Algorithm 1, with ``alpha = learning_rate``, ``lambda_1 = l1``, ``lambda_2 = l2``)::

        sigma = (sqrt(n + g^2) - sqrt(n)) / alpha
        z    <- z + g - sigma * w
        n    <- n + g^2
        w_new = 0                                            if |z| <= l1
              = -(z - l1 sign(z)) / ((beta + sqrt(n)) / alpha + l2)   otherwise

    Coordinates whose ``|z|`` stays below ``l1`` are set to exactly zero: this is what makes
    FTRL produce sparse models. With ``l1 = l2 = 0`` and ``beta = 0`` it is AdaGrad-like
    online gradient descent, centred on all past iterates. For complex parameters ``g^2`` is
    ``|g|^2`` and the threshold shrinks ``|z|`` keeping its phase.

    Args:
      learning_rate: ``alpha`` of the per-coordinate rate ``alpha / (beta + sqrt(n))``, > 0.
      l1: L1 strength ``lambda_1``, >= 0.
      l2: L2 strength ``lambda_2``, >= 0.
      beta: the smoothing term of the per-coordinate rate, >= 0 (the paper finds 1 good).
      accumulator_dtype: dtype of ``z`` and ``n`` (default: the parameter's).

    Returns:
      A monolithic stage with `FtrlState` (see the module docstring for why); its
      ``update`` needs ``params`` and outputs ``w_new - w``.

    Raises:
      ValueError: at ``update`` if ``params`` is not given.

    References:
      McMahan, Holt, Sculley et al., "Ad Click Prediction: a View from the Trenches",
      KDD 2013, Algorithm 1. https://research.google.com/pubs/archive/41159.pdf

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.ftrl(0.1, l1=1.0)
      >>> p = jnp.array([0.5, -0.5])
      >>> u, s = tx.update(jnp.array([0.1, -3.0]), tx.init(p), p)
      >>> gx.apply_updates(p, u).tolist()  # the first |z| is below l1: an exact zero
      [0.0, -0.2750000059604645]
    """

    def init(params):
        return FtrlState(tree_zeros_like(params, accumulator_dtype), tree_zeros_like(params, accumulator_dtype))

    def update(updates, state, params=None, **extra):
        _needs_params("ftrl", params)
        check_same_tree(updates, state.z, "updates", "ftrl's state")
        check_same_tree(params, state.z, "parameters", "ftrl's state")

        def one(g, w, z, n):
            alpha = _real(learning_rate, n)
            n_new = n + abs_sq(g).astype(n.dtype)
            sigma = (jnp.sqrt(n_new) - jnp.sqrt(n)) / alpha
            z_new = z + g.astype(z.dtype) - sigma.astype(z.dtype) * w.astype(z.dtype)
            denominator = (_real(beta, n) + jnp.sqrt(n_new)) / alpha + _real(l2, n)
            safe = jnp.where(denominator > 0, denominator, 1)
            w_new = jnp.where(denominator > 0, -soft_threshold(z_new, _real(l1, n)) / safe.astype(z.dtype), 0)
            return w_new.astype(w.dtype), z_new.astype(z.dtype), n_new.astype(n.dtype)

        out = jax.tree.map(one, updates, params, state.z, state.n)
        pick = lambda i: jax.tree.map(lambda _, o: o[i], updates, out)
        return to_updates(pick(0), params), FtrlState(pick(1), pick(2))

    return GradientTransformation(init, update)


class FtmlState(NamedTuple):
    """State of `ftml`.

    Attributes:
      count: int32 scalar, updates so far.
      v: moving average of squared gradient magnitudes, one array per parameter.
      d: the previous step's ``d`` (per-coordinate inverse step size).
      z: the moving linear term.
    """

    count: jax.Array
    v: Updates
    d: Updates
    z: Updates


@transformation({"learning_rate": POSITIVE, "b1": UNIT, "b2": UNIT, "eps": POSITIVE})
def ftml(
    learning_rate: float,
    b1: float = 0.6,
    b2: float = 0.999,
    eps: float = 1e-8,
    accumulator_dtype: Any = None,
) -> GradientTransformation:
    r"""Follow the Moving Leader: FTRL over exponentially weighted past losses.

    At step ``t = 1, 2, ...`` with gradient ``g`` at the current parameters ``w``
    (Zheng & Kwok, Algorithm 2, with ``eta = learning_rate``)::

        v_t = b2 v_{t-1} + (1 - b2) g^2
        d_t = (1 - b1^t) / eta * (sqrt(v_t / (1 - b2^t)) + eps)
        z_t = b1 z_{t-1} + (1 - b1) g - (d_t - b1 d_{t-1}) w
        w_new = -z_t / d_t

    starting from ``v_0 = d_0 = z_0 = 0``. For complex parameters ``g^2`` is ``|g|^2``.

    Args:
      learning_rate: ``eta``, > 0.
      b1: weight of past losses in the moving leader, in [0, 1) (the paper uses 0.6).
      b2: decay of the second moment, in [0, 1).
      eps: added to the root of the second moment, > 0.
      accumulator_dtype: dtype of ``v``, ``d`` and ``z`` (default: the parameter's).

    Returns:
      A monolithic stage with `FtmlState` (see the module docstring for why); its
      ``update`` needs ``params`` and outputs ``w_new - w``.

    Raises:
      ValueError: at ``update`` if ``params`` is not given.

    References:
      Zheng & Kwok, "Follow the Moving Leader in Deep Learning", ICML 2017, Algorithm 2.
      https://proceedings.mlr.press/v70/zheng17a.html

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.ftml(0.1)
      >>> p = jnp.array([1.0])
      >>> [round(x, 4) for x in gx.apply_updates(p, tx.update(jnp.array([2.0]), tx.init(p), p)[0]).tolist()]
      [0.9]
    """

    def init(params):
        zeros = lambda: tree_zeros_like(params, accumulator_dtype)
        return FtmlState(new_count(), zeros(), zeros(), zeros())

    def update(updates, state, params=None, **extra):
        _needs_params("ftml", params)
        check_same_tree(updates, state.z, "updates", "ftml's state")
        check_same_tree(params, state.z, "parameters", "ftml's state")
        count = safe_increment(state.count)
        t = count.astype(jnp.float32)
        c1, c2 = debias(b1, t), debias(b2, t)

        def one(g, w, v, d, z):
            rb1, rb2 = _real(b1, v), _real(b2, v)
            v_new = rb2 * v + (1 - rb2) * abs_sq(g).astype(v.dtype)
            d_new = _real(c1, v) / _real(learning_rate, v) * (jnp.sqrt(v_new / _real(c2, v)) + _real(eps, v))
            sigma = (d_new - rb1 * d).astype(z.dtype)
            z_new = rb1 * z + (1 - rb1) * g.astype(z.dtype) - sigma * w.astype(z.dtype)
            w_new = -z_new / d_new.astype(z.dtype)
            return w_new.astype(w.dtype), v_new.astype(v.dtype), d_new.astype(d.dtype), z_new.astype(z.dtype)

        out = jax.tree.map(one, updates, params, state.v, state.d, state.z)
        pick = lambda i: jax.tree.map(lambda _, o: o[i], updates, out)
        return to_updates(pick(0), params), FtmlState(count, pick(1), pick(2), pick(3))

    return GradientTransformation(init, update)
