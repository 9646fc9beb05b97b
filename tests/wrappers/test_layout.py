"""The bucketed and flat layouts give the plain float32 composition's results."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradxform as gx


def _tree():
    rng = np.random.default_rng(0)
    shapes = {"w1": (48, 64), "b1": (64,), "scale": (64,), "w2": (64, 10), "b2": (10,), "s": ()}
    return {k: jnp.asarray(rng.standard_normal(s), jnp.float32) for k, s in shapes.items()}


def _grads(params, i):
    # A non-separable objective: the gradient depends on every leaf.
    total = sum(jnp.sum(x**2) for x in jax.tree.leaves(params))
    return jax.tree.map(lambda x: x * (0.1 + jnp.tanh(total)) + 0.01 * i, params)


def _run(tx, params, steps=8, jit=True):
    state = tx.init(params)

    def step(p, s, i):
        u, s = tx.update(_grads(p, i), s, p)
        return gx.apply_updates(p, u), s

    step = jax.jit(step) if jit else step
    for i in range(steps):
        params, state = step(params, state, i)
    return params, state


OPTIMIZERS = {
    "adam": lambda: gx.adam(1e-2),
    "adamw": lambda: gx.adamw(1e-2, weight_decay=0.1),
    "sgd_momentum": lambda: gx.sgd(1e-2, momentum=0.9, nesterov=True),
    "lion": lambda: gx.lion(1e-3),
    "clip_then_adam": lambda: gx.chain(gx.clip_by_global_norm(1.0), gx.adam(1e-2)),
}
WRAPPERS = {
    "bucketed": lambda tx: gx.bucketed(tx, small_size=100),
    "bucketed_tiny_buckets": lambda tx: gx.bucketed(tx, small_size=100, bucket_size=64),
    "flat": gx.flat,
}
CASES = [(o, "bucketed") for o in OPTIMIZERS] + [("adam", "flat"), ("adamw", "bucketed_tiny_buckets")]


@pytest.mark.parametrize("opt,wrap", CASES, ids=[f"{o}-{w}" for o, w in CASES])
def test_layout_matches_plain_composition(opt, wrap):
    params = _tree()
    want, _ = _run(OPTIMIZERS[opt](), params)
    got, _ = _run(WRAPPERS[wrap](OPTIMIZERS[opt]()), params)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_bucketed_without_jit():
    params = _tree()
    want, _ = _run(gx.adam(1e-2), params, steps=2, jit=False)
    got, _ = _run(gx.bucketed(gx.adam(1e-2), small_size=100), params, steps=2, jit=False)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_bucketed_state_is_packed_and_hyperparams_readable():
    params = _tree()
    tx = gx.bucketed(gx.adam(1e-2), small_size=100)
    state = tx.init(params)
    # Two moments: each has the kept large leaves (w1, w2) and one bucket of the rest.
    big = [x.shape for x in jax.tree.leaves(state) if x.ndim > 0]
    assert sorted(big) == sorted([(48, 64), (64, 10), (64 + 64 + 10 + 1,)] * 2)
    assert float(gx.hyperparams(state)["learning_rate"]) == pytest.approx(1e-2)
    state = gx.set_hyperparams(state, learning_rate=0.5)
    assert float(gx.hyperparams(state)["learning_rate"]) == 0.5


def test_pack_unpack_round_trip_and_dtypes():
    tree = {"a": jnp.ones((3, 2)), "b": jnp.arange(4, dtype=jnp.int32), "c": jnp.zeros((), jnp.bfloat16),
            "big": jnp.ones((200, 200))}
    layout = gx.bucket_layout(tree, small_size=1000)
    packed = layout.pack(tree)
    assert len(packed.leaves) == 1 and len(packed.buckets) == 3  # one bucket per dtype
    back = layout.unpack(packed)
    for x, y in zip(jax.tree.leaves(back), jax.tree.leaves(tree)):
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(x, y)
    assert jax.tree.structure(jax.eval_shape(layout.pack, tree)) == jax.tree.structure(packed)


def test_training_on_packed_params_matches_tree():
    """Parameters kept packed: the loss unpacks them, gradients come out packed."""
    params = _tree()
    layout = gx.bucket_layout(params, small_size=100)

    def loss(p):
        return jnp.sum(jnp.tanh(p["w1"]) ** 2) + jnp.sum(p["b1"] * p["scale"]) + jnp.sum(p["w2"]) * p["s"]

    def run(p, loss_fn):
        tx = gx.adam(1e-2)
        s = tx.init(p)
        for _ in range(5):
            u, s = tx.update(jax.grad(loss_fn)(p), s, p)
            p = gx.apply_updates(p, u)
        return p

    want = run(params, loss)
    got = layout.unpack(run(layout.pack(params), lambda q: loss(layout.unpack(q))))
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_inside_optax_chain_and_describe():
    params = _tree()
    tx = optax.chain(optax.clip_by_global_norm(1.0), gx.bucketed(gx.sgd(0.1)))
    u, _ = tx.update(params, tx.init(params), params)
    assert jax.tree.structure(u) == jax.tree.structure(params)
    assert "bucketed" in gx.describe(gx.bucketed(gx.adam(1e-3)))


def test_wrong_tree_and_bad_arguments_raise():
    params = _tree()
    layout = gx.bucket_layout(params)
    with pytest.raises(ValueError, match="layout"):
        layout.pack({"w1": params["w1"]})
    with pytest.raises(ValueError, match="small_size"):
        gx.bucketed(gx.adam(1e-3), small_size=0)
    with pytest.raises(TypeError, match="inner"):
        gx.bucketed("adam")
    assert gx.bucket_layout(params, small_size=math.inf).kept == ()


def test_a_small_leaf_sharded_over_explicit_axes_is_a_clear_error():
    """A bucket is one array, so its small leaves cannot keep shardings of their own over
    Explicit axes: packing names the leaf instead of failing inside a concatenation."""
    if jax.device_count() < 2:
        pytest.skip("needs two devices (tests/conftest.py simulates two CPUs)")
    mesh = jax.make_mesh((2,), ("d",), axis_types=(jax.sharding.AxisType.Explicit,), devices=jax.devices()[:2])
    P = jax.sharding.PartitionSpec
    with jax.set_mesh(mesh):
        params = {
            "w": jax.device_put(jnp.ones((256, 128)), jax.sharding.NamedSharding(mesh, P("d"))),
            "b": jax.device_put(jnp.ones((128,)), jax.sharding.NamedSharding(mesh, P("d"))),
            "scale": jnp.ones((128,)),
        }
        with pytest.raises(ValueError, match=r"small leaf b is sharded over the Explicit mesh axes \('d',\)"):
            gx.bucketed(gx.adam(1e-2)).init(params)
