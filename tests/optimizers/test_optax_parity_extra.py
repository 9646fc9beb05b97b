"""Optax's remaining optimizers (second half of issue 3) agree with Optax over 100 steps.

Oracle: Optax (``optax`` and ``optax.contrib``). The objective couples every coordinate
(``harness.coupled_loss``); learning rates keep each run in its transient, where a last-bit
difference (XLA folds Optax's constant hyperparameters, ours are data) is not amplified.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradxform as gx
from harness import assert_trees_close, coupled_loss, mixed_params, run


def _optax(name):
    return getattr(optax, name, None) or getattr(optax.contrib, name)


CASES = [
    ("rprop", (1e-3,), {}),
    ("rprop", (1e-2,), dict(eta_minus=0.3, eta_plus=1.5, min_step_size=1e-4, max_step_size=0.05)),
    ("adopt", (1e-3,), {}),
    ("adopt", (1e-3,), dict(b1=0.8, b2=0.99, eps=1e-4, nesterov=True)),
    ("adopt", (1e-3,), dict(use_clipping=False)),
    ("ademamix", (1e-3,), {}),
    ("ademamix", (1e-3,), dict(b1=0.8, b2=0.9, b3=0.99, alpha=2.0, eps=1e-4, eps_root=1e-6, weight_decay=0.1)),
    # Prodigy's distance estimate grows geometrically at learning_rate=1 on this objective,
    # amplifying last-bit differences; 0.1 keeps every other default.
    ("prodigy", (0.1,), {}),
    (
        "prodigy",
        (0.5,),
        dict(betas=(0.8, 0.99), beta3=0.9, eps=1e-6, estim_lr0=1e-4, estim_lr_coef=0.5, weight_decay=0.01,
             safeguard_warmup=True),
    ),
]
IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in kw.items()) or 'defaults'}" for n, _, kw in CASES]


@pytest.mark.parametrize("name,args,kwargs", CASES, ids=IDS)
def test_matches_optax(name, args, kwargs):
    ours, _ = run(getattr(gx, name)(*args, **kwargs), 100)
    ref, _ = run(_optax(name)(*args, **kwargs), 100)
    assert_trees_close(ours, ref)


EAGER = [("rprop", (1e-3,), {})]


@pytest.mark.parametrize("name,args,kwargs", EAGER, ids=[n for n, _, _ in EAGER])
def test_eager_matches_optax(name, args, kwargs):
    ours, _ = run(getattr(gx, name)(*args, **kwargs), 3, jit=False)
    ref, _ = run(_optax(name)(*args, **kwargs), 3)
    assert_trees_close(ours, ref)


COMPLEX = [("ademamix", (1e-3,), {})]


@pytest.mark.parametrize("name,args,kwargs", COMPLEX, ids=[n for n, _, _ in COMPLEX])
def test_complex64_matches_optax(name, args, kwargs):
    params = mixed_params(jnp.complex64)
    ours, _ = run(getattr(gx, name)(*args, **kwargs), 100, params=params)
    ref, _ = run(_optax(name)(*args, **kwargs), 100, params=params)
    assert ours["w"].dtype == jnp.complex64
    assert_trees_close(ours, ref)


# --------------------------------------------------------------------------- with the loss


def interpolating_loss(p):
    """Non-separable, minimum 0 (at all ones): the setting Polyak's step (f_min=0) is made for."""
    x = jnp.concatenate([jnp.ravel(v) for v in jax.tree.leaves(p)]) - 1.0
    return 0.5 * jnp.sum(x * x) + 0.5 * jnp.sum(x) ** 2 / x.shape[0]


def run_with_value(tx, steps, loss, *, jit=True):
    """Like ``harness.run``, also passing ``value=loss(params)`` to every update."""
    value_and_grad = jax.jit(jax.value_and_grad(loss))

    def step(carry, _):
        p, s = carry
        value, g = value_and_grad(p)
        u, s = tx.update(g, s, p, value=value)
        return (gx.apply_updates(p, u), s), value

    carry = (mixed_params(), tx.init(mixed_params()))
    if jit:
        return jax.jit(lambda c: jax.lax.scan(step, c, None, length=steps))(carry)
    values = []
    for _ in range(steps):
        carry, v = step(carry, None)
        values.append(v)
    return carry, jnp.stack(values)


POLYAK = [
    ({}, interpolating_loss),
    (dict(max_learning_rate=0.1, scaling=0.5, f_min=-5.0, eps=1e-3, variant="sps+"), coupled_loss),
]


@pytest.mark.parametrize("kwargs,loss", POLYAK, ids=["defaults", "sps+-scaled"])
def test_polyak_sgd_matches_optax(kwargs, loss):
    (ours, _), values = run_with_value(gx.polyak_sgd(**kwargs), 100, loss)
    (ref, _), _ = run_with_value(optax.polyak_sgd(**kwargs), 100, loss)
    assert_trees_close(ours, ref)
    assert values[-1] < values[0]


def test_polyak_sgd_eager_matches_optax():
    (ours, _), _ = run_with_value(gx.polyak_sgd(), 3, interpolating_loss, jit=False)
    (ref, _), _ = run_with_value(optax.polyak_sgd(), 3, interpolating_loss)
    assert_trees_close(ours, ref)


def test_polyak_sgd_needs_value():
    tx = gx.polyak_sgd()
    with pytest.raises(ValueError, match="value=loss"):
        tx.update(jnp.ones(2), tx.init(jnp.zeros(2)), jnp.zeros(2))


@pytest.mark.parametrize(
    "factory,kwargs,match",
    [
        (gx.polyak_sgd, dict(variant="sps-"), "variant"),
        (gx.prodigy, dict(betas=(0.9, 1.5)), "betas"),
        (gx.rprop, dict(learning_rate=-1.0), "learning_rate"),
        (gx.adopt, dict(learning_rate=1e-3, b2=1.0), "b2"),
    ],
    ids=["polyak-variant", "prodigy-betas", "rprop-lr", "adopt-b2"],
)
def test_invalid_arguments_are_named(factory, kwargs, match):
    with pytest.raises(ValueError, match=match):
        factory(**kwargs)
