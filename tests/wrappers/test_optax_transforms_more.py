"""Optax's remaining small transforms under their Optax names, against Optax as the oracle:
per_example_layer_norm_clip, unitwise_clip and selective_transform. Each runs jitted and op
by op on a mixed-shape tree (per-example ones with a batch axis); each bad argument raises
an error naming it."""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradxform as gx
from harness import assert_trees_close, mixed_params, run

JIT = [True, False]
JIT_IDS = ["jit", "eager"]
BATCH = 4


def per_example_grads() -> dict[str, jax.Array]:
    """A batch of per-example gradients: the mixed-shape tree with a leading batch axis, one
    example all zeros (its norm is 0, which the clip must not turn into NaN)."""
    rng = np.random.default_rng(1)
    out = {}
    for name, x in mixed_params().items():
        g = rng.normal(size=(BATCH, *x.shape)) * np.array([0.0, 0.1, 1.0, 5.0]).reshape((BATCH,) + (1,) * x.ndim)
        out[name] = jnp.asarray(g, jnp.float32)
    return out


# ------------------------------------------------------------------ per_example_layer_norm_clip


@pytest.mark.parametrize("jit", JIT, ids=JIT_IDS)
@pytest.mark.parametrize("uniform", [True, False], ids=["uniform", "by_size"])
@pytest.mark.parametrize("clip", [0.0, 0.5, 3.0, float("inf")], ids=["zero", "small", "medium", "inf"])
def test_per_example_layer_norm_clip_follows_optax(clip, uniform, jit):
    grads = per_example_grads()

    def call(lib):
        fn = lambda g: lib.per_example_layer_norm_clip(g, clip, uniform)
        return (jax.jit(fn) if jit else fn)(grads)

    (got_sums, got_counts), (want_sums, want_counts) = call(gx), call(optax)
    assert_trees_close(got_sums, want_sums)
    assert jax.tree.map(int, got_counts) == jax.tree.map(int, want_counts)


def test_per_example_layer_norm_clip_bounds_each_example_by_the_global_norm():
    grads = per_example_grads()
    for uniform in (True, False):
        clipped = [
            gx.per_example_layer_norm_clip(jax.tree.map(lambda g: g[i : i + 1], grads), 2.0, uniform)[0]
            for i in range(BATCH)
        ]
        assert all(float(gx.global_norm(c)) <= 2.0 + 1e-5 for c in clipped)


def test_per_example_layer_norm_clip_of_one_leaf_is_the_global_clip():
    g = per_example_grads()["w"]
    got = gx.per_example_layer_norm_clip([g], 1.5)
    want = gx.per_example_global_norm_clip([g], 1.5)
    np.testing.assert_allclose(got[0][0], want[0][0], rtol=1e-6)
    assert int(got[1][0]) == int(want[1])


@pytest.mark.parametrize(
    "grads, clip, uniform, match",
    [
        ({"a": jnp.ones((2, 3)), "b": jnp.ones((3, 3))}, 1.0, True, "batch"),
        ({"a": jnp.ones((2, 3))}, -1.0, True, "global_l2_norm_clip"),
        ({"a": jnp.ones((2, 3))}, "1.0", True, "global_l2_norm_clip"),
        ({"a": jnp.ones((2, 3))}, 1.0, "yes", "uniform"),
    ],
    ids=["batch_sizes_differ", "negative_clip", "string_clip", "uniform_not_bool"],
)
def test_per_example_layer_norm_clip_rejects_bad_input(grads, clip, uniform, match):
    with pytest.raises(ValueError, match=match):
        gx.per_example_layer_norm_clip(grads, clip, uniform)


# ------------------------------------------------------------------------------ unitwise_clip


