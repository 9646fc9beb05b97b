"""Optimistic methods for games and saddle points: optimistic gradient descent, optimistic Adam.

The optimistic step extrapolates with the change of the gradient,
``(alpha + beta) g_t - beta g_{t-1}``, which is ``branch(scale(alpha + beta),
chain(previous(), scale(beta)), "subtract")``; Optimistic Adam applies it to Adam's step.
"""

from __future__ import annotations

from typing import Any

from gradxform._factory import transformation
from gradxform.combinators import branch, chain
from gradxform.core import NON_NEGATIVE, REAL, UNIT, GradientTransformation
from gradxform.optimizers.adam import scale_by_adam
from gradxform.primitives.elementwise import scale, scale_by_learning_rate
from gradxform.primitives.history import previous

_OPTIMISM = {"alpha": REAL, "beta": REAL}


@transformation(_OPTIMISM)
def scale_by_optimistic_gradient(alpha: float = 1.0, beta: float = 1.0) -> GradientTransformation:
    """The optimistic extrapolation ``(alpha + beta) g_t - beta g_{t-1}`` (``g_0 = g_1``).

    Args:
      alpha: the step on the current gradient.
      beta: the step on the change of the gradient (the optimism).

    Returns:
      ``branch(scale(alpha + beta), chain(previous(), scale(beta)), combine="subtract")``.

    References:
      Mokhtari, Ozdaglar & Pattathil, "A Unified Analysis of Extra-gradient and Optimistic
      Gradient Methods for Saddle Point Problems", AISTATS 2020.
      https://arxiv.org/abs/1901.08511

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.scale_by_optimistic_gradient()
      >>> _, s = tx.update(jnp.array([1.0]), tx.init(jnp.zeros(1)))
      >>> tx.update(jnp.array([3.0]), s)[0].tolist()  # 2 * 3 - 1
      [5.0]
    """
    return branch(scale(alpha + beta), chain(previous(), scale(beta)), combine="subtract")


@transformation({"learning_rate": NON_NEGATIVE, **_OPTIMISM})
def optimistic_gradient_descent(learning_rate: float, alpha: float = 1.0, beta: float = 1.0) -> GradientTransformation:
    """Optimistic gradient descent: ``u_t = -lr * ((alpha + beta) g_t - beta g_{t-1})``.

    On min-max problems (GANs, bilinear games), where plain gradient descent-ascent
    cycles or diverges, the extrapolation with the last gradient converges.

    Args:
      learning_rate: a number >= 0 or a schedule.
      alpha: the step on the current gradient (a number or a schedule).
      beta: the step on the change of the gradient (a number or a schedule).

    Returns:
      ``chain(scale_by_optimistic_gradient(alpha, beta), scale_by_learning_rate(learning_rate))``.

    References:
      Daskalakis, Ilyas, Syrgkanis & Zeng, "Training GANs with Optimism", ICLR 2018.
      https://arxiv.org/abs/1711.00141
      Mokhtari, Ozdaglar & Pattathil, "A Unified Analysis of Extra-gradient and Optimistic
      Gradient Methods for Saddle Point Problems", AISTATS 2020.
      https://arxiv.org/abs/1901.08511

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.optimistic_gradient_descent(0.1)
      >>> tx.update(jnp.array([1.0]), tx.init(jnp.zeros(1)))[0].tolist()
      [-0.10000000149011612]
    """
    return chain(scale_by_optimistic_gradient(alpha, beta), scale_by_learning_rate(learning_rate))


@transformation(
    {"learning_rate": NON_NEGATIVE, **_OPTIMISM, "b1": UNIT, "b2": UNIT, "eps": NON_NEGATIVE, "eps_root": NON_NEGATIVE}
)
def optimistic_adam_v2(
    learning_rate: float,
    *,
    alpha: float = 1.0,
    beta: float = 1.0,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    nesterov: bool = True,
) -> GradientTransformation:
    """Optimistic Adam: the optimistic extrapolation of Adam's (by default Nadam's) step.

    With ``a_t`` the `scale_by_adam` output, ``u_t = -lr * ((alpha + beta) a_t - beta a_{t-1})``.

    Args:
      learning_rate: a number >= 0 or a schedule.
      alpha: the step on the current direction.
      beta: the step on the change of the direction (the optimism).
      b1, b2, eps, eps_root, mu_dtype: as in `adam`.
      nesterov: Nadam's look-ahead first moment (default, as Optax).

    Returns:
      ``chain(scale_by_adam(...), scale_by_optimistic_gradient(alpha, beta),
      scale_by_learning_rate(learning_rate))``.

    References:
      Daskalakis, Ilyas, Syrgkanis & Zeng, "Training GANs with Optimism", ICLR 2018.
      https://arxiv.org/abs/1711.00141

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.optimistic_adam_v2(0.1)
      >>> tx.update(jnp.array([1.0]), tx.init(jnp.zeros(1)))[0].shape
      (1,)
    """
    return chain(
        scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov),
        scale_by_optimistic_gradient(alpha, beta),
        scale_by_learning_rate(learning_rate),
    )


@transformation(
    {"learning_rate": NON_NEGATIVE, "optimism": REAL, "b1": UNIT, "b2": UNIT, "eps": NON_NEGATIVE, "eps_root": NON_NEGATIVE}
)
def optimistic_adam(
    learning_rate: float,
    optimism: float | None = None,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    *,
    nesterov: bool = True,
) -> GradientTransformation:
    """Optax's first Optimistic Adam: ``u_t = -((lr + o) a_t - o a_{t-1})``, ``a_t`` Adam's step.

    The same update as `optimistic_adam_v2` with ``alpha = learning_rate``,
    ``beta = optimism`` and a unit learning rate: here the learning rate weighs only the
    current direction and the optimism ``o`` (by default the learning rate) the change.
    Optax deprecates this form for ``optimistic_adam_v2`` and rejects schedules in it;
    gradxform keeps it without a warning and accepts schedules for both.

    Args:
      learning_rate: the step on the current direction, >= 0 (a number or a schedule).
      optimism: the step on the change of the direction; ``None`` uses ``learning_rate``.
      b1, b2, eps, eps_root, mu_dtype: as in `adam`.
      nesterov: Nadam's look-ahead first moment (default, as Optax).

    Returns:
      ``chain(scale_by_adam(...), scale_by_optimistic_gradient(learning_rate, optimism),
      scale(-1.0))``.

    Raises:
      ValueError: for a negative ``learning_rate``, ``b1`` or ``b2`` outside [0, 1), or a
        negative ``eps`` or ``eps_root``.

    References:
      Daskalakis, Ilyas, Syrgkanis & Zeng, "Training GANs with Optimism", ICLR 2018.
      https://arxiv.org/abs/1711.00141

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.optimistic_adam(0.1)
      >>> [round(x, 4) for x in tx.update(jnp.array([1.0, -2.0]), tx.init(jnp.zeros(2)))[0].tolist()]
      [-0.1474, 0.1474]
    """
    return chain(
        scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov),
        scale_by_optimistic_gradient(learning_rate, learning_rate if optimism is None else optimism),
        scale(-1.0),
    )
