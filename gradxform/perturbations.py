"""Differentiable perturbed functions, under Optax's names: ``gx.perturbations.make_perturbed_fun``
and the noise distributions ``Gumbel`` and ``Normal``."""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from gradxform import tree as _tree
from gradxform.core import POSITIVE, check_number, path_str


class Normal:
    """The standard normal distribution, as noise for `make_perturbed_fun`.

    References:
      Berthet, Blondel, Teboul, Cuturi, Vert & Bach, `Learning with Differentiable
      Perturbed Optimizers <https://arxiv.org/abs/2002.08676>`_, 2020.

    Example:
      >>> import gradxform as gx, jax
      >>> gx.perturbations.Normal().sample(jax.random.key(0), (2, 3)).shape
      (2, 3)
    """

    def sample(
        self,
        key: jax.typing.ArrayLike,
        sample_shape: tuple[int, ...] = (),
        dtype: jax.typing.DTypeLike = float,
    ) -> jax.Array:
        """Draws standard normal samples.

        Args:
          key: a PRNG key.
          sample_shape: the shape of the result.
          dtype: a floating dtype.

        Returns:
          An array of shape ``sample_shape``.

        Example:
          >>> import gradxform as gx, jax
          >>> gx.perturbations.Normal().sample(jax.random.key(0)).shape
          ()
        """
        return jax.random.normal(key, sample_shape, dtype)

    def log_prob(self, inputs: jax.Array) -> jax.Array:
        """The log density, elementwise, up to its additive constant: ``-inputs**2 / 2``.

        Args:
          inputs: points at which to evaluate it.

        Returns:
          An array shaped like ``inputs``.

        Example:
          >>> import gradxform as gx, jax.numpy as jnp
          >>> print(gx.perturbations.Normal().log_prob(jnp.array([1.0, 2.0])))
          [-0.5 -2. ]
        """
        return -(inputs**2) / 2


class Gumbel:
    """The standard Gumbel distribution, as noise for `make_perturbed_fun` (its default).

    Gumbel noise added to scores makes their argmax a sample of the softmax distribution,
    the classic choice for perturbed argmax.

    References:
      Berthet, Blondel, Teboul, Cuturi, Vert & Bach, `Learning with Differentiable
      Perturbed Optimizers <https://arxiv.org/abs/2002.08676>`_, 2020.

    Example:
      >>> import gradxform as gx, jax
      >>> gx.perturbations.Gumbel().sample(jax.random.key(0), (4,)).shape
      (4,)
    """

    def sample(
        self,
        key: jax.typing.ArrayLike,
        sample_shape: tuple[int, ...] = (),
        dtype: jax.typing.DTypeLike = float,
    ) -> jax.Array:
        """Draws standard Gumbel samples.

        Args:
          key: a PRNG key.
          sample_shape: the shape of the result.
          dtype: a floating dtype.

        Returns:
          An array of shape ``sample_shape``.

        Example:
          >>> import gradxform as gx, jax
          >>> gx.perturbations.Gumbel().sample(jax.random.key(0)).shape
          ()
        """
        return jax.random.gumbel(key, sample_shape, dtype)

    def log_prob(self, inputs: jax.Array) -> jax.Array:
        """The log density, elementwise: ``-inputs - exp(-inputs)``.

        Args:
          inputs: points at which to evaluate it.

        Returns:
          An array shaped like ``inputs``.

        Example:
          >>> import gradxform as gx, jax.numpy as jnp
          >>> print(gx.perturbations.Gumbel().log_prob(jnp.array([0.0])))
          [-1.]
        """
        return -inputs - jnp.exp(-inputs)


def _magic_box(log_prob: jax.Array) -> jax.Array:
    # Equal to 1, with derivative ``d log_prob`` times itself: the DiCE estimator's operator.
    return jnp.exp(log_prob - jax.lax.stop_gradient(log_prob))


