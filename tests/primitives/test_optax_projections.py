"""The tree-level projections ``gx.projections.projection_*`` against ``optax.projections``."""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradxform as gx

NAMES = sorted(n for n in dir(optax.projections) if n.startswith("projection_"))


def _tree(seed: int, scale: float = 3.0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "m": jnp.asarray(scale * rng.normal(size=(2, 3)), jnp.float32),
        "v": jnp.asarray(scale * rng.normal(size=4), jnp.float32),
    }


X = _tree(0)
A = _tree(1, 1.0)
LOWER = {"m": jnp.full((2, 3), -1.0), "v": jnp.asarray([-2.0, 0.0, -0.5, 1.0])}
UPPER = {"m": jnp.full((2, 3), 0.5), "v": jnp.asarray([2.0, 0.5, 0.5, 3.0])}

# name -> the arguments after the tree. Optax's box and hypercube cannot broadcast a scalar
# bound over a tree with several leaves, so they get tree bounds here (scalars are tested below).
CASES = {
    "projection_box": (LOWER, UPPER),
    "projection_halfspace": (A, 0.7),
    "projection_hypercube": ({"m": jnp.ones((2, 3)), "v": jnp.full(4, 2.0)},),
    "projection_hyperplane": (A, 0.7),
    "projection_l1_ball": (2.0,),
    "projection_l1_sphere": (2.0,),
    "projection_l2_ball": (2.0,),
    "projection_l2_sphere": (2.0,),
    "projection_linf_ball": (1.5,),
    "projection_non_negative": (),
    "projection_simplex": (2.0,),
    "projection_vector": (A,),
}


def _optax(name, x, *args):
    if name == "projection_hypercube":  # Optax's version clips with a scalar lower bound 0
        return optax.projections.projection_box(x, jax.tree.map(jnp.zeros_like, args[0]), args[0])
    return getattr(optax.projections, name)(x, *args)


def _close(got, want, **tol):
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), **{"rtol": 1e-5, "atol": 1e-6, **tol})


def test_every_optax_projection_is_there_with_optaxs_arguments():
    assert NAMES == sorted(CASES)
    for name in NAMES:
        theirs, ours = (
            [(p.name, p.default, p.kind) for p in inspect.signature(getattr(module, name)).parameters.values()]
            for module in (optax.projections, gx.projections)
        )
        assert ours == theirs, name
        assert not hasattr(gx, name)  # like Optax, only under the projections namespace


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("name", NAMES)
def test_matches_optax(name, jit):
    fn = getattr(gx.projections, name)
    got = (jax.jit(fn) if jit else fn)(X, *CASES[name])
    _close(got, _optax(name, X, *CASES[name]))


@pytest.mark.parametrize("name", NAMES)
def test_idempotent(name):
    fn = getattr(gx.projections, name)
    once = fn(X, *CASES[name])
    _close(fn(once, *CASES[name]), once, rtol=1e-5, atol=1e-5)


INSIDE = {
    "projection_box": lambda x: jax.tree.map(lambda v, lo, hi: (lo + hi) / 2 + 0 * v, x, LOWER, UPPER),
    "projection_halfspace": lambda x: gx.projections.projection_hyperplane(x, A, -5.0),
    "projection_hypercube": lambda x: jax.tree.map(lambda v: jnp.abs(v) / (1 + jnp.abs(v)), x),
    "projection_l1_ball": lambda x: jax.tree.map(lambda v: v / 100, x),
    "projection_l2_ball": lambda x: jax.tree.map(lambda v: v / 100, x),
    "projection_linf_ball": lambda x: jax.tree.map(jnp.tanh, x),
    "projection_non_negative": lambda x: jax.tree.map(jnp.abs, x),
}


@pytest.mark.parametrize("name", sorted(INSIDE))
def test_points_inside_come_back_unchanged(name):
    inside = INSIDE[name](X)
    out = getattr(gx.projections, name)(inside, *CASES[name])
    for o, i in zip(jax.tree.leaves(out), jax.tree.leaves(inside)):
        np.testing.assert_array_equal(np.asarray(o), np.asarray(i))


def test_results_lie_on_their_sets():
    p = gx.projections
    flat = lambda t: np.concatenate([np.ravel(np.asarray(v, np.float64)) for v in jax.tree.leaves(t)])
    s = flat(p.projection_simplex(X, 2.0))
    assert np.all(s >= 0) and abs(s.sum() - 2.0) < 1e-5
    assert abs(np.abs(flat(p.projection_l1_sphere(X, 2.0))).sum() - 2.0) < 1e-5
    assert abs(np.abs(flat(p.projection_l1_ball(X, 2.0))).sum() - 2.0) < 1e-5
    assert abs(np.linalg.norm(flat(p.projection_l2_sphere(X, 2.0))) - 2.0) < 1e-5
    assert abs(np.linalg.norm(flat(p.projection_l2_ball(X, 2.0))) - 2.0) < 1e-5
    assert abs(flat(A) @ flat(p.projection_hyperplane(X, A, 0.7)) - 0.7) < 1e-5
    assert flat(A) @ flat(p.projection_halfspace(X, A, 0.7)) <= 0.7 + 1e-5


def test_scalar_bounds_broadcast_over_every_leaf():
    p = gx.projections
    lo, hi = jax.tree.map(lambda v: jnp.full_like(v, -0.5), X), jax.tree.map(lambda v: jnp.full_like(v, 1.0), X)
    _close(p.projection_box(X, -0.5, 1.0), optax.projections.projection_box(X, lo, hi))
    _close(p.projection_hypercube(X), optax.projections.projection_box(X, jax.tree.map(jnp.zeros_like, X), hi))
    v = X["v"]
    _close(p.projection_hypercube(v, 0.5), optax.projections.projection_hypercube(v, 0.5))
    _close(p.projection_box(v, -1.0, 0.5), optax.projections.projection_box(v, -1.0, 0.5))


