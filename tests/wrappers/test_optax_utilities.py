"""Optax's smaller public utilities under their Optax names, against Optax as the oracle:
target-network updates, keep_params_nonnegative, normalize_by_update_norm, scale_gradient,
named_chain, conditionally_transform/mask and stateless(_with_tree_map). Each runs a few
steps on a mixed-shape tree, jitted and op by op, and mixes with Optax inside each other's
chains; each bad argument raises an error naming it."""

import collections
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradxform as gx
from harness import assert_trees_close, mixed_params, run

STEPS = 5
JIT = [True, False]
JIT_IDS = ["jit", "eager"]


def assert_same_leaves(a, b, rtol=1e-6, atol=1e-7):
    """Same number of leaves, leafwise close (the containers may be either library's)."""
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb), (jax.tree.structure(a), jax.tree.structure(b))
    for x, y in zip(la, lb):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


def both(make, jit, steps=STEPS, params=None, extra=None):
    """Runs ``make(gx)`` and ``make(optax)`` (the same composition in either library) and
    returns their (params, state) pairs."""
    return run(make(gx), steps, jit=jit, params=params, extra=extra), run(make(optax), steps, jit=jit, params=params, extra=extra)


# --------------------------------------------------------------------------- target networks


@pytest.mark.parametrize("jit", JIT, ids=JIT_IDS)
def test_incremental_update_follows_optax_over_a_training_loop(jit):
    online = mixed_params()
    target = jax.tree.map(jnp.zeros_like, online)

    def loop(lib):
        fn = jax.jit(lib.incremental_update) if jit else lib.incremental_update
        t, o, out = target, online, []
        for i in range(STEPS):
            o = jax.tree.map(lambda x: x * 0.9 + 0.1 * i, o)
            t = fn(o, t, 0.25 if not jit else jnp.float32(0.25))
            out.append(t)
        return out

    got, want = loop(gx), loop(optax)
    assert_trees_close(got, want)
    assert float(got[0]["w"][0, 0]) == pytest.approx(0.25 * (online["w"][0, 0] * 0.9))


def test_incremental_update_keeps_none_leaves_and_the_old_dtype():
    new = {"a": jnp.ones(2), "b": None}
    old = {"a": jnp.zeros(2, jnp.bfloat16), "b": None}
    out = gx.incremental_update(new, old, jnp.float32(0.5))
    assert out["b"] is None and out["a"].dtype == jnp.bfloat16
    assert out["a"].tolist() == [0.5, 0.5]
    assert gx.incremental_update(new, {"a": jnp.zeros(2), "b": None}, 1.0)["a"].tolist() == [1.0, 1.0]


