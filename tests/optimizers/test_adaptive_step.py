"""D-Adapt AdamW, MoMo and MoMo-Adam agree with Optax contrib's same-named optimizers.

Oracle: ``optax.contrib``, 50 jitted steps (and a few eager ones) on a non-separable
objective over a matrix and a vector, the loss passed as ``value=``.
"""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.contrib
import pytest

import gradxform as gx
from harness import assert_trees_close, coupled_loss

NAMES = ["dadapt_adamw", "momo", "momo_adam"]

# (name, kwargs): defaults, then every other argument changed.
CASES = [
    ("dadapt_adamw", {}),
    ("dadapt_adamw", dict(learning_rate=0.5, betas=(0.8, 0.99), eps=1e-6, estim_lr0=1e-3, weight_decay=0.1)),
    ("momo", {}),
    ("momo", dict(learning_rate=0.3, beta=0.8, lower_bound=-1.0, weight_decay=0.01)),
    ("momo", dict(lower_bound=-10.0, adapt_lower_bound=True, weight_decay=0.01)),
    ("momo_adam", {}),
    ("momo_adam", dict(learning_rate=0.1, b1=0.8, b2=0.99, eps=1e-6, lower_bound=-1.0, weight_decay=0.01)),
    ("momo_adam", dict(learning_rate=0.1, lower_bound=-10.0, adapt_lower_bound=True)),
]
IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in kw.items()) or 'defaults'}" for n, kw in CASES]


def _params():
    rng = np.random.default_rng(0)
    return {
        "w": jnp.asarray(rng.normal(size=(4, 3)), jnp.float32),
        "b": jnp.asarray(rng.normal(size=(3,)), jnp.float32),
    }


def _step(tx, p, s):
    value, grad = jax.value_and_grad(coupled_loss)(p)
    u, s = tx.update(grad, s, p, value=value)
    return gx.apply_updates(p, u), s


def _run_both(ours, theirs, steps):
    """Both optimizers from the same start, in one compiled scan (one compilation, not two)."""

    def step(carry, _):
        return tuple(_step(tx, p, s) for tx, (p, s) in zip((ours, theirs), carry)), None

    start = tuple((_params(), tx.init(_params())) for tx in (ours, theirs))
    ((got, _), (want, _)), _ = jax.jit(lambda c: jax.lax.scan(step, c, None, length=steps))(start)
    return got, want


@pytest.mark.parametrize("name,kwargs", CASES, ids=IDS)
def test_agrees_with_optax_jitted(name, kwargs):
    got, want = _run_both(getattr(gx, name)(**kwargs), getattr(optax.contrib, name)(**kwargs), 50)
    assert_trees_close(got, want, rtol=1e-4, atol=1e-5)
    # Far enough from the start that the tolerance above could not hide a wrong step.
    moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), got, _params())
    assert max(jax.tree.leaves(moved)) > 0.02, moved


# Binary fractions: gradxform keeps hyperparameters as float32 data, so ``1 - b1`` is
# computed from float32(0.9), Optax's from the double 0.9. MoMo-Adam's first step, capped at
# ``learning_rate / (1 - b1)``, magnifies that last-bit difference to ~1e-5; with exactly
# representable values both agree to the last bit, which is what this test pins down.
EXACT = {
    "dadapt_adamw": dict(betas=(0.5, 0.75), eps=2.0**-20),
    "momo": dict(beta=0.5),
    "momo_adam": dict(b1=0.5, b2=0.75, eps=2.0**-20),
}


