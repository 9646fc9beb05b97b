"""Interleaved timing: candidates run step by step in turn, so load on the machine hits all
of them alike, and the median of many steps is robust to it.

Between placements the candidates' large buffers move to freshly allocated memory
(`Candidate.relocate`, as often as `interleave` can afford). Where a buffer sits in physical
memory (huge pages or not, how its pages map onto the caches and the memory channels)
changes how fast a loop streams through it, by a few percent on a CPU, and a donated buffer
is updated in place, so without this a candidate keeps the placement it happened to get for
the whole run: two copies of the same compiled step measured 0.90 to 1.06x each other, with
intervals that excluded 1, and the slower one stayed slower when it was handed the other's
buffers. Moving them samples placements for every candidate alike, so that cost becomes
noise instead of a bias.

Where a step is many small arrays, the executable matters too: of eight executables of the
same Optax step on 400 one-element leaves, compiled one after another, the later ones ran up
to 10% slower, whichever buffers they were given, and by how much changed between
processes. So each JAX candidate gets a second executable, compiled in the reverse order of
the first ones, and alternates between its two with each placement; the harnesses also
build Optax's candidates before gradxform's, so what remains of that order counts against
gradxform, and the A/A pair (built first and second) shows its size."""

from __future__ import annotations

import math
import random
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

import gradxform as gx

# Arrays smaller than this many bytes are not moved: they sit in the caches whatever their
# address, and moving hundreds of them would cost a call per round for nothing.
RELOCATE_MIN_BYTES = 1 << 20


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

    def __init__(
        self,
        name: str,
        fn: Callable[[], Any],
        compile_s: float = float("nan"),
        memory: Any = None,
        relocate: Callable[[], None] | None = None,
    ):
        self.name, self.fn, self.compile_s, self.memory = name, fn, compile_s, memory
        self._relocate = relocate
        self.times: list[float] = []
        self.blocks: list[int] = []  # for each time, the placement it ran under (see `interleave`)

    def relocate(self) -> None:
        """Moves the candidate's large buffers (the carry of a JAX step, a torch optimizer's
        parameters and state) to newly allocated memory, with the same values; untimed.
        Does nothing for a candidate built without a ``relocate`` function."""
        if self._relocate is not None:
            self._relocate()

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
    def jax(cls, name: str, make_step: Callable[[], Any], carry: tuple[Any, ...], *args: Any) -> Candidate:
        """A jitted step ``make_step()(*carry, *args) -> carry`` whose carry (donated) is
        threaded through. ``make_step`` returns a new jitted function each call.

        The time to trace, lower and compile is kept as ``compile_s``. ``recompile()`` adds a
        second executable of the same step (once), from a new ``make_step()`` (JAX would hand the
        same jitted function's cached executable back); ``relocate()`` moves the carry and
        switches to the next executable, so the candidate's placements alternate between
        them (see `interleave`)."""
        t0 = time.perf_counter()
        compiled = make_step().lower(*carry, *args).compile()
        compile_s = time.perf_counter() - t0
        # The first run is left out: it also pays for the process's first touch of fresh
        # memory, which would bias whichever candidate is built first.
        box = [jax.block_until_ready(compiled(*carry, *args))]
        executables, current = [compiled], [0]

        def fn():
            box[0] = jax.block_until_ready(executables[current[0]](*box[0], *args))

        def relocate():
            box[0] = relocated(box[0])
            current[0] = (current[0] + 1) % len(executables)

        try:
            memory = compiled.memory_analysis()
        except Exception:  # not every backend reports it
            memory = None
        cand = cls(name, fn, compile_s, memory, relocate=relocate)
        cand.carry = box

        def recompile():
            if len(executables) < 2:  # one more, however often the candidate is interleaved
                executables.append(make_step().lower(*box[0], *args).compile())

        cand.recompile = recompile
        return cand


def _nbytes(x: Any) -> int:
    return int(np.prod(x.shape)) * x.dtype.itemsize


@jax.jit
def _copies(arrays: list[Any]) -> list[Any]:
    return [x.copy() for x in arrays]


def relocated(tree: Any) -> Any:
    """``tree`` with each array of at least `RELOCATE_MIN_BYTES` replaced by a copy in newly
    allocated memory (one jitted call; the smaller ones are left where they are). The
    originals are not deleted here: a donated carry is dropped by its owner."""
    leaves, treedef = jax.tree.flatten(tree)
    big = [i for i, x in enumerate(leaves) if hasattr(x, "dtype") and _nbytes(x) >= RELOCATE_MIN_BYTES]
    if big:
        for i, x in zip(big, jax.block_until_ready(_copies([leaves[i] for i in big]))):
            leaves[i] = x
    return jax.tree.unflatten(treedef, leaves)


