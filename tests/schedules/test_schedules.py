"""Schedules: agreement with Optax and with independently written formulas, jit with a
traced step, argument validation, hyperparameters as state data, configs and plots."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradxform as gx

S = gx.schedules

SGDR_CYCLES = [
    dict(init_value=0.1, peak_value=1.0, warmup_steps=5, decay_steps=20),
    dict(init_value=0.0, peak_value=0.5, warmup_steps=0, decay_steps=30, end_value=0.01, exponent=2.0),
]

# (id, gradxform schedule, optax schedule, steps where something changes)
OPTAX_CASES = [
    ("constant", S.constant_schedule(0.3), optax.constant_schedule(0.3), []),
    ("polynomial", S.polynomial_schedule(1.0, 0.01, 2, 100, 5), optax.polynomial_schedule(1.0, 0.01, 2, 100, 5), [5, 105]),
    ("linear", S.linear_schedule(1.0, 0.01, 100, 5), optax.linear_schedule(1.0, 0.01, 100, 5), [5, 105]),
    ("linear-no-transition", S.linear_schedule(1.0, 0.01, 0), optax.linear_schedule(1.0, 0.01, 0), [0]),
    (
        "exponential",
        S.exponential_decay(1.0, 7, 0.5, transition_begin=3, end_value=0.05),
        optax.exponential_decay(1.0, 7, 0.5, transition_begin=3, end_value=0.05),
        [3, 10, 17],
    ),
    (
        "exponential-staircase-growth",
        S.exponential_decay(1.0, 7, 1.5, transition_begin=3, staircase=True, end_value=4.0),
        optax.exponential_decay(1.0, 7, 1.5, transition_begin=3, staircase=True, end_value=4.0),
        [3, 10, 17, 24],
    ),
    ("cosine", S.cosine_decay_schedule(1.0, 50, alpha=0.1, exponent=2.0), optax.cosine_decay_schedule(1.0, 50, 0.1, 2.0), [50]),
    (
        "piecewise-constant",
        S.piecewise_constant_schedule(1.0, {10: 0.5, 30: 0.1, 20: 2.0}),
        optax.piecewise_constant_schedule(1.0, {10: 0.5, 30: 0.1, 20: 2.0}),
        [10, 20, 30],
    ),
    (
        "piecewise-linear",
        S.piecewise_interpolate_schedule("linear", 1.0, {10: 0.5, 30: 0.1, 20: 2.0}),
        optax.piecewise_interpolate_schedule("linear", 1.0, {10: 0.5, 30: 0.1, 20: 2.0}),
        [10, 20, 30],
    ),
    (
        "piecewise-cosine",
        S.piecewise_interpolate_schedule("cosine", 1.0, {0: 2.0, 10: 0.5, 30: 0.1}),
        optax.piecewise_interpolate_schedule("cosine", 1.0, {0: 2.0, 10: 0.5, 30: 0.1}),
        [0, 10, 30],
    ),
    (
        "warmup-cosine",
        S.warmup_cosine_decay_schedule(0.1, 1.0, 10, 60, end_value=0.05, exponent=1.5),
        optax.warmup_cosine_decay_schedule(0.1, 1.0, 10, 60, end_value=0.05, exponent=1.5),
        [10, 60],
    ),
    (
        "warmup-cosine-zero-peak",
        S.warmup_cosine_decay_schedule(0.1, 0.0, 10, 60),
        optax.warmup_cosine_decay_schedule(0.1, 0.0, 10, 60),
        [10, 60],
    ),
    (
        "warmup-exponential",
        S.warmup_exponential_decay_schedule(0.1, 1.0, 10, 5, 0.7, transition_begin=4, staircase=True, end_value=0.2),
        optax.warmup_exponential_decay_schedule(0.1, 1.0, 10, 5, 0.7, transition_begin=4, staircase=True, end_value=0.2),
        [10, 14, 19],
    ),
    ("warmup-constant", S.warmup_constant_schedule(0.1, 1.0, 10), optax.warmup_constant_schedule(0.1, 1.0, 10), [10]),
    ("sgdr", S.sgdr_schedule(SGDR_CYCLES), optax.sgdr_schedule(SGDR_CYCLES), [5, 20, 50]),
    ("linear-onecycle", S.linear_onecycle_schedule(100, 1.0), optax.linear_onecycle_schedule(100, 1.0), [30, 85, 100]),
    (
        "cosine-onecycle",
        S.cosine_onecycle_schedule(100, 1.0, 0.25, 10.0, 100.0),
        optax.cosine_onecycle_schedule(100, 1.0, 0.25, 10.0, 100.0),
        [25, 100],
    ),
    (
        "join",
        S.join_schedules([S.constant_schedule(0.5), S.linear_schedule(0.5, 1.0, 10), S.cosine_decay_schedule(1.0, 20)], [5, 15]),
        optax.join_schedules([optax.constant_schedule(0.5), optax.linear_schedule(0.5, 1.0, 10), optax.cosine_decay_schedule(1.0, 20)], [5, 15]),
        [5, 15, 35],
    ),
]


def _around(marks: list[int]) -> list[int]:
    return sorted({t for m in marks for t in (m - 1, m, m + 1) if t >= 0})


@pytest.mark.parametrize("name,ours,theirs,marks", OPTAX_CASES, ids=[c[0] for c in OPTAX_CASES])
def test_agrees_with_optax(name, ours, theirs, marks):
    steps = np.arange(0, 130)
    expected = np.array([np.asarray(theirs(int(t)), np.float64) for t in steps])
    jitted = np.asarray(jax.jit(jax.vmap(ours))(jnp.asarray(steps, jnp.int32)))
    np.testing.assert_allclose(jitted, expected, rtol=2e-6, atol=1e-7)
    for t in _around(marks):  # eager, at and beside every boundary
        np.testing.assert_allclose(float(ours(t)), expected[t], rtol=2e-6, atol=1e-7, err_msg=f"step {t}")


# Formulas written independently of the library, in plain Python.


def _inverse_time(t, init, rate, steps, staircase):
    p = t // steps if staircase else t / steps
    return init / (1 + rate * p)


def _step_decay(t, init, milestones, factor, steps_per_epoch):
    epoch = t // steps_per_epoch
    if isinstance(milestones, int):
        return init * factor ** (epoch // milestones)
    return init * factor ** sum(1 for m in milestones if epoch >= m)


def _triangle(t, up, down):
    """Position in the current cycle as a height in [0, 1], by walking the cycle."""
    t = t % (up + down)
    return t / up if t <= up else 1 - (t - up) / down


def _cyclic(t, low, high, up, down, mode, gamma):
    down = up if down is None else down
    cycle_index = t // (up + down)  # 0-based
    amplitude = high - low
    if mode == "triangular2":
        amplitude /= 2**cycle_index
    if mode == "exp_range":
        amplitude *= gamma**t
    return low + amplitude * _triangle(t, up, down)


def _multiplicative(t, init, factor_fn, num_steps):
    value = init
    for s in range(1, min(t, num_steps) + 1):
        value *= factor_fn(s)
    return value


FORMULA_CASES = [
    ("inverse-time", S.inverse_time_decay(0.5, 0.3), lambda t: _inverse_time(t, 0.5, 0.3, 1, False)),
    ("inverse-time-staircase", S.inverse_time_decay(0.5, 2.0, 10, True), lambda t: _inverse_time(t, 0.5, 2.0, 10, True)),
    ("step-decay-milestones", S.step_decay_schedule(1.0, [3, 7], 0.2, 10), lambda t: _step_decay(t, 1.0, [3, 7], 0.2, 10)),
    ("step-decay-period", S.step_decay_schedule(1.0, 4, 0.5, 3), lambda t: _step_decay(t, 1.0, 4, 0.5, 3)),
    ("cyclic-triangular", S.cyclic_schedule(0.1, 1.0, 10), lambda t: _cyclic(t, 0.1, 1.0, 10, None, "triangular", 1.0)),
    (
        "cyclic-triangular2-asymmetric",
        S.cyclic_schedule(0.1, 1.0, 4, 12, "triangular2"),
        lambda t: _cyclic(t, 0.1, 1.0, 4, 12, "triangular2", 1.0),
    ),
    (
        "cyclic-exp-range",
        S.cyclic_schedule(0.1, 1.0, 5, mode="exp_range", gamma=0.98),
        lambda t: _cyclic(t, 0.1, 1.0, 5, None, "exp_range", 0.98),
    ),
    ("multiplicative-constant", S.multiplicative_schedule(2.0, 0.95), lambda t: 2.0 * 0.95**t),
    (
        "multiplicative-function",
        S.multiplicative_schedule(2.0, lambda s: 0.9 if s % 3 == 0 else 1.01, num_steps=60),
        lambda t: _multiplicative(t, 2.0, lambda s: 0.9 if s % 3 == 0 else 1.01, 60),
    ),
]


@pytest.mark.parametrize("name,ours,formula", FORMULA_CASES, ids=[c[0] for c in FORMULA_CASES])
def test_new_schedules_match_their_formulas(name, ours, formula):
    steps = np.arange(0, 100)
    expected = np.array([formula(int(t)) for t in steps])
    np.testing.assert_allclose(np.asarray(jax.jit(jax.vmap(ours))(jnp.asarray(steps))), expected, rtol=3e-6, atol=1e-7)
    for t in (0, 1, 29, 30, 31, 99):
        np.testing.assert_allclose(float(ours(t)), expected[t], rtol=3e-6, atol=1e-7, err_msg=f"step {t}")


ALL = [(c[0], c[1]) for c in OPTAX_CASES] + [(c[0], c[1]) for c in FORMULA_CASES]


@pytest.mark.parametrize("name,schedule", ALL, ids=[c[0] for c in ALL])
def test_traced_step_under_jit(name, schedule):
    f = jax.jit(schedule)
    for t in (0, 17, 64):
        np.testing.assert_allclose(float(f(jnp.asarray(t, jnp.int32))), float(schedule(t)), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name,schedule", ALL, ids=[c[0] for c in ALL])
def test_rebuilt_from_type_name_and_plain_fields(name, schedule):
    def plain(value):
        if isinstance(value, gx.Schedule):
            return all(plain(getattr(value, f.name)) for f in dataclasses.fields(value))
        if isinstance(value, (list, tuple)):
            return all(plain(v) for v in value)
        if isinstance(value, dict):
            return all(isinstance(k, (int, str)) and plain(v) for k, v in value.items())
        return value is None or isinstance(value, (bool, int, float, str))

    assert plain(schedule)
    cls = S.SCHEDULE_TYPES[type(schedule).__name__]
    rebuilt = cls(**{f.name: getattr(schedule, f.name) for f in dataclasses.fields(schedule)})
    assert rebuilt == schedule
    assert repr(schedule).startswith(type(schedule).factory + "(")


INVALID = [
    ("polynomial-negative-steps", lambda: S.polynomial_schedule(1.0, 0.0, 1.0, -1), "transition_steps"),
    ("polynomial-float-begin", lambda: S.polynomial_schedule(1.0, 0.0, 1.0, 10, 2.5), "transition_begin"),
    ("linear-nan", lambda: S.linear_schedule(float("nan"), 0.0, 10), "init_value"),
    ("exponential-zero-steps", lambda: S.exponential_decay(1.0, 0, 0.5), "transition_steps"),
    ("exponential-negative-rate", lambda: S.exponential_decay(1.0, 10, -0.5), "decay_rate"),
    ("exponential-staircase-str", lambda: S.exponential_decay(1.0, 10, 0.5, staircase="yes"), "staircase"),
    ("cosine-zero-steps", lambda: S.cosine_decay_schedule(1.0, 0), "decay_steps"),
    ("piecewise-negative-scale", lambda: S.piecewise_constant_schedule(1.0, {10: -0.5}), "boundaries_and_scales"),
    ("piecewise-bad-type", lambda: S.piecewise_interpolate_schedule("cubic", 1.0, {10: 0.5}), "interpolate_type"),
    ("warmup-cosine-short", lambda: S.warmup_cosine_decay_schedule(0.0, 1.0, 10, 10), "decay_steps"),
    ("warmup-exponential-rate", lambda: S.warmup_exponential_decay_schedule(0.0, 1.0, 10, 5, 0.0), "decay_rate"),
    ("sgdr-empty", lambda: S.sgdr_schedule([]), "cosine_kwargs"),
    ("sgdr-bad-cycle", lambda: S.sgdr_schedule([dict(init_value=0.0, peak_value=1.0, warmup_steps=5, decay_steps=3)]), "cosine_kwargs\\[0\\]"),
    ("onecycle-pct-order", lambda: S.linear_onecycle_schedule(100, 1.0, pct_start=0.9, pct_final=0.5), "pct_start"),
    ("onecycle-div", lambda: S.cosine_onecycle_schedule(100, 1.0, div_factor=0.0), "div_factor"),
    ("join-lengths", lambda: S.join_schedules([S.constant_schedule(1.0)], [5]), "one more schedule"),
    ("join-not-callable", lambda: S.join_schedules([1.0, S.constant_schedule(1.0)], [5]), "schedules\\[0\\]"),
    ("inverse-time-negative", lambda: S.inverse_time_decay(1.0, -1.0), "decay_rate"),
    ("step-decay-unsorted", lambda: S.step_decay_schedule(1.0, [5, 3]), "milestones"),
    ("step-decay-factor", lambda: S.step_decay_schedule(1.0, [5], factor=-0.1), "factor"),
    ("cyclic-mode", lambda: S.cyclic_schedule(0.0, 1.0, mode="sawtooth"), "mode"),
    ("cyclic-gamma", lambda: S.cyclic_schedule(0.0, 1.0, mode="exp_range", gamma=1.5), "gamma"),
    ("cyclic-step-size", lambda: S.cyclic_schedule(0.0, 1.0, step_size_up=0), "step_size_up"),
    ("multiplicative-fn-no-steps", lambda: S.multiplicative_schedule(1.0, lambda t: 0.9), "num_steps"),
    ("multiplicative-negative", lambda: S.multiplicative_schedule(1.0, -0.9), "factor"),
    ("multiplicative-table-empty", lambda: S.multiplicative_schedule(1.0, []), "factor given as a list"),
    ("multiplicative-table-length", lambda: S.multiplicative_schedule(1.0, [0.5, 0.5], num_steps=3), "got 2 factors and num_steps=3"),
    ("multiplicative-table-zero", lambda: S.multiplicative_schedule(1.0, [0.5, 0.0]), r"factor\[1\] must be > 0"),
    ("stepwise-lengths", lambda: S.stepwise_schedule([1.0, 2.0], []), "one more entry"),
]


@pytest.mark.parametrize("name,make,match", INVALID, ids=[c[0] for c in INVALID])
def test_invalid_arguments_raise(name, make, match):
    with pytest.raises(ValueError, match=match):
        make()


# Changing a schedule's argument between jitted steps: a change of data, not of code.
SET_CASES = [
    ("warmup-cosine", S.warmup_cosine_decay_schedule(0.0, 1.0, 4, 40), "peak_value", 0.1),
    ("exponential", S.exponential_decay(1.0, 3, 0.5), "decay_rate", 0.9),
    ("cyclic", S.cyclic_schedule(0.1, 1.0, 3, mode="exp_range", gamma=0.99), "gamma", 0.5),
    ("onecycle", S.linear_onecycle_schedule(30, 1.0), "div_factor", 5.0),
    ("sgdr-second-cycle", S.sgdr_schedule(SGDR_CYCLES), "1.peak_value", 2.0),
    ("join-nested", S.join_schedules([S.constant_schedule(0.5), S.cosine_decay_schedule(1.0, 20)], [3]), "1.init_value", 3.0),
]


@pytest.mark.parametrize("name,schedule,arg,new", SET_CASES, ids=[c[0] for c in SET_CASES])
def test_set_schedule_argument_without_recompiling(name, schedule, arg, new):
    tx = gx.sgd(schedule)
    params = jnp.ones(3)
    traces = []

    @jax.jit
    def step(state):
        traces.append(None)
        return tx.update(jnp.ones(3), state, params)

    state = tx.init(params)
    changed = schedule.replace(**{arg: new})
    for t in range(60):
        if t == 20:
            state = gx.set_hyperparams(state, **{f"learning_rate.{arg}": new})
        updates, state = step(state)
        expected = (schedule if t < 20 else changed)(t)
        # the value used by this step is readable from the state, for logging
        np.testing.assert_allclose(float(gx.hyperparams(state)["learning_rate"]), float(expected), rtol=1e-5, atol=1e-8)
        np.testing.assert_allclose(np.asarray(updates), -float(expected) * np.ones(3), rtol=1e-5, atol=1e-8)
    assert len(traces) == 1
    assert float(gx.hyperparams(state, schedule_args=True)[f"learning_rate.{arg}"]) == pytest.approx(new)


def test_plot_draws_a_matplotlib_figure():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    schedules = {"cosine": S.cosine_decay_schedule(1.0, 50), "cyclic": S.cyclic_schedule(0.1, 1.0, 10), "python": lambda t: 1 / (1 + t)}
    fig = S.plot(schedules, 50, log_scale=True, title="policies")
    assert isinstance(fig, Figure)
    lines = fig.axes[0].lines
    assert [line.get_label() for line in lines] == list(schedules)
    np.testing.assert_allclose(lines[2].get_ydata(), [1 / (1 + t) for t in range(50)])
    np.testing.assert_allclose(lines[0].get_ydata()[[0, 25, 49]], [1.0, 0.5, 0.5 * (1 + math.cos(math.pi * 49 / 50))], rtol=1e-6)
    matplotlib.pyplot.close(fig)
    with pytest.raises(ValueError, match="num_steps"):
        S.plot(S.constant_schedule(1.0), 0)


def test_evaluate_falls_back_to_python_for_functions_that_do_not_trace():
    branching = lambda t: 1.0 if t < 3 else 0.5  # Python control flow on the step
    assert S.evaluate(branching, 5).tolist() == [1.0, 1.0, 1.0, 0.5, 0.5]


def test_plot_without_matplotlib_says_how_to_fix_it(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match="optional dependency"):
        S.plot(S.constant_schedule(1.0), 10)
