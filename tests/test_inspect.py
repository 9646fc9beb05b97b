"""The notebook diagram (gx.diagram, _repr_html_) and gx.trace_optimizer."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradxform as gx


def quadratic(p):
    return jnp.sum(jnp.array([1.0, 10.0]) * p["w"] ** 2) + jnp.sum((p["b"] - 1.0) ** 2)


PARAMS = {"w": jnp.array([1.0, -1.0]), "b": jnp.array([0.5])}


# --------------------------------------------------------------------------- diagram


def test_describe_of_something_else_is_a_type_error():
    with pytest.raises(TypeError, match=r"describe: tx is the factory gx.adam itself.*gx.describe\(gx.adam\(...\)\)"):
        gx.describe(gx.adam)
    with pytest.raises(TypeError, match=r"describe: tx must be a gradient transformation.*got float"):
        gx.describe(1e-3)
    with pytest.raises(TypeError, match=r"diagram: tx must be"):
        gx.diagram({"name": "adam"})


def test_describe_of_an_optimizer_built_inside_jit_shows_traced_values():
    # repr(tx) calls describe: printing such an optimizer, or an error message naming it,
    # failed with a ConcretizationTypeError.
    @jax.jit
    def build(lr):
        texts.append(gx.describe(gx.adam(lr)))
        texts.append(repr(gx.sgd(lr, momentum=lr)))
        return lr

    texts = []
    build(0.1)
    assert texts[0].startswith("adam(learning_rate=<traced float32[]>, b1=0.9")
    assert "momentum=<traced float32[]>" in texts[1]


def test_html_shows_stages_in_order_with_hyperparameters():
    html = gx.adam(1e-3, b2=0.99)._repr_html_()
    for stage in ("scale_by_adam", "ema", "bias_correction", "square", "sqrt", "scale_by_learning_rate"):
        assert stage in html
    for value in ("learning_rate=0.001", "b1=0.9", "b2=0.99", "eps=1e-08"):
        assert value in html
    assert html.index("gradients") < html.index("scale_by_adam") < html.index("scale_by_learning_rate") < html.index("updates")


def test_html_draws_branches_side_by_side_and_the_combination():
    html = gx.inspect.to_html(gx.branch(gx.scale(2.0), gx.chain(gx.square(), gx.sqrt()), combine="multiply"))
    assert "flex-direction:row" in html
    assert "left × right" in html
    assert "numerator ÷ denominator" in gx.inspect.to_html(gx.scale_by_adam())


def test_html_names_and_opaque_stages():
    tx = gx.chain(gx.named("head", gx.sgd(0.1)), optax.scale(-1.0))
    html = gx.inspect.to_html(tx)
    assert "head:" in html and "sgd" in html and "(opaque)" in html


def test_diagram_shows_current_values_from_the_state():
    tx = gx.adam(1e-3)
    state = gx.set_hyperparams(tx.init(PARAMS), learning_rate=5e-4)
    html = gx.diagram(tx, state)._repr_html_()
    assert "now 0.0005" in html
    # The expanded composition is rebuilt with the current values.
    assert "learning_rate=0.0005" in html
    assert "→ now" not in gx.diagram(tx)._repr_html_()
    assert gx.diagram(tx)._repr_html_() == tx._repr_html_()


def test_diagram_shows_a_schedule_and_its_current_value():
    tx = gx.sgd(gx.schedules.linear_schedule(1.0, 0.0, 10))
    state = tx.init(PARAMS)
    for _ in range(3):
        _, state = tx.update(jax.tree.map(jnp.ones_like, PARAMS), state)
    html = gx.diagram(tx, state)._repr_html_()
    assert "linear_schedule" in html and "now 0.8" in html and "step 3" in html


def test_diagram_of_a_state_inside_jit_shows_the_structure_and_traced_values():
    tx = gx.chain(gx.clip_by_global_norm(1.0), gx.sgd(gx.schedules.linear_schedule(1.0, 0.0, 10)), gx.reduce_on_plateau())
    state = tx.init(PARAMS)
    rendered = []

    @jax.jit
    def step(state):
        rendered.append(gx.diagram(tx, state)._repr_html_())
        return state

    step(state)
    html = rendered[0]
    assert "linear_schedule" in html and "reduce_on_plateau" in html and "scale_by_learning_rate" in html
    assert "step &lt;traced int32[]&gt;" in html
    assert "→ now" not in html  # the values are unknown while tracing, not changed


# --------------------------------------------------------------------------- trace


def manual_run(tx, params, steps, extra=True):
    state, losses, updates_norms, path = tx.init(params), [], [], [params]
    for _ in range(steps):
        loss, grads = jax.value_and_grad(quadratic)(params)
        updates, state = tx.update(grads, state, params, **({"value": loss} if extra else {}))
        params = gx.apply_updates(params, updates)
        losses.append(loss)
        updates_norms.append(optax.tree.norm(updates))
        path.append(params)
    return np.array(losses), np.array(updates_norms), path


CASES = {
    "sgd": lambda: gx.sgd(0.02),
    "momentum": lambda: gx.sgd(0.02, momentum=0.9, nesterov=True),
    "adam": lambda: gx.adam(0.05),
    "adam-schedule": lambda: gx.adam(gx.schedules.cosine_decay_schedule(0.1, 20)),
    "chain-named": lambda: gx.chain(gx.clip_by_global_norm(1.0), gx.named("opt", gx.rmsprop(0.01))),
    "plateau": lambda: gx.chain(gx.sgd(0.02), gx.reduce_on_plateau(factor=0.5, patience=1)),
    "optax": lambda: optax.adam(0.05),
}


@pytest.mark.parametrize("make", CASES.values(), ids=CASES.keys())
def test_trace_matches_a_manual_run(make):
    steps = 12
    run = gx.trace_optimizer(make(), quadratic, PARAMS, steps)
    losses, norms, path = manual_run(make(), PARAMS, steps)
    assert run.params["w"].shape == (steps + 1, 2) and run.params["b"].shape == (steps + 1, 1)
    assert run.loss.shape == run.grad_norm.shape == (steps,)
    assert all(v.shape == (steps,) for v in run.stage_norms.values())
    np.testing.assert_allclose(run.loss, losses, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(list(run.stage_norms.values())[-1], norms, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(run.params["w"][-1], path[-1]["w"], rtol=1e-4, atol=1e-6)


def test_trace_stages_are_the_top_level_chain_and_match_their_own_updates():
    run = gx.trace_optimizer(gx.adam(0.05), quadratic, PARAMS, 3)
    assert list(run.stage_norms) == ["0: scale_by_adam", "1: scale_by_learning_rate"]
    pre = gx.scale_by_adam()
    state, params, expected = pre.init(PARAMS), PARAMS, []
    outer = gx.adam(0.05)
    outer_state = outer.init(PARAMS)
    for _ in range(3):
        grads = jax.grad(quadratic)(params)
        out, state = pre.update(grads, state)
        expected.append(optax.tree.norm(out))
        updates, outer_state = outer.update(grads, outer_state)
        params = gx.apply_updates(params, updates)
    np.testing.assert_allclose(run.stage_norms["0: scale_by_adam"], expected, rtol=1e-5)
    np.testing.assert_allclose(run.stage_norms["1: scale_by_learning_rate"], 0.05 * np.array(expected), rtol=1e-5)


def test_trace_stages_of_a_named_chain_are_its_named_stages():
    tx = gx.named_chain(("clip", gx.clip_by_global_norm(0.5)), ("opt", gx.sgd(0.05)))
    run = gx.trace_optimizer(tx, quadratic, PARAMS, 3)
    assert list(run.stage_norms) == ["0: clip", "1: opt"]
    params, expected = PARAMS, []
    state = tx.init(PARAMS)
    for _ in range(3):
        grads = jax.grad(quadratic)(params)
        clip = gx.clip_by_global_norm(0.5)
        clipped = clip.update(grads, clip.init(params))[0]
        expected.append(optax.tree.norm(clipped))
        updates, state = tx.update(grads, state)
        params = gx.apply_updates(params, updates)
    np.testing.assert_allclose(run.stage_norms["0: clip"], expected, rtol=1e-5)
    np.testing.assert_allclose(run.stage_norms["1: opt"], 0.05 * np.array(expected), rtol=1e-5)


def test_stages_replay_the_next_update_after_hyperparameters_change():
    tx = gx.adam(gx.schedules.exponential_decay(0.1, 1, 0.5))
    state = tx.init(PARAMS)
    grads = jax.grad(quadratic)(PARAMS)
    for _ in range(2):
        _, state = tx.update(grads, state)
    state = gx.set_hyperparams(state, b1=0.5, **{"learning_rate.init_value": 0.2})
    out = grads
    for _, stage, stage_state in gx.tracing.stages(tx, state):
        out, _ = stage.update(out, stage_state)
    expected, _ = tx.update(grads, state)
    np.testing.assert_allclose(out["w"], expected["w"], rtol=1e-6)


def test_trace_with_batches_and_a_single_stage():
    keys = jax.random.split(jax.random.key(0), 4)
    noisy = lambda p, key: quadratic(p) + jnp.sum(p["w"] * jax.random.normal(key, (2,)))
    run = gx.trace_optimizer(gx.scale(-0.01), noisy, PARAMS, 4, batches=keys)
    assert list(run.stage_norms) == ["0: scale"]
    np.testing.assert_allclose(run.stage_norms["0: scale"], 0.01 * run.grad_norm, rtol=1e-5)
    with pytest.raises(ValueError, match="steps must be an integer"):
        gx.trace_optimizer(gx.sgd(0.1), quadratic, PARAMS, 0)


def test_stage_labels_use_names_and_a_chain_is_found_through_wrappers():
    tx = gx.named("opt", gx.chain(gx.clip_by_global_norm(1.0), gx.named("inner", gx.sgd(0.1))))
    run = gx.trace_optimizer(tx, quadratic, PARAMS, 2)
    assert list(run.stage_norms) == ["0: clip_by_global_norm", "1: inner"]