def interleave(
    candidates: Sequence[Candidate],
    steps: int,
    warmup: int = 3,
    budget_s: float | None = None,
    relocate: bool = True,
    relocation_share: float = 1 / 3,
) -> None:
    """Runs every candidate ``steps`` times, one step each in turn (after ``warmup`` rounds);
    stops early once ``budget_s`` seconds have been spent (at least 5 rounds).

    With ``relocate`` (the default), every candidate's large buffers move to new memory
    (`Candidate.relocate`) before the first timed round and again whenever the rounds since
    the last move have taken long enough that moving costs at most ``relocation_share`` of
    the time (every round where steps are slow and copies cheap). The candidates move in the
    next round's order, so what a copy leaves in the caches belongs to the candidate that
    runs last, after the others' steps have gone through them. Each time is labelled with
    its placement (``Candidate.blocks``), and `ratio_interval` resamples placements, not
    single rounds, since rounds under one placement share its cost."""
    if relocate:
        for c in reversed(candidates):
            if hasattr(c, "recompile"):
                c.recompile()
    for w in range(warmup):
        if relocate and w == 1:  # once, so that the timed moves do not include compiling the copies
            for c in candidates:
                c.relocate()
        for c in candidates:
            c.run()
    for c in candidates:
        c.times.clear()
        c.blocks = []
    start = time.perf_counter()
    orders = _balanced_orders(len(candidates))
    block, move_s, since_move_s = -1, 0.0, math.inf
    for i in range(steps):
        order = orders[i % len(orders)]
        if relocate and since_move_s * relocation_share >= move_s * (1 - relocation_share):
            t0 = time.perf_counter()
            for k in order:
                candidates[k].relocate()
            move_s, since_move_s, block = time.perf_counter() - t0, 0.0, block + 1
        t0 = time.perf_counter()
        for k in order:
            candidates[k].run()
            candidates[k].blocks.append(max(block, 0) if relocate else i)
        since_move_s += time.perf_counter() - t0
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
    """A bootstrap interval (``level``, percentile method) for `paired_ratio` ``(a, b)``.

    The rounds are resampled with replacement in the groups `interleave` labelled them with
    (``Candidate.blocks``: the rounds run under one placement of the buffers in memory; each
    round on its own for candidates timed without it), and the median ratio is taken each
    time. Resampling whole placements keeps the interval honest about what a placement
    costs: resampling single rounds would count rounds that share one placement as
    independent. Resampling is seeded, so a run's table is reproducible from its times."""
    ratios = [x / y for x, y in zip(a.times, b.times)]
    labels = getattr(a, "blocks", None)
    if labels is None or len(labels) != len(ratios):
        labels = range(len(ratios))
    groups: dict[Any, list[float]] = {}
    for label, r in zip(labels, ratios):
        groups.setdefault(label, []).append(r)
    chunks = list(groups.values())
    rng = random.Random(0)
    medians = sorted(
        statistics.median([r for chunk in rng.choices(chunks, k=len(chunks)) for r in chunk]) for _ in range(resamples)
    )
    tail = (1.0 - level) / 2
    return medians[int(tail * (resamples - 1))], medians[int((1.0 - tail) * (resamples - 1))]


def verdict(interval: tuple[float, float], control: tuple[float, float] | None = None) -> str:
    """``"faster"`` when the whole interval of a ratio lies below 1, ``"slower"`` when it lies
    above 1, and ``"parity"`` when it contains 1 (no difference the run can resolve).

    With ``control``, the interval of the A/A ratio (a second copy of the reference step
    over the reference), the ratio must also clear that interval: two copies of one step
    can differ by a few percent for as long as a row runs (which executable each got, see
    `interleave`), and a ratio no further from 1 than that is parity."""
    lo, hi = interval
    below, above = 1.0, 1.0
    if control is not None:
        below, above = min(1.0, control[0]), max(1.0, control[1])
    return "faster" if hi < below else "slower" if lo > above else "parity"


class Comparison(NamedTuple):
    """A candidate against a reference, with a second copy of the reference as control."""

    ratio: float  # `paired_ratio` of the candidate over the reference
    interval: tuple[float, float]  # its `ratio_interval`
    aa: float  # the same ratio for the control over the reference
    verdict: str  # `verdict` of the interval, with the control's interval as margin


def compare(candidate: Candidate, reference: Candidate, control: Candidate) -> Comparison:
    """``candidate`` over ``reference`` after `interleave`, judged against ``control`` (a
    second copy of the reference, whose ratio is what the run cannot resolve)."""
    interval = ratio_interval(candidate, reference)
    return Comparison(
        paired_ratio(candidate, reference),
        interval,
        paired_ratio(control, reference),
        verdict(interval, ratio_interval(control, reference)),
    )
