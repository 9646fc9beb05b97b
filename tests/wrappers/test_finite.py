"""Safe steps: apply_if_finite, zero_nans, skip functions (against Optax), bit-for-bit skips,
and dynamic loss scaling with Keras LossScaleOptimizer semantics inside a Flax step."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax.training import train_state

import gradxform as gx
from harness import assert_trees_close, coupled_loss, grad_fn, mixed_params

GRAD = jax.jit(grad_fn(coupled_loss))


def _poisoned_run(tx, steps, poison):
    """Runs ``tx`` for ``steps`` jitted steps; at step ``t`` in ``poison`` one gradient
    coordinate is set to ``poison[t]``. Returns the final params and the state after every step."""
    values = np.zeros(steps, np.float32)
    for t, v in poison.items():
        values[t] = v
    bad = jnp.asarray([t in poison for t in range(steps)])

    def step(carry, xs):
        p, s = carry
        poisoned, value = xs
        g = GRAD(p)
        g = {**g, "w": g["w"].at[0, 0].set(jnp.where(poisoned, value, g["w"][0, 0]))}
        u, s = tx.update(g, s, p)
        p = gx.apply_updates(p, u)
        return (p, s), s

    params = mixed_params()
    (p, _), states = jax.jit(lambda c: jax.lax.scan(step, c, (bad, jnp.asarray(values))))((params, tx.init(params)))
    return p, states


# NaN, +Inf and -Inf, alone and in runs of two (within the limit of consecutive errors),
# then three in a row at the end: the third exceeds the limit and is applied.
POISON = {3: np.nan, 10: np.inf, 11: -np.inf, 20: np.nan, 21: np.inf, 30: -np.inf, 37: np.nan, 38: np.nan, 39: np.nan}


def test_apply_if_finite_agrees_with_optax():
    ours, s1 = _poisoned_run(gx.apply_if_finite(gx.adam(1e-3), max_consecutive_errors=2), 40, POISON)
    theirs, s2 = _poisoned_run(optax.apply_if_finite(optax.adam(1e-3), max_consecutive_errors=2), 40, POISON)
    # Same skip decisions, step by step.
    for field in ("notfinite_count", "last_finite", "total_notfinite"):
        np.testing.assert_array_equal(getattr(s1, field), getattr(s2, field), err_msg=field)
    assert int(s1.total_notfinite[-1]) == len(POISON)
    assert int(s1.notfinite_count[11]) == 2 and int(s1.notfinite_count[12]) == 0
    # The finite coordinates agree; the third consecutive NaN gave up and reached "w" in both.
    assert np.isnan(ours["w"][0, 0]) and np.isnan(theirs["w"][0, 0])
    assert_trees_close({k: v for k, v in ours.items() if k != "w"}, {k: v for k, v in theirs.items() if k != "w"})


def test_nan_at_step_k_leaves_params_and_state_bit_for_bit_unchanged():
    tx = gx.apply_if_finite(gx.chain(gx.clip_by_global_norm(1.0), gx.adamw(1e-2)), max_consecutive_errors=5)
    update = jax.jit(tx.update)
    params = mixed_params()
    state = tx.init(params)
    k = 4
    for _ in range(k):
        u, state = update(GRAD(params), state, params)
        params = gx.apply_updates(params, u)
    before_params, before_inner = params, state.inner_state
    bad = jax.tree.map(lambda g: g.at[(0,) * g.ndim].set(jnp.nan), GRAD(params))
    u, state = update(bad, state, params)
    params = gx.apply_updates(params, u)
    same_bits = lambda a, b: np.asarray(a).tobytes() == np.asarray(b).tobytes()  # noqa: E731
    assert all(jax.tree.leaves(jax.tree.map(same_bits, params, before_params)))
    assert all(jax.tree.leaves(jax.tree.map(same_bits, state.inner_state, before_inner)))
    assert int(state.notfinite_count) == 1 and int(state.total_notfinite) == 1

    # Step k+1 continues as if step k had never been taken.
    u, state = update(GRAD(params), state, params)
    continued = gx.apply_updates(params, u)
    clean_tx = gx.chain(gx.clip_by_global_norm(1.0), gx.adamw(1e-2))
    u2, _ = jax.jit(clean_tx.update)(GRAD(before_params), before_inner, before_params)
    assert_trees_close(continued, gx.apply_updates(before_params, u2), rtol=0, atol=0)
    assert int(state.notfinite_count) == 0 and int(state.total_notfinite) == 1


def test_zero_nans_agrees_with_optax():
    g = {"a": jnp.array([1.0, jnp.nan, 3.0]), "b": jnp.array([jnp.inf, 2.0]), "c": jnp.ones(2)}
    ours, s1 = gx.zero_nans().update(g, gx.zero_nans().init(g))
    theirs, s2 = optax.zero_nans().update(g, optax.zero_nans().init(g))
    jax.tree.map(np.testing.assert_array_equal, ours, theirs)
    jax.tree.map(np.testing.assert_array_equal, s1.found_nan, s2.found_nan)
    assert bool(s1.found_nan["a"]) and not bool(s1.found_nan["b"])


@pytest.mark.parametrize(
    "ours,theirs",
    [
        (gx.skip_not_finite, optax.skip_not_finite),
        (
            functools.partial(gx.skip_large_updates, max_squared_norm=10.0),
            functools.partial(optax.skip_large_updates, max_squared_norm=10.0),
        ),
    ],
    ids=["skip_not_finite", "skip_large_updates"],
)
def test_skip_functions_agree_with_optax(ours, theirs):
    for g in ({"a": jnp.ones(3), "b": jnp.full(2, 2.0)}, {"a": jnp.ones(3), "b": jnp.array([jnp.nan, 0.0])}, {"a": jnp.ones(2)}):
        s1, info1 = ours(g, jnp.int32(0), None)
        s2, info2 = theirs(g, jnp.int32(0), None)
        assert bool(s1) == bool(s2)
        jax.tree.map(np.testing.assert_array_equal, info1, info2)


# --------------------------------------------------------------------------- loss scaling


def _keras_scales(finite, initial, growth):
    """Keras LossScaleOptimizer's rule, written out: the scale used at each step, and skips."""
    scale, good, used, skipped = initial, 0, [], []
    for ok in finite:
        used.append(scale)
        skipped.append(not ok)
        if ok:
            good += 1
            if good == growth:
                scale, good = scale * 2.0, 0
        else:
            scale, good = scale / 2.0, 0
    return used, skipped


