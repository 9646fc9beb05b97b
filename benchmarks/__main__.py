"""``python -m benchmarks``: gradxform against Optax and fused PyTorch, in one process.

gradxform's step is ``gx.update_and_apply`` (one-pass kernels for Adam, AdamW and SGD with
momentum on a CPU);
the ``unfused`` rows time ``tx.update`` then ``gx.apply_updates`` instead.
For every shape and optimizer, the jitted, buffer-donating step of each library is run in
turn, step by step (interleaved, so machine load affects all alike), and the table reports
medians: milliseconds per step, ratios, effective bandwidth and its fraction of the
machine's in-place streaming bandwidth (measured first, in the same run), first-call
compile time, the step's memory footprint (XLA's memory analysis: arguments, outputs and
temporaries, less what is updated in place) and bytes of optimizer state per parameter.
The ``floor ms`` column times, in the same rounds, a jitted function that takes gradxform's
step's arguments (donated alike) and returns its parameters and state unchanged: what a
call with these arrays costs in JAX whatever the step computes (on many small leaves it is
most of every library's step). It ends with every row again inside a jitted training step
(many steps per call, `benchmarks.in_step`), where that cost is paid once per call.

Options select shapes, optimizers and the time spent per row; ``--help`` lists them.
"""

from __future__ import annotations

import argparse
import math
import platform

import jax
import numpy as np
import optax

import gradxform as gx
from benchmarks import bandwidth, in_step, suite, timing, torch_ref, trees


def state_bytes(state) -> int:
    """Bytes of every array in an optimizer state."""
    return sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in jax.tree.leaves(state))


def footprint_mb(c: timing.Candidate) -> float:
    m = c.memory
    if m is None:
        return math.nan
    live = m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes + m.temp_size_in_bytes
    return live / 2**20


def jax_candidate(name, tx, apply, params, grads):
    p = jax.tree.map(lambda x: x.copy(), params)
    state = tx.init(p)
    sbytes = state_bytes(state)
    c = timing.Candidate.jax(name, lambda: timing.jitted_step(tx, apply), (p, state), grads)
    c.state_bytes = sbytes
    return c


def floor_candidate(tx, params, grads):
    """A jitted call with ``tx``'s step's arguments, donated alike, that returns the
    parameters and state unchanged: JAX's cost of the call itself."""
    p = jax.tree.map(lambda x: x.copy(), params)
    nothing = lambda: jax.jit(lambda p, s, g: (p, s), donate_argnums=(0, 1))
    return timing.Candidate.jax("floor", nothing, (p, tx.init(p)), grads)


def run_row(shape, params, grads, optimizer, variant, option, args, bw):
    """Times one (shape, optimizer[, variant]) row; returns the printed fields."""
    n = trees.size(params)
    tx = suite.make_gx(optimizer)
    if tx is None or (option is not None and not option.applies(shape, optimizer)):
        return None
    gx_params, gx_grads = params, grads
    if option is not None:
        tx = option.wrap(tx)
        gx_params, gx_grads = option.layout(params), option.layout(grads)
    fused = option is None or option.kernel
    # Optax's steps are built first, as in `benchmarks.step` (see there).
    cands = [jax_candidate("optax", suite.make_optax(optimizer), optax.apply_updates, params, grads),
             jax_candidate("optax again", suite.make_optax(optimizer), optax.apply_updates, params, grads),
             jax_candidate("gx", tx, None if fused else gx.apply_updates, gx_params, gx_grads)]
    cands.append(floor_candidate(tx, gx_params, gx_grads))
    torch_fn = None if args.no_torch or variant else torch_ref.fused_step(optimizer, params, grads)
    if torch_fn is not None:
        cands.append(timing.Candidate("torch", torch_fn, relocate=torch_fn.relocate))
    timing.interleave(cands, args.steps, budget_s=args.budget)
    o, again, g, floor = cands[:4]
    t = cands[4] if len(cands) > 4 else None
    versus = timing.compare(g, o, again)
    gbs = lambda c: suite.bytes_per_param(optimizer) * n / c.median_s / 1e9
    return {
        "shape": shape, "optimizer": optimizer + (f" [{variant}]" if variant else ""),
        "gx ms": 1e3 * g.median_s, "optax ms": 1e3 * o.median_s, "torch ms": 1e3 * t.median_s if t else math.nan,
        "floor ms": 1e3 * floor.median_s,
        "gx/optax": versus.ratio, "95% interval": "{:.2f}-{:.2f}".format(*versus.interval),
        "A/A": versus.aa, "verdict": versus.verdict, "gx/torch": timing.paired_ratio(g, t) if t else math.nan,
        "gx GB/s": gbs(g), "gx %bw": 100 * gbs(g) / bw, "optax %bw": 100 * gbs(o) / bw,
        "gx comp s": g.compile_s, "optax comp s": o.compile_s,
        "gx MB": footprint_mb(g), "optax MB": footprint_mb(o),
        "gx B/p": g.state_bytes / n, "optax B/p": o.state_bytes / n,
    }


