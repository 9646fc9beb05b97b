"""Integer leaves: Optax's numbers where they are well defined, float32 state for integer
parameters, a clear error where an update would be truncated to an integer."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradxform as gx


def _params():
    return {"w": jnp.array([1.0, -2.0, 0.5], jnp.float32), "n": jnp.array([10, 20, 30], jnp.int32)}


FLOAT_GRADS = {"w": jnp.array([0.5, 1.0, -1.0], jnp.float32), "n": jnp.array([1.5, 2.0, -3.0], jnp.float32)}
INT_GRADS = {"w": jnp.array([0.5, 1.0, -1.0], jnp.float32), "n": jnp.array([1, 2, -3], jnp.int32)}


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_sgd_on_an_integer_parameter_with_float_gradients_matches_optax(jit):
    """Updates stay in the gradients' dtype (float); applying them casts to the parameter's
    dtype, as optax.apply_updates does."""
    params = _params()
    got_tx, want_tx = gx.sgd(0.1), optax.sgd(0.1)
    update = jax.jit(got_tx.update) if jit else got_tx.update
    got_u, _ = update(FLOAT_GRADS, got_tx.init(params), params)
    want_u, _ = want_tx.update(FLOAT_GRADS, want_tx.init(params), params)
    assert got_u["n"].dtype == want_u["n"].dtype == jnp.float32
    np.testing.assert_allclose(got_u["n"], want_u["n"], rtol=1e-6)
    got_p, want_p = gx.apply_updates(params, got_u), optax.apply_updates(params, want_u)
    assert got_p["n"].dtype == jnp.int32
    np.testing.assert_array_equal(got_p["n"], want_p["n"])


@pytest.mark.parametrize(
    "make,name",
    [
        (lambda: gx.sgd(0.1), "sgd"),
        (lambda: gx.sgd(1.5), "sgd"),
        (lambda: gx.sgd(0.1, momentum=0.9), "sgd"),
        (lambda: gx.adam(0.1), "adam"),
        (lambda: gx.clip_by_global_norm(1.0), "clip_by_global_norm"),
        (lambda: gx.scale(0.5), "scale"),
    ],
    ids=["sgd", "sgd-lr-1.5", "sgd-momentum", "adam", "clip_by_global_norm", "scale"],
)
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_integer_gradients_are_a_clear_error_naming_the_leaf(make, name, jit):
    """Integer gradients used to give integer updates: the learning rate was cast to the
    gradients' dtype (0.1 became 0, 1.5 became 1), so SGD silently left the parameter where
    it was, and clipping zeroed it. Optax returns float updates there, which gradxform's
    rule (updates in the gradients' dtype) cannot: the step now says so."""
    tx = make()
    params = _params()
    update = jax.jit(tx.update) if jit else tx.update
    with pytest.raises(ValueError, match=rf"^{name}: the gradient at n has the integer dtype int32, and the update computed for it is float32"):
        update(INT_GRADS, tx.init(params), params)


@pytest.mark.parametrize(
    "make,want",
    [
        (lambda: gx.masked(gx.adam(0.1), {"w": True, "n": False}), [1, 2, -3]),
        (lambda: gx.partition({"train": gx.adam(0.1), "frozen": gx.set_to_zero()}, {"w": "train", "n": "frozen"}), [0, 0, 0]),
        (lambda: gx.identity(), [1, 2, -3]),
    ],
    ids=["masked", "partition", "identity"],
)
def test_integer_leaves_kept_out_of_the_optimizer_pass(make, want):
    """The error's advice works: integer updates that stay integers are not an error."""
    tx = make()
    params = _params()
    updates, _ = jax.jit(tx.update)(INT_GRADS, tx.init(params), params)
    assert updates["n"].dtype == jnp.int32
    assert updates["n"].tolist() == want


@pytest.mark.parametrize(
    "make",
    [lambda m: m.sgd(0.1, momentum=0.9), lambda m: m.adam(0.1), lambda m: m.rmsprop(0.1), lambda m: m.lion(0.1)],
    ids=["sgd-momentum", "adam", "rmsprop", "lion"],
)
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_stateful_optimizer_on_an_integer_parameter_steps_as_on_its_float_copy(make, jit):
    """State shaped like an integer parameter is float32. Kept in the parameter's dtype,
    the momentum was truncated every step and Adam's moments gave NaN updates that cast to
    0. (Optax keeps Adam's second moment in int32, truncated to 0, and its momentum turns
    float32 after the first step, so its numbers are not the reference here: the reference
    is Optax on a float32 copy of the parameters.)"""
    params = _params()
    floats = {"w": params["w"], "n": params["n"].astype(jnp.float32)}
    got_tx, want_tx = make(gx), make(optax)
    got_s, want_s = got_tx.init(params), want_tx.init(floats)
    shaped_like_n = [x for x in jax.tree.leaves(got_s) if getattr(x, "shape", None) == (3,)]
    assert shaped_like_n and all(x.dtype == jnp.float32 for x in shaped_like_n)
    update = jax.jit(got_tx.update) if jit else got_tx.update
    for _ in range(4):
        got_u, got_s = update(FLOAT_GRADS, got_s, params)
        want_u, want_s = want_tx.update(FLOAT_GRADS, want_s, floats)
        np.testing.assert_allclose(got_u["n"], want_u["n"], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(got_u["w"], want_u["w"], rtol=1e-5, atol=1e-7)
    # and the structure does not change from step to step (no retracing in a jitted loop)
    assert jax.tree.structure(got_s) == jax.tree.structure(got_tx.init(params))
    assert [x.dtype for x in jax.tree.leaves(got_s)] == [x.dtype for x in jax.tree.leaves(got_tx.init(params))]


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_float0_gradients_are_a_clear_error_naming_the_leaf(jit):
    """jax.grad(..., allow_int=True) gives integer inputs a float0 gradient, on which no
    arithmetic is defined: the step names the leaf instead of failing deep inside."""
    params = _params()
    grads = jax.grad(lambda p: jnp.sum(p["w"] ** 2), allow_int=True)(params)
    assert grads["n"].dtype == jax.dtypes.float0
    tx = gx.adam(0.1)
    update = jax.jit(tx.update) if jit else tx.update
    with pytest.raises(ValueError, match=r"^adam: the gradient at n has dtype float0"):
        update(grads, tx.init(params), params)


def test_transformations_without_hyperparameters_check_gradients_too():
    """The checks live where every factory-built transformation is called, not only those
    that keep hyperparameters in their state."""
    params = _params()
    halve = gx.stateless(lambda u, p: jax.tree.map(lambda g: g * 0.5, u))
    with pytest.raises(ValueError, match=r"^stateless: the gradient at n has the integer dtype int32"):
        halve.update(INT_GRADS, halve.init(params), params)
    grads = jax.grad(lambda p: jnp.sum(p["w"] ** 2), allow_int=True)(params)
    with pytest.raises(ValueError, match=r"^stateless: the gradient at n has dtype float0"):
        halve.update(grads, halve.init(params), params)
