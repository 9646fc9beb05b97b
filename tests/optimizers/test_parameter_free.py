"""DoG, DoWG and COCOB agree with Optax contrib's same-named optimizers.

Oracle: ``optax.contrib``, 50 jitted steps (and a few eager ones) on a non-separable
objective over a matrix and a vector.
"""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.contrib
import optax.contrib._dog
import pytest

import gradxform as gx
from harness import assert_trees_close, coupled_loss, grad_fn, run



def _optax(name):
    """Optax's function; 0.2.8 defines ``scale_by_dog`` and ``scale_by_dowg`` without
    exporting them from ``optax.contrib``, so they are read from the module defining them."""
    return getattr(optax.contrib, name, None) or getattr(optax.contrib._dog, name)


NAMES = ["dog", "scale_by_dog", "dowg", "scale_by_dowg", "cocob", "scale_by_cocob"]

# (name, kwargs): defaults, then every other argument changed.
CASES = [
    ("dog", {}),
    ("dog", dict(learning_rate=0.5, init_step=("learning_rate", 0.05), eps=1e-6, weight_decay=0.01)),
    ("dog", dict(init_step=("distance", 0.1))),
    ("scale_by_dog", dict(init_step=("heuristic", 1e-3))),
    ("dowg", {}),
    ("dowg", dict(learning_rate=0.5, init_estim_sq_dist=0.5, eps=1e-3, weight_decay=0.01)),
    ("scale_by_dowg", dict(init_estim_sq_dist=1e-2)),
    ("cocob", {}),
    ("cocob", dict(learning_rate=0.5, alpha=10.0, eps=1e-6, weight_decay=0.01)),
    ("scale_by_cocob", dict(alpha=5.0)),
]
IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in kw.items()) or 'defaults'}" for n, kw in CASES]


def _params():
    rng = np.random.default_rng(0)
    return {
        "w": jnp.asarray(rng.normal(size=(4, 3)), jnp.float32),
        "b": jnp.asarray(rng.normal(size=(3,)), jnp.float32),
    }


def _pair(name, kwargs):
    ours, theirs = getattr(gx, name)(**kwargs), _optax(name)(**kwargs)
    if name.startswith("scale_by_") and name != "scale_by_cocob":
        # The scale_by_ stages keep the gradient's sign; descend with them.
        ours, theirs = gx.chain(ours, gx.scale(-1.0)), optax.chain(theirs, optax.scale(-1.0))
    return ours, theirs


def _run_both(ours, theirs, steps):
    """Both optimizers from the same start, in one compiled scan (one compilation, not two)."""
    grad = grad_fn(coupled_loss)

    def step(carry, _):
        out = []
        for tx, (p, s) in zip((ours, theirs), carry):
            u, s = tx.update(grad(p), s, p)
            out.append((gx.apply_updates(p, u), s))
        return tuple(out), None

    start = tuple((_params(), tx.init(_params())) for tx in (ours, theirs))
    ((got, _), (want, _)), _ = jax.jit(lambda c: jax.lax.scan(step, c, None, length=steps))(start)
    return got, want


@pytest.mark.parametrize("name,kwargs", CASES, ids=IDS)
def test_agrees_with_optax_jitted(name, kwargs):
    got, want = _run_both(*_pair(name, kwargs), 50)
    assert_trees_close(got, want, rtol=1e-4, atol=1e-5)
    # Far enough from the start that the tolerance above could not hide a wrong step.
    moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), got, _params())
    assert max(jax.tree.leaves(moved)) > 0.02, moved


@pytest.mark.parametrize("name", ["dog", "dowg", "cocob"])
def test_agrees_with_optax_eagerly(name):
    ours, theirs = _pair(name, dict(weight_decay=0.01))
    got, _ = run(ours, 3, jit=False, params=_params())
    want, _ = run(theirs, 3, jit=False, params=_params())
    assert_trees_close(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_takes_optaxs_arguments(name):
    theirs = inspect.signature(_optax(name)).parameters
    ours = inspect.signature(getattr(gx, name)).parameters
    assert list(ours) == list(theirs)
    for arg, p in theirs.items():
        assert ours[arg].default == p.default, (arg, ours[arg].default, p.default)


@pytest.mark.parametrize(
    "name,expected",
    [
        ("dog", {"learning_rate": 1.0, "eps": 1e-8}),
        ("dowg", {"learning_rate": 1.0, "eps": 1e-4}),
        ("cocob", {"learning_rate": 1.0, "alpha": 100.0, "eps": 1e-8, "weight_decay": 0.0}),
    ],
)
def test_hyperparameters_are_state_and_do_not_recompile(name, expected):
    tx = getattr(gx, name)()
    state = tx.init(_params())
    read = gx.hyperparams(state)
    assert set(read) == set(expected)
    for k, v in expected.items():
        assert read[k].dtype == jnp.float32 and float(read[k]) == pytest.approx(v)

    @jax.jit
    def step(p, s):
        u, s = tx.update(grad_fn(coupled_loss)(p), s, p)
        return gx.apply_updates(p, u), s

    p, state = step(_params(), state)
    p, state = step(p, state)
    p, state = step(p, gx.set_hyperparams(state, learning_rate=0.5))
    assert step._cache_size() == 1
    assert float(gx.hyperparams(state)["learning_rate"]) == 0.5


@pytest.mark.parametrize(
    "make,argument",
    [
        (lambda: gx.dog(eps=-1.0), "eps"),
        (lambda: gx.dog(learning_rate=-0.1), "learning_rate"),
        (lambda: gx.dog(init_step=("step", 1e-6)), "init_step"),
        (lambda: gx.dog(init_step=("distance", 0.0)), "init_step"),
        (lambda: gx.dog(init_step=1e-6), "init_step"),
        (lambda: gx.scale_by_dog(("heuristic", -1.0)), "init_step"),
        (lambda: gx.dowg(eps=0.0), "eps"),
        (lambda: gx.dowg(init_estim_sq_dist=-1.0), "init_estim_sq_dist"),
        (lambda: gx.dowg(weight_decay=-1.0), "weight_decay"),
        (lambda: gx.cocob(alpha=0.0), "alpha"),
        (lambda: gx.scale_by_cocob(eps=-1e-8), "eps"),
    ],
    ids=[
        "dog-eps", "dog-lr", "dog-tag", "dog-zero-distance", "dog-not-a-pair", "scale_by_dog-value",
        "dowg-eps", "dowg-init", "dowg-wd", "cocob-alpha", "scale_by_cocob-eps",
    ],
)
def test_bad_hyperparameter_is_named(make, argument):
    with pytest.raises(ValueError, match=argument):
        make()


@pytest.mark.parametrize("name", ["dog", "dowg", "cocob"])
def test_update_without_params_says_so(name):
    tx = getattr(gx, name)()
    state = tx.init(_params())
    with pytest.raises(ValueError, match="params"):
        tx.update(_params(), state)
