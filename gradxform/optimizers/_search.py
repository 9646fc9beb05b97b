"""What the line searches share: reading the objective from ``update``'s extra arguments,
moving along a direction, and keeping loop carries' dtypes fixed."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradxform.core import check_scalar_value

MISSING_OBJECTIVE = (
    "{owner} evaluates the objective along the update direction, so update() needs the "
    "keyword arguments value=f(params), grad=grad f(params) and value_fn=f (missing: {missing}). "
    "For example: value, grad = jax.value_and_grad(f)(params); "
    "tx.update(grad, state, params, value=value, grad=grad, value_fn=f)."
)


def objective_args(owner: str, params: Any, extra: Mapping[str, Any], need_grad: bool = True):
    """Splits a line search's extra arguments into (value, grad, value_fn, kwargs for value_fn).

    Raises:
      ValueError: naming what is missing (``params``, ``value``, ``grad``, ``value_fn``), or
        for a ``value`` that is not a scalar (naming its shape).
      TypeError: for a ``value`` that is not a real number.
    """
    needed = ("value", "grad", "value_fn") if need_grad else ("value", "value_fn")
    missing = [k for k in needed if extra.get(k) is None]
    if params is None:
        missing.insert(0, "params")
    if missing:
        raise ValueError(MISSING_OBJECTIVE.format(owner=owner, missing=", ".join(missing)))
    check_scalar_value(owner, "value", extra["value"], "the loss f(params)")
    value_fn = extra["value_fn"]
    try:
        names = set(inspect.signature(value_fn).parameters)
    except (TypeError, ValueError):
        names = set()
    kwargs = {k: v for k, v in extra.items() if k in names and k not in ("value", "grad", "value_fn")}
    return extra["value"], extra.get("grad"), value_fn, kwargs


def value_dtype(params: Any) -> Any:
    """The real dtype in which a search keeps values and step sizes (the first leaf's)."""
    leaf = jax.tree.leaves(params)[0]
    return jnp.real(jnp.zeros((), jnp.asarray(leaf).dtype if not hasattr(leaf, "dtype") else leaf.dtype)).dtype


def along(params: Any, stepsize: jax.Array, updates: Any) -> Any:
    """``params + stepsize * updates``, leaf by leaf, in each parameter's dtype."""
    return jax.tree.map(lambda p, u: (p + stepsize.astype(jnp.real(u).dtype) * u).astype(p.dtype), params, updates)


def scale_tree(stepsize: jax.Array, updates: Any) -> Any:
    """``stepsize * updates`` in the updates' dtypes."""
    return jax.tree.map(lambda u: (stepsize.astype(jnp.real(u).dtype) * u).astype(u.dtype), updates)


def cast_scalars(new: NamedTuple, old: NamedTuple) -> NamedTuple:
    """Casts every leaf of ``new`` to the dtype of the matching leaf of ``old`` (loop carries)."""
    return jax.tree.map(lambda n, o: jnp.asarray(n).astype(jnp.asarray(o).dtype), new, old)
