"""`gx.update_and_apply`'s generic path: any elementwise step as interpreter programs.

The oracle is always the same step run as ``tx.update`` followed by ``gx.apply_updates``
(the composition the programs are cut from), and Optax for Optax's optimizers. Which path
ran is read from the compiled program: the interpreter is the custom call
``gradxform_program_step``.
"""

import functools
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradxform as gx
from harness import assert_trees_close
from stepping import TEST_SIZES
from stepping import compiled as _compiled
from stepping import fused_step as _fused
from stepping import grads as _grads
from stepping import plain_step as _plain
from stepping import tree as _tree

PROGRAM = "gradxform_program_step"

# Leaf sizes that cross the interpreter's 512-element blocks (1300), a matrix, a one-element
# leaf and a 0-d leaf (which XLA keeps: it has no arrays to fuse).
SIZES = [(1300,), (24, 5), (1,), ()]


def _assert_identical(a, b):
    def array(x):
        return np.asarray(jax.random.key_data(x) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x)

    jax.tree.map(lambda x, y: np.testing.assert_array_equal(array(x), array(y)), a, b)


def _run(step, tx, params, steps):
    params = jax.tree.map(jnp.copy, params)  # the step may donate them
    state = tx.init(params)
    for t in range(steps):
        params, state = step(params, state, _grads(params, t))
    return params, state


# Steps where no operation can move an element across a sign boundary agree to rounding;
# sign-based updates (Lion, Signum, ADOPT's clipping, Adan) may flip an element whose
# momentum is within an ulp of zero, which moves it by one learning rate.
OPTIMIZERS = {
    "radam": (lambda: gx.radam(1e-2), 1e-5),
    "yogi": (lambda: gx.yogi(1e-2), 1e-5),
    "adabelief": (lambda: gx.adabelief(1e-2), 1e-5),
    "amsgrad": (lambda: gx.amsgrad(1e-2), 1e-5),
    "adamax": (lambda: gx.adamax(1e-2), 1e-5),
    "nadam": (lambda: gx.nadam(1e-2), 1e-5),
    "rmsprop-centered-momentum": (lambda: gx.rmsprop(1e-2, centered=True, momentum=0.9), 1e-5),
    "adagrad": (lambda: gx.adagrad(1e-2), 1e-5),
    "adadelta": (lambda: gx.adadelta(1.0), 1e-5),
    "sgd": (lambda: gx.sgd(1e-2), 1e-6),
    "adamw-mask": (lambda: gx.adamw(1e-2, mask=lambda p: jax.tree.map(lambda x: x.ndim > 1, p)), 1e-5),
    "adam-clip": (lambda: gx.chain(gx.clip_by_global_norm(1.0), gx.adam(1e-2)), 1e-5),
    "fromage": (lambda: gx.fromage(1e-2), 1e-5),
    "lamb": (lambda: gx.lamb(1e-2), 1e-5),
    "prodigy": (lambda: gx.prodigy(), 1e-4),
    "scale_by_sm3": (lambda: gx.chain(gx.scale_by_sm3(), gx.scale(-1e-2)), 1e-5),  # gx.sm3 has its own kernel
    "ftrl": (lambda: gx.ftrl(1e-2), 1e-5),
    "schedule_free_adamw": (lambda: gx.schedule_free_adamw(1e-2), 1e-5),
    "optimistic_gradient_descent": (lambda: gx.optimistic_gradient_descent(1e-2), 1e-5),
    "rprop": (lambda: gx.rprop(1e-2), 1e-5),
    "lion": (lambda: gx.lion(1e-3), 1e-2),
    "adopt": (lambda: gx.adopt(1e-3), 1e-2),
}


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_programs_match_the_composition_over_many_steps(name):
    make, rtol = OPTIMIZERS[name]
    tx = make()
    params = _tree(SIZES)
    assert PROGRAM in _compiled(_fused(tx), params, tx.init(params), params)
    got = _run(jax.jit(_fused(tx), donate_argnums=(0, 1)), tx, params, 12)
    want = _run(jax.jit(_plain(tx)), tx, params, 12)
    # Differences are absolute in units of the learning rate for sign-based steps.
    assert_trees_close(got, want, rtol=rtol, atol=rtol * 1e-2)


