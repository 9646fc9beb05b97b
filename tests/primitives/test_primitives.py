"""Each primitive on its own: Optax's same-named building block where one exists, else the
formula written out in NumPy."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradxform as gx

RNG = np.random.default_rng(0)
GRADS = [{"w": jnp.asarray(RNG.normal(size=(3, 2)), jnp.float32), "b": jnp.asarray(RNG.normal(size=(2,)), jnp.float32)} for _ in range(6)]
PARAMS = {"w": jnp.asarray(RNG.normal(size=(3, 2)), jnp.float32), "b": jnp.asarray(RNG.normal(size=(2,)), jnp.float32)}


def outputs(tx, grads=GRADS, params=PARAMS):
    state = tx.init(params)
    out = []
    for g in grads:
        u, state = jax.jit(tx.update)(g, state, params)
        out.append(u)
    return out


def close(a, b, rtol=1e-6):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=1e-7)


ORACLE_PAIRS = [
    ("scale", lambda m: m.scale(-0.3)),
    ("scale_by_learning_rate", lambda m: m.scale_by_learning_rate(0.3)),
    ("scale_by_learning_rate-up", lambda m: m.scale_by_learning_rate(0.3, flip_sign=False)),
    ("scale_by_sign", lambda m: m.scale_by_sign()),
    ("scale_by_schedule", lambda m: m.scale_by_schedule(m.exponential_decay(-0.3, 2, 0.5))),
    ("scale_by_schedule-function", lambda m: m.scale_by_schedule(lambda count: 0.1 * count + 1.0)),
    ("ema", lambda m: m.ema(0.7)),
    ("ema-no-debias", lambda m: m.ema(0.7, debias=False)),
    ("trace", lambda m: m.trace(0.9)),
    ("trace-nesterov", lambda m: m.trace(0.9, nesterov=True)),
    ("add_decayed_weights", lambda m: m.add_decayed_weights(0.1)),
    ("add_decayed_weights-mask", lambda m: m.add_decayed_weights(0.1, mask={"w": True, "b": False})),
    ("add_decayed_weights-mask-fn", lambda m: m.add_decayed_weights(0.1, mask=lambda p: jax.tree.map(lambda x: x.ndim > 1, p))),
    ("clip", lambda m: m.clip(0.5)),
    ("clip_by_global_norm", lambda m: m.clip_by_global_norm(1.0)),
    ("scale_by_rms", lambda m: m.scale_by_rms(0.8)),
    ("scale_by_stddev", lambda m: m.scale_by_stddev(0.8)),
    ("scale_by_adam", lambda m: m.scale_by_adam()),
    ("scale_by_adamax", lambda m: m.scale_by_adamax()),
    ("scale_by_amsgrad", lambda m: m.scale_by_amsgrad(b1=0.8, eps_root=1e-8)),
    ("scale_by_amsgrad-no-bias-correction", lambda m: m.scale_by_amsgrad(bias_correction_mu=False, bias_correction_nu=False)),
    ("scale_by_rss", lambda m: m.scale_by_rss()),
    ("scale_by_adadelta", lambda m: m.scale_by_adadelta()),
    ("scale_by_lion", lambda m: m.scale_by_lion()),
    ("scale_by_lion-smooth", lambda m: m.scale_by_lion(mode="smooth", smooth_beta=2.5)),
    ("scale_by_lion-refined", lambda m: m.scale_by_lion(mode="refined")),
    ("scale_by_lion-refined-saturating", lambda m: m.scale_by_lion(b1=0.0, mode="refined")),
]


@pytest.mark.parametrize("name,make", ORACLE_PAIRS, ids=[n for n, _ in ORACLE_PAIRS])
def test_matches_optax_building_block(name, make):
    # Optax's moment update uses (1 - b2) rounded from double but debiases with
    # 1 - float32(b2)**t; ours uses the float32 b2 in both, so its first Adam step is exactly
    # +-1 where Optax's is off by ~7e-6 relative. Hence 1e-5, not 1e-6.
    close(outputs(make(gx)), outputs(make(optax)), rtol=1e-5)


def _np(tree):
    return {k: np.asarray(v, np.float64) for k, v in tree.items()}


def test_square_sqrt_add_absolute():
    g = {"w": jnp.array([-3.0, 4.0])}
    assert outputs(gx.square(), [g], g)[0]["w"].tolist() == [9.0, 16.0]
    assert outputs(gx.sqrt(), [{"w": jnp.array([9.0, 16.0])}], g)[0]["w"].tolist() == [3.0, 4.0]
    assert outputs(gx.add(0.5), [g], g)[0]["w"].tolist() == [-2.5, 4.5]
    assert outputs(gx.absolute(), [g], g)[0]["w"].tolist() == [3.0, 4.0]


def test_square_of_complex_is_real_squared_magnitude():
    g = {"w": jnp.array([3.0 + 4.0j])}
    out = gx.square().update(g, gx.EmptyState())[0]["w"]
    assert out.dtype == jnp.float32 and out.tolist() == [25.0]


def test_accumulate_is_a_running_sum():
    out = outputs(gx.accumulate(initial_value=0.5))
    total = {k: 0.5 + np.zeros_like(v) for k, v in _np(PARAMS).items()}
    for g, u in zip(GRADS, out):
        total = {k: total[k] + np.asarray(g[k]) for k in total}
        close(u, total)


def test_decayed_max_follows_its_recurrence():
    out = outputs(gx.decayed_max(0.6))
    m = {k: np.zeros_like(v) for k, v in _np(PARAMS).items()}
    for g, u in zip(GRADS, out):
        m = {k: np.maximum(0.6 * m[k], np.asarray(g[k])) for k in m}
        close(u, m)


def test_bias_correction_divides_by_one_minus_decay_power():
    for offset in (0, 1):
        out = outputs(gx.bias_correction(0.9, step_offset=offset))
        for t, (g, u) in enumerate(zip(GRADS, out), start=1):
            close(u, {k: np.asarray(g[k]) / (1 - 0.9 ** (t + offset)) for k in g})


def test_scale_by_update_rms_is_adadelta_numerator():
    rho, eps = 0.8, 1e-3
    out = outputs(gx.scale_by_update_rms(rho, eps))
    e = {k: np.zeros_like(v) for k, v in _np(PARAMS).items()}
    for g, u in zip(GRADS, out):
        expect = {k: np.asarray(g[k]) * np.sqrt(e[k] + eps) for k in g}
        close(u, expect, rtol=1e-5)
        e = {k: rho * e[k] + (1 - rho) * expect[k] ** 2 for k in e}


def test_interpolate_momentum_reads_before_writing():
    out = outputs(gx.interpolate_momentum(0.3, 0.7))
    m = {k: np.zeros_like(v) for k, v in _np(PARAMS).items()}
    for g, u in zip(GRADS, out):
        close(u, {k: 0.7 * np.asarray(g[k]) + 0.3 * m[k] for k in g}, rtol=1e-5)
        m = {k: 0.7 * m[k] + 0.3 * np.asarray(g[k]) for k in m}


def test_branch_combines_elementwise():
    g = {"w": jnp.array([2.0, -4.0])}
    two_g, three_g = np.array([4.0, -8.0]), np.array([6.0, -12.0])
    for combine, expect in [("add", two_g + three_g), ("subtract", two_g - three_g), ("multiply", two_g * three_g), ("divide", two_g / three_g)]:
        tx = gx.branch(gx.scale(2.0), gx.scale(3.0), combine=combine)
        np.testing.assert_allclose(outputs(tx, [g], g)[0]["w"], expect, rtol=1e-6)
    with pytest.raises(ValueError, match="combine must be one of"):
        gx.branch(gx.scale(1.0), gx.scale(1.0), combine="max")


def test_add_decayed_weights_needs_params_and_a_matching_mask():
    tx = gx.add_decayed_weights(0.1)
    with pytest.raises(ValueError, match="needs the parameters"):
        tx.update(GRADS[0], tx.init(PARAMS))
    bad = gx.add_decayed_weights(0.1, mask={"w": True})
    with pytest.raises(ValueError, match="mask"):
        bad.update(GRADS[0], bad.init(PARAMS), PARAMS)


def test_lion_modes_reject_unknown_names_and_bad_slopes():
    with pytest.raises(ValueError, match="mode must be one of"):
        gx.scale_by_lion(mode="soft")
    for bad in (0.0, -1.0, float("inf"), "2", True):
        with pytest.raises(ValueError, match="scale_by_lion: smooth_beta must be a finite number > 0"):
            gx.scale_by_lion(mode="smooth", smooth_beta=bad)
    gx.scale_by_lion(mode="hard", smooth_beta=0.0)  # only read in smooth mode, as in Optax


def test_refined_lion_saturates_where_the_hard_sign_would_and_is_linear_inside():
    g = jnp.array([-3.0, -0.25, 0.0, 0.5, 1.0, 7.0])
    tx = gx.scale_by_lion(b1=0.0, mode="refined")
    u, _ = tx.update(g, tx.init(g))
    np.testing.assert_array_equal(np.asarray(u), [-1.0, -0.25, 0.0, 0.5, 1.0, 1.0])
