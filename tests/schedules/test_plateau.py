"""Reduce on plateau: Keras' decisions step for step, positive and negative values, under
jit, agreement with optax.contrib.reduce_on_plateau where the two coincide."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradxform as gx


class KerasPlateau:
    """Keras' ReduceLROnPlateau.on_epoch_end, written out in plain Python, on a learning
    rate of 1 (so the learning rate is the scale). The improvement margin adds a relative
    part ``rtol * |best|`` to Keras' absolute ``min_delta`` (``atol``)."""

    def __init__(self, factor, patience, rtol, atol, cooldown, min_lr, mode):
        self.factor, self.patience, self.cooldown, self.min_lr = factor, patience, cooldown, min_lr
        self.rtol, self.atol, self.mode = rtol, atol, mode
        self.best = math.inf if mode == "min" else -math.inf
        self.wait = 0
        self.cooldown_counter = 0
        self.lr = 1.0

    def better(self, current):
        if math.isinf(self.best):
            return current < self.best if self.mode == "min" else current > self.best
        delta = self.rtol * abs(self.best) + self.atol
        return current < self.best - delta if self.mode == "min" else current > self.best + delta

    def on_epoch_end(self, current):
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self.better(current):
            self.best = current
            self.wait = 0
        elif not self.cooldown_counter > 0:
            self.wait += 1
            if self.wait >= self.patience:
                if self.lr > np.float32(self.min_lr):
                    self.lr = max(self.lr * self.factor, self.min_lr)
                    self.cooldown_counter = self.cooldown
                    self.wait = 0


def keras_scales(values, factor=0.1, patience=10, rtol=1e-4, atol=0.0, cooldown=0, accumulation_size=1, min_scale=0.0, mode="min"):
    """The scale after each value; a decision every ``accumulation_size`` values, on their mean."""
    ref = KerasPlateau(factor, patience, rtol, atol, cooldown, min_scale, mode)
    out, window = [], []
    for v in values:
        window.append(float(np.float32(v)))
        if len(window) == accumulation_size:
            ref.on_epoch_end(float(np.float32(sum(window) / len(window))))
            window = []
        out.append(ref.lr)
    return np.array(out)


def scripted(mode: str = "min", shift: float = 0.0) -> np.ndarray:
    """Improvements, plateaus within and beyond the tolerances, then a noisy tail (seed 0),
    as a loss (mode "min") or a score (mode "max"); ``shift`` moves it below zero."""
    head = [5.0, 4.0, 3.9, 3.9, 3.9, 3.885, 3.9, 3.9, 3.9, 3.9, 2.0, 2.0, 2.1, 2.0, 1.985, 2.0, 2.0, 2.0, 2.0, 2.0]
    rng = np.random.default_rng(0)
    tail = 1.9 + np.cumsum(rng.normal(-0.02, 0.04, size=60))
    base = np.concatenate([head, np.abs(tail)])
    return (base if mode == "min" else 10.0 - base) + shift


CASES = [
    ("patience2", dict(factor=0.5, patience=2, rtol=0.0, atol=0.0)),
    ("patience0", dict(factor=0.5, patience=0, rtol=0.0, atol=0.0)),
    ("min-delta-abs", dict(factor=0.5, patience=2, rtol=0.0, atol=0.05)),
    ("min-delta-rel", dict(factor=0.5, patience=2, rtol=0.01, atol=0.0)),
    ("cooldown1", dict(factor=0.5, patience=1, rtol=0.0, atol=0.02, cooldown=1)),
    ("cooldown3", dict(factor=0.5, patience=1, rtol=0.0, atol=0.02, cooldown=3)),
    ("min-scale", dict(factor=0.3, patience=1, rtol=0.0, atol=0.02, min_scale=0.05)),
    ("averaged", dict(factor=0.5, patience=1, rtol=0.001, atol=0.0, accumulation_size=3)),
    ("max-mode", dict(factor=0.5, patience=2, rtol=0.0, atol=0.01, mode="max")),
    ("max-mode-rel-cooldown", dict(factor=0.7, patience=1, rtol=0.01, atol=0.0, cooldown=2, mode="max")),
]


