"""Gradient accumulation: MultiSteps and apply_every against Optax, k micro-batches against
one step on the concatenated batch, schedules counting optimizer steps, one buffer."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradxform as gx
from harness import assert_trees_close, coupled_loss, grad_fn, mixed_params, run

GRAD = grad_fn(coupled_loss)


def _lr(count):
    return 1e-2 / (1.0 + 0.1 * count)


def _micro_run(tx, steps, poison=()):
    """Jitted mini-steps; at the steps in ``poison`` the gradient holds a NaN."""
    bad = jnp.asarray([t in poison for t in range(steps)])

    def step(carry, poisoned):
        p, s = carry
        g = GRAD(p)
        g = {**g, "b": g["b"].at[0].set(jnp.where(poisoned, jnp.nan, g["b"][0]))}
        u, s = tx.update(g, s, p)
        return (gx.apply_updates(p, u), s), (s.mini_step, s.gradient_step)

    params = mixed_params()
    (p, s), counters = jax.jit(lambda c: jax.lax.scan(step, c, bad))((params, tx.init(params)))
    return p, s, counters


@pytest.mark.parametrize(
    "use_grad_mean,skip,poison",
    [(False, False, ()), (True, True, (4, 5, 13))],
    ids=["sum", "mean_skip_not_finite"],
)
def test_multi_steps_agrees_with_optax(use_grad_mean, skip, poison):
    kwargs = dict(every_k_schedule=3, use_grad_mean=use_grad_mean)
    ours = gx.MultiSteps(gx.adam(_lr), should_skip_update_fn=gx.skip_not_finite if skip else None, **kwargs)
    theirs = optax.MultiSteps(optax.adam(_lr), should_skip_update_fn=optax.skip_not_finite if skip else None, **kwargs)
    p1, s1, c1 = _micro_run(ours.gradient_transformation(), 60, poison)
    p2, s2, c2 = _micro_run(theirs.gradient_transformation(), 60, poison)
    assert_trees_close(p1, p2)
    np.testing.assert_array_equal(c1[0], c2[0])  # same mini-steps: same skip decisions
    np.testing.assert_array_equal(c1[1], c2[1])
    assert bool(ours.has_updated(s1)) == bool(theirs.has_updated(s2))
    assert int(s1.gradient_step) == (60 - len(poison)) // 3


def test_k_micro_batches_equal_one_step_on_the_concatenated_batch():
    rng = np.random.default_rng(0)
    k, micro = 4, 8
    x = jnp.asarray(rng.normal(size=(5, k * micro, 3)), jnp.float32)
    y = jnp.asarray(rng.normal(size=(5, k * micro)), jnp.float32)
    loss = lambda w, x, y: jnp.mean((x @ w - y) ** 2)  # noqa: E731
    grad = jax.jit(jax.grad(loss))
    big, accumulated = gx.adam(0.1), gx.MultiSteps(gx.adam(0.1), every_k_schedule=k)
    w_big = w_acc = jnp.zeros(3)
    s_big, s_acc = big.init(w_big), accumulated.init(w_acc)

    @jax.jit
    def big_step(w, s, x, y):
        u, s = big.update(grad(w, x, y), s, w)
        return gx.apply_updates(w, u), s

    @jax.jit
    def micro_step(w, s, x, y):
        u, s = accumulated.update(grad(w, x, y), s, w)
        return gx.apply_updates(w, u), s

    for batch in range(5):
        w_big, s_big = big_step(w_big, s_big, x[batch], y[batch])
        for i in range(k):
            xs, ys = x[batch, i * micro : (i + 1) * micro], y[batch, i * micro : (i + 1) * micro]
            w_acc, s_acc = micro_step(w_acc, s_acc, xs, ys)
            assert bool(accumulated.has_updated(s_acc)) == (i == k - 1)
        np.testing.assert_allclose(w_acc, w_big, rtol=1e-5, atol=1e-6)
    assert not np.allclose(w_big, 0.0)


def test_schedules_count_optimizer_steps_and_state_has_one_buffer():
    tx = gx.multi_steps(gx.adam(_lr), every_k_schedule=4)
    params = mixed_params()
    state = tx.init(params)

    @jax.jit
    def step(params, state):
        u, state = tx.update(GRAD(params), state, params)
        return gx.apply_updates(params, u), state

    for _ in range(10):  # two full optimizer steps and two mini-steps
        params, state = step(params, state)
    assert int(state.gradient_step) == 2 and int(state.mini_step) == 2
    assert int(state.inner_opt_state.count) == 2  # the inner optimizer ran twice
    np.testing.assert_allclose(gx.hyperparams(state)["learning_rate"], _lr(1), rtol=1e-6)
    size = lambda t: sum(np.size(x) for x in jax.tree.leaves(t))  # noqa: E731
    assert size(state) == size(gx.adam(_lr).init(params)) + size(params) + 2


def test_apply_every_agrees_with_optax():
    ours, s1 = run(gx.chain(gx.scale(-0.01), gx.apply_every(3)), 60)
    theirs, s2 = run(optax.chain(optax.scale(-0.01), optax.apply_every(3)), 60)
    assert_trees_close(ours, theirs)
    assert int(s1[1].count) == int(s2[1].count)


def test_multi_steps_rejects_bad_arguments():
    with pytest.raises(ValueError, match="every_k_schedule must be an integer >= 1"):
        gx.multi_steps(gx.sgd(0.1), every_k_schedule=0)
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        gx.apply_every(0)


@pytest.mark.parametrize(
    "schedule,match",
    [
        (lambda step: 0, "got 0 at step 0"),
        (lambda step: -1, "got -1 at step 0"),
        (lambda step: 2.5, "got 2.5 at step 0"),
        (lambda step: jnp.ones(2, jnp.int32), "integer scalar"),
    ],
    ids=["zero", "negative", "fractional", "array"],
)
def test_a_schedule_of_micro_batches_that_never_completes_a_step_is_rejected(schedule, match):
    # n == k - 1 never held for these: every update returned zeros, silently.
    with pytest.raises(ValueError, match=f"every_k_schedule must return .*{match}"):
        gx.MultiSteps(gx.sgd(1.0), every_k_schedule=schedule)


def test_state_restored_mid_accumulation_into_a_smaller_k_keeps_stepping():
    # A checkpoint saved after 3 of 4 micro-batches, restored into every_k_schedule=2:
    # the mini-step count never again equalled k - 1, so no update was ever applied.
    params, grads = jnp.zeros(2), jnp.ones(2)
    saved = gx.MultiSteps(gx.sgd(1.0), 4)
    state = saved.init(params)
    for _ in range(3):
        _, state = saved.update(grads, state, params)
    restored = gx.MultiSteps(gx.sgd(1.0), 2)
    outs = []
    for _ in range(3):
        updates, state = restored.update(grads, state, params)
        outs.append(updates.tolist())
    assert outs == [[-1.0, -1.0], [0.0, 0.0], [-1.0, -1.0]]
    assert int(state.gradient_step) == 2
