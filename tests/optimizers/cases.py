"""Every public optimizer, with hyperparameters that converge on the test problems.

Each entry: name -> Case(make, quadratic_lr, rosenbrock_lr, steps). ``make(lr)`` builds the
optimizer; the matrix test (test_matrix.py) checks, for every entry, convergence on a
quadratic bowl and on Rosenbrock, no recompilation on the second step, extra keyword
arguments ignored, updates in the gradients' dtype (float32 and bfloat16), hyperparameters
readable and changeable, and ``describe``.

Engineers adding optimizers add entries in their own block below.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import gradxform as gx


@dataclasses.dataclass(frozen=True)
class Case:
    make: Callable[[float], Any]
    quadratic_lr: float
    rosenbrock_lr: float
    steps: int = 500  # scanned steps for the Rosenbrock run
    complex_ok: bool = True  # converges on the complex quadratic too
    needs: tuple[str, ...] = ()  # extra update() arguments the harness must pass, e.g. ("value",)
    # ("loss",): the true objective as value_fn=, with its value= and grad= at each step


CASES: dict[str, Case] = {}

# --- foundation (issue 2) -------------------------------------------------------------
CASES.update(
    {
        "sgd": Case(lambda lr: gx.sgd(lr), 0.1, 1e-3, 2000),
        "sgd-momentum": Case(lambda lr: gx.sgd(lr, momentum=0.9), 0.05, 5e-4, 1000),
        "sgd-nesterov": Case(lambda lr: gx.sgd(lr, momentum=0.9, nesterov=True), 0.05, 5e-4, 1000),
        "adagrad": Case(lambda lr: gx.adagrad(lr), 0.5, 0.5, 1000),
        "rmsprop": Case(lambda lr: gx.rmsprop(lr), 0.01, 1e-3, 2000),
        "rmsprop-centered-momentum": Case(lambda lr: gx.rmsprop(lr, centered=True, momentum=0.9), 0.005, 1e-4, 2000),
        "adadelta": Case(lambda lr: gx.adadelta(lr, rho=0.5), 2.0, 0.5, 2000),
        "adam": Case(lambda lr: gx.adam(lr), 0.05, 0.02, 1000),
        "adamw": Case(lambda lr: gx.adamw(lr, weight_decay=1e-4), 0.05, 0.02, 1000),
        "adamax": Case(lambda lr: gx.adamax(lr), 0.05, 0.02, 1000),
        "adamaxw": Case(lambda lr: gx.adamaxw(lr, weight_decay=1e-4), 0.05, 0.02, 1000),
        "amsgrad": Case(lambda lr: gx.amsgrad(lr), 0.05, 0.02, 1000),
        "nadam": Case(lambda lr: gx.nadam(lr), 0.05, 0.02, 1000),
        "nadamw": Case(lambda lr: gx.nadamw(lr, weight_decay=1e-4), 0.05, 0.02, 1000),
        "sign_sgd": Case(lambda lr: gx.sign_sgd(lr), 0.01, 1e-3, 2000),
        "signum": Case(lambda lr: gx.signum(lr), 0.01, 1e-3, 2000),
        "lion": Case(lambda lr: gx.lion(lr, weight_decay=0.0), 0.01, 1e-3, 2000),
    }
)

# --- Optax's remaining optimizers (issue 3) -------------------------------------------

# issue 3, first half: adabelief, yogi, radam, adan, novograd, lamb, lars, fromage, adafactor, sm3,
# noisy_sgd, optimistic_gradient_descent, optimistic_adam_v2
CASES.update(
    {
        "adabelief": Case(lambda lr: gx.adabelief(lr), 0.05, 0.02, 1000),
        "yogi": Case(lambda lr: gx.yogi(lr), 0.05, 0.02, 1000),
        "radam": Case(lambda lr: gx.radam(lr), 0.05, 0.005, 1000),
        "adan": Case(lambda lr: gx.adan(lr), 0.05, 0.02, 1000),
        "novograd": Case(lambda lr: gx.novograd(lr), 0.02, 1e-3, 2000),
        "lamb": Case(lambda lr: gx.lamb(lr), 0.05, 0.02, 2000),
        "lars": Case(lambda lr: gx.lars(lr, trust_coefficient=0.1), 0.5, 0.05, 2000),
        "fromage": Case(lambda lr: gx.fromage(lr), 0.05, 0.01, 2000),
        "adafactor": Case(lambda lr: gx.adafactor(lr, multiply_by_parameter_scale=False), 0.05, 0.01, 1000),
        "sm3": Case(lambda lr: gx.sm3(lr), 0.5, 0.5, 1000, complex_ok=False),
        "noisy_sgd": Case(lambda lr: gx.noisy_sgd(lr, key=0), 0.1, 1e-3, 2000),
        "optimistic_gradient_descent": Case(lambda lr: gx.optimistic_gradient_descent(lr), 0.05, 1e-3, 2000),
        "optimistic_adam_v2": Case(lambda lr: gx.optimistic_adam_v2(lr), 0.02, 0.01, 1000),
    }
)

# issue 3, second half: rprop, polyak_sgd, lbfgs, and Optax contrib's muon, schedule_free, adopt, ademamix, prodigy
CASES.update(
    {
        "rprop": Case(lambda lr: gx.rprop(lr), 0.1, 1e-3, 1000, complex_ok=False),
        "polyak_sgd": Case(lambda lr: gx.polyak_sgd(max_learning_rate=lr), 1.0, 1.0, 1000, complex_ok=False, needs=("loss",)),
        "adopt": Case(lambda lr: gx.adopt(lr), 0.05, 0.02, 1000, complex_ok=False),
        "ademamix": Case(lambda lr: gx.ademamix(lr, b3=0.999), 0.05, 0.02, 1000),
        "prodigy": Case(lambda lr: gx.prodigy(lr), 1.0, 1.0, 1000, complex_ok=False),
        "lbfgs": Case(lambda lr: gx.lbfgs(learning_rate=lr), 1.0, 1.0, 100, complex_ok=False, needs=("loss",)),
        "schedule_free_sgd": Case(lambda lr: gx.schedule_free_sgd(lr), 0.1, 1e-3, 2000),
        "schedule_free_adamw": Case(lambda lr: gx.schedule_free_adamw(lr), 0.05, 0.02, 1000, complex_ok=False),
        "muon": Case(lambda lr: gx.muon(lr), 0.05, 0.02, 1000),
    }
)

# --- optimizers Optax lacks (issue 3) --------------------------------------------------
CASES.update(
    {
        "ftrl": Case(lambda lr: gx.ftrl(lr, l1=1e-3, l2=1e-3), 1.0, 0.5, 1000),
        "ftml": Case(lambda lr: gx.ftml(lr), 0.05, 0.02, 1000),
        "dcasgd": Case(lambda lr: gx.dcasgd(lr, momentum=0.9), 0.05, 5e-4, 1000),
        # a low temperature: the iterates then concentrate near the minimum (at temperature
        # 1 they would sample exp(-loss), whose mean loss is far above the convergence bar)
        "sgld": Case(lambda lr: gx.sgld(lr, temperature=1e-6, gamma=0.1), 0.1, 3e-3, 3000),
        "asgd": Case(lambda lr: gx.asgd(lr, t0=100.0), 0.1, 1e-3, 2000),
        "lbsgd": Case(lambda lr: gx.lbsgd(lr, warmup_epochs=2, updates_per_epoch=10, batch_scale=2.0), 0.05, 5e-4, 2000),
        "proximal_gradient": Case(lambda lr: gx.proximal_gradient(lr, l1=1e-4, l2=1e-4), 0.1, 1e-3, 2000),
        "proximal_adagrad": Case(lambda lr: gx.proximal_adagrad(lr, l1=1e-4), 0.5, 0.5, 1000),
        # projections are onto sets of real arrays: no complex runs
        "projected-box": Case(lambda lr: gx.projected(gx.adam(lr), "box", lower=-5.0, upper=5.0), 0.05, 0.02, 1000, complex_ok=False),
    }
)
