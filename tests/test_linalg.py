"""power_iteration, matrix_inverse_pth_root and nnls: agreement with Optax, with and without
jit, and independent checks (eigh, the root's defining equation, NNLS's KKT conditions)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradxform as gx

RTOL, ATOL = 2e-5, 2e-5
JIT = [False, True]
JIT_IDS = ["eager", "jit"]


def _spd(n: int, seed: int) -> np.ndarray:
    a = np.random.default_rng(seed).normal(size=(n, n))
    return (a @ a.T / n + 0.1 * np.eye(n)).astype(np.float32)


def _maybe_jit(fn, jit: bool):
    return jax.jit(fn) if jit else fn


# --------------------------------------------------------------------------- power_iteration


@pytest.mark.parametrize("jit", JIT, ids=JIT_IDS)
def test_power_iteration_matches_optax_and_eigh(jit):
    m = jnp.asarray(_spd(6, 0))
    eig, vec = _maybe_jit(lambda a: gx.power_iteration(a, num_iters=200), jit)(m)
    want_eig, want_vec = optax.power_iteration(m, num_iters=200)
    np.testing.assert_allclose(eig, want_eig, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(vec, want_vec, rtol=1e-4, atol=1e-4)
    w, v = np.linalg.eigh(np.asarray(m, np.float64))
    np.testing.assert_allclose(float(eig), w[-1], rtol=1e-4)
    np.testing.assert_allclose(abs(float(np.dot(np.asarray(vec), v[:, -1]))), 1.0, atol=1e-3)


def test_power_iteration_with_a_product_function_on_a_tree():
    m = jnp.asarray(_spd(4, 1))
    v0 = {"a": jnp.ones(2), "b": jnp.arange(2.0)}

    def mvp(t):
        y = m @ jnp.concatenate([t["a"], t["b"]])
        return {"a": y[:2], "b": y[2:]}

    eig, vec = gx.power_iteration(mvp, v0=v0)
    want_eig, want_vec = optax.power_iteration(mvp, v0=v0)
    np.testing.assert_allclose(eig, want_eig, rtol=RTOL)
    for k in v0:
        np.testing.assert_allclose(vec[k], want_vec[k], rtol=1e-4, atol=1e-4)


def test_power_iteration_with_a_key_and_few_iterations_matches_optax():
    m, key = jnp.asarray(_spd(5, 2)), jax.random.PRNGKey(3)
    got = gx.power_iteration(m, num_iters=3, key=key)
    want = optax.power_iteration(m, num_iters=3, key=key)
    np.testing.assert_allclose(got[0], want[0], rtol=RTOL)
    np.testing.assert_allclose(got[1], want[1], rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: gx.power_iteration(jnp.ones((2, 3))), "matrix must be a square matrix"),
        (lambda: gx.power_iteration(lambda v: v), "v0 is required"),
        (lambda: gx.power_iteration(jnp.eye(2), num_iters=-1), "num_iters must be an integer >= 0"),
    ],
    ids=["not-square", "function-without-v0", "negative-iters"],
)
def test_power_iteration_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# --------------------------------------------------------------------------- matrix_inverse_pth_root


@pytest.mark.parametrize("p", [1, 2, 4, 8], ids=lambda p: f"p={p}")
@pytest.mark.parametrize("jit", JIT, ids=JIT_IDS)
def test_matrix_inverse_pth_root_matches_optax_and_inverts(p, jit):
    m = jnp.asarray(_spd(4, 4))
    root, error = _maybe_jit(lambda a: gx.matrix_inverse_pth_root(a, p), jit)(m)
    want_root, want_error = optax.matrix_inverse_pth_root(m, p)
    np.testing.assert_allclose(root, want_root, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(error, want_error, atol=1e-5)
    # root ** p @ A is the identity, up to the ridge and float32 rounding.
    power = np.linalg.matrix_power(np.asarray(root, np.float64), p) @ np.asarray(m, np.float64)
    np.testing.assert_allclose(power, np.eye(4), atol=2e-3)


def test_matrix_inverse_pth_root_of_an_odd_p_is_a_root():
    # Optax raises the Newton step to the nearest power of two of p (4 for p = 3); ours to p.
    m = jnp.asarray(_spd(3, 5))
    root, _ = gx.matrix_inverse_pth_root(m, 3)
    power = np.linalg.matrix_power(np.asarray(root, np.float64), 3) @ np.asarray(m, np.float64)
    np.testing.assert_allclose(power, np.eye(3), atol=2e-3)


def test_matrix_inverse_pth_root_of_a_1x1_matrix_matches_optax():
    m = jnp.array([[4.0]])
    root, error = gx.matrix_inverse_pth_root(m, 2)
    np.testing.assert_allclose(root, optax.matrix_inverse_pth_root(m, 2)[0], rtol=RTOL)
    assert float(error) == 0.0


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: gx.matrix_inverse_pth_root(jnp.ones((2, 3)), 2), "matrix must be a square matrix"),
        (lambda: gx.matrix_inverse_pth_root(jnp.ones(3), 2), "matrix must be a square matrix"),
        (lambda: gx.matrix_inverse_pth_root(jnp.eye(2), 0), "p must be an integer >= 1"),
        (lambda: gx.matrix_inverse_pth_root(jnp.eye(2), 1.5), "p must be an integer >= 1"),
    ],
    ids=["not-square", "vector", "p=0", "p=1.5"],
)
def test_matrix_inverse_pth_root_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# --------------------------------------------------------------------------- nnls


def _problem(m: int, n: int, k: int | None, seed: int):
    rng = np.random.default_rng(seed)
    a = jnp.asarray(rng.normal(size=(m, n)), jnp.float32)
    b = jnp.asarray(rng.normal(size=(m,) if k is None else (m, k)), jnp.float32)
    return a, b


@pytest.mark.parametrize("k", [None, 3], ids=["vector-b", "matrix-b"])
@pytest.mark.parametrize("jit", JIT, ids=JIT_IDS)
def test_nnls_matches_optax_and_satisfies_kkt(k, jit):
    a, b = _problem(8, 5, k, 6)
    x = _maybe_jit(lambda a, b: gx.nnls(a, b, 2000), jit)(a, b)
    np.testing.assert_allclose(x, optax.nnls(a, b, 2000), rtol=1e-4, atol=1e-5)
    assert np.all(np.asarray(x) >= 0)
    # KKT: the gradient A^T (A x - b) is >= 0, and 0 wherever x > 0.
    x64, a64, b64 = (np.asarray(t, np.float64) for t in (x, a, b))
    grad = a64.T @ (a64 @ x64 - b64)
    assert np.all(grad >= -1e-4)
    np.testing.assert_allclose(grad * x64, 0.0, atol=1e-4)


def test_nnls_with_a_given_bound_and_few_iterations_matches_optax():
    a, b = _problem(6, 4, None, 7)
    np.testing.assert_allclose(gx.nnls(a, b, 5, L=50.0), optax.nnls(a, b, 5, L=50.0), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: gx.nnls(jnp.ones(3), jnp.ones(3), 10), "A must be a matrix"),
        (lambda: gx.nnls(jnp.ones((3, 2)), jnp.ones(4), 10), "b must be a vector"),
        (lambda: gx.nnls(jnp.ones((3, 2)), jnp.ones(3), -1), "iters must be a non-negative integer"),
    ],
    ids=["A-vector", "b-rows", "negative-iters"],
)
def test_nnls_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()
