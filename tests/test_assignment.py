"""gx.assignment against optax.assignment (same pairs, same order) and SciPy (same total cost)."""

from __future__ import annotations

import inspect
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradxform as gx

NAMES = ["hungarian_algorithm", "base_hungarian_algorithm"]
SHAPES = [(1, 1), (4, 4), (6, 6), (3, 7), (7, 3), (1, 5), (5, 1), (0, 3), (3, 0)]


def _cost(shape: tuple[int, int], seed: int) -> jax.Array:
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


@pytest.mark.parametrize("name", NAMES)
def test_takes_optaxs_arguments(name):
    ours = inspect.signature(getattr(gx.assignment, name)).parameters
    theirs = inspect.signature(getattr(optax.assignment, name)).parameters
    assert list(ours) == list(theirs)
    assert [p.default for p in ours.values()] == [p.default for p in theirs.values()]


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("name", NAMES)
def test_matches_optax(name, shape, jit):
    ours, theirs = getattr(gx.assignment, name), getattr(optax.assignment, name)
    if jit:
        ours = jax.jit(ours)
    for seed in (0, 1):
        cost = _cost(shape, seed)
        i, j = ours(cost)
        oi, oj = theirs(cost)
        np.testing.assert_array_equal(i, oi)
        np.testing.assert_array_equal(j, oj)
        assert i.shape == j.shape == (min(shape),)


@pytest.mark.parametrize("shape", [(5, 5), (4, 8), (8, 4)], ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("name", NAMES)
def test_total_cost_is_scipys(name, shape):
    optimize = pytest.importorskip("scipy.optimize")
    cost = _cost(shape, 3)
    i, j = getattr(gx.assignment, name)(cost)
    si, sj = optimize.linear_sum_assignment(np.asarray(cost))
    np.testing.assert_allclose(cost[i, j].sum(), np.asarray(cost)[si, sj].sum(), rtol=1e-6)
    assert len(set(np.asarray(i).tolist())) == len(set(np.asarray(j).tolist())) == min(shape)


def test_integer_costs_reach_the_optimum():
    cost = jnp.array([[90, 80, 75, 70], [35, 85, 55, 65], [125, 95, 90, 95], [45, 110, 95, 115], [50, 100, 90, 100]])
    for name in NAMES:
        i, j = getattr(gx.assignment, name)(cost)
        assert int(cost[i, j].sum()) == 265


def test_vmap_over_a_batch():
    costs = jnp.stack([_cost((4, 6), s) for s in range(3)])
    i, j = jax.vmap(gx.assignment.hungarian_algorithm)(costs)
    for b in range(3):
        oi, oj = optax.assignment.hungarian_algorithm(costs[b])
        np.testing.assert_array_equal(i[b], oi)
        np.testing.assert_array_equal(j[b], oj)


@pytest.mark.parametrize("shape", [(3,), (2, 3, 4), ()], ids=["1d", "3d", "scalar"])
@pytest.mark.parametrize("name", NAMES)
def test_rejects_a_non_matrix(name, shape):
    with pytest.raises(ValueError, match=rf"{name} needs a 2-D cost matrix.*shape {re.escape(str(shape))}"):
        getattr(gx.assignment, name)(jnp.zeros(shape))


@pytest.mark.parametrize("name", NAMES)
def test_rejects_complex_costs_naming_them(name):
    # Complex numbers have no order: there is no least total cost to find.
    with pytest.raises(ValueError, match=rf"{name}: cost_matrix must be real.*complex64"):
        getattr(gx.assignment, name)(jnp.asarray([[1 + 1j, 2.0], [3.0, 0.0]]))


@pytest.mark.parametrize("name", NAMES)
def test_infinite_costs_are_avoided_when_possible(name):
    # Optax's base_hungarian_algorithm never returns on a row of infinite costs.
    inf = jnp.inf
    cost = jnp.asarray([[inf, inf], [1.0, 2.0], [0.0, 5.0]])
    i, j = getattr(gx.assignment, name)(cost)
    assert float(cost[i, j].sum()) == 2.0
