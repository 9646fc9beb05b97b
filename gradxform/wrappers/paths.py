"""Parameter groups chosen by path patterns over Flax (linen and nnx) and plain pytrees.

A parameter's path is its keys joined by ``/``: ``params/Dense_0/kernel`` in a linen
variables dict, ``Dense_0/kernel`` in its ``params`` collection or in an nnx ``State`` (the
``value`` attribute of an nnx ``Variable`` is not part of the path).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Hashable, Mapping
from typing import Any

import jax

from gradxform.core import Params, PyTree, path_str


def param_paths(params: Params) -> list[str]:
    """The path of every parameter, as `by_path` matches it.

    Args:
      params: a pytree of parameters (a linen dict, an nnx ``State``, ...).

    Returns:
      The paths in flattening order.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.param_paths({"Dense_0": {"bias": jnp.zeros(2), "kernel": jnp.zeros((2, 2))}})
      ['Dense_0/bias', 'Dense_0/kernel']
    """
    return [_path(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]


def _path(keys: tuple[Any, ...]) -> str:
    # An nnx Variable flattens to its ``value`` attribute; users name the variable itself.
    if keys and isinstance(keys[-1], jax.tree_util.GetAttrKey) and keys[-1].name == "value":
        keys = keys[:-1]
    return path_str(keys)


def _matches(path: str, pattern: str) -> bool:
    # A leading "*/" also matches at the top level ("*/bias" matches "bias" and "a/b/bias"),
    # so one pattern serves a linen "params" dict, its contents and an nnx State alike.
    return fnmatch.fnmatchcase(path, pattern) or fnmatch.fnmatchcase("/" + path, pattern)


def by_path(patterns: Mapping[str, Hashable]) -> Callable[[Params], PyTree]:
    """Labels parameters by glob patterns over their paths, for `partition` and `masked`.

    Each parameter gets the label of the first pattern (in the mapping's order) that its
    path matches, in ``fnmatch`` syntax where ``*`` also crosses ``/`` and a leading ``*/``
    also matches at the top level (``*/LayerNorm*/*`` matches ``LayerNorm_0/scale`` and
    ``params/encoder/LayerNorm_0/scale``). Labels may be any
    hashable value: group names for `partition`, booleans for `masked` and `freeze`.

    Args:
      patterns: an ordered mapping from pattern to label, for example
        ``{"*/bias": "no_decay", "*/LayerNorm*/*": "no_decay", "*": "decay"}``.

    Returns:
      A function from the parameters to a tree of labels with their structure.

    Raises:
      ValueError: at once if ``patterns`` is empty or a pattern is not a string; when the
        function is called, if a pattern matches no parameter or a parameter matches no
        pattern, listing the available paths.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> params = {"Dense_0": {"bias": jnp.zeros(2), "kernel": jnp.zeros((2, 2))}}
      >>> gx.by_path({"*/bias": "no_decay", "*": "decay"})(params)
      {'Dense_0': {'bias': 'no_decay', 'kernel': 'decay'}}
    """
    if not isinstance(patterns, Mapping) or not patterns:
        raise ValueError(f"by_path: patterns must be a non-empty mapping from pattern to label, got {patterns!r}.")
    for pattern in patterns:
        if not isinstance(pattern, str):
            raise ValueError(f"by_path: every pattern must be a string, got {pattern!r}.")
    items = list(patterns.items())

    def labels(params: Params) -> PyTree:
        leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
        paths = [_path(p) for p, _ in leaves]
        used = {pattern: False for pattern, _ in items}
        out, unmatched = [], []
        for path in paths:
            hits = [(pattern, label) for pattern, label in items if _matches(path, pattern)]
            for pattern, _ in hits:
                used[pattern] = True
            if hits:
                out.append(hits[0][1])
            else:
                unmatched.append(path)
        unused = [pattern for pattern, hit in used.items() if not hit]
        if unused:
            raise ValueError(
                f"by_path: pattern(s) {unused} match no parameter. Available paths:\n  "
                + "\n  ".join(paths)
                + "\nPatterns use fnmatch syntax ('*' also matches '/'); fix or remove the pattern."
            )
        if unmatched:
            raise ValueError(
                f"by_path: parameter(s) {unmatched} match no pattern (patterns: {[p for p, _ in items]}). "
                "Add a pattern for them, or a catch-all '*' last. Available paths:\n  " + "\n  ".join(paths)
            )
        return jax.tree_util.tree_unflatten(treedef, out)

    # Lets gx.to_config write this function as data (see gradxform.config.CONFIG_FUNCTIONS).
    labels.__gradxform_config__ = {"function": "by_path", "args": {"patterns": dict(patterns)}}
    return labels
