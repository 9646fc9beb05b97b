"""FTRL-Proximal and FTML against NumPy loops of the papers' algorithms, and FTRL's sparsity."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx
from harness import coupled_loss, mixed_params, run
from numpy_problem import coupled_grad, flat

STEPS = 50


def _shifted_loss(p):
    """The harness objective centred on ``mixed_params()``, so that its gradient at the
    origin (FTRL's first iterate) is not zero."""
    return coupled_loss(jax.tree.map(lambda x, c: x - c, p, mixed_params()))


def ftrl_paper(alpha, beta, l1, l2, steps, shift):
    """McMahan et al. 2013, Algorithm 1 (per-coordinate FTRL-Proximal), vectorised over
    coordinates: the weights are computed from (z, n) at the start of every round."""
    z = np.zeros(shift.size)
    n = np.zeros(shift.size)

    def weights():
        w = -(z - np.sign(z) * l1) / ((beta + np.sqrt(n)) / alpha + l2)
        return np.where(np.abs(z) <= l1, 0.0, w)

    for _ in range(steps):
        w = weights()
        g = coupled_grad(w, shift)
        sigma = (np.sqrt(n + g * g) - np.sqrt(n)) / alpha
        z = z + g - sigma * w
        n = n + g * g
    return weights(), z


FTRL_SETTINGS = {
    "no-regularisation": dict(learning_rate=0.5, l1=0.0, l2=0.0, beta=1.0),
    "l1-l2": dict(learning_rate=0.5, l1=0.3, l2=0.2, beta=0.5),
}


@pytest.mark.parametrize("setting", sorted(FTRL_SETTINGS), ids=str)
def test_ftrl_matches_paper(setting):
    kw = FTRL_SETTINGS[setting]
    zeros = jax.tree.map(jnp.zeros_like, mixed_params())
    params, _ = run(gx.ftrl(**kw), STEPS, params=zeros, loss=_shifted_loss)
    expected, _ = ftrl_paper(kw["learning_rate"], kw["beta"], kw["l1"], kw["l2"], STEPS, flat(mixed_params()))
    np.testing.assert_allclose(flat(params), expected, rtol=2e-4, atol=2e-5)


def test_ftrl_large_l1_gives_exact_zeros():
    zeros = jax.tree.map(jnp.zeros_like, mixed_params())
    kw = dict(learning_rate=0.5, beta=1.0, l2=0.0)
    # Every |z| stays below a huge l1: every weight is exactly zero.
    params, _ = run(gx.ftrl(l1=1e3, **kw), STEPS, params=zeros, loss=_shifted_loss)
    assert all(bool(jnp.all(x == 0)) for x in jax.tree.leaves(params))
    # A moderate l1 zeroes exactly the coordinates the paper's algorithm zeroes.
    l1 = 2.0
    params, _ = run(gx.ftrl(l1=l1, **kw), STEPS, params=zeros, loss=_shifted_loss)
    expected, z = ftrl_paper(kw["learning_rate"], kw["beta"], l1, 0.0, STEPS, flat(mixed_params()))
    assert np.min(np.abs(np.abs(z) - l1)) > 1e-2, "a |z| too close to l1 would make the pattern fragile"
    got = flat(params)
    assert 0 < np.sum(expected == 0) < expected.size
    np.testing.assert_array_equal(got == 0, expected == 0)


def ftml_paper(eta, b1, b2, eps, steps, w):
    """Zheng & Kwok 2017, Algorithm 2 (FTML)."""
    v = np.zeros_like(w)
    d = np.zeros_like(w)
    z = np.zeros_like(w)
    for t in range(1, steps + 1):
        g = coupled_grad(w)
        v = b2 * v + (1 - b2) * g * g
        d_new = (1 - b1**t) / eta * (np.sqrt(v / (1 - b2**t)) + eps)
        sigma = d_new - b1 * d
        z = b1 * z + (1 - b1) * g - sigma * w
        d = d_new
        w = -z / d
    return w


FTML_SETTINGS = {
    "defaults": dict(learning_rate=0.05),
    "b1-0.9-b2-0.99": dict(learning_rate=0.1, b1=0.9, b2=0.99, eps=1e-6),
}


@pytest.mark.parametrize("setting", sorted(FTML_SETTINGS), ids=str)
def test_ftml_matches_paper(setting):
    kw = {"b1": 0.6, "b2": 0.999, "eps": 1e-8, **FTML_SETTINGS[setting]}
    params, _ = run(gx.ftml(**kw), STEPS)
    expected = ftml_paper(kw["learning_rate"], kw["b1"], kw["b2"], kw["eps"], STEPS, flat(mixed_params()))
    np.testing.assert_allclose(flat(params), expected, rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("make", [lambda: gx.ftrl(0.1), lambda: gx.ftml(0.1)], ids=["ftrl", "ftml"])
def test_update_without_params_is_an_error(make):
    tx = make()
    with pytest.raises(ValueError, match="needs them"):
        tx.update(jnp.ones(2), tx.init(jnp.ones(2)))


def test_invalid_hyperparameters_are_named():
    with pytest.raises(ValueError, match="l1 must be >= 0"):
        gx.ftrl(0.1, l1=-1.0)
    with pytest.raises(ValueError, match="learning_rate must be > 0"):
        gx.ftml(0.0)
