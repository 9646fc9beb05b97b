"""Parameter averaging: EMA and SWA against independently computed averages, lookahead
against Optax, periodic (local SGD) averaging against a loop over replicas."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

import gradxform as gx
from harness import assert_trees_close, coupled_loss, grad_fn, mixed_params

GRAD = grad_fn(coupled_loss)


def _trajectory(tx, steps):
    """Params after every step of a jitted run (the first entry: the initial params)."""

    def step(carry, _):
        p, s = carry
        u, s = tx.update(GRAD(p), s, p)
        p = gx.apply_updates(p, u)
        return (p, s), p

    params = mixed_params()
    (_, state), path = jax.jit(lambda c: jax.lax.scan(step, c, None, length=steps))((params, tx.init(params)))
    history = [params] + [jax.tree.map(lambda x, i=i: x[i], path) for i in range(steps)]
    return history, state


def test_parameter_ema_matches_an_independent_running_average():
    decay, steps = 0.9, 40
    history, state = _trajectory(gx.ema_params(gx.sgd(0.02, momentum=0.5), decay=decay), steps)
    expected = jax.tree.map(lambda x: np.asarray(x, np.float64), history[0])
    for p in history[1:]:
        expected = jax.tree.map(lambda a, x: decay * a + (1 - decay) * np.asarray(x, np.float64), expected, p)
    assert_trees_close(gx.averaged_params(state), expected, rtol=1e-5, atol=1e-6)
    # The optimizer itself is untouched: the same trajectory as without the average.
    plain, _ = _trajectory(gx.sgd(0.02, momentum=0.5), steps)
    assert_trees_close(history[-1], plain[-1], rtol=0, atol=0)


def test_swa_is_the_mean_of_the_snapshots():
    start, every, steps = 10, 5, 40
    history, state = _trajectory(gx.swa(gx.sgd(0.02), start=start, every=every), steps)
    snapshots = [history[t] for t in range(start + every, steps + 1, every)]
    expected = jax.tree.map(lambda *xs: np.mean(np.stack(xs), axis=0), *snapshots)
    assert int(state.n_averaged) == len(snapshots)
    assert_trees_close(gx.averaged_params(state), expected, rtol=1e-5, atol=1e-6)


def test_lookahead_agrees_with_optax():
    def run(m, steps=60):
        tx = m.lookahead(m.adam(1e-2), sync_period=5, slow_step_size=0.5)
        params = m.LookaheadParams.init_synced(mixed_params())

        def step(carry, _):
            p, s = carry
            u, s = tx.update(GRAD(p.fast), s, p)
            return (m.apply_updates(p, u), s), None

        (p, _), _ = jax.jit(lambda c: jax.lax.scan(step, c, None, length=steps))((params, tx.init(params)))
        return p

    ours, theirs = run(gx), run(optax)
    assert_trees_close(ours.fast, theirs.fast)
    assert_trees_close(ours.slow, theirs.slow)
    assert not np.allclose(ours.slow["w"], mixed_params()["w"])


def test_periodic_average_matches_a_loop_over_replicas():
    """Two replicas with different data run SGD alone; every 3 steps after 2 warm-up steps
    their parameters are replaced by the mean (PyTorch's PeriodicModelAverager)."""
    targets = jnp.asarray([[1.0, -2.0], [3.0, 0.5]])
    grad = jax.grad(lambda w, t: jnp.sum((w - t) ** 2 * jnp.asarray([1.0, 3.0])))
    tx = gx.periodic_average(gx.sgd(0.1), period=3, warmup_steps=2, axis_name="replica")

    def step(w, s, t):
        u, s = tx.update(grad(w, t), s, w)
        return gx.apply_updates(w, u), s

    w = jnp.zeros((2, 2))
    s = jax.vmap(tx.init)(w)
    vstep = jax.jit(jax.vmap(step, axis_name="replica"))
    expected = np.zeros((2, 2))
    for t in range(12):
        w, s = vstep(w, s, targets)
        expected = np.stack([expected[r] - 0.1 * np.asarray(grad(expected[r], targets[r])) for r in range(2)])
        synced = t >= 2 and (t - 2) % 3 == 0
        if synced:
            expected = np.broadcast_to(expected.mean(axis=0), expected.shape).copy()
            # Equal up to the rounding of p + (mean - p) in apply_updates.
            np.testing.assert_allclose(w[0], w[1], rtol=1e-6)
        else:
            assert not np.allclose(w[0], w[1])
        np.testing.assert_allclose(w, expected, rtol=1e-5, atol=1e-6)