COLUMNS = [("shape", 8, "s"), ("optimizer", 26, "s"), ("gx ms", 8, ".2f"), ("optax ms", 9, ".2f"),
           ("torch ms", 9, ".2f"), ("floor ms", 9, ".2f"), ("gx/optax", 9, ".3f"), ("95% interval", 13, ">s"), ("A/A", 6, ".3f"),
           ("verdict", 8, ">s"), ("gx/torch", 9, ".3f"), ("gx GB/s", 8, ".1f"),
           ("gx %bw", 7, ".0f"), ("optax %bw", 10, ".0f"), ("gx comp s", 10, ".2f"), ("optax comp s", 13, ".2f"),
           ("gx MB", 8, ".0f"), ("optax MB", 9, ".0f"), ("gx B/p", 7, ".2f"), ("optax B/p", 10, ".2f")]


def print_row(row) -> None:
    cells = []
    for key, width, fmt in COLUMNS:
        v = row[key]
        align = "<" if fmt == "s" else ">"
        cells.append(f"{'-':>{width}}" if isinstance(v, float) and math.isnan(v) else f"{v:{align}{width}{fmt.lstrip('>')}}")
    print("".join(cells), flush=True)


def many_leaves(args) -> None:
    """The 400-leaf tree's Adam step against the step on one array of the same total size,
    all gradxform, interleaved in one loop: as laid out (every leaf its own array), with the
    small leaves packed, and with every leaf packed."""
    tree = trees.transformer_tree()
    one = trees.one_array(trees.size(tree))
    layouts = suite.variants()
    cases = {
        "one array": one,
        "tree": tree,
        "tree, packed": layouts["packed"].layout(tree),
        "tree, packed-all": layouts["packed-all"].layout(tree),
    }
    grads = {name: trees.gradients_like(p) for name, p in cases.items()}
    cands = [jax_candidate(name, gx.adam(1e-3), None, p, grads[name]) for name, p in cases.items()]
    floors = [floor_candidate(gx.adam(1e-3), p, grads[name]) for name, p in cases.items()]
    timing.interleave(cands + floors, args.steps, budget_s=4 * args.budget)
    base, base_floor = cands[0], floors[0]
    work = lambda c, f: c.median_s - f.median_s
    print(f"\n400-leaf tree ({trees.size(tree) / 1e6:.1f}M) Adam step over the one-array step of the same size"
          f" (one array {1e3 * base.median_s:.2f} ms, of which the call floor {1e3 * base_floor.median_s:.2f} ms);"
          " the last column leaves out each step's call floor:")
    for c, f in zip(cands[1:], floors[1:]):
        print(f"  {c.name:<18}{1e3 * c.median_s:8.2f} ms  {timing.paired_ratio(c, base):6.3f}x"
              f"   call floor {1e3 * f.median_s:6.2f} ms   without it {work(c, f) / work(base, base_floor):6.3f}x")


