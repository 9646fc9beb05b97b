"""Edge cases of the parameter tree and of the gradients, against Optax.

Oracle: Optax. Trees with a zero-size leaf, scalar leaves, ``None`` leaves and empty
subtrees; a first step whose gradients are all zero (divisions by zero) or 1e30 (squares
overflow): gradxform gives Optax's numbers and Optax's NaN/inf pattern, through
``tx.update`` and through `update_and_apply` (whose CPU kernels see these leaves too).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradxform as gx

OPTIMIZERS = {
    "adam": lambda lib: lib.adam(1e-3),
    "sgd-momentum": lambda lib: lib.sgd(1e-3, momentum=0.9),
    "rmsprop": lambda lib: lib.rmsprop(1e-3),
    "lamb": lambda lib: lib.lamb(1e-3),
    "adafactor": lambda lib: lib.adafactor(),
}


def _leaf(shape, offset):
    n = int(np.prod(shape))
    return jnp.asarray(np.cos(np.arange(n) * 0.9 + offset).reshape(shape) + 0.5, jnp.float32)


TREES = {
    "zero-size-leaf": {"w": _leaf((2, 3), 0), "empty": jnp.zeros((0, 3)), "b": _leaf((3,), 1)},
    "scalar-leaves": {"s": _leaf((), 0), "t": _leaf((), 2)},
    "none-and-empty-subtrees": {"a": _leaf((2, 3), 0), "b": None, "c": {}, "d": (), "e": (_leaf((3,), 1),)},
}
FIRST_GRADIENTS = {"zero": 0.0, "huge": 1e30}


def _grads(params, step, first=None):
    def leaf(x):
        g = jnp.sin(jnp.arange(x.size, dtype=jnp.float32) * 0.7 + step).reshape(x.shape)
        return jnp.full_like(x, first) if first is not None and step == 0 else g

    return jax.tree.map(leaf, params)


def _run(lib, name, params, first=None, fused=False):
    tx = OPTIMIZERS[name](lib)

    @jax.jit
    def two_steps(params):
        state, out = tx.init(params), []
        for step in range(2):
            grads = _grads(params, step, first)
            if fused:
                params, state = gx.update_and_apply(tx, grads, state, params)
            else:
                updates, state = tx.update(grads, state, params)
                out.append(updates)
                params = lib.apply_updates(params, updates)
        return params, out

    return two_steps(params)


def _assert_same(ours, ref):
    assert jax.tree.structure(ours) == jax.tree.structure(ref)
    for x, y in zip(jax.tree.leaves(ours), jax.tree.leaves(ref)):
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=2e-5, atol=2.5e-7)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
@pytest.mark.parametrize("tree", list(TREES))
def test_edge_trees_match_optax(name, tree):
    params = TREES[tree]
    ref_params, ref_updates = _run(optax, name, params)
    params_out, updates = _run(gx, name, params)
    _assert_same(updates, ref_updates)
    _assert_same(params_out, ref_params)
    _assert_same(_run(gx, name, params, fused=True)[0], ref_params)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
@pytest.mark.parametrize("first", list(FIRST_GRADIENTS))
def test_zero_and_huge_first_gradients_match_optax(name, first):
    params = {"w": _leaf((2, 3), 0), "b": _leaf((3,), 1)}
    ref_params, ref_updates = _run(optax, name, params, FIRST_GRADIENTS[first])
    params_out, updates = _run(gx, name, params, FIRST_GRADIENTS[first])
    _assert_same(updates, ref_updates)  # assert_allclose also compares where NaN and inf are
    _assert_same(params_out, ref_params)


@pytest.mark.parametrize(
    "make",
    [lambda: gx.adam(1e-3, mu_dtype=jnp.float32), lambda: gx.adafactor(momentum=0.9)],
    ids=["adam-mu_dtype=float32", "adafactor-momentum-default-dtype_momentum"],
)
def test_complex_update_into_a_real_average_is_refused(make):
    # Optax keeps this step's imaginary part but stores the average without it, so the
    # imaginary part has no momentum; this returned no imaginary part at all (a regression once).
    tx = make()
    params = {"w": jnp.ones((2, 3), jnp.complex64)}
    with pytest.raises(ValueError, match="the update at 'w' is complex64 but the average is kept in float32"):
        tx.update(jax.tree.map(lambda x: x * (1 + 1j), params), tx.init(params), params)


def test_complex_momentum_in_a_complex_dtype_matches_optax():
    params = {"w": jnp.asarray(np.arange(6).reshape(2, 3) * (0.3 + 0.3j), jnp.complex64)}
    grads = {"w": jnp.asarray(np.exp(1j * np.arange(6)).reshape(2, 3), jnp.complex64)}
    out = []
    for lib in (gx, optax):
        tx = lib.adafactor(1e-3, min_dim_size_to_factor=2, momentum=0.9, dtype_momentum=jnp.complex64)
        state = tx.init(params)
        for _ in range(2):
            updates, state = tx.update(grads, state, params)
        out.append(updates)
    _assert_same(*out)