@pytest.mark.parametrize(
    "make",
    [lambda: optax.radam(1e-2), lambda: optax.yogi(1e-2), lambda: optax.adabelief(1e-2)],
    ids=["radam", "yogi", "adabelief"],
)
def test_programs_of_optax_transformations_agree_with_optax(make):
    tx = make()
    params = _tree([(300,), (17, 5)])
    assert PROGRAM in _compiled(_fused(tx), params, tx.init(params), params)
    got = _run(jax.jit(_fused(tx)), tx, params, 30)

    def ostep(p, s, g):
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s

    want = _run(jax.jit(ostep), tx, params, 30)
    assert_trees_close(got, want, rtol=1e-5, atol=1e-6)


def _every_operation(g, p):
    """An update that uses every operation the interpreter has, on awkward values."""
    x = g * 3.0 - p
    a = jnp.where(jnp.isfinite(x), x, 0.5)
    b = jnp.abs(a) + 0.25
    parts = [
        jnp.sign(a), jnp.sqrt(b), jax.lax.rsqrt(b), jnp.exp(-b), jnp.log(b), jnp.log1p(b),
        jnp.expm1(-b), jnp.tanh(a), jax.nn.sigmoid(a), jnp.floor(a), jnp.ceil(a), jnp.round(a),
        jax.lax.round(a, jax.lax.RoundingMethod.AWAY_FROM_ZERO), jnp.sin(a), jnp.cos(a),
        jnp.exp2(-b), jnp.cbrt(a), a**2, a**3, b**-2, a**0, jnp.square(a), b**1.5,
        jnp.maximum(x, 0.1), jnp.minimum(x, -0.1), jnp.arctan2(a, b), jnp.fmod(a, 0.7),
        jnp.clip(a, -0.3, 0.4), -a, a / b,
        (a > 0) & (b < 1.0), (a > 0) | (b < 1.0), (a > 0) ^ (b < 1.0), ~(a >= 0.1),
        (a == 0.0).astype(jnp.float32), (a != 0.5).astype(jnp.float32), (a <= 0.2).astype(jnp.float32),
        a.astype(bool).astype(jnp.float32),
    ]  # fmt: skip
    return sum(q.astype(jnp.float32) for q in parts)


def _custom(fn):
    def update(updates, state, params=None):
        return jax.tree.map(fn, updates, params), state

    return gx.GradientTransformation(lambda params: (), update)


@pytest.fixture
def fuse_libm(monkeypatch):
    # By default a program that needs a libm call per element is left to XLA (it would be
    # slower); these tests check those operations anyway.
    from gradxform.kernels import _program

    monkeypatch.setattr(_program, "_FUSE_LIBM", True)


def test_every_interpreter_operation_matches_xla_including_nan_and_inf(fuse_libm):
    params = _tree([(1100,), (7,)], seed=3)
    grads = _grads(params, 0)
    special = jnp.array([jnp.nan, jnp.inf, -jnp.inf, 0.0, -0.0, 1e-30, -1e30], jnp.float32)
    grads["w001"] = special
    tx = _custom(_every_operation)
    state = tx.init(params)
    assert PROGRAM in _compiled(_fused(tx), params, state, grads)
    got = jax.jit(_fused(tx))(params, state, grads)
    want = jax.jit(_plain(tx))(params, state, grads)
    # NaN and inf gradients are the point here: NaNs must come out where XLA puts them.
    assert_trees_close(got, want, rtol=2e-5, atol=2e-5, nan_ok=True)  # libm and XLA's polynomials differ in the last bits


def _program_results(text):
    """How many arrays each program call in a compiled step returns."""
    lines = [line for line in text.splitlines() if f'custom_call_target="{PROGRAM}"' in line]
    return [line.split("custom-call(")[0].count("f32[") for line in lines]


