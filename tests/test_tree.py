"""``gx.tree`` and the safe numerics against Optax's (``optax.tree``, ``optax.safe_*``): the
same names and arguments, and the same values, dtypes and weak types, eagerly and under
``jit``; readable errors where Optax's are opaque."""

import inspect
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradxform as gx


def _mixed(seed):
    r = np.random.default_rng(seed)
    return {
        "w": jnp.asarray(r.normal(size=(2, 3)), jnp.float32),
        "b": jnp.asarray(r.normal(size=3), jnp.bfloat16),
        "s": jnp.asarray(r.normal(), jnp.float32),
    }


A, B = _mixed(0), _mixed(1)
POS = jax.tree.map(lambda x: jnp.abs(x) + 1, B)
Z = {"z": jnp.asarray([1 + 2j, -3 + 0.5j], jnp.complex64), "r": jnp.asarray([2.0, -1.0])}
Z2 = {"z": jnp.asarray([0.5 - 1j, 2 + 2j], jnp.complex64), "r": jnp.asarray([1.0, 4.0])}
INTS = {"i": jnp.asarray([3, -7, 2], jnp.int32), "j": jnp.asarray(5, jnp.int32)}
WITH_EMPTY = {"a": jnp.asarray([2.0, -4.0]), "e": jnp.zeros((0,))}
WITH_NONE = {"w": jnp.asarray([1.0, -2.0]), "frozen": None}
MOM_NONE = {"w": jnp.asarray([0.5, 0.25]), "frozen": jnp.asarray([9.0, 9.0])}


def _is_none(x):
    return x is None


def assert_same(ours, theirs):
    """Same structure; leaf by leaf the same type, dtype, weak type, shape and bits."""
    assert jax.tree.structure(ours, is_leaf=_is_none) == jax.tree.structure(theirs, is_leaf=_is_none)
    for a, b in zip(jax.tree.leaves(ours, is_leaf=_is_none), jax.tree.leaves(theirs, is_leaf=_is_none)):
        if a is None or b is None:
            assert a is b
            continue
        if not isinstance(b, jax.Array):  # a Python result (size, an empty tree's sum)
            assert type(a) is type(b) and a == b, (a, b)
            continue
        assert isinstance(a, jax.Array)
        weak = getattr(a, "weak_type", None), getattr(b, "weak_type", None)  # keys have none
        assert (a.dtype, a.shape, weak[0]) == (b.dtype, b.shape, weak[1]), (a, b)
        if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        same = (a == b) | ((a != a) & (b != b)) if jnp.issubdtype(a.dtype, jnp.inexact) else a == b
        assert bool(jnp.all(same)), (a, b)


