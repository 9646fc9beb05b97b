"""The classic optimizers agree with Optax's same-named ones over 100 steps.

Oracle: Optax. The objective couples every coordinate (see ``harness.coupled_loss``); the
learning rates keep each run in its transient, where a last-bit difference cannot be
amplified by sign changes around the minimum.
"""

import jax.numpy as jnp
import optax
import pytest

import gradxform as gx
from harness import assert_trees_close, mixed_params, run

CASES = [
    ("sgd", (0.02,), {}),
    ("sgd", (0.02,), dict(momentum=0.9)),
    ("sgd", (0.02,), dict(momentum=0.8, nesterov=True)),
    ("adagrad", (0.05,), {}),
    ("adagrad", (0.05,), dict(initial_accumulator_value=0.5, eps=1e-4)),
    ("rmsprop", (1e-3,), {}),
    ("rmsprop", (1e-3,), dict(centered=True, momentum=0.9)),
    ("rmsprop", (1e-3,), dict(decay=0.8, eps_in_sqrt=False, bias_correction=True, momentum=0.5, nesterov=True, initial_scale=0.1)),
    ("adadelta", (1.0,), {}),
    ("adadelta", (0.1,), dict(rho=0.8, eps=1e-4, weight_decay=0.1)),
    ("adam", (1e-3,), {}),
    ("adam", (1e-3,), dict(b1=0.5, b2=0.9, eps=1e-3, eps_root=1e-6, nesterov=True)),
    ("adamw", (1e-3,), {}),
    ("adamw", (1e-3,), dict(b1=0.8, weight_decay=0.1)),
    ("adamax", (1e-3,), {}),
    ("adamax", (1e-3,), dict(b1=0.7, b2=0.9, eps=1e-4)),
    ("adamaxw", (1e-3,), dict(weight_decay=0.1)),
    ("amsgrad", (1e-3,), {}),
    ("amsgrad", (1e-3,), dict(b2=0.9, eps_root=1e-8, bias_correction_mu=False, bias_correction_nu=False)),
    ("nadam", (1e-3,), {}),
    ("nadamw", (1e-3,), dict(weight_decay=0.05)),
    ("sign_sgd", (1e-3,), {}),
    ("signum", (1e-3,), dict(beta=0.8)),
    ("lion", (1e-3,), {}),
    ("lion", (1e-3,), dict(b1=0.8, b2=0.9, weight_decay=0.0)),
    # b1 > b2: our output comes from the new momentum with weights b1/b2 > 1 and 1 - b1/b2 < 0.
    ("lion", (1e-3,), dict(b1=0.95, b2=0.5, weight_decay=0.01)),
]
IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in kw.items()) or 'defaults'}" for n, _, kw in CASES]


@pytest.mark.parametrize("name,args,kwargs", CASES, ids=IDS)
@pytest.mark.parametrize("jit", [True, False], ids=["jit", "eager"])
def test_matches_optax(name, args, kwargs, jit):
    steps = 100 if jit else 25
    ours, _ = run(getattr(gx, name)(*args, **kwargs), steps, jit=jit)
    ref, _ = run(getattr(optax, name)(*args, **kwargs), steps, jit=True)
    assert_trees_close(ours, ref)


COMPLEX = ["sgd", "adam", "adamw", "rmsprop", "adagrad", "nadam", "amsgrad"]


@pytest.mark.parametrize("name", COMPLEX)
def test_complex64_matches_optax(name):
    params = mixed_params(jnp.complex64)
    ours = run(getattr(gx, name)(1e-3), 100, params=params)
    ref = run(getattr(optax, name)(1e-3), 100, params=params)
    assert ours[0]["w"].dtype == jnp.complex64
    assert_trees_close(ours[0], ref[0])
