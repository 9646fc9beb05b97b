"""Does the composition cost anything? gradxform's step time over Optax's.

For one 16M-parameter float32 array and a 400-leaf transformer-shaped tree of about the same
size, times the jitted, buffer-donating step (update + apply_updates) of ``gx.adam(1e-3)``
and ``gx.sgd(1e-3, momentum=0.9)`` against Optax's same-named optimizers, alternating the
two step by step in one process, and prints the median of the per-round ratios.

Run: ``python -m benchmarks.step`` (or ``python benchmarks/step.py``) ``[--steps N] [--budget S]``.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

if not __package__:  # run as a file (python benchmarks/step.py): make the package importable
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import jax
import optax

import gradxform as gx
from benchmarks import timing, trees

OPTIMIZERS = {
    "adam": (lambda: gx.adam(1e-3), lambda: optax.adam(1e-3)),
    "sgd+momentum": (lambda: gx.sgd(1e-3, momentum=0.9), lambda: optax.sgd(1e-3, momentum=0.9)),
}
SHAPES = {
    "one 16M array": lambda: trees.one_array(4096 * 4096),
    "400-leaf tree": lambda: trees.transformer_tree(),
}


def compare(params, make_gx, make_optax, steps: int, budget_s: float) -> tuple[float, float, float, float]:
    """(gradxform ms/step, Optax ms/step, median per-round ratio, ratio of the fastest steps)
    on ``params``. The fastest step of each is the least disturbed by other load."""
    grads = trees.gradients_like(params)
    cands = []
    for name, make, apply in (("gx", make_gx, gx.apply_updates), ("optax", make_optax, optax.apply_updates)):
        tx = make()
        p = jax.tree.map(lambda x: x.copy(), params)
        cands.append(timing.Candidate.jax(name, timing.jitted_step(tx, apply), (p, tx.init(p)), grads))
    timing.interleave(cands, steps, budget_s=budget_s)
    g, o = cands
    return 1e3 * g.median_s, 1e3 * o.median_s, timing.paired_ratio(g, o), min(g.times) / min(o.times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150, help="interleaved rounds per row at most (default 150)")
    parser.add_argument("--budget", type=float, default=12.0, help="seconds of timing per row at most (default 12)")
    args = parser.parse_args(argv)
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), jax {jax.__version__}, optax {optax.__version__}")
    print(f"{'shape':<16}{'optimizer':<15}{'gradxform ms':>13}{'optax ms':>10}{'ratio':>7}{'min ratio':>10}")
    worst = 0.0
    for shape, make_params in SHAPES.items():
        params = make_params()
        for opt, (make_gx, make_optax) in OPTIMIZERS.items():
            g, o, r, m = compare(params, make_gx, make_optax, args.steps, args.budget)
            worst = max(worst, r)
            print(f"{shape:<16}{opt:<15}{g:>13.2f}{o:>10.2f}{r:>7.3f}{m:>10.3f}", flush=True)
    print(f"worst ratio: {worst:.3f} ({'ok' if worst <= 1.05 else 'above'} the 1.05 bound)")


if __name__ == "__main__":
    main()
