"""Proximal operators, and the proximal gradient stage that applies them.

Proximal and projected methods act on the *parameters*, not on the update stream: they
compute the new parameters ``w_new = op(w + u)`` and, since every transformation returns
updates, they output ``w_new - w``. `to_updates` is that difference.

The operators work on one array at a time (a set is imposed leaf by leaf); the math of the
optimizers that use them is on `gradxform.optimizers.constrained`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradxform._factory import transformation
from gradxform.core import (
    NON_NEGATIVE,
    GradientTransformation,
    Params,
    Updates,
    call_update,
    check_same_tree,
)
from gradxform.primitives.elementwise import elementwise


def soft_threshold(x: jax.Array, threshold: jax.Array | float) -> jax.Array:
    """Shrinks each entry's magnitude by ``threshold``, to exactly zero when it is smaller.

    The proximal operator of ``threshold * |x|``: ``sign(x) * max(|x| - threshold, 0)``; for
    complex ``x`` the phase is kept and the modulus shrunk.

    Args:
      x: an array.
      threshold: a non-negative scalar or an array broadcastable to ``x``.

    Returns:
      An array like ``x``, with exact zeros where ``|x| <= threshold``.

    References:
      Donoho, "De-noising by soft-thresholding", IEEE Trans. Inf. Theory, 1995.
      https://doi.org/10.1109/18.382009

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.soft_threshold(jnp.array([-3.0, 0.5, 2.0]), 1.0).tolist()
      [-2.0, 0.0, 1.0]
    """
    mag = jnp.abs(x)
    keep = mag > threshold
    if jnp.iscomplexobj(x):
        phase = x / jnp.where(keep, mag, 1).astype(x.dtype)
        return jnp.where(keep, phase * (mag - threshold).astype(x.dtype), jnp.zeros_like(x))
    return jnp.where(keep, jnp.sign(x) * (mag - threshold), 0).astype(x.dtype)


def prox_elastic_net(x: jax.Array, step: jax.Array | float, l1: jax.Array | float, l2: jax.Array | float) -> jax.Array:
    """The proximal operator of ``step * (l1 |w| + l2 / 2 |w|^2)``, entry by entry.

    ``argmin_w |w - x|^2 / 2 + step (l1 |w| + l2 |w|^2 / 2)
    = soft_threshold(x, step * l1) / (1 + step * l2)``.

    Args:
      x: the point (``w - step * g`` in a proximal gradient step).
      step: the step size, a scalar or an array like ``x`` (per-coordinate steps).
      l1: L1 strength, >= 0.
      l2: L2 strength, >= 0.

    Returns:
      An array like ``x``.

    References:
      Parikh & Boyd, "Proximal Algorithms", Foundations and Trends in Optimization, 2014,
      sections 6.1.1 and 6.5.2. https://web.stanford.edu/~boyd/papers/prox_algs.html

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.prox_elastic_net(jnp.array([3.0, -0.5]), 1.0, 1.0, 1.0).tolist()
      [1.0, 0.0]
    """
    return soft_threshold(x, step * l1) / (1 + step * l2)


# --------------------------------------------------------------------------- stages


def to_updates(new_params: Params, params: Params) -> Updates:
    """The updates that move ``params`` to ``new_params``: ``new_params - params``, leaf by leaf.

    `gradxform.apply_updates` then lands exactly on ``new_params`` wherever the difference is
    exact in floating point: where a new value is 0 (a bound at zero is reached from
    anywhere) or within a factor 2 of the old one (Sterbenz's lemma); elsewhere within one
    rounding. `gradxform.project_params` adds a correction for sets bounded entry by entry.

    Args:
      new_params: the parameters the step should reach.
      params: the current parameters (same tree).

    Returns:
      Updates, leaf by leaf in the parameters' dtype.

    References:
      Sterbenz, "Floating-Point Computation", Prentice-Hall, 1974 (exact subtraction of
      numbers within a factor 2). https://archive.org/details/floatingpointcom0000ster

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> p = jnp.array([0.3, 7.0])
      >>> (p + gx.to_updates(jnp.array([0.5, 0.0]), p)).tolist()
      [0.5, 0.0]
    """
    return jax.tree.map(lambda new, p: new - p, new_params, params)


def _needs_params(owner: str, params: Params | None) -> None:
    if params is None:
        raise ValueError(
            f"{owner} computes new parameters, so its update() needs them: call "
            "update(updates, state, params)."
        )


@transformation()
def inverse_sqrt() -> GradientTransformation:
    """Replaces each update by ``1 / sqrt(u)`` (AdaGrad-style per-coordinate step sizes).

    Returns:
      A stateless transformation.

    References:
      Duchi, Hazan & Singer, "Adaptive Subgradient Methods for Online Learning and
      Stochastic Optimization", JMLR 2011. https://www.jmlr.org/papers/v12/duchi11a.html

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.inverse_sqrt().update(jnp.array([4.0]), gx.EmptyState())[0].tolist()
      [0.5]
    """
    return elementwise(jax.lax.rsqrt)


class ProximalState(NamedTuple):
    """State of `proximal_step`: the state of its step-size transformation."""

    step_sizes: Any


@transformation({"learning_rate": NON_NEGATIVE, "l1": NON_NEGATIVE, "l2": NON_NEGATIVE})
def proximal_step(
    learning_rate: float,
    l1: float = 0.0,
    l2: float = 0.0,
    preconditioner: GradientTransformation | None = None,
) -> GradientTransformation:
    """A proximal gradient step for ``l1 |w| + l2 / 2 |w|^2`` with per-coordinate step sizes.

    With ``a = learning_rate * preconditioner(g)`` (or ``learning_rate`` without one), the
    new parameters are ``prox_elastic_net(w - a g, a, l1, l2)``; the stage outputs
    ``w_new - w``. It reads both the gradient and the step size that the preconditioner
    derives from it, which is why the preconditioner is an argument rather than an earlier
    stage of a chain (see `gradxform.proximal_gradient` for the equations).

    Args:
      learning_rate: the base step size, >= 0.
      l1: L1 strength, >= 0.
      l2: L2 strength, >= 0.
      preconditioner: maps the gradients to positive per-coordinate multipliers of the step
        size (AdaGrad's ``1 / sqrt(sum g^2)``); ``None`` for plain gradient steps.

    Returns:
      A transformation with `ProximalState`; its ``update`` needs ``params``.

    Raises:
      ValueError: at ``update`` if ``params`` is not given.

    References:
      Parikh & Boyd, "Proximal Algorithms", 2014, section 4.2.
      https://web.stanford.edu/~boyd/papers/prox_algs.html

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.proximal_step(1.0, l1=1.0)
      >>> p = jnp.array([2.0, 0.5])
      >>> gx.apply_updates(p, tx.update(jnp.array([0.5, 0.0]), tx.init(p), p)[0]).tolist()
      [0.5, 0.0]
    """
    scaler = preconditioner

    def init(params):
        return ProximalState(scaler.init(params) if scaler is not None else ())

    def update(updates, state, params=None, **extra):
        _needs_params("proximal_step", params)
        check_same_tree(updates, params, "updates", "parameters")
        if scaler is not None:
            multipliers, inner = call_update(scaler, updates, state.step_sizes, params, extra)
        else:
            multipliers, inner = jax.tree.map(lambda g: jnp.ones((), jnp.real(g).dtype), updates), state.step_sizes

        def one(g, w, m):
            rdt = jnp.real(w).dtype
            a = jnp.asarray(learning_rate).astype(rdt) * jnp.real(m).astype(rdt)
            coef = lambda x: jnp.asarray(x).astype(rdt)
            return prox_elastic_net(w - a * g.astype(w.dtype), a, coef(l1), coef(l2)).astype(w.dtype)

        new = jax.tree.map(one, updates, params, multipliers)
        return to_updates(new, params), ProximalState(inner)

    return GradientTransformation(init, update)


