"""Parameter groups: masked / partition / multi_transform / freeze / set_to_zero against Optax,
path patterns over Flax linen and nnx parameters, the "fixed classifier" of Hoffer et al.
(2018), AdamW without decay on biases and LayerNorm, and per-group hyperparameters.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from flax.training import train_state

import gradxform as gx
from harness import assert_trees_close, mixed_params, run

MASK = {"w": True, "kernel": False, "b": True, "s": False}
LABELS = {"w": "fast", "kernel": "slow", "b": "slow", "s": "frozen"}


ORACLE_CASES = [
    # Unselected parameters pass through masked(), so a final scale makes every step descend.
    ("masked_tree", lambda m: m.chain(m.masked(m.scale_by_adam(), MASK), m.scale(-0.005))),
    ("freeze", lambda m: m.chain(m.freeze(MASK), m.adam(0.005))),
    (
        "multi_transform",
        lambda m: m.multi_transform({"fast": m.adam(0.005), "slow": m.sgd(0.01), "frozen": m.set_to_zero()}, LABELS),
    ),
]


@pytest.mark.parametrize("name,make", ORACLE_CASES, ids=[c[0] for c in ORACLE_CASES])
def test_group_wrappers_agree_with_optax(name, make, jit=True, steps=100):
    ours, _ = run(make(gx), steps, jit=jit)
    theirs, _ = run(make(optax), steps, jit=jit)
    # A composition and Optax's monolith round differently in the last bit; over 100 steps
    # that stays within 2e-6 absolute (values cross zero, so the relative error can be larger).
    assert_trees_close(ours, theirs, rtol=1e-5, atol=1e-5)
    # The parameters outside a group really were left to the other transformation.
    start = mixed_params()
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(ours))
    frozen = {"freeze": ("w", "b"), "multi_transform": ("s",)}.get(name, ())
    for key in frozen:
        np.testing.assert_array_equal(ours[key], start[key])


def test_partition_is_multi_transform_and_a_prefix_mask_selects_subtrees():
    params = mixed_params()
    labels = lambda p: jax.tree.map(lambda x: "big" if x.size > 3 else "small", p)  # noqa: E731
    a = gx.partition({"big": gx.adamw(0.01, weight_decay=0.1), "small": gx.sgd(0.02)}, labels)
    b = optax.partition({"big": optax.adamw(0.01, weight_decay=0.1), "small": optax.sgd(0.02)}, labels)
    step = lambda tx: jax.jit(tx.update)(params, tx.init(params), params)[0]  # noqa: E731
    assert_trees_close(step(a), step(b))
    nested = {"x": params, "y": params}
    tx = gx.masked(gx.scale(0.0), {"x": True, "y": False})
    out, _ = jax.jit(tx.update)(nested, tx.init(nested))
    assert all(np.all(v == 0) for v in jax.tree.leaves(out["x"]))
    jax.tree.map(np.testing.assert_array_equal, out["y"], params)


def test_masked_state_holds_only_selected_parameters():
    params = mixed_params()
    state = gx.masked(gx.adam(0.1), MASK).init(params)
    selected = {k: params[k] for k, m in MASK.items() if m}
    size = lambda tree: sum(np.size(x) for x in jax.tree.leaves(tree))  # noqa: E731
    assert size(state) == size(gx.adam(0.1).init(selected))


def test_partition_state_is_keyed_by_label_and_hyperparams_are_qualified():
    tx = gx.partition({"fast": gx.adam(0.05), "slow": gx.sgd(0.01), "frozen": gx.set_to_zero()}, LABELS)
    hp = gx.hyperparams(tx.init(mixed_params()))
    assert {"fast/learning_rate", "slow/learning_rate", "b1"} <= set(hp)
    assert float(hp["slow/learning_rate"]) == pytest.approx(0.01)


def test_partition_error_names_the_label_without_transformation():
    with pytest.raises(ValueError, match=r"label 'frozen'.*\bs\b"):
        gx.partition({"fast": gx.sgd(0.1), "slow": gx.sgd(0.1)}, LABELS).init(mixed_params())


@pytest.mark.parametrize(
    "foreign",
    [lambda p: gx.adam(0.1).init(p), lambda p: gx.partition({"x": gx.sgd(0.1)}, "x").init(p)],
    ids=["optimizer-state", "other-labels"],
)
def test_partition_given_another_optimizers_state_says_so(foreign):
    # An Adam state failed with "tuple indices must be integers or slices, not str".
    params = {"w": jnp.ones(2), "b": jnp.ones(1)}
    tx = gx.partition({"a": gx.adam(0.1), "b": gx.sgd(0.1)}, {"w": "a", "b": "b"})
    with pytest.raises(ValueError, match=r"partition\.update\(\) was given a state that partition\.init\(\) does not make"):
        tx.update(params, foreign(params), params)


def test_mask_that_is_not_a_prefix_is_an_error_listing_paths():
    with pytest.raises(ValueError, match="parameter paths: b, kernel, s, w"):
        gx.masked(gx.sgd(0.1), {"w": True}).init(mixed_params())


def test_mask_of_labels_instead_of_booleans_is_an_error_naming_the_path():
    # "no_decay" is truthy: it used to select the bias for weight decay silently.
    params = {"w": jnp.ones(2), "b": jnp.ones(1)}
    labels = {"w": "decay", "b": "no_decay"}
    tx = gx.adamw(1e-3, weight_decay=0.1, mask=labels)
    with pytest.raises(ValueError, match=r"mask at 'b' is str 'no_decay'.*gx.partition"):
        tx.update(params, tx.init(params), params)
    with pytest.raises(ValueError, match=r"masked: the mask at 'b' is str 'no_decay'"):
        gx.masked(gx.sgd(0.1), labels).init(params)


def test_masked_forwards_extra_arguments_only_to_accepting_stages():
    seen = {}

    def update(u, s, p=None, **extra):
        seen.update(extra)
        return u, s

    inner = gx.GradientTransformation(lambda p: gx.EmptyState(), update)
    tx = gx.masked(gx.chain(inner, optax.scale(2.0)), MASK)
    params = mixed_params()
    out, _ = tx.update(params, tx.init(params), params, value=jnp.float32(3.0))
    assert float(seen["value"]) == 3.0
    np.testing.assert_allclose(out["w"], 2 * params["w"])


# --------------------------------------------------------------------------- paths


class _LinenNet(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.Dense(8)(x)
        x = nn.LayerNorm()(x)
        x = nn.relu(x)
        return nn.Dense(1)(x)


@functools.cache
def _linen_params():
    return jax.jit(_LinenNet().init)(jax.random.key(0), jnp.ones((1, 3)))["params"]


PATTERNS = {"*/bias": "no_decay", "*/LayerNorm*/*": "no_decay", "*": "decay"}


def test_by_path_labels_linen_params():
    labels = gx.by_path(PATTERNS)({"params": _linen_params()})["params"]
    assert labels == {
        "Dense_0": {"bias": "no_decay", "kernel": "decay"},
        "Dense_1": {"bias": "no_decay", "kernel": "decay"},
        "LayerNorm_0": {"bias": "no_decay", "scale": "no_decay"},
    }


def test_by_path_pattern_matching_nothing_lists_available_paths():
    with pytest.raises(ValueError, match=r"\['\*/Conv\*/\*'\] match no parameter(.|\n)*Dense_0/kernel"):
        gx.by_path({"*/Conv*/*": "conv", "*": "rest"})({"params": _linen_params()})


def test_by_path_parameter_matching_nothing_is_named():
    with pytest.raises(ValueError, match=r"params/Dense_0/kernel.*match no pattern"):
        gx.by_path({"*/bias": "b", "*/LayerNorm_0/*": "ln"})({"params": _linen_params()})


def test_linen_adamw_decays_kernels_only():
    """Biases and LayerNorm parameters excluded from decay by path patterns (AdamW)."""
    model = _LinenNet()
    x = jax.random.normal(jax.random.key(1), (32, 3))
    y = jnp.sin(x.sum(axis=1, keepdims=True))
    lr, wd = 0.01, 0.5
    no_decay = gx.by_path({"*/bias": False, "*/LayerNorm*/*": False, "*": True})
    tx = gx.adamw(lr, weight_decay=wd, mask=no_decay)
    reference = gx.adamw(lr, weight_decay=0.0)  # same moments, no decay at all
    state = train_state.TrainState.create(apply_fn=model.apply, params=_linen_params(), tx=tx)
    ref_state = reference.init(state.params)
    oracle = optax.adamw(lr, weight_decay=wd, mask=no_decay(state.params))
    oracle_state = oracle.init(state.params)

    grad_fn = jax.grad(lambda p: jnp.mean((model.apply({"params": p}, x) - y) ** 2))

    @jax.jit
    def step(state, ref_state, oracle_state):
        grads = grad_fn(state.params)
        updates, _ = tx.update(grads, state.opt_state, state.params)
        plain, ref_state = reference.update(grads, ref_state, state.params)
        expected, oracle_state = oracle.update(grads, oracle_state, state.params)
        return state.apply_gradients(grads=grads), ref_state, oracle_state, updates, plain, expected

    for _ in range(3):
        params = state.params
        state, ref_state, oracle_state, updates, plain, expected = step(state, ref_state, oracle_state)
        decay = jax.tree.map(lambda u, v: u - v, updates, plain)
        for layer in ("Dense_0", "Dense_1"):
            np.testing.assert_allclose(decay[layer]["kernel"], -lr * wd * params[layer]["kernel"], rtol=1e-4, atol=1e-7)
            np.testing.assert_array_equal(decay[layer]["bias"], 0.0)
        np.testing.assert_array_equal(decay["LayerNorm_0"]["scale"], 0.0)
        np.testing.assert_array_equal(decay["LayerNorm_0"]["bias"], 0.0)
        assert_trees_close(updates, expected)


class _Block(nnx.Module):
    def __init__(self, rngs):
        self.dense = nnx.Linear(3, 4, rngs=rngs)
        self.LayerNorm_0 = nnx.LayerNorm(4, rngs=rngs)


class _NnxNet(nnx.Module):
    def __init__(self, rngs):
        self.encoder = _Block(rngs)
        self.head = nnx.Linear(4, 2, rngs=rngs)

    def __call__(self, x):
        return self.head(nnx.relu(self.encoder.LayerNorm_0(self.encoder.dense(x))))


def test_nnx_optimizer_with_path_masked_decay():
    """With zero gradients AdamW's only move is the decay: kernels shrink, the rest is untouched."""
    model = _NnxNet(nnx.Rngs(0))
    assert gx.param_paths(nnx.state(model, nnx.Param)) == [
        "encoder/LayerNorm_0/bias",
        "encoder/LayerNorm_0/scale",
        "encoder/dense/bias",
        "encoder/dense/kernel",
        "head/bias",
        "head/kernel",
    ]
    lr, wd = 0.1, 0.5
    mask = gx.by_path({"*/bias": False, "*/LayerNorm*/*": False, "*": True})
    optimizer = nnx.Optimizer(model, gx.adamw(lr, weight_decay=wd, mask=mask), wrt=nnx.Param)
    before = jax.tree.map(np.asarray, nnx.state(model, nnx.Param))
    grads = jax.tree.map(jnp.zeros_like, nnx.state(model, nnx.Param))
    optimizer.update(model, grads)
    after = nnx.state(model, nnx.Param)
    for kernel in (("encoder", "dense"), ("head",)):
        node_b, node_a = before, after
        for k in kernel:
            node_b, node_a = node_b[k], node_a[k]
        np.testing.assert_allclose(node_a["kernel"][...], (1 - lr * wd) * node_b["kernel"][...], rtol=1e-6)
        np.testing.assert_array_equal(node_a["bias"][...], node_b["bias"][...])
    ln_b, ln_a = before["encoder"]["LayerNorm_0"], after["encoder"]["LayerNorm_0"]
    np.testing.assert_array_equal(ln_a["scale"][...], ln_b["scale"][...])


