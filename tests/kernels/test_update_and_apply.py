"""`gx.update_and_apply`: the one-pass kernels (Adam/AdamW, SGD with momentum) against the
plain composition.

The oracle for every kernel step is the same optimizer run as ``tx.update`` followed by
``gx.apply_updates`` (and Optax's), on the same gradients. Which path ran is read from the
compiled program: the kernels are custom calls named ``gradxform_adam_step`` and
``gradxform_sgd_step``.
"""

import functools
import os
import re
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradxform as gx
from gradxform.kernels._step import KERNEL_LEAVES_PER_CALL
from harness import assert_trees_close
from stepping import compiled as _hlo
from stepping import fused_step as _kernel_step
from stepping import grads as _grads
from stepping import plain_step as _plain_step
from stepping import tree as _tree

KERNEL = "gradxform_adam_step"
ANY_KERNEL = "gradxform_"


@functools.lru_cache(maxsize=8)
def _grad_sequence(treedef, shapes, dtypes, steps):
    """The gradients of every step, drawn once and shared by the runs a test compares."""
    params = jax.tree.unflatten(treedef, [jnp.zeros(s, d) for s, d in zip(shapes, dtypes)])
    return [_grads(params, t) for t in range(steps)]


def _run(step, tx, params, steps):
    params = jax.tree.map(jnp.copy, params)  # the step may donate them
    state = tx.init(params)
    leaves, treedef = jax.tree.flatten(params)
    key = (treedef, tuple(x.shape for x in leaves), tuple(jnp.dtype(x.dtype) for x in leaves))
    for g in _grad_sequence(*key, steps):
        params, state = step(params, state, g)
    return params, state


# The kernel against the composition it replaces: float32 rounding only.
_close = functools.partial(assert_trees_close, rtol=1e-6, atol=1e-7)


def test_kernel_builds_where_a_compiler_exists():
    status = gx.kernel_status()
    if shutil.which("c++") or shutil.which("g++") or os.environ.get("CXX"):
        assert status == "", status
    else:
        assert "compiler" in status


# Leaf sizes cross the kernel's 65536-element chunks inside and between leaves, with a 0-d
# leaf and a one-element leaf; MANY's 40 leaves take two calls of at most 32 leaves.
SIZES = [(70000,), (3,), (256, 256), (100001,), (), (1,)]
MANY = SIZES + [(7,)] * 34

CASES = {
    "adam": lambda: gx.adam(1e-2),
    "adam-40-leaves": lambda: gx.adam(1e-2),
    "adam-eps_root": lambda: gx.adam(3e-3, b1=0.8, b2=0.99, eps=1e-6, eps_root=1e-8),
    "adamw": lambda: gx.adamw(1e-2, weight_decay=0.1),
    "adamw-cosine": lambda: gx.adamw(gx.cosine_decay_schedule(1e-2, 30), weight_decay=0.05),
    "adam-warmup": lambda: gx.adam(gx.warmup_cosine_decay_schedule(0.0, 1e-2, 5, 30)),
    "sgd-momentum-40-leaves": lambda: gx.sgd(1e-2, momentum=0.9),
    "sgd-nesterov-exponential": lambda: gx.sgd(gx.exponential_decay(1e-2, 5, 0.5), momentum=0.8, nesterov=True),
}


@pytest.mark.parametrize("name", CASES)
def test_kernel_matches_the_composition_over_many_steps(name):
    tx = CASES[name]()
    params = _tree(MANY if "40-leaves" in name else SIZES)
    assert ANY_KERNEL in _hlo(_kernel_step(tx), params, tx.init(params), params)
    fused = jax.jit(_kernel_step(tx), donate_argnums=(0, 1))
    plain = jax.jit(_plain_step(tx), donate_argnums=(0, 1))
    got = _run(fused, tx, params, 20)
    want = _run(plain, tx, params, 20)
    _close(got, want)
    assert jax.tree.structure(got[1]) == jax.tree.structure(want[1])


