"""Second moments in sublinear memory: Adafactor's factored estimate and SM3's cover sets.

Both are single stages rather than compositions: their state does not have the
parameters' shapes (a row and a column statistic per matrix, one accumulator per axis),
and which form a parameter gets depends on its shape, so no chain of elementwise stages
over parameter-shaped state can express them. The optimizers built on them are in
`gradxform.optimizers.factored`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradxform._factory import transformation
from gradxform.core import (
    NON_NEGATIVE,
    UNIT_CLOSED,
    GradientTransformation,
    Updates,
    abs_sq,
    check_positive_int,
    check_same_tree,
    new_count,
    path_str,
    safe_increment,
    tree_map_unzip,
)


def _decay_rate_pow(step: jax.Array, exponent: Any = 0.8) -> jax.Array:
    """Adafactor's second-moment decay at 0-based ``step``: ``1 - (step + 1)^-exponent``."""
    t = jnp.asarray(step + 1, jnp.float32)
    return 1.0 - t ** (-jnp.asarray(exponent, jnp.float32))


def _factored_dims(shape: tuple[int, ...], factored: bool, min_dim_size_to_factor: int) -> tuple[int, int] | None:
    """The (second largest, largest) axes to factor over, or None to keep a full moment."""
    if not factored or len(shape) < 2:
        return None
    order = np.argsort(shape)
    if shape[order[-2]] < min_dim_size_to_factor:
        return None
    return int(order[-2]), int(order[-1])


def _real_dtype(x: Any) -> Any:
    return jnp.real(jnp.zeros((), x.dtype)).dtype


class FactoredRmsState(NamedTuple):
    """State of `scale_by_factored_rms`.

    Attributes:
      count: int32 scalar, updates applied so far (saturating).
      v_row: per parameter, the row statistic (the parameter's shape without its largest
        axis) if it is factored, else a scalar placeholder.
      v_col: per parameter, the column statistic (without its second largest axis) if it
        is factored, else a scalar placeholder.
      v: per parameter, the full second moment if it is not factored, else a scalar
        placeholder.
    """

    count: jax.Array
    v_row: Updates
    v_col: Updates
    v: Updates


