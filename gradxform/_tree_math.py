"""Arithmetic and reductions over whole pytrees (``gx.tree.add``, ``gx.tree.norm``, ...).

Binary operations check their trees' structures first and raise a ``ValueError`` that
names the arguments and the differing paths; ``jax.tree.map`` alone reports a mismatch
with its internal node types.
"""

from __future__ import annotations

import builtins
import functools
import math
import operator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradxform.core import PyTree, abs_sq, check_same_tree
from gradxform.primitives.inner import tree_vdot


def _hint(fn: str) -> str:
    return (
        f"gx.tree.{fn} combines its trees leaf by leaf: give it trees with the same structure "
        "(the same dict keys, sequence lengths, and None in the same places)."
    )


def check_pair(tree: PyTree, reference: PyTree, what: str, reference_what: str, fn: str, **kw: Any) -> None:
    """`check_same_tree` for ``gx.tree.<fn>``'s arguments, without the shape check unless asked
    (elementwise operations broadcast, as Optax's do)."""
    kw.setdefault("shapes", False)
    check_same_tree(tree, reference, what, reference_what, hint=_hint(fn), **kw)


def add(tree_x: PyTree, tree_y: PyTree, *other_trees: PyTree) -> PyTree:
    """Adds two or more trees leaf by leaf.

    Args:
      tree_x: a pytree.
      tree_y: a pytree of the same structure.
      *other_trees: more pytrees of the same structure.

    Returns:
      The sum, with the trees' structure.

    Raises:
      ValueError: if the trees' structures differ.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.tree.add({"a": jnp.array(1.0)}, {"a": jnp.array(2.0)}, {"a": 3.0})["a"].tolist()
      6.0
    """
    check_pair(tree_y, tree_x, "tree_y leaves", "tree_x leaves", "add")
    for i, other in enumerate(other_trees):
        check_pair(other, tree_x, f"other_trees[{i}] leaves", "tree_x leaves", "add")
    # Starting from the integer 0, like Python's sum, gives booleans the integer sum.
    return jax.tree.map(lambda *leaves: builtins.sum(leaves), tree_x, tree_y, *other_trees)


def _binary(op: Any, fn: str, tree_x: PyTree, tree_y: PyTree) -> PyTree:
    check_pair(tree_y, tree_x, "tree_y leaves", "tree_x leaves", fn)
    return jax.tree.map(op, tree_x, tree_y)


def sub(tree_x: PyTree, tree_y: PyTree) -> PyTree:
    """``tree_x - tree_y``, leaf by leaf.

    Args:
      tree_x: a pytree.
      tree_y: a pytree of the same structure.

    Returns:
      The difference.

    Raises:
      ValueError: if the trees' structures differ.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.tree.sub([jnp.array(3.0)], [jnp.array(1.0)])[0].tolist()
      2.0
    """
    return _binary(operator.sub, "sub", tree_x, tree_y)


def mul(tree_x: PyTree, tree_y: PyTree) -> PyTree:
    """``tree_x * tree_y``, leaf by leaf.

    Args:
      tree_x: a pytree.
      tree_y: a pytree of the same structure.

    Returns:
      The product.

    Raises:
      ValueError: if the trees' structures differ.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.tree.mul([jnp.array(3.0)], [jnp.array(2.0)])[0].tolist()
      6.0
    """
    return _binary(operator.mul, "mul", tree_x, tree_y)


def div(tree_x: PyTree, tree_y: PyTree) -> PyTree:
    """``tree_x / tree_y``, leaf by leaf (true division).

    Args:
      tree_x: a pytree.
      tree_y: a pytree of the same structure.

    Returns:
      The quotient.

    Raises:
      ValueError: if the trees' structures differ.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.tree.div([jnp.array(3.0)], [jnp.array(2.0)])[0].tolist()
      1.5
    """
    return _binary(operator.truediv, "div", tree_x, tree_y)


def scale(scalar: jax.typing.ArrayLike, tree: PyTree) -> PyTree:
    """``scalar * tree``.

    Args:
      scalar: a number or scalar array.
      tree: a pytree.

    Returns:
      The scaled tree.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.tree.scale(2.0, {"a": jnp.array([1.0, 2.0])})["a"].tolist()
      [2.0, 4.0]
    """
    return jax.tree.map(lambda x: scalar * x, tree)


