"""Properties every optimizer must have, checked for every entry of ``cases.CASES``.

Convergence on a quadratic bowl and on the Rosenbrock function (float32; complex64 on the
bowl where meaningful), one compilation for many steps, unknown keyword arguments ignored,
updates in the gradients' dtype, hyperparameters readable and changeable, and ``describe``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx
from cases import CASES
from harness import grad_fn

NAMES = sorted(CASES)
TARGET = jnp.array([1.0, -2.0, 0.5, 3.0])
CURVATURE = jnp.array([1.0, 2.0, 0.5, 1.5])


def bowl(p):
    d = p["x"] - TARGET.astype(p["x"].dtype)
    return jnp.sum(CURVATURE * jnp.real(d * jnp.conj(d)))


def rosenbrock(p):
    x, y = p["xy"][0], p["xy"][1]
    return (1 - x) ** 2 + 100 * (y - x**2) ** 2


def _extra(case, loss=None):
    """The extra update() arguments a case needs. ``"loss"``: the objective itself, passed
    as ``value_fn`` (the true ``value`` and ``grad`` are then added at every step)."""
    extra = {"value": jnp.float32(1.0)} if "value" in case.needs else {}
    if "loss" in case.needs:
        extra["value_fn"] = loss if loss is not None else _sum_of_squares
    return extra


def _sum_of_squares(p):
    return sum(jnp.sum(jnp.real(x * jnp.conj(x))) for x in jax.tree.leaves(p))


def _with_loss(extra, p, g):
    """Adds the true objective value and gradient at ``p`` when ``value_fn`` is passed."""
    if "value_fn" not in extra:
        return extra
    return {**extra, "value": extra["value_fn"](p), "grad": g}


def _minimize(tx, loss, params, steps, extra):
    grad = grad_fn(loss)

    def step(carry, _):
        p, s = carry
        g = grad(p)
        u, s = tx.update(g, s, p, **_with_loss(extra, p, g))
        return (gx.apply_updates(p, u), s), None

    (p, _), _ = jax.jit(lambda c: jax.lax.scan(step, c, None, length=steps))((params, tx.init(params)))
    return p


@pytest.mark.parametrize("name", NAMES)
def test_converges_on_quadratic(name):
    case = CASES[name]
    p = _minimize(case.make(case.quadratic_lr), bowl, {"x": jnp.zeros(4)}, 500, _extra(case, bowl))
    assert float(bowl(p)) < 1e-2 * float(bowl({"x": jnp.zeros(4)})), p


@pytest.mark.parametrize("name", [n for n in NAMES if CASES[n].complex_ok])
def test_converges_on_complex_quadratic(name):
    case = CASES[name]
    start = {"x": jnp.zeros(4, jnp.complex64)}
    p = _minimize(case.make(case.quadratic_lr), bowl, start, 500, _extra(case, bowl))
    assert p["x"].dtype == jnp.complex64
    assert float(bowl(p)) < 1e-2 * float(bowl(start))


@pytest.mark.parametrize("name", NAMES)
def test_converges_on_rosenbrock(name):
    case = CASES[name]
    start = {"xy": jnp.array([-1.0, 1.0])}
    p = _minimize(case.make(case.rosenbrock_lr), rosenbrock, start, case.steps, _extra(case, rosenbrock))
    assert float(rosenbrock(p)) < 0.1 * float(rosenbrock(start)), p


@pytest.mark.parametrize("name", NAMES)
def test_properties(name):
    """No recompilation, extras ignored, dtypes kept, hyperparameters data, describe."""
    case = CASES[name]
    tx = case.make(1e-3)
    extra = {**_extra(case), "unknown_extra_argument": 3}
    for dtype in (jnp.float32, jnp.bfloat16):
        params = {"w": jnp.ones((3, 2), dtype), "b": jnp.full((2,), 0.5, dtype)}
        grads = jax.tree.map(lambda x: x * 0.1, params)
        state = tx.init(params)
        traces = []

        @jax.jit
        def step(g, s, p):
            traces.append(1)
            return tx.update(g, s, p, **_with_loss(extra, p, g))

        updates, state = step(grads, state, params)
        assert all(u.dtype == dtype for u in jax.tree.leaves(updates)), (dtype, updates)
        hp = gx.hyperparams(state)
        assert hp and all(v.dtype == jnp.float32 for v in hp.values()), hp
        key = "learning_rate" if "learning_rate" in hp else sorted(hp)[0]
        state = gx.set_hyperparams(state, **{key: float(hp[key]) * 0.5})
        assert np.isclose(float(gx.hyperparams(state)[key]), float(hp[key]) * 0.5)
        updates, state = step(grads, state, params)
        updates, state = step(grads, state, params)
        assert len(traces) == 1, f"{name} retraced ({len(traces)} traces) with {dtype}"
        assert step._cache_size() == 1, f"{name} compiled {step._cache_size()} times with {dtype}"
    text = gx.describe(tx)
    assert text.splitlines()[0].startswith(tx.spec.name + "(")
