"""Optax's remaining optimizers (first half) agree with Optax's same-named ones over 100 steps.

Oracle: Optax. Same objective and protocol as ``test_classic_parity.py``: the learning
rates keep each run in its transient, where a last-bit difference is not amplified.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradxform as gx
from harness import assert_trees_close, coupled_loss, grad_fn, mixed_params, run

F32, C64 = jnp.float32, jnp.complex64
# (name, args, kwargs, dtype): every name with its defaults (float32) and with other
# hyperparameters, in complex64 wherever Optax supports complex parameters.
CASES = [
    ("adabelief", (1e-3,), {}, F32),
    ("adabelief", (1e-3,), dict(b1=0.8, b2=0.9, eps=1e-8, eps_root=1e-10, nesterov=True), C64),
    ("yogi", (1e-3,), {}, F32),
    ("yogi", (1e-3,), dict(b1=0.8, b2=0.9, eps=1e-4), C64),
    ("radam", (1e-3,), {}, F32),
    ("radam", (1e-3,), dict(b1=0.8, b2=0.9, eps=1e-6, eps_root=1e-8, threshold=4.0, nesterov=True), C64),
    ("adan", (1e-3,), {}, F32),
    ("adan", (1e-3,), dict(b1=0.9, b2=0.8, b3=0.95, eps=1e-6, eps_root=0.0, weight_decay=0.1), C64),
    ("novograd", (1e-3,), {}, F32),
    ("novograd", (1e-3,), dict(b1=0.8, b2=0.5, eps=1e-4, eps_root=1e-6, weight_decay=0.1), C64),
    ("lamb", (1e-3,), {}, F32),
    ("lamb", (1e-3,), dict(b1=0.8, b2=0.9, eps=1e-4, eps_root=1e-8, weight_decay=0.1), C64),
    ("lars", (0.05,), {}, F32),
    ("lars", (0.05,), dict(weight_decay=0.1, trust_coefficient=0.01, eps=1e-3, momentum=0.5, nesterov=True), C64),
    ("fromage", (1e-3,), {}, F32),
    ("fromage", (1e-2,), dict(min_norm=1e-3), C64),
    ("adafactor", (1e-3,), {}, F32),
    ("adafactor", (1e-3,), dict(min_dim_size_to_factor=2, decay_rate=0.5, clipping_threshold=None, momentum=0.9, dtype_momentum=C64, weight_decay_rate=0.1, eps=1e-10), C64),
    ("adafactor", (None,), dict(factored=False, clipping_threshold=0.5), F32),
    ("sm3", (1e-2,), {}, F32),
    ("sm3", (1e-2,), dict(momentum=0.5), F32),  # Optax's SM3 rejects complex parameters
    # Keys of the "rbg" generator compile in half the time of the default one.
    ("noisy_sgd", (0.02,), dict(key=jax.random.key(0, impl="rbg")), F32),
    ("noisy_sgd", (0.02,), dict(eta=0.1, gamma=0.9, key=jax.random.key(3, impl="rbg")), C64),
    ("optimistic_gradient_descent", (0.02,), {}, F32),
    ("optimistic_gradient_descent", (0.02,), dict(alpha=0.5, beta=2.0), C64),
    ("optimistic_adam_v2", (1e-3,), {}, F32),
    ("optimistic_adam_v2", (1e-3,), dict(alpha=0.5, beta=2.0, b1=0.8, b2=0.9, eps=1e-6, nesterov=False), C64),
]
IDS = [
    f"{n}-{'-'.join(f'{k}={v}' for k, v in kw.items() if k != 'key') or 'defaults'}-{jnp.dtype(dt).name}"
    for n, _, kw, dt in CASES
]


def _oracle(name, args, kwargs):
    """Optax's transformation; for RAdam with its ``b2`` as the float32 we keep in the state.

    RAdam's ``rho_t`` subtracts two numbers near ``2 / (1 - b2)``, so the rounding of ``b2``
    to float32 (hyperparameters are float32 data here) changes ``rho_t`` by about 0.5% early
    on; given the same float32 ``b2``, Optax agrees to the last bits.
    """
    if name == "radam":
        kwargs = {**kwargs, "b2": np.float32(kwargs.get("b2", 0.999))}
    return getattr(optax, name)(*args, **kwargs)


def _params(name, dtype=F32):
    params = mixed_params(dtype)
    if name == "sm3":  # Optax's SM3 fails on scalar parameters
        del params["s"]
    return params


def run_both(ours, oracle, params, steps=100):
    """``harness.run`` for two optimizers in one compiled function (one XLA compilation
    instead of two: most of this file's time is compiling)."""
    grad = grad_fn(coupled_loss)

    def scan(tx, carry):
        def step(c, _):
            p, s = c
            u, s = tx.update(grad(p), s, p)
            return (gx.apply_updates(p, u), s), None

        return jax.lax.scan(step, carry, None, length=steps)[0][0]

    txs = (ours, oracle)
    return jax.jit(lambda carries: [scan(tx, c) for tx, c in zip(txs, carries)])([(params, tx.init(params)) for tx in txs])


@pytest.mark.parametrize("name,args,kwargs,dtype", CASES, ids=IDS)
def test_matches_optax_jit(name, args, kwargs, dtype):
    ours, ref = run_both(getattr(gx, name)(*args, **kwargs), _oracle(name, args, kwargs), _params(name, dtype))
    assert all(x.dtype == dtype for x in jax.tree.leaves(ours))
    # NaN equals NaN in the comparison below: a case whose run diverges would check nothing.
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(ref)), "the oracle's run is not finite"
    assert_trees_close(ours, ref)


