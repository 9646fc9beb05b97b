"""Interleaved timing: candidates run step by step in turn, so load on the machine hits all
of them alike, and the median of many steps is robust to it."""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax

import gradxform as gx


def jitted_step(
    tx: Any, apply_updates: Callable[[Any, Any], Any] | None, extra: Callable[[Any, Any], dict[str, Any]] | None = None
) -> Callable[..., Any]:
    """A jitted optimizer step ``(params, state, grads) -> (params, state)`` that donates the
    parameters and the state (updated in place) but not the gradients (reused every step).

    With ``apply_updates=None`` the step is ``gx.update_and_apply`` (gradxform's step, fused
    where a kernel exists); otherwise ``tx.update`` followed by ``apply_updates``.
    ``extra(params, grads)``, if given, returns the extra keyword arguments of ``tx.update``
    (``value=``, ``value_fn=``, ...), computed inside the step."""

    def step(params, state, grads):
        kwargs = extra(params, grads) if extra is not None else {}
        if apply_updates is None:
            return gx.update_and_apply(tx, grads, state, params, **kwargs)
        updates, state = tx.update(grads, state, params, **kwargs)
        return apply_updates(params, updates), state

    return jax.jit(step, donate_argnums=(0, 1))


class Candidate:
    """One thing to time. ``fn()`` performs one step and returns when its results are ready.

    Attributes:
      compile_s: seconds to trace, lower and compile the step (JAX candidates only).
      memory: XLA's memory analysis of the compiled step (JAX candidates only).
    """

    def __init__(self, name: str, fn: Callable[[], Any], compile_s: float = float("nan"), memory: Any = None):
        self.name, self.fn, self.compile_s, self.memory = name, fn, compile_s, memory
        self.times: list[float] = []

    def run(self) -> float:
        t0 = time.perf_counter()
        self.fn()
        dt = time.perf_counter() - t0
        self.times.append(dt)
        return dt

    @property
    def median_s(self) -> float:
        return statistics.median(self.times)

    @classmethod
    def jax(cls, name: str, step: Any, carry: tuple[Any, ...], *args: Any) -> Candidate:
        """A jitted ``step(*carry, *args) -> carry`` whose carry (donated) is threaded through.

        The time to trace, lower and compile is kept as ``compile_s``."""
        t0 = time.perf_counter()
        compiled = step.lower(*carry, *args).compile()
        compile_s = time.perf_counter() - t0
        # The first run is left out: it also pays for the process's first touch of fresh
        # memory, which would bias whichever candidate is built first.
        box = [jax.block_until_ready(compiled(*carry, *args))]

        def fn():
            box[0] = jax.block_until_ready(compiled(*box[0], *args))

        try:
            memory = compiled.memory_analysis()
        except Exception:  # not every backend reports it
            memory = None
        cand = cls(name, fn, compile_s, memory)
        cand.carry = box
        return cand


def interleave(candidates: Sequence[Candidate], steps: int, warmup: int = 3, budget_s: float | None = None) -> None:
    """Runs every candidate ``steps`` times, one step each in turn (after ``warmup`` rounds);
    stops early once ``budget_s`` seconds have been spent (at least 5 rounds)."""
    for _ in range(warmup):
        for c in candidates:
            c.run()
    for c in candidates:
        c.times.clear()
    start = time.perf_counter()
    orders = _balanced_orders(len(candidates))
    for i in range(steps):
        for k in orders[i % len(orders)]:
            candidates[k].run()
        if budget_s is not None and i >= 4 and time.perf_counter() - start > budget_s:
            break


def _balanced_orders(n: int) -> list[list[int]]:
    """Orders of ``n`` candidates for successive rounds (a Williams design): over a cycle
    each candidate takes each place equally often and follows each other candidate equally
    often, so neither the place in a round nor the step run just before (whose data may
    still be in the caches) favours one of them."""
    first, lo, hi = [0], 1, n - 1
    while lo <= hi:
        first.append(lo)
        lo += 1
        if lo <= hi:
            first.append(hi)
            hi -= 1
    rows = [[(x + r) % n for x in first] for r in range(n)]
    return rows + [row[::-1] for row in rows] if n % 2 else rows


def paired_ratio(a: Candidate, b: Candidate) -> float:
    """Median over rounds of ``a``'s step time over ``b``'s in the same round."""
    return statistics.median(x / y for x, y in zip(a.times, b.times))


def ratio_interval(a: Candidate, b: Candidate, level: float = 0.95, resamples: int = 2000) -> tuple[float, float]:
    """A bootstrap interval (``level``, percentile method) for `paired_ratio` ``(a, b)``:
    the rounds are resampled with replacement and the median ratio taken each time.
    Resampling is seeded, so a run's table is reproducible from its times."""
    ratios = [x / y for x, y in zip(a.times, b.times)]
    rng = random.Random(0)
    medians = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(resamples))
    tail = (1.0 - level) / 2
    return medians[int(tail * (resamples - 1))], medians[int((1.0 - tail) * (resamples - 1))]


def verdict(interval: tuple[float, float]) -> str:
    """``"faster"`` when the whole interval of a ratio lies below 1, ``"slower"`` when it lies
    above 1, and ``"parity"`` when it contains 1 (no difference the run can resolve)."""
    lo, hi = interval
    return "faster" if hi < 1.0 else "slower" if lo > 1.0 else "parity"