@pytest.mark.parametrize("jit", JIT, ids=JIT_IDS)
def test_unitwise_clip_follows_optax(jit):
    grads, params = per_example_grads(), mixed_params()
    for name in ("w", "kernel", "b"):
        g = grads[name][3]
        g_norm = gx.unitwise_norm(g)
        max_norm = 0.5 * jnp.maximum(gx.unitwise_norm(params[name]), 1e-3)
        fn = lambda lib: (jax.jit(lib.unitwise_clip) if jit else lib.unitwise_clip)(g_norm, max_norm, g)
        np.testing.assert_allclose(fn(gx), fn(optax.transforms), rtol=1e-6, err_msg=name)


def test_adaptive_grad_clip_still_follows_optax_through_unitwise_clip():
    params = {k: v for k, v in mixed_params().items() if k in ("w", "b")}
    got, _ = run(gx.chain(gx.adaptive_grad_clip(0.05), gx.sgd(0.1)), 5, params=params)
    want, _ = run(optax.chain(optax.adaptive_grad_clip(0.05), optax.sgd(0.1)), 5, params=params)
    assert_trees_close(got, want)


def test_unitwise_clip_rejects_mismatched_shapes_and_bad_div_eps():
    with pytest.raises(ValueError, match="same shape"):
        gx.unitwise_clip(jnp.ones(3), jnp.ones(3), jnp.ones((3, 1)))
    with pytest.raises(ValueError, match="div_eps"):
        gx.unitwise_clip(jnp.ones(3), jnp.ones(3), jnp.ones(3), div_eps=0.0)


# ------------------------------------------------------------------------ selective_transform

MASKS = {
    "tree": {"w": True, "kernel": False, "b": True, "s": False},
    "all": True,
    "none": False,
}


@pytest.mark.parametrize("jit", JIT, ids=JIT_IDS)
@pytest.mark.parametrize("mask", list(MASKS), ids=list(MASKS))
def test_selective_transform_follows_optax(mask, jit):
    make = lambda lib: lib.selective_transform(lib.adam(0.05), freeze_mask=MASKS[mask])
    (got, _), (want, _) = run(make(gx), 5, jit=jit), run(make(optax), 5, jit=jit)
    assert_trees_close(got, want, atol=1e-5)  # float32 rounding of five Adam steps near 0
    if mask == "tree":
        start = mixed_params()
        assert all(np.array_equal(got[k], start[k]) for k in ("w", "b"))


def test_selective_transform_takes_a_function_and_keeps_no_state_for_frozen_parameters():
    by_fn = gx.selective_transform(gx.adam(0.05), freeze_mask=lambda p: {k: k in ("w", "b") for k in p})
    by_tree = gx.selective_transform(gx.adam(0.05), freeze_mask=MASKS["tree"])
    (p1, s1), (p2, _) = run(by_fn, 3), run(by_tree, 3)
    assert_trees_close(p1, p2)
    adam_leaves = jax.tree.leaves(s1.inner_state["train"])
    assert {x.shape for x in adam_leaves} >= {(2, 2, 3, 2), ()} and (4, 3) not in {x.shape for x in adam_leaves}


def test_selective_transform_rejects_bad_arguments():
    with pytest.raises(ValueError, match="freeze_mask"):
        gx.selective_transform(gx.sgd(0.1), freeze_mask={"w": "frozen"})
    with pytest.raises(TypeError, match="optimizer"):
        gx.selective_transform(optax.adam, freeze_mask=True)
    with pytest.raises(TypeError):
        gx.selective_transform(gx.sgd(0.1), True)  # keyword-only, as in Optax


# -------------------------------------------------------------------------------- signatures


@pytest.mark.parametrize("name", ["per_example_layer_norm_clip", "selective_transform"])
def test_signature_is_optaxs(name):
    ours, theirs = inspect.signature(getattr(gx, name)), inspect.signature(getattr(optax, name))
    assert [(p.name, p.kind, p.default) for p in ours.parameters.values()] == [
        (p.name, p.kind, p.default) for p in theirs.parameters.values()
    ]


