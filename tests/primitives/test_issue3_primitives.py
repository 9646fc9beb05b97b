"""The primitives behind Optax's remaining optimizers, each against a NumPy loop of its
equation (written from the papers), and pairs of compositions that must be equal."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx
from harness import assert_trees_close, run

RNG = np.random.default_rng(0)
GRADS = RNG.normal(size=(6, 3, 4)).astype(np.float32)  # 6 steps of a (3, 4) gradient


def _outputs(tx, grads=GRADS, params=None):
    """The stage's outputs for a sequence of gradients, in one compiled loop."""
    params = jnp.ones(grads.shape[1:], jnp.float32) if params is None else params

    @jax.jit
    def go(gs):
        state, outs = tx.init(params), []
        for g in gs:
            out, state = tx.update(g, state, params)
            outs.append(out)
        return jnp.stack(outs)

    return np.asarray(go(jnp.asarray(grads)))


def test_previous_and_ema_difference():
    prev, v, outs_prev, outs_v = GRADS[0], np.zeros_like(GRADS[0]), [], []
    for g in GRADS:
        outs_prev.append(prev)
        v = 0.7 * v + 0.3 * (g - prev)
        outs_v.append(v)
        prev = g
    np.testing.assert_allclose(_outputs(gx.previous()), np.stack(outs_prev), rtol=1e-6)
    np.testing.assert_allclose(_outputs(gx.ema_difference(0.7)), np.stack(outs_v), rtol=1e-5, atol=1e-6)
    composed = gx.chain(gx.branch(gx.identity(), gx.previous(), combine="subtract"), gx.ema(0.7, debias=False))
    np.testing.assert_allclose(_outputs(gx.ema_difference(0.7)), _outputs(composed), rtol=1e-5, atol=1e-6)


def test_prediction_error_and_yogi_moment():
    m, v, errors, moments = np.zeros_like(GRADS[0]), np.full_like(GRADS[0], 0.1), [], []
    for g in GRADS:
        m = 0.8 * m + 0.2 * g
        errors.append(g - m)
        v = v - 0.1 * np.sign(v - g**2) * g**2
        moments.append(v)
    np.testing.assert_allclose(_outputs(gx.prediction_error(0.8)), np.stack(errors), rtol=1e-5, atol=1e-6)
    yogi = gx.chain(gx.square(), gx.yogi_moment(0.9, initial_value=0.1))
    np.testing.assert_allclose(_outputs(yogi), np.stack(moments), rtol=1e-5, atol=1e-6)


def test_rectify_matches_the_paper():
    b2 = np.float32(0.9)  # rho_inf = 19: the rectified phase starts at the 6th step
    rho_inf = 2 / (1 - np.float64(b2)) - 1
    expected = []
    for t in range(1, 7):
        rho = rho_inf - 2 * t * b2**t / (1 - b2**t)
        r = np.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho)) if rho >= 5 else None
        expected.append(np.abs(GRADS[t - 1]) / r if r else np.ones_like(GRADS[0]))
    out = _outputs(gx.chain(gx.absolute(), gx.rectify(float(b2))))
    np.testing.assert_allclose(out, np.stack(expected), rtol=1e-4)
    assert np.all(out[:5] == 1.0) and not np.all(out[5] == 1.0)


def test_layer_moment():
    v, expected = None, []
    for g in GRADS:
        sq = np.sum(g.astype(np.float64) ** 2)
        v = sq if v is None else 0.6 * v + 0.4 * sq
        expected.append(v)
    np.testing.assert_allclose(_outputs(gx.layer_moment(0.6)), np.array(expected), rtol=1e-5)


def test_trust_ratio_and_parameter_scales():
    w = RNG.normal(size=(3, 4)).astype(np.float32)
    g = GRADS[:1]
    ratio = 0.5 * np.linalg.norm(w) / (np.linalg.norm(g[0]) + 0.1)
    out = _outputs(gx.scale_by_trust_ratio(trust_coefficient=0.5, eps=0.1), g, jnp.asarray(w))
    np.testing.assert_allclose(out[0], ratio * g[0], rtol=1e-5)
    # a parameter that is still zero keeps its update (ratio 1)
    np.testing.assert_allclose(_outputs(gx.scale_by_trust_ratio(), g, jnp.zeros((3, 4)))[0], g[0], rtol=1e-6)
    rms = np.sqrt(np.mean(w**2))
    np.testing.assert_allclose(_outputs(gx.scale_by_param_block_rms(), g, jnp.asarray(w))[0], rms * g[0], rtol=1e-5)
    np.testing.assert_allclose(_outputs(gx.scale_by_param_block_norm(), g, jnp.asarray(w))[0], np.linalg.norm(w) * g[0], rtol=1e-5)
    np.testing.assert_allclose(_outputs(gx.add_scaled_params(-0.25), g, jnp.asarray(w))[0], g[0] - 0.25 * w, rtol=1e-5)


