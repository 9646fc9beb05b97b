"""`gx.update_and_apply` for `gx.sm3`: the one-pass kernel that also takes SM3's row and
column maxima (``gradxform_sm3_step``), against the plain composition and against Optax.

XLA reads SM3's gradients three times (once for the update and once for each axis' maxima);
the kernel reads them once. The oracle is ``tx.update`` followed by ``gx.apply_updates`` on
the same gradients, and Optax's ``sm3``; which path ran is read from the compiled program.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradxform as gx
from harness import assert_trees_close
from stepping import compiled, fused_step, grads, plain_step, tree

TARGET = "gradxform_sm3_step"

# Matrices whose rows cross the kernel's 512-element blocks and whose row blocks split a leaf
# (65536 elements a block: 93 rows of 700), a tall one, a long vector (one row of the
# kernel), a 0-d and a one-element leaf; MANY's 40 leaves take two calls.
SIZES = [(300, 700), (3, 1500), (5000, 3), (70000,), (), (1,), (1, 1)]
MANY = SIZES + [(4, 9)] * 33


def _run(step, tx, params, steps, scale=1.0):
    params = jax.tree.map(jnp.copy, params)  # the step may donate them
    state = tx.init(params)
    for t in range(steps):
        params, state = step(params, state, jax.tree.map(lambda g: scale * g, grads(params, t)))
    return params, state


@pytest.mark.parametrize(
    "make, sizes",
    [
        (lambda: gx.sm3(0.1), SIZES),
        (lambda: gx.sm3(gx.cosine_decay_schedule(0.1, 30), momentum=0.5), SIZES),
        (lambda: gx.sm3(0.05, momentum=0.0), MANY),
    ],
    ids=["defaults", "schedule", "no-momentum-40-leaves"],
)
def test_sm3_kernel_matches_the_composition_over_many_steps(make, sizes):
    tx = make()
    params = tree(sizes)
    hlo = compiled(fused_step(tx), params, tx.init(params), params)
    assert hlo.count(f'custom_call_target="{TARGET}"') == (len(sizes) + 31) // 32
    got = _run(jax.jit(fused_step(tx), donate_argnums=(0, 1)), tx, params, 20)
    want = _run(jax.jit(plain_step(tx), donate_argnums=(0, 1)), tx, params, 20)
    assert jax.tree.structure(got[1]) == jax.tree.structure(want[1])
    # XLA's rsqrt and the kernel's 1 / sqrt differ in the last bit now and then; the
    # accumulators are maxima and sums of squares, the parameters move by lr per step.
    assert_trees_close(got, want, rtol=1e-5, atol=1e-6)


def test_sm3_kernel_agrees_with_optax():
    params = tree([(40, 70), (9,)])  # (Optax's sm3 fails on 0-d leaves)
    tx = gx.sm3(0.1, momentum=0.8)
    got = _run(jax.jit(fused_step(tx), donate_argnums=(0, 1)), tx, params, 30)[0]
    otx = optax.sm3(0.1, momentum=0.8)

    def ostep(p, s, g):
        u, s = otx.update(g, s, p)
        return optax.apply_updates(p, u), s

    want = _run(jax.jit(ostep), otx, params, 30)[0]
    assert_trees_close(got, want, rtol=1e-5, atol=1e-6)


def test_nan_and_inf_reach_their_rows_and_columns():
    """A NaN or an inf in a gradient reaches its row's and its column's accumulator, as
    ``jnp.max`` documents (NaN propagates). XLA:CPU's own reductions drop NaN on wide rows
    (a 6x700 maximum ignores it where a 3x4 one keeps it), so the oracle for the accumulators
    is numpy's maximum of the composition's sums of squares; everything else is compared with
    the composition."""
    tx = gx.sm3(0.1)
    params = tree([(6, 700), (3, 4), (5,)])
    state = tx.init(params)
    g = grads(params, 0)
    g["w000"] = g["w000"].at[2, 600].set(jnp.nan).at[4, 3].set(jnp.inf)
    g["w001"] = g["w001"].at[1, 2].set(jnp.nan)
    g["w002"] = g["w002"].at[1].set(jnp.nan)
    got_p, got_s = jax.jit(fused_step(tx))(params, state, g)
    want_p, want_s = jax.jit(plain_step(tx))(params, state, g)
    acc = lambda s: s.inner_state[0][0].mu
    for name in ("w000", "w001"):
        nu = np.asarray(g[name]) ** 2  # the accumulators start at zero
        rows, cols = acc(got_s)[name]
        np.testing.assert_array_equal(rows, np.max(nu, axis=1))
        np.testing.assert_array_equal(cols, np.max(nu, axis=0))
    assert np.isnan(acc(got_s)["w000"][0][2]) and np.isinf(acc(got_s)["w000"][0][4])
    np.testing.assert_array_equal(acc(got_s)["w002"][0], np.asarray(g["w002"]) ** 2)
    # the small leaves' maxima agree with XLA's, NaN included; the rest is the composition's
    assert_trees_close((acc(got_s)["w001"], acc(got_s)["w002"]), (acc(want_s)["w001"], acc(want_s)["w002"]), nan_ok=True)
    moments = lambda s: s.inner_state[0][1]
    for got, want in ((got_p, want_p), (moments(got_s), moments(want_s))):
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
            np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_donated_step_updates_in_place():
    tx = gx.sm3(0.1)
    params = tree([(64, 80), (80,), ()])
    text = jax.jit(fused_step(tx), donate_argnums=(0, 1)).lower(params, tx.init(params), params).compile().as_text()
    entry = text[text.index("ENTRY"):]
    assert TARGET in entry
    assert not [line for line in entry.splitlines() if " copy(" in line], entry


@pytest.mark.parametrize(
    "make, sizes",
    [
        (lambda: gx.sm3(0.1), [(4, 5, 6), (7,)]),  # a rank-3 leaf
        (lambda: gx.scale_by_sm3(), [(4, 5)]),  # not sm3 itself
        (lambda: gx.chain(gx.sm3(0.1), gx.clip(1.0)), [(4, 5)]),  # sm3 inside a chain
    ],
    ids=["rank-3", "scale_by_sm3", "chained"],
)
def test_other_steps_do_not_take_the_sm3_kernel_and_keep_their_numbers(make, sizes):
    tx = make()
    params = tree(sizes)
    assert TARGET not in compiled(fused_step(tx), params, tx.init(params), params)
    got = _run(jax.jit(fused_step(tx)), tx, params, 5)
    want = _run(jax.jit(plain_step(tx)), tx, params, 5)
    assert_trees_close(got, want, rtol=1e-5, atol=1e-6)


def test_sm3_kernel_under_vmap_and_under_grad():
    tx = gx.sm3(0.1)
    params = {"w": jnp.asarray(np.random.default_rng(0).standard_normal((3, 4, 20)), jnp.float32)}
    g = grads(params, 0)
    init = jax.vmap(tx.init)
    assert TARGET in compiled(jax.vmap(fused_step(tx)), params, init(params), g)
    got = jax.jit(jax.vmap(fused_step(tx)))(params, init(params), g)
    assert_trees_close(got, jax.jit(jax.vmap(plain_step(tx)))(params, init(params), g), rtol=1e-5, atol=1e-6)

    def loss(p, step):  # through the step (the plain path: the kernel has no derivative)
        new, _ = step(p, tx.init(p), jax.tree.map(lambda x: 2 * x, p))
        return sum(jnp.sum(x**2) for x in jax.tree.leaves(new))

    one = {"w": params["w"][0]}
    np.testing.assert_allclose(
        jax.jit(jax.grad(lambda p: loss(p, fused_step(tx))))(one)["w"],
        jax.jit(jax.grad(lambda p: loss(p, plain_step(tx))))(one)["w"],
        rtol=1e-5, atol=1e-6,
    )