@pytest.mark.parametrize(
    "make, oracle",
    [
        (lambda: gx.adam(1e-2, eps_root=1e-8), lambda: optax.adam(1e-2, eps_root=1e-8)),
        (lambda: gx.adamw(1e-2, weight_decay=0.1), lambda: optax.adamw(1e-2, weight_decay=0.1)),
        (lambda: gx.sgd(1e-2, momentum=0.9, nesterov=True), lambda: optax.sgd(1e-2, momentum=0.9, nesterov=True)),
    ],
    ids=["adam", "adamw", "sgd-nesterov"],
)
def test_kernel_agrees_with_optax(make, oracle):
    params = _tree([(300,), (17, 5), ()])
    got = _run(jax.jit(_kernel_step(make()), donate_argnums=(0, 1)), make(), params, 50)[0]
    otx = oracle()

    def ostep(p, s, g):
        u, s = otx.update(g, s, p)
        return optax.apply_updates(p, u), s

    want = _run(jax.jit(ostep), otx, params, 50)[0]
    # Unit-scale random gradients for 50 steps put the plain composition 1.7e-6 away from
    # Optax on parameters of size ~1 (its own float32 rounding); the kernel is as close.
    _close(got, want, rtol=1e-5, atol=1e-5)


def test_kernel_without_jit_and_without_donation_leaves_inputs_intact():
    tx = gx.adam(1e-2)
    params = _tree([(1000,), (5,)])
    before = jax.tree.map(np.asarray, params)
    state = tx.init(params)
    mu_before = np.asarray(jax.tree.leaves(state)[6])
    new_params, new_state = gx.update_and_apply(tx, _grads(params, 0), state, params)
    jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, params), before)
    np.testing.assert_array_equal(np.asarray(jax.tree.leaves(state)[6]), mu_before)
    want = _plain_step(tx)(params, state, _grads(params, 0))
    _close((new_params, new_state), want)


@pytest.mark.parametrize(
    "leaves, calls", [(2, 1), (KERNEL_LEAVES_PER_CALL + 8, 2)], ids=["2-leaves", "two-calls"]
)
def test_donated_kernel_step_copies_nothing(leaves, calls):
    tx = gx.adamw(1e-3, weight_decay=0.01)
    params = _tree([(4096,)] + [(3,)] * (leaves - 1))
    text = jax.jit(_kernel_step(tx), donate_argnums=(0, 1)).lower(params, tx.init(params), params).compile().as_text()
    entry = text[text.index("ENTRY"):]
    assert not [line for line in entry.splitlines() if " copy(" in line], entry
    assert entry.count(f'custom_call_target="{KERNEL}"') == calls


def test_sgds_leaves_below_the_minimum_size_stay_with_xla_and_the_rest_take_the_kernel(real_leaf_sizes):
    """SGD's kernel call measured slower than XLA's loops on small leaves: those stay with
    XLA, inside the same step, and the step still agrees with the composition on every leaf."""
    n = real_leaf_sizes["KERNEL_MIN_LEAF"]
    tx = gx.sgd(1e-2, momentum=0.9)
    mixed = _tree([(n,), (n - 1,), (3, 4), ()])
    text = _hlo(_kernel_step(tx), mixed, tx.init(mixed), mixed)
    calls = [line for line in text.splitlines() if f'custom_call_target="{ANY_KERNEL}' in line]
    assert len(calls) == 1, calls
    assert calls[0].count(f"f32[{n}]") >= 3  # the one large leaf's parameters, gradients, state
    got = _run(jax.jit(_kernel_step(tx), donate_argnums=(0, 1)), tx, mixed, 5)
    want = _run(jax.jit(_plain_step(tx)), tx, mixed, 5)
    _close(got, want)
    small = _tree([(n - 1,), (5,)])
    assert ANY_KERNEL not in _hlo(_kernel_step(tx), small, tx.init(small), small)