@pytest.mark.parametrize("jit", JIT, ids=JIT_IDS)
def test_periodic_update_follows_optax_with_traced_steps(jit):
    online, target = mixed_params(), jax.tree.map(jnp.zeros_like, mixed_params())
    for steps in range(6):
        args = (online, target, jnp.int32(steps) if jit else steps, 3)
        got = jax.jit(gx.periodic_update, static_argnums=3)(*args) if jit else gx.periodic_update(*args)
        want = optax.periodic_update(*args)
        assert_trees_close(got, want)
        assert_trees_close(got, online if steps % 3 == 0 else target)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: gx.incremental_update({"w": jnp.ones(2)}, {"v": jnp.ones(2)}, 0.1),
         "incremental_update: new_tensors and old_tensors must have the same tree structure; paths only in new_tensors: ['w'], only in old_tensors: ['v']"),
        (lambda: gx.incremental_update({"w": jnp.ones(2)}, {"w": jnp.ones(3)}, 0.1),
         "incremental_update: Parameter 'w' has shape (2,) in the new_tensors but (3,) in the old_tensors."),
        (lambda: gx.incremental_update(jnp.ones(1), jnp.ones(1), 1.5),
         "incremental_update: step_size must be in [0, 1], got step_size=1.5."),
        (lambda: gx.incremental_update(jnp.ones(1), jnp.ones(1), "0.1"),
         "incremental_update: step_size must be a real number, got str step_size='0.1'."),
        (lambda: gx.incremental_update(jnp.ones(1), jnp.ones(1), lambda t: 0.1),
         "incremental_update: step_size must be a real number, got a function"),
        (lambda: gx.periodic_update(jnp.ones(1), jnp.ones(1), 3, 0),
         "periodic_update: update_period must be an integer >= 1, got update_period=0."),
        (lambda: gx.periodic_update(jnp.ones(1), jnp.ones(1), 1.5, 2),
         "periodic_update: steps must be an integer >= 0, got steps=1.5."),
        (lambda: gx.periodic_update({"w": jnp.ones(1)}, [jnp.ones(1)], 1, 2),
         "periodic_update: new_tensors and old_tensors must have the same tree structure"),
    ],
    ids=["structure", "shape", "step_size_range", "step_size_str", "step_size_fn", "period_zero", "steps_float", "periodic_structure"],
)
def test_tree_utility_errors_name_the_argument(call, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        call()


# --------------------------------------------------------------------------- constraints and scaling


@pytest.mark.parametrize("jit", JIT, ids=JIT_IDS)
def test_keep_params_nonnegative_matches_optax_and_keeps_params_nonnegative(jit):
    params = jax.tree.map(jnp.abs, mixed_params())
    (p, s), (q, t) = both(lambda lib: lib.chain(lib.sgd(0.5), lib.keep_params_nonnegative()), jit, params=params)
    assert_trees_close(p, q)
    assert all(bool(jnp.all(x >= 0)) for x in jax.tree.leaves(p))
    assert any(bool(jnp.any(x == 0)) for x in jax.tree.leaves(p))  # the constraint was active
    # Mixed the other way round: gradxform's stage last in an Optax chain.
    r, _ = run(optax.chain(optax.sgd(0.5), gx.keep_params_nonnegative()), STEPS, jit=jit, params=params)
    assert_trees_close(r, q)


def test_keep_params_nonnegative_errors():
    tx = gx.keep_params_nonnegative()
    with pytest.raises(ValueError, match="keep_params_nonnegative computes new parameters, so its update\\(\\) needs them"):
        tx.update(jnp.ones(2), tx.init(jnp.ones(2)))
    z = {"c": jnp.ones(2, jnp.complex64)}
    with pytest.raises(ValueError, match="keep_params_nonnegative: parameter 'c' is complex"):
        tx.update(z, tx.init(z), z)


@pytest.mark.parametrize("kwargs", [{}, {"scale_factor": -0.1, "eps": 1e-3}], ids=["defaults", "descent"])
@pytest.mark.parametrize("jit", JIT, ids=JIT_IDS)
def test_normalize_by_update_norm_matches_optax(jit, kwargs):
    (p, _), (q, _) = both(lambda lib: lib.chain(lib.normalize_by_update_norm(**kwargs), lib.scale(-0.05)), jit)
    assert_trees_close(p, q)
    tx = gx.normalize_by_update_norm(**kwargs)
    g = mixed_params()
    got, state = tx.update(g, tx.init(g))
    want, _ = optax.normalize_by_update_norm(**kwargs).update(g, optax.EmptyState())
    assert_trees_close(got, want)
    assert float(gx.hyperparams(state)["scale_factor"]) == pytest.approx(kwargs.get("scale_factor", 1.0))
    assert float(gx.global_norm(got)) == pytest.approx(abs(kwargs.get("scale_factor", 1.0)), rel=1e-3)


def test_normalize_by_update_norm_keeps_bfloat16_and_maps_zero_to_zero():
    tx = gx.normalize_by_update_norm()
    g = {"a": jnp.ones(3, jnp.bfloat16), "z": jnp.zeros(2)}
    out, _ = tx.update(g, tx.init(g))
    assert out["a"].dtype == jnp.bfloat16
    zero, _ = tx.update(jnp.zeros(2), tx.init(jnp.zeros(2)))
    assert zero.tolist() == [0.0, 0.0]


def test_normalize_by_update_norm_errors():
    with pytest.raises(ValueError, match=re.escape("normalize_by_update_norm: eps must be >= 0, got eps=-1.0.")):
        gx.normalize_by_update_norm(eps=-1.0)
    with pytest.raises(ValueError, match=re.escape("normalize_by_update_norm: scale_factor must be a number or a schedule, got str")):
        gx.normalize_by_update_norm(scale_factor="1")


@pytest.mark.parametrize("scale", [0.0, 1.0, 0.5, -2.0], ids=["zero", "one", "half", "negative"])
@pytest.mark.parametrize("jit", JIT, ids=JIT_IDS)
def test_scale_gradient_matches_optax(scale, jit):
    params = mixed_params()

    def loss(lib, p, s):
        scaled = lib.scale_gradient(p, s)
        return sum(jnp.sum(jnp.sin(x) * y) for x, y in zip(jax.tree.leaves(scaled), jax.tree.leaves(p)))

    def grad(lib):
        fn = jax.grad(lambda p: loss(lib, p, scale))
        return jax.jit(fn)(params) if jit else fn(params)

    got, want = grad(gx), grad(optax)
    assert_trees_close(got, want)
    # Forward pass untouched.
    assert float(loss(gx, params, scale)) == pytest.approx(float(loss(optax, params, scale)))


def test_scale_gradient_with_a_traced_scale_and_bfloat16():
    x = jnp.ones(2, jnp.bfloat16)
    g = jax.jit(jax.grad(lambda x, s: jnp.sum(gx.scale_gradient(x, s).astype(jnp.float32)), argnums=0))(x, jnp.float32(3.0))
    assert g.dtype == jnp.bfloat16 and g.tolist() == [3.0, 3.0]
    # The scale itself gets no gradient through the backward scaling.
    assert float(jax.grad(lambda s: jnp.sum(gx.scale_gradient(jnp.ones(2), s)))(2.0)) == 0.0


@pytest.mark.parametrize(
    "scale, message",
    [
        ("a", "scale_gradient: scale must be a real number, got str scale='a'."),
        (float("nan"), "scale_gradient: scale must be a finite number, got scale=nan."),
        (jnp.ones(2), "scale_gradient: scale must be a scalar, got an array of shape (2,)."),
        (None, "scale_gradient: scale must be a real number, got NoneType scale=None."),
    ],
    ids=["str", "nan", "array", "none"],
)
def test_scale_gradient_errors(scale, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        gx.scale_gradient(jnp.ones(2), scale)


# --------------------------------------------------------------------------- named_chain


@pytest.mark.parametrize("jit", JIT, ids=JIT_IDS)
def test_named_chain_matches_optax_and_keys_the_state_by_name(jit):
    def make(lib):
        return lib.named_chain(("clip", lib.clip_by_global_norm(1.0)), ("momentum", lib.trace(0.9)), ("lr", lib.scale(-0.1)))

    (p, s), (q, t) = both(make, jit)
    assert_trees_close(p, q)
    assert isinstance(s, collections.OrderedDict) and list(s) == list(t) == ["clip", "momentum", "lr"]
    assert_same_leaves(gx.hyperparams(s["momentum"])["decay"], 0.9)
    np.testing.assert_allclose(
        np.asarray(jax.tree.leaves(s["momentum"].inner_state)[0]), np.asarray(t["momentum"].trace["b"]), rtol=1e-6
    )


def test_named_chain_mixes_with_optax_and_forwards_extra_args():
    params = mixed_params()
    want, _ = run(optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(0.1, momentum=0.9)), STEPS)
    inner = gx.named_chain(("clip", optax.clip_by_global_norm(1.0)), ("sgd", gx.sgd(0.1, momentum=0.9)))
    got, _ = run(inner, STEPS)
    assert_trees_close(got, want)
    got, _ = run(optax.chain(inner), STEPS)
    assert_trees_close(got, want)
    # `value` reaches polyak_sgd through the named chain (and Optax's named_chain agrees).
    value = jnp.float32(2.0)
    tx, ox = gx.named_chain(("s", gx.scale(0.5)), ("p", gx.polyak_sgd())), optax.named_chain(("s", optax.scale(0.5)), ("p", optax.polyak_sgd()))
    g = mixed_params()
    got, _ = tx.update(g, tx.init(params), params, value=value)
    want, _ = ox.update(g, ox.init(params), params, value=value)
    assert_trees_close(got, want)


def test_named_chain_describes_and_round_trips_by_name():
    tx = gx.named_chain(("clip", gx.clip(1.0)), ("sgd", gx.sgd(0.5)))
    text = gx.describe(tx)
    assert text.splitlines()[0] == "named_chain()"
    assert "├─ clip: clip(max_delta=1" in text and "└─ sgd: sgd(learning_rate=0.5" in text
    rebuilt = gx.from_config(gx.to_config(tx))
    g = mixed_params()
    assert_trees_close(rebuilt.update(g, rebuilt.init(g))[0], tx.update(g, tx.init(g))[0])
    state = tx.init(g)
    state = gx.set_hyperparams(state, learning_rate=0.25)
    assert float(gx.hyperparams(state)["learning_rate"]) == 0.25


def test_named_chain_errors():
    with pytest.raises(TypeError, match=re.escape("named_chain: argument 0 must be a (name, transformation) pair, got GradientTransformation")):
        gx.named_chain(gx.sgd(0.1))
    with pytest.raises(TypeError, match=re.escape("named_chain: the transformation named 'a' must be a gradient transformation")):
        gx.named_chain(("a", 0.1))
    with pytest.raises(TypeError, match=re.escape("named_chain: the transformation named 'a' is the factory gx.sgd itself")):
        gx.named_chain(("a", gx.sgd))
    with pytest.raises(ValueError, match=re.escape("named_chain: stage names must be unique, got ['a'] more than once in ['a', 'b', 'a'].")):
        gx.named_chain(("a", gx.sgd(0.1)), ("b", gx.sgd(0.1)), ("a", gx.sgd(0.1)))
    with pytest.raises(ValueError, match=re.escape("named_chain: the name of argument 1 must be a non-empty string without '/' or '.', got 'x/y'.")):
        gx.named_chain(("a", gx.sgd(0.1)), ("x/y", gx.sgd(0.1)))
    tx = gx.named_chain(("a", gx.scale(2.0)))
    with pytest.raises(gx.StageError, match=re.escape("named_chain has the stages ['a'] but its state has ['b']")):
        tx.update(jnp.ones(1), {"b": ()})
    bad = gx.named_chain(("shape", gx.keep_params_nonnegative()))
    with pytest.raises(gx.StageError, match=re.escape("named_chain stage 'shape' (keep_params_nonnegative)")):
        bad.update(jnp.ones(1), bad.init(jnp.ones(1)))


def test_a_stage_type_error_stays_a_type_error_and_names_the_stage():
    # Unchained, a string value= is a TypeError; chained it must still be one (and a StageError).
    tx = gx.chain(gx.scale(2.0), gx.scale_by_polyak())
    state = tx.init(jnp.ones(2))
    with pytest.raises(TypeError, match=re.escape("chain stage 1 (scale_by_polyak): scale_by_polyak: value")) as raised:
        tx.update(jnp.ones(2), state, jnp.ones(2), value="0.5")
    assert isinstance(raised.value, gx.StageError)
    with pytest.raises(gx.StageError) as raised:
        tx.update(jnp.ones(2), state, jnp.ones(2), value=jnp.ones(3))
    assert not isinstance(raised.value, TypeError)


# --------------------------------------------------------------------------- conditional stages


def every_other(step, **extra):
    return step % 2 == 0


@pytest.mark.parametrize("name", ["conditionally_transform", "conditionally_mask"])
@pytest.mark.parametrize("jit", JIT, ids=JIT_IDS)
def test_conditional_stages_match_optax(name, jit):
    # Optax's trace inside both: the whole states compare leaf for leaf.
    def make(lib):
        return lib.chain(getattr(lib, name)(optax.trace(0.9), every_other), lib.scale(-0.1))

    (p, s), (q, t) = both(make, jit)
    assert_trees_close(p, q)
    assert_same_leaves(s[0], t[0])  # the conditional stage's (gx.scale keeps its factor too)
    assert int(s[0].step) == STEPS
    # gradxform's stage inside Optax's chain.
    r, _ = run(optax.chain(getattr(gx, name)(optax.trace(0.9), every_other), optax.scale(-0.1)), STEPS, jit=jit)
    assert_trees_close(r, q)


@pytest.mark.parametrize("name", ["conditionally_transform", "conditionally_mask"])
def test_conditional_stages_skip_without_touching_the_inner_state(name):
    tx = getattr(gx, name)(gx.sgd(1.0, momentum=0.5), lambda step: step == 1)
    g = jnp.array([2.0])
    state = tx.init(g)
    outs = []
    for _ in range(3):
        u, state = tx.update(g, state)
        outs.append(u.tolist())
    skipped = [2.0] if name == "conditionally_transform" else [0.0]
    assert outs == [skipped, [-2.0], skipped]
    assert jnp.signbit(jnp.asarray(outs[0])).all() == (name == "conditionally_mask")
    # The inner momentum saw only step 1.
    assert gx.hyperparams(state)["momentum"] == 0.5
    trace = jax.tree.leaves(state.inner_state.inner_state)
    assert [x.tolist() for x in trace] == [[2.0]]


@pytest.mark.parametrize("name", ["conditionally_transform", "conditionally_mask"])
def test_conditional_stages_forward_extra_args_to_the_condition(name):
    def on_low_loss(step, value=None, **extra):
        return value < 1.0

    def make(lib, inner):
        return getattr(lib, name)(inner, on_low_loss, forward_extra_args=True)

    g = mixed_params()
    for value in [0.5, 2.0]:
        # Optax's chain gives extra arguments only to Optax's ExtraArgs transformations, so
        # the gradxform stage sits in a gradxform chain, around an Optax inner stage.
        got_tx = gx.chain(make(gx, optax.scale(-3.0)), optax.scale(0.5))
        want_tx = optax.chain(make(optax, optax.scale(-3.0)), optax.scale(0.5))
        got, _ = jax.jit(lambda g: got_tx.update(g, got_tx.init(g), None, value=jnp.float32(value)))(g)
        want, _ = want_tx.update(g, want_tx.init(g), None, value=jnp.float32(value))
        assert_trees_close(got, want)
    # Without forwarding, the condition gets only the step.
    tx = getattr(gx, name)(gx.scale(2.0), lambda step: step < 1)
    assert tx.update(jnp.ones(1), tx.init(jnp.ones(1)), value=3.0)[0].tolist() == [2.0]


@pytest.mark.parametrize("name", ["conditionally_transform", "conditionally_mask"])
def test_conditional_stage_errors(name):
    fn = getattr(gx, name)
    with pytest.raises(TypeError, match=re.escape(f"{name}: inner must be a gradient transformation")):
        fn(3, every_other)
    with pytest.raises(TypeError, match=re.escape(f"{name}: should_transform_fn must be a function of the step count")):
        fn(gx.scale(1.0), True)
    with pytest.raises(ValueError, match=re.escape(f"{name}: forward_extra_args must be True or False, got str forward_extra_args='yes'.")):
        fn(gx.scale(1.0), every_other, forward_extra_args="yes")
    tx = fn(gx.scale(1.0), lambda step: jnp.ones(2, bool))
    with pytest.raises(ValueError, match=re.escape(f"{name}: should_transform_fn must return a boolean scalar, got an array of dtype bool and shape (2,).")):
        tx.update(jnp.ones(1), tx.init(jnp.ones(1)))


# --------------------------------------------------------------------------- stateless


def halve_tree(updates, params):
    return jax.tree.map(lambda u, p: 0.5 * u + 0.01 * p, updates, params)


def halve_leaf(u, p):
    return 0.5 * u if p is None else 0.5 * u + 0.01 * p


@pytest.mark.parametrize("name, f", [("stateless", halve_tree), ("stateless_with_tree_map", halve_leaf)], ids=["tree", "tree_map"])
@pytest.mark.parametrize("jit", JIT, ids=JIT_IDS)
def test_stateless_matches_optax(name, f, jit):
    (p, s), (q, t) = both(lambda lib: lib.chain(getattr(lib, name)(f), lib.sgd(0.1)), jit)
    assert_trees_close(p, q)
    assert s[0] == gx.EmptyState() and jax.tree.leaves(s[0]) == []
    # Each library's inside the other's chain.
    r, _ = run(gx.chain(getattr(optax, name)(f), gx.sgd(0.1)), STEPS, jit=jit)
    assert_trees_close(r, q)


def test_stateless_with_tree_map_without_params_gives_none():
    seen = []
    tx = gx.stateless_with_tree_map(lambda u, p: seen.append(p) or 2 * u)
    out, _ = tx.update({"a": jnp.ones(1), "b": jnp.ones(2)}, tx.init(None))
    assert seen == [None, None] and out["b"].tolist() == [2.0, 2.0]
    tx = gx.stateless(lambda u, p: (p, u)[1])
    assert tx.update(jnp.ones(1), tx.init(None))[0].tolist() == [1.0]


@pytest.mark.parametrize("name", ["stateless", "stateless_with_tree_map"])
def test_stateless_errors(name):
    with pytest.raises(TypeError, match=re.escape(f"{name}: f must be a function")):
        getattr(gx, name)(gx.scale(1.0))
    with pytest.raises(TypeError, match=re.escape(f"{name}: f must be a function")):
        getattr(gx, name)(0.5)


# --------------------------------------------------------------------------- monitoring


def norm(tree):
    return optax.tree.norm(tree)


@pytest.mark.parametrize("jit", JIT, ids=JIT_IDS)
def test_snapshot_and_monitor_match_optax(jit):
    def make(lib):
        return lib.chain(
            lib.sgd(0.1, momentum=0.9),
            lib.snapshot("before_clip", norm),
            lib.monitor({"norm": norm, "ema": lib.measure_with_ema(lambda u: norm(u) > 1.0, decay=0.9)}),
            lib.clip_by_global_norm(1.0),
        )

    # Optax's monitor starts with no measurements, so its state cannot be a scan carry:
    # both run step by step, the gradxform one also jitted.
    params = mixed_params()
    got_tx, want_tx = make(gx), make(optax)
    step = jax.jit(got_tx.update) if jit else got_tx.update
    grad = jax.jit(jax.grad(lambda p: sum(jnp.sum(jnp.sin(x)) for x in jax.tree.leaves(p))))
    p, q, s, t = params, params, got_tx.init(params), want_tx.init(params)
    assert set(s[2].measurements) == {"norm", "ema"}  # present from init on
    for _ in range(3):
        u, s = step(grad(p), s, p)
        v, t = want_tx.update(grad(q), t, q)
        p, q = gx.apply_updates(p, u), optax.apply_updates(q, v)
        assert_trees_close(p, q)
        np.testing.assert_allclose(s[1].measurement["before_clip"], t[1].measurement["before_clip"], rtol=1e-6)
        for key in ["norm", "ema"]:
            np.testing.assert_allclose(s[2].measurements[key], t[2].measurements[key], rtol=1e-6)


def test_monitoring_errors():
    with pytest.raises(ValueError, match=re.escape("snapshot: measure_name must be a non-empty string, got measure_name=''.")):
        gx.snapshot("", norm)
    with pytest.raises(TypeError, match=re.escape("snapshot: measure must be a function of the updates, got float 1.0.")):
        gx.snapshot("n", 1.0)
    with pytest.raises(ValueError, match=re.escape("monitor: measures must be a non-empty mapping from name (str) to measure, got {}.")):
        gx.monitor({})
    with pytest.raises(TypeError, match=re.escape("monitor: measures['x'] must be a function of the updates, got int 3.")):
        gx.monitor({"x": 3})
    with pytest.raises(ValueError, match=re.escape("measure_with_ema: decay must be in [0, 1), got decay=1.5.")):
        gx.measure_with_ema(norm, 1.5)


def test_named_chain_names_an_uncalled_factory_with_the_pair_form():
    with pytest.raises(TypeError, match=re.escape("call it first, as in gx.named_chain(('opt', gx.sgd(...)))")):
        gx.named_chain(("opt", gx.sgd))
