"""Where `gx.update_and_apply`'s kernels go: into a program lowered for a CPU, never into one
lowered for another platform, whatever devices the process has; and a jitted step with
kernels can be differentiated and batched from outside.

Lowering for CUDA or a TPU needs no such device: ``jax.export`` lowers for any platform. A
process whose default device is an accelerator traces the plain step first and the kernels'
only when a CPU lowering asks; the ``default_device`` fixture runs the tests both ways (the
accelerator way by telling the step that the default device is one). The oracle for numbers
is the plain composition (``tx.update`` then ``gx.apply_updates``).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import export
from jax.sharding import NamedSharding, PartitionSpec as P

import gradxform as gx
from gradxform.kernels import _step
from harness import assert_trees_close
from stepping import fused_step, grads, plain_step, tree


def _close(got, want, **tol):
    """assert_trees_close, with random keys compared by their data."""
    def data(x):
        return jax.random.key_data(x) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x

    tol = {"rtol": 1e-6, "atol": 1e-7, **tol}
    assert_trees_close(jax.tree.map(data, got), jax.tree.map(data, want), **tol)

# One optimizer per kind of kernel: hand-written (Adam, SGD with momentum, SM3), a generated
# program (Lion), 8-bit moments, the noise kernel.
MAKERS = {
    "adam": lambda: gx.adam(1e-2),
    "sgd+momentum": lambda: gx.sgd(1e-2, momentum=0.9),
    "sm3": lambda: gx.sm3(0.1),
    "lion": lambda: gx.lion(1e-3),
    "8-bit adam": lambda: gx.quantized_state(gx.adam(1e-2)),
    "noisy_sgd": lambda: gx.noisy_sgd(1e-2, key=0),
}
# Large enough that every kernel takes the leaf (8-bit moments quantize it, SGD's floor).
SIZES = [(96, 96), (7,)]


@pytest.fixture(params=["cpu", "accelerator"])
def default_device(request, monkeypatch):
    """The process's default device as the step sees it."""
    monkeypatch.setattr(_step, "_accelerator_by_default", lambda: request.param == "accelerator")
    return request.param


def _lowered(tx, platforms):
    params = tree(SIZES)
    step = jax.jit(fused_step(tx), donate_argnums=(0, 1))
    return export.export(step, platforms=platforms)(params, tx.init(params), grads(params, 0))


def _kernel_calls(text):
    return [line for line in text.splitlines() if "custom_call @gradxform_" in line]


@pytest.mark.parametrize("name", MAKERS)
def test_the_cpu_program_has_the_kernels(name, default_device):
    params = tree(SIZES)
    tx = MAKERS[name]()
    text = jax.jit(fused_step(tx)).lower(params, tx.init(params), grads(params, 0)).as_text()
    assert _kernel_calls(text), text[:2000]


@pytest.mark.parametrize("platform", ["cuda", "tpu"])
@pytest.mark.parametrize("name", MAKERS)
def test_a_step_lowered_for_an_accelerator_is_the_plain_composition(name, platform, default_device):
    """Lowered for a GPU or TPU from this CPU-only process (as an ahead-of-time compile or an
    export does), the step has no CPU kernel in it: export accepts it, where a CPU custom
    call would be refused."""
    exported = _lowered(MAKERS[name](), [platform])
    assert exported.platforms == (platform,)
    assert not _kernel_calls(exported.mlir_module())


@pytest.mark.parametrize("name", ["adam", "lion", "noisy_sgd"])
def test_a_step_lowered_for_a_cpu_and_an_accelerator_runs_the_kernels_on_the_cpu(name, default_device):
    """Lowered for both, the kernels are in the CPU branch only, and running the export here
    takes that branch: the composition's numbers."""
    tx = MAKERS[name]()
    params = tree(SIZES)
    state = tx.init(params)
    g = grads(params, 0)
    checks = [export.DisabledSafetyCheck.custom_call(t) for t in
              ("gradxform_adam_step", "gradxform_program_step", "gradxform_add_noise")]
    exported = export.export(jax.jit(fused_step(tx)), platforms=["cpu", "cuda"], disabled_checks=checks)(
        params, state, g
    )
    assert _kernel_calls(exported.mlir_module())
    _close(exported.call(params, state, g), jax.jit(plain_step(tx))(params, state, g))


@pytest.mark.parametrize("name", ["adam", "sgd+momentum", "sm3", "noisy_sgd"])
def test_gradient_through_a_jitted_step_with_kernels(name, default_device):
    """``jax.grad`` of a function calling an already-jitted step (meta-learning, unrolled
    optimization): the kernels have no derivative, so the derivative is the plain
    composition's, and the values are the step's."""
    tx = MAKERS[name]()
    params = tree(SIZES)
    state = tx.init(params)
    fused = jax.jit(fused_step(tx))
    plain = jax.jit(plain_step(tx))

    def loss(step, g):
        new, _ = step(params, state, g)
        return sum(jnp.sum(jnp.sin(x)) for x in jax.tree.leaves(new))

    g = grads(params, 0)
    value, got = jax.value_and_grad(functools.partial(loss, fused))(g)
    want_value, want = jax.value_and_grad(functools.partial(loss, plain))(g)
    _close(value, want_value, rtol=1e-5)
    _close(got, want, rtol=1e-5, atol=1e-6)
    assert any(float(jnp.max(jnp.abs(x))) > 0 for x in jax.tree.leaves(got))


