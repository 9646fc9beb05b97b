"""Hutchinson's stochastic estimate of the Hessian's diagonal, as a transformation: the
curvature stage of AdaHessian and Sophia-H (Optax has it in ``optax.contrib``).

The exact diagonal is `gradxform.second_order.hessian_diag`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax

from gradxform import tree as _tree
from gradxform._factory import transformation
from gradxform.core import GradientTransformation
from gradxform.wrappers.noise import _check_key, _key

_NO_PARAMS = (
    "hutchinson_estimator_diag_hessian: update needs the parameters at which to estimate the "
    "Hessian: call update(updates, state, params, obj_fn=loss_of_params)."
)
_NO_OBJECTIVE = (
    "hutchinson_estimator_diag_hessian: update needs the objective whose Hessian it estimates: "
    "call update(updates, state, params, obj_fn=f) with f(params) -> scalar (value_fn=f, as "
    "gradxform's line searches take it, is accepted too)."
)


class HutchinsonState(NamedTuple):
    """State of `hutchinson_estimator_diag_hessian`.

    Attributes:
      key: the PRNG key of the next draw, split at every update (a typed key when the
        transformation made it from a seed; the key given otherwise).
    """

    key: jax.Array


@transformation()
def hutchinson_estimator_diag_hessian(random_seed: jax.Array | int | None = None) -> GradientTransformation:
    """Replaces the updates with ``z * (H z)``, an unbiased estimate of ``diag(H)``.

    ``H`` is the Hessian of the objective ``obj_fn`` at ``params`` (both given to
    ``update``) and ``z`` has independent Rademacher entries (+-1, drawn as float32, as in
    Optax, and cast to each parameter's dtype): ``E[z * (H z)] = diag(H)``. ``H z`` is
    one forward-over-reverse product, about the cost of two gradients. The incoming updates
    are ignored. One draw is noisy; AdaHessian and Sophia average it over steps with an
    exponential moving average.

    Args:
      random_seed: a PRNG key or an integer seed; None (the default, as in Optax) is seed 0.

    Returns:
      A transformation with `HutchinsonState`. Its ``update`` takes the keyword argument
      ``obj_fn`` (``obj_fn(params) -> scalar``; ``value_fn`` is accepted as another name).

    Raises:
      ValueError: if ``random_seed`` is neither an integer nor a PRNG key; at ``update``, if
        ``params`` or the objective is missing.

    References:
      Hutchinson, "A Stochastic Estimator of the Trace of the Influence Matrix for Laplacian
      Smoothing Splines", Communications in Statistics - Simulation and Computation, 1989.
      https://doi.org/10.1080/03610918908812806

      Yao, Gholami, Shen, Mustafa, Keutzer & Mahoney, "ADAHESSIAN: An Adaptive Second Order
      Optimizer for Machine Learning", AAAI 2021. https://arxiv.org/abs/2006.00719

      Liu, Li, Hall, Liang & Ma, "Sophia: A Scalable Stochastic Second-order Optimizer for
      Language Model Pre-training", 2023. https://arxiv.org/abs/2305.14342

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> f = lambda w: jnp.sum(jnp.array([1.0, 3.0]) * w ** 2)  # diag(H) = [2, 6]
      >>> tx = gx.hutchinson_estimator_diag_hessian(random_seed=0)
      >>> w = jnp.ones(2)
      >>> tx.update(w, tx.init(w), w, obj_fn=f)[0].tolist()  # exact: H is diagonal
      [2.0, 6.0]
    """
    if random_seed is not None:
        try:
            _check_key("hutchinson_estimator_diag_hessian", random_seed)
        except ValueError:
            raise ValueError(
                "hutchinson_estimator_diag_hessian: random_seed must be an integer seed or a PRNG "
                f"key (jax.random.key(0)), got {type(random_seed).__name__} random_seed={random_seed!r}."
            ) from None

    def init(params):
        return HutchinsonState(_key(0 if random_seed is None else random_seed))

    def update(
        updates,
        state,
        params=None,
        *,
        obj_fn: Callable[[Any], jax.Array] | None = None,
        value_fn: Callable[[Any], jax.Array] | None = None,
        **extra,
    ):
        if params is None:
            raise ValueError(_NO_PARAMS)
        objective = obj_fn if obj_fn is not None else value_fn
        if objective is None:
            raise ValueError(_NO_OBJECTIVE)
        key, draw = jax.random.split(state.key)
        signs = _tree.random_like(draw, params, jax.random.rademacher, dtype="float32")
        # Each leaf's own dtype, not the tree's lowest (Optax's choice): jax.jvp needs a
        # tangent of its primal's dtype, so a single dtype fails on mixed-precision params.
        signs = _tree.cast_like(signs, params)
        h_z = jax.jvp(jax.grad(objective), (params,), (signs,))[1]
        return jax.tree.map(lambda h, z: h * z, h_z, signs), HutchinsonState(key)

    return GradientTransformation(init, update)
