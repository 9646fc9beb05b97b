"""Euclidean projections onto simple sets, and the stages that make updates land on a set.

The ``project_*`` projections act on one array at a time (a set is imposed leaf by leaf).
`project_params` computes ``P(w + u)`` and outputs ``P(w + u) - w`` (see `gradxform.projected`
for the optimizer built on it).

The ``projection_*`` functions are Optax's ``optax.projections``, under its names and
arguments: they project a whole pytree as one vector (the L2 ball of the tree's norm, the
simplex over all leaves together). They are defined in ``_tree_projections`` on top of the
per-array ones and reached as ``gx.projections.projection_l2_ball`` and so on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from gradxform._factory import transformation
from gradxform.core import EmptyState, GradientTransformation, check_same_tree, path_str
from gradxform.primitives.proximal import _needs_params, to_updates

Projection = Callable[..., jax.Array]


def project_box(x: jax.Array, lower: Any = -jnp.inf, upper: Any = jnp.inf) -> jax.Array:
    """Projects onto ``{w : lower <= w <= upper}`` (entrywise clipping).

    Args:
      x: a real array; integer and boolean arrays keep their dtype.
      lower: lower bound, a scalar or an array broadcastable to ``x``.
      upper: upper bound, likewise; ``lower <= upper``.

    Returns:
      ``x`` clipped into the box. For an integer or boolean ``x`` the bounds are first
      rounded inwards (``ceil(lower)``, ``floor(upper)``) and limited to the dtype's range,
      so the result is the nearest point of the box that the dtype can hold.

    References:
      Parikh & Boyd, "Proximal Algorithms", Foundations and Trends in Optimization, 2014,
      section 6.2. https://web.stanford.edu/~boyd/papers/prox_algs.html

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.project_box(jnp.array([-2.0, 0.5, 3.0]), 0.0, 1.0).tolist()
      [0.0, 0.5, 1.0]
    """
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        # Cast as they are, fractional bounds would truncate towards zero (lower=0.5 gives 0,
        # outside the box), and negative ones wrap in unsigned dtypes or become True in bool.
        smallest, largest = (0, 1) if x.dtype == bool else (jnp.iinfo(x.dtype).min, jnp.iinfo(x.dtype).max)
        lower = jnp.clip(jnp.ceil(jnp.asarray(lower, float)), smallest, largest)
        upper = jnp.clip(jnp.floor(jnp.asarray(upper, float)), smallest, largest)
    return jnp.clip(x, jnp.asarray(lower).astype(x.dtype), jnp.asarray(upper).astype(x.dtype))


def project_non_negative(x: jax.Array) -> jax.Array:
    """Projects onto the non-negative orthant ``{w : w >= 0}``.

    Args:
      x: a real array.

    Returns:
      ``max(x, 0)``.

    References:
      Parikh & Boyd, "Proximal Algorithms", Foundations and Trends in Optimization, 2014,
      section 6.2. https://web.stanford.edu/~boyd/papers/prox_algs.html

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.project_non_negative(jnp.array([-2.0, 0.5])).tolist()
      [0.0, 0.5]
    """
    return jax.nn.relu(x)


def project_l2_ball(x: jax.Array, radius: Any = 1.0) -> jax.Array:
    """Projects onto ``{w : ||w||_2 <= radius}`` (the whole array is one vector).

    Args:
      x: a real array.
      radius: the radius, > 0.

    Returns:
      ``x`` if inside, else ``x * radius / ||x||``.

    References:
      Parikh & Boyd, "Proximal Algorithms", Foundations and Trends in Optimization, 2014,
      section 6.2. https://web.stanford.edu/~boyd/papers/prox_algs.html

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.project_l2_ball(jnp.array([3.0, 4.0]), 1.0).tolist()
      [0.6000000238418579, 0.800000011920929]
    """
    norm = jnp.sqrt(jnp.sum(x * x))
    r = jnp.asarray(radius, x.dtype)
    return jnp.where(norm > r, x * (r / jnp.where(norm > r, norm, 1)), x)


def _simplex_threshold(v: jax.Array, total: jax.Array) -> jax.Array:
    """The ``theta`` with ``sum(max(v - theta, 0)) == total`` (sort-based, exact)."""
    u = jnp.sort(v)[::-1]
    cumulative = jnp.cumsum(u)
    j = jnp.arange(1, v.size + 1, dtype=v.dtype)
    support = u - (cumulative - total) / j > 0
    rho = jnp.max(jnp.where(support, jnp.arange(v.size), 0))
    return (cumulative[rho] - total) / (rho + 1).astype(v.dtype)


def _positive_part(excess: jax.Array) -> jax.Array:
    # relu, not maximum(excess, 0): an entry exactly at the threshold lies on a face of the
    # set, and its derivative must be that face's (0), not maximum's half-and-half split,
    # which would let a tangent change the output's sum.
    return jax.nn.relu(excess)


def project_simplex(x: jax.Array, total: Any = 1.0) -> jax.Array:
    """Projects onto the simplex ``{w : w >= 0, sum(w) = total}`` (all entries of the array).

    Args:
      x: a real array.
      total: the sum, > 0.

    Returns:
      ``max(x - theta, 0)`` with ``theta`` chosen so that the entries sum to ``total``.

    References:
      Duchi, Shalev-Shwartz, Singer & Chandra, "Efficient Projections onto the l1-Ball for
      Learning in High Dimensions", ICML 2008. https://doi.org/10.1145/1390156.1390191

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.project_simplex(jnp.array([2.0, 0.0, -1.0])).tolist()
      [1.0, 0.0, 0.0]
    """
    flat = jnp.ravel(x)
    theta = _simplex_threshold(flat, jnp.asarray(total, x.dtype))
    return _positive_part(x - theta)


def project_l1_ball(x: jax.Array, radius: Any = 1.0) -> jax.Array:
    """Projects onto ``{w : ||w||_1 <= radius}`` (the whole array is one vector).

    Args:
      x: a real array.
      radius: the radius, > 0.

    Returns:
      ``x`` if inside, else ``sign(x) * project_simplex(|x|, radius)``.

    References:
      Duchi et al., 2008 (see `project_simplex`).

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.project_l1_ball(jnp.array([2.0, -1.0]), 1.0).tolist()
      [1.0, -0.0]
    """
    r = jnp.asarray(radius, x.dtype)
    mag = jnp.abs(x)
    theta = _simplex_threshold(jnp.ravel(mag), r)
    shrunk = jnp.sign(x) * _positive_part(mag - theta)
    return jnp.where(jnp.sum(mag) > r, shrunk, x)


def project_hyperplane(x: jax.Array, normal: Any = None, offset: Any = 0.0) -> jax.Array:
    """Projects onto the hyperplane ``{w : <normal, w> = offset}``.

    Args:
      x: a real array.
      normal: a non-zero array shaped like ``x``; ``None`` means all ones (``sum(w) = offset``).
      offset: the right-hand side.

    Returns:
      ``x - (<normal, x> - offset) / ||normal||^2 * normal``.

    References:
      Parikh & Boyd, "Proximal Algorithms", Foundations and Trends in Optimization, 2014,
      section 6.2. https://web.stanford.edu/~boyd/papers/prox_algs.html

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.project_hyperplane(jnp.array([1.0, 2.0]), offset=1.0).tolist()
      [0.0, 1.0]
    """
    a = jnp.ones_like(x) if normal is None else jnp.asarray(normal, x.dtype)
    excess = (jnp.sum(a * x) - jnp.asarray(offset, x.dtype)) / jnp.sum(a * a)
    return x - excess * a


def _nudge_inside(u: jax.Array, w: jax.Array, project: Callable[[jax.Array], jax.Array]) -> jax.Array:
    """Moves ``u`` by units in the last place until ``w + u``, rounded, is a fixed point of
    an entrywise projection. ``fl(w + u)`` is monotone in ``u``, and where the difference
    was inexact ``|u|`` is at least half of ``|w + u|``, so each step moves the sum by about
    one unit: three steps suffice."""
    for _ in range(3):
        r = (w + u).astype(w.dtype)
        direction = project(r) - r
        target = jnp.where(direction > 0, jnp.inf, -jnp.inf).astype(u.dtype)
        u = jnp.where(direction != 0, jnp.nextafter(u, target), u)
    return u


@transformation()
def project_params(
    projection: Projection, *, apply_to: Any = None, leaf_args: Any = None, elementwise: bool = False
) -> GradientTransformation:
    """Makes the updates land on a set: outputs ``project(w + u) - w`` for each leaf.

    Placed last in a chain (after the learning rate), it turns any optimizer into a projected
    one (see `gradxform.projected`, which builds the usual sets by name).

    Args:
      projection: maps one real array (``w + u``) to its projection onto the set; called as
        ``projection(x, a)`` with ``a`` the matching leaf of ``leaf_args`` when that is given.
      apply_to: a tree of booleans shaped like the parameters: leaves marked ``False`` are
        left unconstrained; ``None`` constrains every leaf.
      leaf_args: a tree like the parameters of per-leaf arguments of the projection (a
        hyperplane's normal), or ``None``.
      elementwise: the set is bounded entry by entry (a box, an orthant); then the updates
        are corrected by units in the last place so that ``w + u`` *as rounded* lies in the
        set, not only the exact sum (other sets hold up to the rounding of their norms).

    Returns:
      A stateless transformation; its ``update`` needs ``params``.

    Raises:
      TypeError: if ``projection`` is not callable.
      ValueError: at ``update`` if ``params`` is not given, a tree does not match the
        parameters', or a constrained parameter is complex.

    References:
      Bertsekas, "Nonlinear Programming", 3rd ed., Athena Scientific, 2016, section 3.3
      (gradient projection). http://www.athenasc.com/nonlinbook.html

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.project_params(gx.project_non_negative)
      >>> p = jnp.array([1.0, 1.0])
      >>> gx.apply_updates(p, tx.update(jnp.array([-2.0, 0.5]), tx.init(p), p)[0]).tolist()
      [0.0, 1.5]
    """
    if not callable(projection):
        raise TypeError(f"project_params: projection must be a function of one array, got {projection!r}.")

    def update(updates, state, params=None, **extra):
        _needs_params("project_params", params)
        check_same_tree(updates, params, "updates", "parameters")
        mask = jax.tree.map(lambda _: True, params) if apply_to is None else apply_to
        check_same_tree(mask, params, "project_params apply_to", "parameters", shapes=False)
        if leaf_args is not None:
            check_same_tree(leaf_args, params, "projection's per-leaf arguments", "parameters")
        extras = jax.tree.map(lambda _: (), params) if leaf_args is None else jax.tree.map(lambda a: (a,), leaf_args)

        def one(u, w, on, args):
            target = w + u.astype(w.dtype)
            if not on:
                return target
            if jnp.iscomplexobj(w):
                raise ValueError(
                    "project_params projects onto sets of real arrays; a parameter is complex "
                    f"({w.dtype}). Exclude it with apply_to."
                )
            return projection(target, *args).astype(w.dtype)

        new = jax.tree.map(one, updates, params, mask, extras)
        out = to_updates(new, params)
        if elementwise:
            out = jax.tree.map(
                lambda u, w, on, args: _nudge_inside(u, w, lambda r: projection(r, *args)) if on else u,
                out,
                params,
                mask,
                extras,
            )
        return out, state

    return GradientTransformation(lambda params: EmptyState(), update)


@transformation()
def keep_params_nonnegative() -> GradientTransformation:
    """Changes the updates so that no parameter goes below zero (Optax's ``keep_params_nonnegative``).

    An update ``u`` that would take a parameter ``w`` below zero is replaced by ``-w``, which
    lands it exactly on zero; every other update passes unchanged. Put it last in a chain,
    after the learning rate. Parameters are expected to be non-negative already: a negative
    one is moved to zero by its first update whatever the gradient. To keep parameters in
    another set, see `project_params`.

    Returns:
      A stateless transformation; its ``update`` needs ``params``. Updates keep their dtype.

    Raises:
      ValueError: at ``update``, if ``params`` is not given, its tree differs from the
        updates', or a parameter is complex (naming it).

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.keep_params_nonnegative()
      >>> p = jnp.array([1.0, 1.0])
      >>> tx.update(jnp.array([-3.0, 0.5]), tx.init(p), p)[0].tolist()
      [-1.0, 0.5]
    """

    def update(updates, state, params=None, **extra):
        _needs_params("keep_params_nonnegative", params)
        check_same_tree(updates, params, "updates", "parameters", allow_none=True)

        def one(path, w, u):
            if w is None or u is None:
                return u
            if jnp.iscomplexobj(w) or jnp.iscomplexobj(u):
                raise ValueError(
                    f"keep_params_nonnegative: parameter '{path_str(path)}' is complex ({jnp.result_type(w, u)}); "
                    "only real parameters can be kept non-negative. Exclude it with gx.masked."
                )
            return jnp.where(w + u < 0, -w, u).astype(u.dtype)

        out = jax.tree_util.tree_map_with_path(one, params, updates, is_leaf=lambda x: x is None)
        return out, state

    return GradientTransformation(lambda params: EmptyState(), update)


# Imported last: the tree-level module builds on the per-array projections defined above.
from gradxform.primitives._tree_projections import (  # noqa: E402
    projection_box as projection_box,
    projection_halfspace as projection_halfspace,
    projection_hypercube as projection_hypercube,
    projection_hyperplane as projection_hyperplane,
    projection_l1_ball as projection_l1_ball,
    projection_l1_sphere as projection_l1_sphere,
    projection_l2_ball as projection_l2_ball,
    projection_l2_sphere as projection_l2_sphere,
    projection_linf_ball as projection_linf_ball,
    projection_non_negative as projection_non_negative,
    projection_simplex as projection_simplex,
    projection_vector as projection_vector,
)