def test_adams_kernel_takes_small_leaves_and_tiny_ones_read_its_scalars_as_one_operand(real_leaf_sizes):
    """Adam's kernel measured faster than XLA on small leaves, and leaving the 400-leaf tree's
    small leaves to XLA made its first compile as slow as Optax's: leaves from `TINY_LEAF`
    elements on take the kernel. Below that, the FFI's cost per array was more than XLA's
    loops cost: those leaves stay with XLA, and each of their loops reads the kernel's
    scalars as one operand instead of one per hyperparameter."""
    n, tiny = real_leaf_sizes["KERNEL_MIN_LEAF"], real_leaf_sizes["TINY_LEAF"]
    tx = gx.adamw(1e-2, weight_decay=0.1)
    small = _tree([(n - 1,), (tiny,), (5,), (3, 4)])
    text = _hlo(_kernel_step(tx), small, tx.init(small), small)
    entry = text[text.index("ENTRY") :].splitlines()
    calls = [line for line in entry if f'custom_call_target="{KERNEL}"' in line]
    assert len(calls) == 1, calls
    assert all(f"f32[{s}]" in calls[0] for s in (n - 1, tiny)), calls
    assert not any(f"f32[{s}]" in calls[0] for s in (5, "3,4")), calls
    (vector,) = re.findall(r"(%\S+) = f32\[8\]", "\n".join(entry))  # the kernel's scalars
    assert f"custom-call({vector}," in calls[0]
    loops = [line for line in entry if re.search(r"= f32\[(5|3,4)\]\S* fusion\(", line)]
    assert len(loops) == 6, loops  # both moments and the parameters, for each tiny leaf
    for line in loops:
        operands = line[line.index("fusion(") + 7 : line.index("), kind=")].split(", ")
        assert vector in operands and len(operands) <= 4, line

    got = _run(jax.jit(_kernel_step(tx), donate_argnums=(0, 1)), tx, small, 5)
    want = _run(jax.jit(_plain_step(tx)), tx, small, 5)
    _close(got, want)
    # New hyperparameters reach the tiny leaves' loops through the same operand.
    fused, plain = jax.jit(_kernel_step(tx)), jax.jit(_plain_step(tx))
    state = gx.set_hyperparams(got[1], learning_rate=3e-3, b2=0.9, weight_decay=0.5)
    g = _grads(small, 9)
    _close(fused(got[0], state, g), plain(got[0], state, g))


def test_switching_paths_and_changing_hyperparameters_mid_run():
    tx = gx.adam(1e-2)
    params = _tree([(500,), (9,)])
    fused = jax.jit(_kernel_step(tx))
    plain = jax.jit(_plain_step(tx))
    state_a = state_b = tx.init(params)
    p_a = p_b = params
    for t in range(12):
        g = _grads(params, t)
        if t == 6:  # a new learning rate and b1 as data, same compiled steps
            state_a = gx.set_hyperparams(state_a, learning_rate=1e-3, b1=0.5)
            state_b = gx.set_hyperparams(state_b, learning_rate=1e-3, b1=0.5)
        p_a, state_a = (fused if t % 2 else plain)(p_a, state_a, g)
        p_b, state_b = plain(p_b, state_b, g)
    _close((p_a, state_a), (p_b, state_b))
    assert float(gx.hyperparams(state_a)["learning_rate"]) == pytest.approx(1e-3)
    assert int(state_a.count) == 12


# Optimizers and settings the hand-written kernels do not cover; they take the generic
# programs (tests/kernels/test_programs.py) or, for other dtypes, the plain path.
OTHERS = {
    "nadam": (lambda: gx.nadam(1e-2), jnp.float32),
    "adamw-mask": (lambda: gx.adamw(1e-2, mask=lambda p: jax.tree.map(lambda x: x.ndim > 1, p)), jnp.float32),
    "adam-bf16-moments": (lambda: gx.adam(1e-2, mu_dtype=jnp.bfloat16), jnp.float32),
    "adam-bf16-params": (lambda: gx.adam(1e-2), jnp.bfloat16),
    "sgd-no-momentum": (lambda: gx.sgd(1e-2), jnp.float32),
    "sgd-bf16-momentum": (lambda: gx.sgd(1e-2, momentum=0.9, accumulator_dtype=jnp.bfloat16), jnp.float32),
    "optax-adam": (lambda: optax.adam(1e-2), jnp.float32),
    "chain-clip-adam": (lambda: gx.chain(gx.clip_by_global_norm(1.0), gx.adam(1e-2)), jnp.float32),
}


@pytest.mark.parametrize("make, dtype", OTHERS.values(), ids=OTHERS.keys())
def test_hand_written_kernels_only_where_their_arithmetic_applies(make, dtype):
    tx = make()
    params = jax.tree.map(lambda x: x.astype(dtype), _tree([(40, 3), (5,)]))
    grads = _grads(params, 0)
    text = _hlo(_kernel_step(tx), params, tx.init(params), grads)
    assert KERNEL not in text and "gradxform_sgd_step" not in text
    got = _run(jax.jit(_kernel_step(tx)), tx, params, 5)
    want = _run(jax.jit(_plain_step(tx)), tx, params, 5)
    tolerance = 1e-2 if dtype == jnp.bfloat16 else 1e-5
    assert_trees_close(got, want, rtol=tolerance, atol=tolerance * 1e-1)