def run_scales(tx, values, jit=True):
    """The scale and the update of a unit gradient after each value."""
    params = jnp.zeros(2)

    def step(state, v):
        updates, state = tx.update(jnp.ones(2), state, params, value=v)
        return state, (gx.plateau_scale(state), updates[0])

    state = tx.init(params)
    if jit:
        _, (scales, firsts) = jax.jit(lambda s, vs: jax.lax.scan(step, s, vs))(state, jnp.asarray(values, jnp.float32))
        return np.asarray(scales), np.asarray(firsts)
    out = []
    for v in values:
        state, pair = step(state, float(v))
        out.append(pair)
    return np.array([float(a) for a, _ in out]), np.array([float(b) for _, b in out])


@pytest.mark.parametrize("shift", [0.0, -10.0], ids=["positive", "negative"])
@pytest.mark.parametrize("name,kwargs", CASES, ids=[c[0] for c in CASES])
def test_keras_reductions_under_jit(name, kwargs, shift):
    values = scripted(kwargs.get("mode", "min"), shift)
    assert (values > 0).all() if shift == 0 else (values < 0).all()
    expected = keras_scales(values, **kwargs)
    assert len(set(expected.tolist())) >= 3, "the script should trigger reductions"
    scales, firsts = run_scales(gx.reduce_on_plateau(**kwargs), values)
    np.testing.assert_allclose(scales, expected, rtol=1e-6)
    np.testing.assert_allclose(firsts, expected, rtol=1e-6)  # the updates are scaled by it


def test_eager_equals_keras_inside_a_chain():
    values = scripted("min", -10.0)
    kwargs = dict(factor=0.5, patience=2, rtol=0.01, atol=0.0, cooldown=2)
    tx = gx.chain(gx.sgd(0.1), gx.reduce_on_plateau(**kwargs))
    scales, firsts = run_scales(tx, values[:30], jit=False)
    expected = keras_scales(values[:30], **kwargs)
    np.testing.assert_allclose(scales, expected, rtol=1e-6)
    np.testing.assert_allclose(firsts, -0.1 * expected, rtol=1e-6)


def test_negative_losses_use_the_magnitude_for_the_relative_margin():
    # Each value improves on the last by 2% of its magnitude: with rtol=1% that is always an
    # improvement, so nothing is reduced. (A margin of rtol * best, as in Optax and PyTorch,
    # would make -10.2 fail to improve on -10 and trigger reductions.)
    values = -10.0 * 1.02 ** np.arange(30)
    scales, _ = run_scales(gx.reduce_on_plateau(factor=0.5, patience=1, rtol=0.01), values)
    np.testing.assert_array_equal(scales, np.ones(30))
    assert keras_scales(values, factor=0.5, patience=1, rtol=0.01).tolist() == [1.0] * 30


OPTAX_CASES = [
    ("defaults-short-patience", dict(patience=3)),
    ("rtol-atol", dict(factor=0.5, patience=2, rtol=0.01, atol=0.01)),
    ("averaged-min-scale", dict(factor=0.5, patience=1, rtol=0.001, accumulation_size=3, min_scale=0.1)),
]


@pytest.mark.parametrize("name,kwargs", OPTAX_CASES, ids=[c[0] for c in OPTAX_CASES])
def test_agrees_with_optax_where_semantics_coincide(name, kwargs):
    # mode "min", non-negative values and no cooldown: Keras' and Optax's rules coincide.
    values = scripted()
    theirs = optax.contrib.reduce_on_plateau(**kwargs)
    params = jnp.zeros(2)

    def step(state, v):
        updates, state = theirs.update(jnp.ones(2), state, params, value=v)
        return state, state.scale

    _, expected = jax.lax.scan(step, theirs.init(params), jnp.asarray(values, jnp.float32))
    scales, _ = run_scales(gx.reduce_on_plateau(**kwargs), values)
    assert len(set(np.asarray(expected).tolist())) > 1
    np.testing.assert_allclose(scales, np.asarray(expected), rtol=1e-6)