def test_dynamic_loss_scale_follows_keras_rules():
    finite = [True, True, True, False, True, True, True, True, False, False, True, True, True]
    used, skipped = _keras_scales(finite, 8.0, 3)
    tx = gx.dynamic_loss_scale(gx.sgd(0.1), initial_scale=8.0, dynamic_growth_steps=3)
    update = jax.jit(tx.update)
    params = jnp.ones(3)
    state = tx.init(params)
    for ok, scale, skip in zip(finite, used, skipped):
        assert float(gx.loss_scale(state)) == scale
        grads = jnp.full(3, scale) if ok else jnp.array([1.0, jnp.inf, 1.0])  # scaled gradient of 1
        u, state = update(grads, state, params)
        new = gx.apply_updates(params, u)
        if skip:
            assert np.asarray(new).tobytes() == np.asarray(params).tobytes()
        else:
            np.testing.assert_allclose(new, params - 0.1)
        params = new
    assert int(state.total_skipped) == sum(skipped)


def test_dynamic_loss_scale_in_a_float16_flax_step():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(64, 4)), jnp.float16)
    w_true = jnp.asarray([1.0, -2.0, 0.5, 3.0], jnp.float16)
    y = x @ w_true
    apply = lambda p, x: x @ p["w"] + p["b"]  # noqa: E731
    params = {"w": jnp.zeros(4, jnp.float16), "b": jnp.zeros((), jnp.float16)}
    # 2**24 makes the first scaled gradients overflow float16, so the scale must come down.
    tx = gx.dynamic_loss_scale(gx.adam(0.05), initial_scale=2.0**24, dynamic_growth_steps=50)
    state = train_state.TrainState.create(apply_fn=apply, params=params, tx=tx)

    def loss(p):
        return jnp.mean((apply(p, x) - y).astype(jnp.float32) ** 2)

    @jax.jit
    def step(state):
        scaled = lambda p: gx.scale_loss(loss(p), state.opt_state)  # noqa: E731
        grads = jax.grad(scaled)(state.params)
        return state.apply_gradients(grads=grads)

    start = float(loss(params))
    for _ in range(150):
        state = step(state)
    assert state.params["w"].dtype == jnp.float16
    assert int(state.opt_state.total_skipped) >= 1
    assert float(gx.loss_scale(state.opt_state)) < 2.0**24
    assert float(loss(state.params)) < 0.01 * start


def test_dynamic_loss_scale_validates_arguments():
    with pytest.raises(ValueError, match="initial_scale must be > 0"):
        gx.dynamic_loss_scale(gx.sgd(0.1), initial_scale=0.0)
    with pytest.raises(ValueError, match="dynamic_growth_steps must be an integer >= 1"):
        gx.dynamic_loss_scale(gx.sgd(0.1), dynamic_growth_steps=0)


@pytest.mark.parametrize(
    "make",
    [
        (lambda: gx.apply_if_finite(gx.adam(0.1), 3), lambda: optax.apply_if_finite(optax.adam(0.1), 3), True),
        (
            lambda: gx.MultiSteps(gx.adam(0.1), every_k_schedule=2).gradient_transformation(),
            lambda: optax.MultiSteps(optax.adam(0.1), every_k_schedule=2).gradient_transformation(),
            False,
        ),
    ],
    ids=["apply_if_finite", "MultiSteps"],
)
def test_skipping_wrappers_over_an_explicitly_sharded_mesh(make):
    """Over a mesh with ``Explicit`` axes (``jax.make_mesh``'s default) the sharding is part
    of an array's type, and the two branches of the ``lax.cond`` that skips a step must
    agree on it: the skipped updates were built replicated and tracing failed deep in JAX
    ("cond branches must have equal output types"). Same numbers and shardings as Optax."""
    if jax.device_count() < 2:
        pytest.skip("needs two devices (tests/conftest.py simulates two CPUs)")
    mesh = jax.make_mesh((2,), ("d",), axis_types=(jax.sharding.AxisType.Explicit,), devices=jax.devices()[:2])
    split = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("d"))
    ours, theirs, poison = make[0](), make[1](), make[2]

    def run(tx):
        def step(p, s, g):
            u, s = tx.update(g, s, p)
            return optax.apply_updates(p, u), s

        with jax.set_mesh(mesh):
            p = jax.device_put({"w": jnp.linspace(-1.0, 1.0, 8).reshape(4, 2), "b": jnp.arange(4.0)}, split)
            s = tx.init(p)
            for i in range(3):
                g = jax.tree.map(lambda x: jnp.cos(x * (i + 1)), p)
                if poison and i == 1:  # a skipped step
                    g = {**g, "b": g["b"] * jnp.where(jnp.arange(4) == 0, jnp.nan, 1.0)}
                p, s = jax.jit(step)(p, s, g)
        return p

    got, want = run(ours), run(theirs)
    assert_trees_close(got, want, rtol=1e-5, atol=1e-6)
    for x in jax.tree.leaves(got):
        assert x.sharding.is_equivalent_to(split, x.ndim), x.sharding
