"""Optax's older optimistic Adam and its layer-wise DoG (``scale_by_distance_over_gradients``)
under their Optax names, against Optax as the oracle, jitted and op by op."""

import inspect
import warnings

import jax.numpy as jnp
import optax
import pytest

import gradxform as gx
from harness import assert_trees_close, mixed_params, run

JIT = [True, False]
JIT_IDS = ["jit", "eager"]
STEPS = 6


def optax_optimistic_adam(*args, **kwargs):
    with warnings.catch_warnings():  # Optax deprecates it in favour of optimistic_adam_v2
        warnings.simplefilter("ignore", DeprecationWarning)
        return optax.optimistic_adam(*args, **kwargs)


OPTIMISTIC = [
    ((0.02,), {}),
    ((0.02, 0.05), dict(b1=0.8, b2=0.99, eps=1e-6, nesterov=False)),
    ((0.01,), dict(optimism=0.0, eps_root=1e-8)),
]


@pytest.mark.parametrize("jit", JIT, ids=JIT_IDS)
@pytest.mark.parametrize("args, kwargs", OPTIMISTIC, ids=["defaults", "explicit_optimism", "no_optimism"])
def test_optimistic_adam_follows_optax(args, kwargs, jit):
    (got, _), (want, _) = run(gx.optimistic_adam(*args, **kwargs), STEPS, jit=jit), run(
        optax_optimistic_adam(*args, **kwargs), STEPS, jit=jit
    )
    assert_trees_close(got, want, atol=1e-5)


def test_optimistic_adam_is_optimistic_adam_v2_with_unit_learning_rate():
    (a, _), (b, _) = run(gx.optimistic_adam(0.02, 0.05), STEPS), run(gx.optimistic_adam_v2(1.0, alpha=0.02, beta=0.05), STEPS)
    assert_trees_close(a, b)


def test_optimistic_adam_accepts_a_schedule_where_optax_refuses_one():
    schedule = gx.schedules.linear_schedule(0.02, 0.0, 10)
    (got, _) = run(gx.optimistic_adam(schedule), 2)
    assert all(jnp.all(jnp.isfinite(x)) for x in got.values())


@pytest.mark.parametrize(
    "kwargs, match",
    [(dict(learning_rate=-0.1), "learning_rate"), (dict(learning_rate=0.1, b1=1.0), "b1"), (dict(learning_rate=0.1, eps=-1.0), "eps")],
    ids=["negative_lr", "b1_one", "negative_eps"],
)
def test_optimistic_adam_rejects_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        gx.optimistic_adam(**kwargs)


# A scalar leaf is left out: Optax's per-leaf step size has shape (1,) and would turn a
# scalar parameter into a vector (gradxform keeps each update in its parameter's shape).
def ldog_params():
    return {k: v for k, v in mixed_params().items() if k != "s"}


LDOG = [{}, dict(reps_rel=1e-4, eps=1e-6, global_scale=-1.0), dict(reps_rel=1e-2, param_dtype=jnp.bfloat16, global_scale=-0.5)]


@pytest.mark.parametrize("jit", JIT, ids=JIT_IDS)
@pytest.mark.parametrize("kwargs", LDOG, ids=["defaults", "descent", "bf16_init_params"])
def test_scale_by_distance_over_gradients_follows_optax(kwargs, jit):
    params = ldog_params()
    (got, got_state), (want, want_state) = (
        run(lib.scale_by_distance_over_gradients(**kwargs), STEPS, jit=jit, params=params) for lib in (gx, optax)
    )
    assert_trees_close(got, want, rtol=2e-5)
    inner = got_state.inner_state
    assert_trees_close(inner.max_dist, want_state.max_dist, rtol=2e-5)
    assert_trees_close(inner.grad_sum_of_squares, {k: v[0] for k, v in want_state.grad_sum_of_squares.items()}, rtol=2e-5)
    assert {x.dtype for x in inner.init_params.values()} == {jnp.dtype(kwargs.get("param_dtype", jnp.float32))}


def test_scale_by_distance_over_gradients_keeps_a_scalar_parameter_scalar():
    _, state = run(gx.scale_by_distance_over_gradients(global_scale=-1.0), 2)
    assert state.inner_state.max_dist["s"].shape == ()
    params, _ = run(gx.scale_by_distance_over_gradients(global_scale=-1.0), 2)
    assert params["s"].shape == ()


def test_scale_by_distance_over_gradients_rejects_bad_input():
    with pytest.raises(ValueError, match="reps_rel"):
        gx.scale_by_distance_over_gradients(reps_rel=0.0)
    with pytest.raises(ValueError, match="param_dtype"):
        gx.scale_by_distance_over_gradients(param_dtype=jnp.int32)
    tx = gx.scale_by_distance_over_gradients()
    with pytest.raises(ValueError, match="params"):
        tx.update(jnp.ones(2), tx.init(jnp.ones(2)))


@pytest.mark.parametrize("name", ["optimistic_adam", "scale_by_distance_over_gradients"])
def test_signature_is_optaxs(name):
    ours, theirs = inspect.signature(getattr(gx, name)), inspect.signature(getattr(optax, name))
    assert [(p.name, p.kind, p.default) for p in ours.parameters.values()] == [
        (p.name, p.kind, p.default) for p in theirs.parameters.values()
    ]