# name, array arguments, static keyword arguments; each runs eagerly and under jit.
CASES = [
    ("add", (A, B), {}),
    ("add", (A, B, POS), {}),
    ("add", ({"t": jnp.asarray(True)}, {"t": jnp.asarray(True)}), {}),
    ("add", (WITH_NONE, {"w": jnp.ones(2), "frozen": None}), {}),
    ("sub", (A, B), {}),
    ("mul", (A, B), {}),
    ("div", (A, POS), {}),
    ("scale", (jnp.asarray(0.5), A), {}),
    ("add_scale", (A, jnp.asarray(-0.3), B), {}),
    ("add_scale", (WITH_NONE, jnp.asarray(2.0), MOM_NONE), {}),
    ("vdot", (A, B), {}),
    ("vdot", (Z, Z2), {}),
    ("vdot", (INTS, INTS), {}),
    ("sum", (A,), {}),
    ("sum", (A,), {"associative_reduction": True}),
    ("sum", (INTS,), {}),
    ("max", (A,), {}),
    ("max", (INTS,), {}),
    ("max", (WITH_EMPTY,), {}),
    ("min", (A,), {}),
    ("min", (INTS,), {}),
    ("min", (WITH_EMPTY,), {}),
    *[("norm", (t,), {"ord": o, "squared": sq}) for t in (A, Z, INTS) for o in (None, 1, "inf") for sq in (False, True)],
    *[("norm", (A,), {"ord": o}) for o in (2, math.inf, "infinity")],
    ("norm", (WITH_EMPTY,), {"ord": math.inf}),
    ("zeros_like", (A,), {}),
    ("zeros_like", (INTS,), {}),
    ("zeros_like", (A,), {"dtype": jnp.bfloat16}),
    ("ones_like", (A,), {}),
    ("ones_like", (INTS,), {"dtype": jnp.float32}),
    ("full_like", (A,), {"fill_value": 2.5}),
    ("full_like", (INTS,), {"fill_value": 2.5}),
    ("full_like", (A,), {"fill_value": 3, "dtype": jnp.int32}),
    ("cast", (A,), {"dtype": jnp.bfloat16}),
    ("cast", (A,), {"dtype": None}),
    ("cast_like", (A, jax.tree.map(lambda x: x.astype(jnp.float16), B)), {}),
    ("conj", (Z,), {}),
    ("real", (Z,), {}),
    ("where", (jnp.asarray(True), A, B), {}),
    ("where", (jnp.asarray(False), A, B), {}),
    ("clip", (A,), {"min_value": -0.5, "max_value": 0.25}),
    ("clip", (A,), {"max_value": 0.0}),
    ("batch_shape", (A,), {"shape": (2,)}),
    ("batch_shape", (A,), {}),
    ("allclose", (A, A), {}),
    ("allclose", (A, B), {}),
    ("allclose", (A, jax.tree.map(lambda x: x * (1 + 1e-7), A)), {"rtol": 1e-6, "atol": 0.0}),
    ("update_moment", (A, B), {"decay": 0.9, "order": 1}),
    ("update_moment", (A, B), {"decay": 0.999, "order": 2}),
    ("update_moment", (WITH_NONE, MOM_NONE), {"decay": 0.9, "order": 2}),
    ("update_infinity_moment", (A, POS), {"decay": 0.9, "eps": 1e-8}),
    ("update_infinity_moment", (WITH_NONE, MOM_NONE), {"decay": 0.9, "eps": 1e-8}),
    ("update_moment_per_elem_norm", (A, POS), {"decay": 0.9, "order": 2}),
    ("update_moment_per_elem_norm", (Z, jax.tree.map(lambda x: jnp.abs(x), Z2)), {"decay": 0.9, "order": 2}),
    ("update_moment_per_elem_norm", (Z, jax.tree.map(lambda x: jnp.abs(x), Z2)), {"decay": 0.5, "order": 3}),
    ("update_moment_per_elem_norm", (WITH_NONE, MOM_NONE), {"decay": 0.9, "order": 2}),
    ("bias_correction", (A, 0.9, jnp.asarray(3, jnp.int32)), {}),
    ("bias_correction", (A, 0.999, jnp.asarray(1, jnp.int32)), {}),
]


def _case_id(case):
    name, args, kw = case
    trees = "-".join(
        "none" if any(x is None for x in jax.tree.leaves(a, is_leaf=_is_none))
        else "c" if any(jnp.iscomplexobj(x) for x in jax.tree.leaves(a))
        else "int" if all(jnp.issubdtype(jnp.asarray(x).dtype, jnp.integer) for x in jax.tree.leaves(a))
        else "f"
        for a in args
        if isinstance(a, dict)
    )
    return f"{name}[{trees}]" + "".join(f"-{k}={v}" for k, v in kw.items())


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_matches_optax(case, jit):
    name, args, kw = case
    ours_fn, theirs_fn = getattr(gx.tree, name), getattr(optax.tree, name)
    if jit:
        ours = jax.jit(lambda *a: ours_fn(*a, **kw))(*args)
        theirs = jax.jit(lambda *a: theirs_fn(*a, **kw))(*args)
    else:
        ours, theirs = ours_fn(*args, **kw), theirs_fn(*args, **kw)
    assert_same(ours, theirs)


@pytest.mark.parametrize("name", ["sum", "max", "min", "norm", "size", "dtype"])
def test_empty_tree_matches_optax(name):
    for tree in ({}, [], {"a": None}):
        assert_same(getattr(gx.tree, name)(tree), getattr(optax.tree, name)(tree))


def test_size_matches_optax():
    for tree in (A, INTS, WITH_EMPTY, WITH_NONE):
        assert_same(gx.tree.size(tree), optax.tree.size(tree))


@pytest.mark.parametrize("handler", [None, "promote", "highest", "lowest"])
def test_dtype_matches_optax(handler):
    uniform = {"a": jnp.ones(2), "b": jnp.ones(())}
    assert gx.tree.dtype(uniform, handler) == optax.tree.dtype(uniform, handler)
    if handler is not None:
        assert gx.tree.dtype(A, handler) == optax.tree.dtype(A, handler)
        assert gx.tree.dtype(INTS | {"f": jnp.ones(1, jnp.float16)}, handler) == optax.tree.dtype(
            INTS | {"f": jnp.ones(1, jnp.float16)}, handler
        )


