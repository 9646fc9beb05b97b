"""The bucketed and flat layouts give the plain float32 composition's results."""

import functools
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


def test_a_leaf_of_another_shape_is_named():
    # Same structure, one shape changed: the message showed two identical tree structures.
    params = {"w": jnp.ones((64, 64)), "b": jnp.zeros(8), "c": jnp.ones(3)}
    layout = gx.bucket_layout(params, small_size=100)
    with pytest.raises(ValueError, match=r"Parameter 'b' has shape \(9,\) in the arrays given to Layout.pack but \(8,\) in the layout"):
        layout.pack({**params, "b": jnp.ones(9)})
    tx = gx.bucketed(gx.adam(0.1), small_size=100)
    with pytest.raises(ValueError, match=r"Parameter 'b' has shape \(9,\) in the params but \(8,\) in the updates"):
        tx.update(params, tx.init(params), {**params, "b": jnp.ones(9)})


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


# ------------------------------------------------------------------ sharded (Auto axes)

P = jax.sharding.PartitionSpec
# On the suite's two devices: the large leaves and one small leaf (scale) split over "d",
# the other small leaves replicated, as a model's biases and norm scales usually are.
SPECS = {"w1": P("d"), "b1": P(), "scale": P("d"), "w2": P(None, "d"), "b2": P(), "s": P()}
# The layout arguments of each wrapper (flat is every leaf in one bucket).
SHARDED_WRAPPERS = {
    "bucketed": {"small_size": 100},
    "bucketed_tiny_buckets": {"small_size": 100, "bucket_size": 64},
    "flat": {"small_size": math.inf, "bucket_size": 2**62},
}


def _wrapped(wrap, tx):
    return gx.flat(tx) if wrap == "flat" else gx.bucketed(tx, **SHARDED_WRAPPERS[wrap])


def _auto_mesh_params():
    if jax.device_count() < 2:
        pytest.skip("needs two devices (tests/conftest.py simulates two CPUs)")
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:2]), ("d",))
    params = _tree()
    return mesh, {k: jax.device_put(v, jax.sharding.NamedSharding(mesh, SPECS[k])) for k, v in params.items()}


def _is_replicated_on(x, mesh):
    return isinstance(x.sharding, jax.sharding.NamedSharding) and x.sharding.mesh == mesh and x.sharding.is_fully_replicated


def _assert_state_laid_out(state, params, mesh, packed_shapes):
    """Each state array shaped like a kept parameter is laid out like it; each bucket-shaped
    array (and each scalar) is replicated over the mesh."""
    by_shape = {v.shape: v.sharding for k, v in params.items() if v.ndim == 2}
    for x in jax.tree.leaves(state):
        if x.shape in by_shape:
            assert x.sharding.is_equivalent_to(by_shape[x.shape], x.ndim), (x.shape, x.sharding)
        elif x.ndim:
            assert x.shape in packed_shapes, x.shape
            assert _is_replicated_on(x, mesh), (x.shape, x.sharding)


@pytest.mark.parametrize("wrap", list(SHARDED_WRAPPERS), ids=list(SHARDED_WRAPPERS))
@pytest.mark.parametrize("fused", [False, True], ids=["update+apply_updates", "update_and_apply"])
def test_a_jitted_step_on_an_auto_mesh_keeps_each_leafs_sharding(wrap, fused):
    """A bucket concatenates leaves with different shardings. Left to XLA's propagation it
    took a sharded member's layout, and every small replicated leaf sliced from it came out
    of the step sharded like that member: the bucket's sharding leaked to its leaves. Buckets
    are now replicated over the mesh, and the numbers are the plain composition's."""
    mesh, params = _auto_mesh_params()
    plain, tx = gx.adam(1e-2), _wrapped(wrap, gx.adam(1e-2))

    def step(opt, p, s, i):
        g = _grads(p, i)
        if fused:
            return gx.update_and_apply(opt, g, s, p)
        u, s = opt.update(g, s, p)
        return gx.apply_updates(p, u), s

    got, state = params, tx.init(params)
    want, plain_state = params, plain.init(params)
    jitted, plain_jitted = jax.jit(functools.partial(step, tx)), jax.jit(functools.partial(step, plain))
    for i in range(3):
        got, state = jitted(got, state, i)
        want, plain_state = plain_jitted(want, plain_state, i)
    for k in params:
        assert got[k].sharding.is_equivalent_to(params[k].sharding, params[k].ndim), (k, got[k].sharding)
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6)
    layout = gx.bucket_layout(params, **SHARDED_WRAPPERS[wrap])
    _assert_state_laid_out(state, params, mesh, {(b.size,) for b in layout.buckets})


