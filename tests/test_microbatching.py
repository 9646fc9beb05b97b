"""gx.microbatching against optax.microbatching: every function, every AccumulationType, jitted,
on small inputs; the signatures; clear errors."""

import dataclasses
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.microbatching as om
import pytest

import gradxform as gx
from harness import assert_trees_close

gm = gx.microbatching
KINDS = ["SUM", "MEAN", "RUNNING_MEAN", "CONCAT"]
RNG = np.random.default_rng(0)
X = jnp.asarray(RNG.normal(size=(8, 3)), jnp.float32)
Y = jnp.asarray(RNG.normal(size=(8,)), jnp.float32)
W = jnp.asarray(RNG.normal(size=(3,)), jnp.float32)


def _fun(w, x, *, y):
    """A per-slice output with a mixed-shape pytree: a row per example, a scalar, a matrix."""
    pred = x @ w
    return {"pred": pred - y, "loss": jnp.sum((pred - y) ** 2), "outer": x.T @ x}


def test_namespace_and_signatures_are_optaxs():
    for name in ["microbatch", "micro_vmap", "micro_grad", "reshape_batch_axis"]:
        theirs, ours = inspect.signature(getattr(om, name)), inspect.signature(getattr(gm, name))
        assert list(ours.parameters) == list(theirs.parameters), name
        for p in theirs.parameters.values():
            q = ours.parameters[p.name]
            assert q.kind == p.kind, (name, p.name)
            if isinstance(p.default, om.AccumulationType):
                assert q.default.name == p.default.name, (name, p.name)
            elif p.name not in ("transform_fn", "metrics_fn"):
                assert q.default == p.default, (name, p.name)
    assert [k.name for k in gm.AccumulationType] == [k.name for k in om.AccumulationType]
    assert [f.name for f in dataclasses.fields(gm.Accumulator)] == [f.name for f in dataclasses.fields(om.Accumulator)]
    assert gx.microbatch is gm.microbatch and hasattr(optax, "microbatch")


@pytest.mark.parametrize("axis", [0, 1], ids=["axis0", "axis1"])
def test_reshape_batch_axis(axis):
    tree = {"a": jnp.arange(24.0).reshape(4, 6), "b": jnp.arange(4 * 6).reshape(4, 6)}
    if axis == 0:
        tree = jax.tree.map(lambda x: x.T, tree)  # batch of 6 on axis 0
    ours = jax.jit(lambda t: gm.reshape_batch_axis(t, 2, axis))(tree)
    theirs = om.reshape_batch_axis(tree, 2, axis)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), ours, theirs)


def _accumulators(m, kind):
    # CONCAT concatenates along axis 0, so the scalar and matrix outputs are summed then.
    t = m.AccumulationType
    return {"pred": getattr(t, kind), "loss": t.SUM if kind == "CONCAT" else getattr(t, kind), "outer": t.SUM}


@pytest.mark.parametrize("kind", KINDS, ids=KINDS)
def test_microbatch_every_accumulation_type(kind):
    def run(m, n=None):
        f = m.microbatch(_fun, 1, 2, _accumulators(m, kind), argnames="y", num_real_microbatches=n)
        return f(W, X, y=Y)

    assert_trees_close(jax.jit(lambda: run(gm))(), jax.jit(lambda: run(om))(), rtol=1e-6, atol=1e-6)
    # A traced number of real microbatches (3 of 4): stops early without recompiling.
    ours = jax.jit(lambda n: run(gm, n))(jnp.asarray(3))
    theirs = jax.jit(lambda n: run(om, n))(jnp.asarray(3))
    assert_trees_close(ours, theirs, rtol=1e-6, atol=1e-6)


def test_microbatch_concat_equals_the_unbatched_function():
    f = gm.microbatch(lambda x: x * 2.0, argnums=0, microbatch_size=4, accumulator=gm.AccumulationType.CONCAT)
    np.testing.assert_array_equal(f(X), X * 2.0)


def test_microbatch_size_none_is_the_function_itself():
    assert gm.microbatch(_fun, 1, None) is _fun


@pytest.mark.parametrize("kind", KINDS, ids=KINDS)
def test_micro_vmap(kind):
    def run(m):
        f = m.micro_vmap(
            lambda w, x, y: jnp.sum((x @ w - y) ** 2),
            in_axes=(None, 0, 0),
            microbatch_size=4,
            accumulator=getattr(m.AccumulationType, kind),
        )
        return jax.jit(f)(W, X, Y)

    assert_trees_close(run(gm), run(om), rtol=1e-6, atol=1e-6)


def test_micro_vmap_default_is_vmap_with_keywords():
    f = lambda x, scale: x * scale  # noqa: E731
    ours = gm.micro_vmap(f, microbatch_size=2)(X[:, 0], scale=Y)
    theirs = om.micro_vmap(f, microbatch_size=2)(X[:, 0], scale=Y)
    np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(ours, jax.vmap(f)(X[:, 0], Y))


