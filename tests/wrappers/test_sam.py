"""SAM against Optax contrib's ``sam``: jitted trajectories in transparent and opaque mode on a
non-separable objective over a mixed-shape pytree; the signature; eager validation."""

import inspect

import jax
import jax.numpy as jnp
import optax
import optax.contrib
import pytest

import gradxform as gx
from harness import assert_trees_close, coupled_loss, grad_fn, mixed_params

GRAD = grad_fn(coupled_loss)


def _optimizers(m, contrib):
    return m.adam(1e-2), m.chain(contrib.normalize(), m.sgd(0.05))


def _trajectory(m, contrib, steps, **kwargs):
    opaque = kwargs.get("opaque_mode", False)
    tx = contrib.sam(*_optimizers(m, contrib), **kwargs)

    def step(carry, _):
        p, s = carry
        extra = {"grad_fn": lambda q, i: GRAD(q)} if opaque else {}
        u, s = tx.update(GRAD(p), s, p, **extra)
        return (m.apply_updates(p, u), s), None

    params = mixed_params()
    (params, state), _ = jax.jit(lambda c: jax.lax.scan(step, c, None, length=steps))((params, tx.init(params)))
    return params, state


CASES = [
    ({"sync_period": 2}, "transparent-2"),
    ({"sync_period": 3, "reset_state": False}, "transparent-3-keep"),
    ({"sync_period": 2, "opaque_mode": True}, "opaque-2"),
    ({"sync_period": 3, "opaque_mode": True, "reset_state": False}, "opaque-3-keep"),
    ({"sync_period": 1, "opaque_mode": True}, "opaque-1"),
]


@pytest.mark.parametrize("kwargs", [c[0] for c in CASES], ids=[c[1] for c in CASES])
def test_sam_agrees_with_optax(kwargs):
    ours, our_state = _trajectory(gx, gx, 12, **kwargs)
    theirs, their_state = _trajectory(optax, optax.contrib, 12, **kwargs)
    assert_trees_close(ours, theirs, rtol=1e-5, atol=1e-6)
    assert int(our_state.steps_since_sync) == int(their_state.steps_since_sync)
    assert (our_state.cache is None) == (their_state.cache is None)


def test_transparent_sync_period_one_is_the_outer_optimizer_alone():
    # Deliberately not Optax's: with sync_period=1 Optax steps from a stale cached point.
    ours, _ = _trajectory(gx, gx, 6, sync_period=1)
    tx = gx.adam(1e-2)
    p, s = mixed_params(), tx.init(mixed_params())
    for _ in range(6):
        u, s = tx.update(GRAD(p), s, p)
        p = gx.apply_updates(p, u)
    assert_trees_close(ours, p, rtol=1e-5, atol=1e-6)


def test_first_transparent_step_is_the_normalised_ascent():
    tx = gx.sam(gx.sgd(0.1), gx.chain(gx.normalize(), gx.sgd(0.5)))
    w = jnp.array([3.0, 4.0])
    u, state = tx.update(jnp.array([3.0, 4.0]), tx.init(w), w)
    assert_trees_close(u, jnp.array([0.3, 0.4]))
    assert int(state.steps_since_sync) == 1


def test_signature_is_optaxs():
    assert inspect.signature(gx.sam).parameters.keys() == inspect.signature(optax.contrib.sam).parameters.keys()
    for name, p in inspect.signature(optax.contrib.sam).parameters.items():
        assert inspect.signature(gx.sam).parameters[name].default == p.default
    assert gx.SAMState._fields == optax.contrib.SAMState._fields


@pytest.mark.parametrize("bad", [0, -1, 1.5], ids=["zero", "negative", "float"])
def test_bad_sync_period_is_named(bad):
    with pytest.raises(ValueError, match="sync_period"):
        gx.sam(gx.sgd(0.1), gx.sgd(0.1), sync_period=bad)


def test_non_transformation_is_named():
    with pytest.raises(TypeError, match="adv_optimizer"):
        gx.sam(gx.sgd(0.1), "sgd")


def test_opaque_mode_without_grad_fn_says_so():
    tx = gx.sam(gx.sgd(0.1), gx.sgd(0.1), opaque_mode=True)
    w = jnp.zeros(2)
    with pytest.raises(ValueError, match="grad_fn"):
        tx.update(w, tx.init(w), w)


def test_missing_params_is_named():
    tx = gx.sam(gx.sgd(0.1), gx.sgd(0.1))
    with pytest.raises(ValueError, match="params"):
        tx.update(jnp.zeros(2), tx.init(jnp.zeros(2)))


def test_opaque_mode_averages_over_batch_axis_name():
    tx = gx.sam(gx.sgd(1.0), gx.sgd(1.0), opaque_mode=True, batch_axis_name="r")
    w = jnp.zeros((2, 1))

    def step(g, p):
        # The adversarial gradient differs per replica; the outer step must see its mean.
        return tx.update(g, tx.init(p), p, grad_fn=lambda q, i: q)[0]

    out = jax.vmap(step, axis_name="r")(jnp.array([[1.0], [3.0]]), w)
    assert_trees_close(out, jnp.array([[-2.0], [-2.0]]))
