"""The optimizer step as part of a jitted training step: many steps per call, in one loop.

A standalone step pays JAX's cost of a call for every array it takes (the harness's "call
floor"): about 3 us per array on a CPU, most of the step on many small leaves. A training
step pays that once for everything it takes, whatever the optimizer computes; inside it,
the optimizer costs only its work. So each library's step here runs ``steps`` times inside
one jitted ``fori_loop`` (parameters and state donated, as in the standalone harness), and
a step's time is the call's time over ``steps``.

- ``steps`` is chosen per row so that the call floor is a small share of a call (about 5%
  of the work, at most a quarter of a second per call). Each step still carries its share of
  the floor, the same for both libraries, so a ratio here leans towards 1, never away.
- The gradients enter every iteration through an optimization barrier together with the
  carry, so XLA cannot hoist work on the gradients alone (Adam's ``g * g``) out of the loop:
  each step does all of its work, as in training, where the gradients are new every step.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

import gradxform as gx

# How large a share of a call the call floor may be, against the steps' work.
FLOOR_SHARE = 0.05
# Bounds on the steps per call: enough for a ratio of work, few enough that rounds stay short.
MIN_STEPS, MAX_STEPS, MAX_CALL_S = 4, 2000, 0.25


def looped_step(tx: Any, apply_updates: Callable[[Any, Any], Any] | None) -> Callable[..., Any]:
    """A jitted ``(params, state, grads, steps) -> (params, state)`` that runs ``steps``
    optimizer steps in one loop, donating the parameters and the state.

    Args:
      tx: the optimizer (gradxform's or Optax's).
      apply_updates: None for ``gx.update_and_apply`` (gradxform's step), else the function
        that applies ``tx.update``'s updates (``optax.apply_updates`` for Optax).

    Returns:
      The jitted function; ``steps`` is an int32 operand, so one executable serves every count.
    """

    def one(params: Any, state: Any, grads: Any) -> tuple[Any, Any]:
        if apply_updates is None:
            return gx.update_and_apply(tx, grads, state, params)
        updates, state = tx.update(grads, state, params)
        return apply_updates(params, updates), state

    def body(_: Any, carry: tuple[Any, Any, Any]) -> tuple[Any, Any, Any]:
        grads, params, state = jax.lax.optimization_barrier(carry)
        params, state = one(params, state, grads)
        return grads, params, state

    def run(params: Any, state: Any, grads: Any, steps: jax.Array) -> tuple[Any, Any]:
        _, params, state = jax.lax.fori_loop(0, steps, body, (grads, params, state))
        return params, state

    return jax.jit(run, donate_argnums=(0, 1))


def steps_per_call(tx: Any, apply_updates: Callable[[Any, Any], Any] | None, params: Any, grads: Any) -> int:
    """How many steps a call of `looped_step` should run for these arrays: from one call of
    1 step and one of 9 (after a warm-up), the floor is what 1 step costs beyond its share of
    the slope, and the count makes it at most `FLOOR_SHARE` of the work."""
    fn = looped_step(tx, apply_updates)
    p = jax.tree.map(jnp.copy, params)
    carry = (p, tx.init(p))

    def timed(k: int) -> float:
        nonlocal carry
        carry = jax.block_until_ready(fn(*carry, grads, np.int32(k)))  # warm-up / same placement
        t0 = time.perf_counter()
        carry = jax.block_until_ready(fn(*carry, grads, np.int32(k)))
        return time.perf_counter() - t0

    t1, t9 = min(timed(1) for _ in range(3)), min(timed(9) for _ in range(3))
    per_step = max((t9 - t1) / 8, 1e-7)
    floor = max(t1 - per_step, 0.0)
    steps = math.ceil(floor / (FLOOR_SHARE * per_step))
    return int(max(MIN_STEPS, min(steps, MAX_STEPS, max(MIN_STEPS, MAX_CALL_S / per_step))))
