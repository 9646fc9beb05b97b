"""Euclidean projections of a whole pytree onto a set, under Optax's ``optax.projections`` names.

The tree is one vector: the L1 and L2 balls bound the norm of all leaves together, and the
simplex constrains the sum of all their entries. Elementwise sets (a box, the orthant, the
L-infinity ball) act leaf by leaf with the per-array projections of `gradxform.projections`,
and the L1 ball and simplex run their per-array routine on the leaves laid end to end.

Each leaf comes back with its dtype (integers become floating point where the projection
divides). Arguments are checked eagerly when they are concrete; traced ones pass unchecked.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradxform.core import NON_NEGATIVE, REAL, abs_sq, check_number, is_tracer, path_str
from gradxform.primitives.projections import (
    project_box,
    project_l1_ball,
    project_non_negative,
    project_simplex,
)

PyTree = Any


def _leaves(owner: str, tree: PyTree, *, real: bool = False) -> tuple[list[jax.Array], list[str], Any]:
    """The leaves as arrays, their paths and the tree's structure; complex leaves rejected if ``real``."""
    with_paths, treedef = jax.tree_util.tree_flatten_with_path(tree)
    paths = [path_str(p) for p, _ in with_paths]
    arrays = [jnp.asarray(x) for _, x in with_paths]
    if real:
        for path, x in zip(paths, arrays):
            if jnp.iscomplexobj(x):
                raise ValueError(
                    f"{owner}: the set is defined for real trees, but leaf '{path}' is complex ({x.dtype})."
                )
    return arrays, paths, treedef


def _float_dtype(x: jax.Array) -> Any:
    """The leaf's dtype, or the default float for an integer or boolean leaf."""
    return jnp.result_type(x, float)


def _accumulator(arrays: Sequence[jax.Array]) -> Any:
    """A dtype for sums over all leaves: at least float32, complex if any leaf is."""
    return jnp.result_type(jnp.float32, *arrays)


def _vdot(a: Sequence[jax.Array], b: Sequence[jax.Array]) -> jax.Array:
    """``<a, b> = sum(conj(a) * b)`` over all leaves (elementwise, so no reduced-precision matmul)."""
    dtype = _accumulator([*a, *b])
    return sum((jnp.sum(jnp.conj(x.astype(dtype)) * y.astype(dtype)) for x, y in zip(a, b)), jnp.zeros([], dtype))


def _squared_norm(arrays: Sequence[jax.Array]) -> jax.Array:
    """``sum |x|^2`` over all leaves, real, in at least float32."""
    dtype = jnp.result_type(jnp.float32, *(jnp.real(x).dtype for x in arrays))
    return sum((jnp.sum(abs_sq(x.astype(jnp.result_type(x, dtype)))) for x in arrays), jnp.zeros([], dtype))


def _scaled(arrays: Sequence[jax.Array], factor: jax.Array) -> list[jax.Array]:
    return [(x * factor).astype(_float_dtype(x)) for x in arrays]


def _on_concatenation(
    owner: str, arrays: Sequence[jax.Array], project: Callable[[jax.Array], jax.Array]
) -> list[jax.Array]:
    """Applies a per-array projection to all leaves laid end to end, and splits the result."""
    if sum(x.size for x in arrays) == 0:
        raise ValueError(f"{owner}: tree has no entries; the set it projects onto would be empty.")
    dtype = jnp.result_type(float, *arrays)
    flat = project(jnp.concatenate([jnp.ravel(x).astype(dtype) for x in arrays]))
    out, start = [], 0
    for x in arrays:
        out.append(flat[start : start + x.size].reshape(x.shape).astype(_float_dtype(x)))
        start += x.size
    return out


