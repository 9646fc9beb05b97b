"""Line searches as transformations: the backtracking (Armijo) search, shared helpers,
and `value_and_grad_from_state`, which reuses the value and gradient a search computed.

A line search is the last stage of a chain: it receives a direction ``u`` (for example
``-P g`` from L-BFGS) and returns ``eta * u`` for a step size ``eta`` it finds by evaluating
the objective along ``w + eta u``. The objective reaches it through the extra keyword
arguments of ``update``: ``value=f(w)``, ``grad=grad f(w)`` and ``value_fn=f``; any further
extra argument whose name is a parameter of ``value_fn`` is passed on to it (a batch
``x=``, ``y=``), the others are ignored. The zoom (Wolfe) search is in `gradxform.optimizers.zoom`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradxform._factory import transformation
from gradxform.core import (
    NON_NEGATIVE,
    POSITIVE,
    UNIT,
    GradientTransformation,
    PyTree,
    check_positive_int,
    find_states,
    tree_zeros_like,
)
from gradxform.optimizers._search import along, cast_scalars, objective_args, scale_tree, value_dtype
from gradxform.optimizers.zoom import ScaleByZoomLinesearchState
from gradxform.primitives.inner import tree_real_vdot

# --------------------------------------------------------------------------- backtracking


class BacktrackingLinesearchInfo(NamedTuple):
    """Diagnostics of the latest backtracking search.

    Attributes:
      num_linesearch_steps: int32, objective evaluations made.
      decrease_error: how far the accepted step is from sufficient decrease (0: satisfied).
    """

    num_linesearch_steps: jax.Array
    decrease_error: jax.Array


class ScaleByBacktrackingLinesearchState(NamedTuple):
    """State of `scale_by_backtracking_linesearch`.

    Attributes:
      learning_rate: the accepted step size (scalar, the values' dtype).
      value: the objective at the accepted point.
      grad: the gradient there (only with ``store_grad``; else ``None``).
      info: `BacktrackingLinesearchInfo`.
    """

    learning_rate: jax.Array
    value: jax.Array
    grad: PyTree | None
    info: BacktrackingLinesearchInfo


class _Backtrack(NamedTuple):
    learning_rate: jax.Array
    new_value: jax.Array
    new_grad: PyTree
    decrease_error: jax.Array
    iter_num: jax.Array


@transformation(
    {
        "slope_rtol": UNIT,
        "decrease_factor": UNIT,
        "increase_factor": POSITIVE,
        "max_learning_rate": POSITIVE,
        "atol": NON_NEGATIVE,
        "rtol": NON_NEGATIVE,
    }
)
def scale_by_backtracking_linesearch(
    max_backtracking_steps: int,
    slope_rtol: float = 1e-4,
    decrease_factor: float = 0.8,
    increase_factor: float = 1.5,
    max_learning_rate: float = 1.0,
    atol: float = 0.0,
    rtol: float = 0.0,
    store_grad: bool = False,
    verbose: bool = False,
) -> GradientTransformation:
    r"""Backtracking (Armijo) line search: shrink the step until the objective decreases enough.

    Starting from ``min(increase_factor * eta_prev, max_learning_rate)``, the step is
    multiplied by ``decrease_factor`` until

    ``f(w + eta u) <= (1 + rtol) f(w) + eta * slope_rtol * <u, grad f(w)> + atol``,

    or ``max_backtracking_steps`` reductions have been tried. If the objective is never
    finite along the way the step is 0. One stage, not a composition: it evaluates the
    objective in a loop whose length depends on the values it sees.

    Args:
      max_backtracking_steps: the most reductions tried (an int >= 0).
      slope_rtol: the sufficient-decrease coefficient, in [0, 1).
      decrease_factor: the reduction factor, in [0, 1).
      increase_factor: the growth of the first trial step over the previous step, > 0.
      max_learning_rate: the largest step size, > 0.
      atol: absolute tolerance of the criterion, >= 0.
      rtol: relative tolerance on the current value, >= 0.
      store_grad: also compute and keep the gradient at the accepted point (so that
        `value_and_grad_from_state` can reuse it).
      verbose: print a diagnostic when the search fails.

    Returns:
      A transformation with `ScaleByBacktrackingLinesearchState`; its ``update`` needs
      ``params`` and ``value=``, ``grad=``, ``value_fn=``.

    Raises:
      ValueError: if ``max_backtracking_steps`` is not an int >= 0; at ``update``, naming
        the missing arguments.

    References:
      Nocedal & Wright, "Numerical Optimization", 2nd ed., 2006, algorithm 3.1.
      https://doi.org/10.1007/978-0-387-40065-5

    Example:
      >>> import gradxform as gx, jax, jax.numpy as jnp
      >>> f = lambda w: jnp.sum((w - 3.0) ** 2)
      >>> tx = gx.chain(gx.sgd(1.0), gx.scale_by_backtracking_linesearch(15))
      >>> w = jnp.zeros(2)
      >>> value, grad = jax.value_and_grad(f)(w)
      >>> u, state = tx.update(grad, tx.init(w), w, value=value, grad=grad, value_fn=f)
      >>> bool(f(w + u) < f(w))
      True
    """
    check_positive_int("scale_by_backtracking_linesearch", "max_backtracking_steps", max_backtracking_steps, 0)

    def init(params):
        dt = value_dtype(params)
        return ScaleByBacktrackingLinesearchState(
            jnp.asarray(1.0, dt),
            jnp.asarray(jnp.inf, dt),
            tree_zeros_like(params) if store_grad else None,
            BacktrackingLinesearchInfo(jnp.asarray(0, jnp.int32), jnp.asarray(jnp.inf, dt)),
        )

    def update(updates, state, params=None, **extra):
        value, grad, value_fn, kwargs = objective_args("scale_by_backtracking_linesearch", params, extra)
        f = lambda p: value_fn(p, **kwargs)
        slope = tree_real_vdot(updates, jax.tree.map(jnp.conj, grad))

        def decrease_error(eta, new_value):
            err = new_value - (1.0 + rtol) * value - eta * slope_rtol * slope
            return jnp.maximum(jnp.where(jnp.isnan(err), jnp.inf, err), 0.0)

        def searching(s):
            return ~(s.decrease_error <= atol) & (s.iter_num <= max_backtracking_steps)

        def body(s):
            eta = jnp.where(s.iter_num > 0, decrease_factor * s.learning_rate, s.learning_rate)
            trial = along(params, eta, updates)
            if store_grad:
                new_value, g = jax.value_and_grad(f)(trial)
                err = decrease_error(eta, new_value)
                keep = (err <= atol) | (s.iter_num == max_backtracking_steps)
                new_grad = jax.tree.map(lambda a, b: jnp.where(keep, a, b), g, s.new_grad)
            else:
                new_value = f(trial)
                err = decrease_error(eta, new_value)
                new_grad = s.new_grad
            return cast_scalars(_Backtrack(eta, new_value, new_grad, err, s.iter_num + 1), s)

        dt = state.learning_rate.dtype
        start = jnp.minimum(increase_factor * state.learning_rate, max_learning_rate)
        first = _Backtrack(
            jnp.asarray(start, dt),
            jnp.asarray(value, dt),
            tree_zeros_like(params),
            jnp.asarray(jnp.inf, dt),
            jnp.asarray(0, jnp.int32),
        )
        final = jax.lax.while_loop(searching, body, first)
        eta = jnp.where(jnp.isinf(final.decrease_error), 0.0, final.learning_rate).astype(dt)
        if verbose:
            jax.lax.cond(
                final.decrease_error > atol,
                lambda: jax.debug.print(
                    "scale_by_backtracking_linesearch: no step with sufficient decrease found "
                    "(value {v}, slope {s}, last step {e}, decrease error {d}); using step {u}.",
                    v=value, s=slope, e=final.learning_rate, d=final.decrease_error, u=eta,
                ),
                lambda: None,
            )
        new_state = ScaleByBacktrackingLinesearchState(
            eta,
            jnp.asarray(final.new_value, dt),
            final.new_grad if store_grad else None,
            BacktrackingLinesearchInfo(final.iter_num, jnp.asarray(final.decrease_error, dt)),
        )
        return scale_tree(eta, updates), new_state

    return GradientTransformation(init, update)


# --------------------------------------------------------------------------- reuse


def _stored_value_and_grad(state: Any) -> list[tuple[jax.Array, PyTree]]:
    """Every (value, grad) pair kept by a line search inside ``state``, however nested."""
    kinds = (ScaleByZoomLinesearchState, ScaleByBacktrackingLinesearchState)
    return [(s.value, s.grad) for s in find_states(state, kinds) if s.grad is not None]


def value_and_grad_from_state(
    value_fn: Callable[..., jax.Array],
) -> Callable[..., tuple[jax.Array, PyTree]]:
    """``jax.value_and_grad(value_fn)`` that reuses the value and gradient a line search stored.

    A line search ends by evaluating the objective (and, for the zoom search, its gradient)
    at the point it accepts, which is the next step's starting point. The returned function
    takes the optimizer's state as ``state=`` and returns the stored pair when it is finite
    (skipping one evaluation per step), else evaluates ``value_fn``.

    Args:
      value_fn: the objective, ``value_fn(params, *args, **kwargs) -> scalar``.

    Returns:
      A function ``(params, *args, state, **kwargs) -> (value, grad)``.

    Raises:
      ValueError: when called, if the state holds no stored value and gradient (a zoom
        search, or a backtracking search with ``store_grad=True``), or several.

    Example:
      >>> import gradxform as gx, jax, jax.numpy as jnp
      >>> f = lambda w: jnp.sum(w ** 2)
      >>> tx = gx.lbfgs()
      >>> value_and_grad = gx.value_and_grad_from_state(f)
      >>> @jax.jit
      ... def step(w, state):
      ...     value, grad = value_and_grad(w, state=state)
      ...     u, state = tx.update(grad, state, w, value=value, grad=grad, value_fn=f)
      ...     return gx.apply_updates(w, u), state
      >>> w = jnp.array([1.0, -2.0])
      >>> state = tx.init(w)
      >>> for _ in range(2):
      ...     w, state = step(w, state)
      >>> float(f(w)) < 1e-8
      True
    """

    def value_and_grad(params, *args, state, **kwargs):
        found = _stored_value_and_grad(state)
        if len(found) != 1:
            raise ValueError(
                "value_and_grad_from_state: the optimizer state must hold exactly one stored value "
                f"and gradient (from a zoom line search, or a backtracking one with store_grad=True); "
                f"found {len(found)}."
            )
        value, grad = found[0]

        def evaluate(p, a, k):
            fresh = jax.value_and_grad(value_fn)(p, *a, **k)
            return jax.tree.map(lambda x, like: jnp.asarray(x).astype(like.dtype), fresh, (value, grad))

        return jax.lax.cond(
            jnp.isfinite(value),
            lambda p, a, k: (value, grad),
            evaluate,
            params,
            args,
            kwargs,
        )

    return value_and_grad
