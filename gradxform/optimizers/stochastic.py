"""Stochastic-approximation optimizers Optax lacks: SGLD, averaged SGD and delay-compensated
asynchronous SGD. Each is a short chain of the stages in `gradxform.primitives.stochastic`.
"""

from __future__ import annotations

from typing import Any

from gradxform._factory import transformation
from gradxform.combinators import chain, identity
from gradxform.core import NON_NEGATIVE, POSITIVE, UNIT_CLOSED, GradientTransformation
from gradxform.primitives.elementwise import scale_by_learning_rate
from gradxform.primitives.moments import trace
from gradxform.primitives.stochastic import add_gaussian_noise, average_iterates, delay_compensation, scale_by_power_decay
from gradxform.primitives.weight_decay import add_decayed_weights


@transformation(
    {"learning_rate": NON_NEGATIVE, "temperature": NON_NEGATIVE, "decay_steps": POSITIVE, "gamma": NON_NEGATIVE}
)
def sgld(
    learning_rate: float,
    temperature: float = 1.0,
    decay_steps: float = 1.0,
    gamma: float = 0.55,
    seed: int = 0,
) -> GradientTransformation:
    r"""Stochastic gradient Langevin dynamics: half a gradient step plus Gaussian noise.

    At the ``t``-th update (``t = 0, 1, ...``), with ``g`` the gradient of the loss (the
    negative log posterior, up to a constant)::

        eps_t = learning_rate * (1 + t / decay_steps) ** -gamma
        u_t   = -eps_t / 2 * g + N(0, temperature * eps_t)

    Welling & Teh's decreasing step size ``a (b + t) ** -gamma`` is ``decay_steps = b``,
    ``learning_rate = a * b ** -gamma``; ``gamma`` in (0.5, 1] makes the step sizes satisfy
    the Robbins-Monro conditions, ``gamma = 0`` keeps them constant. With ``temperature = 1``
    the iterates sample the posterior ``exp(-loss)``; smaller temperatures sample the
    tempered posterior ``exp(-loss / temperature)`` (0 gives plain gradient descent). The PRNG
    key lives in the state and is split at every step.

    Args:
      learning_rate: the first step size ``eps_0``, >= 0.
      temperature: scales the noise variance, >= 0.
      decay_steps: ``b``, the time scale of the decay: after ``decay_steps`` steps the step
        size has fallen by the factor ``2 ** -gamma``, > 0.
      gamma: the decay exponent, >= 0.
      seed: seed of the noise.

    Returns:
      ``chain(scale_by_power_decay(1 / decay_steps, gamma),
      scale_by_learning_rate(learning_rate / 2),
      add_gaussian_noise(temperature * learning_rate, 1 / decay_steps, gamma, seed))``.

    Raises:
      ValueError: if ``seed`` is not a non-negative integer.

    References:
      Welling & Teh, "Bayesian Learning via Stochastic Gradient Langevin Dynamics", ICML 2011,
      equation 4. https://www.stats.ox.ac.uk/~teh/research/compstats/WelTeh2011a.pdf

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.sgld(0.1, temperature=0.0)
      >>> tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))[0].tolist()
      [-0.10000000149011612]
    """
    rate = 1 / decay_steps
    return chain(
        scale_by_power_decay(rate, gamma),
        scale_by_learning_rate(learning_rate / 2),
        add_gaussian_noise(temperature * learning_rate, rate, gamma, seed),
    )