def test_scale_and_hyperparameters_readable_and_settable_without_recompiling():
    tx = gx.chain(gx.adam(1e-2), gx.reduce_on_plateau(factor=0.5, patience=1))
    params = jnp.zeros(2)
    traces = []

    @jax.jit
    def step(state, loss):
        traces.append(None)
        return tx.update(jnp.ones(2), state, params, value=loss)[1]

    state = tx.init(params)
    assert float(gx.plateau_scale(state)) == 1.0
    for loss in [1.0, 1.0]:
        state = step(state, loss)
    assert float(gx.plateau_scale(state)) == 0.5
    assert float(gx.hyperparams(state)["factor"]) == 0.5
    state = gx.set_hyperparams(state, factor=0.1)
    state = step(state, 1.0)
    assert float(gx.plateau_scale(state)) == pytest.approx(0.05)
    assert len(traces) == 1


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(factor=1.0), "factor"),
        (dict(factor=0.0), "factor"),
        (dict(patience=-1), "patience"),
        (dict(patience=2.5), "patience"),
        (dict(cooldown=-1), "cooldown"),
        (dict(accumulation_size=0), "accumulation_size"),
        (dict(rtol=-0.1), "rtol"),
        (dict(atol=-1.0), "atol"),
        (dict(min_scale=2.0), "min_scale"),
        (dict(mode="auto"), "mode"),
    ],
    ids=["factor-1", "factor-0", "patience-negative", "patience-float", "cooldown", "accumulation", "rtol", "atol", "min-scale", "mode"],
)
def test_invalid_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        gx.reduce_on_plateau(**kwargs)


def test_missing_value_is_a_clear_error():
    tx = gx.chain(gx.sgd(0.1), gx.reduce_on_plateau())
    state = tx.init(jnp.zeros(2))
    with pytest.raises(ValueError, match="value=loss"):
        tx.update(jnp.ones(2), state)


@pytest.mark.parametrize(
    "value,error,match",
    [
        ("1.0", TypeError, r"reduce_on_plateau: value must be a scalar number .*got str value='1\.0'"),
        ([1.0], TypeError, r"reduce_on_plateau: value must be a scalar number .*got list value=\[1\.0\]"),
        (jnp.array(True), TypeError, r"reduce_on_plateau: value must be a scalar number .*got an array of dtype bool"),
        (jnp.ones(3), ValueError, r"reduce_on_plateau: value must be a scalar .*got an array of shape \(3,\)"),
    ],
    ids=["string", "list", "bool-array", "vector"],
)
def test_value_that_is_not_a_scalar_number_is_a_clear_error(value, error, match):
    tx = gx.reduce_on_plateau()
    state = tx.init(jnp.zeros(2))
    with pytest.raises(error, match=match):
        tx.update(jnp.ones(2), state, value=value)
    with pytest.raises(error, match=match):  # the same check while tracing
        jax.jit(lambda s: tx.update(jnp.ones(2), s, value=value))(state)
    # through gx.chain, the error names the stage
    chained = gx.chain(gx.sgd(0.1), gx.reduce_on_plateau())
    with pytest.raises(ValueError, match=r"chain stage 1 \(reduce_on_plateau\): " + match):
        chained.update(jnp.ones(2), chained.init(jnp.zeros(2)), value=value)


def test_value_dropped_by_optax_chain_points_to_gx_chain():
    # optax.chain passes keywords only to Optax's GradientTransformationExtraArgs, so the
    # value never reaches ours; gx.chain carries it, with Optax's stages in it too.
    p = jnp.ones(2)
    inside_optax = optax.chain(optax.sgd(0.1), gx.reduce_on_plateau())
    with pytest.raises(ValueError, match=r"optax\.chain passes keywords only .* chain with gx\.chain"):
        inside_optax.update(p, inside_optax.init(p), p, value=jnp.float32(1.0))
    inside_ours = gx.chain(optax.sgd(0.1), gx.reduce_on_plateau())
    updates, _ = inside_ours.update(p, inside_ours.init(p), p, value=jnp.float32(1.0))
    np.testing.assert_allclose(updates, -0.1 * p)