def test_dtype_errors():
    with pytest.raises(ValueError, match=r"more than one dtype: the first is bfloat16(.|\n)*  w: float32"):
        gx.tree.dtype(A)
    with pytest.raises(ValueError, match="mixed_dtype_handler"):
        gx.tree.dtype(A, "widest")
    unordered = {"b": jnp.ones(1, jnp.bfloat16), "h": jnp.ones(1, jnp.float16)}  # both promote to float32
    with pytest.raises(ValueError, match="not ordered"):
        gx.tree.dtype(unordered, "highest")
    assert gx.tree.dtype(unordered, "promote") == optax.tree.dtype(unordered, "promote")


# --------------------------------------------------------------------------- random


def test_split_key_like_gives_optaxs_keys():
    key = jax.random.key(3)
    assert_same(gx.tree.split_key_like(key, A), optax.tree.split_key_like(key, A))
    raw = jax.random.PRNGKey(3)
    assert_same(gx.tree.split_key_like(raw, A), optax.tree.split_key_like(raw, A))


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize(
    "sampler, dtype",
    [(jax.random.normal, None), (jax.random.normal, jnp.bfloat16), (lambda k, s, d: jax.random.uniform(k, s, d), None)],
    ids=["normal", "normal-bf16", "uniform-no-sharding-arg"],
)
def test_random_like_is_deterministic_and_matches_optax(sampler, dtype, jit):
    def ours(key):
        return gx.tree.random_like(key, A, sampler, dtype)

    def theirs(key):
        return optax.tree.random_like(key, A, sampler, dtype)

    if jit:
        ours, theirs = jax.jit(ours), jax.jit(theirs)
    key = jax.random.key(0)
    first = ours(key)
    assert jax.tree.map(lambda x: (x.shape, x.dtype), first) == jax.tree.map(
        lambda x: (x.shape, dtype or x.dtype), A
    )
    assert_same(first, ours(key))
    assert_same(first, theirs(key))  # the same split of the key, on purpose


def test_unwrap_random_key_data_matches_optax():
    tree = {"k": jax.random.key(1), "raw": jax.random.PRNGKey(1), "x": jnp.ones(2)}
    assert_same(gx.tree.unwrap_random_key_data(tree), optax.tree.unwrap_random_key_data(tree))


# --------------------------------------------------------------------------- get / set / map_params


def _paths(found):
    return [([str(e) for e in p], v) for p, v in found]


def _states():
    params = {"w": jnp.zeros((2, 3)), "b": jnp.zeros(3)}
    two_counts = optax.chain(optax.scale_by_adam(), optax.add_decayed_weights(0.1), optax.scale_by_adam())
    return {
        "optax-inject": optax.inject_hyperparams(optax.adam)(learning_rate=0.1).init(params),
        "optax-chain": two_counts.init(params),
        "gx-adam": gx.adam(0.1).init(params),
        "nested-dicts": {"a": {"a": 1, "b": [{"a": 2}]}, "c": ({"a": 3},)},
    }


STATES = _states()
KEYS = ["count", "mu", "learning_rate", "hyperparams", "ScaleByAdamState", "a", "b", "absent"]


@pytest.mark.parametrize("state", list(STATES), ids=list(STATES))
def test_get_all_with_path_matches_optax(state):
    tree = STATES[state]
    for key in KEYS:
        ours = _paths(gx.tree.get_all_with_path(tree, key))
        theirs = _paths(optax.tree.get_all_with_path(tree, key))
        assert [p for p, _ in ours] == [p for p, _ in theirs], key
        assert_same([v for _, v in ours], [v for _, v in theirs])


def _second_stage(path, value):
    return any("ScaleByAdamState" in str(e) for e in path) and any(str(e) == "[2]" for e in path)


def _outcome(call):
    try:
        return "value", call()
    except KeyError:
        return "KeyError", None