# --------------------------------------------------------------------------- freezing


class _Mlp(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(16, name="hidden_0")(x))
        x = nn.relu(nn.Dense(16, name="hidden_1")(x))
        return nn.Dense(4, name="classifier")(x)


def test_fixed_classifier_is_bit_for_bit_unchanged_and_has_no_state():
    """Hoffer, Hubara & Soudry (2018), "Fix your classifier": train all but the last layer."""
    model = _Mlp()
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(64, 8)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, 4, size=64))
    params = jax.jit(model.init)(jax.random.key(0), x)["params"]
    groups = gx.by_path({"classifier/*": "frozen", "*": "train"})
    tx = gx.partition({"train": gx.adam(1e-2), "frozen": gx.set_to_zero()}, groups)
    state = train_state.TrainState.create(apply_fn=model.apply, params=params, tx=tx)

    def loss(p):
        logits = model.apply({"params": p}, x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    @jax.jit
    def step(state):
        l, g = jax.value_and_grad(loss)(state.params)
        return state.apply_gradients(grads=g), l

    state, first = step(state)
    for _ in range(20):
        state, last = step(state)
    assert float(last) < 0.9 * float(first)
    for name in ("kernel", "bias"):
        got, start = np.asarray(state.params["classifier"][name]), np.asarray(params["classifier"][name])
        assert got.tobytes() == start.tobytes()
        assert not np.array_equal(state.params["hidden_0"][name], params["hidden_0"][name])

    # No optimizer state for the classifier: exactly what Adam keeps for the other layers.
    trainable = {k: v for k, v in params.items() if k != "classifier"}
    adam = gx.adam(1e-2)
    size = lambda tree: sum(np.size(x) for x in jax.tree.leaves(tree))  # noqa: E731
    assert size(state.opt_state) == size(jax.eval_shape(adam.init, trainable))
    assert not any("classifier" in p for p in gx.param_paths(state.opt_state))

    # No arithmetic for it either: the compiled update costs what Adam on the rest costs.
    flops = lambda f, *a: jax.jit(f).lower(*a).compile().cost_analysis()["flops"]  # noqa: E731
    ours = flops(tx.update, params, jax.eval_shape(tx.init, params), params)
    assert ours == flops(adam.update, trainable, jax.eval_shape(adam.init, trainable), trainable)


def test_set_to_zero_and_freeze_match_optax_exactly():
    params = mixed_params()
    for ours, theirs in [(gx.set_to_zero(), optax.set_to_zero()), (gx.freeze(MASK), optax.freeze(MASK))]:
        a, _ = ours.update(params, ours.init(params))
        b, _ = theirs.update(params, theirs.init(params))
        jax.tree.map(np.testing.assert_array_equal, a, b)


# --------------------------------------------------------------------------- group hyperparameters


def test_param_group_multipliers_are_data_and_change_without_recompiling():
    params = mixed_params()
    labels = {"w": "decay", "kernel": "decay", "b": "no_decay", "s": "no_decay"}
    groups = {
        "decay": gx.param_group(gx.adamw, 0.01, weight_decay=0.1, lr_mult=2.0),
        "no_decay": gx.param_group(gx.adamw, 0.01, weight_decay=0.1, wd_mult=0.0),
    }
    tx = gx.partition(groups, labels)
    state = tx.init(params)
    hp = gx.hyperparams(state)
    assert float(hp["decay/lr_mult"]) == 2.0 and float(hp["no_decay/wd_mult"]) == 0.0

    traces = []

    @jax.jit
    def update(g, s, p):
        traces.append(1)
        return tx.update(g, s, p)

    # Group "decay" equals AdamW at lr 0.02 with decay 0.1; "no_decay" AdamW at 0.01 without decay.
    oracle = optax.partition(
        {"decay": optax.adamw(0.02, weight_decay=0.1), "no_decay": optax.adamw(0.01, weight_decay=0.0)}, labels
    )
    u, _ = update(params, state, params)
    v, _ = oracle.update(params, oracle.init(params), params)
    assert_trees_close(u, v)

    state = gx.set_hyperparams(state, **{"no_decay/wd_mult": 1.0, "decay/lr_mult": 1.0})
    u, _ = update(params, state, params)
    same = optax.adamw(0.01, weight_decay=0.1)
    v, _ = same.update(params, same.init(params), params)
    assert_trees_close(u, v)
    assert len(traces) == 1


def test_param_group_rejects_decay_for_an_optimizer_without_it():
    with pytest.raises(TypeError, match="has no weight_decay"):
        gx.param_group(gx.adam, 0.1, weight_decay=0.1)
