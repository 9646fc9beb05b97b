"""Gaussian noise sampled by a kernel in the pass that adds it (`add_noise` in a fused step).

XLA:CPU evaluates ``jax.random.normal`` with Threefry as a loop over whole arrays, so noisy
SGD's step is dominated by making the noise (about 11 ns an element on a 2-core machine,
where Adam's whole step takes under 1 ns). Inside `update_and_apply`, `add_noise` instead
calls ``gradxform_add_noise`` (``steps.cc``, ``noise.h``), which computes each element's
sample from its key and index in registers and adds it to the gradient: the same samples as
``jax.random.normal`` up to the last bits of its logarithm, in one vectorized pass.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Sequence

import jax
import jax.numpy as jnp

from gradxform.kernels._build import ADD_NOISE, kernel_status
from gradxform.kernels._program import LEAVES_PER_CALL, differentiated

_SAMPLING = contextvars.ContextVar("gradxform_noise_kernel", default=False)


@contextlib.contextmanager
def sampling(enabled: bool) -> Iterator[None]:
    """Within the block, `add_gaussian_noise` may use the kernel (`update_and_apply` sets
    this while it traces the CPU branch of a step that is not being differentiated)."""
    token = _SAMPLING.set(enabled)
    try:
        yield
    finally:
        _SAMPLING.reset(token)


def add_gaussian_noise(leaves: Sequence[jax.Array], keys: jax.Array, std: jax.Array) -> list[jax.Array]:
    """``[g + std * jax.random.normal(k, g.shape, g.dtype) for g, k in zip(leaves, keys)]``.

    Args:
      leaves: the arrays to add noise to.
      keys: a typed PRNG key array with one key per leaf.
      std: the noise's standard deviation, a scalar.

    Returns:
      The noisy arrays. Inside `update_and_apply`'s traced step on a CPU, for float32 leaves
      and Threefry keys with partitionable random bits (JAX's defaults), the kernel computes
      them; everywhere else, ``jax.random.normal`` does.
    """

    if not _kernel_applies(leaves, keys) or differentiated(leaves, std):
        # The kernel has no derivative: gradients through the noisy values (a scale the
        # optimizer closes over, for example) take jax.random.normal's composition.
        return [g + std.astype(g.dtype) * jax.random.normal(k, g.shape, g.dtype) for g, k in zip(leaves, keys)]

    # `update_and_apply` sets `sampling` only while it traces the step's CPU branch (its
    # `gradxform_step` primitive lowers that branch for CPUs only), so the platform is known.
    data = jax.random.key_data(keys).astype(jnp.uint32)
    scale = jnp.reshape(std.astype(jnp.float32), (1,))
    out: list[jax.Array] = []
    for lo in range(0, len(leaves), LEAVES_PER_CALL):
        group = leaves[lo : lo + LEAVES_PER_CALL]
        call = jax.ffi.ffi_call(
            ADD_NOISE, [jax.ShapeDtypeStruct(g.shape, jnp.float32) for g in group], vmap_method="sequential"
        )
        out.extend(call(data[lo : lo + len(group)].reshape(-1), scale, *group))
    return out


def _kernel_applies(leaves: Sequence[jax.Array], keys: jax.Array) -> bool:
    return (
        _SAMPLING.get()
        and bool(leaves)
        and any(isinstance(g, jax.core.Tracer) for g in leaves)  # eagerly: the plain path
        and all(jnp.dtype(g.dtype) == jnp.float32 for g in leaves)
        and str(jax.random.key_impl(keys)) == "threefry2x32"
        and bool(jax.config.jax_threefry_partitionable)
        and not kernel_status()
    )
