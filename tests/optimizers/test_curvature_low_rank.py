"""Sophia and GaLore agree with Optax contrib's same-named optimizers.

Oracle: ``optax.contrib``, 20 jitted steps (one compiled scan for both) on a non-separable
objective over two matrices (one tall, projected on the left; one wide, on the right) and a
vector (never projected), with fixed seeds.

Sophia's Hutchinson probes come from the same seed (0) in both, so the draws agree. GaLore's
projectors come from ``jnp.linalg.svd``, whose singular vectors have an arbitrary sign; both
libraries call the same SVD on (nearly) the same gradient, so the signs agree here, and
what is compared is the parameters, where a flipped column would cancel within a projection
period (``P P^T`` does not depend on it).
"""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.contrib
import pytest

import gradxform as gx
from harness import assert_trees_close

STEPS = 20


def _params():
    rng = np.random.default_rng(0)
    return {
        "tall": jnp.asarray(rng.normal(size=(6, 4)), jnp.float32),
        "wide": jnp.asarray(rng.normal(size=(3, 5)), jnp.float32),
        "v": jnp.asarray(rng.normal(size=(4,)), jnp.float32),
    }


_RNG = np.random.default_rng(1)
_A = jnp.asarray(_RNG.normal(size=(5, 6)), jnp.float32)
_B = jnp.asarray(_RNG.normal(size=(5, 5)), jnp.float32)
_C = jnp.asarray(_RNG.normal(size=(6, 3)), jnp.float32)
_T = jnp.asarray(_RNG.normal(size=(2, 3, 4)), jnp.float32)


def loss(p):
    """Couples every leaf to the others through products and a smooth nonlinearity. Each
    matrix's gradient has rank >= 3 with distinct singular values, so the top two singular
    vectors GaLore keeps are well defined (a rank-1 gradient would leave the second one to
    the SVD's rounding)."""
    x = _A @ p["tall"] @ p["v"]  # (5,)
    y = p["wide"] @ _B  # (3, 5)
    return (
        0.5 * jnp.sum((x - 1.0) ** 2)
        + 0.5 * jnp.sum((y - x[None, :3].T) ** 2)
        + jnp.sum(jnp.cos(p["tall"][:3, :4] @ p["v"]))
        + 0.5 * jnp.sum((p["tall"] @ p["wide"][:, :4].T - _C) ** 2)
    )


def _step(tx, p, s):
    u, s = tx.update(jax.grad(loss)(p), s, p, obj_fn=loss)
    return gx.apply_updates(p, u), s


def _run_both(ours, theirs):
    def step(carry, _):
        return tuple(_step(tx, p, s) for tx, (p, s) in zip((ours, theirs), carry)), None

    start = tuple((_params(), tx.init(_params())) for tx in (ours, theirs))
    ((got, _), (want, _)), _ = jax.jit(lambda c: jax.lax.scan(step, c, None, length=STEPS))(start)
    return got, want


CASES = [
    ("sophia", dict(learning_rate=0.05)),
    ("sophia", dict(learning_rate=0.05, b1=0.9, b2=0.95, eps=1e-6, weight_decay=0.01, gamma=0.05, update_interval=3)),
    # Unclipped: eps bounds the first step, taken before any curvature is known.
    ("sophia", dict(learning_rate=0.005, eps=1.0, clip_threshold=None, gamma=1.0, update_interval=1)),
    ("galore", dict(learning_rate=0.05, rank=2, update_proj_gap=5)),
    ("galore", dict(learning_rate=0.05, rank=1, update_proj_gap=7, scale=0.5, weight_decay=0.01)),
    ("galore", dict(learning_rate=0.05, rank=8, update_proj_gap=200)),  # rank above both sides
]
IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for n, kw in CASES]


@pytest.mark.parametrize("name,kwargs", CASES, ids=IDS)
def test_agrees_with_optax_jitted(name, kwargs):
    got, want = _run_both(getattr(gx, name)(**kwargs), getattr(optax.contrib, name)(**kwargs))
    assert_trees_close(got, want, rtol=1e-4, atol=1e-5)
    moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), got, _params())
    assert min(jax.tree.leaves(moved)) > 0.02, moved