def add_scale(tree_x: PyTree, scalar: jax.typing.ArrayLike, tree_y: PyTree) -> PyTree:
    """``tree_x + scalar * tree_y``; a None leaf of ``tree_x`` stays None.

    Args:
      tree_x: a pytree (None leaves allowed).
      scalar: a number or scalar array.
      tree_y: a pytree of the same structure.

    Returns:
      The combination, with ``tree_x``'s structure.

    Raises:
      ValueError: if the trees' structures differ.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.tree.add_scale([jnp.array(1.0)], 0.5, [jnp.array(4.0)])[0].tolist()
      3.0
    """
    check_pair(tree_y, tree_x, "tree_y leaves", "tree_x leaves", "add_scale", allow_none=True)
    scalar = jnp.asarray(scalar)
    return jax.tree.map(
        lambda x, y: None if x is None else x + scalar * y, tree_x, tree_y, is_leaf=lambda x: x is None
    )


def vdot(tree_x: PyTree, tree_y: PyTree) -> jax.typing.ArrayLike:
    """The inner product of two trees, conjugating ``tree_x``, at the highest precision.

    Args:
      tree_x: a pytree of arrays.
      tree_y: a pytree of the same structure and leaf shapes.

    Returns:
      A scalar (complex for complex leaves).

    Raises:
      ValueError: if the trees' structures or leaf shapes differ.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.tree.vdot({"a": jnp.array([1.0, 2.0])}, {"a": jnp.array([3.0, 4.0])}).tolist()
      11.0
    """
    check_pair(tree_y, tree_x, "tree_y leaves", "tree_x leaves", "vdot", shapes=True)
    return tree_vdot(tree_x, tree_y)


def sum(tree: PyTree, associative_reduction: bool = False) -> jax.typing.ArrayLike:  # noqa: A001
    """The sum of every element of every leaf.

    Args:
      tree: a pytree of arrays.
      associative_reduction: add the leaves' sums as a balanced tree
        (``jax.tree.reduce_associative``), which compiles faster for trees of many leaves
        but rounds differently from the default left-to-right order.

    Returns:
      A scalar; the integer 0 for a tree without leaves.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.tree.sum({"a": jnp.ones((2, 2)), "b": jnp.array(1.0)}).tolist()
      5.0
    """
    sums = jax.tree.map(jnp.sum, tree)
    if associative_reduction:
        return jax.tree.reduce_associative(operator.add, sums, identity=0)
    return jax.tree.reduce(operator.add, sums, initializer=0)


def _extremum(tree: PyTree, leaf_fn: Any, pair_fn: Any, start: float) -> jax.typing.ArrayLike:
    # Empty leaves have no extremum: they become None, which jax.tree.reduce skips.
    per_leaf = jax.tree.map(lambda x: None if jnp.size(x) == 0 else leaf_fn(x), tree)
    return jax.tree.reduce(pair_fn, per_leaf, initializer=start)


def max(tree: PyTree) -> jax.typing.ArrayLike:  # noqa: A001
    """The largest element of all leaves.

    The reduction starts from ``-inf``, so the result is floating point (float32 for integer
    leaves) and a tree without elements gives ``-inf``.

    Args:
      tree: a pytree of arrays.

    Returns:
      A scalar.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.tree.max({"a": jnp.array([1.0, 5.0]), "b": jnp.zeros(0)}).tolist()
      5.0
    """
    return _extremum(tree, jnp.max, jnp.maximum, -math.inf)


def min(tree: PyTree) -> jax.typing.ArrayLike:  # noqa: A001
    """The smallest element of all leaves; ``inf`` for a tree without elements.

    Args:
      tree: a pytree of arrays.

    Returns:
      A scalar (floating point, as for `max`).

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.tree.min({"a": jnp.array([1.0, 5.0])}).tolist()
      1.0
    """
    return _extremum(tree, jnp.min, jnp.minimum, math.inf)


_INF_ORDS = (math.inf, "inf", "infinity")


def norm(tree: PyTree, ord: int | str | float | None = None, squared: bool = False) -> jax.Array:  # noqa: A002
    """The vector norm of all leaves together, as if concatenated into one vector.

    For ``ord`` None or 2 this is `gx.global_norm <gradxform.global_norm>`.

    Args:
      tree: a pytree of arrays (real or complex).
      ord: 2 or None (Euclidean), 1 (sum of magnitudes), or ``inf`` / ``"inf"`` /
        ``"infinity"`` (largest magnitude).
      squared: return the norm's square.

    Returns:
      A scalar array.

    Raises:
      ValueError: if ``ord`` is none of those.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.tree.norm({"a": jnp.array([3.0]), "b": jnp.array(-4.0)}).tolist()
      5.0
      >>> gx.tree.norm({"a": jnp.array([3.0]), "b": jnp.array(-4.0)}, ord=1).tolist()
      7.0
    """
    if ord is None or (not isinstance(ord, str) and ord == 2):
        total = sum(jax.tree.map(abs_sq, tree))
        return jnp.array(total if squared else jnp.sqrt(total))
    if not isinstance(ord, str) and ord == 1:
        result = sum(jax.tree.map(jnp.abs, tree))
    elif ord in _INF_ORDS:
        result = max(jax.tree.map(jnp.abs, tree))
    else:
        raise ValueError(f"ord must be None, 1, 2, inf, 'inf' or 'infinity', got ord={ord!r}.")
    return jnp.array(abs_sq(jnp.asarray(result)) if squared else result)


