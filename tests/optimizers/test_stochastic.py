"""SGLD, ASGD and DC-ASGD against NumPy loops of their papers' (and torch's) equations, SGLD's
samples against a Gaussian target, and DC-ASGD without delay against SGD."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx
from harness import coupled_loss, grad_fn, mixed_params, run
from numpy_problem import coupled_grad, flat

STEPS = 50


# --------------------------------------------------------------------------- SGLD


def sgld_paper(a, b, gamma, steps, w, noise):
    """Welling & Teh 2011, eq. 4: w <- w - eps_t / 2 * grad + eta_t, eta_t ~ N(0, eps_t), with
    eps_t = a * (1 + t / b) ** -gamma (the paper's a' (b + t) ** -gamma, a' = a * b ** gamma).
    The draws eta_t are given (see the test)."""
    for t in range(steps):
        eps_t = a * (1 + t / b) ** -gamma
        w = w - eps_t / 2 * coupled_grad(w) + noise[t]
    return w


def test_sgld_matches_paper():
    """The noise depends on the key only, not on the gradients: a run on a zero gradient
    yields the draws, which the NumPy loop then adds to its own drift."""
    tx = gx.sgld(0.1, temperature=0.5, decay_steps=10.0, gamma=0.55, seed=4)
    params, _ = run(tx, STEPS)
    p0 = mixed_params()
    zeros = jax.tree.map(jnp.zeros_like, p0)

    def draw(state, _):
        u, state = tx.update(zeros, state, p0)
        return state, u

    _, noise = jax.jit(lambda s: jax.lax.scan(draw, s, None, length=STEPS))(tx.init(p0))
    noise = jax.tree.map(np.asarray, noise)
    noise = [flat(jax.tree.map(lambda x: x[t], noise)) for t in range(STEPS)]
    expected = sgld_paper(0.1, 10.0, 0.55, STEPS, flat(p0), noise)
    np.testing.assert_allclose(flat(params), expected, rtol=2e-5, atol=2e-5)
    # The noise is not negligible here: without it the run ends elsewhere.
    drift_only = sgld_paper(0.1, 10.0, 0.55, STEPS, flat(p0), np.zeros((STEPS, expected.size)))
    assert np.max(np.abs(expected - drift_only)) > 0.1


def test_sgld_noise_has_the_step_size_as_variance():
    """With a zero gradient the update is the noise alone: N(0, T * eps_t), fresh each step."""
    n, steps, lr, temperature, b, gamma = 20000, 8, 0.3, 0.5, 2.0, 0.55
    tx = gx.sgld(lr, temperature=temperature, decay_steps=b, gamma=gamma, seed=3)
    zeros = jnp.zeros(n)

    def step(state, _):
        u, state = tx.update(zeros, state, zeros)
        return state, u

    _, noise = jax.jit(lambda s: jax.lax.scan(step, s, None, length=steps))(tx.init(zeros))
    noise = np.asarray(noise, np.float64)
    variance = temperature * lr * (1 + np.arange(steps) / b) ** -gamma
    standardized = noise / np.sqrt(variance)[:, None]
    # Standard errors with n = 20000 draws: mean 1/sqrt(n) = 0.007, variance sqrt(2/n) = 0.01,
    # correlation 1/sqrt(n) = 0.007; 5 standard errors leave no room for a wrong scale
    # (e.g. the variance of eps_t / 2, or sqrt(eps_t) as variance) or a repeated key.
    np.testing.assert_allclose(standardized.mean(axis=1), 0.0, atol=0.035)
    np.testing.assert_allclose(standardized.var(axis=1), 1.0, atol=0.05)
    correlation = np.corrcoef(standardized)
    assert np.max(np.abs(correlation - np.eye(steps))) < 0.035


def test_sgld_samples_a_gaussian_target():
    """20000 independent chains (the coordinates of one vector) on loss (x - mu)^2 / (2 s^2),
    i.e. the target N(mu, s^2); the final iterates are samples."""
    mu, s2, n, steps, lr, gamma = 1.5, 0.49, 20000, 1500, 0.02, 0.33
    tx = gx.sgld(lr, decay_steps=100.0, gamma=gamma, seed=7)
    loss = lambda p: jnp.sum((p["x"] - mu) ** 2) / (2 * s2)
    start = {"x": jnp.zeros(n)}
    params, _ = run(tx, steps, params=start, loss=loss)
    x = np.asarray(params["x"], np.float64)
    # For this target the chain is x' - mu = (1 - eps / (2 s2)) (x - mu) + sqrt(eps) xi; with a
    # constant eps its stationary variance is s2 / (1 - eps / (4 s2)), a discretisation bias
    # of at most lr / (4 s2) = 1% here (the slowly decaying eps only shrinks it). Over 1500 steps the start is forgotten: the contraction factor
    # per step is at most 1 - eps_min / (2 s2) with eps_min >= 0.02 * 16 ** -0.33 = 0.008,
    # and 0.992 ** 1500 < 1e-5. Sampling errors with n = 20000: mean sqrt(s2 / n) = 0.005,
    # variance s2 * sqrt(2 / n) = 0.005. Tolerances: 5 standard errors (+ the 1% bias).
    assert abs(x.mean() - mu) < 0.025
    assert abs(x.var() - s2) < 0.025 + 0.01 * s2


def test_sgld_rejects_a_bad_seed():
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        gx.sgld(0.1, seed=-1)


# --------------------------------------------------------------------------- ASGD


def asgd_torch(lr, lambd, alpha, t0, weight_decay, steps, w):
    """The algorithm documented for torch.optim.ASGD (single tensor, no maximize)."""
    eta, mu, ax = lr, 1.0, np.zeros_like(w)
    for step in range(1, steps + 1):
        g = coupled_grad(w) + weight_decay * w
        w = w * (1 - lambd * eta)
        w = w - eta * g
        ax = w.copy() if mu == 1 else ax + (w - ax) * mu
        eta = lr / (1 + lambd * lr * step) ** alpha
        mu = 1 / max(1, step - t0)
    return w, ax


# t0 = 10 so that the averaging starts within the 50 steps; a large lambd so that the
# step-size decay and the shrinkage are visible.
ASGD_SETTING = dict(learning_rate=0.05, lambd=0.05, alpha=0.75, t0=10.0, weight_decay=0.01)


def test_asgd_matches_torch_algorithm():
    kw = ASGD_SETTING
    params, state = run(gx.asgd(**kw), STEPS)
    w, ax = asgd_torch(*kw.values(), STEPS, flat(mixed_params()))
    np.testing.assert_allclose(flat(params), w, rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(flat(gx.averaged_iterates(state)), ax, rtol=2e-5, atol=2e-6)


def test_asgd_against_torch_when_installed():
    torch = pytest.importorskip("torch")
    kw = ASGD_SETTING
    params, state = run(gx.asgd(**kw), STEPS)
    w = torch.tensor(flat(mixed_params()), requires_grad=True)
    opt = torch.optim.ASGD([w], lr=kw["learning_rate"], lambd=kw["lambd"], alpha=kw["alpha"], t0=kw["t0"],
                           weight_decay=kw["weight_decay"])
    for _ in range(STEPS):
        opt.zero_grad()
        w.grad = torch.tensor(coupled_grad(w.detach().numpy()))
        opt.step()
    np.testing.assert_allclose(flat(params), w.detach().numpy(), rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(flat(gx.averaged_iterates(state)), opt.state[w]["ax"].numpy(), rtol=2e-5, atol=2e-6)


def test_averaged_iterates_needs_one_average():
    with pytest.raises(ValueError, match="found 0"):
        gx.averaged_iterates(gx.sgd(0.1).init(jnp.zeros(2)))


# --------------------------------------------------------------------------- DC-ASGD


def _run_delayed(tx, delay, steps):
    """Each gradient is computed at the parameters of ``delay`` steps ago (the start before
    that) and applied to the current ones, with those stale parameters passed along."""
    grad = grad_fn(coupled_loss)

    def step(carry, _):
        p, s, queue = carry
        stale = queue[0]
        u, s = tx.update(grad(stale), s, p, stale_params=stale)
        return (gx.apply_updates(p, u), s, queue[1:] + (p,)), None

    p0 = mixed_params()
    carry = (p0, tx.init(p0), (p0,) * delay)
    (p, _, _), _ = jax.jit(lambda c: jax.lax.scan(step, c, None, length=steps))(carry)
    return p


def dcasgd_paper(lr, lamda, momentum, delay, steps, w):
    """Zheng et al. 2017: w_{t+1} = w_t - lr * (g(w_{t-delay}) + lamda g * g * (w_t - w_{t-delay})),
    with heavy-ball momentum v <- momentum v + (...) when momentum is given."""
    history = [w] * delay
    v = np.zeros_like(w)
    for _ in range(steps):
        stale = history[-delay]
        g = coupled_grad(stale)
        compensated = g + lamda * g * g * (w - stale)
        v = compensated + (momentum or 0.0) * v
        history.append(w)
        w = w - lr * v
    return w


def test_dcasgd_matches_paper_with_delay():
    lr, lamda, delay, momentum = 0.05, 2.0, 3, 0.5
    params = _run_delayed(gx.dcasgd(lr, momentum=momentum, lamda=lamda), delay, STEPS)
    expected = dcasgd_paper(lr, lamda, momentum, delay, STEPS, flat(mixed_params()))
    np.testing.assert_allclose(flat(params), expected, rtol=2e-5, atol=2e-6)
    # The compensation matters: without it the same delayed run ends elsewhere.
    uncompensated = dcasgd_paper(lr, 0.0, momentum, delay, STEPS, flat(mixed_params()))
    assert np.max(np.abs(expected - uncompensated)) > 1e-3


def test_dcasgd_with_zero_delay_equals_sgd():
    momentum = 0.9
    grad = grad_fn(coupled_loss)
    dc, sgd = gx.dcasgd(0.05, momentum=momentum, lamda=3.0), gx.sgd(0.05, momentum=momentum)

    def step(carry, _):
        (p, s), (q, r) = carry
        u, s = dc.update(grad(p), s, p, stale_params=p)
        v, r = sgd.update(grad(q), r, q)
        return ((gx.apply_updates(p, u), s), (gx.apply_updates(q, v), r)), None

    p0 = mixed_params()
    carry = ((p0, dc.init(p0)), (p0, sgd.init(p0)))
    ((p, _), (q, _)), _ = jax.jit(lambda c: jax.lax.scan(step, c, None, length=STEPS))(carry)
    # XLA may fuse the two compiled graphs differently (the compensation also reads p), so
    # over 50 steps they agree to float32 rounding; one step outside jit is bit-exact.
    np.testing.assert_allclose(flat(p), flat(q), rtol=1e-6, atol=1e-6)
    g = grad(p0)
    u, _ = dc.update(g, dc.init(p0), p0, stale_params=p0)
    v, _ = sgd.update(g, sgd.init(p0), p0)
    np.testing.assert_array_equal(flat(u), flat(v))
    # Without stale_params the gradient is taken as fresh: SGD again.
    np.testing.assert_array_equal(flat(dc.update(g, dc.init(p0), p0)[0]), flat(v))


def test_dcasgd_stale_params_must_match():
    tx = gx.dcasgd(0.1)
    p = {"a": jnp.ones(2)}
    with pytest.raises(ValueError, match="stale_params"):
        tx.update(p, tx.init(p), p, stale_params={"b": jnp.ones(2)})