@pytest.mark.parametrize("state", list(STATES), ids=list(STATES))
def test_get_and_set_match_optax(state):
    tree = STATES[state]
    for key in KEYS:
        for filtering in (None, _second_stage):
            ours = _outcome(lambda: gx.tree.get(tree, key, default="missing", filtering=filtering))
            theirs = _outcome(lambda: optax.tree.get(tree, key, default="missing", filtering=filtering))
            assert ours[0] == theirs[0], (key, ours, theirs)
            assert_same(ours[1], theirs[1])
        if len(optax.tree.get_all_with_path(tree, key)) > 1:
            with pytest.raises(KeyError, match=f"values match '{key}' .*pass filtering"):
                gx.tree.get(tree, key)
        if not optax.tree.get_all_with_path(tree, key):
            with pytest.raises(KeyError, match=key):
                optax.tree.set(tree, **{key: 0})
            with pytest.raises(KeyError, match=f"No value matches '{key}'"):
                gx.tree.set(tree, **{key: 0})
            continue
        assert_same(gx.tree.set(tree, **{key: 7.0}), optax.tree.set(tree, **{key: 7.0}))
        if optax.tree.get_all_with_path(tree, key, _second_stage):
            assert_same(gx.tree.set(tree, _second_stage, **{key: 7.0}), optax.tree.set(tree, _second_stage, **{key: 7.0}))


@pytest.mark.parametrize("make", [optax.adam, gx.adam], ids=["optax-adam", "gx-adam"])
def test_map_params_matches_optax(make):
    params = {"w": jnp.zeros((2, 3)), "b": jnp.ones(3)}
    tx = make(0.1)
    state = tx.init(params)
    labels = {"w": "matrix", "b": "vector"}

    def f(x, label):
        return f"{label}{x.shape}"

    for kw in ({}, {"transform_non_params": lambda _: "other"}):
        ours = gx.tree.map_params(tx, f, state, labels, **kw)
        assert ours == optax.tree.map_params(tx, f, state, labels, **kw)
        assert gx.tree.map_params(tx.init, f, state, labels, **kw) == ours
    with pytest.raises(ValueError, match="initable"):
        gx.tree.map_params(3, f, state)


# --------------------------------------------------------------------------- errors

MISMATCHED = {"w": jnp.ones((2, 3)), "extra": jnp.ones(2)}


@pytest.mark.parametrize(
    "call, first, second",
    [
        (lambda: gx.tree.add(A, MISMATCHED), "tree_y", "tree_x"),
        (lambda: gx.tree.add(A, A, MISMATCHED), "other_trees[0]", "tree_x"),
        (lambda: gx.tree.sub(A, MISMATCHED), "tree_y", "tree_x"),
        (lambda: gx.tree.mul(A, MISMATCHED), "tree_y", "tree_x"),
        (lambda: gx.tree.div(A, MISMATCHED), "tree_y", "tree_x"),
        (lambda: gx.tree.add_scale(A, 1.0, MISMATCHED), "tree_y", "tree_x"),
        (lambda: gx.tree.vdot(A, MISMATCHED), "tree_y", "tree_x"),
        (lambda: gx.tree.where(True, A, MISMATCHED), "tree_y", "tree_x"),
        (lambda: gx.tree.allclose(A, MISMATCHED), "b", "a"),
        (lambda: gx.tree.cast_like(A, MISMATCHED), "other_tree", "tree"),
        (lambda: gx.tree.update_moment(A, MISMATCHED, 0.9, 2), "moments", "updates"),
        (lambda: gx.tree.update_infinity_moment(A, MISMATCHED, 0.9, 0.0), "moments", "updates"),
        (lambda: gx.tree.update_moment_per_elem_norm(A, MISMATCHED, 0.9, 2), "moments", "updates"),
    ],
    ids=["add", "add-third", "sub", "mul", "div", "add_scale", "vdot", "where", "allclose", "cast_like",
         "update_moment", "update_infinity_moment", "update_moment_per_elem_norm"],
)
def test_mismatched_trees_raise_value_error_naming_arguments(call, first, second):
    with pytest.raises(ValueError) as info:
        call()
    message = str(info.value)
    assert f"{first} leaves" in message and f"{second} leaves" in message
    assert "extra" in message and "only in the first" in message and "gx.tree." in message


def test_vdot_mismatched_shapes_raise_value_error():
    with pytest.raises(ValueError, match=r"'b' has shape \(4,\) in the tree_y leaves but \(3,\) in the tree_x"):
        gx.tree.vdot(A, A | {"b": jnp.ones(4, jnp.bfloat16)})


