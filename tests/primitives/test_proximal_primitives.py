"""Proximal operators and projections against their optimality conditions and NumPy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx

RNG = np.random.default_rng(0)


def _bisect(f, low, high, iterations=200):
    """The root of a non-increasing ``f`` on [low, high]."""
    for _ in range(iterations):
        mid = (low + high) / 2
        low, high = (mid, high) if f(mid) > 0 else (low, mid)
    return (low + high) / 2


def test_soft_threshold_real_and_complex():
    x = RNG.normal(size=50).astype(np.float32)
    got = np.asarray(gx.soft_threshold(jnp.asarray(x), 0.7))
    np.testing.assert_allclose(got, np.sign(x) * np.maximum(np.abs(x) - 0.7, 0), rtol=1e-6, atol=1e-7)
    assert np.all(got[np.abs(x) <= 0.7] == 0)
    z = (RNG.normal(size=50) + 1j * RNG.normal(size=50)).astype(np.complex64)
    got = np.asarray(gx.soft_threshold(jnp.asarray(z), 0.7))
    np.testing.assert_allclose(np.abs(got), np.maximum(np.abs(z) - 0.7, 0), rtol=1e-5, atol=1e-6)
    kept = np.abs(z) > 0.7
    np.testing.assert_allclose(np.angle(got[kept]), np.angle(z[kept]), rtol=1e-5, atol=1e-5)
    assert np.all(got[~kept] == 0)


@pytest.mark.parametrize("step,l1,l2", [(0.5, 0.3, 0.0), (0.2, 1.0, 2.0), (1.0, 0.0, 0.5)], ids=["l1", "elastic", "l2"])
def test_prox_elastic_net_satisfies_optimality(step, l1, l2):
    """w = prox(x) iff 0 is in w - x + step (l1 d|w| + l2 w): for w != 0 the gradient of
    the objective vanishes; for w = 0, |x| <= step * l1."""
    x = RNG.normal(size=200)
    w = np.asarray(gx.prox_elastic_net(jnp.asarray(x, jnp.float32), step, l1, l2), np.float64)
    nz = w != 0
    np.testing.assert_allclose((w - x + step * (l1 * np.sign(w) + l2 * w))[nz], 0, atol=1e-5)
    assert np.all(np.abs(x[~nz]) <= step * l1 + 1e-6)


@pytest.mark.parametrize("shape,total", [((7,), 1.0), ((3, 4), 2.5)], ids=["vector", "matrix"])
def test_project_simplex_and_l1_ball_match_bisection(shape, total):
    simplex, l1_ball = jax.jit(gx.project_simplex), jax.jit(gx.project_l1_ball)
    for _ in range(5):
        x = RNG.normal(size=shape) * 2
        theta = _bisect(lambda t: np.sum(np.maximum(x - t, 0)) - total, x.min() - total, x.max())
        np.testing.assert_allclose(simplex(jnp.asarray(x, jnp.float32), total), np.maximum(x - theta, 0), atol=2e-6)
        got = np.asarray(l1_ball(jnp.asarray(x, jnp.float32), total))
        if np.sum(np.abs(x)) <= total:
            np.testing.assert_array_equal(got, x.astype(np.float32))
        else:
            theta = _bisect(lambda t: np.sum(np.maximum(np.abs(x) - t, 0)) - total, 0.0, np.abs(x).max())
            np.testing.assert_allclose(got, np.sign(x) * np.maximum(np.abs(x) - theta, 0), atol=2e-6)


def test_project_l2_ball_box_and_hyperplane():
    x = RNG.normal(size=(4, 3))
    inside = x / np.linalg.norm(x) * 0.5
    np.testing.assert_array_equal(gx.project_l2_ball(jnp.asarray(inside, jnp.float32), 1.0), inside.astype(np.float32))
    np.testing.assert_allclose(gx.project_l2_ball(jnp.asarray(x, jnp.float32), 1.0), x / np.linalg.norm(x), rtol=1e-6)
    np.testing.assert_array_equal(gx.project_box(jnp.asarray(x, jnp.float32), -0.5, 0.5), np.clip(x, -0.5, 0.5).astype(np.float32))
    a = RNG.normal(size=(4, 3))
    w = np.asarray(gx.project_hyperplane(jnp.asarray(x, jnp.float32), jnp.asarray(a, jnp.float32), 0.7), np.float64)
    assert abs(np.sum(a * w) - 0.7) < 1e-5
    step = (x - w).ravel()  # the move is along the normal
    np.testing.assert_allclose(step, step @ a.ravel() / (a.ravel() @ a.ravel()) * a.ravel(), atol=1e-6)


def test_to_updates_is_exact_at_zero_and_within_a_factor_two():
    p = jnp.asarray(RNG.normal(size=10000) * RNG.choice([1e-3, 1.0, 1e3], size=10000), jnp.float32)
    # 0 from anywhere, and new values within a factor 2 of the old ones (Sterbenz).
    new = jnp.where(jnp.arange(10000) < 5000, 0.0, p * jnp.asarray(RNG.uniform(0.5, 2.0, size=10000), jnp.float32))
    np.testing.assert_array_equal(gx.apply_updates(p, gx.to_updates(new, p)), new)


def test_entrywise_projection_holds_after_rounding():
    """Steps of every scale into a box: w + u, rounded as apply_updates rounds it, is inside."""
    low, high = -0.3, 0.7
    scales = RNG.choice([1e-4, 1.0, 1e4], size=(2, 20000))
    w = jnp.asarray(np.clip(RNG.normal(size=20000) * scales[0], low, high), jnp.float32)
    g = jnp.asarray(RNG.normal(size=20000) * scales[1], jnp.float32)
    box = lambda x: gx.project_box(x, low, high)
    for elementwise in (False, True):
        tx = gx.project_params(box, elementwise=elementwise)
        landed = np.asarray(gx.apply_updates(w, tx.update(g, tx.init(w), w)[0]))
        inside = (landed >= np.float32(low)) & (landed <= np.float32(high))
        if elementwise:
            assert inside.all()
            np.testing.assert_allclose(landed, np.clip(np.asarray(w) + np.asarray(g), low, high), atol=1e-6)
        else:
            assert not inside.all(), "the plain difference should leave some sums outside (else this test is void)"
