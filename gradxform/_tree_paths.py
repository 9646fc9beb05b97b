"""Finding and replacing values in optimizer states by key (``gx.tree.get``, ``gx.tree.set``)
and mapping over the copies of the parameter tree inside a state (``gx.tree.map_params``).

A key names a dict entry, a named tuple's field, or a named tuple's class. Paths are those
of ``jax.tree_util`` except that a named tuple's field is a `NamedTupleKey`, which also
carries the tuple's class name: two stages' ``count`` fields are then told apart.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax

from gradxform.core import PyTree

KeyPath = tuple[Any, ...]
Filtering = Callable[[KeyPath, Any], bool]


@dataclasses.dataclass(frozen=True)
class NamedTupleKey:
    """A path entry for a named tuple's field: ``tuple_name.name``.

    Attributes:
      tuple_name: the named tuple's class name (``"ScaleByAdamState"``).
      name: the field's name (``"mu"``).
    """

    tuple_name: str
    name: str

    def __str__(self) -> str:
        return f"{self.tuple_name}.{self.name}"


def _is_named_tuple(x: Any) -> bool:
    return isinstance(x, tuple) and hasattr(x, "_fields")


def _has_any(node: Any, keys: tuple[Any, ...]) -> bool:
    if _is_named_tuple(node):
        return type(node).__name__ in keys or any(k in node._fields for k in keys)
    return isinstance(node, dict) and any(k in node for k in keys)


def _walk(tree: PyTree, stop: Callable[[Any], bool]) -> list[tuple[KeyPath, Any]]:
    """(path, node) for every leaf and every node where ``stop`` holds, in flattening order,
    with `NamedTupleKey` entries for named tuples' fields."""
    out: list[tuple[KeyPath, Any]] = []
    flat = jax.tree_util.tree_leaves_with_path(tree, is_leaf=lambda x: stop(x) or _is_named_tuple(x))
    for path, node in flat:
        if stop(node) or not _is_named_tuple(node):
            out.append((path, node))
            continue
        for field in node._fields:
            entry = NamedTupleKey(type(node).__name__, field)
            out.extend(((*path, entry, *sub), value) for sub, value in _walk(getattr(node, field), stop))
    return out


def _children(path: KeyPath, node: Any) -> list[tuple[KeyPath, Any]]:
    if _is_named_tuple(node):
        name = type(node).__name__
        return [((*path, NamedTupleKey(name, f)), getattr(node, f)) for f in node._fields]
    return [((*path, jax.tree_util.DictKey(k)), v) for k, v in node.items()]


def _plain_key(entry: Any) -> Any:
    if isinstance(entry, jax.tree_util.DictKey):
        return entry.key
    return entry.name  # NamedTupleKey: the only other entry _children makes


def _all_with_path(tree: PyTree, key: Any) -> list[tuple[KeyPath, Any]]:
    def has(node: Any) -> bool:
        return _has_any(node, (key,))

    holders = [(p, n) for p, n in _walk(tree, has) if has(n)]
    found = []
    for path, node in holders:
        if _is_named_tuple(node) and type(node).__name__ == key:
            found.append((path, node))
        elif _is_named_tuple(node):
            found.append(((*path, NamedTupleKey(type(node).__name__, key)), getattr(node, key)))
        else:
            found.append(((*path, jax.tree_util.DictKey(key)), node[key]))
    # Then matches nested inside the holders (a key may name a subtree that holds it again).
    for path, node in holders:
        for child_path, child in _children(path, node):
            found.extend(((*child_path, *p), v) for p, v in _all_with_path(child, key))
    return found


def get_all_with_path(tree: PyTree, key: Any, filtering: Filtering | None = None) -> list[tuple[KeyPath, Any]]:
    """Every value of ``tree`` under ``key`` (a dict key, a named tuple's field, or a named
    tuple's class name), with its path.

    Args:
      tree: a pytree, typically an optimizer state.
      key: the key, field or class name to look for.
      filtering: ``filtering(path, value) -> bool`` keeps only the matches it accepts.

    Returns:
      A list of ``(path, value)``: the outermost matches first, in flattening order, then
      matches nested inside them. Paths are tuples of ``jax.tree_util`` key entries and
      `NamedTupleKey`.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> state = gx.adam(0.1).init({"w": jnp.zeros(2)})
      >>> len(gx.tree.get_all_with_path(state, "count")) > 0
      True
    """
    found = _all_with_path(tree, key)
    if filtering is not None:
        found = [(p, v) for p, v in found if filtering(p, v)]
    return found