@pytest.mark.parametrize(
    "make, results",
    [(lambda: gx.lamb(1e-2), 1), (lambda: gx.prodigy(), 3)],
    ids=["lamb", "prodigy"],
)
def test_outputs_xla_needs_are_computed_by_xla_and_read_by_the_program(make, results):
    # LAMB's trust ratio is a norm of the update, made from the new moments; Prodigy's
    # distance estimate divides by the norm of the new gradient sum. XLA computes those
    # outputs; the program reads them and writes the rest (LAMB: the parameters; Prodigy:
    # the parameters and both moments), so nothing is computed twice into memory.
    tx = make()
    params = {"w": _tree([(100,)])["w000"]}
    text = _compiled(_fused(tx), params, tx.init(params), params)
    assert _program_results(text) == [results]
    got = _run(jax.jit(_fused(tx)), tx, params, 10)
    want = _run(jax.jit(_plain(tx)), tx, params, 10)
    assert_trees_close(got, want, rtol=1e-5, atol=1e-7)


def test_steps_that_need_libm_per_element_stay_with_xla():
    tx = _custom(lambda g, p: -0.1 * jnp.tanh(g))
    params = _tree([(100,)])
    assert PROGRAM not in _compiled(_fused(tx), params, tx.init(params), params)


def test_a_single_output_stays_with_xla_and_a_second_output_takes_a_program(real_leaf_sizes):
    """``p - lr g`` is one pass in XLA already, on a large leaf as on many small ones: only a
    step with a second output (a moment, a kept gradient) saves passes with a program."""
    tx = gx.sgd(1e-2)
    mixed = _tree([(1 << 16,), ((1 << 16) - 1,), (300,), (7, 20)])
    assert PROGRAM not in _compiled(_fused(tx), mixed, tx.init(mixed), mixed)
    # with a second output (momentum) every leaf of the tiny size or more takes the program
    tx = gx.chain(gx.trace(0.9), gx.scale(-1e-2))
    text = _compiled(_fused(tx), mixed, tx.init(mixed), mixed)
    assert text.count(f'custom_call_target="{PROGRAM}"') == 1
    got = _run(jax.jit(_fused(tx)), tx, mixed, 3)
    want = _run(jax.jit(_plain(tx)), tx, mixed, 3)
    assert_trees_close(got, want, rtol=1e-6, atol=1e-7)
    # and so with a gradient the state keeps (optimistic gradient descent): the pass that
    # updates the parameters writes it, where XLA would copy it in a pass of its own
    tx = gx.optimistic_gradient_descent(1e-2)
    large = _tree([(1 << 16,)])
    assert PROGRAM in _compiled(_fused(tx), large, tx.init(large), large)