def looped_candidate(name, tx, apply, params, grads, steps):
    """`in_step.looped_step` of ``tx`` as a timed candidate, ``steps`` steps a call."""
    p = jax.tree.map(lambda x: x.copy(), params)
    return timing.Candidate.jax(name, lambda: in_step.looped_step(tx, apply), (p, tx.init(p)), grads, np.int32(steps))


def in_training_step(args) -> None:
    """Every chosen (shape, optimizer) again, each library's step run many times inside one
    jitted loop (`benchmarks.in_step`): its cost as part of a training step, where JAX's cost
    of the call is paid once for the whole step, whatever the optimizer. Then the 400-leaf
    tree's Adam step over the one-array step, the same way."""
    print("\nInside a jitted training step (`benchmarks/in_step.py`: many steps per call, ms per step):")
    header = [("shape", 8, "s"), ("optimizer", 24, "s"), ("steps/call", 11, "d"), ("gx ms", 9, ".3f"),
              ("optax ms", 9, ".3f"), ("gx/optax", 9, ".3f"), ("95% interval", 13, ">s"), ("A/A", 6, ".3f"), ("verdict", 8, ">s")]
    print("".join(f"{k:<{w}}" if fmt == "s" else f"{k:>{w}}" for k, w, fmt in header))
    packed = suite.variants().get("packed")
    verdicts: dict[str, list[str]] = {"faster": [], "parity": [], "slower": []}
    for shape in args.shapes:
        params = suite.SHAPES[shape]()
        grads = trees.gradients_like(params)
        for optimizer in args.optimizers:
            tx = suite.make_gx(optimizer)
            if tx is None:
                continue
            steps = in_step.steps_per_call(suite.make_optax(optimizer), optax.apply_updates, params, grads)
            cands = [looped_candidate(name, suite.make_optax(optimizer), optax.apply_updates, params, grads, steps)
                     for name in ("optax", "optax again")]
            cands.append(looped_candidate("gx", tx, None, params, grads, steps))
            # On many leaves, also gradxform with its parameters packed (`gx.bucket_layout`).
            if packed is not None and packed.applies(shape, optimizer):
                cands.append(looped_candidate("gx packed", tx, None, packed.layout(params), packed.layout(grads), steps))
            timing.interleave(cands, args.steps, budget_s=args.budget)
            o, again, *ours = cands
            for g in ours:
                versus = timing.compare(g, o, again)
                label = optimizer + (" [packed]" if g.name == "gx packed" else "")
                row = [shape, label, steps, 1e3 * g.median_s / steps, 1e3 * o.median_s / steps, versus.ratio,
                       "{:.2f}-{:.2f}".format(*versus.interval), versus.aa, versus.verdict]
                print("".join(f"{v:{'<' if fmt == 's' else '>'}{w}{fmt.lstrip('>')}}" for v, (_, w, fmt) in zip(row, header)), flush=True)
                verdicts[versus.verdict].append(f"{label} ({shape})")
        del params, grads
    print("gradxform against Optax inside a training step:")
    for v, rows in verdicts.items():
        print(f"  {v}: {len(rows)}" + (f" ({', '.join(rows)})" if rows and v != "faster" else ""))

    tree = trees.transformer_tree()
    layouts = suite.variants()
    cases = {"one array": trees.one_array(trees.size(tree)), "tree": tree}
    if "packed" in layouts:
        cases["tree, packed"] = layouts["packed"].layout(tree)
        cases["tree, packed-all"] = layouts["packed-all"].layout(tree)
    grads = {name: trees.gradients_like(p) for name, p in cases.items()}
    steps = max(in_step.steps_per_call(gx.adam(1e-3), None, p, grads[name]) for name, p in cases.items())
    cands = [looped_candidate(name, gx.adam(1e-3), None, p, grads[name], steps) for name, p in cases.items()]
    # The same loops run for 0 steps: what the call costs whatever the steps do (JAX's cost per
    # array, far larger for the tree's 1,600 arrays than for one array's 4). A training step
    # pays it once for its own arguments, whichever optimizer it holds.
    floors = [looped_candidate(name + " floor", gx.adam(1e-3), None, p, grads[name], 0) for name, p in cases.items()]
    timing.interleave(cands + floors, args.steps, budget_s=4 * args.budget)
    base, base_floor = cands[0], floors[0]
    work = lambda c, f: (c.median_s - f.median_s) / steps
    print(f"400-leaf tree Adam step over the one-array step, inside a training step ({steps} steps a call;"
          f" one array {1e3 * base.median_s / steps:.2f} ms per step); each call also pays its call floor"
          f" once (one array {1e3 * base_floor.median_s:.2f} ms), and the last column leaves it out:")
    for c, f in zip(cands[1:], floors[1:]):
        print(f"  {c.name:<18}{1e3 * c.median_s / steps:8.2f} ms  {timing.paired_ratio(c, base):6.3f}x"
              "  (95% interval {:.3f}-{:.3f})".format(*timing.ratio_interval(c, base))
              + f"   call floor {1e3 * f.median_s:6.2f} ms   without it {work(c, f) / work(base, base_floor):6.3f}x")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="*", default=list(suite.SHAPES), choices=list(suite.SHAPES))
    parser.add_argument("--optimizers", nargs="*", default=list(suite.OPTIMIZERS), choices=list(suite.OPTIMIZERS))
    parser.add_argument("--variants", nargs="*", default=None,
                        help="gradxform options to add as rows: unfused, bucketed, packed, packed-all, 8-bit (default: all available)")
    parser.add_argument("--steps", type=int, default=50, help="interleaved rounds per row at most")
    parser.add_argument("--budget", type=float, default=3.0, help="seconds of timing per row at most")
    parser.add_argument("--no-torch", action="store_true", help="leave out PyTorch even if installed")
    parser.add_argument("--no-many-leaves", action="store_true",
                        help="leave out the closing comparison of the 400-leaf tree with one array")
    parser.add_argument("--no-in-step", action="store_true",
                        help="leave out the steps timed inside a jitted training step (many steps per call)")
    args = parser.parse_args(argv)

    dev = jax.devices()[0]
    bw = bandwidth.streaming_bandwidth()
    print(f"machine: {platform.processor() or platform.machine()}, {dev.platform} {dev.device_kind}, "
          f"{jax.device_count()} device(s); jax {jax.__version__}, optax {optax.__version__}, "
          f"torch {torch_ref.version() or 'not installed'}")
    print(f"measured in-place streaming bandwidth: {bw:.1f} GB/s")
    print("".join(f"{k:<{w}}" if fmt == "s" else f"{k:>{w}}" for k, w, fmt in COLUMNS))
    verdicts: dict[str, list[str]] = {"faster": [], "parity": [], "slower": []}
    all_variants = suite.variants()
    chosen = all_variants if args.variants is None else {k: all_variants[k] for k in args.variants if k in all_variants}
    for shape in args.shapes:
        params = suite.SHAPES[shape]()
        grads = trees.gradients_like(params)
        for optimizer in args.optimizers:
            for variant, option in [(None, None), *chosen.items()]:
                row = run_row(shape, params, grads, optimizer, variant, option, args, bw)
                if row is not None:
                    print_row(row)
                    verdicts[row["verdict"]].append(f"{row['optimizer']} ({shape})")
        del params, grads
    print("gradxform against Optax (95% interval of the median per-round ratio, A/A: a second copy of Optax's step):")
    for v, rows in verdicts.items():
        print(f"  {v}: {len(rows)}" + (f" ({', '.join(rows)})" if rows and v != "faster" else ""))
    if not args.no_many_leaves:
        many_leaves(args)
    if not args.no_in_step:
        in_training_step(args)


if __name__ == "__main__":
    main()
