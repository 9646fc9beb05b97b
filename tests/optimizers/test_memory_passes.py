"""The compiled step of an optimizer moves no more memory than it must.

These read XLA's compiled program (deterministic), not the clock: a whole-buffer ``copy``
in a donated step is a full extra pass over memory that no formulation should need.
"""

import jax
import jax.numpy as jnp
import optax
import pytest

import gradxform as gx


def _step_hlo(tx, params):
    grads = jax.tree.map(jnp.ones_like, params)

    def step(p, s, g):
        u, s = tx.update(g, s, p)
        return gx.apply_updates(p, u), s

    compiled = jax.jit(step, donate_argnums=(0, 1)).lower(params, tx.init(params), grads).compile()
    text = compiled.as_text()
    return text[text.index("ENTRY"):]


def _full_copies(entry: str, n: int) -> int:
    return sum(1 for line in entry.splitlines() if " copy(" in line and f"[{n}]" in line)


@pytest.mark.parametrize(
    "make", [lambda: gx.lion(1e-4), lambda: gx.lion(1e-4, b1=0.95, b2=0.5), lambda: gx.adam(1e-3), lambda: gx.sgd(1e-3, 0.9)],
    ids=["lion", "lion-b1>b2", "adam", "sgd-momentum"],
)
def test_donated_step_copies_no_state_buffer(make):
    n = 4096
    entry = _step_hlo(make(), {"w": jnp.ones(n)})
    assert _full_copies(entry, n) == 0, entry


def test_optax_lion_does_copy_its_momentum():
    # Documents why gx.lion computes its direction from the new momentum: the old form,
    # as Optax writes it, makes XLA copy the momentum before updating it in place.
    n = 4096
    entry = _step_hlo(optax.lion(1e-4), {"w": jnp.ones(n)})
    assert _full_copies(entry, n) >= 1


def test_lion_rejects_b2_zero():
    with pytest.raises(ValueError, match=r"b2 must be in \(0, 1\]"):
        gx.lion(1e-3, b2=0.0)