def _per_leaf(
    owner: str, name: str, value: Any, arrays: Sequence[jax.Array], paths: Sequence[str], treedef: Any
) -> list[Any]:
    """A scalar broadcast to every leaf, or the leaves of a tree shaped like ``tree``."""
    if value is None:
        raise ValueError(f"{owner}: {name} must be a number or a tree like tree, got None.")
    if jax.tree_util.treedef_is_leaf(jax.tree.structure(value)):
        values = [value] * len(arrays)
    elif jax.tree.structure(value) == treedef:
        values = jax.tree.leaves(value)
    else:
        raise ValueError(
            f"{owner}: {name} must be a scalar or a tree with the structure of tree "
            f"({treedef}), got {jax.tree.structure(value)}."
        )
    for path, x, v in zip(paths, arrays, values):
        try:
            fits = jnp.broadcast_shapes(np.shape(v), x.shape) == x.shape
        except ValueError:
            fits = False
        if not fits:
            raise ValueError(
                f"{owner}: {name} at leaf '{path}' has shape {np.shape(v)}, which does not broadcast "
                f"to the leaf's shape {x.shape}."
            )
        if not is_tracer(v) and jnp.iscomplexobj(v):
            raise ValueError(f"{owner}: {name} must be real, got a complex value at leaf '{path}'.")
    return values


def _check_direction(
    owner: str, a: PyTree, arrays: Sequence[jax.Array], paths: Sequence[str], treedef: Any
) -> list[jax.Array]:
    """The leaves of ``a``, which must be shaped like ``x`` and, when concrete, not all zero."""
    if jax.tree.structure(a) != treedef:
        raise ValueError(
            f"{owner}: a must have the tree structure of x ({treedef}), got {jax.tree.structure(a)}."
        )
    a_arrays = [jnp.asarray(v) for v in jax.tree.leaves(a)]
    for path, x, v in zip(paths, arrays, a_arrays):
        if v.shape != x.shape:
            raise ValueError(f"{owner}: a has shape {v.shape} at leaf '{path}' but x has {x.shape}.")
    if a_arrays and not any(is_tracer(v) for v in a_arrays) and not any(bool(jnp.any(v != 0)) for v in a_arrays):
        raise ValueError(f"{owner}: a must be non-zero; with a = 0 the set is empty or everything (0/0).")
    return a_arrays


def projection_non_negative(tree: PyTree) -> PyTree:
    """Projects a tree onto the non-negative orthant ``{p : p >= 0}``, leaf by leaf.

    Args:
      tree: a tree of real arrays or numbers.

    Returns:
      ``max(tree, 0)``, a tree of arrays with the structure of ``tree``.

    Raises:
      ValueError: if a leaf is complex.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.projections.projection_non_negative({"w": jnp.array([-1.0, 2.0])})["w"].tolist()
      [0.0, 2.0]
    """
    arrays, _, treedef = _leaves("projection_non_negative", tree, real=True)
    return jax.tree.unflatten(treedef, [project_non_negative(x) for x in arrays])


def projection_box(tree: PyTree, lower: Any, upper: Any) -> PyTree:
    """Projects a tree onto the box ``{p : lower <= p <= upper}`` (entrywise clipping).

    Args:
      tree: a tree of real arrays or numbers.
      lower: the lower bound: a scalar for every leaf, or a tree with the structure of
        ``tree`` whose leaves broadcast to its leaves. Cast to each leaf's dtype.
      upper: the upper bound, likewise; ``lower <= upper`` everywhere.

    Returns:
      ``clip(tree, lower, upper)``, with the structure of ``tree``.

    Raises:
      ValueError: if a bound is neither a scalar nor a tree like ``tree``, does not broadcast
        to a leaf, or (when concrete) ``lower > upper`` somewhere; or if a leaf is complex.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.projections.projection_box(jnp.array([-2.0, 0.5, 3.0]), 0.0, 1.0).tolist()
      [0.0, 0.5, 1.0]
    """
    return _box("projection_box", tree, lower, upper, ("lower", "upper"))


def _box(owner: str, tree: PyTree, lower: Any, upper: Any, names: tuple[str, str]) -> PyTree:
    arrays, paths, treedef = _leaves(owner, tree, real=True)
    lowers = _per_leaf(owner, names[0], lower, arrays, paths, treedef)
    uppers = _per_leaf(owner, names[1], upper, arrays, paths, treedef)
    for path, lo, hi in zip(paths, lowers, uppers):
        if not (is_tracer(lo) or is_tracer(hi)) and not np.all(np.asarray(lo) <= np.asarray(hi)):
            raise ValueError(
                f"{owner}: the box is empty at leaf '{path}': {names[0]} must be <= {names[1]} "
                f"everywhere, got {names[0]}={lo!r} and {names[1]}={hi!r}."
            )
    return jax.tree.unflatten(treedef, [project_box(x, lo, hi) for x, lo, hi in zip(arrays, lowers, uppers)])


