"""The linear assignment problem, under Optax's names: ``gx.assignment.hungarian_algorithm``
and ``gx.assignment.base_hungarian_algorithm``.

Both solve the same problem with one solver (shortest augmenting paths with row and column
potentials, one row added at a time, cubic in the matrix size) written with ``jax.lax`` loops,
so they run under ``jit`` and ``vmap``. They differ only in the order in which the pairs come
back, which is Optax's order for each name.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

_NOT_A_MATRIX = (
    "{name} needs a 2-D cost matrix (rows are workers, columns are jobs), got an array of "
    "shape {shape}. Pass one matrix; to solve a batch of problems, jax.vmap over it."
)


def _check(name: str, cost_matrix: jax.typing.ArrayLike) -> jax.Array:
    cost_matrix = jnp.asarray(cost_matrix)
    if cost_matrix.ndim != 2:
        raise ValueError(_NOT_A_MATRIX.format(name=name, shape=cost_matrix.shape))
    if jnp.iscomplexobj(cost_matrix):
        raise ValueError(
            f"{name}: cost_matrix must be real (complex costs have no order, so no least total), "
            f"got dtype {cost_matrix.dtype}."
        )
    return cost_matrix


def _solve(cost: jax.Array) -> jax.Array:
    """Solves a problem with at most as many rows as columns.

    Index 0 of the column arrays is a virtual column from which each new row's search starts;
    rows are counted from 1 so that 0 means "no row".

    Returns:
      ``owner``, shape ``(cols,)`` int: the row (from 0) given each column, -1 for none.
    """
    rows, cols = cost.shape
    padded = jnp.concatenate([jnp.zeros((1, cols), cost.dtype), cost], axis=0)
    padded = jnp.concatenate([jnp.zeros((rows + 1, 1), cost.dtype), padded], axis=1)

    def add_row(carry, row):
        row_potential, col_potential, owner = carry
        owner = owner.at[0].set(row)
        start = (
            row_potential,
            col_potential,
            jnp.zeros(cols + 1, bool),  # columns in the search tree
            jnp.full(cols + 1, jnp.inf, cost.dtype),  # least reduced cost to each column
            jnp.zeros(cols + 1, jnp.int32),  # column from which each was reached
            jnp.int32(0),  # column just added to the tree
        )

        def grow(state):
            row_potential, col_potential, in_tree, slack, came_from, col = state
            in_tree = in_tree.at[col].set(True)
            frontier_row = owner[col]
            reduced = padded[frontier_row] - row_potential[frontier_row] - col_potential
            better = ~in_tree & (reduced < slack)
            slack = jnp.where(better, reduced, slack)
            came_from = jnp.where(better, col, came_from)
            outside = jnp.where(in_tree, jnp.inf, slack)
            nxt = jnp.argmin(outside).astype(jnp.int32)
            delta = outside[nxt]
            # Shift potentials so that the tree's edges stay tight and the new edge becomes so.
            row_potential = row_potential.at[owner].add(jnp.where(in_tree, delta, 0))
            col_potential = jnp.where(in_tree, col_potential - delta, col_potential)
            slack = jnp.where(in_tree, slack, slack - delta)
            return row_potential, col_potential, in_tree, slack, came_from, nxt

        def not_free(state):
            return owner[state[-1]] != 0

        row_potential, col_potential, _, _, came_from, col = lax.while_loop(not_free, grow, start)

        def flip(state):
            owner, col = state
            prev = came_from[col]
            return owner.at[col].set(owner[prev]), prev

        owner, _ = lax.while_loop(lambda s: s[1] != 0, flip, (owner, col))
        return (row_potential, col_potential, owner), None

    init = (
        jnp.zeros(rows + 1, cost.dtype),
        jnp.zeros(cols + 1, cost.dtype),
        jnp.zeros(cols + 1, jnp.int32),
    )
    (_, _, owner), _ = lax.scan(add_row, init, jnp.arange(1, rows + 1, dtype=jnp.int32))
    return owner[1:] - 1


def _assign(cost_matrix: jax.Array, descending_rows: bool) -> tuple[jax.Array, jax.Array]:
    n, m = cost_matrix.shape
    if n == 0 or m == 0:
        return jnp.zeros(0, int), jnp.zeros(0, int)
    transpose = n > m
    cost = cost_matrix.T if transpose else cost_matrix
    cost = cost.astype(jnp.result_type(float, cost.dtype))
    owner = _solve(cost)
    columns = jnp.arange(owner.shape[0])
    # In the solver's frame every row is matched; choose which pairs come first.
    if descending_rows:
        key = columns if n == m else -owner
    else:
        key = columns if transpose else owner
    key = jnp.where(owner >= 0, key, jnp.iinfo(jnp.int32).max)
    order = jnp.argsort(key, stable=True)[: min(n, m)]
    rows, cols = owner[order].astype(int), order.astype(int)
    return (cols, rows) if transpose else (rows, cols)


def hungarian_algorithm(cost_matrix: jax.typing.ArrayLike) -> tuple[jax.Array, jax.Array]:
    r"""Solves the linear assignment problem: pairs rows with columns at least total cost.

    Given an ``n x m`` cost matrix :math:`C`, finds ``min(n, m)`` pairs ``(i[k], j[k])``, no
    row or column used twice, that minimise :math:`\sum_k C_{i_k j_k}`. Rows are added one at
    a time; each is matched by a shortest augmenting path in reduced costs
    :math:`C_{ij} - u_i - v_j`, after which the dual potentials :math:`u, v` are updated so
    that all reduced costs stay non-negative (Kuhn 1955, Munkres 1957). The cost is
    :math:`O(\min(n, m)^2 \max(n, m))`; it runs under ``jit`` and ``vmap``.

    Args:
      cost_matrix: a 2-D array of costs, shape ``(n, m)``; integers are promoted to float.

    Returns:
      ``(i, j)``, two integer arrays of length ``min(n, m)``: row ``i[k]`` is assigned column
      ``j[k]``, and the total cost is ``cost_matrix[i, j].sum()``. As in Optax, for a square
      matrix the pairs are ordered by column (``j`` is ``arange(n)``); otherwise by row (or
      column, when ``n > m``) in descending order.

    Raises:
      ValueError: if ``cost_matrix`` is not 2-D or is complex.

    References:
      Kuhn, `The Hungarian method for the assignment problem
      <https://doi.org/10.1002/nav.3800020109>`_, 1955.

      Munkres, `Algorithms for the assignment and transportation problems
      <https://doi.org/10.1137/0105003>`_, 1957.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> cost = jnp.array([[4.0, 1.0, 3.0], [2.0, 0.0, 5.0], [3.0, 2.0, 2.0]])
      >>> i, j = gx.assignment.hungarian_algorithm(cost)
      >>> print(i, j, cost[i, j].sum())
      [1 0 2] [0 1 2] 5.0
    """
    return _assign(_check("hungarian_algorithm", cost_matrix), descending_rows=True)


def base_hungarian_algorithm(cost_matrix: jax.typing.ArrayLike) -> tuple[jax.Array, jax.Array]:
    """Solves the linear assignment problem, returning the pairs sorted by row.

    The same problem and solver as `hungarian_algorithm` (see there for the method); Optax
    has a second implementation under this name, which returns its pairs in ascending row
    order, and so does this function.

    Args:
      cost_matrix: a 2-D array of costs, shape ``(n, m)``; integers are promoted to float.

    Returns:
      ``(i, j)``, two integer arrays of length ``min(n, m)``, ``i`` ascending: row ``i[k]`` is
      assigned column ``j[k]``, and the total cost is ``cost_matrix[i, j].sum()``.

    Raises:
      ValueError: if ``cost_matrix`` is not 2-D or is complex.

    References:
      Kuhn, `The Hungarian method for the assignment problem
      <https://doi.org/10.1002/nav.3800020109>`_, 1955.

      Munkres, `Algorithms for the assignment and transportation problems
      <https://doi.org/10.1137/0105003>`_, 1957.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> cost = jnp.array([[8, 4, 7], [5, 2, 3], [9, 6, 7], [9, 4, 8]])
      >>> i, j = gx.assignment.base_hungarian_algorithm(cost)
      >>> print(cost[i, j].sum())
      15
    """
    return _assign(_check("base_hungarian_algorithm", cost_matrix), descending_rows=False)