def get(tree: PyTree, key: Any, default: Any | None = None, filtering: Filtering | None = None) -> Any:
    """The one value of ``tree`` under ``key``, or ``default`` if there is none.

    Args:
      tree: a pytree, typically an optimizer state.
      key: a dict key, a named tuple's field, or a named tuple's class name.
      default: returned when nothing matches.
      filtering: ``filtering(path, value) -> bool`` keeps only the matches it accepts
        (see `get_all_with_path`).

    Returns:
      The value.

    Raises:
      KeyError: if more than one value matches (narrow it with ``filtering``).

    Example:
      >>> import gradxform as gx
      >>> gx.tree.get({"lr": 0.1, "inner": {"b1": 0.9}}, "b1")
      0.9
    """
    found = get_all_with_path(tree, key, filtering=filtering)
    if len(found) > 1:
        paths = ", ".join(jax.tree_util.keystr(p) if p else "<root>" for p, _ in found)
        raise KeyError(f"{len(found)} values match {key!r} (at {paths}); pass filtering to choose one.")
    return found[0][1] if found else default


def set(tree: PyTree, filtering: Filtering | None = None, /, **kwargs: Any) -> PyTree:  # noqa: A001
    """A copy of ``tree`` whose values under each keyword's key are the keyword's value.

    Args:
      tree: a pytree, typically an optimizer state.
      filtering: ``filtering(path, value) -> bool`` replaces only the matches it accepts.
      **kwargs: ``key=new_value`` for dict keys, named tuples' fields or class names.

    Returns:
      The new tree.

    Raises:
      KeyError: if some key matches nothing (or nothing that ``filtering`` accepts).

    Example:
      >>> import gradxform as gx
      >>> gx.tree.set({"lr": 0.1, "inner": {"b1": 0.9}}, b1=0.5)
      {'inner': {'b1': 0.5}, 'lr': 0.1}
    """
    for key in kwargs:
        if not get_all_with_path(tree, key, filtering):
            which = " that filtering accepts" if filtering is not None else ""
            raise KeyError(f"No value{which} matches {key!r} in the tree.")
    keys = tuple(kwargs)

    def has(node: Any) -> bool:
        return _has_any(node, keys)

    def accepted(path: KeyPath, value: Any) -> bool:
        return filtering is None or filtering(path, value)

    def replace(path: KeyPath, node: Any) -> Any:
        if not has(node):
            return node
        if _is_named_tuple(node) and type(node).__name__ in kwargs and accepted(path, node):
            return kwargs[type(node).__name__]
        new = {}
        for child_path, child in _children(path, node):
            k = _plain_key(child_path[-1])
            if k in kwargs and accepted(child_path, child):
                new[k] = kwargs[k]
            elif isinstance(child, (dict, list, tuple)):
                new[k] = replace(child_path, child)
            else:
                new[k] = child
        return node._replace(**new) if _is_named_tuple(node) else new

    treedef = jax.tree.structure(tree, is_leaf=has)
    return treedef.unflatten([replace(p, n) for p, n in _walk(tree, has)])


@jax.tree_util.register_pytree_node_class
class _Params:
    """Stands for the parameter tree in ``init``'s output: a node without leaves."""

    def tree_flatten(self) -> tuple[tuple[()], None]:
        return (), None

    @classmethod
    def tree_unflatten(cls, aux: None, children: Any) -> _Params:
        return cls()


def map_params(
    initable: Any,
    f: Callable[..., Any],
    state: PyTree,
    /,
    *rest: Any,
    transform_non_params: Callable[..., Any] | None = None,
    is_leaf: Callable[[Any], bool] | None = None,
) -> PyTree:
    """Applies ``f`` to every copy of the parameter tree inside an optimizer state (the
    moments, the averages), for example to build the state's partition specs from the
    parameters'.

    The copies are found by calling ``init`` on a placeholder for the parameters: wherever
    the placeholder lands in the state is a parameter-shaped subtree.

    Args:
      initable: a transformation (anything with ``init``) or an ``init`` function.
      f: called leaf by leaf on each parameter-shaped subtree and the matching leaves of
        ``rest``.
      state: the state, made by ``initable``'s ``init``.
      *rest: trees with the parameters' structure, passed to ``f`` after the state's leaf.
      transform_non_params: called on every other state leaf (the step counts); None keeps
        them as they are.
      is_leaf: passed to ``jax.tree.map`` over the parameter-shaped subtrees.

    Returns:
      The mapped state.

    Raises:
      ValueError: if ``initable`` has no ``init`` and is not callable.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.adam(0.1)
      >>> state = tx.init({"w": jnp.zeros(2)})
      >>> shapes = gx.tree.map_params(tx, lambda x: x.shape, state, transform_non_params=lambda _: None)
      >>> ("w" in str(shapes), "(2,)" in str(shapes))
      (True, True)
    """
    init = getattr(initable, "init", initable)
    if not callable(init):
        raise ValueError(
            f"initable must be a transformation (with init) or an init function, got {initable!r}."
        )
    placed = init(_Params())

    def one(slot: Any, value: Any) -> Any:
        if isinstance(slot, _Params):
            return jax.tree.map(f, value, *rest, is_leaf=is_leaf)
        return value if transform_non_params is None else transform_non_params(value)

    return jax.tree.map(one, placed, state, is_leaf=lambda x: isinstance(x, _Params))