def test_unitwise_clip_signature_is_optax_transforms():
    ours, theirs = inspect.signature(gx.unitwise_clip), inspect.signature(optax.transforms.unitwise_clip)
    assert [(p.name, p.default) for p in ours.parameters.values()] == [(p.name, p.default) for p in theirs.parameters.values()]


# ---------------------------------------------------------------- inject_stateful_hyperparams


class LossHalving:
    """A stateful schedule: a value that halves at every step whose ``loss`` exceeds 1."""

    def init(self):
        return {"value": jnp.asarray(0.05, jnp.float32)}

    def update(self, state, loss=0.0, **extra):
        return {"value": jnp.where(loss > 1.0, state["value"] / 2, state["value"])}

    def __call__(self, state, **extra):
        return state["value"]


def run_with_loss(tx, steps, jit):
    params = mixed_params()
    state = tx.init(params)
    step = jax.jit(tx.update) if jit else tx.update
    for i in range(steps):
        loss = jnp.float32(2.0 if i % 2 == 0 else 0.5)
        updates, state = step(jax.tree.map(jnp.ones_like, params), state, params, loss=loss)
        params = optax.apply_updates(params, updates)
    return params, state


@pytest.mark.parametrize("jit", JIT, ids=JIT_IDS)
def test_inject_stateful_hyperparams_follows_optax(jit):
    schedule = lambda count: 0.9 - 0.01 * count
    make = lambda lib: lib.inject_stateful_hyperparams(lib.adam)(learning_rate=LossHalving(), b1=schedule, b2=0.99)
    with pytest.warns(DeprecationWarning):
        theirs = make(optax)
    (got, got_state), (want, want_state) = run_with_loss(make(gx), 5, jit), run_with_loss(theirs, 5, jit)
    assert_trees_close(got, want, atol=1e-5)
    assert isinstance(got_state, gx.InjectStatefulHyperparamsState)
    for key in ("learning_rate", "b1", "b2"):
        np.testing.assert_allclose(got_state.hyperparams[key], want_state.hyperparams[key], rtol=1e-6)
    assert float(got_state.hyperparams_states["learning_rate"]["value"]) == pytest.approx(0.05 / 8)


def test_inject_stateful_hyperparams_constants_can_be_changed_between_steps():
    tx = gx.inject_stateful_hyperparams(gx.sgd)(learning_rate=LossHalving(), momentum=0.0)
    state = tx.init(jnp.zeros(2))
    state.hyperparams["momentum"] = jnp.asarray(0.5)
    _, state = tx.update(jnp.ones(2), state, loss=0.0)
    assert float(state.hyperparams["momentum"]) == 0.5


def test_inject_stateful_hyperparams_without_a_stateful_schedule_is_inject_hyperparams():
    tx = gx.inject_stateful_hyperparams(optax.sgd)(learning_rate=0.1)
    state = tx.init(jnp.zeros(2))
    assert isinstance(state, gx.HyperparamsState)
    assert tx.update(jnp.ones(2), state)[0].tolist() == pytest.approx([-0.1, -0.1])


def test_inject_stateful_hyperparams_rejects_bad_arguments():
    with pytest.raises(ValueError, match="static_args"):
        gx.inject_stateful_hyperparams(gx.sgd, static_args="lr")
    with pytest.raises(ValueError, match="hyperparam_dtype"):
        gx.inject_stateful_hyperparams(gx.sgd, hyperparam_dtype=jnp.float16)

    class Broken(LossHalving):
        def __call__(self, state, **extra):
            raise RuntimeError("no value")

    with pytest.raises(TypeError, match="learning_rate|first value"):
        gx.inject_stateful_hyperparams(gx.sgd)(learning_rate=Broken())


def test_inject_stateful_hyperparams_signature_is_optaxs():
    ours, theirs = inspect.signature(gx.inject_stateful_hyperparams), inspect.signature(optax.inject_stateful_hyperparams)
    assert [(p.name, p.default) for p in ours.parameters.values()] == [(p.name, p.default) for p in theirs.parameters.values()]