def size(tree: PyTree) -> int:
    """The number of elements of all leaves together.

    Args:
      tree: a pytree of arrays.

    Returns:
      A Python int.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.tree.size({"w": jnp.zeros((2, 3)), "b": jnp.zeros(3)})
      9
    """
    return builtins.sum(jnp.size(x) for x in jax.tree.leaves(tree))


def conj(tree: PyTree) -> PyTree:
    """The complex conjugate of every leaf.

    Args:
      tree: a pytree of arrays.

    Returns:
      A pytree of the same structure.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.tree.conj([jnp.array(1 + 2j)])[0].tolist()
      (1-2j)
    """
    return jax.tree.map(jnp.conj, tree)


def real(tree: PyTree) -> PyTree:
    """The real part of every leaf.

    Args:
      tree: a pytree of arrays.

    Returns:
      A pytree of the same structure, of real dtypes.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.tree.real([jnp.array(1 + 2j)])[0].tolist()
      1.0
    """
    return jax.tree.map(jnp.real, tree)


def where(condition: jax.typing.ArrayLike, tree_x: PyTree, tree_y: PyTree) -> PyTree:
    """``tree_x`` where ``condition`` holds, else ``tree_y``, leaf by leaf.

    Args:
      condition: a boolean scalar, or an array that broadcasts against every leaf.
      tree_x: the pytree taken where ``condition`` is true.
      tree_y: a pytree of the same structure, taken elsewhere.

    Returns:
      A pytree of the same structure.

    Raises:
      ValueError: if the trees' structures differ.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.tree.where(False, [jnp.array(1.0)], [jnp.array(2.0)])[0].tolist()
      2.0
    """
    check_pair(tree_y, tree_x, "tree_y leaves", "tree_x leaves", "where")
    return jax.tree.map(lambda x, y: jnp.where(condition, x, y), tree_x, tree_y)


def _concrete(value: Any) -> Any:
    try:
        return np.asarray(value)
    except (TypeError, jax.errors.TracerArrayConversionError):
        return None


def clip(
    tree: PyTree,
    min_value: jax.typing.ArrayLike | None = None,
    max_value: jax.typing.ArrayLike | None = None,
) -> PyTree:
    """Clips every element into ``[min_value, max_value]``.

    Args:
      tree: a pytree of arrays.
      min_value: the lower bound, or None for none.
      max_value: the upper bound, or None for none.

    Returns:
      A pytree of the same structure.

    Raises:
      ValueError: if both bounds are known (not traced) and ``min_value > max_value``.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.tree.clip({"a": jnp.array([-2.0, 0.5, 3.0])}, -1.0, 1.0)["a"].tolist()
      [-1.0, 0.5, 1.0]
    """
    if min_value is not None and max_value is not None:
        lo, hi = _concrete(min_value), _concrete(max_value)
        if lo is not None and hi is not None and np.any(lo > hi):
            raise ValueError(
                f"min_value must not exceed max_value, got min_value={min_value!r}, max_value={max_value!r}."
            )
    return jax.tree.map(lambda x: jnp.clip(x, min_value, max_value), tree)


def allclose(
    a: PyTree,
    b: PyTree,
    rtol: jax.typing.ArrayLike = 1e-05,
    atol: jax.typing.ArrayLike = 1e-08,
    equal_nan: bool = False,
) -> jax.typing.ArrayLike:
    """Whether every leaf of ``a`` is close to ``b``'s, as ``jnp.allclose`` decides.

    Args:
      a: a pytree of arrays.
      b: a pytree of the same structure.
      rtol: relative tolerance.
      atol: absolute tolerance.
      equal_nan: count NaNs in the same places as equal.

    Returns:
      A boolean scalar array (Python ``True`` for trees without leaves).

    Raises:
      ValueError: if the trees' structures differ.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> bool(gx.tree.allclose({"a": jnp.array(1.0)}, {"a": jnp.array(1.0 + 1e-9)}))
      True
    """
    check_same_tree(b, a, "b leaves", "a leaves", shapes=False, hint=_hint("allclose"))
    close = jax.tree.map(lambda x, y: jnp.allclose(x, y, rtol=rtol, atol=atol, equal_nan=equal_nan), a, b)
    return functools.reduce(operator.and_, jax.tree.leaves(close), True)