@pytest.mark.parametrize("name", NAMES)
def test_agrees_with_optax_eagerly(name):
    kwargs = dict(EXACT[name], weight_decay=2.0**-7, learning_rate=gx.schedules.linear_schedule(1.0, 0.5, 4))
    ours = getattr(gx, name)(**kwargs)
    theirs = getattr(optax.contrib, name)(**dict(kwargs, learning_rate=optax.linear_schedule(1.0, 0.5, 4)))
    got, want = (_params(), ours.init(_params())), (_params(), theirs.init(_params()))
    for _ in range(3):
        got, want = _step(ours, *got), _step(theirs, *want)
    assert_trees_close(got[0], want[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", NAMES + ["DAdaptAdamWState", "MomoState", "MomoAdamState"])
def test_takes_optaxs_arguments(name):
    theirs, ours = getattr(optax.contrib, name), getattr(gx, name)
    if isinstance(theirs, type):
        assert ours._fields == theirs._fields
        return
    theirs, ours = inspect.signature(theirs).parameters, inspect.signature(ours).parameters
    assert list(ours) == list(theirs)
    for arg, p in theirs.items():
        assert ours[arg].default == p.default, (arg, ours[arg].default, p.default)


@pytest.mark.parametrize(
    "name,expected",
    [
        ("dadapt_adamw", {"learning_rate": 1.0, "eps": 1e-8, "estim_lr0": 1e-6, "weight_decay": 0.0}),
        ("momo", {"learning_rate": 1.0, "beta": 0.9, "lower_bound": 0.0, "weight_decay": 0.0}),
        (
            "momo_adam",
            {"learning_rate": 1e-2, "b1": 0.9, "b2": 0.999, "eps": 1e-8, "lower_bound": 0.0, "weight_decay": 0.0},
        ),
    ],
)
def test_hyperparameters_are_state_and_do_not_recompile(name, expected):
    tx = getattr(gx, name)()
    state = tx.init(_params())
    read = gx.hyperparams(state)
    assert set(read) == set(expected)
    for k, v in expected.items():
        assert read[k].dtype == jnp.float32 and float(read[k]) == pytest.approx(v)

    step = jax.jit(lambda p, s: _step(tx, p, s))
    p, state = step(_params(), state)
    p, state = step(p, state)
    p, state = step(p, gx.set_hyperparams(state, learning_rate=0.5))
    assert step._cache_size() == 1
    assert float(gx.hyperparams(state)["learning_rate"]) == 0.5


@pytest.mark.parametrize(
    "make,argument",
    [
        (lambda: gx.dadapt_adamw(learning_rate=-1.0), "learning_rate"),
        (lambda: gx.dadapt_adamw(betas=(0.9, 1.0)), "betas"),
        (lambda: gx.dadapt_adamw(betas=0.9), "betas"),
        (lambda: gx.dadapt_adamw(estim_lr0=0.0), "estim_lr0"),
        (lambda: gx.dadapt_adamw(eps=-1e-8), "eps"),
        (lambda: gx.momo(beta=1.0), "beta"),
        (lambda: gx.momo(weight_decay=-0.1), "weight_decay"),
        (lambda: gx.momo_adam(b2=1.5), "b2"),
        (lambda: gx.momo_adam(learning_rate=-0.1), "learning_rate"),
    ],
    ids=[
        "dadapt-lr", "dadapt-betas-range", "dadapt-betas-not-pair", "dadapt-estim_lr0", "dadapt-eps",
        "momo-beta", "momo-wd", "momo_adam-b2", "momo_adam-lr",
    ],
)
def test_bad_hyperparameter_is_named(make, argument):
    with pytest.raises(ValueError, match=argument):
        make()


@pytest.mark.parametrize("name", ["momo", "momo_adam"])
def test_update_without_value_says_so(name):
    tx = getattr(gx, name)()
    state = tx.init(_params())
    with pytest.raises(ValueError, match="value=loss"):
        tx.update(_params(), state, _params())


@pytest.mark.parametrize("name", ["momo", "momo_adam"])
@pytest.mark.parametrize("value, error", [("1.0", TypeError), (jnp.ones(3), ValueError)], ids=["string", "vector"])
def test_update_with_a_value_that_is_not_the_scalar_loss_says_so(name, value, error):
    tx = getattr(gx, name)()
    state = tx.init(_params())
    with pytest.raises(error, match=f"{name}: value must be a scalar"):
        tx.update(_params(), state, _params(), value=value)


@pytest.mark.parametrize("name", NAMES)
def test_update_without_params_says_so(name):
    tx = getattr(gx, name)()
    state = tx.init(_params())
    with pytest.raises(ValueError, match="params"):
        tx.update(_params(), state, value=1.0)
