"""Mixed precision: low-precision parameters with a float32 master copy in the optimizer state.

MXNet's ``multi_precision``: the user's parameters stay bfloat16 or float16 (for the
forward and backward passes), while the optimizer keeps a float32 copy, computes the update
from it in float32 and accumulates into it. Updates that are too small to change a
bfloat16 number are not lost: they accumulate in the master copy until they do.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradxform._factory import transformation
from gradxform.core import GradientTransformation, Params, call_update, check_same_tree, check_transformation, find_states, require_params
from gradxform.wrappers.groups import MaskedNode


class MultiPrecisionState(NamedTuple):
    """State of `multi_precision`.

    Attributes:
      master: the master copy in ``master_dtype`` for each parameter of another dtype;
        `MaskedNode` for parameters already in ``master_dtype`` (their copy would be theirs).
      inner_state: the inner optimizer's state, built for ``master_dtype`` parameters.
    """

    master: Any
    inner_state: Any


def _needs_copy(p: Any, dtype: Any) -> bool:
    return jnp.issubdtype(p.dtype, jnp.inexact) and p.dtype != dtype


@transformation()
def multi_precision(inner: GradientTransformation, master_dtype: Any = jnp.float32) -> GradientTransformation:
    """Runs ``inner`` on a ``master_dtype`` copy of low-precision parameters.

    Each update casts the gradients to ``master_dtype``, applies ``inner`` with the master
    copy as parameters, adds the result to the master copy, and returns the update that
    takes each user parameter to its new master value rounded to the parameter's dtype.
    ``inner``'s state is in ``master_dtype`` too.

    Args:
      inner: the optimizer.
      master_dtype: the dtype of the master copy and of the computation.

    Returns:
      A transformation with `MultiPrecisionState`; its ``update`` needs ``params``.

    Raises:
      TypeError: if ``inner`` is not a transformation.
      ValueError: at ``update``, if ``params`` is not given.

    References:
      Micikevicius et al., "Mixed Precision Training", ICLR 2018.
      https://arxiv.org/abs/1710.03740

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.multi_precision(gx.sgd(1e-3))
      >>> p = jnp.ones(1, jnp.bfloat16)
      >>> state = tx.init(p)
      >>> for _ in range(4):   # each step alone is below bfloat16's resolution at 1.0
      ...     u, state = tx.update(jnp.ones(1, jnp.bfloat16), state, p)
      ...     p = gx.apply_updates(p, u)
      >>> p.tolist(), round(gx.master_params(state, p).tolist()[0], 4)
      ([0.99609375], 0.996)
    """
    check_transformation("multi_precision", "inner", inner)
    dtype = jnp.dtype(master_dtype)

    def init(params):
        master = jax.tree.map(lambda p: p.astype(dtype) if _needs_copy(p, dtype) else MaskedNode(), params)
        return MultiPrecisionState(master, inner.init(jax.tree.map(lambda p: p.astype(dtype), params)))

    def update(updates, state, params=None, **extra):
        require_params("multi_precision", params)
        check_same_tree(updates, params, "updates", "parameters")
        full = _full_master(state.master, params, dtype)
        grads = jax.tree.map(lambda g: g.astype(dtype), updates)
        out, inner_state = call_update(inner, grads, state.inner_state, full, extra)
        new_full = jax.tree.map(lambda m, u: m + u.astype(dtype), full, out)
        master = jax.tree.map(
            lambda p, m: m if _needs_copy(p, dtype) else MaskedNode(), params, new_full
        )
        result = jax.tree.map(
            lambda p, m, g: (m.astype(p.dtype).astype(dtype) - p.astype(dtype)).astype(g.dtype),
            params,
            new_full,
            updates,
        )
        return result, MultiPrecisionState(master, inner_state)

    return GradientTransformation(init, update)


def _full_master(master: Any, params: Params, dtype: Any) -> Params:
    return jax.tree.map(lambda p, m: p.astype(dtype) if isinstance(m, MaskedNode) else m, params, master)


def master_params(state: Any, params: Params) -> Params:
    """The master copy kept by `multi_precision` (its dtype), completed from ``params``.

    Args:
      state: a `MultiPrecisionState`, or an optimizer state holding exactly one.
      params: the current parameters (supply the leaves that needed no copy).

    Returns:
      The parameters in the master dtype.

    Raises:
      ValueError: if the state holds no master copy, or several.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> p = jnp.ones(1, jnp.bfloat16)
      >>> gx.master_params(gx.multi_precision(gx.sgd(0.1)).init(p), p).dtype
      dtype('float32')
    """
    found = find_states(state, MultiPrecisionState)
    if len(found) != 1:
        raise ValueError(f"master_params: expected one multi_precision state in this state, found {len(found)}.")
    leaves = [m for m in jax.tree.leaves(found[0].master)]
    dtype = leaves[0].dtype if leaves else jnp.dtype(jnp.float32)
    return _full_master(found[0].master, params, dtype)