@pytest.mark.parametrize("wrap", list(SHARDED_WRAPPERS), ids=list(SHARDED_WRAPPERS))
def test_init_on_an_auto_mesh_replicates_buckets_and_keeps_large_leaves_sharding(wrap):
    """Also when every member of a bucket is sharded, whose concatenation XLA lays out as it
    pleases: the bucket is placed replicated, deliberately."""
    mesh, params = _auto_mesh_params()
    params = dict(params, b1=jax.device_put(params["b1"], jax.sharding.NamedSharding(mesh, P("d"))))
    tx = _wrapped(wrap, gx.adam(1e-2))
    state = tx.init(params)
    layout = gx.bucket_layout(params, **SHARDED_WRAPPERS[wrap])
    _assert_state_laid_out(state, params, mesh, {(b.size,) for b in layout.buckets})
    packed = layout.pack(params)
    assert all(_is_replicated_on(b, mesh) for b in packed.buckets)
    back = jax.jit(layout.unpack)(packed)
    for k in params:
        np.testing.assert_array_equal(back[k], params[k])
        if k in ("b2", "s"):
            assert _is_replicated_on(back[k], mesh), (k, back[k].sharding)


def test_init_under_eval_shape_and_jit_on_an_explicit_mesh_types_buckets_replicated():
    """On a mesh with Explicit axes shardings are part of the types, so abstract and jitted
    init show them: kept leaves like their parameters, buckets of replicated leaves
    replicated."""
    if jax.device_count() < 2:
        pytest.skip("needs two devices (tests/conftest.py simulates two CPUs)")
    mesh = jax.make_mesh((2,), ("d",), axis_types=(jax.sharding.AxisType.Explicit,), devices=jax.devices()[:2])
    specs = dict(SPECS, scale=P())
    with jax.set_mesh(mesh):
        params = {k: jax.device_put(v, jax.sharding.NamedSharding(mesh, specs[k])) for k, v in _tree().items()}
        tx = gx.bucketed(gx.adam(1e-2), small_size=100)
        for state in (jax.eval_shape(tx.init, params), jax.jit(tx.init)(params), tx.init(params)):
            arrays = [x for x in jax.tree.leaves(state) if x.ndim]
            assert sorted(x.shape for x in arrays) == sorted([(48, 64), (64, 10), (139,)] * 2)
            for x in arrays:
                want = {(48, 64): ("d", None), (64, 10): (None, "d"), (139,): (None,)}[x.shape]
                assert x.sharding.mesh.axis_names == ("d",) and _padded_spec(x) == want, (x.shape, x.sharding)
        new, state = jax.jit(lambda p, s: gx.update_and_apply(tx, _grads(p, 0), s, p))(params, tx.init(params))
        for k in params:
            assert _padded_spec(new[k]) == _padded_spec(params[k]), (k, new[k].sharding)
        for x in jax.tree.leaves(state):
            want = {(48, 64): ("d", None), (64, 10): (None, "d")}.get(x.shape, (None,) * x.ndim)
            assert _padded_spec(x) == want, (x.shape, x.sharding)


def _padded_spec(x):
    spec = tuple(x.sharding.spec)
    return spec + (None,) * (x.ndim - len(spec))


def test_flatten_is_optaxs_flatten():

    params = {"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.array([0.5, -1.0])}
    ours, theirs = gx.flatten(gx.adam(0.1)), optax.flatten(optax.adam(0.1))
    so, st = ours.init(params), theirs.init(params)
    po = pt = params
    for i in range(5):
        g = jax.tree.map(lambda x: jnp.cos(x + i), po)
        uo, so = jax.jit(ours.update)(g, so, po)
        ut, st = jax.jit(theirs.update)(g, st, pt)
        po, pt = optax.apply_updates(po, uo), optax.apply_updates(pt, ut)
    for a, b in zip(jax.tree.leaves(po), jax.tree.leaves(pt)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)  # XLA fuses flat and tree steps differently