def projection_hypercube(tree: PyTree, scale: Any = 1) -> PyTree:
    """Projects a tree onto the hypercube ``{p : 0 <= p <= scale}`` (the unit cube by default).

    Args:
      tree: a tree of real arrays or numbers.
      scale: the side, >= 0: a scalar for every leaf or a tree like ``tree``.

    Returns:
      ``clip(tree, 0, scale)``, with the structure of ``tree``.

    Raises:
      ValueError: as `projection_box`, naming ``scale`` (a negative side is an empty cube).

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.projections.projection_hypercube({"w": jnp.array([-1.0, 0.5, 2.0])})["w"].tolist()
      [0.0, 0.5, 1.0]
    """
    if jax.tree_util.treedef_is_leaf(jax.tree.structure(scale)) and np.ndim(scale) == 0:
        check_number("projection_hypercube", "scale", scale, NON_NEGATIVE)
    return _box("projection_hypercube", tree, 0, scale, ("0", "scale"))


def projection_linf_ball(tree: PyTree, scale: Any = 1) -> PyTree:
    """Projects a tree onto the L-infinity ball ``{p : max |p| <= scale}`` (clipping to ``[-scale, scale]``).

    Args:
      tree: a tree of real arrays or numbers.
      scale: the radius, a scalar >= 0.

    Returns:
      ``clip(tree, -scale, scale)``, with the structure of ``tree``.

    Raises:
      ValueError: if ``scale`` is not a finite scalar >= 0, or a leaf is complex.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.projections.projection_linf_ball(jnp.array([-3.0, 0.5, 2.0]), 1.0).tolist()
      [-1.0, 0.5, 1.0]
    """
    check_number("projection_linf_ball", "scale", scale, NON_NEGATIVE)
    return _box("projection_linf_ball", tree, -jnp.asarray(scale), scale, ("-scale", "scale"))


def projection_simplex(tree: PyTree, scale: Any = 1) -> PyTree:
    """Projects a tree onto the simplex ``{p : p >= 0, sum(p) = scale}`` over all its entries.

    All leaves form one vector: the entries of the whole tree, not of each leaf, sum to
    ``scale``. The sort-based algorithm of Duchi et al. (exact, ``O(n log n)``) runs on the
    leaves laid end to end (`gradxform.projections.project_simplex`).

    Args:
      tree: a tree of real arrays or numbers, with at least one entry.
      scale: the sum, a scalar >= 0 (the probability simplex by default).

    Returns:
      ``max(tree - theta, 0)`` with the one ``theta`` that makes all entries sum to ``scale``.

    Raises:
      ValueError: if ``scale`` is not a finite scalar >= 0, a leaf is complex, or the tree has
        no entries.

    References:
      Duchi, Shalev-Shwartz, Singer & Chandra, "Efficient Projections onto the l1-Ball for
      Learning in High Dimensions", ICML 2008. https://doi.org/10.1145/1390156.1390191

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> p = gx.projections.projection_simplex({"a": jnp.array([2.0, 0.0]), "b": jnp.array([1.5])})
      >>> p["a"].tolist(), p["b"].tolist()
      ([0.75, 0.0], [0.25])
    """
    check_number("projection_simplex", "scale", scale, NON_NEGATIVE)
    arrays, _, treedef = _leaves("projection_simplex", tree, real=True)
    return jax.tree.unflatten(
        treedef, _on_concatenation("projection_simplex", arrays, lambda v: project_simplex(v, scale))
    )


def _signed(owner: str, tree: PyTree, project: Callable[[jax.Array], jax.Array], *, empty_ok: bool) -> PyTree:
    """``sign(tree) * P(|tree|)`` with ``P`` applied to all magnitudes together."""
    arrays, _, treedef = _leaves(owner, tree)
    if empty_ok and sum(x.size for x in arrays) == 0:
        return jax.tree.unflatten(treedef, arrays)
    magnitudes = _on_concatenation(owner, [jnp.abs(x) for x in arrays], project)
    return jax.tree.unflatten(
        treedef, [(jnp.sign(x) * m).astype(_float_dtype(x)) for x, m in zip(arrays, magnitudes)]
    )


