"""gx.second_order (hvp, hessian_diag, fisher_diag) and hutchinson_estimator_diag_hessian:
agreement with Optax, with and without jit, and with jax.hessian."""

from __future__ import annotations

import inspect
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.contrib
import pytest
from jax import flatten_util

import gradxform as gx

RTOL, ATOL = 1e-5, 1e-5
JIT = [False, True]
JIT_IDS = ["eager", "jit"]

_rng = np.random.default_rng(0)
PARAMS = {
    "w": jnp.asarray(_rng.normal(size=(3, 2)), jnp.float32),
    "b": jnp.asarray(_rng.normal(size=(2,)), jnp.float32),
}
INPUTS = jnp.asarray(_rng.normal(size=(4, 3)), jnp.float32)
TARGETS = jnp.asarray(_rng.normal(size=(4, 2)), jnp.float32)
N = 8
V = jnp.asarray(_rng.normal(size=(N,)), jnp.float32)


def loss(params, inputs, targets):
    """A non-quadratic loss, so that the Hessian depends on the parameters."""
    out = jnp.tanh(inputs @ params["w"] + params["b"])
    return jnp.mean((out - targets) ** 2)


def _flat(tree):
    return flatten_util.ravel_pytree(tree)[0]


def _optax(name, *args):
    with warnings.catch_warnings():  # Optax 0.2.8 deprecates these three
        warnings.simplefilter("ignore")
        return getattr(optax.second_order, name)(*args)


def _maybe_jit(fn, jit):
    return jax.jit(fn) if jit else fn


@pytest.mark.parametrize("jit", JIT, ids=JIT_IDS)
def test_hvp_matches_optax_and_the_full_hessian(jit):
    got = _maybe_jit(lambda v, p: gx.second_order.hvp(loss, v, p, INPUTS, TARGETS), jit)(V, PARAMS)
    assert jax.tree.structure(got) == jax.tree.structure(PARAMS)
    want = _optax("hvp", loss, V, PARAMS, INPUTS, TARGETS)
    np.testing.assert_allclose(_flat(got), _flat(want), rtol=RTOL, atol=ATOL)
    _, unravel = flatten_util.ravel_pytree(PARAMS)
    hessian = jax.hessian(lambda x: loss(unravel(x), INPUTS, TARGETS))(_flat(PARAMS))
    np.testing.assert_allclose(_flat(got), hessian @ V, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("jit", JIT, ids=JIT_IDS)
def test_hessian_diag_matches_optax_and_the_full_hessian(jit):
    got = _maybe_jit(lambda p: gx.second_order.hessian_diag(loss, p, INPUTS, TARGETS), jit)(PARAMS)
    np.testing.assert_allclose(got, _optax("hessian_diag", loss, PARAMS, INPUTS, TARGETS), rtol=RTOL, atol=ATOL)
    _, unravel = flatten_util.ravel_pytree(PARAMS)
    hessian = jax.hessian(lambda x: loss(unravel(x), INPUTS, TARGETS))(_flat(PARAMS))
    np.testing.assert_allclose(got, jnp.diag(hessian), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("jit", JIT, ids=JIT_IDS)
def test_fisher_diag_matches_optax_and_the_squared_gradient(jit):
    got = _maybe_jit(lambda p: gx.second_order.fisher_diag(loss, p, INPUTS, TARGETS), jit)(PARAMS)
    np.testing.assert_allclose(got, _optax("fisher_diag", loss, PARAMS, INPUTS, TARGETS), rtol=RTOL, atol=1e-7)
    np.testing.assert_allclose(got, _flat(jax.grad(loss)(PARAMS, INPUTS, TARGETS)) ** 2, rtol=RTOL, atol=1e-7)


def test_namespace_mirrors_optax_second_order():
    public = {n for n in dir(optax.second_order) if not n.startswith("_") and callable(getattr(optax.second_order, n))}
    assert {"hvp", "hessian_diag", "fisher_diag"} <= public
    for name in ("hvp", "hessian_diag", "fisher_diag"):
        theirs = list(inspect.signature(getattr(optax.second_order, name)).parameters)
        ours = list(inspect.signature(getattr(gx.second_order, name)).parameters)
        assert ours == theirs, name


INT_PARAMS = jax.tree.map(lambda p: p.astype(jnp.int32), PARAMS)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: gx.second_order.hvp(loss, jnp.ones(3), PARAMS, INPUTS, TARGETS), "v must be a flat vector"),
        (lambda: gx.second_order.hvp(loss, jnp.ones((2, 4)), PARAMS, INPUTS, TARGETS), "v must be a flat vector"),
        (lambda: gx.second_order.hvp(None, V, PARAMS, INPUTS, TARGETS), "loss must be a function"),
        (lambda: gx.second_order.hessian_diag(1.0, PARAMS, INPUTS, TARGETS), "loss must be a function"),
        (lambda: gx.second_order.fisher_diag("nll", PARAMS, INPUTS, TARGETS), "negative_log_likelihood must be"),
        # Integer parameters have no derivative: JAX's own error speaks of float0 tangents.
        (lambda: gx.second_order.hvp(loss, V, INT_PARAMS, INPUTS, TARGETS), r"hvp: params.*'b'.*int32"),
        (lambda: gx.second_order.hessian_diag(loss, INT_PARAMS, INPUTS, TARGETS), r"hessian_diag: params.*int32"),
        (lambda: gx.second_order.fisher_diag(loss, INT_PARAMS, INPUTS, TARGETS), r"fisher_diag: params.*int32"),
    ],
    ids=["hvp-v-size", "hvp-v-shape", "hvp-loss", "hessian-diag-loss", "fisher-diag-nll", "hvp-int", "hessian-diag-int", "fisher-diag-int"],
)
def test_errors_name_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# --------------------------------------------------------------------------- Hutchinson


