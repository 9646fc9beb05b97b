"""The in-training-step harness: a call of ``looped_step`` is that many optimizer steps, for
gradxform's step and Optax's alike (logic only: nothing here is timed)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradxform as gx
from benchmarks import in_step


def _tree():
    return {"w": jnp.linspace(-1.0, 1.0, 12, dtype=jnp.float32).reshape(3, 4), "b": jnp.array([0.5, -0.25], jnp.float32)}


def _grads():
    return {"w": jnp.cos(jnp.arange(12, dtype=jnp.float32)).reshape(3, 4), "b": jnp.array([0.3, -0.7], jnp.float32)}


@pytest.mark.parametrize("library", ["gradxform", "optax"])
def test_a_call_runs_that_many_steps(library):
    tx = gx.adam(0.1) if library == "gradxform" else optax.adam(0.1)
    apply = None if library == "gradxform" else optax.apply_updates
    params, grads = _tree(), _grads()
    state = tx.init(params)
    expected_p, expected_s = params, state
    for _ in range(5):
        updates, expected_s = tx.update(grads, expected_s, expected_p)
        expected_p = optax.apply_updates(expected_p, updates)
    p = jax.tree.map(jnp.copy, params)
    got_p, got_s = in_step.looped_step(tx, apply)(p, tx.init(p), grads, np.int32(5))
    for a, b in zip(jax.tree.leaves((got_p, got_s)), jax.tree.leaves((expected_p, expected_s))):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    # and zero steps leave everything as it was
    p = jax.tree.map(jnp.copy, params)
    same_p, _ = in_step.looped_step(tx, apply)(p, tx.init(p), grads, np.int32(0))
    for a, b in zip(jax.tree.leaves(same_p), jax.tree.leaves(params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_the_gradient_work_stays_inside_the_loop():
    # XLA hoists loop-invariant work out of a while loop; with the gradients tied to the
    # carry by an optimization barrier, the loop body still reads them every step.
    tx = optax.sgd(0.1)
    params, grads = _tree(), _grads()
    hlo = in_step.looped_step(tx, optax.apply_updates).lower(params, tx.init(params), grads, np.int32(3)).as_text()
    assert "optimization_barrier" in hlo


def test_steps_per_call_is_within_its_bounds():
    tx = gx.sgd(0.1)
    steps = in_step.steps_per_call(tx, None, _tree(), _grads())
    assert in_step.MIN_STEPS <= steps <= in_step.MAX_STEPS