def test_leaves_under_the_tiny_size_stay_with_xla(real_leaf_sizes):
    """Inside a training step a program's fixed cost per leaf is more than XLA's loops cost
    on a tiny leaf (`TINY_LEAF`); from that size on, leaves share a program."""
    tiny = real_leaf_sizes["TINY_LEAF"]
    tx = gx.lion(1e-3)
    small = _tree([(tiny - 1,), (3,), (1,)])
    assert PROGRAM not in _compiled(_fused(tx), small, tx.init(small), small)
    mixed = _tree([(tiny,), (tiny - 1,), (2, 3)])
    text = _compiled(_fused(tx), mixed, tx.init(mixed), mixed)
    assert text.count(f'custom_call_target="{PROGRAM}"') == 1
    got = _run(jax.jit(_fused(tx)), tx, mixed, 3)
    want = _run(jax.jit(_plain(tx)), tx, mixed, 3)
    assert_trees_close(got, want, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("exponent", [0.5, -0.5, 2.0, -1.0, 1.0])
def test_constant_exponents_are_fused_with_pows_edge_cases(exponent):
    tx = _custom(lambda g, p: g**exponent - p)
    params = {"w": jnp.ones(9, jnp.float32)}
    grads = {"w": jnp.array([-0.0, 0.0, -jnp.inf, jnp.inf, jnp.nan, -2.0, 3.0, 1e-30, 7e20], jnp.float32)}
    assert PROGRAM in _compiled(_fused(tx), params, tx.init(params), grads)
    got = np.asarray(jax.jit(_fused(tx))(params, (), grads)[0]["w"])
    want = np.asarray(jax.jit(_plain(tx))(params, (), grads)[0]["w"])
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    number = ~np.isnan(want)  # a NaN's sign bit means nothing
    np.testing.assert_array_equal(np.signbit(got[number]), np.signbit(want[number]))
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_dividing_by_a_scalar_rounds_as_xlas_multiplication_by_its_inverse():
    """XLA divides an array by a scalar (a constant or a value it computes) as a
    multiplication by the scalar's inverse; the program does the same, so where the two
    roundings differ the program still agrees with XLA to the bit."""

    def update(updates, state, params=None):
        count = state + 1
        scale = jnp.sqrt(count.astype(jnp.float32) + 2.0)  # a scalar computed by XLA
        return jax.tree.map(lambda g, p: g / scale - p / 3.0, updates, params), count

    tx = gx.GradientTransformation(lambda params: jnp.zeros([], jnp.int32), update)
    params = {"w": jnp.asarray(np.random.default_rng(0).standard_normal(4096), jnp.float32)}
    grads = _grads(params, 0)
    assert PROGRAM in _compiled(_fused(tx), params, tx.init(params), grads)
    got = _run(jax.jit(_fused(tx)), tx, params, 3)
    want = _run(jax.jit(_plain(tx)), tx, params, 3)
    _assert_identical(got, want)
    # Dividing instead rounds differently for some of these elements: the check can fail.
    g, p, s = (np.asarray(x, np.float32) for x in (grads["w"], params["w"], np.sqrt(np.float32(3.0))))
    assert np.any(g / s != g * (np.float32(1.0) / s))


def test_nan_propagates_through_max_and_min_as_in_xla():
    tx = _custom(lambda g, p: jnp.maximum(g, p) + jnp.minimum(p, g))
    params = {"w": jnp.array([jnp.nan, 1.0, 2.0, jnp.nan], jnp.float32)}
    grads = {"w": jnp.array([1.0, jnp.nan, 0.0, jnp.nan], jnp.float32)}
    got = jax.jit(_fused(tx))(params, tx.init(params), grads)[0]["w"]
    want = jax.jit(_plain(tx))(params, tx.init(params), grads)[0]["w"]
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.asarray(got)[2], np.asarray(want)[2])


def test_leaves_with_the_same_program_share_calls_and_per_leaf_scalars_stay_per_leaf():
    # Fromage scales each leaf by its own norm ratio (a per-leaf scalar computed by XLA).
    params = _tree([(50,)] * 40 + [(3, 4)] * 3)
    tx = gx.fromage(1e-2)
    text = _compiled(_fused(tx), params, tx.init(params), params)
    entry = text[text.index("ENTRY") :]
    # 43 leaves with one program: two calls of at most 32 leaves.
    assert entry.count(f'custom_call_target="{PROGRAM}"') == 2
    got = _run(jax.jit(_fused(tx)), tx, params, 5)
    want = _run(jax.jit(_plain(tx)), tx, params, 5)
    assert_trees_close(got, want, rtol=1e-5, atol=1e-7)


def test_donated_program_step_copies_nothing():
    tx = gx.radam(1e-3)
    params = _tree([(4096,), (3,), (5, 5)])
    text = jax.jit(_fused(tx), donate_argnums=(0, 1)).lower(params, tx.init(params), params).compile().as_text()
    entry = text[text.index("ENTRY") :]
    assert entry.count(f'custom_call_target="{PROGRAM}"') >= 1
    assert not [line for line in entry.splitlines() if " copy(" in line], entry


FALLBACKS = {
    "adam-bf16-moments": (lambda: gx.adam(1e-2, mu_dtype=jnp.bfloat16), jnp.float32),
    "radam-bf16-params": (lambda: gx.radam(1e-2), jnp.bfloat16),
    "sgd-bf16-momentum": (lambda: gx.sgd(1e-2, momentum=0.9, accumulator_dtype=jnp.bfloat16), jnp.float32),
    # noise with a key of another kind: XLA makes the noise array (test_noise.py: the kernel)
    "noisy_sgd-rbg": (lambda: gx.noisy_sgd(1e-2, key=jax.random.key(0, impl="rbg")), jnp.float32),
}


