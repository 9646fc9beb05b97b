"""``inject_hyperparams``: Optax's spelling of hyperparameters as data, for Optax's factories,
a user's and gradxform's own, checked against ``optax.inject_hyperparams``."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradxform as gx

PARAMS = {"w": jnp.array([[1.0, -2.0], [0.5, 3.0]]), "b": jnp.array([0.25, -0.75])}


def _grads(i):
    return {"w": jnp.array([[0.3 * i - 1.0, 2.0], [-0.5, 0.1 * i]]), "b": jnp.array([1.5 - 0.2 * i, -0.4])}


def _run(tx, steps=8, jit=True, change_at=4, new_lr=0.01):
    state = tx.init(PARAMS)
    update = jax.jit(tx.update) if jit else tx.update
    params, out = PARAMS, []
    for i in range(steps):
        if i == change_at:
            state.hyperparams["learning_rate"] = jnp.asarray(new_lr, jnp.float32)
        updates, state = update(_grads(i), state, params)
        params = optax.apply_updates(params, updates)
        out.append(params)
    return out, state


def _close(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        # eager steps round differently from jitted ones (no fused multiply-adds)
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6)


CASES = [
    ("optax-adam", lambda: gx.inject_hyperparams(optax.adam)(learning_rate=0.1)),
    ("gradxform-adam", lambda: gx.inject_hyperparams(gx.adam)(learning_rate=0.1)),
    ("optax-sgd-momentum", lambda: gx.inject_hyperparams(optax.sgd)(learning_rate=0.1, momentum=0.9)),
]


@pytest.mark.parametrize("jit", [True, False], ids=["jit", "eager"])
@pytest.mark.parametrize("name,make", CASES, ids=[n for n, _ in CASES])
def test_matches_optax_with_a_changed_learning_rate(name, make, jit):
    oracle_factory = optax.sgd if "sgd" in name else optax.adam
    kwargs = {"learning_rate": 0.1, **({"momentum": 0.9} if "sgd" in name else {})}
    want, _ = _run(optax.inject_hyperparams(oracle_factory)(**kwargs), jit=jit)
    got, state = _run(make(), jit=jit)
    _close(got, want)
    assert float(state.hyperparams["learning_rate"]) == pytest.approx(0.01)


@pytest.mark.parametrize("jit", [True, False], ids=["jit", "eager"])
@pytest.mark.parametrize("factory", ["adam", "sgd"])
def test_optax_inject_hyperparams_around_a_gradxform_factory(factory, jit):
    # Optax calls the factory again at every update with that step's values as arrays.
    # Kept in gradxform's own state, they were ignored after init (eager) and made the
    # traced update expect another state than init's (jit).
    kwargs = {"learning_rate": 0.1, **({"momentum": 0.9} if factory == "sgd" else {})}
    want, _ = _run(optax.inject_hyperparams(getattr(optax, factory))(**kwargs), jit=jit)
    got, state = _run(optax.inject_hyperparams(getattr(gx, factory))(**kwargs), jit=jit)
    _close(got, want)
    assert float(state.hyperparams["learning_rate"]) == pytest.approx(0.01)

    schedule = optax.linear_schedule(0.1, 0.0, 3)
    want, _ = _run(optax.inject_hyperparams(optax.sgd)(learning_rate=schedule), jit=jit, change_at=-1)
    got, _ = _run(optax.inject_hyperparams(gx.sgd)(learning_rate=schedule), jit=jit, change_at=-1)
    _close(got, want)


def test_a_jax_array_hyperparameter_is_used_as_given_and_says_so_when_set():
    # Numbers are kept in the state; an array is the caller's (Optax's inject_hyperparams
    # passes arrays), so set_hyperparams cannot find it and says why.
    kept, given = gx.adam(0.1), gx.adam(jnp.asarray(0.1, jnp.float32))
    params = PARAMS
    _close(given.update(_grads(0), given.init(params), params)[0], kept.update(_grads(0), kept.init(params), params)[0])
    assert "learning_rate" in gx.hyperparams(kept.init(params))
    with pytest.raises(KeyError, match="given to the optimizer as a JAX array"):
        gx.set_hyperparams(given.init(params), learning_rate=0.2)


def test_a_schedule_is_evaluated_every_step_as_in_optax():
    schedule = optax.linear_schedule(0.1, 0.01, 5)
    want, ostate = _run(optax.inject_hyperparams(optax.adam)(learning_rate=schedule), change_at=-1)
    got, gstate = _run(gx.inject_hyperparams(optax.adam)(learning_rate=schedule), change_at=-1)
    _close(got, want)
    assert float(gstate.hyperparams["learning_rate"]) == pytest.approx(float(ostate.hyperparams["learning_rate"]))


def test_changing_a_hyperparameter_does_not_recompile():
    tx = gx.inject_hyperparams(optax.adam)(learning_rate=0.1)
    update = jax.jit(tx.update)
    state = tx.init(PARAMS)
    _, state = update(_grads(0), state, PARAMS)
    state.hyperparams["learning_rate"] = jnp.asarray(0.5, jnp.float32)
    _, state = update(_grads(1), state, PARAMS)
    assert update._cache_size() == 1


def test_static_args_stay_python_values():
    def scaled(step: float, flip: bool = False) -> optax.GradientTransformation:
        if step > 1.0:  # a factory that branches on its argument needs it static
            step = 1.0
        return optax.scale(-step if flip else step)

    grads = {"b": jnp.ones(2)}
    traced = gx.inject_hyperparams(scaled)(step=2.0)
    with pytest.raises(jax.errors.TracerBoolConversionError):
        jax.jit(traced.update)(grads, traced.init(grads))
    tx = gx.inject_hyperparams(scaled, static_args="step")(step=2.0, flip=True)
    updates, state = jax.jit(tx.update)(grads, tx.init(grads))
    assert updates["b"].tolist() == [-1.0, -1.0] and state.hyperparams == {}


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"static_args \['lr'\] are not arguments of 'adam'"):
        gx.inject_hyperparams(optax.adam, static_args=("lr",))
    with pytest.raises(ValueError, match="hyperparameters in float32, got hyperparam_dtype"):
        gx.inject_hyperparams(optax.adam, hyperparam_dtype=jnp.bfloat16)
    with pytest.raises(TypeError, match="inner_factory must be a factory function"):
        gx.inject_hyperparams(0.1)
    with pytest.raises(TypeError, match=r"inject_hyperparams\(adam\): "):
        gx.inject_hyperparams(optax.adam)(rate=0.1)
