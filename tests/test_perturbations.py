"""gx.perturbations against optax.perturbations: same key, same values and gradients."""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradxform as gx

NOISES = ["Gumbel", "Normal"]


def _soft_argmax_like(x):
    # Piecewise constant in x: a one-hot argmax, scaled so outputs are not all 0/1.
    return jax.nn.one_hot(jnp.argmax(x), x.shape[-1]) * jnp.arange(1.0, x.shape[-1] + 1)


def _tree_fun(x):
    return {"hot": _soft_argmax_like(x["a"]), "max": jnp.max(x["b"]) + jnp.sign(x["a"]).sum()}


def test_takes_optaxs_arguments():
    ours = inspect.signature(gx.perturbations.make_perturbed_fun).parameters
    theirs = inspect.signature(optax.perturbations.make_perturbed_fun).parameters
    assert list(ours) == list(theirs)
    for name, p in theirs.items():
        if name == "noise":
            assert type(ours[name].default).__name__ == type(p.default).__name__ == "Gumbel"
        else:
            assert ours[name].default == p.default, name
    for noise in NOISES:
        for method in ("sample", "log_prob"):
            ours = inspect.signature(getattr(getattr(gx.perturbations, noise), method)).parameters
            theirs = inspect.signature(getattr(getattr(optax.perturbations, noise), method)).parameters
            assert list(ours) == list(theirs)
            assert [q.default for q in ours.values()] == [q.default for q in theirs.values()]


@pytest.mark.parametrize("noise", NOISES)
def test_noise_matches_optax(noise):
    ours, theirs = getattr(gx.perturbations, noise)(), getattr(optax.perturbations, noise)()
    key = jax.random.key(7)
    np.testing.assert_array_equal(ours.sample(key), theirs.sample(key))
    np.testing.assert_array_equal(ours.sample(key, (3, 4), jnp.float16), theirs.sample(key, (3, 4), jnp.float16))
    x = jnp.linspace(-3.0, 3.0, 13)
    np.testing.assert_allclose(ours.log_prob(x), theirs.log_prob(x), rtol=1e-6)


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("use_baseline", [True, False], ids=["baseline", "no-baseline"])
@pytest.mark.parametrize("noise", NOISES)
def test_values_and_gradients_match_optax(noise, use_baseline, jit):
    kwargs = dict(num_samples=64, sigma=0.5, use_baseline=use_baseline)
    ours = gx.perturbations.make_perturbed_fun(_soft_argmax_like, noise=getattr(gx.perturbations, noise)(), **kwargs)
    theirs = optax.perturbations.make_perturbed_fun(
        _soft_argmax_like, noise=getattr(optax.perturbations, noise)(), **kwargs
    )
    key, x = jax.random.key(3), jnp.array([0.3, 0.1, 0.5, -0.2])
    maybe_jit = jax.jit if jit else (lambda f: f)
    np.testing.assert_allclose(maybe_jit(ours)(key, x), theirs(key, x), rtol=1e-5, atol=1e-6)
    jac = maybe_jit(jax.jacrev(ours, argnums=1))(key, x)
    np.testing.assert_allclose(jac, jax.jacrev(theirs, argnums=1)(key, x), rtol=1e-4, atol=1e-5)
    assert np.abs(jac).sum() > 0  # the argmax itself has zero gradient; the smoothed one does not


def test_pytree_input_and_output_match_optax():
    ours = gx.perturbations.make_perturbed_fun(_tree_fun, num_samples=32, sigma=0.3)
    theirs = optax.perturbations.make_perturbed_fun(_tree_fun, num_samples=32, sigma=0.3)
    key, x = jax.random.key(0), {"a": jnp.array([0.2, -0.1, 0.4]), "b": jnp.array([[1.0, 0.9], [0.5, 1.1]])}
    jax.tree.map(np.testing.assert_allclose, ours(key, x), theirs(key, x))
    loss = lambda f: lambda x: f(key, x)["max"] + f(key, x)["hot"].sum()
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
        jax.grad(loss(ours))(x),
        jax.grad(loss(theirs))(x),
    )


@pytest.mark.parametrize("num_samples", [0, -1, 2.5, True], ids=["zero", "negative", "float", "bool"])
def test_rejects_a_bad_num_samples(num_samples):
    with pytest.raises(ValueError, match="num_samples must be a positive integer"):
        gx.perturbations.make_perturbed_fun(_soft_argmax_like, num_samples=num_samples)


def _argmax(x):
    return jax.nn.one_hot(jnp.argmax(x), x.shape[-1])


BAD_ARGUMENTS = [
    ("sigma-zero", dict(sigma=0.0), "sigma must be > 0"),  # z = (y - x) / 0: NaN everywhere
    ("sigma-negative", dict(sigma=-0.5), "sigma must be > 0"),
    ("sigma-string", dict(sigma="0.1"), "sigma must be a real number"),
    ("noise-name", dict(noise="gumbel"), "noise must have sample"),
    ("noise-class", dict(noise=gx.perturbations.Normal), "noise must have sample"),
]


@pytest.mark.parametrize("kwargs,match", [c[1:] for c in BAD_ARGUMENTS], ids=[c[0] for c in BAD_ARGUMENTS])
def test_rejects_bad_arguments_naming_them(kwargs, match):
    with pytest.raises(ValueError, match=match):
        gx.perturbations.make_perturbed_fun(_argmax, 10, **kwargs)


def test_rejects_a_fun_that_is_not_callable():
    with pytest.raises(ValueError, match="fun must be a function"):
        gx.perturbations.make_perturbed_fun(jnp.ones(3))


def test_names_an_integer_leaf_of_the_input():
    smooth = gx.perturbations.make_perturbed_fun(lambda t: t["w"] * 1.0, 10)
    with pytest.raises(ValueError, match=r"x must have floating-point leaves.*'w'.*int32"):
        smooth(jax.random.key(0), {"w": jnp.asarray([1, 2, 3])})
