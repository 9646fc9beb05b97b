"""The machine's in-place streaming bandwidth, measured with JAX in the benchmark's process.

An optimizer step on a large array is bound by memory traffic: it reads the parameters,
gradients and state and writes the parameters and state back in place. The reference is
the fastest of two in-place streams XLA compiles to a single loop: ``x <- c * x`` (reads
and writes one array: 8 bytes per element) and ``a <- a + c * b`` (reads two, writes one:
12 bytes per element), with the buffers donated so they update in place.
"""

from __future__ import annotations

import statistics
import time

import jax
import jax.numpy as jnp


def streaming_bandwidth(n: int = 32 * 2**20, reps: int = 15) -> float:
    """Best-of-two median in-place streaming bandwidth in GB/s (1 GB = 1e9 bytes).

    Args:
      n: float32 elements per array (large enough not to fit in cache).
      reps: timed repetitions of each kernel (median taken).

    Returns:
      The larger of the two kernels' bandwidths.
    """
    scale = jax.jit(lambda x: x * jnp.float32(0.999), donate_argnums=0)
    triad = jax.jit(lambda a, b: a + jnp.float32(1e-3) * b, donate_argnums=0)
    x = jnp.ones(n, jnp.float32)
    b = jnp.ones(n, jnp.float32)
    results = []
    for fn, args, nbytes in ((scale, lambda x: (x,), 8 * n), (triad, lambda x: (x, b), 12 * n)):
        x = jax.block_until_ready(fn(*args(x)))
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            x = jax.block_until_ready(fn(*args(x)))
            times.append(time.perf_counter() - t0)
        results.append(nbytes / statistics.median(times) / 1e9)
    return max(results)
