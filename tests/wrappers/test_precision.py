"""Mixed precision: bfloat16 parameters with a float32 master copy track a float32 run."""

import jax
import jax.numpy as jnp
import numpy as np

import gradxform as gx

STEPS = 1000


def _regression():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 16)).astype(np.float32)
    w_true = rng.normal(size=16).astype(np.float32)
    y = x @ w_true + 0.1 * rng.normal(size=256).astype(np.float32)
    return jnp.asarray(x), jnp.asarray(y)


def _train(tx, dtype):
    x, y = _regression()
    params = {"w": jnp.zeros(16, dtype), "b": jnp.zeros((), dtype)}

    def loss(p):
        pred = x.astype(dtype) @ p["w"] + p["b"]
        return jnp.mean((pred.astype(jnp.float32) - y) ** 2)

    def step(carry, _):
        p, s = carry
        u, s = tx.update(jax.grad(loss)(p), s, p)
        return (gx.apply_updates(p, u), s), None

    (p, s), _ = jax.jit(lambda c: jax.lax.scan(step, c, None, length=STEPS))((params, tx.init(params)))
    return p, s


def _error(params, reference):
    """Relative L2 distance of ``params`` from the float32 run."""
    a = np.concatenate([np.ravel(np.asarray(params[k], np.float32)) for k in ("w", "b")])
    b = np.concatenate([np.ravel(np.asarray(reference[k], np.float32)) for k in ("w", "b")])
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_bf16_with_fp32_master_copy_tracks_fp32_far_better_than_plain_bf16():
    adamw = lambda: gx.adamw(1e-3, weight_decay=1e-4)  # noqa: E731
    reference, _ = _train(adamw(), jnp.float32)
    # Plain bf16 AdamW with its moments in float32: only the parameters are rounded, so the
    # difference below is the master copy's doing alone.
    plain, _ = _train(gx.adamw(1e-3, weight_decay=1e-4, mu_dtype=jnp.float32, nu_dtype=jnp.float32), jnp.bfloat16)
    mixed, state = _train(gx.multi_precision(adamw()), jnp.bfloat16)

    plain_error, mixed_error = _error(plain, reference), _error(mixed, reference)
    message = f"relative error vs float32: plain bf16 AdamW {plain_error:.2e}, bf16 + fp32 master {mixed_error:.2e}"
    print(message)
    assert mixed_error < 0.2 * plain_error, message
    # bfloat16 keeps 8 bits of mantissa: the master copy's rounding is all that is left.
    assert mixed_error < 2**-7, message

    assert mixed["w"].dtype == jnp.bfloat16 and mixed["b"].dtype == jnp.bfloat16
    master = gx.master_params(state, mixed)
    assert master["w"].dtype == jnp.float32
    assert all(x.dtype in (jnp.float32, jnp.int32) for x in jax.tree.leaves(state.inner_state))
    # The user's parameters are the master copy rounded to bfloat16.
    np.testing.assert_array_equal(mixed["w"], master["w"].astype(jnp.bfloat16))
    assert _error(master, reference) < mixed_error


def test_float32_parameters_get_no_second_copy():
    params = {"w16": jnp.ones(3, jnp.bfloat16), "w32": jnp.ones(5, jnp.float32)}
    state = gx.multi_precision(gx.sgd(0.1)).init(params)
    assert isinstance(state.master["w32"], gx.MaskedNode)
    assert state.master["w16"].dtype == jnp.float32
