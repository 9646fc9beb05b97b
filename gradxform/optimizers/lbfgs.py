"""L-BFGS: a quasi-Newton direction from the last ``m`` steps, followed by a line search.

The inverse Hessian is approximated from the differences of parameters and gradients of
the last ``m`` steps, ``s_k = w_{k+1} - w_k`` and ``y_k = g_{k+1} - g_k``::

    H_{k,j+1} = V_j^T H_{k,j} V_j + rho_j s_j s_j^T,   V_j = I - rho_j y_j s_j^T,   rho_j = 1 / <y_j, s_j>
    H_{k,k-m} = gamma_k I,   gamma_k = <s_{k-1}, y_{k-1}> / <y_{k-1}, y_{k-1}>   (1 without scaling)

and ``H_k g_k`` is computed by the two-loop recursion without forming any matrix. At the
first step, with scaling, ``gamma_0 = min(1, 1 / ||g_0||)`` (a first step of length at most
one). The direction ``-H_k g_k`` is then scaled by a step size from a line search
(`scale_by_zoom_linesearch` by default), which needs the objective: ``update(grads,
state, params, value=f(params), grad=grads, value_fn=f)``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradxform._factory import transformation
from gradxform.combinators import chain, identity
from gradxform.core import NON_NEGATIVE, GradientTransformation, PyTree, abs_sq, check_positive_int, check_same_tree, check_transformation, new_count, require_params, safe_increment, tree_zeros_like
from gradxform.optimizers.zoom import scale_by_zoom_linesearch
from gradxform.primitives.elementwise import scale, scale_by_learning_rate
from gradxform.primitives.inner import tree_real_vdot


class ScaleByLBFGSState(NamedTuple):
    """State of `scale_by_lbfgs`.

    Attributes:
      count: int32 scalar, updates applied so far.
      params: the parameters at the previous update.
      updates: the gradients (inputs) at the previous update.
      diff_params_memory: the last ``memory_size`` parameter differences ``s``, stacked on a
        leading axis of each leaf (a ring buffer).
      diff_updates_memory: the matching gradient differences ``y``.
      weights_memory: float32 ``(memory_size,)``, the ``rho = 1 / <y, s>`` of each pair.
    """

    count: jax.Array
    params: PyTree
    updates: PyTree
    diff_params_memory: PyTree
    diff_updates_memory: PyTree
    weights_memory: jax.Array


def _sq_norm(tree: PyTree) -> jax.Array:
    total = 0
    for x in jax.tree.leaves(tree):
        total = total + jnp.sum(abs_sq(x))
    return jnp.asarray(total)


def _two_loop(g: PyTree, s_mem: PyTree, y_mem: PyTree, rho: jax.Array, gamma: jax.Array, newest: jax.Array) -> PyTree:
    """``H g`` by the two-loop recursion (Nocedal & Wright, algorithm 7.4) over the ring buffer.

    ``newest`` is the slot the next pair will be written to, so the oldest pair is there
    and the newest just before it.
    """
    m = rho.shape[0]
    order = (newest + jnp.arange(m)) % m
    pick = lambda mem, i: jax.tree.map(lambda x: x[i], mem)
    cast = lambda new, old: jax.tree.map(lambda a, b: a.astype(b.dtype), new, old)

    def backward(q, i):
        alpha = rho[i] * tree_real_vdot(pick(s_mem, i), q)
        q_new = jax.tree.map(lambda a, y: a - alpha.astype(jnp.real(a).dtype) * y, q, pick(y_mem, i))
        return cast(q_new, q), alpha

    q, alphas = jax.lax.scan(backward, g, order, reverse=True)
    r = jax.tree.map(lambda a: (jnp.asarray(gamma).astype(jnp.real(a).dtype) * a).astype(a.dtype), q)

    def forward(r, i_alpha):
        i, alpha = i_alpha
        beta = rho[i] * tree_real_vdot(pick(y_mem, i), r)
        r_new = jax.tree.map(lambda a, s: a + (alpha - beta).astype(jnp.real(a).dtype) * s, r, pick(s_mem, i))
        return cast(r_new, r), beta

    r, _ = jax.lax.scan(forward, r, (order, alphas))
    return r


@transformation()
def scale_by_lbfgs(memory_size: int = 10, scale_init_precond: bool = True) -> GradientTransformation:
    """Multiplies the gradient by L-BFGS's inverse-Hessian approximation (see `lbfgs`).

    The memory is updated first, from the parameters and gradient given now and those of
    the previous update, then the direction is computed: chained before a line search,
    the memory therefore only ever holds accepted steps. One stage, not a composition: the
    output is a sequence of inner products with the stage's own memory.

    Args:
      memory_size: the number ``m`` of past pairs kept (an int >= 1).
      scale_init_precond: start the recursion from ``gamma_k I`` rather than ``I``.

    Returns:
      A transformation with `ScaleByLBFGSState`; its ``update`` needs ``params``.

    Raises:
      ValueError: if ``memory_size`` is not an int >= 1; at ``update`` without ``params``.

    References:
      Nocedal & Wright, "Numerical Optimization", 2nd ed., 2006, algorithms 7.4 and 7.5.
      https://doi.org/10.1007/978-0-387-40065-5
      Liu & Nocedal, "On the limited memory BFGS method for large scale optimization",
      Mathematical Programming 1989. https://doi.org/10.1007/BF01589116

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.scale_by_lbfgs()
      >>> w = jnp.array([3.0, 4.0])
      >>> tx.update(w, tx.init(w), w)[0].tolist()  # first step: g / max(1, ||g||)
      [0.6000000238418579, 0.800000011920929]
    """
    check_positive_int("scale_by_lbfgs", "memory_size", memory_size)

    def init(params):
        stacked = jax.tree.map(lambda p: jnp.zeros((memory_size,) + jnp.shape(p), jnp.asarray(p).dtype), params)
        return ScaleByLBFGSState(
            new_count(), tree_zeros_like(params), tree_zeros_like(params), stacked, stacked, jnp.zeros(memory_size)
        )

    def update(updates, state, params=None, **extra):
        require_params("scale_by_lbfgs", params)
        check_same_tree(updates, state.params, "updates", "scale_by_lbfgs's state")
        started = state.count > 0
        slot = state.count % memory_size
        last = (state.count - 1) % memory_size
        s = jax.tree.map(lambda a, b: jnp.where(started, a - b, jnp.zeros_like(a)), params, state.params)
        y = jax.tree.map(lambda a, b: jnp.where(started, a - b, jnp.zeros_like(a)), updates, state.updates)
        sy = tree_real_vdot(y, s)
        rho = jnp.where(started & (sy != 0.0), 1.0 / jnp.where(sy == 0.0, 1.0, sy), 0.0)
        write = lambda mem, new: jax.tree.map(lambda m, n: m.at[last].set(n.astype(m.dtype)), mem, new)
        s_mem, y_mem = write(state.diff_params_memory, s), write(state.diff_updates_memory, y)
        rho_mem = state.weights_memory.at[last].set(rho.astype(state.weights_memory.dtype))
        if scale_init_precond:
            yy = _sq_norm(y)
            gamma = jnp.where(yy > 0.0, sy / jnp.where(yy > 0.0, yy, 1.0), 1.0)
            first = jnp.minimum(1.0, 1.0 / jnp.sqrt(_sq_norm(jax.lax.stop_gradient(updates))))
            gamma = jnp.where(started, gamma, first)
        else:
            gamma = jnp.asarray(1.0)
        direction = _two_loop(updates, s_mem, y_mem, rho_mem, gamma, slot)
        new_state = ScaleByLBFGSState(safe_increment(state.count), params, updates, s_mem, y_mem, rho_mem)
        return direction, new_state

    return GradientTransformation(init, update)


_DEFAULT_LINESEARCH = scale_by_zoom_linesearch(max_linesearch_steps=20, initial_guess_strategy="one")


@transformation({"learning_rate": NON_NEGATIVE})
def lbfgs(
    learning_rate: float | None = None,
    memory_size: int = 10,
    scale_init_precond: bool = True,
    linesearch: GradientTransformation | None = _DEFAULT_LINESEARCH,
) -> GradientTransformation:
    r"""L-BFGS: a limited-memory quasi-Newton direction with a Wolfe line search.

    ``w_{k+1} = w_k - eta_k lr H_k g_k`` with ``H_k`` the inverse-Hessian approximation
    built from the last ``memory_size`` steps (equations in this module's docstring) and
    ``eta_k`` from ``linesearch``. The update needs the objective:
    ``update(grads, state, params, value=f(params), grad=grads, value_fn=f)``; with
    `value_and_grad_from_state` the value and gradient the line search computed at the
    accepted point are reused. Complex parameters are supported.

    Args:
      learning_rate: a global factor (a number or a schedule); ``None`` leaves the step to
        the line search alone.
      memory_size: the number of past steps kept (an int >= 1). Memory costs
        ``2 * memory_size`` copies of the parameters.
      scale_init_precond: start from a scaled identity (``gamma_k``).
      linesearch: the line search, last stage of the chain; ``None`` for none (a fixed
        step: give a ``learning_rate``). Default: ``scale_by_zoom_linesearch(
        max_linesearch_steps=20, initial_guess_strategy="one")``.

    Returns:
      ``chain(scale_by_lbfgs(memory_size, scale_init_precond), scale(-1.0) or
      scale_by_learning_rate(learning_rate), linesearch)``.

    Raises:
      ValueError: if ``memory_size`` is not an int >= 1.
      TypeError: if ``linesearch`` is not a transformation.

    References:
      Nocedal & Wright, "Numerical Optimization", 2nd ed., 2006, algorithms 7.4 and 7.5.
      https://doi.org/10.1007/978-0-387-40065-5
      Liu & Nocedal, "On the limited memory BFGS method for large scale optimization",
      Mathematical Programming 1989. https://doi.org/10.1007/BF01589116

    Example:
      >>> import gradxform as gx, jax, jax.numpy as jnp
      >>> f = lambda w: jnp.sum((w - 1.0) ** 2) + 0.5 * jnp.sum(w) ** 2
      >>> tx = gx.lbfgs()
      >>> w = jnp.zeros(3)
      >>> @jax.jit
      ... def step(w, state):
      ...     value, grad = jax.value_and_grad(f)(w)
      ...     u, state = tx.update(grad, state, w, value=value, grad=grad, value_fn=f)
      ...     return gx.apply_updates(w, u), state
      >>> state = tx.init(w)
      >>> for _ in range(5):
      ...     w, state = step(w, state)
      >>> [round(x, 4) for x in w.tolist()]
      [0.4, 0.4, 0.4]
    """
    if linesearch is not None:
        check_transformation("lbfgs", "linesearch", linesearch, call="gx.{owner}(linesearch={arg})")
    step = scale(-1.0) if learning_rate is None else scale_by_learning_rate(learning_rate)
    return chain(scale_by_lbfgs(memory_size, scale_init_precond), step, identity() if linesearch is None else linesearch)