@pytest.mark.parametrize("name", ["adam", "lion"])
def test_vmap_over_a_jitted_step_with_kernels(name, default_device):
    """Batching from outside the jit (an ensemble of optimizers): each member's step is the
    composition's."""
    tx = MAKERS[name]()
    members = jax.tree.map(lambda x: jnp.stack([x, 2 * x, -x]), tree(SIZES))
    g = jax.tree.map(lambda x: jnp.stack([x, x, 0.5 * x]), grads(tree(SIZES), 1))
    states = jax.vmap(tx.init)(members)
    fused = jax.jit(fused_step(tx))
    got = jax.vmap(fused)(members, states, g)
    want = jax.vmap(jax.jit(plain_step(tx)))(members, states, g)
    _close(got, want)


@pytest.mark.parametrize("name", ["adam", "lion", "noisy_sgd", "8-bit adam"])
def test_kernels_traced_at_lowering_match_the_composition_over_steps(name, default_device):
    tx = MAKERS[name]()
    params = tree(SIZES)
    fused = jax.jit(fused_step(tx), donate_argnums=(0, 1))
    plain = jax.jit(plain_step(tx))
    got, state = jax.tree.map(jnp.copy, params), tx.init(params)
    want, want_state = params, tx.init(params)
    for t in range(4):
        got, state = fused(got, state, grads(params, t))
        want, want_state = plain(want, want_state, grads(params, t))
    _close((got, state), (want, want_state), rtol=1e-5, atol=1e-6)


def test_an_accelerator_host_builds_no_kernels_for_an_accelerator_step(monkeypatch):
    """A GPU or TPU job never compiles the CPU kernels: lowering its step for the accelerator
    does not ask for them."""
    monkeypatch.setattr(_step, "_accelerator_by_default", lambda: True)

    def no_build():
        raise AssertionError("the CPU kernels were asked for")

    monkeypatch.setattr(_step, "kernel_status", no_build)
    for name in ("adam", "lion"):
        assert not _kernel_calls(_lowered(MAKERS[name](), ["cuda"]).mlir_module())


def _two_device_mesh():
    if jax.device_count() < 2:
        pytest.skip("needs two devices (tests/conftest.py simulates two CPUs)")
    return jax.sharding.Mesh(np.array(jax.devices()[:2]), ("d",))


def _sharded(mesh, params, tx):
    """``params`` split over the mesh along their first axis, and ``tx``'s state laid out
    like them (scalars replicated)."""
    split = NamedSharding(mesh, P("d"))
    params = jax.device_put(params, split)
    return params, tx.init(params), jax.device_put(grads(params, 0), split)


@pytest.mark.parametrize("name", ["adam", "sgd+momentum", "lion", "noisy_sgd"])
def test_a_step_partitioned_over_devices_keeps_its_sharding(name, default_device):
    """A step that XLA splits over devices takes the composition: a kernel would make the
    partitioner gather every parameter and moment onto every device and hand them back
    replicated. The parameters and state keep the parameters' sharding, with the
    composition's numbers."""
    mesh = _two_device_mesh()
    tx = MAKERS[name]()
    params, state, g = _sharded(mesh, tree([(96, 96), (8,)]), tx)
    step = jax.jit(fused_step(tx))
    text = step.lower(params, state, g).compile().as_text()
    assert "all-gather" not in text
    assert 'custom_call_target="gradxform_' not in text
    new, new_state = step(params, state, g)
    for x in jax.tree.leaves((new, new_state)):
        if x.ndim:
            assert x.sharding.spec == P("d"), x.sharding
    _close((new, new_state), jax.jit(plain_step(tx))(params, state, g))


@pytest.mark.parametrize("name", ["adam", "lion"])
def test_kernels_run_on_each_devices_shards_inside_shard_map(name, default_device):
    """Inside ``shard_map`` (every mesh axis manual) the step sees one device's shards: the
    kernels run on them, with the composition's numbers."""
    mesh = _two_device_mesh()
    tx = MAKERS[name]()
    params, state, g = _sharded(mesh, tree([(96, 96), (8,)]), tx)
    specs = jax.tree.map(lambda x: P("d") if x.ndim else P(), (params, state, g))
    step = jax.jit(jax.shard_map(fused_step(tx), mesh=mesh, in_specs=specs, out_specs=specs[:2]))
    assert _kernel_calls(step.lower(params, state, g).as_text())
    _close(step(params, state, g), jax.jit(plain_step(tx))(params, state, g))