def make_perturbed_fun(
    fun: Callable[[Any], Any],
    num_samples: int = 1000,
    sigma: jax.typing.ArrayLike = 0.1,
    noise: Any = Gumbel(),
    use_baseline: bool = True,
) -> Callable[[jax.Array, Any], Any]:
    r"""Makes a smooth Monte-Carlo version of a function that may be piecewise constant.

    The result estimates :math:`f_\sigma(x) = \mathbb{E}_{z \sim \mu}[f(x + \sigma z)]`
    from ``num_samples`` draws of the noise :math:`\mu`, calling ``fun`` only on perturbed
    inputs, never differentiating it. Its derivatives, of any order, under ``jax.grad``, are
    the score-function estimates of :math:`f_\sigma`'s: for the first,
    :math:`\mathbb{E}[f(x + \sigma z)\, (-\nabla \log \mu(z)) / \sigma]`. They are obtained by
    weighting each sample with the DiCE "magic box" of the noise's log density at
    :math:`z = (y - x)/\sigma`, where :math:`y` is the perturbed input held constant. With
    ``use_baseline``, :math:`f(x)` is subtracted inside the gradient terms (not the value),
    which lowers their variance. Samples use one key each (``jax.random.split(key,
    num_samples)``), so a given key gives the same numbers as Optax's.

    Args:
      fun: the function to smooth, from a pytree of arrays to a pytree of arrays.
      num_samples: the number of perturbed inputs averaged over.
      sigma: the scale of the perturbation.
      noise: an object with ``sample(key, sample_shape, dtype)`` and ``log_prob(inputs)``,
        like `Gumbel` (the default) or `Normal`.
      use_baseline: whether to use ``fun`` at the unperturbed input as a control variate.

    Returns:
      A function ``(key, x) -> output`` shaped like ``fun``'s output.

    Raises:
      ValueError: if ``fun`` is not callable, ``num_samples`` is not a positive integer,
        a scalar ``sigma`` is not a finite number > 0 (traced ones pass unchecked), or
        ``noise`` lacks ``sample`` and ``log_prob``; when called, if a leaf of ``x`` is not
        floating point.

    References:
      Berthet, Blondel, Teboul, Cuturi, Vert & Bach, `Learning with Differentiable
      Perturbed Optimizers <https://arxiv.org/abs/2002.08676>`_, 2020.

      Foerster, Farquhar, Al-Shedivat, Rocktaschel, Xing & Whiteson, `DiCE: The Infinitely
      Differentiable Monte Carlo Estimator <https://arxiv.org/abs/1802.05098>`_, 2018.

    Example:
      >>> import gradxform as gx, jax, jax.numpy as jnp
      >>> one_hot_argmax = lambda x: jax.nn.one_hot(jnp.argmax(x), x.shape[0])
      >>> smooth = gx.perturbations.make_perturbed_fun(one_hot_argmax, 100, 0.5)
      >>> smooth(jax.random.key(0), jnp.array([1.0, 2.0, 0.5])).shape
      (3,)
    """
    if isinstance(num_samples, bool) or not hasattr(num_samples, "__index__") or num_samples < 1:
        raise ValueError(f"num_samples must be a positive integer, got num_samples={num_samples!r}")
    if not callable(fun):
        raise ValueError(
            f"make_perturbed_fun: fun must be a function from a pytree to a pytree, got "
            f"{type(fun).__name__} fun={fun!r}."
        )
    if isinstance(sigma, str) or jnp.ndim(sigma) == 0:
        check_number("make_perturbed_fun", "sigma", sigma, POSITIVE)
    if isinstance(noise, type) or not all(callable(getattr(noise, m, None)) for m in ("sample", "log_prob")):
        raise ValueError(
            "make_perturbed_fun: noise must have sample(key, sample_shape, dtype) and "
            f"log_prob(inputs) methods, like gx.perturbations.Gumbel() (an instance), got noise={noise!r}."
        )

    def one_sample(key: jax.Array, x: Any, baseline: Any) -> Any:
        z = _tree.random_like(key, x, sampler=noise.sample)
        y = jax.lax.stop_gradient(jax.tree.map(lambda a, b: a + sigma * b, x, z))
        # z again, but now a function of x, so that the log density carries x's gradient.
        z = jax.tree.map(lambda a, b: (b - a) / sigma, x, y)
        log_prob = sum(jnp.sum(noise.log_prob(leaf)) for leaf in jax.tree.leaves(z))
        box = _magic_box(log_prob)
        out = jax.tree.map(lambda v: box * v, fun(y))
        if use_baseline:
            out = jax.tree.map(lambda v, b: v + (1 - box) * b, out, baseline)
        return out

    def perturbed(key: jax.Array, x: Any) -> Any:
        for path, leaf in jax.tree_util.tree_leaves_with_path(x):
            if not jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
                raise ValueError(
                    "make_perturbed_fun: x must have floating-point leaves (the noise is real and "
                    f"continuous), but leaf '{path_str(path)}' is {jnp.result_type(leaf)}."
                )
        baseline = fun(jax.lax.stop_gradient(x)) if use_baseline else None
        keys = jax.random.split(key, num_samples)
        outs = jax.vmap(one_sample, in_axes=(0, None, None))(keys, x, baseline)
        return jax.tree.map(lambda v: jnp.mean(v, axis=0), outs)

    return perturbed
