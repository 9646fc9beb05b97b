"""Parameter-free step sizes from Optax's contrib: DoG, DoWG and COCOB (and layer-wise DoG).

- DoG and DoWG take plain gradient steps whose one scalar step size is the largest distance
  travelled from the initial parameters over (a weighted) root sum of squared gradient norms.
- COCOB treats each coordinate as a coin-betting game: the parameter is the initial value
  plus a bet, a fraction of the wealth won so far, on the sign of the negated gradient sum.

Each needs the parameters at ``update`` (distances are measured from those given to
``init``, so ``init`` must receive the real parameters, not placeholders).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradxform._factory import transformation
from gradxform._tree_math import norm
from gradxform.combinators import chain, identity
from gradxform.core import (
    NON_NEGATIVE,
    POSITIVE,
    REAL,
    abs_sq,
    GradientTransformation,
    Updates,
    check_choice,
    check_number,
    check_same_tree,
    tree_full_like,
    tree_map_unzip,
    tree_zeros_like,
)
from gradxform.primitives.elementwise import scale_by_learning_rate
from gradxform.primitives.weight_decay import MaskOrFn, add_decayed_weights

_DOG_INIT_TAGS = ("distance", "learning_rate", "heuristic")


def _lowest_dtype(params: Any) -> Any:
    """The floating dtype with the fewest bits among the parameters (float32 if none are)."""
    dtypes = [jnp.result_type(x) for x in jax.tree.leaves(params)]
    floats = [d for d in dtypes if jnp.issubdtype(d, jnp.floating)]
    return min(floats, key=lambda d: jnp.finfo(d).bits) if floats else jnp.float32


def _copy(params: Any) -> Any:
    # A copy, so that donating the parameters to a jitted step cannot invalidate the state.
    return jax.tree.map(lambda p: jnp.asarray(p).copy(), params)


def _needs_params(owner: str, params: Any) -> None:
    if params is None:
        raise ValueError(
            f"{owner} measures the distance from the initial parameters, so its update needs them: "
            "call update(updates, state, params)."
        )


def _scaled(rate: jax.Array, updates: Updates) -> Updates:
    """``rate * u`` for each update, in the update's dtype."""
    return jax.tree.map(lambda u: (rate * u).astype(u.dtype), updates)


class DoGState(NamedTuple):
    """State of `scale_by_dog`.

    Attributes:
      is_init_step: bool scalar, True until the first update.
      init_params: the parameters given to ``init`` (distances are measured from them).
      max_dist: the largest distance ``r̄`` from them so far (scalar, parameters' lowest dtype).
      sum_sq_norm_grads: ``G``, the sum of the squared global norms of the gradients (scalar).
    """

    is_init_step: jax.Array
    init_params: Updates
    max_dist: jax.Array
    sum_sq_norm_grads: jax.Array


def _check_init_step(init_step: Any) -> None:
    if not (isinstance(init_step, (tuple, list)) and len(init_step) == 2):
        raise ValueError(
            f"scale_by_dog: init_step must be a pair (tag, value) with tag one of {_DOG_INIT_TAGS}, "
            f"got init_step={init_step!r}."
        )
    tag, value = init_step
    check_choice("scale_by_dog", "init_step's tag", tag, _DOG_INIT_TAGS)
    # A zero first distance or first step keeps the parameters at x_0, where the distance
    # stays zero and so does every later step.
    check_number("scale_by_dog", f"init_step's value (for {tag!r})", value, POSITIVE)


