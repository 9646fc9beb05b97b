"""Helpers shared by the kernel tests: random trees, and the two ways to take a step."""

import jax
import jax.numpy as jnp
import numpy as np

import gradxform as gx


def tree(sizes, seed=0, dtype=jnp.float32):
    """A dict of standard-normal leaves named w000, w001, ... with the given shapes."""
    rng = np.random.default_rng(seed)
    return {f"w{i:03d}": jnp.asarray(rng.standard_normal(s), dtype) for i, s in enumerate(sizes)}


def grads(params, step):
    """Standard-normal gradients shaped like ``params``, the same for the same ``step``."""
    rng = np.random.default_rng(1000 + step)
    return jax.tree.map(lambda x: jnp.asarray(rng.standard_normal(x.shape), x.dtype), params)


def plain_step(tx):
    """The oracle: ``tx.update`` followed by ``gx.apply_updates``."""

    def step(p, s, g):
        u, s = tx.update(g, s, p)
        return gx.apply_updates(p, u), s

    return step


def fused_step(tx):
    """The step under test: ``gx.update_and_apply``."""
    return lambda p, s, g: gx.update_and_apply(tx, g, s, p)


def compiled(fn, *args):
    """The optimized HLO text of ``jit(fn)`` for ``args``."""
    return jax.jit(fn).lower(*args).compile().as_text()


# The size policy's values under which the kernel tests run (see conftest.py): kernels and
# programs on every leaf, single-output programs included.
TEST_SIZES = {"KERNEL_MIN_LEAF": 0, "TINY_LEAF": 0, "SINGLE_OUTPUT_LEAF": 1 << 16}
