"""The machine's in-place streaming bandwidth, measured in the benchmark's process.

An optimizer step on a large array is bound by memory traffic: it reads the parameters,
gradients and state and writes the parameters and state back in place. The reference is
the fastest of two in-place streams XLA compiles to a single loop: ``x <- c * x`` (reads
and writes one array: 8 bytes per element) and ``a <- a + c * b`` (reads two, writes one:
12 bytes per element), with the buffers donated so they update in place. On a CPU, XLA may
run such a loop on fewer threads than there are cores, so ``x <- c * x`` also runs in NumPy
on one thread per core (NumPy releases the GIL), each on its own slices; otherwise the
kernels' fraction of XLA's loop came out above 1. Each stream counts by the median of its
timed repetitions, as the steps do.
"""

from __future__ import annotations

import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import jax
import jax.numpy as jnp
import numpy as np


def streaming_bandwidth(n: int = 32 * 2**20, reps: int = 30) -> float:
    """In-place streaming bandwidth in GB/s (1 GB = 1e9 bytes): the fastest of two XLA
    loops and, on a CPU, NumPy's scaling on every core (medians of ``reps`` repetitions).

    Args:
      n: float32 elements per array (large enough not to fit in cache).
      reps: timed repetitions of each stream.

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
    if jax.default_backend() == "cpu":
        results.append(_host_scale(n, reps))
    return max(results)


def _host_scale(n: int, reps: int) -> float:
    """``x <- c * x`` in NumPy, one thread per core, each scaling its own slices in place:
    GB/s of the median repetition."""
    workers = os.cpu_count() or 1
    x = np.ones(n, np.float32)
    slices = np.array_split(x, 4 * workers)

    def scale(a: np.ndarray) -> None:
        np.multiply(a, np.float32(0.999), out=a)

    times = []
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(scale, slices))  # touches the pages and starts the threads
        for _ in range(reps):
            t0 = time.perf_counter()
            list(pool.map(scale, slices))
            times.append(time.perf_counter() - t0)
    return 8 * n / statistics.median(times) / 1e9