@pytest.mark.parametrize("name", ["adam", "lion"])
def test_a_traced_hyperparameter_keeps_the_kernels_where_they_belong(name, default_device):
    """A transformation built inside the jitted function from a traced learning rate closes
    over a tracer. Its step still has the kernels on one CPU device and is differentiable in
    that learning rate, and it has no kernel when exported for a TPU or split over devices.
    (Where the default device is an accelerator such a step is the composition: it cannot
    be traced again when a CPU lowering asks for the kernels, and they are not built for it.)"""
    make = {"adam": gx.adam, "lion": gx.lion}[name]
    params = tree(SIZES)
    g = grads(params, 0)

    def step(lr, p, g, kernel=True):
        tx = make(lr)
        return gx.update_and_apply(tx, g, tx.init(p), p, kernel=kernel)

    fused, plain = jax.jit(step), jax.jit(functools.partial(step, kernel=False))
    assert bool(_kernel_calls(fused.lower(1e-2, params, g).as_text())) == (default_device == "cpu")
    _close(fused(1e-2, params, g), plain(1e-2, params, g))

    def loss(lr, kernel):
        return sum(jnp.sum(x) for x in jax.tree.leaves(step(lr, params, g, kernel)[0]))

    _close(jax.jit(jax.grad(loss), static_argnums=1)(1e-2, True), jax.grad(loss)(1e-2, False), rtol=1e-5)
    assert not _kernel_calls(export.export(fused, platforms=["tpu"])(1e-2, params, g).mlir_module())
    mesh = _two_device_mesh()
    sharded, _, sharded_g = _sharded(mesh, tree([(96, 96), (8,)]), make(1e-2))
    new, _ = fused(1e-2, sharded, sharded_g)
    assert all(x.sharding.spec == P("d") for x in jax.tree.leaves(new))


def test_a_step_with_effects_is_placed_like_any_step(default_device):
    """A step whose transformation has an effect (here a callback that counts its calls, as
    a verbose line search's print has) keeps its kernels on one CPU device and is the
    composition when split over devices (keeping the parameters' sharding); either way the
    callback runs once a step, with the composition's numbers. Where the default device is
    an accelerator such a step is the composition."""
    calls = []

    def update(updates, state, params=None):
        jax.debug.callback(lambda: calls.append(1))
        return updates, state

    tx = gx.chain(gx.adam(1e-2), gx.GradientTransformation(lambda p: (), update))
    step = jax.jit(fused_step(tx))
    plain = jax.jit(plain_step(tx))
    params = tree([(96, 96), (8,)])
    sharded = _sharded(_two_device_mesh(), params, tx)
    for args in ((params, tx.init(params), grads(params, 0)), sharded):
        lowered = step.lower(*args).as_text()
        single = args[0]["w000"].sharding.num_devices == 1
        assert bool(_kernel_calls(lowered)) == (single and default_device == "cpu")
        calls.clear()
        got = step(*args)
        jax.effects_barrier()
        assert len(calls) == 1
        _close(got, plain(*args))
    assert all(x.sharding.spec == P("d") for x in jax.tree.leaves(got[0]))


@pytest.mark.parametrize("name", ["adam", "sgd+momentum", "lion", "noisy_sgd"])
def test_a_step_over_an_explicitly_sharded_mesh_keeps_its_sharding(name, default_device):
    """With a mesh whose axes are ``Explicit`` (``jax.make_mesh(..., axis_types=...)`` and
    ``jax.set_mesh``), the shardings are part of the arrays' types while the step is traced.
    A kernel's outputs carry no sharding, so the step's results were typed, and laid out,
    as replicated: every device got a whole copy of the parameters and the state. The step
    is the composition there, and keeps the parameters' sharding."""
    if jax.device_count() < 2:
        pytest.skip("needs two devices (tests/conftest.py simulates two CPUs)")
    mesh = jax.make_mesh((2,), ("d",), axis_types=(jax.sharding.AxisType.Explicit,), devices=jax.devices()[:2])
    tx = MAKERS[name]()
    with jax.set_mesh(mesh):
        params, state, g = _sharded(mesh, tree([(96, 96), (8,)]), tx)
        step = jax.jit(fused_step(tx))
        assert not _kernel_calls(step.lower(params, state, g).as_text())
        new, new_state = step(params, state, g)
        want = jax.jit(plain_step(tx))(params, state, g)
    for x, y in zip(jax.tree.leaves((new, new_state)), jax.tree.leaves(want)):
        assert x.sharding.spec == y.sharding.spec, (x.shape, x.sharding, y.sharding)
    for x in jax.tree.leaves(new):
        assert x.sharding.is_equivalent_to(NamedSharding(mesh, P("d")), x.ndim), x.sharding
    _close((new, new_state), want)
