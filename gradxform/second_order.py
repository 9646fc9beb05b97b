"""Curvature of a loss ``loss(params, inputs, targets)``: Hessian-vector products and the
exact diagonals of the Hessian and of the observed Fisher information.

``gx.second_order`` holds the same three functions as ``optax.second_order``. Results are
flat vectors over `jax.flatten_util.ravel_pytree`'s ordering of the parameters (except
`hvp`, which returns a tree like ``params``, as Optax's does). `hessian_diag` costs one
Hessian-vector product per parameter: for large models use the stochastic estimate
`gradxform.hutchinson_estimator_diag_hessian` instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import flatten_util

from gradxform.core import path_str

LossFn = Callable[[Any, jax.Array, jax.Array], jax.Array]

_V_SIZE = (
    "hvp: v must be a flat vector with one entry per parameter scalar ({want}, the size of "
    "jax.flatten_util.ravel_pytree(params)[0]), got v of shape {got}. Ravel a tree-shaped v "
    "with ravel_pytree first."
)


def _flat(tree: Any) -> jax.Array:
    return flatten_util.ravel_pytree(tree)[0]


def _check_loss(owner: str, name: str, fn: Any) -> None:
    if not callable(fn):
        raise ValueError(
            f"{owner}: {name} must be a function fn(params, inputs, targets) -> scalar, got "
            f"{type(fn).__name__} {name}={fn!r}."
        )


def _check_params(owner: str, params: Any) -> None:
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        dtype = jnp.result_type(leaf)
        if not jnp.issubdtype(dtype, jnp.inexact):
            raise ValueError(
                f"{owner}: params must have floating-point leaves (derivatives are taken in them), "
                f"but leaf '{path_str(path)}' is {dtype}."
            )


def hvp(loss: LossFn, v: jax.Array, params: Any, inputs: jax.Array, targets: jax.Array) -> Any:
    """The product ``H v`` of the Hessian of ``loss`` in ``params`` with a vector ``v``.

    Computed forward-over-reverse (a `jax.jvp` of `jax.grad`), at the cost of about two
    gradients and without forming ``H``.

    Args:
      loss: ``loss(params, inputs, targets)``, a real scalar.
      v: a flat vector with as many entries as ``params`` has scalars, in
        `jax.flatten_util.ravel_pytree` order.
      params: the point at which the Hessian is taken (a pytree).
      inputs: passed to ``loss``.
      targets: passed to ``loss``.

    Returns:
      ``H v`` as a pytree shaped like ``params`` (ravel it to compare with ``v``).

    Raises:
      ValueError: if ``loss`` is not callable, a leaf of ``params`` is not floating point,
        or ``v`` does not have one entry per parameter scalar.

    References:
      Pearlmutter, "Fast Exact Multiplication by the Hessian", Neural Computation, 1994.
      https://doi.org/10.1162/neco.1994.6.1.147

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> loss = lambda w, x, y: jnp.sum((x * w - y) ** 2)  # H = diag(2 x**2)
      >>> x, y = jnp.array([1.0, 2.0]), jnp.zeros(2)
      >>> gx.second_order.hvp(loss, jnp.array([1.0, 1.0]), jnp.zeros(2), x, y).tolist()
      [2.0, 8.0]
    """
    _check_loss("hvp", "loss", loss)
    _check_params("hvp", params)
    flat, unravel = flatten_util.ravel_pytree(params)
    if jnp.ndim(v) != 1 or jnp.shape(v)[0] != flat.size:
        raise ValueError(_V_SIZE.format(want=flat.size, got=jnp.shape(v)))
    tangent = unravel(v)
    return jax.jvp(jax.grad(lambda p: loss(p, inputs, targets)), (params,), (tangent,))[1]


def hessian_diag(loss: LossFn, params: Any, inputs: jax.Array, targets: jax.Array) -> jax.Array:
    """The exact diagonal of the Hessian of ``loss`` in ``params``, as a flat vector.

    Entry ``i`` is ``e_i . H e_i``, one Hessian-vector product per parameter scalar
    (vectorised with `jax.vmap`), so memory and time grow with the number of parameters.

    Args:
      loss: ``loss(params, inputs, targets)``, a real scalar.
      params: the point at which the Hessian is taken (a pytree).
      inputs: passed to ``loss``.
      targets: passed to ``loss``.

    Returns:
      A vector of ``ravel_pytree(params)[0].size`` entries.

    Raises:
      ValueError: if ``loss`` is not callable or a leaf of ``params`` is not floating point.

    References:
      Pearlmutter, "Fast Exact Multiplication by the Hessian", Neural Computation, 1994.
      https://doi.org/10.1162/neco.1994.6.1.147

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> loss = lambda w, x, y: jnp.sum((x * w - y) ** 2)
      >>> gx.second_order.hessian_diag(loss, jnp.zeros(2), jnp.array([1.0, 2.0]), jnp.zeros(2)).tolist()
      [2.0, 8.0]
    """
    _check_loss("hessian_diag", "loss", loss)
    _check_params("hessian_diag", params)
    n = _flat(params).size

    def entry(e: jax.Array) -> jax.Array:
        return jnp.vdot(e, _flat(hvp(loss, e, params, inputs, targets)))

    return jax.vmap(entry)(jnp.eye(n))


def fisher_diag(
    negative_log_likelihood: LossFn, params: Any, inputs: jax.Array, targets: jax.Array
) -> jax.Array:
    """The diagonal of the observed (empirical) Fisher information: the squared gradient of
    the negative log-likelihood, as a flat vector.

    For a batch, ``negative_log_likelihood`` should return the batch's summed or mean loss;
    the result is then the square of that gradient, not the mean of per-example squares.

    Args:
      negative_log_likelihood: ``nll(params, inputs, targets)``, a real scalar.
      params: the parameters (a pytree).
      inputs: passed to ``negative_log_likelihood``.
      targets: passed to ``negative_log_likelihood``.

    Returns:
      A vector of ``ravel_pytree(params)[0].size`` non-negative entries.

    Raises:
      ValueError: if ``negative_log_likelihood`` is not callable or a leaf of ``params`` is
        not floating point.

    References:
      Martens, "New Insights and Perspectives on the Natural Gradient Method", JMLR, 2020.
      https://jmlr.org/papers/v21/17-678.html

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> nll = lambda w, x, y: jnp.sum(x * w)  # gradient x
      >>> gx.second_order.fisher_diag(nll, jnp.zeros(2), jnp.array([1.0, -3.0]), None).tolist()
      [1.0, 9.0]
    """
    _check_loss("fisher_diag", "negative_log_likelihood", negative_log_likelihood)
    _check_params("fisher_diag", params)
    return jnp.square(_flat(jax.grad(negative_log_likelihood)(params, inputs, targets)))
