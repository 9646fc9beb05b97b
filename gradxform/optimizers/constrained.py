"""Constrained and regularised descent: proximal gradient methods (TensorFlow's
``ProximalGradientDescent`` and ``ProximalAdagrad``) and projected gradient descent.

Both compute the new parameters and output ``w_new - w`` (see
`gradxform.primitives.proximal` and `gradxform.primitives.projections`).
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import numpy as np

from gradxform._factory import transformation
from gradxform.combinators import chain
from gradxform.core import NON_NEGATIVE, POSITIVE, REAL, GradientTransformation, check_transformation, is_tracer
from gradxform.primitives.elementwise import square
from gradxform.primitives.moments import accumulate
from gradxform.primitives.projections import (
    project_box,
    project_hyperplane,
    project_l1_ball,
    project_l2_ball,
    project_non_negative,
    project_params,
    project_simplex,
)
from gradxform.primitives.proximal import inverse_sqrt, proximal_step

_PROX = {"learning_rate": NON_NEGATIVE, "l1": NON_NEGATIVE, "l2": NON_NEGATIVE}


def _check_initial_accumulator(owner: str, value: Any) -> None:
    ok = isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and value > 0
    if not ok or not math.isfinite(value):
        raise ValueError(
            f"{owner}: initial_accumulator_value must be a finite number > 0 (the first step divides "
            f"by its root), got initial_accumulator_value={value!r}."
        )


@transformation(_PROX)
def proximal_gradient(
    learning_rate: float,
    l1: float = 0.0,
    l2: float = 0.0,
    adagrad: bool = False,
    initial_accumulator_value: float = 0.1,
) -> GradientTransformation:
    r"""Proximal gradient descent for ``loss(w) + l1 |w|_1 + l2 / 2 |w|^2``.

    A gradient step on the loss, then the proximal operator of the penalty, coordinate by
    coordinate, with step size ``a``::

        x     = w - a * g
        w_new = sign(x) * max(|x| - a * l1, 0) / (1 + a * l2)

    ``a = learning_rate`` (TensorFlow's ``ProximalGradientDescent``), or with ``adagrad``,
    ``a = learning_rate / sqrt(s)`` where ``s = initial_accumulator_value + sum of g^2``
    including this step (``ProximalAdagrad``). The L1 term sets small coordinates to exactly
    zero; the L2 term shrinks the rest.

    Args:
      learning_rate: a number >= 0 or a schedule.
      l1: L1 strength, >= 0.
      l2: L2 strength, >= 0.
      adagrad: use AdaGrad's per-coordinate step sizes.
      initial_accumulator_value: starting value of AdaGrad's sum of squares, > 0.

    Returns:
      ``proximal_step(learning_rate, l1, l2, preconditioner)`` with, for AdaGrad, the
      preconditioner ``chain(square(), accumulate(initial_accumulator_value), inverse_sqrt())``.

    Raises:
      ValueError: if ``initial_accumulator_value`` is not > 0 (with ``adagrad``).

    References:
      Duchi & Singer, "Efficient Online and Batch Learning Using Forward Backward Splitting",
      JMLR 2009. https://www.jmlr.org/papers/v10/duchi09a.html
      TensorFlow, ``tf.raw_ops.ApplyProximalGradientDescent`` and ``ApplyProximalAdagrad``.
      https://www.tensorflow.org/api_docs/python/tf/raw_ops/ApplyProximalAdagrad

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.proximal_gradient(0.5, l1=1.0)
      >>> p = jnp.array([2.0, 0.2])
      >>> gx.apply_updates(p, tx.update(jnp.array([1.0, 0.0]), tx.init(p), p)[0]).tolist()
      [1.0, 0.0]
    """
    preconditioner = None
    if adagrad:
        _check_initial_accumulator("proximal_gradient", initial_accumulator_value)
        preconditioner = chain(square(), accumulate(initial_accumulator_value), inverse_sqrt())
    return proximal_step(learning_rate, l1, l2, preconditioner)


@transformation(_PROX)
def proximal_adagrad(
    learning_rate: float, l1: float = 0.0, l2: float = 0.0, initial_accumulator_value: float = 0.1
) -> GradientTransformation:
    """Proximal AdaGrad: `proximal_gradient` with AdaGrad's per-coordinate step sizes.

    Args:
      learning_rate, l1, l2, initial_accumulator_value: as in `proximal_gradient`.

    Returns:
      ``proximal_gradient(learning_rate, l1, l2, adagrad=True, initial_accumulator_value=...)``.

    Raises:
      ValueError: if ``initial_accumulator_value`` is not > 0.

    References:
      Duchi, Hazan & Singer, "Adaptive Subgradient Methods for Online Learning and Stochastic
      Optimization", JMLR 2011. https://www.jmlr.org/papers/v12/duchi11a.html

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.proximal_adagrad(0.1, l1=0.01)
      >>> p = jnp.array([1.0])
      >>> tx.update(jnp.array([0.5]), tx.init(p), p)[0].shape
      (1,)
    """
    return proximal_gradient(learning_rate, l1, l2, adagrad=True, initial_accumulator_value=initial_accumulator_value)


PROJECTION_SETS = ("box", "non_negative", "l1_ball", "l2_ball", "simplex", "hyperplane")
_NEEDS = {
    "box": ("lower", "upper"),
    "non_negative": (),
    "l1_ball": ("radius",),
    "l2_ball": ("radius",),
    "simplex": ("total",),
    "hyperplane": ("normal", "offset"),
}


@transformation({"lower": REAL, "upper": REAL, "radius": POSITIVE, "total": POSITIVE, "offset": REAL})
def projected(
    inner: GradientTransformation,
    onto: str,
    *,
    lower: float | None = None,
    upper: float | None = None,
    radius: float | None = None,
    total: float | None = None,
    normal: Any = None,
    offset: float | None = None,
    apply_to: Any = None,
) -> GradientTransformation:
    r"""Projected descent: any optimizer's step, then the Euclidean projection onto a set.

    ``w_new = P(w + u)`` with ``u`` the inner optimizer's update; the output is
    ``w_new - w``, so ``apply_updates`` lands on the set. Each leaf of the parameters is
    projected on its own:

    - ``"box"``: ``lower <= w <= upper`` (either bound may be omitted);
    - ``"non_negative"``: ``w >= 0``;
    - ``"l1_ball"`` / ``"l2_ball"``: ``||w|| <= radius``;
    - ``"simplex"``: ``w >= 0``, ``sum(w) = total`` (default 1);
    - ``"hyperplane"``: ``<normal, w> = offset`` (``normal`` a tree like the parameters,
      default all ones; ``offset`` default 0).

    The sets are of real arrays; complex parameters are rejected at ``update``.

    Args:
      inner: the optimizer whose steps are projected (ours or Optax's).
      onto: the set, one of ``PROJECTION_SETS``.
      lower: box lower bound.
      upper: box upper bound.
      radius: radius of an L1 or L2 ball, > 0.
      total: the simplex's sum, > 0.
      normal: the hyperplane's normal, a tree like the parameters (or ``None``).
      offset: the hyperplane's right-hand side.
      apply_to: a tree of booleans like the parameters; ``False`` leaves are not projected.

    Returns:
      ``chain(inner, project_params(projection))``; its ``update`` needs ``params``.

    Raises:
      ValueError: for an unknown set, a missing or irrelevant argument, or a box with
        ``lower > upper``.

    References:
      Bertsekas, "Nonlinear Programming", 3rd ed., 2016, section 3.3 (gradient projection).
      Duchi et al., "Efficient Projections onto the l1-Ball for Learning in High Dimensions",
      ICML 2008. https://doi.org/10.1145/1390156.1390191

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.projected(gx.sgd(1.0), "simplex")
      >>> p = jnp.array([0.5, 0.5])
      >>> gx.apply_updates(p, tx.update(jnp.array([-1.0, 0.0]), tx.init(p), p)[0]).tolist()
      [1.0, 0.0]
    """
    check_transformation("projected", "inner", inner)
    if onto not in PROJECTION_SETS:
        raise ValueError(f"projected: onto must be one of {PROJECTION_SETS}, got onto={onto!r}.")
    given = {"lower": lower, "upper": upper, "radius": radius, "total": total, "normal": normal, "offset": offset}
    wrong = sorted(k for k, v in given.items() if v is not None and k not in _NEEDS[onto])
    if wrong:
        raise ValueError(f"projected: {wrong} do not apply to onto={onto!r}; it takes {list(_NEEDS[onto])}.")
    if onto == "box":
        if lower is None and upper is None:
            raise ValueError("projected: onto='box' needs lower, upper or both.")
        concrete = lower is not None and upper is not None and not is_tracer(lower) and not is_tracer(upper)
        if concrete and float(lower) > float(upper):
            raise ValueError(f"projected: the box is empty, lower={lower!r} > upper={upper!r}.")
        low = -np.inf if lower is None else lower
        high = np.inf if upper is None else upper
        projection, leaf_args = partial(project_box, lower=low, upper=high), None
    elif onto == "non_negative":
        projection, leaf_args = project_non_negative, None
    elif onto in ("l1_ball", "l2_ball"):
        if radius is None:
            raise ValueError(f"projected: onto={onto!r} needs radius > 0.")
        ball = project_l1_ball if onto == "l1_ball" else project_l2_ball
        projection, leaf_args = partial(ball, radius=radius), None
    elif onto == "simplex":
        projection, leaf_args = partial(project_simplex, total=1.0 if total is None else total), None
    else:
        plane_offset = 0.0 if offset is None else offset
        projection = lambda x, a=None: project_hyperplane(x, a, plane_offset)
        leaf_args = normal
    entrywise = onto in ("box", "non_negative")
    return chain(inner, project_params(projection, apply_to=apply_to, leaf_args=leaf_args, elementwise=entrywise))
