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


def test_relocation_moves_large_buffers_and_keeps_their_values():
    import jax.numpy as jnp
    import numpy as np

    big = jnp.arange(timing.RELOCATE_MIN_BYTES // 4, dtype=jnp.float32)
    small = jnp.ones((3,), jnp.float32)
    tree = {"big": big, "small": small, "count": jnp.int32(7)}
    moved = timing.relocated(tree)
    assert moved["big"].unsafe_buffer_pointer() != big.unsafe_buffer_pointer()
    np.testing.assert_array_equal(moved["big"], big)
    assert moved["small"] is small and moved["count"] is tree["count"]


def test_a_jax_candidate_relocates_its_carry_and_keeps_stepping():
    import jax
    import jax.numpy as jnp
    import numpy as np

    n = timing.RELOCATE_MIN_BYTES // 4
    built = []

    def make_step():
        built.append(jax.jit(lambda p, s, g: (p - g, s + 1), donate_argnums=(0, 1)))
        return built[-1]

    c = timing.Candidate.jax("c", make_step, (jnp.zeros((n,), jnp.float32), jnp.int32(0)), jnp.ones((n,), jnp.float32))
    c.recompile()  # a second executable, from a new jitted function
    assert len(built) == 2 and built[0] is not built[1]
    before = c.carry[0][0].unsafe_buffer_pointer()
    c.relocate()  # moves the carry and switches to the second executable
    assert c.carry[0][0].unsafe_buffer_pointer() != before
    c.run()
    c.relocate()  # back to the first
    c.run()
    p, s = c.carry[0]
    assert int(s) == 3  # one step when built, two now
    np.testing.assert_array_equal(p, np.full((n,), -3.0, np.float32))


def test_interleave_labels_each_round_with_its_placement(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(timing.time, "perf_counter", lambda: clock[0])
    moves = []

    def advance(seconds):
        clock[0] += seconds

    # steps take 1.5 ms (of the fake clock), moving a candidate's buffers 2.5 ms
    cands = [
        timing.Candidate(name, lambda: advance(1.5e-3), relocate=lambda name=name: (moves.append(name), advance(2.5e-3)))
        for name in "ab"
    ]
    timing.interleave(cands, 40, warmup=2, relocation_share=1 / 3)
    blocks = cands[0].blocks
    assert blocks == cands[1].blocks and len(blocks) == len(cands[0].times) == 40
    # A move of both costs 5 ms; it may take a third of the time, so a placement lasts at
    # least 10 ms of steps: four rounds of 3 ms.
    assert blocks == [i // 4 for i in range(40)]
    assert len(moves) == 2 * (10 + 1)  # both candidates, each placement, plus the warm-up move
    # without relocation every round stands alone
    timing.interleave(cands, 10, warmup=0, relocate=False)
    assert cands[0].blocks == list(range(10))


def test_interval_resamples_placements_not_rounds():
    """Rounds under one placement share its cost: a ratio that is 0.9 under half of the
    placements and 1.1 under the other half must not look settled because each placement
    ran many rounds."""
    a, b = _fixed("a", []), _fixed("b", [])
    for block in range(6):
        r = 0.9 if block % 2 else 1.1
        for _ in range(30):
            a.times.append(r)
            b.times.append(1.0)
            a.blocks.append(block)
    per_round = timing.ratio_interval(_fixed("a", a.times), b)
    per_block = timing.ratio_interval(a, b)
    assert timing.verdict(per_block) == "parity"
    assert per_block[1] - per_block[0] >= per_round[1] - per_round[0]
    assert per_block[0] <= 0.9 + 1e-9 and per_block[1] >= 1.1 - 1e-9


def test_fused_torch_relocates_without_changing_its_steps():
    from benchmarks import torch_ref

    if torch_ref.torch is None:
        pytest.skip("torch is not installed (the bench extra installs it)")
    import jax.numpy as jnp
    import numpy as np

    params = {"w": jnp.linspace(-1.0, 1.0, 64, dtype=jnp.float32).reshape(8, 8)}
    grads = {"w": jnp.full((8, 8), 0.25, jnp.float32)}
    moved, kept = torch_ref.fused_step("adam", params, grads), torch_ref.fused_step("adam", params, grads)
    tensors = lambda step: step.parameters
    before = tensors(moved)[0].data_ptr()
    for _ in range(3):
        moved.relocate()
        moved()
        kept()
    assert tensors(moved)[0].data_ptr() != before
    np.testing.assert_array_equal(tensors(moved)[0].detach().numpy(), tensors(kept)[0].detach().numpy())


def test_a_verdict_must_also_clear_the_a_a_interval():
    """Two copies of one step measured a few percent apart for a whole row: a ratio within
    that is parity, whichever side of 1 it falls."""
    assert timing.verdict((1.01, 1.03), control=(1.02, 1.04)) == "parity"
    assert timing.verdict((1.05, 1.08), control=(1.02, 1.04)) == "slower"
    assert timing.verdict((0.96, 0.98), control=(0.95, 0.99)) == "parity"
    assert timing.verdict((0.96, 0.98), control=(0.99, 1.01)) == "faster"
    assert timing.verdict((0.70, 0.75), control=(1.02, 1.04)) == "faster"
    # an A/A interval on one side of 1 does not make a ratio on the other side parity
    assert timing.verdict((1.01, 1.02), control=(0.97, 0.99)) == "slower"


def test_compare_judges_against_the_control():
    ref = _fixed("optax", [1.0] * 40)
    control = _fixed("optax again", [1.03 + 0.001 * (i % 3) for i in range(40)])
    slightly = _fixed("gx", [1.02 + 0.001 * (i % 3) for i in range(40)])
    much = _fixed("gx", [0.7 + 0.001 * (i % 3) for i in range(40)])
    c = timing.compare(slightly, ref, control)
    assert c.ratio == timing.paired_ratio(slightly, ref) and c.interval == timing.ratio_interval(slightly, ref)
    assert c.aa == timing.paired_ratio(control, ref)
    assert timing.verdict(c.interval) == "slower" and c.verdict == "parity"
    assert timing.compare(much, ref, control).verdict == "faster"
