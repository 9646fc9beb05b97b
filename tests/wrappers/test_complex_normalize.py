"""split_real_and_imaginary and normalize against optax.contrib."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradxform as gx

PARAMS = {
    "z": jnp.asarray(np.random.default_rng(0).normal(size=(3, 2)) + 1j * np.random.default_rng(1).normal(size=(3, 2)), jnp.complex64),
    "r": jnp.asarray(np.random.default_rng(2).normal(size=(2,)), jnp.float32),
}
STEPS = 3


def loss(params):
    return jnp.sum(jnp.abs(params["z"] - (0.5 - 0.25j)) ** 2) + jnp.sum(params["r"] ** 4)


def run(tx, jit: bool):
    params, state, outs = PARAMS, tx.init(PARAMS), []
    update = jax.jit(tx.update) if jit else tx.update
    for _ in range(STEPS):
        grads = jax.tree.map(jnp.conj, jax.grad(loss)(params))  # JAX's complex gradient convention
        updates, state = update(grads, state, params)
        params = optax.apply_updates(params, updates)
        outs.append(updates)
    return outs


def assert_close(got, want):
    for a, b in zip(got, want):
        assert jax.tree.structure(a) == jax.tree.structure(b)
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
            assert x.shape == y.shape and x.dtype == y.dtype
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("jit", [True, False], ids=["jit", "eager"])
@pytest.mark.parametrize("inner", ["adam", "sgd"])
def test_split_matches_optax(jit, inner):
    make = {"adam": lambda lib: lib.adam(0.1), "sgd": lambda lib: lib.sgd(0.1, momentum=0.9)}[inner]
    want = run(optax.contrib.split_real_and_imaginary(make(optax)), jit)
    got = run(gx.split_real_and_imaginary(make(gx)), jit)
    assert_close(got, want)


def test_split_equals_running_on_the_real_pairs():
    g = jnp.array([1.0 + 2.0j, -3.0 + 0.5j])
    tx = gx.split_real_and_imaginary(gx.adam(0.1))
    out, state = tx.update(g, tx.init(jnp.zeros(2, jnp.complex64)))
    real = gx.adam(0.1)
    pair, _ = real.update((g.real, g.imag), real.init((jnp.zeros(2), jnp.zeros(2))))
    np.testing.assert_array_equal(out, jax.lax.complex(*pair))
    assert isinstance(state, gx.SplitRealAndImaginaryState)
    is_pair = lambda x: isinstance(x, gx.SplitRealAndImaginaryArrays)
    assert any(is_pair(x) for x in jax.tree.leaves(state.inner_state, is_leaf=is_pair))  # moments kept per part


def test_split_inner_must_be_a_transformation():
    with pytest.raises(TypeError, match="split_real_and_imaginary: inner is the factory gx.adam itself"):
        gx.split_real_and_imaginary(gx.adam)


@pytest.mark.parametrize("jit", [True, False], ids=["jit", "eager"])
def test_normalize_matches_optax(jit):
    tx_g, tx_o = gx.chain(gx.normalize(), gx.scale(-0.1)), optax.chain(optax.contrib.normalize(), optax.scale(-0.1))
    real = {"a": PARAMS["r"], "b": jnp.abs(PARAMS["z"])}
    outs = []
    for tx in (tx_g, tx_o):
        params, state, steps = real, tx.init(real), []
        update = jax.jit(tx.update) if jit else tx.update
        for _ in range(STEPS):
            u, state = update(jax.grad(lambda p: sum(jnp.sum(x**3) for x in jax.tree.leaves(p)))(params), state)
            params = optax.apply_updates(params, u)
            steps.append(u)
        outs.append(steps)
    assert_close(*outs)
    np.testing.assert_allclose(gx.global_norm(outs[0][-1]), 0.1, rtol=1e-6)


def test_normalize_zero_stays_zero_and_keeps_dtype():
    tx = gx.normalize()
    out, _ = tx.update({"a": jnp.zeros(3)}, tx.init(None))
    np.testing.assert_array_equal(out["a"], jnp.zeros(3))
    out, _ = tx.update({"a": jnp.array([3.0, 4.0], jnp.bfloat16)}, tx.init(None))
    assert out["a"].dtype == jnp.bfloat16 and out["a"].tolist() == [0.6015625, 0.80078125]