def test_none_leaf_in_only_one_tree_raises():
    with pytest.raises(ValueError, match="tree_y leaves"):
        gx.tree.add(WITH_NONE, MOM_NONE)


def test_norm_rejects_unknown_ord():
    with pytest.raises(ValueError, match="ord must be .* got ord=3"):
        gx.tree.norm(A, ord=3)


def test_clip_rejects_crossed_bounds():
    with pytest.raises(ValueError, match="min_value must not exceed max_value"):
        gx.tree.clip(A, 1.0, -1.0)


# --------------------------------------------------------------------------- numerics


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize(
    "kw",
    [{}, {"ord": 1}, {"ord": math.inf}, {"ord": "fro"}, {"axis": 1}, {"axis": 0, "keepdims": True}, {"keepdims": True}],
    ids=["default", "ord1", "ordinf", "fro", "axis1", "axis0-keepdims", "keepdims"],
)
def test_safe_norm_matches_optax(kw, jit):
    x = jnp.asarray([[0.0, 0.0, 0.0], [3.0, -4.0, 0.5]])

    def ours(v, floor):
        return gx.safe_norm(v, floor, **kw)

    def theirs(v, floor):
        return optax.safe_norm(v, floor, **kw)

    def grad(fn):
        return jax.grad(lambda v, floor: jnp.sum(fn(v, floor)))

    if jit:
        ours, theirs = jax.jit(ours), jax.jit(theirs)
    grad_ours, grad_theirs = grad(ours), grad(theirs)
    if jit:
        grad_ours, grad_theirs = jax.jit(grad_ours), jax.jit(grad_theirs)
    for min_norm in (0.0, 1.0, 100.0):
        assert_same(ours(x, min_norm), theirs(x, min_norm))
        assert bool(jnp.all(jnp.isfinite(grad_ours(x, min_norm))))
        assert_same(grad_ours(x, min_norm), grad_theirs(x, min_norm))


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_safe_root_mean_squares_matches_optax(jit):
    ours, theirs = gx.safe_root_mean_squares, optax.safe_root_mean_squares
    if jit:
        ours, theirs = jax.jit(ours), jax.jit(theirs)
    for x in (jnp.zeros(3), jnp.asarray([3.0, -4.0]), jnp.asarray([1 + 1j, 2j], jnp.complex64), jnp.ones(2, jnp.bfloat16)):
        for floor in (0.0, 1.0, 10.0):
            assert_same(ours(x, floor), theirs(x, floor))
    assert_same(jax.grad(lambda v: gx.safe_root_mean_squares(v, 1e-3))(jnp.zeros(2)), jnp.zeros(2))


@pytest.mark.parametrize(
    "count",
    [jnp.int32(5), jnp.int32(2**31 - 1), jnp.int8(127), jnp.uint8(255), jnp.float32(2.5),
     jnp.asarray(jnp.finfo(jnp.float16).max, jnp.float16), jnp.asarray([1, 2**31 - 1], jnp.int32), 4],
    ids=["int32", "int32-max", "int8-max", "uint8-max", "float32", "float16-max", "vector", "python-int"],
)
def test_safe_increment_saturates_like_optax(count):
    assert_same(gx.safe_increment(count), optax.safe_increment(count))
    assert_same(jax.jit(gx.safe_increment)(count), jax.jit(optax.safe_increment)(count))
    assert gx.safe_int32_increment is gx.safe_increment


def test_safe_increment_rejects_booleans():
    with pytest.raises(ValueError, match="count must be an integer or floating-point"):
        gx.safe_increment(jnp.asarray(True))


# --------------------------------------------------------------------------- names


OPTAX_TREE_NAMES = sorted(n for n in dir(optax.tree) if not n.startswith("_") and callable(getattr(optax.tree, n)))


def test_every_optax_tree_name_is_here():
    assert len(OPTAX_TREE_NAMES) >= 35
    assert [n for n in OPTAX_TREE_NAMES if not hasattr(gx.tree, n)] == []


@pytest.mark.parametrize("name", OPTAX_TREE_NAMES)
def test_takes_optaxs_arguments(name):
    def params(fn):
        return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]

    assert params(getattr(gx.tree, name)) == params(getattr(optax.tree, name))


def test_gradxform_never_imports_optax():
    import subprocess
    import sys

    code = "import sys, gradxform as gx; gx.tree.norm({'a': 1.0}); print('optax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