@transformation({"eps": NON_NEGATIVE})
def scale_by_dog(init_step: tuple[str, float], eps: float = 1e-8) -> GradientTransformation:
    """DoG's step size: ``u_t = r̄_t / sqrt(G_t + eps) * g_t`` (see `dog`).

    One stage rather than a composition: the step size is a single scalar shared by every
    parameter, computed from the global norms of the distance travelled and of all the
    gradients so far; no per-coordinate primitive sees either.

    Args:
      init_step: a pair ``(tag, value)``, ``value > 0``, that sets the first step:
        ``("distance", r)`` starts ``r̄`` at ``r``; ``("heuristic", a)`` starts it at
        ``a * (1 + ||x_0||)``; ``("learning_rate", lr)`` starts ``r̄`` at 0 and makes the
        first step size ``lr``.
      eps: added to ``G`` under the square root, >= 0.

    Returns:
      A transformation with `DoGState`; its ``update`` needs ``params``. It does not flip
      the sign (`dog` does, in its learning-rate stage).

    Raises:
      ValueError: for an ``init_step`` that is not such a pair, a negative ``eps``, or at
        ``update`` without ``params``.

    References:
      Ivgi, Hinder & Carmon, "DoG is SGD's Best Friend: A Parameter-Free Dynamic Step Size
      Schedule", ICML 2023. https://arxiv.org/abs/2302.12022

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.scale_by_dog(("distance", 0.5))
      >>> p = jnp.array([3.0, 4.0])
      >>> [round(x, 4) for x in tx.update(jnp.array([3.0, 4.0]), tx.init(p), p)[0].tolist()]
      [0.3, 0.4]
    """
    _check_init_step(init_step)
    tag, value = init_step

    def init(params):
        dtype = _lowest_dtype(params)
        if tag == "distance":
            first = jnp.asarray(value, dtype)
        elif tag == "heuristic":
            first = (value * (1 + norm(params))).astype(dtype)
        else:
            first = jnp.zeros((), dtype)
        return DoGState(jnp.asarray(True), _copy(params), first, jnp.zeros((), dtype))

    def update(updates, state, params=None, **extra):
        _needs_params("scale_by_dog", params)
        check_same_tree(updates, state.init_params, "updates", "scale_by_dog's state")
        dtype = state.max_dist.dtype
        travelled = norm(jax.tree.map(lambda p0, p: p - p0, state.init_params, params))
        max_dist = jnp.maximum(state.max_dist, travelled).astype(dtype)
        sum_sq = (state.sum_sq_norm_grads + norm(updates, squared=True)).astype(dtype)
        rate = max_dist / jnp.sqrt(sum_sq + eps)
        if tag == "learning_rate":
            rate = jnp.where(state.is_init_step, value, rate)
        return _scaled(rate, updates), DoGState(jnp.asarray(False), state.init_params, max_dist, sum_sq)

    return GradientTransformation(init, update)


class ScaleByDistanceOverGradientsState(NamedTuple):
    """State of `scale_by_distance_over_gradients`, one entry per parameter array.

    Attributes:
      max_dist: each array's largest distance from its initial value so far (scalars, at
        least float32).
      grad_sum_of_squares: each array's sum of squared gradient norms (scalars, at least
        float32).
      init_params: the parameters given to ``init``, in ``param_dtype``.
    """

    max_dist: Updates
    grad_sum_of_squares: Updates
    init_params: Updates


