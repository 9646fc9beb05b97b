"""Mechanic: learns the scale of any optimizer's steps, as Optax contrib's ``mechanize``."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradxform._factory import transformation
from gradxform.core import (
    NON_NEGATIVE,
    POSITIVE,
    GradientTransformation,
    Updates,
    call_update,
    check_positive_int,
    check_transformation,
    new_count,
    require_params,
    safe_increment,
)
from gradxform.primitives.clipping import global_norm
from gradxform.primitives.inner import tree_real_vdot


class MechanicState(NamedTuple):
    """State of `mechanize`, as Optax's.

    Attributes:
      base_optimizer_state: the wrapped optimizer's state.
      count: int32 scalar, steps taken (saturating).
      r: the per-beta discounted reward (shape ``(num_betas,)``, the parameters' lowest dtype).
      m: the per-beta running maximum of ``|h|``, the bound ``h`` is clipped to.
      v: the per-beta discounted sum of ``h^2``.
      s: the per-beta scale; their sum multiplies the base optimizer's accumulated steps.
      x0: the parameters at the first update (the reference point of the steps).
    """

    base_optimizer_state: Any
    count: jax.Array
    r: jax.Array
    m: jax.Array
    v: jax.Array
    s: jax.Array
    x0: Updates


def _lowest_float(params: Any) -> Any:
    dtypes = [jnp.result_type(x) for x in jax.tree.leaves(params)]
    return min(dtypes, key=lambda d: np.dtype(d).itemsize) if dtypes else jnp.float32


@transformation({"weight_decay": NON_NEGATIVE, "eps": NON_NEGATIVE, "s_init": POSITIVE})
def mechanize(
    base_optimizer: GradientTransformation,
    weight_decay: float = 1e-2,
    eps: float = 1e-8,
    s_init: float = 1e-6,
    num_betas: int = 6,
) -> GradientTransformation:
    r"""Mechanic: learns, online, the factor to multiply ``base_optimizer``'s steps by.

    Let ``u_t`` be the base optimizer's update and ``S_t = sum_i s_{t,i}``. Mechanic keeps
    ``x_0`` and plays ``x_t = x_0 - S_{t-1} D_t``, where ``D_t`` is minus the sum of the base
    optimizer's steps. Each step, for each ``beta_i = 1 - 10^{-i}``, ``i = 1..num_betas``::

        D_t = (x_0 - x_t) / (S_{t-1} + eps)
        g~_t = g_t + weight_decay S_{t-1} ||g_t|| / (||x_t|| + eps) x_t
        h_t = <g~_t, D_t>
        m_{t,i} = max(beta_i m_{t-1,i}, |h_t| + eps)
        v_{t,i} = beta_i^2 v_{t-1,i} + h_t^2
        r_{t,i} = beta_i r_{t-1,i} + clip(h_t, -m_{t-1,i}, m_{t-1,i}) s_{t-1,i}
        s_{t,i} = (s_init / num_betas m_{t,i} + max(r_{t,i}, 0)) / (sqrt(v_{t,i}) + eps)
        x_{t+1} = x_0 - S_t (D_t - u_t)

    The scale is a scalar over the whole parameter tree and every step is recomputed from
    ``x_0``, so this wraps the base optimizer as one stage rather than composing with it.

    Use a learning rate (or schedule peak) of 1 in the base optimizer: Mechanic learns the
    scale, not the shape of the schedule.

    Args:
      base_optimizer: the transformation whose steps are rescaled.
      weight_decay: Mechanic's own weight decay on ``g~`` (not the base optimizer's), >= 0;
        it reduces the variance between seeds.
      eps: Mechanic's epsilon, >= 0.
      s_init: the initial scale of each ``s_i``, > 0.
      num_betas: how many decays ``beta_i`` to run in parallel, an integer >= 1.

    Returns:
      A transformation with `MechanicState`; its ``update`` needs ``params`` and passes
      extra keyword arguments on to ``base_optimizer``.

    Raises:
      TypeError: if ``base_optimizer`` is not a transformation.
      ValueError: if ``num_betas`` is not an integer >= 1; at ``update`` without ``params``.

    References:
      Cutkosky, Defazio & Mehta, "Mechanic: A Learning Rate Tuner", NeurIPS 2023.
      https://arxiv.org/abs/2306.00144

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.mechanize(gx.sgd(1.0))
      >>> p = jnp.array([1.0, -1.0])
      >>> u, state = tx.update(2 * p, tx.init(p), p)
      >>> bool(jnp.all(jnp.abs(u) < 1e-4))  # the learned scale starts near s_init
      True
    """
    check_transformation("mechanize", "base_optimizer", base_optimizer)
    check_positive_int("mechanize", "num_betas", num_betas)

    def init(params):
        dtype = _lowest_float(params)
        zeros = jnp.zeros((num_betas,), dtype)
        return MechanicState(
            base_optimizer.init(params),
            new_count(),
            zeros,
            zeros,
            zeros,
            jnp.full((num_betas,), s_init, dtype),
            jax.tree.map(lambda p: jnp.asarray(p).copy(), params),
        )

    def update(updates, state, params=None, **extra):
        require_params("mechanize", params)
        base_steps, base_state = call_update(base_optimizer, updates, state.base_optimizer_state, params, extra)
        first = state.count == 0
        x0 = jax.tree.map(lambda p, a: jnp.where(first, p, a), params, state.x0)
        dtype = state.s.dtype
        s_sum = jnp.sum(state.s)
        decay = weight_decay * s_sum * global_norm(updates) / (global_norm(params) + eps)
        decayed = jax.tree.map(lambda g, p: g + decay * p, updates, params)
        delta_prev = jax.tree.map(lambda p, a: (a - p) / (s_sum + eps), params, x0)
        delta = jax.tree.map(lambda d, u: d - u, delta_prev, base_steps)
        h = tree_real_vdot(decayed, delta_prev).astype(dtype)
        betas = jnp.asarray([1.0 - 0.1**i for i in range(1, num_betas + 1)], dtype)
        m = jnp.maximum(betas * state.m, jnp.abs(h) + eps).astype(dtype)
        v = (betas**2 * state.v + h**2).astype(dtype)
        r = (betas * state.r + jnp.clip(h, -state.m, state.m) * state.s).astype(dtype)
        s = ((s_init / num_betas * m + jnp.maximum(r, 0.0)) / (jnp.sqrt(v) + eps)).astype(dtype)
        scale = jnp.sum(s)
        out = jax.tree.map(lambda a, d, p: (a - scale * d - p).astype(p.dtype), x0, delta, params)
        return out, MechanicState(base_state, safe_increment(state.count), r, m, v, s, x0)

    return GradientTransformation(init, update)


__all__ = ["MechanicState", "mechanize"]
