"""Rprop: per-coordinate step sizes driven only by the sign of the gradient.

Each coordinate keeps its own step size ``s``. When the gradient keeps its sign the step
grows (``s <- min(eta_plus s, max_step_size)``), when it flips the step shrinks
(``s <- max(eta_minus s, min_step_size)``) and that step is skipped::

    c_t = g_t * u_{t-1}          (u_{t-1}: the previous step's signed step, 0 if skipped)
    s_t = s_{t-1}                              if c_t == 0
          clip(eta_plus  * s_{t-1}, min, max)  if c_t > 0
          clip(eta_minus * s_{t-1}, min, max)  if c_t < 0
    u_t = 0 if c_t < 0 else s_t * sign(g_t)
    step_t = 0 if c_t < 0 else -u_{t-1}

The applied step lags one update behind the step size that produced it (the first update
moves nothing): this is Optax's order of operations, kept for numerical parity.

References:
  Riedmiller & Braun, "A direct adaptive method for faster backpropagation learning: the
  RPROP algorithm", IEEE ICNN 1993. https://ieeexplore.ieee.org/document/298623
  Igel & Huesken, "Empirical evaluation of the improved Rprop learning algorithms",
  Neurocomputing 2003. https://doi.org/10.1016/S0925-2312(01)00700-7
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradxform._factory import transformation
from gradxform.combinators import chain
from gradxform.core import NON_NEGATIVE, POSITIVE, GradientTransformation, Updates, check_same_tree, tree_full_like
from gradxform.primitives.elementwise import scale

_RPROP = {
    "learning_rate": POSITIVE,
    "eta_minus": POSITIVE,
    "eta_plus": POSITIVE,
    "min_step_size": NON_NEGATIVE,
    "max_step_size": POSITIVE,
}


class ScaleByRpropState(NamedTuple):
    """State of `scale_by_rprop`.

    Attributes:
      step_sizes: the current step size of every coordinate (parameter dtype).
      prev_updates: the previous signed step of every coordinate, zero where it was skipped.
    """

    step_sizes: Updates
    prev_updates: Updates


@transformation(_RPROP)
def scale_by_rprop(
    learning_rate: float,
    eta_minus: float = 0.5,
    eta_plus: float = 1.2,
    min_step_size: float = 1e-6,
    max_step_size: float = 50.0,
) -> GradientTransformation:
    """Rprop's signed, self-adapting step (see `rprop` for the equations), not negated.

    One primitive rather than a composition: the step size of a coordinate changes
    according to the sign agreement between the current gradient and the step this stage
    itself produced at the previous update, a feedback no chain of stages can express.

    Args:
      learning_rate: the initial step size of every coordinate, > 0 (read by ``init``
        only: the step sizes then evolve in the state).
      eta_minus: factor applied to the step size when the gradient flips sign, > 0.
      eta_plus: factor applied when the gradient keeps its sign, > 0.
      min_step_size: lower bound of the step sizes, >= 0.
      max_step_size: upper bound of the step sizes, > 0.

    Returns:
      A transformation with `ScaleByRpropState`.

    References:
      Riedmiller & Braun, "A direct adaptive method for faster backpropagation learning:
      the RPROP algorithm", 1993. https://ieeexplore.ieee.org/document/298623

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.scale_by_rprop(0.1)
      >>> s = tx.init(jnp.zeros(2))
      >>> u, s = tx.update(jnp.array([3.0, -1.0]), s)
      >>> u, s = tx.update(jnp.array([2.0, 1.0]), s)  # second coordinate flipped sign
      >>> [round(x, 4) for x in u.tolist()], [round(x, 4) for x in s.inner_state.step_sizes.tolist()]
      ([0.1, 0.0], [0.12, 0.05])
    """

    def init(params):
        return ScaleByRpropState(tree_full_like(params, learning_rate), tree_full_like(params, 0.0))

    def update(updates, state, params=None, **extra):
        check_same_tree(updates, state.step_sizes, "updates", "scale_by_rprop's state")

        def leaf(g, prev, size):
            agree = g * prev
            factor = jnp.where(agree > 0, jnp.asarray(eta_plus), jnp.asarray(eta_minus))
            grown = jnp.clip(size * factor, jnp.asarray(min_step_size), jnp.asarray(max_step_size))
            new_size = jnp.where(agree == 0, size, grown).astype(size.dtype)
            memory = jnp.where(agree < 0, jnp.zeros_like(g), new_size * jnp.sign(g)).astype(prev.dtype)
            # Optax's order: the step emitted now is the one remembered from the last update.
            return jnp.where(agree < 0, jnp.zeros_like(prev), prev), memory, new_size

        out = jax.tree.map(leaf, updates, state.prev_updates, state.step_sizes)
        steps, memory, sizes = (jax.tree.map(lambda _, t: t[i], updates, out) for i in range(3))
        return steps, ScaleByRpropState(sizes, memory)

    return GradientTransformation(init, update)


@transformation(_RPROP)
def rprop(
    learning_rate: float,
    eta_minus: float = 0.5,
    eta_plus: float = 1.2,
    min_step_size: float = 1e-6,
    max_step_size: float = 50.0,
) -> GradientTransformation:
    """Rprop (resilient backpropagation): sign-based steps with per-coordinate sizes.

    Every coordinate moves by its own step size against the sign of its gradient; the
    step size grows by ``eta_plus`` while the sign holds and shrinks by ``eta_minus`` (and
    the move is skipped) when it flips, within ``[min_step_size, max_step_size]``. The
    equations are in this module's docstring.

    Args:
      learning_rate: the initial step size, > 0 (read by ``init`` only).
      eta_minus: shrink factor on a sign flip, > 0 (usually < 1).
      eta_plus: growth factor while the sign holds, > 0 (usually > 1).
      min_step_size: smallest step size, >= 0.
      max_step_size: largest step size, > 0.

    Returns:
      ``chain(scale_by_rprop(...), scale(-1.0))``.

    References:
      Riedmiller & Braun, "A direct adaptive method for faster backpropagation learning:
      the RPROP algorithm", IEEE ICNN 1993. https://ieeexplore.ieee.org/document/298623
      Igel & Huesken, "Empirical evaluation of the improved Rprop learning algorithms",
      Neurocomputing 2003. https://doi.org/10.1016/S0925-2312(01)00700-7

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.rprop(0.1)
      >>> state = tx.init(jnp.zeros(2))
      >>> _, state = tx.update(jnp.array([3.0, -1.0]), state)  # the first update moves nothing
      >>> [round(x, 4) for x in tx.update(jnp.array([3.0, -1.0]), state)[0].tolist()]
      [-0.1, 0.1]
    """
    return chain(scale_by_rprop(learning_rate, eta_minus, eta_plus, min_step_size, max_step_size), scale(-1.0))