@transformation({"reps_rel": POSITIVE, "eps": NON_NEGATIVE, "global_scale": REAL})
def scale_by_distance_over_gradients(
    reps_rel: float = 1e-6, eps: float = 1e-8, param_dtype: Any = jnp.float32, global_scale: float = 1.0
) -> GradientTransformation:
    """Layer-wise DoG (LDoG), Optax's core ``scale_by_distance_over_gradients``.

    `scale_by_dog` with one step size per parameter array instead of one for all: for each
    array ``x`` with initial value ``x_0``, ``r_t = max(r_{t-1}, ||x_t - x_0||)`` from
    ``r_0 = reps_rel * (1 + ||x_0||)``, ``G_t = G_{t-1} + ||g_t||^2`` and
    ``u_t = global_scale * r_t / sqrt(G_t + eps) * g_t``. The sign is not flipped: give
    ``global_scale=-1.0`` (or chain a negative scale) for descent, as in Optax.

    Args:
      reps_rel: the first distance relative to ``1 + ||x_0||``, > 0 (the paper suggests 1e-4
        with batch normalisation, 1e-6 otherwise).
      eps: added to ``G`` under the square root, >= 0.
      param_dtype: the dtype of the stored initial parameters (``None``: the parameters').
      global_scale: a factor on every step (typically 1.0 or -1.0).

    Returns:
      A transformation with `ScaleByDistanceOverGradientsState`; its ``update`` needs
      ``params``.

    Raises:
      ValueError: for ``reps_rel`` <= 0, a negative ``eps``, a ``param_dtype`` that is not
        floating point, or at ``update`` without ``params``.

    References:
      Ivgi, Hinder & Carmon, "DoG is SGD's Best Friend: A Parameter-Free Dynamic Step Size
      Schedule", ICML 2023. https://arxiv.org/abs/2302.12022

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.scale_by_distance_over_gradients(reps_rel=0.1, eps=0.0)
      >>> p = jnp.array([3.0, 4.0])
      >>> [round(x, 4) for x in tx.update(jnp.array([3.0, 4.0]), tx.init(p), p)[0].tolist()]
      [0.36, 0.48]
    """

    def scalar_dtype(x: Any) -> Any:
        return jnp.promote_types(jnp.result_type(x), jnp.float32)

    def init(params):
        first = jax.tree.map(
            lambda x: (reps_rel * (1 + jnp.sqrt(jnp.sum(abs_sq(x))))).astype(scalar_dtype(x)), params
        )
        sums = jax.tree.map(lambda x: jnp.zeros((), scalar_dtype(x)), params)
        kept = _copy(params) if param_dtype is None else jax.tree.map(lambda x: jnp.asarray(x, param_dtype), params)
        return ScaleByDistanceOverGradientsState(first, sums, kept)

    def update(updates, state, params=None, **extra):
        _needs_params("scale_by_distance_over_gradients", params)
        check_same_tree(updates, state.init_params, "updates", "scale_by_distance_over_gradients's state")
        max_dist = jax.tree.map(
            lambda d, x, x0: jnp.maximum(d, jnp.sqrt(jnp.sum(abs_sq(x - x0)))).astype(d.dtype),
            state.max_dist, params, state.init_params,
        )
        sums = jax.tree.map(lambda s, g: (s + jnp.sum(abs_sq(g))).astype(s.dtype), state.grad_sum_of_squares, updates)
        new_updates = jax.tree.map(
            lambda g, d, s: (global_scale * d / jnp.sqrt(s + eps) * g).astype(g.dtype), updates, max_dist, sums
        )
        return new_updates, ScaleByDistanceOverGradientsState(max_dist, sums, state.init_params)

    return GradientTransformation(init, update)


@transformation({"learning_rate": NON_NEGATIVE, "eps": NON_NEGATIVE, "weight_decay": NON_NEGATIVE})
def dog(
    learning_rate: float = 1.0,
    init_step: tuple[str, float] = ("heuristic", 1e-6),
    eps: float = 1e-8,
    weight_decay: float | None = None,
    mask: MaskOrFn = None,
) -> GradientTransformation:
    """DoG (Distance over Gradients): SGD whose step size needs no tuning.

    With ``x_0`` the parameters given to ``init``::

        r̄_t = max(r̄_{t-1}, ||x_t - x_0||),   G_t = G_{t-1} + ||g_t||^2
        x_{t+1} = x_t - learning_rate * r̄_t / sqrt(G_t + eps) * g_t

    norms being global (over all parameters), ``g_t`` including the weight decay, and
    ``r̄_0`` set by ``init_step``. The authors recommend averaging the iterates.

    Args:
      learning_rate: multiplies DoG's step size, a number >= 0 or a schedule (1 is the
        intended value).
      init_step: how the first step is set, as in `scale_by_dog`; the paper suggests
        ``("heuristic", 1e-6)``, or ``1e-4`` for models with batch normalization.
      eps: added to ``G`` under the square root, >= 0.
      weight_decay: added to the gradient before DoG sees it, >= 0, or ``None`` for none.
      mask: which parameters to decay.

    Returns:
      ``chain(add_decayed_weights(weight_decay, mask), scale_by_dog(init_step, eps),
      scale_by_learning_rate(learning_rate))``, without the first stage when
      ``weight_decay`` is ``None``; its ``update`` needs ``params``.

    Raises:
      ValueError: for a hyperparameter out of range or a malformed ``init_step``, naming
        it; at ``update`` without ``params``.

    References:
      Ivgi, Hinder & Carmon, "DoG is SGD's Best Friend: A Parameter-Free Dynamic Step Size
      Schedule", ICML 2023. https://arxiv.org/abs/2302.12022

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.dog(init_step=("learning_rate", 0.1))
      >>> p = jnp.array([1.0, 2.0])
      >>> [round(x, 4) for x in tx.update(2 * p, tx.init(p), p)[0].tolist()]
      [-0.2, -0.4]
    """
    return chain(
        add_decayed_weights(weight_decay, mask) if weight_decay is not None else identity(),
        scale_by_dog(init_step, eps),
        scale_by_learning_rate(learning_rate),
    )


class DoWGState(NamedTuple):
    """State of `scale_by_dowg`.

    Attributes:
      init_params: the parameters given to ``init`` (distances are measured from them).
      weighted_sq_norm_grads: ``v``, the sum of ``r̄_k^2 ||g_k||^2`` (scalar, the
        parameters' lowest dtype).
      estim_sq_dist: ``r̄^2``, the largest squared distance from them so far (scalar).
    """

    init_params: Updates
    weighted_sq_norm_grads: jax.Array
    estim_sq_dist: jax.Array


@transformation({"init_estim_sq_dist": POSITIVE, "eps": POSITIVE})
def scale_by_dowg(init_estim_sq_dist: float | None = None, eps: float = 1e-4) -> GradientTransformation:
    """DoWG's step size: ``u_t = r̄_t^2 / (sqrt(v_t) + eps) * g_t`` (see `dowg`).

    One stage rather than a composition, for the reason given in `scale_by_dog`: a single
    scalar step size from global norms.

    Args:
      init_estim_sq_dist: the first estimate of the squared distance to a solution, > 0;
        ``None`` for ``eps``.
      eps: added to the denominator, > 0 (also the first estimate, by default).

    Returns:
      A transformation with `DoWGState`; its ``update`` needs ``params``. It does not flip
      the sign (`dowg` does).

    Raises:
      ValueError: for a value that is not > 0, naming it; at ``update`` without ``params``.

    References:
      Khaled, Mishchenko & Jin, "DoWG Unleashed: An Efficient Universal Parameter-Free
      Gradient Descent Method", NeurIPS 2023. https://arxiv.org/abs/2305.16284

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.scale_by_dowg(init_estim_sq_dist=1.0, eps=1e-4)
      >>> p = jnp.array([3.0, 4.0])
      >>> [round(x, 4) for x in tx.update(jnp.array([3.0, 4.0]), tx.init(p), p)[0].tolist()]
      [0.6, 0.8]
    """
    first = eps if init_estim_sq_dist is None else init_estim_sq_dist

    def init(params):
        dtype = _lowest_dtype(params)
        return DoWGState(_copy(params), jnp.zeros((), dtype), jnp.asarray(first, dtype))

    def update(updates, state, params=None, **extra):
        _needs_params("scale_by_dowg", params)
        check_same_tree(updates, state.init_params, "updates", "scale_by_dowg's state")
        dtype = state.estim_sq_dist.dtype
        sq_dist = norm(jax.tree.map(lambda p0, p: p - p0, state.init_params, params), squared=True)
        estim = jnp.maximum(state.estim_sq_dist, sq_dist).astype(dtype)
        weighted = (state.weighted_sq_norm_grads + estim * norm(updates, squared=True)).astype(dtype)
        rate = estim / (jnp.sqrt(weighted) + eps)
        return _scaled(rate, updates), DoWGState(state.init_params, weighted, estim)

    return GradientTransformation(init, update)


@transformation(
    {"learning_rate": NON_NEGATIVE, "init_estim_sq_dist": POSITIVE, "eps": POSITIVE, "weight_decay": NON_NEGATIVE}
)
def dowg(
    learning_rate: float = 1.0,
    init_estim_sq_dist: float | None = None,
    eps: float = 1e-4,
    weight_decay: float | None = None,
    mask: MaskOrFn = None,
) -> GradientTransformation:
    """DoWG (Distance over Weighted Gradients): SGD whose step size needs no tuning.

    With ``x_0`` the parameters given to ``init``::

        r̄_t^2 = max(r̄_{t-1}^2, ||x_t - x_0||^2),   v_t = v_{t-1} + r̄_t^2 ||g_t||^2
        x_{t+1} = x_t - learning_rate * r̄_t^2 / (sqrt(v_t) + eps) * g_t

    norms being global, ``g_t`` including the weight decay and ``r̄_0^2`` being
    ``init_estim_sq_dist`` (or ``eps``). Unlike DoG, recent gradients weigh more in ``v``.

    Args:
      learning_rate: multiplies DoWG's step size, a number >= 0 or a schedule (1 is the
        intended value).
      init_estim_sq_dist: the first estimate of the squared distance to a solution, > 0;
        ``None`` for ``eps``.
      eps: added to the denominator, > 0.
      weight_decay: added to the gradient before DoWG sees it, >= 0, or ``None`` for none.
      mask: which parameters to decay.

    Returns:
      ``chain(add_decayed_weights(weight_decay, mask), scale_by_dowg(init_estim_sq_dist,
      eps), scale_by_learning_rate(learning_rate))``, without the first stage when
      ``weight_decay`` is ``None``; its ``update`` needs ``params``.

    Raises:
      ValueError: for a hyperparameter out of range, naming it; at ``update`` without
        ``params``.

    References:
      Khaled, Mishchenko & Jin, "DoWG Unleashed: An Efficient Universal Parameter-Free
      Gradient Descent Method", NeurIPS 2023. https://arxiv.org/abs/2305.16284

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.dowg(init_estim_sq_dist=1.0)
      >>> p = jnp.array([3.0, 4.0])
      >>> [round(x, 4) for x in tx.update(p, tx.init(p), p)[0].tolist()]
      [-0.6, -0.8]
    """
    return chain(
        add_decayed_weights(weight_decay, mask) if weight_decay is not None else identity(),
        scale_by_dowg(init_estim_sq_dist, eps),
        scale_by_learning_rate(learning_rate),
    )


class COCOBState(NamedTuple):
    """State of `scale_by_cocob`; every field but ``init_particles`` is one array per
    parameter, in the parameter's dtype.

    Attributes:
      init_particles: the parameters given to ``init``, ``w_0``.
      cumulative_gradients: ``θ``, minus the sum of the gradients.
      scale: ``L``, the largest gradient magnitude so far (starts at ``eps``).
      subgradients: ``G``, the sum of the gradient magnitudes.
      reward: ``R``, the wealth won so far, never below 0.
    """

    init_particles: Updates
    cumulative_gradients: Updates
    scale: Updates
    subgradients: Updates
    reward: Updates


@transformation({"alpha": POSITIVE, "eps": POSITIVE})
def scale_by_cocob(alpha: float = 100.0, eps: float = 1e-8) -> GradientTransformation:
    """COCOB-Backprop's update, the whole move from ``w_t`` to ``w_{t+1}`` (see `cocob`).

    One stage rather than a composition: the output is not a rescaled gradient but a new
    position, ``w_0`` plus a bet that reads four running statistics and the parameters at
    once (the reward depends on how far each coordinate has moved from ``w_0``).

    Args:
      alpha: caps the bet early on, while the gradients seen are few; > 0.
      eps: the starting value of ``L``, so that nothing divides by zero; > 0.

    Returns:
      A transformation with `COCOBState`; its ``update`` needs ``params`` and returns a
      step to add to them (the sign is already that of descent).

    Raises:
      ValueError: for a value that is not > 0, naming it; at ``update`` without ``params``.

    References:
      Orabona & Tommasi, "Training Deep Networks without Learning Rates Through Coin
      Betting", NeurIPS 2017. https://arxiv.org/abs/1705.07795

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.scale_by_cocob(alpha=1.0)
      >>> p = jnp.zeros(2)
      >>> [round(x, 4) for x in tx.update(jnp.array([1.0, -2.0]), tx.init(p), p)[0].tolist()]
      [-0.5, 0.5]
    """

    def init(params):
        return COCOBState(
            _copy(params),
            tree_zeros_like(params),
            tree_full_like(params, eps),
            tree_zeros_like(params),
            tree_zeros_like(params),
        )

    def update(updates, state, params=None, **extra):
        _needs_params("scale_by_cocob", params)
        check_same_tree(updates, state.init_particles, "updates", "scale_by_cocob's state")

        def leaf(g, w, w0, theta, big_l, big_g, reward):
            keep = lambda new, old: new.astype(old.dtype)
            big_l = keep(jnp.maximum(big_l, jnp.abs(g)), big_l)
            big_g = keep(big_g + jnp.abs(g), big_g)
            reward = keep(jnp.maximum(reward - g * (w - w0), 0), reward)
            theta = keep(theta - g, theta)
            bet = theta / (big_l * jnp.maximum(big_g + big_l, alpha * big_l)) * (big_l + reward)
            return ((w0 + bet) - w).astype(g.dtype), theta, big_l, big_g, reward

        step, theta, big_l, big_g, reward = tree_map_unzip(
            leaf,
            updates,
            params,
            state.init_particles,
            state.cumulative_gradients,
            state.scale,
            state.subgradients,
            state.reward,
        )
        return step, COCOBState(state.init_particles, theta, big_l, big_g, reward)

    return GradientTransformation(init, update)


@transformation({"learning_rate": NON_NEGATIVE, "alpha": POSITIVE, "eps": POSITIVE, "weight_decay": NON_NEGATIVE})
def cocob(
    learning_rate: float = 1.0,
    alpha: float = 100.0,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    mask: MaskOrFn = None,
) -> GradientTransformation:
    """COCOB-Backprop (COntinuous COin Betting): per-coordinate steps with no learning rate.

    For each coordinate, with ``g_t`` the (weight-decayed, ``learning_rate``-scaled)
    gradient and ``w_0`` the parameter given to ``init``::

        L_t = max(L_{t-1}, |g_t|)            (L_0 = eps)
        G_t = G_{t-1} + |g_t|
        R_t = max(R_{t-1} - g_t (w_t - w_0), 0)
        θ_t = θ_{t-1} - g_t
        w_{t+1} = w_0 + θ_t / (L_t max(G_t + L_t, alpha L_t)) * (L_t + R_t)

    This is Algorithm 2 of the paper; ``learning_rate`` (1 in the paper) only scales the
    gradients, for a schedule to act on.

    Args:
      learning_rate: multiplies the gradients before the bet, a number >= 0 or a schedule.
      alpha: caps the bet while few gradients have been seen, > 0.
      eps: the starting value of ``L``, > 0.
      weight_decay: added to the gradient (an L2 penalty's gradient), >= 0.
      mask: which parameters to decay.

    Returns:
      ``chain(add_decayed_weights(weight_decay, mask), scale_by_learning_rate(learning_rate,
      flip_sign=False), scale_by_cocob(alpha, eps))``; its ``update`` needs ``params``.

    Raises:
      ValueError: for a hyperparameter out of range, naming it; at ``update`` without
        ``params``.

    References:
      Orabona & Tommasi, "Training Deep Networks without Learning Rates Through Coin
      Betting", NeurIPS 2017. https://arxiv.org/abs/1705.07795

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.cocob(alpha=1.0)
      >>> p = jnp.zeros(2)
      >>> [round(x, 4) for x in tx.update(jnp.array([1.0, -2.0]), tx.init(p), p)[0].tolist()]
      [-0.5, 0.5]
    """
    return chain(
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate, flip_sign=False),
        scale_by_cocob(alpha, eps),
    )
