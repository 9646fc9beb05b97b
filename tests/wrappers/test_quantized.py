"""8-bit block-wise quantized state against the plain float32 composition."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
def test_dynamic_map(signed):
    m = gx.dynamic_map(signed)
    assert m.shape == (256,) and m.dtype == np.float32
    assert 0.0 in m and 1.0 in m and (-1.0 in m) == signed
    assert len(np.unique(m)) == (255 if signed else 256)  # signed: +0 and -0
    assert np.abs(m[m != 0]).min() < 1e-5  # resolves values far below the block's maximum
    # Every code value survives a round trip exactly (non-negative blocks store roots).
    values = np.sort(m) if signed else np.sort(m) ** 2
    q = gx.quantize(jnp.asarray(values), block_size=256)
    np.testing.assert_allclose(gx.dequantize(q), values, rtol=1e-6)


def test_codes_are_the_nearest_level_across_every_decade():
    # Oracle: brute-force nearest level of the signed map, including values at and one ulp
    # around each power of ten (where a decade is chosen by comparison, not by log10).
    m = gx.dynamic_map(signed=True)
    levels = np.sort(m)
    powers = np.float32(10.0) ** np.arange(-7, 1, dtype=np.float32)
    edges = np.concatenate([powers, np.nextafter(powers, 0), np.nextafter(powers, 2)])
    edges = edges[edges <= 1]
    mags = np.concatenate([np.logspace(-7.5, 0, 1500, dtype=np.float32), edges]).astype(np.float32)
    x = np.concatenate([mags, -mags, [1.0]]).astype(np.float32)  # block maximum 1
    got = np.asarray(gx.dequantize(gx.quantize(jnp.asarray(x), block_size=x.size)))
    nearest = levels[np.abs(levels[None, :] - x[:, None]).argmin(axis=1)]
    rank = lambda v: np.searchsorted(levels, v)
    assert np.all(np.abs(rank(got) - rank(nearest)) <= 1)


@pytest.mark.parametrize("square", [False, True], ids=["normal", "squared"])
def test_round_trip_error(square):
    x = jax.random.normal(jax.random.key(0), (10_000,))
    x = x**2 if square else x
    q = gx.quantize(x, block_size=2048)
    assert q.codes.dtype == jnp.uint8 and q.codes.shape == (5, 2048)
    assert bool(q.nonneg.all()) == square
    d = gx.dequantize(q)
    assert d.shape == x.shape and d.dtype == x.dtype
    blocks = jnp.pad(x, (0, 5 * 2048 - x.size)).reshape(5, 2048)
    bound = jnp.repeat(0.0075 * jnp.max(jnp.abs(blocks), axis=1), 2048)[: x.size]
    assert bool(jnp.all(jnp.abs(d - x) <= bound))
    assert float(jnp.median(jnp.abs(d - x) / jnp.abs(x))) < 0.02
    # Stochastic rounding: unbiased, so the mean of many encodings converges to x.
    mean = sum(gx.dequantize(gx.quantize(x, 2048, seed)) for seed in range(64)) / 64
    assert float(jnp.mean(jnp.abs(mean - x))) < 0.25 * float(jnp.mean(jnp.abs(d - x)))


def test_shapes_dtypes_and_zero_blocks():
    x = jnp.zeros((3, 5, 7), jnp.bfloat16).at[0, 0, 0].set(-2.0)
    d = gx.dequantize(gx.quantize(x, block_size=16))
    assert d.shape == x.shape and d.dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(d, np.float32), np.asarray(x, np.float32))


def _quadratic_run(tx, steps=30):
    target = jax.random.normal(jax.random.key(1), (64, 128))
    params = jnp.zeros((64, 128))
    state = tx.init(params)

    @jax.jit
    def step(p, s):
        u, s = tx.update(p - target, s, p)
        return gx.apply_updates(p, u), s

    for _ in range(steps):
        params, state = step(params, state)
    return params, state


@pytest.mark.parametrize(
    "make", [lambda: gx.adam(1e-2), lambda: gx.adamw(1e-2, weight_decay=1e-2), lambda: gx.lion(1e-3)],
    ids=["adam", "adamw", "lion"],
)
def test_quantized_state_follows_float32(make):
    want, _ = _quadratic_run(make())
    got, state = _quadratic_run(gx.quantized_state(make(), block_size=256))
    assert float(jnp.linalg.norm(got - want) / jnp.linalg.norm(want)) < 0.05
    assert any(isinstance(x, gx.QuantizedArray) for x in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, gx.QuantizedArray)))


def test_state_bytes_small_leaves_and_hyperparams():
    params = {"w": jnp.zeros((256, 512)), "b": jnp.zeros(512)}
    tx = gx.quantized_state(gx.adam(1e-3))
    state = tx.init(params)
    qs = [x for x in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, gx.QuantizedArray))
          if isinstance(x, gx.QuantizedArray)]
    assert [q.shape for q in qs] == [(256, 512)] * 2  # the bias's moments stay float32
    nbytes = sum(x.nbytes for x in jax.tree.leaves(state))
    assert nbytes / (256 * 512 + 512) < 2.1
    assert float(gx.hyperparams(state)["learning_rate"]) == pytest.approx(1e-3)
    abstract = jax.eval_shape(tx.init, params)
    assert jax.tree.structure(abstract) == jax.tree.structure(state)


@pytest.mark.parametrize("min_size", [0, 1], ids=["min-size-0", "min-size-1"])
def test_hyperparams_stay_float32_scalars_with_any_min_size(min_size):
    # With min_size <= 1 every hyperparameter became a QuantizedArray of one 2048-code block:
    # gx.hyperparams returned those, and set_hyperparams changed the state's structure.
    tx = gx.quantized_state(gx.adam(1e-3), min_size=min_size)
    state = tx.init({"w": jnp.ones(3)})
    assert all(isinstance(v, jax.Array) and v.shape == () for v in gx.hyperparams(state).values())
    changed = gx.set_hyperparams(state, learning_rate=1e-2)
    assert jax.tree.structure(changed) == jax.tree.structure(state)
    _, after = tx.update({"w": jnp.ones(3)}, changed)
    assert float(gx.hyperparams(after)["learning_rate"]) == pytest.approx(1e-2)


def test_digits_final_loss_within_two_percent():
    """The 2% criterion: an MLP on scikit-learn's digits, 8-bit Adam against float32 Adam."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = jnp.asarray(x / 16.0, jnp.float32)
    y = jnp.asarray(y)
    k1, k2 = jax.random.split(jax.random.key(0))
    params = {
        "w1": jax.random.normal(k1, (64, 256)) / 8.0, "b1": jnp.zeros(256),
        "w2": jax.random.normal(k2, (256, 256)) / 16.0, "b2": jnp.zeros(256),
        "w3": jnp.zeros((256, 10)), "b3": jnp.zeros(10),
    }

    def loss(p, xb, yb):
        h = jax.nn.relu(xb @ p["w1"] + p["b1"])
        h = jax.nn.relu(h @ p["w2"] + p["b2"])
        logits = h @ p["w3"] + p["b3"]
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), yb[:, None], 1))

    def train(tx):
        @jax.jit
        def step(p, s, i):
            idx = jax.random.randint(jax.random.fold_in(jax.random.key(1), i), (128,), 0, x.shape[0])
            u, s = tx.update(jax.grad(loss)(p, x[idx], y[idx]), s, p)
            return gx.apply_updates(p, u), s

        p, s = params, tx.init(params)
        for i in range(200):
            p, s = step(p, s, i)
        return float(loss(p, x, y)), s

    full, _ = train(gx.adam(3e-4))
    eight, state = train(gx.quantized_state(gx.adam(3e-4), min_size=2048))
    assert abs(eight - full) <= 0.02 * full, (eight, full)
    n = sum(v.size for v in params.values())
    assert sum(v.nbytes for v in jax.tree.leaves(state)) / n < 2.1