def projection_l1_sphere(tree: PyTree, scale: Any = 1) -> PyTree:
    """Projects a tree onto the L1 sphere ``{p : sum |p| = scale}`` of all its entries.

    Computed as ``sign(tree) * projection_simplex(|tree|, scale)``. Entries that are zero stay
    zero, so a tree with too few non-zero entries (the zero tree, say) comes back with an L1
    norm below ``scale``, as in Optax.

    Args:
      tree: a tree of real or complex arrays, with at least one entry.
      scale: the radius, a scalar >= 0.

    Returns:
      The projection, with the structure of ``tree``.

    Raises:
      ValueError: if ``scale`` is not a finite scalar >= 0, or the tree has no entries.

    References:
      Duchi, Shalev-Shwartz, Singer & Chandra, "Efficient Projections onto the l1-Ball for
      Learning in High Dimensions", ICML 2008. https://doi.org/10.1145/1390156.1390191

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.projections.projection_l1_sphere(jnp.array([0.25, -0.25]), 1.0).tolist()
      [0.5, -0.5]
    """
    check_number("projection_l1_sphere", "scale", scale, NON_NEGATIVE)
    return _signed("projection_l1_sphere", tree, lambda v: project_simplex(v, scale), empty_ok=False)


def projection_l1_ball(tree: PyTree, scale: Any = 1) -> PyTree:
    """Projects a tree onto the L1 ball ``{p : sum |p| <= scale}`` of all its entries.

    A tree inside the ball comes back unchanged; one outside is projected onto the sphere
    (`projection_l1_sphere`), by the per-array routine `gradxform.projections.project_l1_ball`
    run on the magnitudes of all leaves laid end to end.

    Args:
      tree: a tree of real or complex arrays.
      scale: the radius, a scalar >= 0.

    Returns:
      The projection, with the structure of ``tree``.

    Raises:
      ValueError: if ``scale`` is not a finite scalar >= 0.

    References:
      Duchi, Shalev-Shwartz, Singer & Chandra, "Efficient Projections onto the l1-Ball for
      Learning in High Dimensions", ICML 2008. https://doi.org/10.1145/1390156.1390191

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> p = gx.projections.projection_l1_ball({"w": jnp.array([2.5, 3.5]), "b": jnp.array(0.0)})
      >>> p["w"].tolist(), p["b"].tolist()
      ([0.0, 1.0], 0.0)
    """
    check_number("projection_l1_ball", "scale", scale, NON_NEGATIVE)
    return _signed("projection_l1_ball", tree, lambda v: project_l1_ball(v, scale), empty_ok=True)


def projection_l2_sphere(tree: PyTree, scale: Any = 1) -> PyTree:
    """Projects a tree onto the L2 sphere ``{p : ||p||_2 = scale}`` (the norm of all leaves).

    Every point of the sphere is nearest to the zero tree, which has no unique projection:
    it comes back as NaN, as in Optax.

    Args:
      tree: a tree of real or complex arrays.
      scale: the radius, a scalar >= 0.

    Returns:
      ``tree * scale / ||tree||``, with the structure of ``tree``.

    Raises:
      ValueError: if ``scale`` is not a finite scalar >= 0.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.projections.projection_l2_sphere({"w": jnp.array([3.0]), "b": jnp.array(4.0)}, 10.0)["w"].tolist()
      [6.0]
    """
    check_number("projection_l2_sphere", "scale", scale, NON_NEGATIVE)
    arrays, _, treedef = _leaves("projection_l2_sphere", tree)
    factor = scale / jnp.sqrt(_squared_norm(arrays))
    return jax.tree.unflatten(treedef, _scaled(arrays, factor))


