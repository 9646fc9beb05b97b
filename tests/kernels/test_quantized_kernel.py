"""`gx.update_and_apply` for `gx.quantized_state(gx.adam(...))`: each block of both 8-bit
moments decoded, stepped and encoded in one pass (``gradxform_adam8_step``).

The oracle is the same optimizer run as ``tx.update`` followed by ``gx.apply_updates``, where
XLA decodes, steps and encodes. The kernel does the operations XLA:CPU compiles that to (fused
multiply-adds included), so its codes, block maxima and map flags are the same, and the
parameters agree to float32 rounding. A value within an ulp of a level boundary may still
round to the neighbouring level where another compiler pairs the operations differently:
codes may differ by one level in a handful of values, no more.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx
from harness import assert_trees_close
from stepping import compiled as _compiled
from stepping import fused_step as _fused
from stepping import grads as _grads
from stepping import plain_step as _plain
from stepping import tree as _tree

ADAM8 = "gradxform_adam8_step"
# Quantized leaves: one block and a bit (5000 of 2048), a matrix of whole blocks (64 x 96 =
# 3 blocks), one just over min_size; left in float32: a vector and a 0-d leaf.
SIZES = [(5000,), (64, 96), (4097,), (10,), ()]


def _run(step, tx, params, steps, scale=1.0):
    params = jax.tree.map(jnp.copy, params)
    state = tx.init(params)
    for t in range(steps):
        params, state = step(params, state, jax.tree.map(lambda g: scale * g, _grads(params, t)))
    return params, state


def _assert_params_close(a, b, lr=1e-2):
    """Float32 rounding everywhere, but for the rare value whose moment took the neighbouring
    level at some step: that one is off by a fraction of a step (at most ``lr``)."""
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        x, y = np.asarray(x), np.asarray(y)
        off = np.abs(x - y) > 1e-6 + 1e-5 * np.abs(y)
        assert off.mean() <= 1e-3, off.mean()
        np.testing.assert_allclose(x, y, rtol=0, atol=lr)


def _assert_same_state(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        x, y = np.asarray(x), np.asarray(y)
        if x.dtype == np.uint8:  # codes: the same, but for a rare neighbouring level
            differ = x != y
            assert differ.mean() <= 1e-3, differ.mean()
            np.testing.assert_array_equal(x >> 7, y >> 7)  # the same signs
            assert np.all(np.abs(x.astype(int) - y.astype(int))[differ] == 1)
        elif x.dtype == np.bool_ or x.dtype.kind == "i":
            np.testing.assert_array_equal(x, y)
        else:
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-12)


CASES = {
    "adam-stochastic": lambda: gx.quantized_state(gx.adam(1e-2)),
    "adamw-nearest": lambda: gx.quantized_state(gx.adamw(1e-2, weight_decay=0.1), stochastic_rounding=False),
    "adam-blocks-of-256": lambda: gx.quantized_state(gx.adam(1e-2, eps_root=1e-8), block_size=256, min_size=1000),
}


@pytest.mark.parametrize("make", CASES.values(), ids=CASES.keys())
def test_the_kernel_writes_xlas_codes_and_the_compositions_parameters(make):
    tx = make()
    params = _tree(SIZES)
    text = _compiled(_fused(tx), params, tx.init(params), params)
    assert ADAM8 in text
    # both kinds of leaf in one step: the small ones take Adam's float32 kernel
    assert "gradxform_adam_step" in text
    fused = jax.jit(_fused(tx), donate_argnums=(0, 1))
    got = _run(fused, tx, params, 8)
    want = _run(jax.jit(_plain(tx)), tx, params, 8)
    _assert_params_close(got[0], want[0])
    _assert_same_state(got[1], want[1])


def test_moments_of_one_sign_and_of_both_and_zero_blocks():
    """Blocks whose new moments are all >= 0 use the unsigned map (of square roots), others
    the signed one; an all-zero block keeps scale 1. Gradients that are positive on one leaf,
    mixed on another and zero on a third exercise all three."""
    tx = gx.quantized_state(gx.adam(1e-2), block_size=512, min_size=512)
    params = {"pos": jnp.ones(1500), "mixed": jnp.linspace(-1.0, 1.0, 1500), "zero": jnp.zeros(1500)}
    grads = {"pos": jnp.full(1500, 3.0), "mixed": jnp.linspace(-2.0, 2.0, 1500), "zero": jnp.zeros(1500)}
    step = lambda s: (lambda p, st: s(p, st, grads))  # noqa: E731
    fused, plain = step(jax.jit(_fused(tx))), step(jax.jit(_plain(tx)))
    a = b = (params, tx.init(params))
    for _ in range(4):
        a, b = fused(*a), plain(*b)
    _assert_params_close(a[0], b[0])
    _assert_same_state(a[1], b[1])
    flags = a[1].inner_state.inner_state[0].left[0].ema
    assert not bool(flags["mixed"].nonneg.all()) and bool(flags["pos"].nonneg.all()) and bool(flags["zero"].nonneg.all())


def test_the_step_updates_donated_buffers_in_place():
    tx = gx.quantized_state(gx.adam(1e-2))
    params = _tree([(5000,), (70, 90)])
    step = jax.jit(_fused(tx), donate_argnums=(0, 1))
    text = step.lower(params, tx.init(params), params).compile().as_text()
    entry = text[text.index("ENTRY") :]
    assert ADAM8 in entry
    assert not [line for line in entry.splitlines() if " copy(" in line], entry


FALLBACKS = {
    "lion": lambda: gx.quantized_state(gx.lion(1e-3)),
    "nadam": lambda: gx.quantized_state(gx.adam(1e-2, nesterov=True)),
    "bf16-moments": lambda: gx.quantized_state(gx.adam(1e-2, mu_dtype=jnp.bfloat16)),
}


@pytest.mark.parametrize("make", FALLBACKS.values(), ids=FALLBACKS.keys())
def test_other_inner_optimizers_do_not_take_the_kernel(make):
    tx = make()
    params = _tree([(5000,), (10,)])
    assert ADAM8 not in _compiled(_fused(tx), params, tx.init(params), params)
    got = _run(jax.jit(_fused(tx)), tx, params, 3)
    want = _run(jax.jit(_plain(tx)), tx, params, 3)
    assert_trees_close(got[0], want[0], rtol=1e-5, atol=1e-6)


def test_a_hyperparameter_changed_between_steps_reaches_the_kernel():
    tx = gx.quantized_state(gx.adam(1e-2))
    params = _tree([(5000,)])
    fused, plain = jax.jit(_fused(tx)), jax.jit(_plain(tx))
    a = b = (params, tx.init(params))
    for t in range(6):
        if t == 3:
            a = (a[0], a[1]._replace(inner_state=gx.set_hyperparams(a[1].inner_state, learning_rate=1e-3)))
            b = (b[0], b[1]._replace(inner_state=gx.set_hyperparams(b[1].inner_state, learning_rate=1e-3)))
        g = _grads(params, t)
        a, b = fused(*a, g), plain(*b, g)
    _assert_params_close(a[0], b[0])
    _assert_same_state(a[1], b[1])


def test_a_nan_gradient_costs_its_own_value_not_its_blocks_scale():
    """A NaN is left out of a block's maximum and minimum (by the kernel and by quantize), so
    the block's other values keep their codes and decode to numbers."""
    tx = gx.quantized_state(gx.adam(1e-2), stochastic_rounding=False)
    params = {"w": jnp.linspace(-1.0, 1.0, 5000, dtype=jnp.float32)}
    grads = {"w": jnp.linspace(0.01, 0.1, 5000, dtype=jnp.float32).at[3].set(jnp.nan)}
    got = jax.jit(_fused(tx))(params, tx.init(params), grads)
    want = jax.jit(_plain(tx))(params, tx.init(params), grads)
    for new, old in zip(jax.tree.leaves(got[1]), jax.tree.leaves(want[1])):
        new, old = np.asarray(new), np.asarray(old)
        if new.dtype == np.uint8:
            keep = np.ones(new.shape, bool)
            keep[0, 3] = False
            np.testing.assert_array_equal(new[keep], old[keep])
        else:
            np.testing.assert_array_equal(new, old)
    moments = got[1].inner_state.inner_state[0].left[0].ema["w"]
    assert np.isfinite(np.asarray(moments.absmax)).all()
    decoded = np.asarray(gx.dequantize(moments))
    assert np.isfinite(np.delete(decoded, 3)).all()