def test_galore_base_optimizer_and_dimension_numbers_agree_with_optax():
    """A non-default base optimizer, and a 3-axis leaf projected through dimension numbers."""
    p = dict(_params(), cube=jnp.asarray(np.random.default_rng(2).normal(size=(2, 3, 4)), jnp.float32))

    def f(q):
        return loss(q) + jnp.sum(jnp.sin(q["cube"].sum(0) @ q["v"])) + 0.5 * jnp.sum((jnp.tanh(q["cube"]) - _T) ** 2)

    spec = {"tall": None, "wide": gx.GaLoreDimensionNumbers(), "v": None, "cube": gx.GaLoreDimensionNumbers(1, (0, 2))}
    dims = optax.contrib.GaLoreDimensionNumbers
    their_spec = dict(spec, wide=dims(), cube=dims(1, (0, 2)))
    kw = dict(learning_rate=0.05, rank=2, update_proj_gap=4)
    ours = gx.galore(**kw, base_optimizer=gx.scale_by_rms(), weight_dimension_numbers=spec)
    theirs = optax.contrib.galore(**kw, base_optimizer=optax.scale_by_rms(), weight_dimension_numbers=their_spec)

    def run(tx):
        def step(c, _):
            q, s = c
            u, s = tx.update(jax.grad(f)(q), s, q)
            return (gx.apply_updates(q, u), s), None

        return jax.lax.scan(step, (p, tx.init(p)), None, length=STEPS)[0][0]

    got, want = jax.jit(lambda: (run(ours), run(theirs)))()
    assert_trees_close(got, want, rtol=1e-4, atol=1e-5)
    assert float(jnp.max(jnp.abs(got["cube"] - p["cube"]))) > 0.02


@pytest.mark.parametrize(
    "name", ["sophia", "SophiaState", "galore", "scale_by_galore", "GaLoreState", "GaLoreDimensionNumbers"]
)
def test_takes_optaxs_arguments(name):
    theirs, ours = getattr(optax.contrib, name), getattr(gx, name)
    if isinstance(theirs, type):
        assert ours._fields == theirs._fields
        assert getattr(ours, "_field_defaults", {}) == getattr(theirs, "_field_defaults", {})
        return
    theirs, ours = inspect.signature(theirs).parameters, inspect.signature(ours).parameters
    assert list(ours) == list(theirs)
    for arg, p in theirs.items():
        if arg == "hessian_diagonal_fn":  # each library's own Hutchinson estimator
            assert ours[arg].default.spec.name == "hutchinson_estimator_diag_hessian"
            continue
        assert ours[arg].default == p.default, (arg, ours[arg].default, p.default)


@pytest.mark.parametrize(
    "name,expected",
    [
        (
            "sophia",
            {
                "learning_rate": 0.1, "b1": 0.965, "b2": 0.99, "eps": 1e-8,
                "weight_decay": 1e-4, "gamma": 0.01, "clip_threshold": 1.0,
            },
        ),
        ("galore", {"learning_rate": 0.1, "scale": 1.0, "weight_decay": 0.0}),
    ],
)
def test_hyperparameters_are_state_and_do_not_recompile(name, expected):
    tx = getattr(gx, name)(0.1) if name == "sophia" else gx.galore(0.1, rank=2, update_proj_gap=2)
    state = tx.init(_params())
    read = gx.hyperparams(state)
    assert set(read) == set(expected)
    for k, v in expected.items():
        assert read[k].dtype == jnp.float32 and float(read[k]) == pytest.approx(v)

    step = jax.jit(lambda p, s: _step(tx, p, s))
    p, state = step(_params(), state)
    p, state = step(p, state)
    p, state = step(p, gx.set_hyperparams(state, learning_rate=0.5))
    assert step._cache_size() == 1
    assert float(gx.hyperparams(state)["learning_rate"]) == 0.5


