"""SGD with Polyak's step size: the step that would reach ``f_min`` on a linear model.

    gamma_t = min((f(w_t) - f_min) / (scaling^2 ||g_t||^2 + eps), max_learning_rate)
    w_{t+1} = w_t - scaling * gamma_t * g_t

With ``variant="sps+"`` the gap ``f(w_t) - f_min`` is replaced by its positive part. The
objective's value reaches the step as the extra keyword argument ``value=``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from gradxform._factory import transformation
from gradxform.combinators import chain
from gradxform.core import (
    NON_NEGATIVE,
    POSITIVE,
    REAL,
    EmptyState,
    GradientTransformation,
    abs_sq,
    check_choice,
    check_scalar_value,
)
from gradxform.optimizers.sgd import sgd

_VARIANTS = ("sps", "sps+")
# Optax compares against the double-precision epsilon whatever the dtype.
_TINY = float(np.finfo(np.float64).eps)

MISSING_VALUE = (
    "{owner} needs the objective's current value: call update(grads, state, params, value=loss). "
    "Polyak's step size is (loss - f_min) / ||grads||^2, so it cannot be computed without it."
)


@transformation({"f_min": REAL, "max_learning_rate": POSITIVE, "eps": NON_NEGATIVE, "scaling": NON_NEGATIVE})
def scale_by_polyak(
    f_min: float = 0.0, max_learning_rate: float = 1.0, eps: float = 0.0, variant: str = "sps", *, scaling: float = 1.0
) -> GradientTransformation:
    """Multiplies the updates by Polyak's step size (see `polyak_sgd` for the formula).

    Args:
      f_min: a lower bound (or guess) of the objective's minimum.
      max_learning_rate: the largest step size, > 0.
      eps: added to the squared gradient norm, >= 0.
      variant: ``"sps"``, or ``"sps+"`` to use only the positive part of the gap.
      scaling: the step size is computed for the updates times ``scaling`` (their squared
        norm is ``scaling^2 ||g||^2``), >= 0; the caller multiplies by it afterwards, as
        `polyak_sgd` does. Not in Optax, whose `polyak_sgd` scales before this stage.

    Returns:
      A stateless transformation whose ``update`` needs ``value=`` (the objective's value).

    Raises:
      ValueError: for an unknown ``variant``; at ``update`` if ``value`` is not given.

    References:
      Loizou, Vaswani, Laradji & Lacoste-Julien, "Stochastic Polyak Step-size for SGD: An
      Adaptive Learning Rate for Fast Convergence", AISTATS 2021. https://arxiv.org/abs/2002.10542

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.scale_by_polyak()
      >>> u, _ = tx.update(jnp.array([1.0, 1.0]), tx.init(jnp.zeros(2)), value=0.5)
      >>> [round(x, 4) for x in u.tolist()]  # (0.5 - 0) / ||g||^2 = 0.25
      [0.25, 0.25]
    """
    check_choice("scale_by_polyak", "variant", variant, _VARIANTS)

    def update(updates, state, params=None, *, value=None, **extra):
        if value is None:
            raise ValueError(MISSING_VALUE.format(owner="scale_by_polyak"))
        check_scalar_value("scale_by_polyak", "value", value, "the objective f(params)")
        sq_norm = jnp.asarray(sum(jnp.sum(abs_sq(g)) for g in jax.tree.leaves(updates)))
        sq_norm = sq_norm * jnp.square(jnp.asarray(scaling)).astype(sq_norm.dtype)
        gap = (jnp.asarray(value) - jnp.asarray(f_min)).astype(sq_norm.dtype)
        if variant == "sps+":
            gap = jnp.maximum(gap, 0.0)
        denominator = sq_norm + jnp.asarray(eps).astype(sq_norm.dtype)
        step = jnp.where(
            denominator <= _TINY, 0.0, jnp.minimum(gap / denominator, jnp.asarray(max_learning_rate))
        )
        return jax.tree.map(lambda g: g * step.astype(jnp.real(g).dtype), updates), state

    return GradientTransformation(lambda params: EmptyState(), update)


@transformation({"max_learning_rate": POSITIVE, "scaling": NON_NEGATIVE, "f_min": REAL, "eps": NON_NEGATIVE})
def polyak_sgd(
    max_learning_rate: float = 1.0,
    scaling: float = 1.0,
    f_min: float = 0.0,
    eps: float = 0.0,
    variant: str = "sps",
) -> GradientTransformation:
    r"""SGD with Polyak's step size, computed at every step from the objective's value.

    ``w_{t+1} = w_t - scaling * min((f(w_t) - f_min) / (||scaling g_t||^2 + eps), max_learning_rate) * g_t``
    (Optax's formula); the step is zero when ``||scaling g_t||^2 + eps`` vanishes. ``variant="sps+"`` uses
    ``max(f(w_t) - f_min, 0)``. ``f_min`` must be a sensible lower bound of the objective
    (0 for models that interpolate the data), else the method may diverge.

    Args:
      max_learning_rate: the largest step size, > 0.
      scaling: a global factor, >= 0 (a number or a schedule).
      f_min: a lower bound of the objective.
      eps: added to the squared gradient norm, >= 0.
      variant: ``"sps"`` or ``"sps+"``.

    Returns:
      ``chain(scale_by_polyak(f_min, max_learning_rate, eps, variant, scaling=scaling),
      sgd(scaling))``; its ``update`` needs ``value=`` (the objective at the current
      parameters). Scaling last, with the step size told of it, is Optax's
      ``chain(sgd(scaling), scale_by_polyak(...))`` without a scaled copy of the gradients:
      XLA stores an input that both a reduction and the output read.

    Raises:
      ValueError: for an unknown ``variant``; at ``update`` if ``value`` is not given.

    References:
      Loizou, Vaswani, Laradji & Lacoste-Julien, "Stochastic Polyak Step-size for SGD: An
      Adaptive Learning Rate for Fast Convergence", AISTATS 2021. https://arxiv.org/abs/2002.10542
      Berrada, Zisserman & Kumar, "Training Neural Networks for and by Interpolation",
      ICML 2020. https://arxiv.org/abs/1906.05661
      Garrigos, Gower & Schaipp, "Function Value Learning: Adaptive Learning Rates Based on
      the Polyak Stepsize and Function Splitting in ERM", 2023. https://arxiv.org/abs/2307.14528

    Example:
      >>> import gradxform as gx, jax, jax.numpy as jnp
      >>> f = lambda w: jnp.sum(w ** 2)
      >>> tx = gx.polyak_sgd()
      >>> w = jnp.array([1.0, -2.0])
      >>> updates, state = tx.update(jax.grad(f)(w), tx.init(w), w, value=f(w))
      >>> [round(x, 4) for x in gx.apply_updates(w, updates).tolist()]  # half-way to the minimum
      [0.5, -1.0]
    """
    check_choice("polyak_sgd", "variant", variant, _VARIANTS)
    return chain(scale_by_polyak(f_min, max_learning_rate, eps, variant, scaling=scaling), sgd(scaling))
