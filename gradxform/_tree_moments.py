"""Moment updates over trees, the building blocks of Adam-like optimizers in Optax's
helper form (``gx.tree.update_moment``, ``gx.tree.bias_correction``).

gradxform's optimizers are composed of the primitives ``ema`` and ``bias_correction``
instead; these helpers exist so that code written against ``optax.tree`` runs unchanged.
None leaves of ``updates`` (frozen parameters) stay None.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from gradxform._tree_math import check_pair
from gradxform.core import PyTree, abs_sq

_IS_NONE = lambda x: x is None  # noqa: E731


def _map_moments(fn: Any, name: str, updates: PyTree, moments: PyTree) -> PyTree:
    check_pair(moments, updates, "moments leaves", "updates leaves", name, allow_none=True)
    return jax.tree.map(lambda g, t: None if g is None else fn(g, t), updates, moments, is_leaf=_IS_NONE)


def update_moment(updates: PyTree, moments: PyTree, decay: Any, order: Any) -> PyTree:
    """The exponential moving average of the ``order``-th power:
    ``(1 - decay) * updates**order + decay * moments``.

    Args:
      updates: a pytree of arrays (None leaves stay None).
      moments: the running averages, with ``updates``' structure.
      decay: the decay rate.
      order: the power (1 for the mean, 2 for the uncentred second moment).

    Returns:
      The new moments.

    Raises:
      ValueError: if the trees' structures differ.

    References:
      Kingma & Ba, `Adam: A Method for Stochastic Optimization
      <https://arxiv.org/abs/1412.6980>`_, 2015.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> round(float(gx.tree.update_moment([jnp.array(2.0)], [jnp.array(0.0)], 0.9, 2)[0]), 4)
      0.4
    """
    return _map_moments(lambda g, t: (1 - decay) * (g**order) + decay * t, "update_moment", updates, moments)


def update_infinity_moment(updates: PyTree, moments: PyTree, decay: Any, eps: Any) -> PyTree:
    """The decaying running maximum of magnitudes: ``max(|updates| + eps, decay * moments)``
    (Adamax's second moment).

    Args:
      updates: a pytree of arrays (None leaves stay None).
      moments: the running maxima, with ``updates``' structure.
      decay: the decay rate.
      eps: added to the magnitudes.

    Returns:
      The new moments.

    Raises:
      ValueError: if the trees' structures differ.

    References:
      Kingma & Ba, `Adam: A Method for Stochastic Optimization
      <https://arxiv.org/abs/1412.6980>`_ (section 7.1, AdaMax), 2015.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.tree.update_infinity_moment([jnp.array(-2.0)], [jnp.array(3.0)], 0.5, 0.0)[0].tolist()
      2.0
    """
    return _map_moments(
        lambda g, t: jnp.maximum(jnp.abs(g) + eps, decay * t), "update_infinity_moment", updates, moments
    )


def _power_of_magnitude(g: jax.Array, order: Any) -> jax.Array:
    if jnp.isrealobj(g):
        return g**order
    half = order / 2
    # An integral exponent as a Python int lowers to repeated multiplication, as Optax's does.
    if float(half).is_integer():
        half = int(half)
    return abs_sq(g) ** half


def update_moment_per_elem_norm(updates: PyTree, moments: PyTree, decay: Any, order: Any) -> PyTree:
    """`update_moment` of the elementwise magnitude: ``|updates|**order`` for complex leaves
    (real leaves as in `update_moment`).

    Args:
      updates: a pytree of arrays (None leaves stay None).
      moments: the running averages, with ``updates``' structure.
      decay: the decay rate.
      order: the power.

    Returns:
      The new moments (real for complex updates).

    Raises:
      ValueError: if the trees' structures differ.

    References:
      Kingma & Ba, `Adam: A Method for Stochastic Optimization
      <https://arxiv.org/abs/1412.6980>`_, 2015.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.tree.update_moment_per_elem_norm([jnp.array(3j)], [jnp.array(0.0)], 0.0, 2)[0].tolist()
      9.0
    """
    return _map_moments(
        lambda g, t: (1 - decay) * _power_of_magnitude(g, order) + decay * t,
        "update_moment_per_elem_norm",
        updates,
        moments,
    )


@functools.partial(jax.jit, inline=True)
def _debias(moment: PyTree, decay: Any, count: Any) -> PyTree:
    # 1 - decay**count is computed in the inputs' precision (float32 for a float decay):
    # in bfloat16, decay**count rounds to 1 for small counts and the division gives inf.
    # Only the result is cast, so a bfloat16 moment stays bfloat16.
    correction = 1 - decay**count
    return jax.tree.map(lambda t: t / correction.astype(t.dtype), moment)


def bias_correction(moment: PyTree, decay: Any, count: Any) -> PyTree:
    """A moving average's bias correction: ``moment / (1 - decay**count)``.

    ``gx.bias_correction`` is the transformation of the same name (a stage of Adam); this
    is Optax's helper on one moment tree.

    Args:
      moment: a pytree of arrays, the average after ``count`` updates from zero.
      decay: the average's decay rate.
      count: the number of updates (>= 1), an integer scalar.

    Returns:
      The corrected moment, in each leaf's dtype.

    References:
      Kingma & Ba, `Adam: A Method for Stochastic Optimization
      <https://arxiv.org/abs/1412.6980>`_ (section 3), 2015.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> round(float(gx.tree.bias_correction([jnp.array(0.1)], 0.9, jnp.array(1))[0]), 4)
      1.0
    """
    return _debias(moment, decay, count)