EAGER = [("lars", (0.05,), {}), ("optimistic_gradient_descent", (0.02,), dict(alpha=0.5, beta=2.0))]


@pytest.mark.parametrize("name,args,kwargs", EAGER, ids=[n for n, _, _ in EAGER])
def test_matches_optax_eager(name, args, kwargs):
    ours, _ = run(getattr(gx, name)(*args, **kwargs), 5, jit=False, params=_params(name))
    ref, _ = run(_oracle(name, args, kwargs), 5, params=_params(name))
    assert_trees_close(ours, ref)


def _mask(params):
    return {k: jnp.ndim(v) > 1 for k, v in params.items()}


@pytest.mark.parametrize(
    "ours,oracle",
    [
        # the learning rate enters twice (step size and shrink), both from the schedule
        (lambda: gx.fromage(gx.schedules.linear_schedule(1e-2, 1e-3, 50)), lambda: optax.fromage(optax.linear_schedule(1e-2, 1e-3, 50))),
        (
            lambda: gx.lars(0.05, weight_decay=0.1, weight_decay_mask=_mask, trust_ratio_mask=_mask),
            lambda: optax.lars(0.05, weight_decay=0.1, weight_decay_mask=_mask, trust_ratio_mask=_mask),
        ),
    ],
    ids=["fromage-schedule", "lars-masks"],
)
def test_schedules_and_masks_match_optax(ours, oracle):
    assert_trees_close(*run_both(ours(), oracle(), mixed_params()))


@pytest.mark.parametrize(
    "name,stages",
    [
        ("lamb", ["scale_by_adam", "add_decayed_weights", "scale_by_trust_ratio", "scale_by_learning_rate"]),
        ("lars", ["add_decayed_weights", "scale_by_trust_ratio", "trace"]),
        ("adabelief", ["scale_by_belief", "scale_by_learning_rate"]),
        ("yogi", ["yogi_moment", "bias_correction"]),
        ("radam", ["rectify"]),
        ("adan", ["scale_by_adan", "add_decayed_weights", "scale_by_learning_rate"]),
        ("novograd", ["layer_moment", "trace"]),
        ("adafactor", ["scale_by_factored_rms", "clip_by_block_rms", "scale_by_param_block_rms"]),
        ("sm3", ["sm3_accumulator", "ema"]),
        ("noisy_sgd", ["add_noise"]),
        ("optimistic_adam_v2", ["scale_by_adam", "scale_by_optimistic_gradient", "previous"]),
    ],
)
def test_describe_shows_the_composition(name, stages):
    text = gx.describe(getattr(gx, name)(1e-3))
    for stage in stages:
        assert stage + "(" in text, (stage, text)


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda: gx.yogi(1e-3, b2=1.5), "b2"),
        (lambda: gx.radam(1e-3, b1=-0.1), "b1"),
        (lambda: gx.lars(-1.0), "learning_rate"),
        (lambda: gx.adafactor(decay_offset=-1), "decay_offset"),
        (lambda: gx.adafactor(min_dim_size_to_factor=0), "min_dim_size_to_factor"),
        (lambda: gx.scale_by_yogi(initial_accumulator_value=-1.0), "initial_accumulator_value"),
        (lambda: gx.noisy_sgd(0.1, key=1, seed=2), "key or seed"),
    ],
    ids=["yogi-b2", "radam-b1", "lars-lr", "adafactor-offset", "adafactor-min-dim", "yogi-initial", "noisy-key-seed"],
)
def test_invalid_arguments_are_named(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_adafactor_decay_offset_on_a_fresh_state_is_finite_and_starts_at_step_0():
    # Optax's decay 1 - (count - offset + 1)^-decay_rate is inf or NaN until count reaches
    # the offset, so its parameters turn NaN at once; here the decay stays at its step-0
    # value (0: the second moment is the latest squared gradient) until then.
    params = {"b": jnp.array([1.0, -2.0, 3.0])}
    grads = [{"b": jnp.array([0.5, 1.0, -1.5]) * (k + 1)} for k in range(6)]
    tx = gx.scale_by_factored_rms(decay_rate=0.8, step_offset=3, epsilon=1e-30)
    state = tx.init(params)
    for k, g in enumerate(grads):
        _, new = tx.update(g, state, params)
        b = 1.0 - (max(k - 3, 0) + 1) ** -0.8  # the decay at 0-based step max(t - offset, 0)
        expected = b * np.asarray(state.inner_state.v["b"]) + (1 - b) * np.asarray(g["b"]) ** 2
        np.testing.assert_allclose(new.inner_state.v["b"], expected, rtol=1e-6)
        state = new
    updates, _ = jax.jit(gx.adafactor(decay_offset=3).update)(grads[0], gx.adafactor(decay_offset=3).init(params), params)
    assert bool(jnp.all(jnp.isfinite(updates["b"])))
    np.testing.assert_allclose(updates["b"], gx.adafactor().update(grads[0], gx.adafactor().init(params), params)[0]["b"], rtol=1e-6)


def test_sm3_rejects_complex_parameters():
    tx = gx.sm3(1e-2)
    with pytest.raises(ValueError, match="complex"):
        tx.init({"w": jnp.ones((2, 2), jnp.complex64)})


@pytest.mark.parametrize("name", ["adabelief", "adan"])
def test_state_is_as_large_as_optax(name):
    def size(state):  # parameter-shaped arrays only: hyperparameters and counters are scalars
        return sum(x.size for x in jax.tree.leaves(state) if x.ndim)

    params = mixed_params()
    assert size(getattr(gx, name)(1e-3).init(params)) == size(getattr(optax, name)(1e-3).init(params))
