"""The benchmark harness's statistics: the order of the interleaved rounds, the interval of a
paired ratio and the verdict drawn from it (logic only: nothing here is timed)."""

from __future__ import annotations

import itertools
import random
import statistics

import pytest

from benchmarks import timing


def _fixed(name: str, times: list[float]) -> timing.Candidate:
    c = timing.Candidate(name, lambda: None)
    c.times = list(times)
    return c


@pytest.mark.parametrize("n", [2, 3, 4, 5])
def test_every_candidate_takes_every_place_equally_often(n):
    log: list[str] = []
    cands = [timing.Candidate(str(k), lambda k=k: log.append(str(k))) for k in range(n)]
    rounds = 2 * n * 3  # whole cycles of the design (n rounds, or 2n for odd n)
    timing.interleave(cands, rounds, warmup=0)
    orders = [log[i * n : (i + 1) * n] for i in range(rounds)]
    for place in range(n):
        counts = {name: sum(o[place] == name for o in orders) for name in map(str, range(n))}
        assert set(counts.values()) == {rounds // n}, (place, counts)
    # and each one follows each other one equally often
    follows = {(a, b): 0 for a, b in itertools.permutations(map(str, range(n)), 2)}
    for o in orders:
        for a, b in zip(o, o[1:]):
            follows[a, b] += 1
    assert len(set(follows.values())) == 1 and min(follows.values()) > 0, follows
    assert all(len(c.times) == rounds for c in cands)


def test_interval_contains_the_median_and_narrows_with_more_rounds():
    rng = random.Random(1)
    def pair(rounds):
        base = [1.0 + 0.2 * rng.random() for _ in range(rounds)]
        return _fixed("a", [0.8 * b * (1 + 0.05 * rng.gauss(0, 1)) for b in base]), _fixed("b", base)
    widths = []
    for rounds in (20, 400):
        a, b = pair(rounds)
        lo, hi = timing.ratio_interval(a, b)
        med = timing.paired_ratio(a, b)
        assert lo <= med <= hi
        assert lo < 0.8 < hi or abs(med - 0.8) < 0.02
        widths.append(hi - lo)
    assert widths[1] < widths[0] / 2
    # the same times give the same interval (resampling is seeded)
    assert timing.ratio_interval(a, b) == timing.ratio_interval(a, b)


def test_verdicts():
    assert timing.verdict((0.5, 0.99)) == "faster"
    assert timing.verdict((0.97, 1.02)) == "parity"
    assert timing.verdict((1.01, 1.2)) == "slower"
    # An identical pair of steps (all ratios near 1 both ways) is parity.
    rng = random.Random(2)
    times = [1.0 + 0.1 * rng.random() for _ in range(200)]
    a = _fixed("a", [t * (1 + 0.02 * rng.gauss(0, 1)) for t in times])
    b = _fixed("b", times)
    assert timing.verdict(timing.ratio_interval(a, b)) == "parity"
    assert statistics.median(x / y for x, y in zip(a.times, b.times)) == timing.paired_ratio(a, b)


def test_torch_runs_where_jax_runs(monkeypatch):
    """On a GPU, fused torch is timed on the GPU (against JAX's GPU step), never on the host."""
    from benchmarks import torch_ref

    assert torch_ref.device("cpu") == "cpu"
    assert torch_ref.device("tpu") == "cpu"  # torch has no TPU; its host path is the reference
    if torch_ref.torch is None:
        assert torch_ref.device("gpu") == "cpu"
        return
    monkeypatch.setattr(torch_ref.torch.cuda, "is_available", lambda: True)
    assert torch_ref.device("gpu") == "cuda"
    monkeypatch.setattr(torch_ref.torch.cuda, "is_available", lambda: False)
    assert torch_ref.device("gpu") == "cpu"
