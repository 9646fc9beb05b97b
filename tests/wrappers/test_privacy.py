"""differentially_private_aggregate and dpsgd against optax.contrib, with the same random stream."""

from __future__ import annotations

import inspect
import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradxform as gx

BATCH = 4
PARAMS = {"w": jnp.zeros((3, 2)), "b": jnp.zeros((2,)), "s": jnp.zeros(())}
STEPS = 3


def per_example_grads(step: int) -> dict[str, jax.Array]:
    """Per-example gradients of mixed shapes; examples scaled so that some exceed the clip norm."""
    rng = np.random.default_rng(step)
    scales = np.array([0.1, 0.5, 2.0, 5.0], np.float32)
    return {
        k: jnp.asarray(rng.normal(size=(BATCH, *p.shape)).astype(np.float32) * scales.reshape((BATCH,) + (1,) * p.ndim))
        for k, p in PARAMS.items()
    }


def optax_dpsgd(**kwargs):
    with warnings.catch_warnings():  # Optax's dpsgd passes its own deprecated seed= onward
        warnings.simplefilter("ignore", DeprecationWarning)
        return optax.contrib.dpsgd(**kwargs)


def run(tx, jit: bool):
    params, state, outs = PARAMS, tx.init(PARAMS), []
    update = jax.jit(tx.update) if jit else tx.update
    for step in range(STEPS):
        updates, state = update(per_example_grads(step), state, params)
        params = optax.apply_updates(params, updates)
        outs.append(updates)
    return outs


def assert_close(got, want):
    for a, b in zip(got, want):
        assert jax.tree.structure(a) == jax.tree.structure(b)
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
            assert x.shape == y.shape and x.dtype == y.dtype
            np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "jit,noise_multiplier,key",
    [(True, 0.7, 3), (True, 0.0, 3), (False, 0.7, jax.random.key(11))],
    ids=["jit-noise-int_seed", "jit-no_noise", "eager-noise-typed_key"],
)
def test_aggregate_matches_optax(jit, noise_multiplier, key):
    kwargs = dict(l2_norm_clip=1.5, noise_multiplier=noise_multiplier, key=key)
    want = run(optax.contrib.differentially_private_aggregate(**kwargs), jit)
    got = run(gx.differentially_private_aggregate(**kwargs), jit)
    assert_close(got, want)


@pytest.mark.parametrize(
    "jit,momentum,nesterov",
    [(True, None, False), (True, 0.9, False), (True, 0.9, True), (False, 0.9, False)],
    ids=["jit-plain", "jit-momentum", "jit-nesterov", "eager-momentum"],
)
def test_dpsgd_matches_optax(jit, momentum, nesterov):
    kwargs = dict(learning_rate=0.1, l2_norm_clip=1.0, noise_multiplier=1.1, seed=5, momentum=momentum, nesterov=nesterov)
    assert_close(run(gx.dpsgd(**kwargs), jit), run(optax_dpsgd(**kwargs), jit))


def test_aggregate_inside_optax_chain_is_optaxs_dpsgd():
    ours = optax.chain(gx.differentially_private_aggregate(1.0, 0.5, key=2), optax.sgd(0.1))
    theirs = optax_dpsgd(learning_rate=0.1, l2_norm_clip=1.0, noise_multiplier=0.5, seed=2)
    assert_close(run(ours, jit=True), run(theirs, jit=True))


def test_clipping_and_averaging_without_noise():
    grads = {"a": jnp.array([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0]])}  # norms 5, 0.5, 0
    tx = gx.differentially_private_aggregate(l2_norm_clip=1.0, noise_multiplier=0.0, key=0)
    out, _ = tx.update(grads, tx.init({"a": jnp.zeros(2)}))
    np.testing.assert_allclose(out["a"], (jnp.array([0.6, 0.8]) + jnp.array([0.3, 0.4])) / 3, rtol=1e-6)


