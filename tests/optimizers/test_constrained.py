"""Proximal gradient methods against TensorFlow's update equations, and projected descent
against NumPy projections (computed by other algorithms), checking every iterate."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradxform as gx
from harness import coupled_loss, grad_fn, mixed_params, run
from numpy_problem import coupled_grad, flat, layer_slices

STEPS = 50


# --------------------------------------------------------------------------- proximal


def proximal_tf(lr, l1, l2, adagrad, steps, w, initial_accumulator=0.1):
    """tf.raw_ops.ApplyProximalGradientDescent / ApplyProximalAdagrad:
    (accum += g^2; a = lr / sqrt(accum)) or a = lr; prox_v = w - a g;
    w = sign(prox_v) / (1 + a l2) * max(|prox_v| - a l1, 0)."""
    accum = np.full_like(w, initial_accumulator)
    for _ in range(steps):
        g = coupled_grad(w)
        if adagrad:
            accum = accum + g * g
            a = lr / np.sqrt(accum)
        else:
            a = lr
        prox_v = w - a * g
        w = np.sign(prox_v) / (1 + a * l2) * np.maximum(np.abs(prox_v) - a * l1, 0)
    return w


@pytest.mark.parametrize(
    "adagrad,lr,l1,l2", [(False, 0.05, 0.3, 0.1), (True, 0.1, 0.3, 0.05)], ids=["gradient-descent", "adagrad"]
)
def test_proximal_matches_tensorflow(adagrad, lr, l1, l2):
    tx = gx.proximal_adagrad(lr, l1, l2) if adagrad else gx.proximal_gradient(lr, l1, l2)
    params, _ = run(tx, STEPS)
    expected = proximal_tf(lr, l1, l2, adagrad, STEPS, flat(mixed_params()))
    got = flat(params)
    np.testing.assert_allclose(got, expected, rtol=5e-5, atol=5e-6)
    assert np.sum(got == 0) > 0, "the L1 term should set some coordinates to exactly zero"


def test_proximal_adagrad_needs_a_positive_accumulator():
    with pytest.raises(ValueError, match="initial_accumulator_value must be a finite number > 0"):
        gx.proximal_adagrad(0.1, initial_accumulator_value=0.0)


# --------------------------------------------------------------------------- projections


def _bisect(f, low, high, iterations=200):
    """The root of a non-increasing ``f`` on [low, high]."""
    for _ in range(iterations):
        mid = (low + high) / 2
        low, high = (mid, high) if f(mid) > 0 else (low, mid)
    return (low + high) / 2


def simplex_np(x, total):
    theta = _bisect(lambda t: np.sum(np.maximum(x - t, 0)) - total, x.min() - total, x.max())
    return np.maximum(x - theta, 0)


def l1_ball_np(x, radius):
    if np.sum(np.abs(x)) <= radius:
        return x
    theta = _bisect(lambda t: np.sum(np.maximum(np.abs(x) - t, 0)) - radius, 0.0, np.abs(x).max())
    return np.sign(x) * np.maximum(np.abs(x) - theta, 0)


NORMALS = jax.tree.map(lambda x: jnp.cos(jnp.arange(x.size, dtype=jnp.float32) + 1).reshape(x.shape), mixed_params())
LOWER, UPPER, RADIUS_L1, RADIUS_L2, TOTAL, OFFSET = -0.5, 0.6, 1.0, 0.8, 2.0, 0.3

# set -> (keyword arguments of gx.projected, NumPy projection of one flat leaf (with its
# normal), membership test of one leaf). Balls, simplex and hyperplane are met up to float32
# rounding of sums over at most 24 entries (relative 1e-5); bounds and signs exactly.
SETS = {
    "box": (
        dict(lower=LOWER, upper=UPPER),
        lambda x, a: np.clip(x, LOWER, UPPER),
        lambda w, a: np.all(w >= np.float32(LOWER)) and np.all(w <= np.float32(UPPER)),
    ),
    "non_negative": ({}, lambda x, a: np.maximum(x, 0), lambda w, a: np.all(w >= 0)),
    "l1_ball": (
        dict(radius=RADIUS_L1),
        lambda x, a: l1_ball_np(x, RADIUS_L1),
        lambda w, a: np.sum(np.abs(w)) <= RADIUS_L1 * (1 + 1e-5),
    ),
    "l2_ball": (
        dict(radius=RADIUS_L2),
        lambda x, a: x * min(1.0, RADIUS_L2 / np.linalg.norm(x)),
        lambda w, a: np.linalg.norm(w) <= RADIUS_L2 * (1 + 1e-5),
    ),
    "simplex": (
        dict(total=TOTAL),
        lambda x, a: simplex_np(x, TOTAL),
        lambda w, a: np.all(w >= 0) and abs(np.sum(w) - TOTAL) <= 1e-5 * TOTAL,
    ),
    "hyperplane": (
        dict(normal=NORMALS, offset=OFFSET),
        lambda x, a: x - (a @ x - OFFSET) / (a @ a) * a,
        lambda w, a: abs(a @ w - OFFSET) <= 1e-5 * (1 + np.linalg.norm(a) * np.linalg.norm(w)),
    ),
}


def _iterates(tx, steps):
    grad = grad_fn(coupled_loss)

    def step(carry, _):
        p, s = carry
        u, s = tx.update(grad(p), s, p)
        p = gx.apply_updates(p, u)
        return (p, s), p

    p0 = mixed_params()
    _, every = jax.jit(lambda c: jax.lax.scan(step, c, None, length=steps))((p0, tx.init(p0)))
    return every


@pytest.mark.parametrize("onto", sorted(SETS), ids=str)
def test_projected_matches_numpy_and_stays_in_the_set(onto):
    kwargs, project_np, inside = SETS[onto]
    lr = 0.05
    # Any optimizer can be projected: Optax's SGD for one set, ours for the others.
    inner = optax.sgd(lr) if onto == "l2_ball" else gx.sgd(lr)
    every = jax.tree.map(np.asarray, _iterates(gx.projected(inner, onto, **kwargs), STEPS))
    normals = flat(NORMALS)
    w = flat(mixed_params())
    slices = layer_slices()
    for t in range(STEPS):
        g = coupled_grad(w)
        w = np.concatenate([project_np(w[sl] - lr * g[sl], normals[sl]) for sl in slices])
        got = np.concatenate([np.asarray(x).ravel() for x in jax.tree.leaves(jax.tree.map(lambda x: x[t], every))])
        for sl in slices:
            assert inside(got[sl], normals[sl].astype(np.float32)), (onto, t, sl, got[sl])
    np.testing.assert_allclose(got, w, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "args,message",
    [
        (("sphere",), "onto must be one of"),
        (("l2_ball",), "needs radius"),
        (("box",), "needs lower, upper or both"),
        (("non_negative",), None),
    ],
    ids=["unknown-set", "missing-radius", "empty-box-arguments", "irrelevant-argument"],
)
def test_projected_validates_its_arguments(args, message):
    if message is None:
        with pytest.raises(ValueError, match=r"\['radius'\] do not apply"):
            gx.projected(gx.sgd(0.1), *args, radius=1.0)
    else:
        with pytest.raises(ValueError, match=message):
            gx.projected(gx.sgd(0.1), *args)
    with pytest.raises(ValueError, match="the box is empty"):
        gx.projected(gx.sgd(0.1), "box", lower=1.0, upper=0.0)


def test_projected_rejects_complex_parameters_and_honours_apply_to():
    p = {"c": jnp.ones(2, jnp.complex64), "r": jnp.array([-1.0, 2.0])}
    tx = gx.projected(gx.sgd(0.1), "non_negative")
    with pytest.raises(ValueError, match="sets of real arrays"):
        tx.update(p, tx.init(p), p)
    tx = gx.projected(gx.sgd(0.0), "non_negative", apply_to={"c": False, "r": True})
    u, _ = tx.update(p, tx.init(p), p)
    assert gx.apply_updates(p, u)["r"].tolist() == [0.0, 2.0]