def test_kernel_false_forces_the_plain_path():
    tx = gx.adam(1e-3)
    params = _tree([(10,)])
    step = lambda p, s, g: gx.update_and_apply(tx, g, s, p, kernel=False)
    assert KERNEL not in _hlo(step, params, tx.init(params), params)


def test_kernel_on_packed_parameters():
    params = _tree([(50, 4), (3,), (1,), (7,), (128,)])
    layout = gx.bucket_layout(params)
    packed = layout.pack(params)
    tx = gx.adam(1e-2)
    got = _run(jax.jit(_kernel_step(tx)), tx, packed, 10)[0]
    want = _run(jax.jit(_plain_step(tx)), tx, params, 10)[0]
    _close(layout.unpack(got), want)


def test_kernel_on_sharded_parameters():
    devices = jax.devices()
    if len(devices) < 2:
        pytest.fail("conftest simulates two CPU devices; found one")
    mesh = jax.sharding.Mesh(np.array(devices[:2]), ("data",))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    params = jax.device_put(_tree([(64, 8)]), sharding)
    tx = gx.adam(1e-2)
    got = _run(jax.jit(_kernel_step(tx)), tx, params, 5)[0]
    want = _run(jax.jit(_plain_step(tx)), tx, params, 5)[0]
    _close(got, want)


@pytest.mark.parametrize("make", [lambda: gx.adam(1e-2), lambda: gx.yogi(1e-2)], ids=["hand-written", "program"])
def test_kernel_under_vmap(make):
    tx = make()
    params = {"w": jnp.asarray(np.random.default_rng(0).standard_normal((3, 20)), jnp.float32)}
    grads = _grads(params, 0)
    init = jax.vmap(tx.init)
    fused = jax.jit(jax.vmap(_kernel_step(tx)))
    plain = jax.jit(jax.vmap(_plain_step(tx)))
    _close(fused(params, init(params), grads), plain(params, init(params), grads))


def test_not_a_transformation_is_a_clear_error():
    with pytest.raises(TypeError, match="tx must be a gradient transformation"):
        gx.update_and_apply(lambda g: g, {}, (), {})


def test_multi_steps_object_is_told_how_to_fit():
    """``MultiSteps`` is an object with a ``gradient_transformation()`` method, not a
    transformation: the error says what to pass instead."""
    with pytest.raises(TypeError, match=r"pass tx.gradient_transformation\(\) to use this MultiSteps"):
        gx.update_and_apply(gx.MultiSteps(gx.adam(0.1), 2), {}, (), {})


@pytest.mark.parametrize("jitted", [False, True], ids=["eager", "jit"])
def test_missing_params_say_the_step_needs_them(jitted):
    # tx.update takes params=None; the fused step returns the new parameters, so it cannot.
    tx = gx.adam(1e-2)
    params = {"w": jnp.ones(3)}
    step = jax.jit(gx.update_and_apply, static_argnums=0) if jitted else gx.update_and_apply
    with pytest.raises(ValueError, match="update_and_apply: params is None"):
        step(tx, params, tx.init(params), None)


def test_mismatched_gradients_name_the_path():
    tx = gx.adam(1e-2)
    params = {"a": jnp.ones(3), "b": jnp.ones(2)}
    with pytest.raises(ValueError, match="b"):
        gx.update_and_apply(tx, {"a": jnp.ones(3)}, tx.init(params), params)


def test_disabled_kernels_fall_back_and_say_why():
    code = (
        "import gradxform as gx, jax, jax.numpy as jnp\n"
        "print(gx.kernel_status())\n"
        "from gradxform.kernels._program import KERNEL_MIN_LEAF\n"
        "tx = gx.adam(1e-2); p = {'w': jnp.ones(KERNEL_MIN_LEAF)}  # large enough for the kernel\n"
        "f = lambda p, s, g: gx.update_and_apply(tx, g, s, p)\n"
        "print('gradxform_adam_step' in jax.jit(f).lower(p, tx.init(p), p).as_text())\n"
    )
    env = {**os.environ, "GRADXFORM_DISABLE_KERNELS": "1", "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    status, used = out.stdout.strip().splitlines()
    assert "GRADXFORM_DISABLE_KERNELS" in status
    assert used == "False"