def test_factored_rms_matches_the_paper():
    """Shazeer & Stern (2018), algorithm 4 without clipping: row and column averages of
    ``G^2 + eps`` with decay ``1 - t^-0.8``, ``V = R C / mean(R)``, output ``G / sqrt(V)``."""
    grads = RNG.normal(size=(5, 3, 4)).astype(np.float32)  # rows: 3, columns: 4
    r, c, expected = np.zeros(3), np.zeros(4), []
    for t, g in enumerate(grads, start=1):
        beta = 1 - t**-0.8
        s = g.astype(np.float64) ** 2 + 1e-30
        r = beta * r + (1 - beta) * s.mean(axis=1)
        c = beta * c + (1 - beta) * s.mean(axis=0)
        expected.append(g / np.sqrt(np.outer(r, c) / r.mean()))
    out = _outputs(gx.scale_by_factored_rms(min_dim_size_to_factor=3), grads)
    np.testing.assert_allclose(out, np.stack(expected), rtol=1e-4)
    state = gx.scale_by_factored_rms(min_dim_size_to_factor=3).init(jnp.zeros((3, 4))).inner_state
    assert state.v_row.shape == (3,) and state.v_col.shape == (4,) and state.v.shape == ()  # sublinear


def test_sm3_accumulator_matches_the_paper():
    """Anil et al. (2019), SM3-II: ``nu = g^2 + min(row acc, col acc)``; accumulators are
    the row and column maxima of ``nu``; output ``g / sqrt(nu)``."""
    row, col, expected = np.zeros(3), np.zeros(4), []
    for g in GRADS:
        nu = g.astype(np.float64) ** 2 + np.minimum(row[:, None], col[None, :])
        row, col = nu.max(axis=1), nu.max(axis=0)
        expected.append(g / np.sqrt(nu))
    np.testing.assert_allclose(_outputs(gx.sm3_accumulator(eps=0.0)), np.stack(expected), rtol=1e-5)


@pytest.mark.parametrize(
    "make,shape,match",
    [
        (lambda: gx.adafactor(), (1, 4), r"gradient at 'w' has shape \(1, 4\).*\(\(\), \(\), \(3, 4\)\)"),
        (lambda: gx.scale_by_factored_rms(min_dim_size_to_factor=3), (3, 5), r"gradient at 'w' has shape \(3, 5\).*\(\(3,\), \(4,\), \(\)\)"),
        (lambda: gx.adafactor(), (), r"gradient at 'w' has shape \(\)"),
        (lambda: gx.sm3(0.1), (1, 4), r"sm3_accumulator: the gradient at 'w' has shape \(1, 4\).*\[\(3,\), \(4,\)\]"),
        (lambda: gx.sm3_accumulator(), (12,), r"sm3_accumulator: the gradient at 'w' has shape \(12,\)"),
    ],
    ids=["adafactor-broadcastable", "factored-wider", "adafactor-scalar", "sm3-broadcastable", "sm3-raveled"],
)
def test_factored_state_rejects_gradients_of_another_shape(make, shape, match):
    # Adafactor's state is not shaped like the parameters, so the usual check passed and a
    # (1, 4) gradient was broadcast against a (3, 4) moment; SM3 failed inside a reshape.
    tx = make()
    state = tx.init({"w": jnp.ones((3, 4))})
    with pytest.raises(ValueError, match=match):
        jax.jit(tx.update)({"w": jnp.ones(shape)}, state)


def test_sm3_state_with_an_array_where_its_accumulators_belong_is_named():
    # A hand-built state with one array per leaf, not the list of per-axis accumulators.
    tx = gx.sm3_accumulator()
    state = tx.init({"w": jnp.ones((3, 4))})
    state = state._replace(inner_state=state.inner_state._replace(mu={"w": jnp.zeros((3, 4))}))
    with pytest.raises(ValueError, match=r"gradient at 'w' has shape \(3, 4\).*\[\(3, 4\)\]"):
        tx.update({"w": jnp.ones((3, 4))}, state)


@pytest.mark.parametrize(
    "ours,reference",
    [
        # LARS without weight decay and without the trust ratio is SGD with momentum
        (lambda: gx.lars(0.02, trust_ratio_mask=False), lambda: gx.sgd(0.02, momentum=0.9)),
        # RAdam whose rectification never starts is debiased momentum
        (lambda: gx.radam(0.02, threshold=1e6), lambda: gx.chain(gx.ema(0.9), gx.scale_by_learning_rate(0.02))),
        # optimistic descent without optimism is gradient descent
        (lambda: gx.optimistic_gradient_descent(0.02, beta=0.0), lambda: gx.sgd(0.02)),
    ],
    ids=["lars-is-momentum-sgd", "radam-is-momentum", "ogd-is-gd"],
)
def test_equal_compositions(ours, reference):
    assert_trees_close(run(ours(), 30)[0], run(reference(), 30)[0])
