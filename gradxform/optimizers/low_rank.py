"""Low-rank optimizers from Optax's contrib: GaLore.

GaLore runs a base optimizer (Adam by default) on gradients of weight matrices projected
onto their top singular vectors, then maps its steps back: the base optimizer's state is
``rank`` wide instead of full. The projector is recomputed by an SVD every
``update_proj_gap`` steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradxform._factory import transformation
from gradxform.combinators import chain
from gradxform.core import (
    NON_NEGATIVE,
    REAL,
    GradientTransformation,
    Updates,
    call_update,
    check_positive_int,
    check_transformation,
    new_count,
    safe_increment,
)
from gradxform.optimizers.adam import scale_by_adam
from gradxform.primitives.elementwise import scale_by_learning_rate
from gradxform.primitives.weight_decay import add_decayed_weights


class GaLoreDimensionNumbers(NamedTuple):
    """Which axes of a parameter form the rows and the columns of the matrix GaLore projects.

    A parameter stored with more than two axes (an attention projection as
    ``(embed, heads, head_dim)``) is transposed and reshaped to a matrix whose rows are the
    ``reduction_axis`` axes and whose columns are the ``output_axis`` axes; every axis must
    be in exactly one of them.

    Attributes:
      reduction_axis: the axis, or axes, of the rows (negative counts from the end).
      output_axis: the axis, or axes, of the columns.

    Example:
      >>> import gradxform as gx
      >>> gx.GaLoreDimensionNumbers(reduction_axis=0, output_axis=(1, 2)).output_axis
      (1, 2)
    """

    reduction_axis: Sequence[int] | int = 0
    output_axis: Sequence[int] | int = 1


class GaLoreState(NamedTuple):
    """State of `scale_by_galore` (and so of `galore`).

    Attributes:
      count: int32 scalar, updates applied so far.
      base_optimizer_state: the base optimizer's state, for the projected (``rank``-wide)
        gradients of projected parameters and the full gradients of the others.
      projector: per parameter, its ``(m, rank)`` or ``(n, rank)`` orthonormal projector
        (parameter dtype), or a ``(0, 0)`` array for a parameter that is not projected.
    """

    count: jax.Array
    base_optimizer_state: Any
    projector: Updates


def _is_spec(x: Any) -> bool:
    return x is None or isinstance(x, GaLoreDimensionNumbers)


def _axes(axis: Sequence[int] | int, ndim: int) -> tuple[int, ...]:
    return tuple(a % ndim for a in ((axis,) if isinstance(axis, int) else axis))


def _as_matrix(x: jax.Array, spec: GaLoreDimensionNumbers) -> tuple[Callable, Callable]:
    """Functions to and from the ``(rows, columns)`` matrix view of arrays shaped like ``x``."""
    if x.ndim < 2:
        raise ValueError(
            f"scale_by_galore: a parameter of shape {x.shape} cannot be projected (it needs at "
            "least two axes); give it None in weight_dimension_numbers."
        )
    rows, cols = _axes(spec.reduction_axis, x.ndim), _axes(spec.output_axis, x.ndim)
    if set(rows) & set(cols) or len(set(rows) | set(cols)) != x.ndim or len(rows) + len(cols) != x.ndim:
        raise ValueError(
            "scale_by_galore: weight_dimension_numbers must put each axis of a parameter in exactly "
            f"one of reduction_axis and output_axis, got {spec} for shape {x.shape}."
        )
    order = rows + cols
    moved = tuple(x.shape[a] for a in order)
    shape2d = (math.prod(moved[: len(rows)]), math.prod(moved[len(rows) :]))
    back = tuple(order.index(i) for i in range(x.ndim))
    return (lambda y: jnp.transpose(y, order).reshape(shape2d)), (lambda y: jnp.transpose(y.reshape(moved), back))


@transformation({"scale": REAL})
def scale_by_galore(
    rank: int = 128,
    update_proj_gap: int = 200,
    scale: float = 1.0,
    base_optimizer: GradientTransformation | None = None,
    weight_dimension_numbers: Any = None,
) -> GradientTransformation:
    """GaLore's stage: the base optimizer run on low-rank projections of the gradients.

    The equations are in `galore`. One stage rather than a composition: each parameter's
    gradient changes shape (to ``rank`` wide) before the base optimizer and back after it.

    Args:
      rank: the projection's rank, an integer >= 1 (capped per parameter by its smaller
        side; structural).
      update_proj_gap: recompute the projectors every this many steps, an integer >= 1
        (structural).
      scale: multiplies the steps of projected parameters (not the others).
      base_optimizer: the transformation run in the projected space (default
        ``gx.scale_by_adam()``); it gets no ``params``, so it must not need them (use
        `galore`'s ``weight_decay`` rather than AdamW's).
      weight_dimension_numbers: which parameters to project and how: None (every
        parameter with exactly two axes, as ``(rows, columns)``), one
        `GaLoreDimensionNumbers` (for every parameter with two axes or more), a tree of
        them with None for parameters left unprojected, or a function of the parameters
        returning such a tree.

    Returns:
      A transformation with `GaLoreState`; extra keyword arguments of ``update`` go on to
      the base optimizer.

    Raises:
      ValueError: if ``rank`` or ``update_proj_gap`` is not an integer >= 1, or ``scale``
        is not a real number; at ``init``, if a dimension-number spec does not fit its
        parameter.
      TypeError: if ``base_optimizer`` is not a transformation.

    References:
      Zhao, Zhang, Chen, Wang, Anandkumar & Tian, "GaLore: Memory-Efficient LLM Training by
      Gradient Low-Rank Projection", ICML 2024. https://arxiv.org/abs/2403.03507

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.scale_by_galore(rank=1)
      >>> w = {"m": jnp.ones((4, 3)), "b": jnp.ones(3)}
      >>> state = tx.init(w)
      >>> gx.hyperparams(state)["scale"].item(), state.inner_state.projector["m"].shape
      (1.0, (4, 1))
    """
    check_positive_int("scale_by_galore", "rank", rank)
    check_positive_int("scale_by_galore", "update_proj_gap", update_proj_gap)
    if base_optimizer is None:
        base_optimizer = scale_by_adam()
    check_transformation("scale_by_galore", "base_optimizer", base_optimizer)
    dims = weight_dimension_numbers

    def specs(tree):
        if dims is None:
            return jax.tree.map(lambda p: GaLoreDimensionNumbers() if p.ndim == 2 else None, tree)
        if isinstance(dims, GaLoreDimensionNumbers):
            return jax.tree.map(lambda p: dims if p.ndim >= 2 else None, tree)
        return dims(tree) if callable(dims) else dims

    def geometry(p, spec):
        """The matrix view, whether the projector acts on the left, and the rank used."""
        to2d, from2d = _as_matrix(p, spec)
        m, n = jax.eval_shape(to2d, p).shape
        return to2d, from2d, m >= n, min(rank, m, n), (m, n)

    def init(params):
        def shapes(p, spec):
            if spec is None:
                return jnp.zeros((0, 0), p.dtype), jnp.zeros_like(p)
            _, _, left, r, (m, n) = geometry(p, spec)
            proxy = (r, n) if left else (m, r)
            return jnp.zeros((m if left else n, r), p.dtype), jnp.zeros(proxy, p.dtype)

        pairs = jax.tree.map(shapes, params, specs(params), is_leaf=_is_spec)
        outer, pair = jax.tree.structure(params), jax.tree.structure((0, 0))
        projector, proxies = jax.tree.transpose(outer, pair, pairs) if jax.tree.leaves(params) else (params, params)
        return GaLoreState(new_count(), base_optimizer.init(proxies), projector)

    def update(updates, state, params=None, **extra):
        refresh = state.count % update_proj_gap == 0

        def down(g, proj, spec):
            if spec is None:
                return g, proj
            to2d, _, left, r, _ = geometry(g, spec)
            g2 = to2d(g)

            def fresh():
                # The SVD runs in float32 whatever the gradients' dtype, as Optax's does.
                u, _, vh = jnp.linalg.svd(g2.astype(jnp.float32), full_matrices=False)
                return (u[:, :r] if left else vh[:r].T).astype(g.dtype)

            proj = jax.lax.cond(refresh, fresh, lambda: proj)
            return (proj.T @ g2 if left else g2 @ proj), proj

        def up(step, proj, g, spec):
            if spec is None:
                return step
            _, from2d, left, _, _ = geometry(g, spec)
            return (scale * from2d(proj @ step if left else step @ proj.T)).astype(g.dtype)

        outer, pair = jax.tree.structure(updates), jax.tree.structure((0, 0))
        if not jax.tree.leaves(updates):
            return updates, state._replace(count=safe_increment(state.count))
        pairs = jax.tree.map(down, updates, state.projector, specs(updates), is_leaf=_is_spec)
        low, projector = jax.tree.transpose(outer, pair, pairs)
        steps, base_state = call_update(base_optimizer, low, state.base_optimizer_state, None, extra)
        out = jax.tree.map(up, steps, projector, updates, specs(updates), is_leaf=_is_spec)
        return out, GaLoreState(safe_increment(state.count), base_state, projector)

    return GradientTransformation(init, update)


@transformation({"learning_rate": NON_NEGATIVE, "scale": REAL, "weight_decay": NON_NEGATIVE})
def galore(
    learning_rate: float,
    rank: int = 128,
    update_proj_gap: int = 200,
    scale: float = 1.0,
    base_optimizer: GradientTransformation | None = None,
    weight_decay: float = 0.0,
    mask: Any = None,
    weight_dimension_numbers: Any = None,
) -> GradientTransformation:
    r"""GaLore: full-parameter training with the optimizer's state in a low-rank subspace.

    For a projected parameter, with ``G_t`` its gradient as an ``m x n`` matrix and
    ``r = min(rank, m, n)``: every ``update_proj_gap`` steps (from the first),
    ``P = U[:, :r]`` from the SVD ``G_t = U S V^T`` when ``m >= n``, else ``P = V[:, :r]``;
    then::

        R_t = P^T G_t   (or G_t P)           the projected gradient, r x n (or m x r)
        N_t = base_optimizer(R_t)            Adam by default, with its state r-wide
        u_t = scale * P N_t   (or N_t P^T)   back to m x n
        w_{t+1} = w_t - learning_rate (u_t + weight_decay w_t)

    Other parameters go through ``base_optimizer`` unprojected. The base optimizer's
    moments are kept across projector changes, as in the paper and Optax.

    Args:
      learning_rate: the step size, a number >= 0 or a schedule (use 1 if
        ``base_optimizer`` already has one).
      rank: the projection's rank, an integer >= 1.
      update_proj_gap: recompute the projectors every this many steps, an integer >= 1.
      scale: multiplies the projected parameters' steps (the paper's ``alpha``).
      base_optimizer: the transformation run in the projected space, one that needs no
        ``params`` (default ``gx.scale_by_adam()``).
      weight_decay: decoupled weight decay in the full space, >= 0.
      mask: a tree of booleans (or a function of the parameters returning one) selecting
        the parameters to decay; None decays all.
      weight_dimension_numbers: which parameters to project, and their matrix view; see
        `scale_by_galore`.

    Returns:
      A transformation whose state holds `GaLoreState`; its ``update`` needs ``params``
      (for the weight decay).

    Raises:
      ValueError: for a hyperparameter out of range or a bad integer, naming it.
      TypeError: if ``base_optimizer`` is not a transformation.

    References:
      Zhao, Zhang, Chen, Wang, Anandkumar & Tian, "GaLore: Memory-Efficient LLM Training by
      Gradient Low-Rank Projection", ICML 2024. https://arxiv.org/abs/2403.03507

    Example:
      >>> import gradxform as gx, jax, jax.numpy as jnp
      >>> f = lambda w: jnp.sum(w["m"] ** 2) + jnp.sum(w["b"] ** 2)
      >>> tx = gx.galore(0.01, rank=2)
      >>> w = {"m": jnp.ones((4, 3)), "b": jnp.ones(3)}
      >>> u, state = tx.update(jax.grad(f)(w), tx.init(w), w)
      >>> [round(x, 4) for x in u["b"].tolist()]  # not projected: Adam's first step, -learning_rate * sign(g)
      [-0.01, -0.01, -0.01]
      >>> u["m"].shape, state.inner_state[0].projector["m"].shape
      ((4, 3), (4, 2))
    """
    check_positive_int("galore", "rank", rank)
    check_positive_int("galore", "update_proj_gap", update_proj_gap)
    return chain(
        scale_by_galore(rank, update_proj_gap, scale, base_optimizer, weight_dimension_numbers),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )
