"""The zoom line search: a step size satisfying the strong Wolfe conditions.

Two phases (Nocedal & Wright, algorithms 3.5 and 3.6). The *search* phase tries
``eta_0``, ``increase_factor * eta_0``, ... until it brackets an interval that must contain
an acceptable step; the *zoom* phase then shrinks the interval, trying in turn the
minimiser of a cubic through three known points, of a quadratic through two, or the
midpoint, whichever lies safely inside. The step accepted satisfies

    sufficient decrease:  f(w + eta u) <= f(w) + slope_rtol * eta * <u, grad f(w)> + tol
    small curvature:      |<grad f(w + eta u), u>| <= curv_rtol * |<grad f(w), u>| + tol

with Hager & Zhang's approximate decrease condition in place of the first when the
values are within ``approx_dec_rtol`` of ``f(w)`` (it resolves differences down to machine
precision rather than its square root). If the iterations run out, the best step with
sufficient decrease found so far is taken.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradxform._factory import transformation
from gradxform.core import NON_NEGATIVE, POSITIVE, UNIT, UNIT_CLOSED, GradientTransformation, PyTree, check_choice, check_positive_int, tree_zeros_like
from gradxform.optimizers._search import along, cast_scalars, objective_args, scale_tree, value_dtype
from gradxform.primitives.inner import tree_real_vdot


class ZoomLinesearchInfo(NamedTuple):
    """Diagnostics of the latest zoom search.

    Attributes:
      num_linesearch_steps: int32, objective evaluations made.
      decrease_error: distance of the accepted step from sufficient decrease (0: met).
      curvature_error: distance from the small-curvature condition (0: met).
    """

    num_linesearch_steps: jax.Array
    decrease_error: jax.Array
    curvature_error: jax.Array


class ScaleByZoomLinesearchState(NamedTuple):
    """State of `scale_by_zoom_linesearch`.

    Attributes:
      learning_rate: the accepted step size (scalar, the values' dtype).
      value: the objective at the accepted point (reused by `value_and_grad_from_state`).
      grad: the gradient at the accepted point.
      info: `ZoomLinesearchInfo`.
    """

    learning_rate: jax.Array
    value: jax.Array
    grad: PyTree
    info: ZoomLinesearchInfo


class _Point(NamedTuple):
    """A trial step with the objective's value, gradient and slope along the direction."""

    stepsize: jax.Array
    value: jax.Array
    grad: PyTree
    slope: jax.Array


class _Zoom(NamedTuple):
    count: jax.Array
    current: _Point
    decrease_error: jax.Array
    curvature_error: jax.Array
    interval_found: jax.Array
    done: jax.Array
    failed: jax.Array
    low: jax.Array
    value_low: jax.Array
    slope_low: jax.Array
    high: jax.Array
    value_high: jax.Array
    slope_high: jax.Array
    cubic_ref: jax.Array
    value_cubic_ref: jax.Array
    safe: _Point


def _cubic_minimizer(a, fa, fpa, b, fb, c, fc):
    """Minimiser of the cubic through (a, fa) with slope fpa, (b, fb) and (c, fc)."""
    db, dc = b - a, c - a
    rb, rc = fb - fa - fpa * db, fc - fa - fpa * dc
    denominator = (db * dc) ** 2 * (db - dc)
    cube = (dc**2 * rb - db**2 * rc) / denominator
    square = (-(dc**3) * rb + db**3 * rc) / denominator
    return a + (-square + jnp.sqrt(square * square - 3.0 * cube * fpa)) / (3.0 * cube)


def _quadratic_minimizer(a, fa, fpa, b, fb):
    """Minimiser of the quadratic through (a, fa) with slope fpa and (b, fb)."""
    db = b - a
    curvature = (fb - fa - fpa * db) / (db * db)
    return a - fpa / (2.0 * curvature)


def _select(condition, new, old):
    return jax.tree.map(lambda n, o: jnp.where(condition, n, o), new, old)


_ZOOM = {
    "max_learning_rate": POSITIVE,
    "tol": NON_NEGATIVE,
    "increase_factor": POSITIVE,
    "slope_rtol": UNIT,
    "curv_rtol": UNIT_CLOSED,
    "approx_dec_rtol": NON_NEGATIVE,
    "stepsize_precision": NON_NEGATIVE,
}


@transformation(_ZOOM)
def scale_by_zoom_linesearch(
    max_linesearch_steps: int,
    max_learning_rate: float | None = None,
    tol: float = 0.0,
    increase_factor: float = 2.0,
    slope_rtol: float = 1e-4,
    curv_rtol: float = 0.9,
    approx_dec_rtol: float | None = 1e-6,
    stepsize_precision: float = 1e-5,
    initial_guess_strategy: str = "keep",
    verbose: bool = False,
) -> GradientTransformation:
    r"""Scales the update direction by a step size satisfying the strong Wolfe conditions.

    The conditions and the two phases of the search are in this module's docstring. One
    stage, not a composition: it evaluates the objective and its gradient in a loop whose
    course depends on the values it sees.

    Args:
      max_linesearch_steps: the most objective evaluations per step (an int >= 1).
      max_learning_rate: the largest step size (``None``: unbounded). A bound may prevent
        the curvature condition from being met.
      tol: absolute tolerance of both conditions, >= 0.
      increase_factor: growth of the trial step in the search phase, > 0.
      slope_rtol: the sufficient-decrease coefficient ``c1``, in [0, 1).
      curv_rtol: the curvature coefficient ``c2``, in [0, 1].
      approx_dec_rtol: relative closeness to ``f(w)`` below which the approximate decrease
        condition is used; ``None`` for the plain condition only.
      stepsize_precision: once the bracketing interval is shorter than this and a step with
        sufficient decrease is known, that step is taken.
      initial_guess_strategy: ``"one"`` (first trial step 1, for quasi-Newton directions)
        or ``"keep"`` (the previous accepted step, for gradient directions).
      verbose: print a diagnostic when the search fails.

    Returns:
      A transformation with `ScaleByZoomLinesearchState`; its ``update`` needs ``params``
      and ``value=``, ``grad=``, ``value_fn=`` (further extra arguments named in
      ``value_fn``'s signature are passed to it).

    Raises:
      ValueError: for a bad ``max_linesearch_steps`` or ``initial_guess_strategy``; at
        ``update``, naming the missing arguments.

    References:
      Nocedal & Wright, "Numerical Optimization", 2nd ed., 2006, algorithms 3.5 and 3.6.
      https://doi.org/10.1007/978-0-387-40065-5
      Hager & Zhang, "A new conjugate gradient method with guaranteed descent and an
      efficient line search", SIAM J. Optim. 2005. https://doi.org/10.1137/030601880

    Example:
      >>> import gradxform as gx, jax, jax.numpy as jnp
      >>> f = lambda w: jnp.sum((w - 3.0) ** 2)
      >>> tx = gx.chain(gx.sgd(1.0), gx.scale_by_zoom_linesearch(10))
      >>> w = jnp.zeros(2)
      >>> value, grad = jax.value_and_grad(f)(w)
      >>> u, state = tx.update(grad, tx.init(w), w, value=value, grad=grad, value_fn=f)
      >>> [round(x, 4) for x in gx.apply_updates(w, u).tolist()]  # the exact minimiser
      [3.0, 3.0]
    """
    owner = "scale_by_zoom_linesearch"
    check_positive_int(owner, "max_linesearch_steps", max_linesearch_steps)
    check_choice(owner, "initial_guess_strategy", initial_guess_strategy, ("one", "keep"))

    def init(params):
        dt = value_dtype(params)
        inf = jnp.asarray(jnp.inf, dt)
        return ScaleByZoomLinesearchState(
            jnp.asarray(1.0, dt), inf, tree_zeros_like(params), ZoomLinesearchInfo(jnp.asarray(0, jnp.int32), inf, inf)
        )

    def update(updates, state, params=None, **extra):
        value, grad, value_fn, kwargs = objective_args(owner, params, extra)
        value_and_grad = jax.value_and_grad(lambda p: value_fn(p, **kwargs))
        dt = state.learning_rate.dtype
        value0 = jnp.asarray(value, dt)
        slope0 = tree_real_vdot(updates, grad).astype(dt)

        def evaluate(eta) -> _Point:
            v, g = value_and_grad(along(params, eta, updates))
            return _Point(eta, v, g, tree_real_vdot(jax.tree.map(jnp.conj, g), updates))

        def errors(p: _Point):
            decrease = p.value - value0 - slope_rtol * p.stepsize * slope0
            if approx_dec_rtol is not None:
                approx = jnp.maximum(
                    p.slope - (2 * slope_rtol - 1.0) * slope0, p.value - value0 - approx_dec_rtol * jnp.abs(value0)
                )
                decrease = jnp.minimum(approx, decrease)
            decrease = jnp.maximum(decrease, 0.0)
            curvature = jnp.maximum(jnp.abs(p.slope) - curv_rtol * jnp.abs(slope0), 0.0)
            nan_is_inf = lambda e: jnp.where(jnp.isnan(e), jnp.inf, e)
            return nan_is_inf(decrease), nan_is_inf(curvature)

        def bracket_trial(s: _Zoom):
            eta = jnp.where(s.count == 0, guess, increase_factor * s.current.stepsize)
            if max_learning_rate is None:
                return eta, jnp.asarray(False)
            return jnp.minimum(eta, max_learning_rate), eta >= max_learning_rate

        def bracket(s: _Zoom, p: _Point, at_max: jax.Array) -> _Zoom:
            first = s.count == 0
            dec, curv = errors(p)
            met = jnp.maximum(dec, curv) <= tol
            safe = _select(dec <= tol, p, s.safe)
            prev = s.current
            overshoot = (dec > 0.0) | ((p.value >= prev.value) & ~first)
            uphill = (p.slope >= 0.0) & ~overshoot
            low, high = _select(uphill, (p, prev), (prev, p))
            found = overshoot | uphill | met
            done = met | (at_max & ~found)
            return _Zoom(
                s.count + 1, p, dec, curv, found, done, (s.count + 1 >= max_linesearch_steps) & ~done,
                low.stepsize, low.value, low.slope, high.stepsize, high.value, high.slope,
                low.stepsize, low.value, safe,
            )

        def shrink_trial(s: _Zoom) -> jax.Array:
            width = jnp.abs(s.high - s.low)
            left, right = jnp.minimum(s.high, s.low), jnp.maximum(s.high, s.low)
            cubic = _cubic_minimizer(s.low, s.value_low, s.slope_low, s.high, s.value_high, s.cubic_ref, s.value_cubic_ref)
            use_cubic = (cubic > left + 0.2 * width) & (cubic < right - 0.2 * width)
            quadratic = _quadratic_minimizer(s.low, s.value_low, s.slope_low, s.high, s.value_high)
            use_quadratic = ~use_cubic & (quadratic > left + 0.1 * width) & (quadratic < right - 0.1 * width)
            return jnp.where(use_cubic, cubic, jnp.where(use_quadratic, quadratic, (s.low + s.high) / 2.0))

        def shrink(s: _Zoom, p: _Point) -> _Zoom:
            width = jnp.abs(s.high - s.low)
            middle = p.stepsize
            dec, curv = errors(p)
            done = jnp.maximum(dec, curv) <= tol
            safe = _select((dec <= tol) & (p.value < s.safe.value), p, s.safe)
            high_to_middle = (dec > 0.0) | (p.value >= s.value_low)
            high_to_low = (p.slope * (s.high - s.low) >= 0.0) & ~high_to_middle
            new_high = _select(
                high_to_middle,
                (middle, p.value, p.slope),
                _select(high_to_low, (s.low, s.value_low, s.slope_low), (s.high, s.value_high, s.slope_high)),
            )
            new_low = _select(high_to_middle, (s.low, s.value_low, s.slope_low), (middle, p.value, p.slope))
            ref = _select(high_to_middle | high_to_low, (s.high, s.value_high), (s.low, s.value_low))
            give_up = (s.count + 1 >= max_linesearch_steps) | ((width <= stepsize_precision) & (safe.stepsize > 0.0))
            return _Zoom(s.count + 1, p, dec, curv, s.interval_found, done, give_up & ~done, *new_low, *new_high, *ref, safe)

        def fall_back(s: _Zoom) -> _Zoom:
            # Out of iterations: the best step with sufficient decrease, if any; and never a
            # step at which the objective is not finite.
            use_safe = (s.safe.stepsize > 0.0) | jnp.isinf(s.decrease_error)
            if verbose:
                jax.debug.print(
                    "scale_by_zoom_linesearch: no step met both Wolfe conditions in {n} evaluations "
                    "(value {v}, slope {sl}, last step {e}, decrease error {d}, curvature error {c}); "
                    "taking step {t}.",
                    n=s.count, v=value0, sl=slope0, e=s.current.stepsize, d=s.decrease_error,
                    c=s.curvature_error, t=jnp.where(use_safe, s.safe.stepsize, s.current.stepsize),
                )
            return s._replace(current=_select(use_safe, s.safe, s.current))

        def step(s: _Zoom) -> _Zoom:
            # One evaluation of the objective per iteration (not one per phase): the trial
            # step of either phase is cheap scalar arithmetic, the evaluation is not.
            eta, at_max = bracket_trial(s)
            p = evaluate(jnp.where(s.interval_found, shrink_trial(s), eta).astype(dt))
            s = _select(s.interval_found, cast_scalars(shrink(s, p), s), cast_scalars(bracket(s, p, at_max), s))
            return jax.lax.cond(s.failed, fall_back, lambda x: x, s)

        guess = jnp.asarray(1.0, dt) if initial_guess_strategy == "one" else state.learning_rate
        zero, no, inf = jnp.asarray(0.0, dt), jnp.asarray(False), jnp.asarray(jnp.inf, dt)
        start = _Point(zero, value0, grad, slope0)
        first = _Zoom(
            jnp.asarray(0, jnp.int32), start, inf, inf, no, no, no,
            zero, value0, slope0, zero, value0, slope0, zero, value0, start,
        )
        final = jax.lax.while_loop(lambda s: ~(s.done | s.failed), step, first)
        eta = final.current.stepsize
        info = ZoomLinesearchInfo(final.count, final.decrease_error, final.curvature_error)
        new_state = ScaleByZoomLinesearchState(eta, final.current.value, final.current.grad, info)
        return scale_tree(eta, updates), cast_scalars(new_state, state)

    return GradientTransformation(init, update)
