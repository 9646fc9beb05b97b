"""What an optimizer is made of: ``describe`` (text) and the notebook diagram (HTML)."""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np

from gradxform.core import GradientTransformation, Schedule, Spec, is_transformation


def format_value(value: Any) -> str:
    """A short, readable rendering of an argument value (numbers, dtypes, schedules, trees)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return repr(value)
    if isinstance(value, (int, float, np.number)):
        return f"{value:g}" if isinstance(value, float) else str(value)
    if isinstance(value, (jnp.ndarray, np.ndarray)) and np.ndim(value) == 0:
        return f"{float(value):g}"
    if isinstance(value, type) or hasattr(value, "dtype") and isinstance(value, np.dtype):
        return str(jnp.dtype(value))
    try:
        return str(jnp.dtype(value)) if isinstance(value, (type, np.dtype)) else _other(value)
    except TypeError:
        return _other(value)


def _other(value: Any) -> str:
    spec = getattr(value, "spec", None)
    if isinstance(value, Schedule) or (spec is not None and not is_transformation(value)):
        return repr(value)
    if callable(value):
        return f"<function {getattr(value, '__name__', type(value).__name__)}>"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k!r}: {format_value(v)}" for k, v in list(value.items())[:6]) + (", ..." if len(value) > 6 else "") + "}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _args_text(spec: Spec) -> str:
    parts = []
    for key, value in spec.args.items():
        if is_transformation(value) or (
            isinstance(value, (tuple, list)) and value and all(is_transformation(v) for v in value)
        ):
            continue
        parts.append(f"{key}={format_value(value)}")
    return ", ".join(parts)


def _label(tx: Any) -> str:
    spec = getattr(tx, "spec", None)
    if spec is None:
        return f"{type(tx).__module__.split('.')[0]}.{type(tx).__name__}(<opaque>)"
    return f"{spec.name}({_args_text(spec)})"


def children(tx: Any) -> list[tuple[str, Any]]:
    """The sub-transformations shown under ``tx``: its transformation arguments, else the
    composition it expands to (unless that is a single stage of its own arguments)."""
    spec = getattr(tx, "spec", None)
    if spec is None:
        return []
    given = spec.children()
    if given:
        return given
    if spec.body is not None:
        return [("=", spec.body)]
    return []


def describe(tx: GradientTransformation) -> str:
    """The composition tree of a transformation, as text.

    Args:
      tx: any transformation (an Optax one shows as opaque).

    Returns:
      One line per stage with its hyperparameters, children indented under their parent.
      ``=`` marks the composition a named optimizer expands to.

    Example:
      >>> import gradxform as gx
      >>> print(gx.describe(gx.sgd(0.1)))
      sgd(learning_rate=0.1, momentum=None, nesterov=False, accumulator_dtype=None)
      └─ = chain()
         ├─ 0: identity()
         └─ 1: scale_by_learning_rate(learning_rate=0.1, flip_sign=True)
    """
    lines = [_label(tx)]

    def walk(node: Any, prefix: str) -> None:
        kids = children(node)
        for i, (name, child) in enumerate(kids):
            last = i == len(kids) - 1
            lines.append(f"{prefix}{'└─ ' if last else '├─ '}{name}{' ' if name == '=' else ': '}{_label(child)}")
            walk(child, prefix + ("   " if last else "│  "))

    walk(tx, "")
    return "\n".join(lines)


def to_html(tx: GradientTransformation) -> str:
    """An HTML diagram of a composition, for notebooks (``_repr_html_``).

    Args:
      tx: any transformation.

    Returns:
      Nested boxes: a chain's stages left to right, a branch's sides stacked, the
      hyperparameters inside each box.
    """

    def box(node: Any, name: str = "") -> str:
        spec = getattr(node, "spec", None)
        title = html.escape(spec.name if spec else "opaque")
        args = html.escape(_args_text(spec)) if spec else ""
        kids = children(node)
        flow = "row" if spec is not None and spec.name == "chain" else "column"
        inner = "".join(box(c, n) for n, c in kids)
        head = f"<b>{html.escape(name + ': ') if name and name not in '=0123456789' else ''}{title}</b>"
        sub = f"<div style='font-size:smaller;color:#555'>{args}</div>" if args else ""
        body = f"<div style='display:flex;flex-direction:{flow};gap:4px;margin-top:4px'>{inner}</div>" if inner else ""
        return (
            "<div style='border:1px solid #999;border-radius:4px;padding:4px;margin:2px;"
            f"font-family:monospace;background:#fafafa'>{head}{sub}{body}</div>"
        )

    return box(tx)