@transformation(
    {"learning_rate": NON_NEGATIVE, "lambd": NON_NEGATIVE, "alpha": NON_NEGATIVE, "t0": NON_NEGATIVE, "weight_decay": NON_NEGATIVE}
)
def asgd(
    learning_rate: float,
    lambd: float = 1e-4,
    alpha: float = 0.75,
    t0: float = 1e6,
    weight_decay: float = 0.0,
    accumulator_dtype: Any = None,
) -> GradientTransformation:
    r"""Averaged SGD (Polyak-Ruppert), with the conventions of ``torch.optim.ASGD``.

    At the ``t``-th update (``t = 1, 2, ...``)::

        eta_t = learning_rate / (1 + lambd * learning_rate * (t - 1)) ** alpha
        w_t   = w_{t-1} - eta_t * (g + (weight_decay + lambd) * w_{t-1})
        mu_t  = 1 / max(1, t - 1 - t0)
        a_t   = a_{t-1} + mu_t * (w_t - a_{t-1})      (a_t = w_t while mu_t = 1)

    The optimizer follows ``w``; the averaged parameters ``a`` (the estimate Polyak and
    Juditsky prove optimal) are read from the state with `gradxform.averaged_iterates`.

    Args:
      learning_rate: the initial step size, >= 0.
      lambd: decay term of the step size and shrinkage of the weights, >= 0.
      alpha: exponent of the step-size decay, >= 0.
      t0: the step at which averaging starts, >= 0.
      weight_decay: L2 penalty added to the gradient, >= 0.
      accumulator_dtype: dtype of the averaged parameters (default: the parameter's).

    Returns:
      ``chain(add_decayed_weights(weight_decay + lambd),
      scale_by_power_decay(lambd * learning_rate, alpha),
      scale_by_learning_rate(learning_rate), average_iterates(t0))``.

    References:
      Polyak & Juditsky, "Acceleration of Stochastic Approximation by Averaging", SIAM J.
      Control and Optimization, 1992. https://doi.org/10.1137/0330046
      Bottou, "Stochastic Gradient Descent Tricks", Neural Networks: Tricks of the Trade,
      2012, section 5.3. https://leon.bottou.org/papers/bottou-tricks-2012
      PyTorch, ``torch.optim.ASGD``. https://pytorch.org/docs/stable/generated/torch.optim.ASGD.html

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.asgd(0.1, t0=0.0)
      >>> p, s = jnp.array([1.0]), tx.init(jnp.array([1.0]))
      >>> u, s = tx.update(jnp.array([1.0]), s, p)
      >>> [round(x, 4) for x in gx.averaged_iterates(s).tolist()]
      [0.9]
    """
    return chain(
        add_decayed_weights(weight_decay + lambd),  # torch's shrinkage and decay are one term
        scale_by_power_decay(lambd * learning_rate, alpha),
        scale_by_learning_rate(learning_rate),
        average_iterates(t0, accumulator_dtype),
    )


@transformation({"learning_rate": NON_NEGATIVE, "momentum": UNIT_CLOSED, "lamda": NON_NEGATIVE})
def dcasgd(
    learning_rate: float,
    momentum: float | None = None,
    lamda: float = 0.04,
    accumulator_dtype: Any = None,
) -> GradientTransformation:
    r"""Delay-compensated asynchronous SGD (DC-ASGD).

    A worker computes ``g`` at parameters ``w_then``; by the time the server applies it the
    parameters are ``w_now``. The first-order Taylor correction, with ``lamda * g * g`` as a
    cheap diagonal approximation of the Hessian, gives::

        v = g + lamda * g * g * (w_now - w_then)       (g * g is |g|^2 for complex g)
        u = -learning_rate * v                          (or heavy-ball momentum on v)

    Pass ``w_then`` as ``update(grads, state, params, stale_params=w_then)``. Without
    ``stale_params``, or with ``stale_params = params`` (no delay), it is `gradxform.sgd`.
    (MXNet's ``DCASGD`` instead remembers the parameters of its previous update; pass those
    as ``stale_params`` to reproduce it.)

    Args:
      learning_rate: a number >= 0 or a schedule.
      momentum: heavy-ball momentum in [0, 1], or ``None`` for none.
      lamda: strength of the compensation, >= 0 (the paper's constant ``lambda``).
      accumulator_dtype: dtype of the momentum buffer (default: the parameter's).

    Returns:
      ``chain(delay_compensation(lamda), trace(momentum), scale_by_learning_rate(learning_rate))``.

    References:
      Zheng, Meng, Wang, Chen, Yu, Ma & Liu, "Asynchronous Stochastic Gradient Descent with
      Delay Compensation", ICML 2017. https://arxiv.org/abs/1609.08326

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.dcasgd(0.1, lamda=1.0)
      >>> now, then = jnp.array([1.0]), jnp.array([0.5])
      >>> [round(x, 4) for x in tx.update(jnp.array([2.0]), tx.init(now), now, stale_params=then)[0].tolist()]
      [-0.4]
    """
    return chain(
        delay_compensation(lamda),
        trace(momentum, accumulator_dtype=accumulator_dtype) if momentum is not None else identity(),
        scale_by_learning_rate(learning_rate),
    )