def test_simplex_derivative_matches_optax():
    tangent = _tree(2, 1.0)
    _, ours = jax.jvp(lambda t: gx.projections.projection_simplex(t, 2.0), (X,), (tangent,))
    _, theirs = jax.jvp(lambda t: optax.projections.projection_simplex(t, 2.0), (X,), (tangent,))
    _close(ours, theirs)


def test_leaves_keep_their_dtype():
    x = {"m": X["m"].astype(jnp.bfloat16), "v": X["v"]}
    for name in ("projection_l2_ball", "projection_l1_ball", "projection_simplex", "projection_linf_ball"):
        out = getattr(gx.projections, name)(x)
        assert out["m"].dtype == jnp.bfloat16 and out["v"].dtype == jnp.float32, name


ZERO_A = jax.tree.map(jnp.zeros_like, A)
BAD = [
    ("projection_l2_ball", (X, -1.0), "scale"),
    ("projection_l2_sphere", (X, -1.0), "scale"),
    ("projection_l1_ball", (X, -1.0), "scale"),
    ("projection_l1_sphere", (X, -1.0), "scale"),
    ("projection_simplex", (X, -1.0), "scale"),
    ("projection_linf_ball", (X, -1.0), "scale"),
    ("projection_hypercube", (X, -1.0), "scale"),
    ("projection_l2_ball", (X, jnp.ones(3)), "scale must be a scalar"),
    ("projection_box", (X, UPPER, LOWER), "lower must be <= upper"),
    ("projection_box", (X, {"m": 0.0}, 1.0), "lower must be a scalar or a tree"),
    ("projection_box", (X, jnp.zeros(3), 1.0), "lower at leaf 'v'"),
    ("projection_vector", (X, ZERO_A), "a must be non-zero"),
    ("projection_hyperplane", (X, ZERO_A, 1.0), "a must be non-zero"),
    ("projection_halfspace", (X, {"m": A["m"]}, 1.0), "a must have the tree structure"),
    ("projection_hyperplane", (X, {"m": A["m"], "v": A["m"]}, 1.0), "a has shape"),
    ("projection_hyperplane", (X, A, jnp.ones(2)), "b must be a scalar"),
    ("projection_simplex", ({"z": jnp.asarray([1j])},), "complex"),
    ("projection_simplex", ({"e": jnp.zeros(0)},), "no entries"),
]


@pytest.mark.parametrize("name,args,match", BAD, ids=[f"{n}-{m}" for n, _, m in BAD])
def test_bad_arguments_raise_naming_them(name, args, match):
    with pytest.raises(ValueError, match=match):
        getattr(gx.projections, name)(*args)


def test_optax_silently_returns_nonsense_for_a_negative_radius():
    """Why the checks above exist: Optax flips the sign of the tree for scale=-1."""
    out = optax.projections.projection_l2_ball(X, -1.0)
    assert float(out["v"][0]) * float(X["v"][0]) < 0


# Points on a face of the set: an entry lands exactly on the threshold, where the projection
# has a kink. The derivative must be the one of the face the point lies on (Optax's): the
# output's sum is constant on the simplex, so no tangent may change it.
ON_A_FACE = {
    "on-the-simplex": jnp.asarray([0.3, 0.7, 0.0]),
    "tie-at-threshold": jnp.asarray([2.0, 1.0, 1.0, 0.0]),
    "tree": {"a": jnp.asarray([0.5, -2.0, 3.0]), "b": jnp.asarray(1.5)},
}


@pytest.mark.parametrize("point", ON_A_FACE.values(), ids=list(ON_A_FACE))
@pytest.mark.parametrize("name", ["projection_simplex", "projection_l1_sphere", "projection_non_negative"])
def test_derivative_at_a_kink_matches_optax(name, point):
    args = () if name == "projection_non_negative" else (1.5 if isinstance(point, dict) else 1.0,)
    ours = jax.jacobian(lambda t: getattr(gx.projections, name)(t, *args))(point)
    theirs = jax.jacobian(lambda t: getattr(optax.projections, name)(t, *args))(point)
    _close(ours, theirs)


def test_simplex_output_sum_has_zero_gradient_on_a_face():
    grad = jax.grad(lambda t: gx.tree.sum(gx.projections.projection_simplex(t, 1.5)))(ON_A_FACE["tree"])
    for g in jax.tree.leaves(grad):
        np.testing.assert_array_equal(np.asarray(g), 0.0)


BOX_ON_INTEGERS = [
    ("int32-fractional-bounds", jnp.asarray([0, 1, 5], jnp.int32), 0.5, 2.5),
    ("uint8-negative-lower", jnp.asarray([0, 1, 5], jnp.uint8), -1, 2),
    ("bool-around-both", jnp.asarray([True, False]), -1.0, 1.0),
    ("bool-fractional-upper", jnp.asarray([True, False]), 0.0, 0.5),
]


@pytest.mark.parametrize("x,lower,upper", [c[1:] for c in BOX_ON_INTEGERS], ids=[c[0] for c in BOX_ON_INTEGERS])
def test_box_on_integer_leaves_stays_in_the_box(x, lower, upper):
    out = gx.projections.projection_box(x, lower, upper)
    assert out.dtype == x.dtype
    values = np.asarray(out, np.float64)
    assert np.all(values >= lower) and np.all(values <= upper), out
    # The nearest point of the box among the leaf's dtype's values.
    np.testing.assert_array_equal(values, np.clip(np.asarray(x, np.float64), np.ceil(lower), np.floor(upper)))