@pytest.mark.parametrize("make, dtype", FALLBACKS.values(), ids=FALLBACKS.keys())
def test_steps_without_a_float32_one_pass_part_take_the_plain_path_with_identical_numbers(make, dtype):
    tx = make()
    params = _tree([(40, 3), (5,)], dtype=dtype)
    grads = _grads(params, 0)
    assert "gradxform_" not in _compiled(_fused(tx), params, tx.init(params), grads)
    got = _run(jax.jit(_fused(tx)), tx, params, 4)
    want = _run(jax.jit(_plain(tx)), tx, params, 4)
    _assert_identical(got, want)


def test_without_jit_the_step_is_the_plain_composition():
    tx = gx.radam(1e-2)
    params = _tree([(100,), (3,)])
    state = tx.init(params)
    grads = _grads(params, 0)
    got = gx.update_and_apply(tx, grads, state, params)
    want = _plain(tx)(params, state, grads)
    _assert_identical(got, want)


def test_a_callback_inside_the_step_still_runs():
    seen = []

    def update(updates, state, params=None):
        jax.debug.callback(lambda: seen.append(1))
        return jax.tree.map(lambda g: -0.1 * g, updates), state

    tx = gx.GradientTransformation(lambda p: (), update)
    params = _tree([(10,)])
    step = jax.jit(_fused(tx))
    assert PROGRAM in step.lower(params, (), params).compile().as_text()
    jax.block_until_ready(step(params, (), params))
    assert seen == [1]


def test_extra_arguments_reach_the_step():
    tx = gx.polyak_sgd()
    params = _tree([(30,), (4, 2)])
    value = jnp.float32(2.5)
    fused = jax.jit(lambda p, s, g, v: gx.update_and_apply(tx, g, s, p, value=v))
    plain = jax.jit(lambda p, s, g, v: _plain_with_value(tx, p, s, g, v))
    state = tx.init(params)
    grads = _grads(params, 0)
    assert PROGRAM in fused.lower(params, state, grads, value).compile().as_text()
    assert_trees_close(fused(params, state, grads, value), plain(params, state, grads, value), rtol=1e-6, atol=1e-7)


def _plain_with_value(tx, p, s, g, v):
    u, s = tx.update(g, s, p, value=v)
    return gx.apply_updates(p, u), s


@functools.cache
def _program_target():
    gx.kernel_status()
    return jax.ffi.ffi_call(PROGRAM, jax.ShapeDtypeStruct((4,), jnp.float32))


@pytest.mark.parametrize(
    "program, message",
    [
        ([1, 1, 0, 1], "shorter than its header"),
        ([1, 1, 0, 1, 1, 1, 999, 1, 0, 0, 0], "unknown opcode 999"),
        ([1, 1, 0, 1, 1, 1, 32, 0, 0, 0, 0], "destination is not a temporary"),
        ([1, 1, 0, 1, 1, 1, 32, 1, 7, 0, 0], "operand register out of range"),
        ([1, 1, 0, 1, 2, 1, 32, 1, 0, 0, 0], "size does not match"),
    ],
    ids=["short", "opcode", "destination", "operand", "size"],
)
def test_a_malformed_program_is_refused_with_the_reason(program, message):
    if gx.kernel_status():
        pytest.fail(f"kernels did not build: {gx.kernel_status()}")
    call = _program_target()
    with pytest.raises(Exception, match=message):
        jax.block_until_ready(
            call(jnp.asarray(program, jnp.int32), jnp.zeros((0,), jnp.float32), jnp.ones(4, jnp.float32))
        )