def test_bad_arguments():
    with pytest.raises(ValueError, match="block_size"):
        gx.quantized_state(gx.adam(1e-3), block_size=0)
    with pytest.raises(TypeError, match="inner"):
        gx.quantized_state(3)


def _mesh(kind):
    if jax.device_count() < 2:
        pytest.skip("needs two devices (tests/conftest.py simulates two CPUs)")
    return jax.make_mesh((2,), ("d",), axis_types=(kind,), devices=jax.devices()[:2])


def test_state_sharded_over_explicit_axes_is_a_clear_error_at_init():
    """Blocks run across the whole raveled moment, which JAX cannot lay out over Explicit
    axes: ``init`` says so and names the state leaf, instead of a ShardingTypeError from
    inside the encoding at the first step."""
    mesh = _mesh(jax.sharding.AxisType.Explicit)
    tx = gx.quantized_state(gx.adam(1e-2))
    with jax.set_mesh(mesh):
        params = {"w": jax.device_put(jnp.ones((128, 64)), jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("d")))}
        with pytest.raises(ValueError, match=r"state leaf .*/w is sharded over the Explicit mesh axes \('d',\).*AxisType.Auto"):
            tx.init(params)


def test_state_sharded_over_auto_axes_keeps_the_parameters_sharding():
    """The remedy the error gives: over Auto axes the step runs, keeps the parameters'
    sharding, and has the unsharded step's numbers."""
    mesh = _mesh(jax.sharding.AxisType.Auto)
    tx = gx.quantized_state(gx.adam(1e-2))
    split = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("d"))
    params = {"w": jnp.linspace(-1.0, 1.0, 128 * 64).reshape(128, 64)}
    grads = {"w": jnp.cos(params["w"])}
    step = jax.jit(lambda g, s, p: gx.update_and_apply(tx, g, s, p))
    with jax.set_mesh(mesh):
        sharded = jax.device_put(params, split)
        new, _ = step(jax.device_put(grads, split), tx.init(sharded), sharded)
    want, _ = step(grads, tx.init(params), params)
    assert new["w"].sharding.is_equivalent_to(split, 2)
    np.testing.assert_allclose(np.asarray(new["w"]), np.asarray(want["w"]), rtol=1e-6, atol=1e-7)
