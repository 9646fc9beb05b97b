"""The README's Python examples run as printed.

Each ```python block of README.md is executed in a namespace that holds what the text
around it assumes (a batch, parameters and their gradients, a `TrainState`, a mesh and a
checkpoint path). Block 2 is an excerpt of the library's own definitions (`gx.adam` as a
composition), written with the library's internal names; it is checked against the real
`gx.adam` instead of being run.
"""

from __future__ import annotations

import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradxform as gx

README = Path(__file__).parent.parent / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.S | re.M)


def _block(start: str) -> str:
    matches = [b for b in BLOCKS if b.lstrip().startswith(start)]
    assert len(matches) == 1, f"expected one README block starting {start!r}, found {len(matches)}"
    return matches[0]


def _run(source: str, namespace: dict) -> dict:
    exec(compile(source, str(README), "exec"), namespace)
    return namespace


def _params_and_grads():
    params = {"w": jnp.arange(6.0).reshape(2, 3) / 10, "b": jnp.ones(3)}
    grads = jax.tree.map(lambda x: jnp.full_like(x, 0.5), params)
    return params, grads


def test_there_are_python_examples():
    assert len(BLOCKS) >= 6


def test_flax_training_step_with_adamw(capsys):
    x = np.random.default_rng(0).normal(size=(8, 5)).astype(np.float32)
    y = np.arange(8) % 10
    ns = _run(_block("import jax, optax"), {"x_batch": x, "y_batch": y})
    printed = float(capsys.readouterr().out.strip())
    # The warm-up schedule's value at step 0 (the step just taken): 0.0.
    assert printed == pytest.approx(float(gx.schedules.warmup_cosine_decay_schedule(0.0, 1e-3, 100, 1_000)(0)))
    assert int(ns["state"].step) == 1 and np.isfinite(float(ns["loss"]))
    # The same step with Optax's AdamW gives the same parameters.
    ref = optax.adamw(optax.warmup_cosine_decay_schedule(0.0, 1e-3, 100, 1_000), weight_decay=1e-4)
    state = ns["train_state"].TrainState.create(apply_fn=ns["model"].apply, params=ns["model"].init(jax.random.PRNGKey(0), x), tx=ref)
    state, _ = ns["train_step"](state, x, y)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), ns["state"].params, state.params)


def test_adam_is_the_composition_shown():
    source = _block("def adam(")
    assert "scale_by_adam(b1, b2, eps, eps_root, mu_dtype" in source
    params, grads = _params_and_grads()
    ours = gx.adam(1e-3, nesterov=True)
    composed = gx.chain(gx.scale_by_adam(0.9, 0.999, 1e-8, 0.0, None, nesterov=True), gx.scale_by_learning_rate(1e-3))
    u1, _ = ours.update(grads, ours.init(params), params)
    u2, _ = composed.update(grads, composed.init(params), params)
    jax.tree.map(np.testing.assert_array_equal, u1, u2)


def test_set_hyperparams_example_gives_the_commented_values():
    source = _block("tx = gx.adam(1e-3)")
    params, grads = _params_and_grads()
    ns = _run(source, {"jax": jax, "gx": gx, "params": params, "grads": grads})
    comment = source.strip().splitlines()[-1].split("#", 1)[1].strip()
    expected = eval(comment)  # the dict printed in the README
    got = {k: float(v) for k, v in gx.hyperparams(ns["state"]).items()}
    assert got.keys() == expected.keys()
    for k in expected:
        assert got[k] == pytest.approx(expected[k], rel=1e-6), k
    assert ns["step"]._cache_size() == 1  # "same compiled step"


def test_update_and_apply_with_donation():
    params, grads = _params_and_grads()
    tx = gx.adam(1e-3)
    expected = optax.apply_updates(params, tx.update(grads, tx.init(params), params)[0])
    ns = _run(_block("step = jax.jit(lambda g, s, p: gx.update_and_apply"),
              {"jax": jax, "gx": gx, "tx": tx, "grads": grads, "opt_state": tx.init(params),
               "params": jax.tree.map(jnp.copy, params)})
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), ns["params"], expected)


def test_train_state_update_and_apply():
    from flax.training import train_state

    params, grads = _params_and_grads()
    tx = gx.sgd(0.1, momentum=0.9)
    state = train_state.TrainState.create(apply_fn=None, params=params, tx=tx)
    ns = _run(_block("params, opt_state = gx.update_and_apply(state.tx"), {"gx": gx, "state": state, "grads": grads})
    reference = state.apply_gradients(grads=grads)
    assert int(ns["state"].step) == 1
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), ns["state"].params, reference.params)


def test_restoring_optimizer_state_onto_a_mesh(tmp_path):
    import orbax.checkpoint as ocp
    from jax.sharding import NamedSharding, PartitionSpec as P

    mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("data",))
    params, grads = _params_and_grads()
    params = jax.device_put(params, NamedSharding(mesh, P()))
    tx = gx.adam(1e-3)
    saved = tx.update(grads, tx.init(params), params)[1]
    path = tmp_path / "opt_state"
    with ocp.StandardCheckpointer() as ckpt:
        ckpt.save(path, saved)
    ns = _run(_block("replicated = NamedSharding(mesh, P())"),
              {"jax": jax, "gx": gx, "ocp": ocp, "NamedSharding": NamedSharding, "P": P, "mesh": mesh,
               "tx": tx, "params": params, "path": path})
    assert jax.tree.structure(ns["opt_state"]) == jax.tree.structure(saved)
    jax.tree.map(np.testing.assert_array_equal, ns["opt_state"], saved)


def test_the_quoted_error_message_is_the_real_one():
    quoted = re.search(r"raises\s+`ValueError: (adam: b1 must be in \[0, 1\), got b1=1\.5\.)`", README.read_text())
    assert quoted, "the README no longer quotes adam's b1 error"
    with pytest.raises(ValueError) as raised:
        gx.adam(1e-3, b1=1.5)
    assert str(raised.value) == quoted.group(1)