@pytest.mark.parametrize("kind", KINDS, ids=KINDS)
@pytest.mark.parametrize("keep", [True, False], ids=["keep_batch_dim", "no_batch_dim"])
def test_micro_grad(kind, keep):
    def loss(w, x, y):
        return 0.5 * jnp.mean((x @ w - y) ** 2), jnp.sum(x)

    def run(m):
        f = m.micro_grad(
            loss,
            has_aux=True,
            batch_argnums=(1, 2),
            keep_batch_dim=keep,
            microbatch_size=2,
            accumulator=getattr(m.AccumulationType, kind),
            transform_fn=lambda g: (g, g**2),
            metrics_fn=jnp.linalg.norm,
        )
        g, aux = jax.jit(f)(W, X, Y)
        return g, (aux.values, aux.metrics, aux.aux)

    assert_trees_close(run(gm), run(om), rtol=1e-5, atol=1e-6)


def test_custom_accumulator():
    biggest = gm.Accumulator(
        init=lambda s: jnp.full(s.shape, -jnp.inf, s.dtype),
        update=lambda c, x, i: jnp.maximum(c, x),
        finalize=lambda c: c,
        aggregate=lambda x: jnp.max(x, axis=0),
    )
    f = gm.micro_vmap(lambda x: x, microbatch_size=2, accumulator=biggest)
    np.testing.assert_array_equal(jax.jit(f)(X), jnp.max(X, axis=0))


def test_batch_size_not_divisible_names_both():
    f = gm.microbatch(lambda x: x, argnums=0, microbatch_size=3)
    with pytest.raises(ValueError, match=r"batch size 8.*microbatch_size=3"):
        f(X)
    with pytest.raises(ValueError, match=r"batch size 8.*microbatch_size=3"):
        gm.micro_vmap(lambda x: x, microbatch_size=3)(X)
    with pytest.raises(ValueError, match=r"batch size 8.*microbatch_size=3"):
        gm.reshape_batch_axis(X, 3)


def test_unequal_batch_sizes_are_named():
    f = gm.microbatch(lambda x, y: x, argnums=(0, 1), microbatch_size=2)
    with pytest.raises(ValueError, match=r"one batch size.*\[6, 8\]"):
        f(X, Y[:6])


@pytest.mark.parametrize("bad", [0, -2, 1.5], ids=["zero", "negative", "float"])
def test_bad_microbatch_size_is_named(bad):
    with pytest.raises(ValueError, match="microbatch_size"):
        gm.microbatch(lambda x: x, 0, bad)


def test_mean_of_integers_says_why():
    f = gm.microbatch(jnp.sum, 0, 2, gm.AccumulationType.MEAN)
    with pytest.raises(ValueError, match="floating-point"):
        f(jnp.arange(4))


def test_other_errors():
    with pytest.raises(ValueError, match="in_axes"):
        gm.microbatch(lambda x: x, argnums=(0, 1), microbatch_size=2, in_axes=(0,))
    with pytest.raises(ValueError, match="accumulator"):
        gm.microbatch(lambda x: x, 0, 2, accumulator="sum")(X)
    with pytest.raises(ValueError, match="num_real_microbatches=5"):
        gm.microbatch(lambda x: x, 0, 2, num_real_microbatches=5)(X)
    with pytest.raises(NotImplementedError, match="out_axes"):
        gm.micro_vmap(lambda x: x, out_axes=1)


@pytest.mark.parametrize("kind", ["SUM", "CONCAT"], ids=["SUM", "CONCAT"])
def test_negative_in_axes_is_the_same_batch_axis_as_its_positive_index(kind):
    # A batch axis counted from the end: each slice must take examples along that axis,
    # not along the axis next to it that the split inserts.
    f = lambda x: jnp.sum(x, axis=0)  # noqa: E731
    acc = getattr(gm.AccumulationType, kind)
    ours = gm.microbatch(f, 0, 2, acc, in_axes=-1)(X.T)
    np.testing.assert_allclose(ours, gm.microbatch(f, 0, 2, acc, in_axes=1)(X.T), rtol=1e-6)
    if kind == "CONCAT":
        np.testing.assert_allclose(ours, f(X.T), rtol=1e-6)
    np.testing.assert_allclose(gm.micro_vmap(jnp.sum, in_axes=-1, microbatch_size=2)(X.T), jnp.sum(X, axis=1), rtol=1e-6)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: gm.microbatch(jnp.sum, 0, 2)(jnp.float32(1.0)), r"in_axes=0 is out of range.*shape \(\)"),
        (lambda: gm.microbatch(jnp.sum, 0, 2, in_axes=2)(X), r"in_axes=2 is out of range.*shape \(8, 3\)"),
        (lambda: gm.microbatch(jnp.sum, 0, 2)(X[:0]), r"empty \(batch size 0\)"),
        (lambda: gm.micro_vmap(jnp.sum, microbatch_size=2)(X[:0]), r"empty \(batch size 0\)"),
        (lambda: gm.micro_grad(lambda w, x: jnp.sum(x @ w), batch_argnums=-1)(W, X), r"batch_argnums=-1"),
    ],
    ids=["scalar_leaf", "axis_out_of_range", "empty_batch", "micro_vmap_empty_batch", "negative_batch_argnums"],
)
def test_batches_that_cannot_be_split_say_why(call, match):
    with pytest.raises(ValueError, match=match):
        call()
