"""The transformation protocol: interop with Optax and Flax, hyperparameters as data,
dtypes, abstract init and sharding, validation, and readable errors."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradxform as gx
from harness import assert_trees_close, mixed_params, run

# --------------------------------------------------------------------------- Optax interop


def test_gradxform_inside_optax_chain_under_jit():
    ours, _ = run(optax.chain(optax.clip_by_global_norm(1.0), gx.adam(1e-3)))
    ref, _ = run(optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-3)))
    assert_trees_close(ours, ref)


def test_optax_inside_gradxform_chain_under_jit():
    tx = gx.chain(optax.clip_by_global_norm(1.0), gx.adam(1e-3))
    ours, _ = run(tx, extra={"value": 1.0})  # extras reach ours and skip Optax's stage
    ref, _ = run(optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-3)))
    assert_trees_close(ours, ref)
    assert "opaque" in gx.describe(tx)


# --------------------------------------------------------------------------- Flax


def _mlp_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 5)).astype(np.float32)
    y = (np.sin(x @ rng.normal(size=(5, 1))) > 0).astype(np.float32)
    return jnp.asarray(x), jnp.asarray(y)


def test_flax_linen_train_state_with_adamw():
    import flax.linen as nn
    from flax.training import train_state

    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(1)(nn.relu(nn.Dense(16)(x)))

    x, y = _mlp_data()
    model = MLP()
    state = train_state.TrainState.create(
        apply_fn=model.apply, params=model.init(jax.random.PRNGKey(0), x), tx=gx.adamw(1e-2)
    )

    def loss_fn(params):
        return optax.sigmoid_binary_cross_entropy(state.apply_fn(params, x), y).mean()

    @jax.jit
    def step(state):
        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        return state.apply_gradients(grads=grads), loss

    first = None
    for _ in range(100):
        state, loss = step(state)
        first = loss if first is None else first
    assert float(loss) < 0.5 * float(first)
    assert float(gx.hyperparams(state.opt_state)["weight_decay"]) == pytest.approx(1e-4)


def _nnx_mlp(width):
    from flax import nnx

    class MLP(nnx.Module):
        def __init__(self, rngs):
            self.hidden = nnx.Linear(5, width, rngs=rngs)
            self.out = nnx.Linear(width, 1, rngs=rngs)

        def __call__(self, x):
            return self.out(nnx.relu(self.hidden(x)))

    return MLP(nnx.Rngs(0))


def test_flax_nnx_optimizer_with_adamw():
    from flax import nnx

    x, y = _mlp_data()
    model = _nnx_mlp(16)
    optimizer = nnx.Optimizer(model, gx.adamw(1e-2), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer):
        def loss_fn(model):
            return optax.sigmoid_binary_cross_entropy(model(x), y).mean()

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    losses = [float(step(model, optimizer)) for _ in range(100)]
    assert losses[-1] < 0.5 * losses[0]


def test_set_hyperparams_on_an_nnx_optimizer_keeps_its_state_structure():
    from flax import nnx

    x, y = _mlp_data()
    model = _nnx_mlp(4)
    optimizer = nnx.Optimizer(model, gx.adam(1e-2), wrt=nnx.Param)
    traces = []

    @nnx.jit
    def step(model, optimizer):
        traces.append(1)
        grads = nnx.grad(lambda m: optax.sigmoid_binary_cross_entropy(m(x), y).mean())(model)
        optimizer.update(model, grads)

    step(model, optimizer)
    before = jax.tree.structure(optimizer.opt_state)
    # Rebuilding the containers turned the nested nnx State into dicts and the OptArray
    # into a bare array: the next step failed on the tree structure.
    optimizer.opt_state = gx.set_hyperparams(optimizer.opt_state, learning_rate=0.0)
    assert jax.tree.structure(optimizer.opt_state) == before
    kernel = np.asarray(model.out.kernel[...])
    step(model, optimizer)
    np.testing.assert_array_equal(np.asarray(model.out.kernel[...]), kernel)
    assert len(traces) == 1
    assert isinstance(gx.hyperparams(optimizer.opt_state)["learning_rate"], jax.Array)


@pytest.mark.parametrize(
    "make",
    [
        lambda: gx.MultiSteps(gx.adam(1e-2), 2).gradient_transformation(),
        lambda: gx.apply_if_finite(gx.sgd(0.1), 3),
        lambda: gx.chain(gx.adam(1e-2), gx.reduce_on_plateau()),
        lambda: gx.mechanize(gx.sgd(0.1)),
        lambda: gx.scale_by_lbfgs(),
        lambda: gx.chain(gx.snapshot("norm", lambda u: u), gx.sgd(0.1)),
    ],
    ids=["multi_steps", "apply_if_finite", "reduce_on_plateau", "mechanize", "scale_by_lbfgs", "snapshot"],
)
def test_state_and_params_can_be_donated_from_the_first_step(make):
    # An init that reused one array for two leaves (or kept the parameters themselves)
    # made the first donated step fail: "Attempt to donate the same buffer twice".
    tx = make()
    params = {"w": jnp.ones((2, 3)), "b": jnp.zeros(3)}
    state = tx.init(params)

    def step(params, state):
        updates, state = tx.update(jax.tree.map(jnp.ones_like, params), state, params, value=jnp.float32(1.0))
        return gx.apply_updates(params, updates), state

    step = jax.jit(step, donate_argnums=(0, 1))
    for _ in range(2):
        params, state = step(params, state)
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(params))


# --------------------------------------------------------------------------- hyperparameters


def test_changing_learning_rate_twice_does_not_recompile():
    tx = gx.adam(1e-2)
    params = mixed_params()
    state = tx.init(params)
    traces = []

    @jax.jit
    def step(params, state):
        traces.append(1)
        updates, state = tx.update(jax.tree.map(jnp.ones_like, params), state, params)
        return gx.apply_updates(params, updates), state

    p1, s1 = step(params, state)
    p2, s2 = step(params, gx.set_hyperparams(state, learning_rate=0.5))
    p3, _ = step(params, gx.set_hyperparams(state, learning_rate=0.0))
    # As in a training loop: the step's own output state, changed twice.
    _, s4 = step(p1, gx.set_hyperparams(s1, learning_rate=0.1))
    step(p1, gx.set_hyperparams(s4, learning_rate=0.2, b1=0.5))
    assert len(traces) == 1
    assert step._cache_size() == 1  # no second compilation either (e.g. from argument placement)
    # The first Adam step moves every coordinate by the learning rate.
    np.testing.assert_allclose(params["w"] - p1["w"], 1e-2, rtol=1e-4)
    np.testing.assert_allclose(params["w"] - p2["w"], 0.5, rtol=1e-4)
    np.testing.assert_array_equal(p3["w"], params["w"])


def test_schedule_value_is_readable_and_counts_steps():
    schedule = lambda count: 0.1 / (1.0 + count)
    tx = gx.sgd(schedule)
    params = {"x": jnp.ones(3)}
    state = tx.init(params)
    assert float(gx.hyperparams(state)["learning_rate"]) == pytest.approx(0.1)
    step = jax.jit(tx.update)
    for t in range(4):
        updates, state = step({"x": jnp.ones(3)}, state, params)
        assert float(gx.hyperparams(state)["learning_rate"]) == pytest.approx(0.1 / (1 + t))
        np.testing.assert_allclose(updates["x"], -0.1 / (1 + t), rtol=1e-6)
    with pytest.raises(ValueError, match="follows a schedule"):
        gx.set_hyperparams(state, learning_rate=0.3)


def test_schedule_matches_optax_schedule_semantics():
    schedule = optax.linear_schedule(0.01, 0.0, 50)
    ours, _ = run(gx.adam(schedule), 60)
    ref, _ = run(optax.adam(schedule), 60)
    # A traced learning rate lets XLA order the final multiply differently from Optax's
    # folded constant: one ulp per step (measured: 7e-8 after 1 step, 1.5e-6 after 60).
    assert_trees_close(ours, ref, atol=1e-5)


def test_hyperparams_in_nested_compositions_are_qualified():
    tx = gx.chain(gx.named("head", gx.sgd(0.1)), gx.named("body", gx.adam(0.2)), gx.clip_by_global_norm(2.0))
    state = tx.init({"x": jnp.ones(2)})
    hp = gx.hyperparams(state)
    assert set(hp) == {"head/learning_rate", "body/learning_rate", "b1", "b2", "eps", "eps_root", "momentum", "max_norm"} - {"momentum"}
    state = gx.set_hyperparams(state, **{"body/learning_rate": 0.05})
    assert float(gx.hyperparams(state)["body/learning_rate"]) == pytest.approx(0.05)
    assert float(gx.hyperparams(state)["head/learning_rate"]) == pytest.approx(0.1)
    with pytest.raises(KeyError, match="Available"):
        gx.set_hyperparams(state, learning_rate=0.1)  # ambiguous: two stages have one
    with pytest.raises(ValueError, match="finite"):
        gx.set_hyperparams(state, max_norm=float("nan"))


@pytest.mark.parametrize(
    "changes,match",
    [
        ({"learning_rate": -0.1}, r"learning_rate must be >= 0, got learning_rate=-0.1"),
        ({"b1": 1.5}, r"b1 must be in \[0, 1\), got b1=1.5"),
        ({"eps": -1e-8}, r"eps must be >= 0"),
        ({"learning_rate": "0.1"}, r"learning_rate must be a real scalar, got str '0.1'"),
    ],
    ids=["negative-lr", "b1", "eps", "string"],
)
def test_set_hyperparams_checks_the_range_it_was_built_with(changes, match):
    state = gx.adam(1e-3).init({"w": jnp.ones(2)})
    with pytest.raises(ValueError, match=match):
        gx.set_hyperparams(state, **changes)


def test_schedule_values_are_checked_against_the_hyperparameter_range():
    # Only the value at step 0 used to be checked: these decayed into gradient ascent.
    with pytest.raises(ValueError, match=r"adam: learning_rate follows a schedule whose end_value is -0.1"):
        gx.adam(gx.schedules.linear_schedule(0.1, -0.1, 100))
    state = gx.adam(gx.schedules.cosine_decay_schedule(1e-3, 100)).init({"w": jnp.ones(2)})
    with pytest.raises(ValueError, match=r"learning_rate.init_value must be >= 0, got learning_rate.init_value=-1.0"):
        gx.set_hyperparams(state, **{"learning_rate.init_value": -1.0})
    gx.set_hyperparams(state, **{"learning_rate.init_value": 0.5, "learning_rate.alpha": 0.1})


@pytest.mark.parametrize(
    "schedule,changes,match",
    [
        (
            gx.schedules.cosine_decay_schedule(0.1, 100),
            {"learning_rate.alpha": -1.0},
            r"learning_rate\.alpha=-1\.0 is rejected: .*learning_rate follows a schedule that is -[0-9.e-]+ at step 99, but learning_rate must be >= 0",
        ),
        (
            gx.schedules.exponential_decay(0.1, 10, 0.5),
            {"learning_rate.decay_rate": -1.0},
            r"learning_rate\.decay_rate=-1\.0 is rejected: exponential_decay: decay_rate must be > 0, got decay_rate=-1\.0",
        ),
        (
            gx.schedules.join_schedules([gx.schedules.constant_schedule(0.1), gx.schedules.exponential_decay(0.1, 10, 0.5)], [5]),
            {"learning_rate.1.decay_rate": 0.0},
            r"learning_rate\.1\.decay_rate=0\.0 is rejected: exponential_decay: decay_rate must be > 0",
        ),
    ],
    ids=["cosine-alpha-ends-negative", "exponential-decay-rate", "joined-piece"],
)
def test_set_hyperparams_checks_a_schedule_argument_as_its_function_and_the_optimizer_do(schedule, changes, match):
    tx = gx.sgd(schedule)
    state = tx.init({"w": jnp.ones(2)})
    with pytest.raises(ValueError, match=match):
        gx.set_hyperparams(state, **changes)
    # after an accepted change (the schedule's values then differ from those it was built with)
    first = next(iter(schedule.dynamic_args()))
    state = gx.set_hyperparams(state, **{f"learning_rate.{first}": 0.05})
    with pytest.raises(ValueError, match=match):
        gx.set_hyperparams(state, **changes)


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: gx.adam(gx.schedules.cosine_decay_schedule(1e-3, 100, alpha=-1.0)), r"adam: learning_rate follows a schedule that is -[0-9.e-]+ at step 99, but learning_rate must be >= 0"),
        (lambda: gx.adam(gx.schedules.stepwise_schedule([1e-3, -1e-3], [10])), r"adam: learning_rate follows a schedule that is -0.001 at step 10"),
        (lambda: gx.adam(1e-3, b1=gx.schedules.piecewise_constant_schedule(0.5, {10: 3.0})), r"adam: b1 follows a schedule that is 1.5 at step 10, but b1 must be in \[0, 1\)"),
        (lambda: gx.sgd(0.1, momentum=gx.schedules.exponential_decay(0.5, 10, 3.0)), r"sgd: momentum follows a schedule that is [0-9.]+ at step \d+, but momentum must be in \[0, 1\]"),
        (lambda: gx.adam(lambda count: -1e-3), r"adam: the schedule given as learning_rate is -0.001 at step 0, but learning_rate must be >= 0"),
        (lambda: gx.adam(gx.schedules.polynomial_schedule(1e-3, 0.0, -1.0, 10)), r"adam: learning_rate follows a schedule that is inf at step 10, but learning_rate must be finite"),
        (lambda: gx.sgd(gx.schedules.MultiplicativeSchedule(0.1, -0.5)), r"sgd: learning_rate follows a schedule that is -0.05 at step 1"),
    ],
    ids=["cosine-negative-alpha", "stepwise-negative", "piecewise-b1-past-one", "growing-momentum", "function-negative-at-0", "polynomial-negative-power-inf", "multiplicative-class-negative-factor"],
)
def test_schedules_leaving_the_range_after_step_0_are_rejected(make, match):
    # Only value fields were checked: these schedules left the range at a later step, silently.
    with pytest.raises(ValueError, match=match):
        make()


def test_hyperparams_of_a_transformation_instead_of_its_state_is_an_error():
    with pytest.raises(TypeError, match=r"hyperparams: state is a transformation"):
        gx.hyperparams(gx.adam(1e-3))
    with pytest.raises(TypeError, match=r"set_hyperparams: state is a transformation"):
        gx.set_hyperparams(gx.adam(1e-3), learning_rate=0.1)


def test_hyperparams_stay_float32_with_bfloat16_params():
    params = {"w": jnp.ones((3, 2), jnp.bfloat16)}
    tx = gx.adamw(1e-3)
    state = tx.init(params)
    updates, state = jax.jit(tx.update)(params, state, params)
    assert updates["w"].dtype == jnp.bfloat16
    assert all(v.dtype == jnp.float32 for v in gx.hyperparams(state).values())


# --------------------------------------------------------------------------- dtypes


def test_adam_moment_dtypes_are_chosen_and_kept():
    params = {"w": jnp.ones((3, 2), jnp.float32)}
    tx = gx.adam(1e-3, mu_dtype=jnp.bfloat16, nu_dtype=jnp.float16)
    state = tx.init(params)
    for _ in range(2):
        updates, state = jax.jit(tx.update)(params, state, params)
    dtypes = {str(x.dtype) for x in jax.tree.leaves(state) if x.ndim == 2}
    assert dtypes == {"bfloat16", "float16"}
    assert updates["w"].dtype == jnp.float32


@pytest.mark.parametrize("make", [lambda: gx.sgd(0.1, momentum=0.9, accumulator_dtype=jnp.bfloat16),
                                  lambda: gx.signum(0.1, accumulator_dtype=jnp.bfloat16),
                                  lambda: gx.lion(0.1, mu_dtype=jnp.bfloat16)], ids=["sgd", "signum", "lion"])
def test_state_dtype_option(make):
    params = {"w": jnp.ones((4,), jnp.float32)}
    tx = make()
    state = tx.init(params)
    _, state = jax.jit(tx.update)(params, state, params)
    assert [x.dtype for x in jax.tree.leaves(state) if x.ndim == 1] == [jnp.bfloat16]


# --------------------------------------------------------------------------- init


def test_init_under_eval_shape():
    params = mixed_params()
    abstract = jax.eval_shape(gx.adam(1e-3).init, params)
    concrete = gx.adam(1e-3).init(params)
    assert jax.tree.structure(abstract) == jax.tree.structure(concrete)
    assert all(a.shape == c.shape and a.dtype == c.dtype for a, c in zip(jax.tree.leaves(abstract), jax.tree.leaves(concrete)))


@pytest.mark.parametrize(
    "params,match",
    [
        ({"w": jnp.ones(3), "name": "x"}, r"adam\.init\(\): params must be a tree of arrays .*the leaf at name is str 'x'"),
        ({"w": jnp.ones(3), "meta": {"tags": np.array(["a", "b"])}}, r"adam\.init\(\): params .*the leaf at meta/tags is an array of dtype <U1"),
        ({"layers": [jnp.ones(2), {"act": print}]}, r"adam\.init\(\): params .*the leaf at layers/1/act is builtin_function_or_method"),
    ],
    ids=["string", "string-array", "function"],
)
def test_init_names_the_path_of_a_leaf_that_is_not_an_array(params, match):
    with pytest.raises(TypeError, match=match):
        gx.adam(1e-3).init(params)
    tx = gx.chain(gx.clip(1.0), gx.sgd(0.1))
    with pytest.raises(TypeError, match=r"chain\.init\(\): params must be a tree of arrays"):
        tx.init(params)


def test_update_names_the_path_of_a_gradient_that_is_not_an_array():
    tx = gx.adam(1e-3)
    params = {"w": jnp.ones(3)}
    with pytest.raises(TypeError, match=r"adam\.update\(\): updates must be a tree of arrays .*the leaf at w is str '0\.1'"):
        tx.update({"w": "0.1"}, tx.init(params), params)
    assert gx.sgd(0.1).init({"w": 1.0, "flag": True}) is not None  # Python numbers are accepted, as by Optax


def test_init_keeps_parameter_sharding():
    devices = jax.devices()
    assert len(devices) >= 2, "tests/conftest.py simulates two CPU devices"
    mesh = jax.sharding.Mesh(np.array(devices[:2]), ("data",))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    params = {"w": jax.device_put(jnp.ones((8, 4)), sharding), "b": jax.device_put(jnp.ones(8), sharding)}
    state = gx.adam(1e-3).init(params)
    moments = [x for x in jax.tree.leaves(state) if x.ndim >= 1]
    assert len(moments) == 4
    assert all(x.sharding.is_equivalent_to(sharding, x.ndim) for x in moments)
    # Inside jit, init cannot see its inputs' shardings (give jit out_shardings for that);
    # a jitted update propagates them from the parameters and state.
    tx = gx.adam(1e-3)
    _, state = jax.jit(tx.update)(params, state, params)
    assert all(x.sharding.is_equivalent_to(sharding, x.ndim) for x in jax.tree.leaves(state) if x.ndim >= 1)


@pytest.mark.parametrize(
    "make",
    [lambda: gx.adafactor(1e-3), lambda: gx.scale_by_factored_rms(), lambda: gx.sm3(0.1)],
    ids=["adafactor", "scale_by_factored_rms", "sm3"],
)
def test_init_keeps_parameter_sharding_of_full_size_state(make):
    """A state leaf as large as its parameter is laid out like it, as Optax's Adafactor
    does: Adafactor's unfactored second moment (a vector, or a matrix with a side shorter
    than min_dim_size_to_factor) and SM3's accumulator of a vector were built on one
    device, so a sharded model's whole optimizer state for them landed on device 0."""
    devices = jax.devices()
    assert len(devices) >= 2, "tests/conftest.py simulates two CPU devices"
    mesh = jax.sharding.Mesh(np.array(devices[:2]), ("data",))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    params = {"w": jax.device_put(jnp.ones((8, 4)), sharding), "b": jax.device_put(jnp.ones(6), sharding)}
    state = make().init(params)
    full = [x for x in jax.tree.leaves(state) if x.shape in ((8, 4), (6,))]
    assert full
    assert all(x.sharding.is_equivalent_to(sharding, x.ndim) for x in full), [x.sharding for x in full]