def test_noise_mean_and_std():
    # Zero gradients: the output is pure noise over the batch size, std 1.5 * 2.0 / 2 = 1.5.
    tx = gx.differentially_private_aggregate(l2_norm_clip=1.5, noise_multiplier=2.0, key=0)
    state = tx.init({"a": jnp.zeros(20_000)})
    first, state = tx.update({"a": jnp.zeros((2, 20_000))}, state)
    second, _ = tx.update({"a": jnp.zeros((2, 20_000))}, state)
    noise = np.asarray(first["a"])
    assert abs(noise.mean()) < 0.03 and abs(noise.std() - 1.5) < 0.03
    assert not np.array_equal(noise, np.asarray(second["a"]))  # a fresh key every step


def test_state_holds_key_and_hyperparameters():
    tx = gx.differentially_private_aggregate(1.0, 0.5, key=0)
    state = tx.init(PARAMS)
    assert {k: float(v) for k, v in gx.hyperparams(state).items()} == {"l2_norm_clip": 1.0, "noise_multiplier": 0.5}
    assert isinstance(state.inner_state, gx.DifferentiallyPrivateAggregateState)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(l2_norm_clip=-1.0, noise_multiplier=1.0, key=0), "l2_norm_clip must be >= 0, got l2_norm_clip=-1.0"),
        (dict(l2_norm_clip=1.0, noise_multiplier=-0.5, key=0), "noise_multiplier must be >= 0, got noise_multiplier=-0.5"),
        (dict(l2_norm_clip=1.0, noise_multiplier=1.0, key="0"), "key must be an integer seed or a PRNG key"),
    ],
    ids=["negative_clip", "negative_noise", "string_key"],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        gx.differentially_private_aggregate(**kwargs)


def test_dpsgd_bad_arguments():
    with pytest.raises(ValueError, match="l2_norm_clip must be >= 0"):
        gx.dpsgd(0.1, l2_norm_clip=-1.0, noise_multiplier=1.0, seed=0)
    with pytest.raises(ValueError, match="momentum must be"):
        gx.dpsgd(0.1, l2_norm_clip=1.0, noise_multiplier=1.0, seed=0, momentum=1.5)


def test_seed_is_deprecated_and_key_is_needed():
    with pytest.warns(DeprecationWarning, match="seed is deprecated"):
        gx.differentially_private_aggregate(1.0, 1.0, seed=1)
    with pytest.raises(ValueError, match="give key or seed, not both"), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        gx.differentially_private_aggregate(1.0, 1.0, key=1, seed=1)
    with pytest.warns(UserWarning, match="no key given"):
        gx.differentially_private_aggregate(1.0, 1.0)


def test_gradients_without_batch_axis():
    tx = gx.differentially_private_aggregate(1.0, 1.0, key=0)
    state = tx.init(PARAMS)
    # A scalar leaf, or leaves whose leading axes disagree, cannot be per-example gradients.
    with pytest.raises(ValueError, match="expects per-example gradients"):
        tx.update(PARAMS, state)
    # Leading axes that happen to agree: only the parameters' shapes tell.
    params = {"w": jnp.zeros((3, 2)), "v": jnp.zeros((3,))}
    with pytest.raises(ValueError, match=re.escape("the gradient at ['v'] has shape (3,) for a parameter of shape (3,)")):
        tx.update(params, tx.init(params), params)
    jax.jit(tx.update)({k: v[None] for k, v in params.items()}, tx.init(params), params)  # a batch of one is fine


@pytest.mark.parametrize(
    "name", ["differentially_private_aggregate", "dpsgd", "normalize", "split_real_and_imaginary"]
)
def test_signature_is_optax_contribs(name):
    # Only in optax.contrib (or deprecated at Optax's top level), so test_optax_names misses them.
    theirs = inspect.signature(getattr(optax.contrib, name)).parameters
    ours = inspect.signature(getattr(gx, name)).parameters
    assert [(p.name, p.kind, p.default) for p in theirs.values()] == [(p.name, p.kind, p.default) for p in ours.values()]