def objective(params):
    return loss(params, INPUTS, TARGETS)


def _run(tx, steps, jit):
    update = _maybe_jit(lambda s, p: tx.update(p, s, p, obj_fn=objective), jit)
    state, outs = tx.init(PARAMS), []
    for _ in range(steps):
        out, state = update(state, PARAMS)
        outs.append(out)
    return outs, state


@pytest.mark.parametrize("seed", [None, 3], ids=["default-seed", "seed-3"])
@pytest.mark.parametrize("jit", JIT, ids=JIT_IDS)
def test_hutchinson_matches_optax(seed, jit):
    got, got_state = _run(gx.hutchinson_estimator_diag_hessian(seed), 3, jit)
    key = None if seed is None else jax.random.PRNGKey(seed)
    want, want_state = _run(optax.contrib.hutchinson_estimator_diag_hessian(key), 3, jit)
    for g, w in zip(got, want):
        for k in PARAMS:
            np.testing.assert_allclose(g[k], w[k], rtol=RTOL, atol=1e-7)
    np.testing.assert_array_equal(jax.random.key_data(got_state.key), want_state.key)


def test_hutchinson_takes_a_typed_key_and_averages_to_the_diagonal():
    tx = gx.hutchinson_estimator_diag_hessian(jax.random.key(1))
    state, total, draws = tx.init(PARAMS), None, 200
    step = jax.jit(lambda s: tx.update(PARAMS, s, PARAMS, value_fn=objective))
    for _ in range(draws):
        out, state = step(state)
        total = out if total is None else jax.tree.map(jnp.add, total, out)
    mean = _flat(total) / draws
    exact = gx.second_order.hessian_diag(loss, PARAMS, INPUTS, TARGETS)
    # Unbiased: the mean of 200 draws is near the diagonal (the error is off-diagonal noise).
    assert float(jnp.linalg.norm(mean - exact)) < 0.35 * float(jnp.linalg.norm(exact)) + 1e-3
    assert isinstance(state, gx.HutchinsonState)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: gx.hutchinson_estimator_diag_hessian("0"), "random_seed must be an integer seed or a PRNG key"),
        (
            lambda: gx.hutchinson_estimator_diag_hessian().update(PARAMS, gx.HutchinsonState(jax.random.key(0))),
            "needs the parameters",
        ),
        (
            lambda: gx.hutchinson_estimator_diag_hessian().update(PARAMS, gx.HutchinsonState(jax.random.key(0)), PARAMS),
            "needs the objective",
        ),
    ],
    ids=["bad-seed", "no-params", "no-objective"],
)
def test_hutchinson_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_hutchinson_works_on_mixed_precision_parameters():
    # Optax casts every sign to the lowest dtype of the tree, and jax.jvp then refuses the
    # float32 leaves' bfloat16 tangents. Each sign must take its own leaf's dtype.
    params = {"a": jnp.asarray([1.0, 2.0], jnp.bfloat16), "b": jnp.asarray([0.5, -1.5])}

    def cubic(p):
        return jnp.sum(p["a"].astype(jnp.float32) ** 3) + jnp.sum(p["b"] ** 3)

    tx = gx.hutchinson_estimator_diag_hessian(0)
    out, _ = tx.update(params, tx.init(params), params, obj_fn=cubic)
    assert out["a"].dtype == jnp.bfloat16 and out["b"].dtype == jnp.float32
    # The Hessian is diagonal (6 p), so one draw is exact.
    np.testing.assert_allclose(np.asarray(out["a"], np.float32), [6.0, 12.0])
    np.testing.assert_allclose(out["b"], [3.0, -9.0])