def test_step_counters_saturate():
    top = jnp.iinfo(jnp.int32).max
    tx = gx.bias_correction(0.5)
    state = tx.init(jnp.ones(1))
    near = jnp.array(top - 1, jnp.int32)
    state = state._replace(count=near, inner_state=gx.CountState(near))
    for _ in range(3):
        updates, state = tx.update(jnp.ones(1), state)
    assert int(state.count) == top and int(state.inner_state.count) == top
    assert np.isfinite(np.asarray(updates)).all()


# --------------------------------------------------------------------------- describe


def test_describe_shows_adam_as_composition_of_primitives():
    text = gx.describe(gx.adam(1e-3))
    for primitive in ("ratio(", "ema(", "bias_correction(", "square(", "sqrt(", "add(", "scale_by_learning_rate("):
        assert primitive in text, text
    assert text.splitlines()[0].startswith("adam(learning_rate=0.001, b1=0.9, b2=0.999")


def test_repr_html_renders_stages():
    html = gx.adam(1e-3)._repr_html_()
    assert "ratio" in html and "scale_by_learning_rate" in html


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: gx.adam(-1e-3), r"learning_rate must be >= 0, got learning_rate=-0.001"),
        (lambda: gx.adam(1e-3, b1=1.5), r"b1 must be in \[0, 1\), got b1=1.5"),
        (lambda: gx.adam(1e-3, b2=1.0), r"b2 must be in \[0, 1\), got b2=1.0"),
        (lambda: gx.adam(1e-3, eps=-1e-8), r"eps must be >= 0"),
        (lambda: gx.sgd("fast"), r"learning_rate must be a number or a schedule, got str"),
        (lambda: gx.sgd(0.1, momentum=True), r"momentum must be a number or a schedule, got bool"),
        (lambda: gx.rmsprop(0.1, decay=float("nan")), r"decay must be in \[0, 1\)"),
        (lambda: gx.clip_by_global_norm(0.0), r"max_norm must be > 0"),
        (lambda: gx.adam(float("inf")), r"adam: learning_rate must be finite and >= 0, got learning_rate=inf"),
        (lambda: gx.adam(1e-3, nu_dtype=jnp.int32), r"adam: nu_dtype must be a floating-point"),
        (lambda: gx.sgd(0.1, momentum=0.9, accumulator_dtype="int8"), r"sgd: accumulator_dtype must be a floating-point"),
        (lambda: gx.adam(1e-3, mu_dtype="float33"), r"adam: mu_dtype must be a dtype such as"),
        (lambda: gx.sgd(0.1, 0.9, nesterov="false"), r"sgd: nesterov must be True or False, got str nesterov='false'"),
        (lambda: gx.adam(1e-3, b2=0.99999999), r"adam: b2=0.99999999 is 1.0 in float32.*b2 must be in \[0, 1\)"),
        (lambda: gx.adam(1e39), r"adam: learning_rate=1e\+39 is inf in float32"),
    ],
    ids=["negative-lr", "b1", "b2", "eps", "string", "bool", "nan", "max-norm", "inf-lr", "int-moment", "int-accumulator", "unknown-dtype", "flag-string", "b2-rounds-to-one", "lr-overflows-float32"],
)
def test_invalid_hyperparameters_raise_at_construction(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize(
    "schedule,error,match",
    [
        (lambda: 0.1, TypeError, r"adam: the schedule given as learning_rate failed at step 0 with TypeError"),
        (lambda count: "fast", TypeError, r"adam: the schedule given as learning_rate failed at step 0"),
        (lambda count: jnp.ones(3), ValueError, r"adam: the schedule given as learning_rate must return a scalar, got shape \(3,\)"),
    ],
    ids=["no-step-argument", "returns-string", "returns-vector"],
)
def test_bad_schedule_is_named_at_construction(schedule, error, match):
    with pytest.raises(error, match=match):
        gx.adam(schedule)


def test_unknown_argument_is_a_clear_type_error():
    with pytest.raises(TypeError, match=r"adam\(\): .*beta1"):
        gx.adam(1e-3, beta1=0.9)


@pytest.mark.parametrize("name", ["adam", "sgd", "lion", "novograd", "adafactor", "sm3"])
def test_python_number_leaves_work_as_in_optax(name):
    # Optax accepts {"w": 0.5}; these failed with "'float' object has no attribute 'dtype'".
    tx = getattr(gx, name)(1e-3)
    expected, _ = tx.update({"w": jnp.asarray(0.5)}, tx.init({"w": jnp.asarray(1.0)}), {"w": jnp.asarray(1.0)})
    updates, _ = tx.update({"w": 0.5}, tx.init({"w": 1.0}), {"w": 1.0})
    np.testing.assert_allclose(updates["w"], expected["w"])


def test_update_with_a_different_tree_names_the_paths():
    tx = gx.adam(1e-3)
    state = tx.init({"w": jnp.ones(2), "b": jnp.ones(1)})
    with pytest.raises(ValueError, match=r"only in the first:  bias[\s\S]*only in the second: b"):
        tx.update({"w": jnp.ones(2), "bias": jnp.ones(1)}, state)
    with pytest.raises(ValueError, match=r"Parameter 'w' has shape \(3,\)"):
        jax.jit(tx.update)({"w": jnp.ones(3), "b": jnp.ones(1)}, state)


def test_chain_rejects_non_transformations_and_foreign_state():
    with pytest.raises(TypeError, match="stage 1 must be a gradient transformation"):
        gx.chain(gx.scale(1.0), 0.5)
    with pytest.raises(ValueError, match="state"):
        gx.adam(1e-3).update({"w": jnp.ones(2)}, gx.sgd(0.1, momentum=0.9).init({"w": jnp.ones(2)}))


def test_state_of_an_optimizer_with_the_same_hyperparameters_is_named():
    # nadam and adam have the same hyperparameter names but different states.
    params = {"w": jnp.ones(2)}
    with pytest.raises(ValueError, match=r"adam.update\(\) was given a state that adam.init\(\) does not make"):
        gx.adam(1e-3).update(params, gx.nadam(1e-3).init(params))
    with pytest.raises(ValueError, match=r"adam.update\(\) was given a state that adam.init\(\) does not make"):
        jax.jit(gx.adam(1e-3).update)(params, gx.nadam(1e-3).init(params))


@pytest.mark.parametrize(
    "make",
    [lambda: gx.multi_steps(gx.adam(1e-3), 2), lambda: gx.apply_if_finite(gx.adam(1e-3), 2)],
    ids=["multi_steps", "apply_if_finite"],
)
def test_wrapper_given_its_inner_optimizers_state_says_so(make):
    params = {"w": jnp.ones(2)}
    with pytest.raises(ValueError, match=r"update\(\) was given a state that .*init\(\) does not make"):
        make().update(params, gx.adam(1e-3).init(params), params)


# --------------------------------------------------------------------------- extra arguments


def _recorder(seen):
    def update(updates, state, params=None, **extra):
        seen.append(sorted(extra))
        return updates, state

    return gx.GradientTransformation(lambda p: gx.EmptyState(), update)


def test_extra_arguments_flow_through_every_combinator():
    seen = []
    tx = gx.chain(
        gx.named("a", _recorder(seen)),
        gx.branch(_recorder(seen), gx.chain(_recorder(seen), gx.adam(1e-3))),
        gx.sgd(0.1),
    )
    params = {"w": jnp.ones(2)}
    tx.update(params, tx.init(params), params, value=1.0, key=2)
    assert seen == [["key", "value"]] * 3


# --------------------------------------------------------------------------- equal compositions


def test_adam_with_b1_zero_equals_debiased_rmsprop_with_eps_outside_root():
    adam, _ = run(gx.adam(1e-3, b1=0.0, b2=0.9, eps=1e-3))
    rms, _ = run(gx.rmsprop(1e-3, decay=0.9, eps=1e-3, eps_in_sqrt=False, bias_correction=True))
    assert_trees_close(adam, rms)


def test_sgd_with_zero_momentum_equals_plain_sgd():
    a, _ = run(gx.sgd(0.01, momentum=0.0))
    b, _ = run(gx.sgd(0.01))
    assert_trees_close(a, b, rtol=0, atol=0)


def test_apply_updates_keeps_dtype_and_skips_none():
    params = {"a": jnp.ones(2, jnp.bfloat16), "b": jnp.ones(2)}
    new = gx.apply_updates(params, {"a": jnp.full(2, 0.5, jnp.float32), "b": None})
    assert new["a"].dtype == jnp.bfloat16 and float(new["a"][0]) == 1.5
    np.testing.assert_array_equal(new["b"], params["b"])


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_apply_updates_refuses_an_update_for_a_none_parameter(jit):
    # Optax returns None there and the update is lost; a raw TypeError from `None + array`
    # named nothing (a regression once).
    params = {"a": jnp.ones(2), "b": None}
    apply = jax.jit(gx.apply_updates) if jit else gx.apply_updates
    with pytest.raises(ValueError, match="parameter 'b' is None but its update is an array of shape"):
        apply(params, {"a": jnp.ones(2), "b": jnp.ones(2)})
    np.testing.assert_array_equal(apply(params, {"a": jnp.ones(2), "b": None})["a"], [2.0, 2.0])


@pytest.mark.parametrize("name", ["adam", "adamw", "nadam", "amsgrad", "adamax", "rmsprop", "adagrad", "lion", "signum", "sgd"])
def test_bfloat16_parameters_match_optax(name):
    """Low-precision moments are updated in float32 and rounded when stored: in bfloat16,
    b2 = 0.999 would round to 1 and Adam would divide by eps (a regression once)."""
    kwargs = {"momentum": 0.9} if name == "sgd" else {}
    params = mixed_params(jnp.bfloat16)
    ours, _ = run(getattr(gx, name)(1e-3, **kwargs), 20, params=params)
    ref, _ = run(getattr(optax, name)(1e-3, **kwargs), 20, params=params)
    assert ours["w"].dtype == jnp.bfloat16
    # Parameters are bfloat16 (8 bits of mantissa): a few units in the last place.
    for x, y in zip(jax.tree.leaves(ours), jax.tree.leaves(ref)):
        np.testing.assert_allclose(np.asarray(x, np.float32), np.asarray(y, np.float32), rtol=2e-2, atol=2e-2)


def test_call_update_is_not_fooled_by_a_reused_function_id():
    # Regression: the "accepts **extra" cache was keyed by id(); once a function was collected,
    # a foreign update without **extra could reuse its id and be handed extras (flaky in CI).
    from gradxform.core import call_update

    for _ in range(200):
        def with_extra(u, s, p=None, **extra):
            return u, s

        call_update(gx.GradientTransformation(lambda p: (), with_extra), 1.0, (), None, {"v": 1})
        del with_extra

        def without_extra(u, s, p=None):
            return u, s

        out, _ = call_update(
            gx.GradientTransformation(lambda p: (), without_extra), 1.0, (), None, {"v": 1}
        )
        assert out == 1.0
        del without_extra


def test_lbfgs_names_its_linesearch_argument():
    # It used to say "chain: stage 2 must be a gradient transformation".
    with pytest.raises(TypeError, match=r"^lbfgs: linesearch must be a gradient transformation .* got str: 'zoom'"):
        gx.lbfgs(linesearch="zoom")


@pytest.mark.parametrize(
    "call",
    [lambda b: gx.chain(b), lambda b: gx.lookahead(b, 2, 0.5), lambda b: gx.quantized_state(b), lambda b: gx.lbfgs(linesearch=b)],
    ids=["chain", "lookahead", "quantized_state", "lbfgs-linesearch"],
)
def test_every_wrapper_names_the_usual_slips_with_a_transformation(call):
    """One check serves every place that takes a transformation: an uncalled factory is told
    to be called, and a MultiSteps object to give its gradient_transformation()."""
    with pytest.raises(TypeError, match=r"is the factory gx.adam itself, not a transformation; call it first"):
        call(gx.adam)
    with pytest.raises(TypeError, match=r"gradient_transformation\(\) to use this MultiSteps here"):
        call(gx.MultiSteps(gx.adam(0.1), 2))
