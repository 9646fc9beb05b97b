"""Does the composition cost anything? gradxform's step time over Optax's.

For one 16M-parameter float32 array and a 400-leaf transformer-shaped tree of about the same
size, times the jitted, buffer-donating step of each optimizer below (gradxform's
``gx.update_and_apply``, which runs a one-pass kernel for Adam, AdamW and SGD with momentum on
a CPU and is ``update`` + ``apply_updates`` otherwise; Optax's ``update`` + ``apply_updates``)
against Optax's same-named one (from ``optax.contrib`` where it lives there), with the same
arguments, alternating the two step by step in one process, and prints the median of the
per-round ratios with a 95% bootstrap interval. A second, separately compiled copy of Optax's
step runs in the same rounds: its ratio to Optax (the A/A column) is what the run measures
between two identical steps, its noise. A row is "faster" when its whole interval lies below
both 1 and the A/A interval, "slower" when it lies above both, and "parity" otherwise.
Optimizers that need the objective (Polyak's step size, L-BFGS's line
search) get a fixed quadratic's value, and its function, inside the step. Rows in ``SLOW``
are timed only when their optimizer is named in ``--optimizers``.

Run: ``python -m benchmarks.step`` (or ``python benchmarks/step.py``)
``[--steps N] [--budget S] [--optimizers NAME ...] [--shapes NAME ...]``.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

if not __package__:  # run as a file (python benchmarks/step.py): make the package importable
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
import optax.contrib

import gradxform as gx
from benchmarks import timing, trees


def _quadratic(params: Any) -> jax.Array:
    return 0.5 * sum(jnp.vdot(x, x) for x in jax.tree.leaves(params))


def _value(params: Any, grads: Any) -> dict[str, Any]:
    return {"value": _quadratic(params)}


def _line_search(params: Any, grads: Any) -> dict[str, Any]:
    return {"value": _quadratic(params), "grad": grads, "value_fn": _quadratic}


class Row(NamedTuple):
    make_gx: Any
    make_optax: Any
    extra: Any = None  # (params, grads) -> the extra keyword arguments of update


def same(name: str, *args: Any, extra: Any = None, **kwargs: Any) -> Row:
    """``name(*args, **kwargs)`` in both libraries."""
    theirs = getattr(optax, name, None) or getattr(optax.contrib, name)
    return Row(lambda: getattr(gx, name)(*args, **kwargs), lambda: theirs(*args, **kwargs), extra)


OPTIMIZERS = {
    "adam": same("adam", 1e-3),
    "adamw": same("adamw", 1e-3),
    "sgd+momentum": same("sgd", 1e-3, momentum=0.9),
    "sgd": same("sgd", 1e-3),
    "sgd+nesterov": same("sgd", 1e-3, momentum=0.9, nesterov=True),
    "rmsprop": same("rmsprop", 1e-3),
    "rmsprop+centered+momentum": same("rmsprop", 1e-3, centered=True, momentum=0.9),
    **{name: same(name, 1e-3) for name in (
        "adabelief", "adan", "fromage", "lamb", "lars", "novograd",
        "optimistic_gradient_descent", "optimistic_adam_v2", "radam", "rprop", "sm3", "yogi",
        "muon", "adopt", "ademamix", "adagrad", "adadelta", "adamax", "adamaxw", "amsgrad", "lion",
        "nadam", "nadamw", "sign_sgd", "signum",
    )},
    "noisy_sgd": same("noisy_sgd", 1e-3, key=0),
    **{name: same(name) for name in ("adafactor", "schedule_free_sgd", "schedule_free_adamw", "prodigy")},
    "polyak_sgd": same("polyak_sgd", extra=_value),
    "lbfgs": same("lbfgs", extra=_line_search),
}
# (optimizer, shape): why the row is left out of the default run (minutes on a 2-core CPU).
SLOW = {
    ("muon", "array"): "Newton-Schulz on a 4096x4096 matrix takes tens of seconds a step on CPU",
    ("noisy_sgd", "tree"): "each library's step takes minutes to compile (noise for 400 leaves)",
    ("lbfgs", "tree"): "each library's step takes minutes to compile (a line search over 400 leaves)",
}
SHAPES = {  # name: (label in the table, parameters)
    "array": ("one 16M array", lambda: trees.one_array(4096 * 4096)),
    "tree": ("400-leaf tree", lambda: trees.transformer_tree()),
}


class Result(NamedTuple):
    gx_ms: float
    optax_ms: float
    versus: timing.Comparison  # gradxform's step over Optax's, against a second copy of Optax's


def compare(params: Any, row: Row, steps: int, budget_s: float) -> Result:
    """Times gradxform's and Optax's steps for ``row`` on ``params``, with a second copy of
    Optax's step as the control, interleaved."""
    grads = trees.gradients_like(params)
    cands = []
    # Optax's steps are built first: on many small leaves, executables compiled earlier in a
    # process measured a few percent faster (see `timing.interleave`), and the A/A pair then
    # shows how much that order moves a ratio, in the direction that disfavours gradxform.
    for name, make, apply in (
        ("optax", row.make_optax, optax.apply_updates), ("optax again", row.make_optax, optax.apply_updates), ("gx", row.make_gx, None)
    ):
        tx = make()
        p = jax.tree.map(lambda x: x.copy(), params)
        # Copied: Optax's prodigy keeps the parameters themselves in its state, which could
        # then not be donated twice.
        state = jax.tree.map(lambda x: x.copy(), tx.init(p))
        make_step = lambda tx=tx, apply=apply: timing.jitted_step(tx, apply, row.extra)
        cands.append(timing.Candidate.jax(name, make_step, (p, state), grads))
    timing.interleave(cands, steps, budget_s=budget_s)
    o, again, g = cands
    return Result(1e3 * g.median_s, 1e3 * o.median_s, timing.compare(g, o, again))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150, help="interleaved rounds per row at most (default 150)")
    parser.add_argument("--budget", type=float, default=3.0, help="seconds of timing per row at most (default 3)")
    parser.add_argument("--optimizers", nargs="+", choices=list(OPTIMIZERS), metavar="NAME",
                        help="rows to time (default: all but the slow ones): " + ", ".join(OPTIMIZERS))
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES),
                        help="parameters to time on (default: both)")
    args = parser.parse_args(argv)
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), jax {jax.__version__}, optax {optax.__version__}")
    print(f"{'shape':<16}{'optimizer':<29}{'gradxform ms':>13}{'optax ms':>10}{'ratio':>7}{'95% interval':>15}{'A/A':>7}  verdict")
    verdicts: dict[str, list[str]] = {"faster": [], "parity": [], "slower": []}
    skipped = []
    for shape_name in args.shapes:
        shape, make_params = SHAPES[shape_name]
        params = make_params()
        for opt in args.optimizers or OPTIMIZERS:
            if (opt, shape_name) in SLOW and not args.optimizers:
                skipped.append(f"{shape:<16}{opt:<29}skipped: {SLOW[opt, shape_name]}")
                continue
            r = compare(params, OPTIMIZERS[opt], args.steps, args.budget)
            c = r.versus
            verdicts[c.verdict].append(f"{opt} ({shape})")
            lo, hi = c.interval
            print(f"{shape:<16}{opt:<29}{r.gx_ms:>13.2f}{r.optax_ms:>10.2f}{c.ratio:>7.3f}{f'{lo:.3f}-{hi:.3f}':>15}{c.aa:>7.3f}  {c.verdict}",
                  flush=True)
    for line in skipped:
        print(line)
    for v, rows in verdicts.items():
        print(f"{v}: {len(rows)}" + (f" ({', '.join(rows)})" if rows and v != "faster" else ""))


if __name__ == "__main__":
    main()
