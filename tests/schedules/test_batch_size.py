"""Batch-size schedules: scheduled micro-batch accumulation, the learning-rate-to-batch-size
converter at constant noise scale, the noise-scale report, and the paper's claim on a
least-squares problem (same loss, several times fewer parameter updates)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradxform as gx

S = gx.schedules


def grads(n: int, shape=(3,), seed: int = 0) -> jnp.ndarray:
    return jnp.asarray(np.random.default_rng(seed).normal(size=(n, *shape)), jnp.float32)


def test_matches_optax_multisteps_with_a_schedule():
    k_schedule = S.piecewise_constant_schedule(1.0, {3: 2.0, 5: 2.0})  # 1, then 2, then 4 micro-batches
    lr = S.exponential_decay(0.5, 1, 0.9)
    ours = S.accumulate_micro_batches(gx.sgd(lr, momentum=0.9), k_schedule)
    theirs = optax.MultiSteps(optax.sgd(optax.exponential_decay(0.5, 1, 0.9), momentum=0.9), every_k_schedule=lambda t: k_schedule(t).astype(jnp.int32))
    params = jnp.zeros(3)
    s_ours, s_theirs = ours.init(params), theirs.init(params)
    step_ours, step_theirs = jax.jit(ours.update), jax.jit(theirs.update)
    for i, g in enumerate(grads(30)):
        u_ours, s_ours = step_ours(g, s_ours, params)
        u_theirs, s_theirs = step_theirs(g, s_theirs, params)
        np.testing.assert_allclose(u_ours, u_theirs, rtol=2e-6, atol=1e-7, err_msg=f"micro-batch {i}")
        assert int(s_ours.count) == int(s_theirs.gradient_step)
    # 3 updates of 1, 2 of 2, then 4 micro-batches per update: 3 + 2 + 21 // 4 = 10 updates
    assert int(s_ours.count) == 3 + 2 + (30 - 3 - 4) // 4


def test_counts_updates_keeps_one_buffer_and_advances_inner_schedules_per_update():
    params = {"w": jnp.zeros((2, 3)), "b": jnp.zeros(3)}
    tx = S.accumulate_micro_batches(gx.sgd(S.linear_schedule(1.0, 0.0, 10)), num_micro_batches=3)
    state = tx.init(params)
    assert jax.tree.map(jnp.shape, state.accumulator) == jax.tree.map(jnp.shape, params)
    g = {"w": jnp.ones((2, 3)), "b": jnp.ones(3)}
    for i in range(7):
        updates, state = tx.update(jax.tree.map(lambda x: x * (i + 1), g), state, params)
        if i == 2:  # the mean of 1, 2, 3 at learning rate 1.0 (step 0 of the schedule)
            np.testing.assert_allclose(updates["b"], -2.0 * np.ones(3))
        elif i == 5:  # the mean of 4, 5, 6 at learning rate 0.9 (step 1)
            np.testing.assert_allclose(updates["b"], -0.9 * 5.0 * np.ones(3), rtol=1e-6)
        else:
            assert float(jnp.abs(updates["b"]).max()) == 0.0
    assert int(state.count) == 2 and int(state.micro_step) == 1 and int(state.num_micro_batches) == 3
    assert float(gx.hyperparams(state)["learning_rate"]) == pytest.approx(0.9)


def test_invalid_arguments_raise():
    with pytest.raises(ValueError, match="num_micro_batches"):
        S.accumulate_micro_batches(gx.sgd(0.1), 0)
    with pytest.raises(TypeError, match="inner"):
        S.accumulate_micro_batches(0.1, 2)
    lr = S.constant_schedule(0.1)
    with pytest.raises(ValueError, match="batch_size"):
        S.lr_to_batch_size_schedule(lr, 0, 100)
    with pytest.raises(ValueError, match="max_batch_size"):
        S.lr_to_batch_size_schedule(lr, 32, 100, micro_batch_size=16, max_batch_size=8)
    with pytest.raises(ValueError, match="new_momentum"):
        S.lr_to_batch_size_schedule(lr, 32, 100, new_momentum=1.0)
    with pytest.raises(ValueError, match="positive"):
        S.lr_to_batch_size_schedule(S.linear_schedule(0.1, 0.0, 10), 32, 100)
    with pytest.raises(ValueError, match="num_epochs"):
        S.training_profile(0.1, 32, 1000, 0)


def test_plan_keeps_the_noise_scale_hybrid_and_momentum_forms():
    n, b0, epochs = 51_200, 128, 30
    steps = n * epochs // b0
    lr = S.step_decay_schedule(0.1, [10, 20, 25], factor=0.2, steps_per_epoch=n // b0)
    reference = S.training_profile(lr, b0, n, epochs, momentum=0.9)

    def noise_at(profile, epochs_at):
        return profile.noise_scale[np.searchsorted(profile.epoch, epochs_at, side="right") - 1]

    cases = {
        "increase": S.lr_to_batch_size_schedule(lr, b0, steps, momentum=0.9),
        "hybrid": S.lr_to_batch_size_schedule(lr, b0, steps, momentum=0.9, num_examples=n),  # max N // 10
        "momentum": S.lr_to_batch_size_schedule(lr, b0, steps, momentum=0.9, new_momentum=0.95),
    }
    for name, plan in cases.items():
        profile = S.training_profile(plan.learning_rate, plan.batch_size, n, epochs, momentum=plan.momentum)
        assert profile.num_updates == plan.num_updates, name
        np.testing.assert_allclose(profile.noise_scale, noise_at(reference, profile.epoch), rtol=1e-5, err_msg=name)
        print(f"{name}: {reference.num_updates} -> {plan.num_updates} updates, max batch {profile.batch_size.max():g}")
    # the batches: B0 * 5**k; the hybrid stops at N // 10 = 5120 and decays the rate instead
    np.testing.assert_array_equal(cases["increase"].batch_size.values, [128, 640, 3200, 16000])
    np.testing.assert_array_equal(cases["hybrid"].batch_size.values, [128, 640, 3200, 5120])
    np.testing.assert_allclose(cases["hybrid"].learning_rate.values, [0.1, 0.1 * 0.2**3 * 5120 / 128], rtol=1e-6)
    np.testing.assert_array_equal(cases["momentum"].batch_size.values, [256, 1280, 6400, 32000])
    capped = S.lr_to_batch_size_schedule(lr, b0, steps, max_batch_size=1024)
    np.testing.assert_array_equal(capped.batch_size.values, [128, 640, 1024])
    np.testing.assert_allclose(capped.learning_rate.values, [0.1, 0.1 * 0.2**2 * 1024 / 128, 0.1 * 0.2**3 * 1024 / 128], rtol=1e-6)


def test_increasing_the_batch_matches_decaying_the_rate_with_fewer_updates():
    """Least squares, SGD, micro-batches of 16 in the same order for both runs (seed 0)."""
    n, dim, micro, epochs = 4096, 16, 16, 20
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, dim)).astype(np.float32)
    y = (x @ rng.normal(size=dim) + 0.5 * rng.normal(size=n)).astype(np.float32)
    x, y = jnp.asarray(x), jnp.asarray(y)
    order = jnp.asarray(np.concatenate([rng.permutation(n) for _ in range(epochs)]).reshape(-1, micro))

    def loss(w, idx=None):
        xb, yb = (x, y) if idx is None else (x[idx], y[idx])
        return 0.5 * jnp.mean((xb @ w - yb) ** 2)

    def train(tx):
        def step(carry, idx):
            w, s = carry
            u, s = tx.update(jax.grad(loss)(w, idx), s, w)
            return (gx.apply_updates(w, u), s), None

        w0 = jnp.zeros(dim)
        (w, s), _ = jax.jit(lambda c, o: jax.lax.scan(step, c, o))((w0, tx.init(w0)), order)
        return float(loss(w)), s

    steps_per_epoch = n // micro
    lr = S.piecewise_constant_schedule(0.1, {steps_per_epoch * e: 0.2 for e in (4, 8, 12, 16)})
    plan = S.lr_to_batch_size_schedule(lr, batch_size=micro, num_steps=steps_per_epoch * epochs, max_batch_size=n // 4)
    loss_decay, state_decay = train(gx.sgd(lr))
    loss_batch, state_batch = train(S.accumulate_micro_batches(gx.sgd(plan.learning_rate), plan.num_micro_batches))

    updates_decay = int(state_decay.count)
    updates_batch = int(state_batch.count)
    optimum = float(loss(jnp.linalg.lstsq(x, y)[0]))
    print(
        f"\nlearning-rate decay: {updates_decay} updates, loss {loss_decay:.7f}; "
        f"batch increase: {updates_batch} updates, loss {loss_batch:.7f}; optimum {optimum:.7f}"
    )
    assert updates_decay == steps_per_epoch * epochs
    assert updates_batch in (plan.num_updates, plan.num_updates - 1)  # the last may be incomplete
    assert updates_decay >= 3 * updates_batch
    # Stated tolerance: the same loss to 1e-4 relative, and an excess over the optimum within
    # 25% of the learning-rate-decay run's (both far below the starting excess).
    assert loss_batch == pytest.approx(loss_decay, rel=1e-4)
    excess_decay, excess_batch = loss_decay - optimum, loss_batch - optimum
    assert abs(excess_batch - excess_decay) <= 0.25 * excess_decay
    assert excess_batch < 1e-3 * (float(loss(jnp.zeros(dim))) - optimum)
