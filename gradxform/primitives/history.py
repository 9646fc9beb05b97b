"""Primitives that look one step back: the previous input of the update stream.

With `previous`, a difference of consecutive gradients is a composition
(``branch(identity(), previous(), "subtract")``), which is what optimistic gradient
descent and Adan are made of. The mathematics lives on those optimizers.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradxform._factory import transformation
from gradxform.core import GradientTransformation, Updates, check_same_tree, tree_zeros_like


class PreviousState(NamedTuple):
    """State of `previous`.

    Attributes:
      started: bool scalar, whether an input has been seen.
      previous: the last input, one array per parameter (zeros before the first step).
    """

    started: jax.Array
    previous: Updates


@transformation()
def previous(accumulator_dtype: Any = None) -> GradientTransformation:
    """Outputs the input of the previous step (at the first step: the current input).

    Starting from the current input makes a difference ``g_t - g_{t-1}`` zero at the first
    step, as Optax's optimistic gradient and Adan have it.

    Args:
      accumulator_dtype: dtype of the stored input (default: the parameter's).

    Returns:
      A transformation with `PreviousState`.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.previous()
      >>> out, s = tx.update(jnp.array([1.0]), tx.init(jnp.zeros(1)))
      >>> out.tolist(), tx.update(jnp.array([5.0]), s)[0].tolist()
      ([1.0], [1.0])
    """

    def init(params):
        return PreviousState(jnp.zeros([], jnp.bool_), tree_zeros_like(params, accumulator_dtype))

    def update(updates, state, params=None, **extra):
        check_same_tree(updates, state.previous, "updates", "previous's state")
        out = jax.tree.map(
            lambda g, h: jnp.where(state.started, h.astype(g.dtype), g), updates, state.previous
        )
        stored = jax.tree.map(lambda g, h: g.astype(h.dtype), updates, state.previous)
        return out, PreviousState(jnp.ones([], jnp.bool_), stored)

    return GradientTransformation(init, update)