@pytest.mark.parametrize(
    "make,argument",
    [
        (lambda: gx.sophia(-0.1), "learning_rate"),
        (lambda: gx.sophia(0.1, b1=1.0), "b1"),
        (lambda: gx.sophia(0.1, b2=-0.1), "b2"),
        (lambda: gx.sophia(0.1, eps=0.0), "eps"),
        (lambda: gx.sophia(0.1, gamma=0.0), "gamma"),
        (lambda: gx.sophia(0.1, clip_threshold=0.0), "clip_threshold"),
        (lambda: gx.sophia(0.1, weight_decay=-1.0), "weight_decay"),
        (lambda: gx.sophia(0.1, update_interval=0), "update_interval"),
        (lambda: gx.sophia(0.1, print_win_rate_every_n_steps=-1), "print_win_rate_every_n_steps"),
        (lambda: gx.galore(0.1, rank=0), "rank"),
        (lambda: gx.galore(0.1, rank=2.5), "rank"),
        (lambda: gx.galore(0.1, update_proj_gap=0), "update_proj_gap"),
        (lambda: gx.galore(-0.1), "learning_rate"),
        (lambda: gx.galore(0.1, weight_decay=-0.1), "weight_decay"),
        (lambda: gx.scale_by_galore(rank=-1), "rank"),
    ],
    ids=lambda x: x if isinstance(x, str) else "",
)
def test_bad_hyperparameters_are_named(make, argument):
    with pytest.raises(ValueError, match=argument):
        make()


def test_bad_transformations_are_named():
    with pytest.raises(TypeError, match="hessian_diagonal_fn"):
        gx.sophia(0.1, hessian_diagonal_fn=gx.adam)
    with pytest.raises(TypeError, match="base_optimizer"):
        gx.galore(0.1, base_optimizer=gx.scale_by_adam)


def test_bad_dimension_numbers_and_missing_params_are_explained():
    with pytest.raises(ValueError, match="exactly one of reduction_axis and output_axis"):
        gx.galore(0.1, weight_dimension_numbers=gx.GaLoreDimensionNumbers(0, 0)).init(_params())
    tx = gx.sophia(0.1)
    with pytest.raises(ValueError, match="parameters"):
        tx.update(_params(), tx.init(_params()))


@pytest.mark.parametrize("name,kwargs", [CASES[1], CASES[4]], ids=[IDS[1], IDS[4]])
def test_agrees_with_optax_eagerly(name, kwargs):
    ours, theirs = getattr(gx, name)(**kwargs), getattr(optax.contrib, name)(**kwargs)
    got, want = (_params(), ours.init(_params())), (_params(), theirs.init(_params()))
    for _ in range(2):  # each eager step traces the Hessian-vector product again: kept short
        got, want = _step(ours, *got), _step(theirs, *want)
    assert_trees_close(got[0], want[0], rtol=1e-5, atol=1e-6)


def test_optax_stages_inside_and_around():
    """Optax's Hutchinson estimator and Adam as gradxform's inner stages, and gradxform's
    Sophia inside ``optax.chain``."""
    kw = dict(learning_rate=0.05, update_interval=3)
    ours = gx.sophia(**kw, hessian_diagonal_fn=optax.contrib.hutchinson_estimator_diag_hessian())
    got, want = _run_both(ours, optax.contrib.sophia(**kw))
    assert_trees_close(got, want, rtol=1e-4, atol=1e-5)
    kw = dict(learning_rate=0.05, rank=2, update_proj_gap=5)
    ours = optax.chain(gx.galore(**kw, base_optimizer=optax.scale_by_adam()))
    got, want = _run_both(ours, optax.contrib.galore(**kw))
    assert_trees_close(got, want, rtol=1e-4, atol=1e-5)


def test_sophia_prints_its_win_rate_and_keeps_mu_dtype(capsys):
    tx = gx.sophia(0.1, verbose=True, print_win_rate_every_n_steps=1, mu_dtype=jnp.bfloat16)
    p, state = _step(tx, _params(), tx.init(_params()))
    jax.effects_barrier()
    assert "Sophia optimizer win rate" in capsys.readouterr().out
    assert all(m.dtype == jnp.bfloat16 for m in jax.tree.leaves(state.inner_state[0].mu))
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(p))
