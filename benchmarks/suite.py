"""What the harness runs: shapes, optimizers, and the bytes each step must move.

Optimizers that gradxform does not have yet (``hasattr(gx, name)`` is false) are skipped.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import optax

import gradxform as gx
from benchmarks import trees

SHAPES: dict[str, Callable[[], Any]] = {
    "4M": lambda: trees.one_array(2048 * 2048),
    "16M": lambda: trees.one_array(4096 * 4096),
    "64M": lambda: trees.one_array(8192 * 8192),
    "tree400": trees.transformer_tree,
    "tiny400": trees.tiny_leaves,
    "flax-lm": trees.flax_model,
}

# name -> (gradxform attribute, arguments, Optax factory, float32 bytes moved per parameter:
# every array read once and every array written once, the least a step can move).
OPTIMIZERS: dict[str, tuple[str, dict[str, Any], Callable[[], Any], int]] = {
    "adam": ("adam", {"learning_rate": 1e-3}, lambda: optax.adam(1e-3), 28),
    "adamw": ("adamw", {"learning_rate": 1e-3, "weight_decay": 1e-4}, lambda: optax.adamw(1e-3, weight_decay=1e-4), 28),
    "sgd+momentum": ("sgd", {"learning_rate": 1e-3, "momentum": 0.9}, lambda: optax.sgd(1e-3, momentum=0.9), 20),
    "lion": ("lion", {"learning_rate": 1e-4}, lambda: optax.lion(1e-4), 20),
    "adafactor": ("adafactor", {"learning_rate": 1e-3}, lambda: optax.adafactor(1e-3), 12),
}


def make_gx(optimizer: str) -> Any | None:
    """gradxform's optimizer of that name, or None if gradxform does not define it yet."""
    attr, kwargs, _, _ = OPTIMIZERS[optimizer]
    return getattr(gx, attr)(**kwargs) if hasattr(gx, attr) else None


def make_optax(optimizer: str) -> Any:
    """Optax's optimizer of that name."""
    return OPTIMIZERS[optimizer][2]()


def bytes_per_param(optimizer: str) -> int:
    """The float32 bytes a step must read and write per parameter."""
    return OPTIMIZERS[optimizer][3]


class Variant(NamedTuple):
    """A gradxform option timed as an extra row: which rows it applies to, how it wraps the
    optimizer, and how it lays out the parameters and gradients fed to the step."""

    applies: Callable[[str, str], bool]
    wrap: Callable[[Any], Any]
    layout: Callable[[Any], Any]
    kernel: bool = True


def _packed(tree: Any) -> Any:
    return gx.bucket_layout(tree).pack(tree)


def _packed_all(tree: Any) -> Any:
    return gx.bucket_layout(tree, small_size=math.inf).pack(tree)


def variants() -> dict[str, Variant]:
    """Layout and state options of gradxform timed as extra rows (those it has):

    - ``unfused``: ``tx.update`` then ``gx.apply_updates``, without the one-pass kernel that
      ``gx.update_and_apply`` uses for Adam, AdamW and SGD with momentum on a CPU (the plain
      rows use it);
    - ``bucketed``: ``gx.bucketed(tx)``, a drop-in wrapper (state packed, trees in and out);
    - ``packed``: parameters kept in ``gx.bucket_layout`` form, so gradients arrive packed;
    - ``packed-all``: the same with every leaf bucketed (``small_size=math.inf``): a tree
      becomes a few 16M-element arrays (not for Adafactor, which factors matrices);
    - ``8-bit``: ``gx.quantized_state(tx)`` for the Adam family.
    """
    many = lambda shape, opt: shape in ("tree400", "tiny400", "flax-lm")
    same = lambda tree: tree
    out: dict[str, Variant] = {}
    if hasattr(gx, "update_and_apply"):
        fusable = lambda shape, opt: opt in ("adam", "adamw", "sgd+momentum")
        out["unfused"] = Variant(fusable, lambda tx: tx, same, kernel=False)
    if hasattr(gx, "bucketed"):
        out["bucketed"] = Variant(many, gx.bucketed, same)
        out["packed"] = Variant(many, lambda tx: tx, _packed)
        # Not Adafactor: packing every leaf flat leaves it no matrix to factor.
        out["packed-all"] = Variant(lambda shape, opt: many(shape, opt) and opt != "adafactor", lambda tx: tx, _packed_all)
    if hasattr(gx, "quantized_state"):
        out["8-bit"] = Variant(lambda shape, opt: opt in ("adam", "adamw"), gx.quantized_state, same)
    return out
