"""Gaussian noise sampled in the pass that adds it (``gradxform_add_noise``), inside
`gx.update_and_apply`.

The oracles: ``jax.random.normal`` for the samples themselves, the plain composition
(``tx.update`` then ``gx.apply_updates``) and Optax's ``noisy_sgd`` for whole steps.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradxform as gx
from gradxform.kernels._noise import add_gaussian_noise, sampling
from harness import assert_trees_close
from stepping import compiled as _compiled
from stepping import fused_step as _fused
from stepping import grads as _grads
from stepping import plain_step as _plain
from stepping import tree as _tree

NOISE = "gradxform_add_noise"
# A 0-d leaf, one element, a matrix, and leaves that cross the kernel's 65,536-element chunks
# (so that two threads share them, each starting mid-leaf).
SHAPES = [(), (1,), (7, 3), (70001,), (3, 50000)]


def _assert_identical(a, b):
    def data(x):
        return np.asarray(jax.random.key_data(x) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x)

    jax.tree.map(lambda x, y: np.testing.assert_array_equal(data(x), data(y)), a, b)


def _noisy_leaves(leaves, keys, std, enabled=True):
    def fn(ls, ks, s):
        with sampling(enabled):
            return add_gaussian_noise(ls, ks, s)

    return jax.jit(fn)(leaves, keys, std)


def test_the_kernels_samples_are_jax_random_normals():
    leaves = [jnp.zeros(s, jnp.float32) for s in SHAPES]
    keys = jax.random.split(jax.random.key(42), len(SHAPES))
    with sampling(True):
        hlo = jax.jit(lambda ls, ks: add_gaussian_noise(ls, ks, jnp.float32(1))).lower(leaves, keys).compile().as_text()
    assert NOISE in hlo and "threefry" not in hlo.lower()
    got = _noisy_leaves(leaves, keys, jnp.float32(1.0))
    for g, k, shape in zip(got, keys, SHAPES):
        want = np.asarray(jax.random.normal(k, shape, jnp.float32))
        assert g.shape == shape
        # the logarithm inside erfinv is ours, not XLA's: samples agree to an ulp or two
        np.testing.assert_allclose(np.asarray(g), want, rtol=1e-6, atol=1e-6, err_msg=str(shape))


def test_noise_is_added_to_the_gradient_scaled_by_the_standard_deviation():
    leaves = [jnp.linspace(-3.0, 3.0, 4096, dtype=jnp.float32), jnp.full((5, 2), 7.0, jnp.float32)]
    keys = jax.random.split(jax.random.key(3), 2)
    std = jnp.float32(0.25)
    got = _noisy_leaves(leaves, keys, std)
    want = _noisy_leaves(leaves, keys, std, enabled=False)
    assert_trees_close(got, want, rtol=1e-6, atol=1e-6)


def test_noisy_sgd_takes_the_noise_kernel_and_matches_the_composition_and_optax():
    params = _tree([(300, 40), (70001,), (5,), ()])
    tx = gx.noisy_sgd(0.1, eta=0.5, key=7)
    theirs = optax.noisy_sgd(0.1, eta=0.5, key=7)
    assert NOISE in _compiled(_fused(tx), params, tx.init(params), params)
    step, plain = jax.jit(_fused(tx)), jax.jit(_plain(tx))
    their_step = jax.jit(lambda p, s, g: (lambda u, s: (optax.apply_updates(p, u), s))(*theirs.update(g, s, p)))
    p1 = p2 = p3 = params
    s1, s2, s3 = tx.init(params), tx.init(params), theirs.init(params)
    for t in range(5):
        g = _grads(params, t)
        p1, s1 = step(p1, s1, g)
        p2, s2 = plain(p2, s2, g)
        p3, s3 = their_step(p3, s3, g)
    assert_trees_close(p1, p2, rtol=1e-5, atol=1e-6)
    assert_trees_close(p1, p3, rtol=1e-5, atol=1e-6)
    _assert_identical(s1, s2)  # the same counts, and keys split the same way


def test_many_leaves_go_to_several_calls_in_order():
    params = _tree([(3 + k,) for k in range(40)])
    tx = gx.noisy_sgd(1.0, eta=1.0, key=1)
    text = _compiled(_fused(tx), params, tx.init(params), params)
    assert text.count(f'custom_call_target="{NOISE}"') == 2  # 32 leaves, then 8
    got, _ = jax.jit(_fused(tx))(params, tx.init(params), params)
    want, _ = jax.jit(_plain(tx))(params, tx.init(params), params)
    assert_trees_close(got, want, rtol=1e-5, atol=1e-6)


CASES = {
    "bfloat16": (lambda: gx.noisy_sgd(0.1, key=0), jnp.bfloat16),
    "rbg-key": (lambda: gx.noisy_sgd(0.1, key=jax.random.key(0, impl="rbg")), jnp.float32),
}


@pytest.mark.parametrize("make, dtype", CASES.values(), ids=CASES.keys())
def test_other_dtypes_and_key_kinds_keep_jax_random_normal(make, dtype):
    tx = make()
    params = _tree([(40, 3), (5,)], dtype=dtype)
    assert NOISE not in _compiled(_fused(tx), params, tx.init(params), params)
    got, _ = jax.jit(_fused(tx))(params, tx.init(params), params)
    want, _ = jax.jit(_plain(tx))(params, tx.init(params), params)
    _assert_identical(got, want)


def test_the_plain_update_and_an_eager_step_keep_jax_random_normal():
    tx = gx.noisy_sgd(0.1, key=0)
    params = _tree([(40, 3)])
    assert NOISE not in _compiled(_plain(tx), params, tx.init(params), params)
    got = gx.update_and_apply(tx, params, tx.init(params), params)
    want = _plain(tx)(params, tx.init(params), params)
    _assert_identical(got, want)


def test_a_differentiated_step_and_a_vmapped_one():
    tx = gx.noisy_sgd(0.1, key=0)
    params = {"w": jnp.arange(6.0, dtype=jnp.float32)}

    def loss(p):
        new, _ = gx.update_and_apply(tx, p, tx.init(p), p)
        return jnp.sum(new["w"] ** 2)

    # d/dp of (p - 0.1 (p + n))^2 summed is 2 * 0.9 * (0.9 p - 0.1 n)
    grad = jax.jit(jax.grad(loss))(params)["w"]
    new, _ = jax.jit(_plain(tx))(params, tx.init(params), params)
    np.testing.assert_allclose(grad, 2 * 0.9 * new["w"], rtol=1e-5, atol=1e-6)

    batch = jax.tree.map(lambda x: jnp.stack([x, x + 1]), params)
    state = tx.init(params)
    vmapped = lambda step: jax.jit(jax.vmap(step, in_axes=(0, None, 0)))  # noqa: E731
    assert NOISE in vmapped(_fused(tx)).lower(batch, state, batch).compile().as_text()
    got = vmapped(_fused(tx))(batch, state, batch)
    want = vmapped(_plain(tx))(batch, state, batch)
    assert_trees_close(got[0], want[0], rtol=1e-5, atol=1e-6)
    _assert_identical(got[1], want[1])


def test_a_derivative_through_a_value_the_optimizer_closes_over_keeps_the_composition():
    """The kernel has no derivative: noise added to values that depend on a traced scale
    (captured by the optimizer, not passed as an argument) takes jax.random.normal's path."""
    params = {"w": jnp.arange(1.0, 4.0, dtype=jnp.float32)}

    def total(scale, kernel):
        tx = gx.chain(gx.scale(scale), gx.add_noise(0.5, 0.55, key=0))
        new, _ = gx.update_and_apply(tx, params, tx.init(params), params, kernel=kernel)
        return jnp.sum(new["w"])

    got = jax.jit(jax.grad(lambda s: total(s, True)))(2.0)
    want = jax.jit(jax.grad(lambda s: total(s, False)))(2.0)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    np.testing.assert_allclose(got, float(jnp.sum(params["w"])), rtol=1e-6)  # d/ds of sum(p + s p + n)