@transformation({"decay_rate": NON_NEGATIVE, "epsilon": NON_NEGATIVE})
def scale_by_factored_rms(
    factored: bool = True,
    decay_rate: float = 0.8,
    step_offset: int = 0,
    min_dim_size_to_factor: int = 128,
    epsilon: float = 1e-30,
    decay_rate_fn: Callable[[jax.Array, Any], jax.Array] = _decay_rate_pow,
) -> GradientTransformation:
    """Divides by a factored estimate of the root mean square of the gradient (Adafactor).

    For a matrix ``G`` (any parameter whose two largest axes have at least
    ``min_dim_size_to_factor`` entries), with ``S = |G|^2 + epsilon`` and
    ``b_t = decay_rate_fn(t - step_offset, decay_rate)``::

        R_t = b_t R_{t-1} + (1 - b_t) mean(S, over the largest axis)       (rows)
        C_t = b_t C_{t-1} + (1 - b_t) mean(S, over the second largest axis) (columns)
        U_t = G / sqrt(R_t C_t / mean(R_t))

    Other parameters keep a full moving average ``V_t`` of ``S`` and get ``G / sqrt(V_t)``.

    Args:
      factored: whether to factor matrices at all.
      decay_rate: the exponent of the default decay schedule ``1 - (t + 1)^-decay_rate``.
      step_offset: subtracted from the step count (the first step of a fine-tuning phase);
        until the count reaches it, the decay is its step-0 value (Optax's is NaN there).
      min_dim_size_to_factor: factor only if the two largest axes are at least this long.
      epsilon: added to the squared gradient, >= 0.
      decay_rate_fn: ``(step, decay_rate) -> b_t``, the decay at a 0-based step.

    Returns:
      A transformation with `FactoredRmsState`.

    Raises:
      ValueError: if ``step_offset`` or ``min_dim_size_to_factor`` is not a suitable integer
        or ``decay_rate_fn`` is not callable.

    References:
      Shazeer & Stern, "Adafactor: Adaptive Learning Rates with Sublinear Memory Cost",
      ICML 2018. https://arxiv.org/abs/1804.04235

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.scale_by_factored_rms()
      >>> tx.update(jnp.array([-3.0, 0.5]), tx.init(jnp.zeros(2)))[0].tolist()  # first step: sign
      [-1.0, 1.0]
    """
    check_positive_int("scale_by_factored_rms", "step_offset", step_offset, minimum=0)
    check_positive_int("scale_by_factored_rms", "min_dim_size_to_factor", min_dim_size_to_factor, minimum=1)
    if not callable(decay_rate_fn):
        raise ValueError(
            f"scale_by_factored_rms: decay_rate_fn must be a function (step, decay_rate) -> decay, "
            f"got decay_rate_fn={decay_rate_fn!r}."
        )

    def statistic_shapes(shape: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
        """The shapes of a parameter's (row, column, full) statistics."""
        dims = _factored_dims(shape, factored, min_dim_size_to_factor)
        if dims is None:
            return (), (), tuple(shape)
        return tuple(np.delete(shape, dims[1]).tolist()), tuple(np.delete(shape, dims[0]).tolist()), ()

    def init(params):
        def rows(p):
            return jnp.zeros(statistic_shapes(p.shape)[0], _real_dtype(p))

        def cols(p):
            return jnp.zeros(statistic_shapes(p.shape)[1], _real_dtype(p))

        def full(p):
            # zeros_like keeps the parameter's sharding: this moment is as large as it.
            dims = _factored_dims(p.shape, factored, min_dim_size_to_factor)
            return jnp.zeros([], _real_dtype(p)) if dims else jnp.zeros_like(p, dtype=_real_dtype(p))

        return FactoredRmsState(
            new_count(), jax.tree.map(rows, params), jax.tree.map(cols, params), jax.tree.map(full, params)
        )

    def update(updates, state, params=None, **extra):
        check_same_tree(updates, state.v, "updates", "scale_by_factored_rms's state", shapes=False)
        for (path, g), r, c, v in zip(
            jax.tree_util.tree_flatten_with_path(updates)[0], *map(jax.tree.leaves, (state.v_row, state.v_col, state.v))
        ):
            have = (jnp.shape(r), jnp.shape(c), jnp.shape(v))
            if have != statistic_shapes(jnp.shape(g)):
                raise ValueError(
                    f"scale_by_factored_rms: the gradient at '{path_str(path)}' has shape {jnp.shape(g)}, "
                    f"but the state's (row, column, full) statistics for it have shapes {have}, made by "
                    "init() for a parameter of another shape. Give update() gradients shaped like the "
                    "parameters init() was called with."
                )
        # Before step_offset (a fresh state given an offset) the decay stays at its step 0:
        # (t - offset + 1)^-decay_rate would be inf or NaN there, as it is in Optax.
        rate = decay_rate_fn(jnp.maximum(state.count - step_offset, 0), decay_rate)
        eps = jnp.asarray(epsilon, jnp.float32)

        def leaf(g, v_row, v_col, v):
            sq = abs_sq(g) + eps.astype(_real_dtype(g))
            dims = _factored_dims(g.shape, factored, min_dim_size_to_factor)
            if dims is None:
                v = (rate * v + (1.0 - rate) * sq).astype(v.dtype)
                return g * v**-0.5, v_row, v_col, v
            d1, d0 = dims
            v_row = (rate * v_row + (1.0 - rate) * jnp.mean(sq, axis=d0)).astype(v_row.dtype)
            v_col = (rate * v_col + (1.0 - rate) * jnp.mean(sq, axis=d1)).astype(v_col.dtype)
            row_axis = d1 - 1 if d1 > d0 else d1
            row_factor = (v_row / jnp.mean(v_row, axis=row_axis, keepdims=True)) ** -0.5
            col_factor = v_col**-0.5
            return g * jnp.expand_dims(row_factor, d0) * jnp.expand_dims(col_factor, d1), v_row, v_col, v

        out, v_row, v_col, v = tree_map_unzip(leaf, updates, state.v_row, state.v_col, state.v)
        return out, FactoredRmsState(safe_increment(state.count), v_row, v_col, v)

    return GradientTransformation(init, update)


class Sm3State(NamedTuple):
    """State of `sm3_accumulator`: per parameter, a list of one accumulator per axis.

    A parameter of shape ``(n1, ..., nk)`` with ``k >= 2`` keeps vectors of lengths
    ``n1, ..., nk``; a vector or scalar keeps one array of its own shape.
    """

    mu: Any


def _reject_complex(owner: str, params: Any) -> None:
    if any(jnp.iscomplexobj(x) for x in jax.tree.leaves(params)):
        raise ValueError(f"{owner} does not support complex parameters (as Optax's SM3); use a real parametrisation.")


@transformation({"b2": UNIT_CLOSED, "eps": NON_NEGATIVE})
def sm3_accumulator(b2: float = 1.0, eps: float = 1e-8) -> GradientTransformation:
    """SM3's preconditioner: divides by the root of a cover-set bound on the sum of squares.

    For each entry, the bound is the minimum over its axes of that axis' accumulator; with
    ``c = 1`` if ``b2 == 1`` else ``1 - b2``::

        nu_t = c g_t^2 + b2 min_i mu_{t-1, i}       mu_{t, i} = max of nu_t over all axes but i
        u_t = g_t / sqrt(nu_t + eps)   (0 where nu_t = 0)

    Args:
      b2: decay of the accumulators, in [0, 1]; 1 accumulates a sum (AdaGrad-like).
      eps: added inside the root, >= 0.

    Returns:
      A transformation with `Sm3State`.

    Raises:
      ValueError: at ``init``, for complex parameters.

    References:
      Anil, Gupta, Koren & Singer, "Memory-Efficient Adaptive Optimization", NeurIPS 2019
      (see `sm3`). https://arxiv.org/abs/1901.11150

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.sm3_accumulator(eps=0.0)
      >>> tx.update(jnp.array([[3.0, -4.0]]), tx.init(jnp.zeros((1, 2))))[0].tolist()
      [[1.0, -1.0]]
    """

    def init(params):
        _reject_complex("sm3_accumulator", params)

        def per_axis(p):
            if p.ndim < 2:  # as large as the parameter: laid out like it (zeros_like)
                return [jnp.zeros_like(p)]
            return [jnp.zeros((p.shape[i],), p.dtype) for i in range(p.ndim)]

        return Sm3State(jax.tree.map(per_axis, params))

    def update(updates, state, params=None, **extra):
        _reject_complex("sm3_accumulator", updates)
        b2_ = jnp.asarray(b2, jnp.float32)
        c = jnp.where(b2_ == 1.0, 1.0, 1.0 - b2_)

        def leaf(g, accs):
            if g.ndim < 2:
                bound = accs[0]
            else:
                shapes = [[1] * i + [g.shape[i]] + [1] * (g.ndim - i - 1) for i in range(g.ndim)]
                bound = functools.reduce(jnp.minimum, [jnp.reshape(a, s) for a, s in zip(accs, shapes)])
            nu = c * g**2 + b2_ * bound
            out = g * jnp.where(nu > 0, jax.lax.rsqrt(nu + jnp.asarray(eps, jnp.float32)), 0.0)
            if g.ndim < 2:
                new = [nu.astype(accs[0].dtype)]
            else:
                new = [
                    jnp.max(nu, axis=tuple(j for j in range(g.ndim) if j != i)).astype(a.dtype)
                    for i, a in enumerate(accs)
                ]
            return out.astype(g.dtype), new

        leaves, treedef = jax.tree.flatten(updates)
        try:
            accs = treedef.flatten_up_to(state.mu)
        except (ValueError, TypeError):
            raise ValueError(
                "sm3_accumulator's state does not have the tree structure of the updates; "
                "give update() gradients of the tree its init() was called with."
            ) from None
        for (path, g), a in zip(jax.tree_util.tree_flatten_with_path(updates)[0], accs):
            have = [jnp.shape(x) for x in a] if isinstance(a, (list, tuple)) else [jnp.shape(a)]
            if have != ([g.shape] if g.ndim < 2 else [(n,) for n in g.shape]):
                raise ValueError(
                    f"sm3_accumulator: the gradient at '{path_str(path)}' has shape {g.shape}, but the "
                    f"state's accumulators for it have shapes {have}, made by init() for a parameter "
                    "of another shape. Give update() gradients shaped like the parameters init() was "
                    "called with."
                )
        results = [leaf(g, a) for g, a in zip(leaves, accs)]
        out = treedef.unflatten([r[0] for r in results])
        mu = treedef.unflatten([r[1] for r in results])
        return out, Sm3State(mu)

    return GradientTransformation(init, update)
