"""LBSGD against a NumPy loop of MXNet's LBSGD update (warm-up curves, LARS, momentum)."""

import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx
from harness import mixed_params, run
from numpy_problem import coupled_grad, flat, layer_slices

STEPS = 50


def lbsgd_mxnet(lr, momentum, strategy, warmup_epochs, batch_scale, updates_per_epoch, begin_epoch, wd, steps, w):
    """MXNet's LBSGD: the t-th update (t = 1, 2, ...) scales the learning rate by

    - warm-up strategies: with nup = begin_epoch * updates_per_epoch + t and
      nwup = warmup_epochs * updates_per_epoch, batch_scale once nup >= nwup, else
      1 + (batch_scale - 1) * r with r = nup / nwup (linear), (nup / nwup)^2 (power2) or
      sqrt(nup / nwup) (sqrt);
    - lars: per layer, sqrt(|w|^2 / (|g|^2 + wd |w|^2 + 1e-18)) clipped to [0.01, 100];

    then takes MXNet's SGD-with-momentum step: mom = momentum * mom - lr' * (g + wd * w),
    w = w + mom."""
    mom = np.zeros_like(w)
    nwup = warmup_epochs * updates_per_epoch
    for t in range(1, steps + 1):
        g = coupled_grad(w)
        mult = np.ones_like(w)
        if strategy == "lars":
            for sl in layer_slices():
                w2, g2 = np.sum(w[sl] ** 2), np.sum(g[sl] ** 2)
                mult[sl] = min(max(np.sqrt(w2 / (g2 + wd * w2 + 1e-18)), 0.01), 100.0)
        else:
            nup = begin_epoch * updates_per_epoch + t
            if nup >= nwup:
                mult[:] = batch_scale
            else:
                r = {"linear": nup / nwup, "power2": (nup / nwup) ** 2, "sqrt": np.sqrt(nup / nwup)}[strategy]
                mult[:] = 1 + (batch_scale - 1) * r
        mom = momentum * mom - lr * mult * (g + wd * w)
        w = w + mom
    return w


SETTINGS = {
    # 30 warm-up updates, so the 50 steps cover the ramp and the plateau.
    "linear-momentum-decay": dict(learning_rate=0.01, momentum=0.9, warmup_strategy="linear", weight_decay=1e-2),
    "power2-resumed": dict(learning_rate=0.02, momentum=None, warmup_strategy="power2", begin_epoch=1),
    "sqrt": dict(learning_rate=0.01, momentum=0.5, warmup_strategy="sqrt"),
    "lars": dict(learning_rate=0.01, momentum=0.9, warmup_strategy="lars", weight_decay=1e-2),
}


@pytest.mark.parametrize("setting", sorted(SETTINGS), ids=str)
def test_lbsgd_matches_mxnet(setting):
    kw = dict(warmup_epochs=3, batch_scale=4.0, updates_per_epoch=10, begin_epoch=0, weight_decay=0.0)
    kw.update(SETTINGS[setting])
    params, _ = run(gx.lbsgd(**kw), STEPS)
    expected = lbsgd_mxnet(
        kw["learning_rate"],
        kw["momentum"] or 0.0,
        kw["warmup_strategy"],
        kw["warmup_epochs"],
        kw["batch_scale"],
        kw["updates_per_epoch"],
        kw["begin_epoch"],
        kw["weight_decay"],
        STEPS,
        flat(mixed_params()),
    )
    np.testing.assert_allclose(flat(params), expected, rtol=5e-5, atol=5e-6)


def test_lars_ratio_is_clipped():
    tx = gx.lars_layer_rate()
    p = jnp.array([1e-6, 0.0])
    u, _ = tx.update(jnp.array([1.0, 0.0]), tx.init(p), p)  # ratio 1e-6, clipped to 0.01
    np.testing.assert_allclose(np.asarray(u), [0.01, 0.0], rtol=1e-6)
    u, _ = tx.update(jnp.array([1e-6, 0.0]), tx.init(p), jnp.array([1.0, 0.0]))  # 1e6 -> 100
    np.testing.assert_allclose(np.asarray(u), [1e-4, 0.0], rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(warmup_strategy="cosine"), "warmup_strategy must be one of"),
        (dict(updates_per_epoch=0), "updates_per_epoch must be an integer >= 1"),
        (dict(warmup_epochs=2.5), "warmup_epochs must be an integer >= 0"),
        (dict(batch_scale=0.5), "batch_scale must be >= 1"),
    ],
    ids=["strategy", "updates-per-epoch", "warmup-epochs", "batch-scale"],
)
def test_invalid_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        gx.lbsgd(0.1, **kwargs)
