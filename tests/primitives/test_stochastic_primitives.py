"""Decaying step sizes, Gaussian noise, delay compensation and iterate averaging, stage by stage."""

import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx

RNG = np.random.default_rng(0)


def test_scale_by_power_decay_follows_its_formula():
    tx = gx.scale_by_power_decay(0.5, 0.75)
    s = tx.init(jnp.zeros(1))
    for t in range(6):
        u, s = tx.update(jnp.ones(1), s)
        np.testing.assert_allclose(np.asarray(u), [(1 + 0.5 * t) ** -0.75], rtol=1e-6)


def test_complex_noise_has_the_variance_in_each_part():
    n, variance = 8000, 0.3
    tx = gx.add_gaussian_noise(variance, seed=5)
    zeros = jnp.zeros(n, jnp.complex64)
    u, _ = tx.update(zeros, tx.init(zeros))
    u = np.asarray(u)
    # Standard error of a variance estimate from n draws: variance * sqrt(2 / n) = 0.0047;
    # 5 of them give the tolerance.
    for part in (u.real, u.imag):
        assert abs(part.var() - variance) < 0.024
    assert abs(np.corrcoef(u.real, u.imag)[0, 1]) < 5 / np.sqrt(n)
    # The draws are a function of the seed: the same seed repeats them, another does not.
    again = gx.add_gaussian_noise(variance, seed=5)
    other = gx.add_gaussian_noise(variance, seed=6)
    np.testing.assert_array_equal(again.update(zeros, again.init(zeros))[0], u)
    assert not np.allclose(other.update(zeros, other.init(zeros))[0], u)


def test_delay_compensation_formula():
    g, w, then = (jnp.asarray(RNG.normal(size=5), jnp.float32) for _ in range(3))
    tx = gx.delay_compensation(0.3)
    u, _ = tx.update(g, tx.init(w), w, stale_params=then)
    gn, wn, tn = (np.asarray(x, np.float64) for x in (g, w, then))
    np.testing.assert_allclose(np.asarray(u), gn + 0.3 * gn * gn * (wn - tn), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(tx.update(g, tx.init(w), w)[0], g)
    with pytest.raises(ValueError, match="not the current parameters"):
        tx.update(g, tx.init(w), stale_params=then)


@pytest.mark.parametrize("t0", [0.0, 3.0, 100.0], ids=["from-start", "from-step-3", "never"])
def test_average_iterates_is_the_mean_since_t0(t0):
    tx = gx.average_iterates(t0)
    p = jnp.zeros(3)
    s = tx.init(p)
    iterates = []
    for _ in range(8):
        u, s = tx.update(jnp.asarray(RNG.normal(size=3), jnp.float32), s, p)
        p = p + u
        iterates.append(np.asarray(p, np.float64))
    # The t-th iterate (t = 1, 2, ...) is weighted 1 / max(1, t - 1 - t0): the average restarts
    # at the iterate t = t0 + 2 and is the plain mean from there on.
    first = int(max(1, t0 + 2)) if t0 + 2 <= 8 else 8
    expected = np.mean(iterates[first - 1 :], axis=0)
    np.testing.assert_allclose(np.asarray(gx.averaged_iterates(s)), expected, rtol=1e-5, atol=1e-6)
