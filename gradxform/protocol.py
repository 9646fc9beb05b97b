"""Optax's small helpers around the transformation protocol, for code written against them."""

from __future__ import annotations

from typing import Any

from gradxform.core import EmptyState, GradientTransformation, Params, call_update, check_transformation


def init_empty_state(params: Params) -> EmptyState:
    """The ``init`` of a stateless transformation: ignores ``params``, returns `EmptyState`.

    Args:
      params: the parameters (unused).

    Returns:
      ``EmptyState()``.

    Example:
      >>> import gradxform as gx
      >>> gx.init_empty_state({"w": 1.0})
      EmptyState()
    """
    del params
    return EmptyState()


def with_extra_args_support(tx: GradientTransformation) -> GradientTransformation:
    """``tx`` with an ``update`` that accepts extra keyword arguments (``value=``, ...).

    gradxform's own transformations accept them already and pass them on to every stage;
    a foreign one (a plain Optax transformation, or one built from two functions) whose
    ``update`` takes no ``**kwargs`` is called without them.

    Args:
      tx: a gradient transformation.

    Returns:
      A transformation with ``tx``'s ``init`` and numbers.

    Raises:
      TypeError: if ``tx`` is not a gradient transformation.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.with_extra_args_support(gx.GradientTransformation(gx.init_empty_state, lambda u, s, p=None: (u, s)))
      >>> tx.update(jnp.ones(1), tx.init(None), None, value=3.0)[0].tolist()
      [1.0]
    """
    check_transformation("with_extra_args_support", "tx", tx)

    def update(updates: Any, state: Any, params: Any = None, **extra: Any) -> tuple[Any, Any]:
        return call_update(tx, updates, state, params, extra)

    return GradientTransformation(tx.init, update, getattr(tx, "spec", None))
