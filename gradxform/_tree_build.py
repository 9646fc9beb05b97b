"""Trees built from another tree's shapes and dtypes: filled, cast, batched, random."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from gradxform._tree_math import check_pair
from gradxform.core import PyTree, path_str


def zeros_like(tree: PyTree, dtype: jax.typing.DTypeLike | None = None) -> PyTree:
    """Zeros shaped like each leaf, in ``dtype`` or the leaf's own dtype.

    Unlike the optimizer states' helper, integer leaves keep their integer dtype here.

    Args:
      tree: a pytree of arrays.
      dtype: the dtype of every leaf of the result, or None for each leaf's own.

    Returns:
      A pytree of the same structure.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.tree.zeros_like({"a": jnp.ones(2)})["a"].tolist()
      [0.0, 0.0]
    """
    return jax.tree.map(lambda x: jnp.zeros_like(x, dtype=dtype), tree)


def ones_like(tree: PyTree, dtype: jax.typing.DTypeLike | None = None) -> PyTree:
    """Ones shaped like each leaf, in ``dtype`` or the leaf's own dtype.

    Args:
      tree: a pytree of arrays.
      dtype: the dtype of every leaf of the result, or None for each leaf's own.

    Returns:
      A pytree of the same structure.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.tree.ones_like({"a": jnp.zeros(2)})["a"].tolist()
      [1.0, 1.0]
    """
    return jax.tree.map(lambda x: jnp.ones_like(x, dtype=dtype), tree)


def full_like(
    tree: PyTree, fill_value: jax.typing.ArrayLike, dtype: jax.typing.DTypeLike | None = None
) -> PyTree:
    """``fill_value`` shaped like each leaf, in ``dtype`` or the leaf's own dtype.

    Args:
      tree: a pytree of arrays.
      fill_value: the value of every element.
      dtype: the dtype of every leaf of the result, or None for each leaf's own.

    Returns:
      A pytree of the same structure.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.tree.full_like({"a": jnp.zeros(2)}, 3.0)["a"].tolist()
      [3.0, 3.0]
    """
    return jax.tree.map(lambda x: jnp.full_like(x, fill_value, dtype=dtype), tree)


def batch_shape(tree: PyTree, shape: tuple[int, ...] = ()) -> PyTree:
    """Every leaf broadcast to ``(*shape, *leaf.shape)``: leading batch axes added.

    Args:
      tree: a pytree of arrays.
      shape: the leading axes to add.

    Returns:
      A pytree of the same structure.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.tree.batch_shape({"a": jnp.zeros(3)}, (4,))["a"].shape
      (4, 3)
    """
    return jax.tree.map(lambda x: jnp.broadcast_to(x, (*shape, *jnp.shape(x))), tree)


def cast(tree: PyTree, dtype: jax.typing.DTypeLike | None) -> PyTree:
    """Every leaf cast to ``dtype``; ``tree`` unchanged when ``dtype`` is None.

    Args:
      tree: a pytree of arrays.
      dtype: the target dtype, or None.

    Returns:
      A pytree of the same structure.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.tree.cast({"a": jnp.ones(2)}, jnp.bfloat16)["a"].dtype
      dtype(bfloat16)
    """
    if dtype is None:
        return tree
    return jax.tree.map(lambda x: x.astype(dtype), tree)


def cast_like(tree: PyTree, other_tree: PyTree) -> PyTree:
    """Every leaf of ``tree`` cast to the dtype of ``other_tree``'s matching leaf.

    A leaf of ``other_tree`` without a dtype (a Python number) leaves its match unchanged.

    Args:
      tree: a pytree of arrays.
      other_tree: a pytree of the same structure whose dtypes are copied.

    Returns:
      A pytree with ``tree``'s structure.

    Raises:
      ValueError: if the trees' structures differ.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.tree.cast_like({"a": jnp.ones(2)}, {"a": jnp.zeros(2, jnp.bfloat16)})["a"].dtype
      dtype(bfloat16)
    """
    check_pair(other_tree, tree, "other_tree leaves", "tree leaves", "cast_like")
    return jax.tree.map(lambda x, o: x.astype(o.dtype) if hasattr(o, "dtype") else x, tree, other_tree)


_MIXED_DTYPE_HANDLERS = (None, "promote", "highest", "lowest")


def _lower(d1: Any, d2: Any) -> Any:
    joined = jnp.promote_types(d1, d2)
    if joined == d1:
        return d2
    if joined == d2:
        return d1
    raise ValueError(
        f"The tree's dtypes {d1} and {d2} are not ordered: neither promotes to the other, "
        "so there is no highest or lowest. Use mixed_dtype_handler='promote'."
    )


def _higher(d1: Any, d2: Any) -> Any:
    return d2 if _lower(d1, d2) == d1 else d1


def dtype(tree: PyTree, mixed_dtype_handler: str | None = None) -> jax.typing.DTypeLike:
    """The dtype of the tree's leaves.

    Args:
      tree: a pytree of arrays or numbers.
      mixed_dtype_handler: what to do when leaves differ: None raises; ``"promote"`` gives
        the dtype they all promote to; ``"highest"`` / ``"lowest"`` gives the leaf dtype that
        every other promotes to / that promotes to every other.

    Returns:
      A dtype; JAX's default float dtype for a tree without leaves.

    Raises:
      ValueError: if ``mixed_dtype_handler`` is not one of those four; if it is None and
        the leaves' dtypes differ (naming each differing leaf); if it is ``"highest"`` or
        ``"lowest"`` and two leaves' dtypes do not promote one to the other.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> t = {"a": jnp.ones(2, jnp.bfloat16), "b": jnp.ones(2)}
      >>> gx.tree.dtype(t, "lowest"), gx.tree.dtype(t, "highest")
      (dtype(bfloat16), dtype('float32'))
    """
    if mixed_dtype_handler not in _MIXED_DTYPE_HANDLERS:
        raise ValueError(
            "mixed_dtype_handler must be None, 'promote', 'highest' or 'lowest', "
            f"got mixed_dtype_handler={mixed_dtype_handler!r}."
        )
    with_paths = jax.tree_util.tree_leaves_with_path(tree)
    if not with_paths:
        return jnp.asarray([]).dtype
    dtypes = [jnp.asarray(x).dtype for _, x in with_paths]
    if mixed_dtype_handler == "promote":
        return functools.reduce(jnp.promote_types, dtypes)
    if mixed_dtype_handler == "highest":
        return functools.reduce(_higher, dtypes)
    if mixed_dtype_handler == "lowest":
        return functools.reduce(_lower, dtypes)
    first = dtypes[0]
    odd = [f"  {path_str(p)}: {d}" for (p, _), d in zip(with_paths, dtypes) if d != first]
    if odd:
        raise ValueError(
            f"The tree's leaves have more than one dtype: the first is {first}, but\n"
            + "\n".join(odd)
            + "\nPass mixed_dtype_handler='promote', 'highest' or 'lowest' to choose one."
        )
    return first


def split_key_like(rng_key: jax.Array, target_tree: PyTree) -> PyTree:
    """One key per leaf of ``target_tree``: ``jax.random.split(rng_key, n_leaves)`` placed
    in flattening order (Optax's convention, so both give the same keys).

    Args:
      rng_key: a PRNG key.
      target_tree: the pytree whose structure the keys take.

    Returns:
      A pytree of keys with ``target_tree``'s structure.

    Example:
      >>> import gradxform as gx, jax, jax.numpy as jnp
      >>> keys = gx.tree.split_key_like(jax.random.key(0), {"a": jnp.zeros(2), "b": jnp.zeros(3)})
      >>> sorted(keys)
      ['a', 'b']
    """
    treedef = jax.tree.structure(target_tree)
    return jax.tree.unflatten(treedef, jax.random.split(rng_key, treedef.num_leaves))


def random_like(
    rng_key: jax.Array,
    target_tree: PyTree,
    sampler: Callable[..., jax.typing.ArrayLike] = jax.random.normal,
    dtype: jax.typing.DTypeLike | None = None,
) -> PyTree:
    """Random leaves shaped like ``target_tree``'s, one `split_key_like` key per leaf.

    Args:
      rng_key: a PRNG key.
      target_tree: a pytree of arrays whose shapes, dtypes and shardings the result takes.
      sampler: ``sampler(key, shape, dtype)`` or, if it takes ``out_sharding``,
        ``sampler(key, shape, dtype, out_sharding=...)``; ``jax.random.normal`` by default.
      dtype: the dtype passed to ``sampler``; None for each leaf's own.

    Returns:
      A pytree of the same structure.

    Example:
      >>> import gradxform as gx, jax, jax.numpy as jnp
      >>> gx.tree.random_like(jax.random.key(0), {"a": jnp.zeros((2, 3))})["a"].shape
      (2, 3)
    """
    keys = split_key_like(rng_key, target_tree)
    takes_sharding = "out_sharding" in inspect.signature(sampler).parameters

    def draw(leaf: jax.Array, key: jax.Array) -> jax.typing.ArrayLike:
        leaf_dtype = dtype or leaf.dtype
        if takes_sharding:
            return sampler(key, leaf.shape, leaf_dtype, out_sharding=jax.typeof(leaf).sharding)
        return sampler(key, leaf.shape, leaf_dtype)

    return jax.tree.map(draw, target_tree, keys)


def unwrap_random_key_data(input_tree: PyTree) -> PyTree:
    """Typed PRNG keys (``jax.random.key``) replaced by their raw ``uint32`` data, so that a
    state holding keys can be compared numerically.

    Args:
      input_tree: a pytree of arrays and keys.

    Returns:
      A pytree of the same structure.

    Example:
      >>> import gradxform as gx, jax
      >>> gx.tree.unwrap_random_key_data({"k": jax.random.key(0)})["k"].dtype
      dtype('uint32')
    """

    def unwrap(x: Any) -> Any:
        if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.random.key_data(x)
        return x

    return jax.tree.map(unwrap, input_tree)