def test_the_interpreter_runs_programs_without_a_compiled_loop():
    # In a fresh process with the compiled loops turned off, the kernel interprets each
    # program; its numbers must match the composition as the compiled loops' do.
    code = (
        "import jax, jax.numpy as jnp, numpy as np, gradxform as gx\n"
        "import sys; sys.path.insert(0, 'tests/kernels'); sys.path.insert(0, 'tests')\n"
        "import test_programs as t\n"
        "from gradxform.kernels import _build, _program\n"
        "_program._FUSE_LIBM = True\n"
        f"for name, value in {TEST_SIZES!r}.items(): setattr(_program, name, value)\n"
        "params = t._tree([(1300,), (24, 5), (1,)], seed=3)\n"
        "grads = t._grads(params, 0)\n"
        "grads['w002'] = jnp.array([jnp.nan], jnp.float32)\n"
        "for tx in (t._custom(t._every_operation), gx.radam(1e-2), gx.fromage(1e-2), t._keeps_previous_params()):\n"
        "    s = tx.init(params)\n"
        "    text = jax.jit(t._fused(tx)).lower(params, s, grads).compile().as_text()\n"
        "    assert t.PROGRAM in text\n"
        "    t.assert_trees_close(jax.jit(t._fused(tx))(params, s, grads), jax.jit(t._plain(tx))(params, s, grads), rtol=2e-5, atol=2e-5, nan_ok=True)\n"
        "assert _build._loops and not any(_build._loops.values()), _build._loops\n"
        "print('interpreted', len(_build._loops))\n"
    )
    env = {**os.environ, "GRADXFORM_INTERPRET_PROGRAMS": "1", "JAX_PLATFORMS": "cpu"}
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "interpreted 4"


@pytest.mark.parametrize("make", [lambda: gx.lion(1e-2), lambda: gx.adam(1e-2)], ids=["program", "hand-written"])
def test_a_differentiated_step_is_the_plain_composition(make):
    # Meta-learning differentiates through the step; the kernels have no derivative, so the
    # step must take the plain path there and give the composition's gradient.
    tx = make()
    params = _tree([(6,), (2, 3)])

    def loss(p, step):
        new_p, _ = step(p, tx.init(p), jax.tree.map(lambda x: 0.5 * x, p))
        return sum(jnp.sum(x**2) for x in jax.tree.leaves(new_p))

    got = jax.jit(jax.grad(lambda p: loss(p, _fused(tx))))(params)
    want = jax.jit(jax.grad(lambda p: loss(p, _plain(tx))))(params)
    _assert_identical(got, want)


def _keeps_previous_params():
    """A step whose state is the parameters before it: the new state is an input passed
    through, while the new parameters overwrite that same input in place."""

    def update(updates, state, params=None):
        return jax.tree.map(lambda g: -0.1 * g, updates), params

    return gx.GradientTransformation(lambda params: jax.tree.map(jnp.zeros_like, params), update)


def test_a_passed_through_input_is_read_before_it_is_overwritten():
    tx = _keeps_previous_params()
    params = _tree([(1300,), (3,)])
    state = tx.init(params)
    grads = _grads(params, 0)
    assert PROGRAM in _compiled(_fused(tx), params, state, grads)
    new_params, kept = jax.jit(_fused(tx), donate_argnums=(0, 1))(jax.tree.map(jnp.copy, params), state, grads)
    _assert_identical(kept, params)
    assert_trees_close(new_params, jax.tree.map(lambda p, g: p - 0.1 * g, params, grads), rtol=1e-6, atol=1e-7)


def test_a_state_filled_with_a_constant_is_left_to_xla():
    def update(updates, state, params=None):
        return jax.tree.map(lambda g: -0.1 * g, updates), jax.tree.map(lambda s: jnp.full_like(s, 2.0), state)

    tx = gx.GradientTransformation(lambda params: jax.tree.map(jnp.zeros_like, params), update)
    params = _tree([(40,), (2, 3)])
    state = tx.init(params)
    grads = _grads(params, 0)
    got = jax.jit(_fused(tx))(params, state, grads)
    want = jax.jit(_plain(tx))(params, state, grads)
    assert_trees_close(got, want, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("make", [gx.lion, gx.adam], ids=["program", "hand-written"])
def test_differentiating_through_a_hyperparameter_the_optimizer_closes_over(make):
    params = _tree([(6,), (2, 3)])

    def loss(lr, step_of):
        tx = make(lr)
        new_p, _ = jax.jit(step_of(tx))(params, tx.init(params), jax.tree.map(lambda x: 0.5 * x, params))
        return sum(jnp.sum(x**2) for x in jax.tree.leaves(new_p))

    got = jax.jit(jax.grad(lambda lr: loss(lr, _fused)))(jnp.float32(0.1))
    want = jax.jit(jax.grad(lambda lr: loss(lr, _plain)))(jnp.float32(0.1))
    np.testing.assert_allclose(got, want, rtol=1e-6)