def projection_l2_ball(tree: PyTree, scale: Any = 1) -> PyTree:
    """Projects a tree onto the L2 ball ``{p : ||p||_2 <= scale}`` (the norm of all leaves).

    Args:
      tree: a tree of real or complex arrays.
      scale: the radius, a scalar >= 0.

    Returns:
      ``tree`` itself (exactly) if inside, else ``tree * scale / ||tree||``.

    Raises:
      ValueError: if ``scale`` is not a finite scalar >= 0.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> p = gx.projections.projection_l2_ball({"w": jnp.array([3.0]), "b": jnp.array(4.0)})
      >>> round(float(p["w"][0]), 6), round(float(p["b"]), 6)
      (0.6, 0.8)
    """
    check_number("projection_l2_ball", "scale", scale, NON_NEGATIVE)
    arrays, _, treedef = _leaves("projection_l2_ball", tree)
    squared = _squared_norm(arrays)
    radius = jnp.asarray(scale, squared.dtype)
    outside = squared > radius * radius
    # A factor of exactly 1 inside the ball returns the tree bit for bit.
    factor = jnp.where(outside, radius / jnp.sqrt(jnp.where(outside, squared, 1)), 1)
    return jax.tree.unflatten(treedef, _scaled(arrays, factor))


def projection_vector(x: PyTree, a: PyTree) -> PyTree:
    """Projects a tree onto the line spanned by the tree ``a``: ``<a, x> / <a, a> * a``.

    For complex trees ``<a, x> = sum(conj(a) * x)`` (Optax conjugates ``x`` instead, which
    gives the conjugate coefficient; real trees agree).

    Args:
      x: the tree to project.
      a: the direction, a non-zero tree with the structure and shapes of ``x``.

    Returns:
      A tree with the structure of ``x``.

    Raises:
      ValueError: if ``a`` differs from ``x`` in structure or shapes, or (when concrete) is zero.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.projections.projection_vector(jnp.array([2.0, 0.0]), jnp.array([1.0, 1.0])).tolist()
      [1.0, 1.0]
    """
    arrays, paths, treedef = _leaves("projection_vector", x)
    directions = _check_direction("projection_vector", a, arrays, paths, treedef)
    coefficient = _vdot(directions, arrays) / _squared_norm(directions)
    return jax.tree.unflatten(
        treedef, [(coefficient * d).astype(jnp.result_type(d, v, float)) for d, v in zip(directions, arrays)]
    )


def projection_hyperplane(x: PyTree, a: PyTree, b: Any) -> PyTree:
    """Projects a tree onto the hyperplane ``{p : <a, p> = b}``: ``x + (b - <a, x>) / <a, a> * a``.

    Args:
      x: the tree to project.
      a: the normal, a non-zero tree with the structure and shapes of ``x``.
      b: the offset, a real scalar.

    Returns:
      A tree with the structure of ``x``.

    Raises:
      ValueError: if ``a`` differs from ``x`` in structure or shapes or (when concrete) is
        zero, or ``b`` is not a finite real scalar.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.projections.projection_hyperplane(jnp.array([1.0, 2.0]), jnp.array([1.0, 1.0]), 1.0).tolist()
      [0.0, 1.0]
    """
    return _affine("projection_hyperplane", x, a, b, halfspace=False)


def projection_halfspace(x: PyTree, a: PyTree, b: Any) -> PyTree:
    """Projects a tree onto the half-space ``{p : <a, p> <= b}``.

    A tree inside comes back unchanged; one outside is projected onto the boundary
    (`projection_hyperplane`).

    Args:
      x: the tree to project, real.
      a: the outward normal, a non-zero real tree with the structure and shapes of ``x``.
      b: the offset, a real scalar.

    Returns:
      ``x + min(b - <a, x>, 0) / <a, a> * a``, with the structure of ``x``.

    Raises:
      ValueError: as `projection_hyperplane`, or if a leaf of ``x`` or ``a`` is complex.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.projections.projection_halfspace(jnp.array([1.0, 2.0]), jnp.array([1.0, 1.0]), 1.0).tolist()
      [0.0, 1.0]
    """
    return _affine("projection_halfspace", x, a, b, halfspace=True)


def _affine(owner: str, x: PyTree, a: PyTree, b: Any, *, halfspace: bool) -> PyTree:
    arrays, paths, treedef = _leaves(owner, x, real=halfspace)
    directions = _check_direction(owner, a, arrays, paths, treedef)
    if halfspace:
        _leaves(owner, a, real=True)
    check_number(owner, "b", b, REAL)
    step = (b - _vdot(directions, arrays)) / _squared_norm(directions)
    if halfspace:
        step = jnp.minimum(step, 0)
    return jax.tree.unflatten(
        treedef, [(v + step * d).astype(jnp.result_type(v, d, float)) for v, d in zip(arrays, directions)]
    )
