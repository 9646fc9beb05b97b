"""What an optimizer is made of: ``describe`` (text) and ``diagram`` (HTML, for notebooks).

Both read a transformation's `Spec` tree. Given a state, ``diagram`` also shows the values
the state holds: each hyperparameter's current value (changed with
``gx.set_hyperparams`` or following a schedule) and each stage's scalar state fields.
"""

from __future__ import annotations

import html
import inspect as _pyinspect
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np

from gradxform._factory import REGISTRY, HyperparamsState, _nested
from gradxform.combinators import BranchState
from gradxform.core import (
    GradientTransformation,
    Schedule,
    Spec,
    check_transformation,
    is_named_pair,
    is_tracer,
    is_transformation,
)


def format_value(value: Any) -> str:
    """A short, readable rendering of an argument value (numbers, dtypes, schedules, trees)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return repr(value)
    if isinstance(value, (int, float, np.number)):
        return f"{value:g}" if isinstance(value, float) else str(value)
    if is_tracer(value):  # a hyperparameter given as a traced value (built inside jit)
        return f"<traced {value.aval.str_short()}>"
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
    described = getattr(value, "__gradxform_config__", None)  # gx.by_path(...) and the like
    if callable(value) and isinstance(described, Mapping):
        return f"{described['function']}({', '.join(format_value(v) for v in described.get('args', {}).values())})"
    if callable(value):
        return f"<function {getattr(value, '__name__', type(value).__name__)}>"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k!r}: {format_value(v)}" for k, v in list(value.items())[:6]) + (", ..." if len(value) > 6 else "") + "}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_stage_arg(value: Any) -> bool:
    return is_transformation(value) or (
        isinstance(value, (tuple, list)) and bool(value) and all(is_transformation(v) or is_named_pair(v) for v in value)
    ) or (isinstance(value, Mapping) and bool(value) and all(is_transformation(v) for v in value.values()))


def _args_text(spec: Spec) -> str:
    return ", ".join(f"{k}={format_value(v)}" for k, v in spec.args.items() if not _is_stage_arg(v))


def _label(tx: Any) -> str:
    spec = getattr(tx, "spec", None)
    if spec is None:
        return f"{type(tx).__module__.split('.')[0]}.{type(tx).__name__}(<opaque>)"
    return f"{spec.name}({_args_text(spec)})"


def children(tx: Any) -> list[tuple[str, Any]]:
    """The sub-transformations shown under ``tx``.

    A factory's transformation arguments (a chain's stages, a ratio's two sides) when its
    body is made of just those; otherwise the composition it expands to, so that a wrapper
    adding stages of its own (a projection after the inner optimizer) shows them too.
    """
    spec = getattr(tx, "spec", None)
    if spec is None:
        return []
    given = spec.children()
    if spec.body is None:
        return given
    if given and _only_wraps(spec.body, given):
        return given
    return [("=", spec.body)]


def _only_wraps(body: Any, given: list[tuple[str, Any]]) -> bool:
    """Whether ``body`` adds no stage of its own around the given transformations."""
    spec = getattr(body, "spec", None)
    if spec is None:
        return False
    ids = {id(t) for _, t in given}
    return all(id(t) in ids for _, t in spec.children()) and spec.body is None or (
        spec.body is not None and _only_wraps(spec.body, given)
    )


def describe(tx: GradientTransformation) -> str:
    """The composition tree of a transformation, as text.

    Args:
      tx: any transformation (an Optax one shows as opaque).

    Returns:
      One line per stage with its hyperparameters, children indented under their parent.
      ``=`` marks the composition a named optimizer expands to.

    Raises:
      TypeError: if ``tx`` is not a transformation (such as the factory ``gx.adam`` itself).

    Example:
      >>> import gradxform as gx
      >>> print(gx.describe(gx.sgd(0.1)))
      sgd(learning_rate=0.1, momentum=None, nesterov=False, accumulator_dtype=None)
      └─ = chain()
         ├─ 0: identity()
         └─ 1: scale_by_learning_rate(learning_rate=0.1, flip_sign=True)
    """
    check_transformation("describe", "tx", tx)
    lines = [_label(tx)]

    def walk(node: Any, prefix: str) -> None:
        kids = children(node)
        for i, (name, child) in enumerate(kids):
            last = i == len(kids) - 1
            lines.append(f"{prefix}{'└─ ' if last else '├─ '}{name}{' ' if name == '=' else ': '}{_label(child)}")
            walk(child, prefix + ("   " if last else "│  "))

    walk(tx, "")
    return "\n".join(lines)


# --------------------------------------------------------------------------- state alignment


def _is_injected(spec: Spec | None, state: Any) -> bool:
    """Whether ``state`` is the `HyperparamsState` of the stage described by ``spec`` (a
    factory called by the user keeps its hyperparameters in the state; one called inside
    another factory does not)."""
    return (
        spec is not None
        and bool(spec.hyperparams)
        and isinstance(state, HyperparamsState)
        and set(state.hyperparams) == set(spec.hyperparams)
    )


def _rebuild(spec: Spec, values: Mapping[str, Any]) -> GradientTransformation | None:
    """The composition ``spec`` expands to, built again with some arguments replaced.

    This is what an injected transformation does inside each ``update`` (with the values
    from its state), so the result shows, and computes with, the current hyperparameters.
    Values may be tracers. A factory that is not registered gives the composition recorded
    at construction; a leaf primitive gives ``None``.
    """
    factory = REGISTRY.get(spec.name)
    if factory is None:
        return spec.body
    bound = _pyinspect.BoundArguments(_pyinspect.signature(factory), {**spec.args, **values})  # type: ignore[arg-type]
    with _nested():
        built = factory(*bound.args, **bound.kwargs)
    return built.spec.body if built.spec is not None else None


def _child_states(spec: Spec, kids: list[tuple[str, Any]], state: Any) -> list[Any]:
    """The states of ``kids`` (a node's children) inside the node's ``state``, where the
    layout is known (chain, branch, ratio, named, expansions and single-inner wrappers such
    as masked and partition); ``None`` where it is not."""
    none = [None] * len(kids)
    if state is None:
        return none
    if kids and kids[0][0] == "=":
        return [state]
    if spec.name == "chain":
        return list(state) if isinstance(state, tuple) and len(state) == len(kids) else none
    if spec.name in ("branch", "ratio"):
        return [state.left, state.right] if isinstance(state, BranchState) else none
    if spec.name == "named":
        return [state.get(spec.args["name"])] if isinstance(state, Mapping) else none
    if spec.name == "named_chain":
        return [state.get(name) for name, _ in kids] if isinstance(state, Mapping) else none
    inner = getattr(state, "inner_state", None)
    if len(kids) == 1 and inner is not None:
        return [inner]
    if isinstance(inner, Mapping):
        by_name = {str(k): getattr(v, "inner_state", v) for k, v in inner.items()}
        return [by_name.get(name) for name, _ in kids]
    return none


# --------------------------------------------------------------------------- diagram

_OPS = {"add": "+", "subtract": "−", "multiply": "×", "divide": "÷"}
_FONT = "font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px;line-height:1.35"
_CARD = "border:1px solid {border};border-radius:6px;padding:4px 8px;background:{bg};margin:0"
_LEAF = _CARD.format(border="#7a9cc6", bg="#eef4fb")
_COMPOSED = _CARD.format(border="#c9a227", bg="#fffaf0")
_WRAPPER = _CARD.format(border="#999", bg="#f7f7f7")
_COLUMN = "display:flex;flex-direction:column;align-items:stretch;gap:0"
_ROW = "display:flex;flex-direction:row;align-items:flex-start;gap:10px"
_ARROW = "<div style='text-align:center;color:#888;line-height:1.1'>↓</div>"
_PILL = "<div style='align-self:center;border-radius:10px;background:#e8e8e8;padding:1px 10px;color:#444'>{}</div>"


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def _defaults(name: str) -> dict[str, Any]:
    factory = REGISTRY.get(name)
    if factory is None:
        return {}
    params = _pyinspect.signature(factory).parameters.values()
    return {p.name: p.default for p in params if p.default is not p.empty}


def _shown_args(spec: Spec) -> list[tuple[str, Any]]:
    """Hyperparameters always; other arguments where they differ from the default."""
    defaults = _defaults(spec.name)
    shown = []
    for key, value in spec.args.items():
        if value is None or _is_stage_arg(value):
            continue
        if key not in spec.hyperparams and key in defaults and format_value(defaults[key]) == format_value(value):
            continue
        shown.append((key, value))
    return shown


def _hyper_lines(spec: Spec, state: Any) -> str:
    now = dict(state.hyperparams) if _is_injected(spec, state) else {}
    items = []
    for key, value in _shown_args(spec):
        text = f"{key}={format_value(value)}"
        # Inside jit the state's values are tracers: their values are unknown, not changed.
        if key in now and not is_tracer(now[key]) and format_value(now[key]) != format_value(value):
            items.append(f"<span style='white-space:nowrap'>{_esc(text)} <b>→ now {_esc(format_value(now[key]))}</b></span>")
        else:
            items.append(f"<span style='white-space:nowrap'>{_esc(text)}</span>")
    return f"<div style='max-width:30em'>{' &nbsp;'.join(items)}</div>" if items else ""


def _state_line(spec: Spec | None, state: Any) -> str:
    if _is_injected(spec, state):
        step = format_value(state.count) if is_tracer(state.count) else int(state.count)
        return f"<div style='color:#777'>step {_esc(str(step))}</div>"
    if isinstance(state, tuple) and hasattr(state, "_fields"):
        scalars = [
            f"{f}={format_value(getattr(state, f))}"
            for f in state._fields
            if hasattr(getattr(state, f), "shape") and np.ndim(getattr(state, f)) == 0
        ]
        if scalars:
            return f"<div style='color:#777'>state: {_esc(', '.join(scalars))}</div>"
    return ""


def _card(node: Any, state: Any, depth: int, tag: str = "") -> str:
    spec = getattr(node, "spec", None)
    head = f"<span style='color:#777'>{_esc(tag)}</span> " if tag else ""
    if spec is None:
        return (f"<div style='{_WRAPPER}'>{head}<b>{_esc(type(node).__module__.split('.')[0])}."
                f"{_esc(type(node).__name__)}</b> <i style='color:#777'>(opaque)</i></div>")
    if spec.name == "chain":
        return _flow(node, state, depth, tag)
    if spec.name in ("branch", "ratio"):
        return _branches(node, state, depth, tag)
    if spec.name == "named":
        inner_state = _child_states(spec, children(node), state)[0]
        return _card(spec.args["inner"], inner_state, depth, f"{tag} {spec.args['name']}:".strip())
    kids = children(node)
    body = ""
    expands = bool(kids) and kids[0][0] == "="
    if expands:
        inner = node.spec.body
        body_state = state.inner_state if _is_injected(spec, state) else state
        if _is_injected(spec, state):
            inner = _rebuild(spec, state.hyperparams) or inner
        content = _card(inner, body_state, depth + 1)
        flat = all(getattr(getattr(c, "spec", None), "body", None) is None for _, c in children(inner))
        is_open = " open" if depth == 0 or not flat else ""
        body = (f"<details{is_open} style='margin-top:3px'><summary style='color:#777;cursor:pointer'>"
                f"composition</summary><div style='margin-top:3px'>{content}</div></details>")
    elif kids:
        states = _child_states(spec, kids, state)
        style = _ROW if len(kids) > 1 else _COLUMN
        body = f"<div style='{style};margin-top:3px'>" + "".join(
            _card(c, s, depth + 1, n) for (n, c), s in zip(kids, states)
        ) + "</div>"
    info = _hyper_lines(spec, state) + _state_line(spec, state)
    info = f"<div style='color:#333'>{info}</div>" if info else ""
    style = _COMPOSED if expands else _LEAF if not kids else _WRAPPER
    return f"<div style='{style}'>{head}<b>{_esc(spec.name)}</b>{info}{body}</div>"


def _flow(node: Any, state: Any, depth: int, tag: str) -> str:
    kids = children(node)
    states = _child_states(node.spec, kids, state)
    stages = _ARROW.join(_card(c, s, depth, f"{n}") for (n, c), s in zip(kids, states)) or _PILL.format("identity")
    label = f"<div style='color:#777'>{_esc(tag)} chain</div>" if tag else ""
    return f"<div style='{_COLUMN}'>{label}{stages}</div>"


def _branches(node: Any, state: Any, depth: int, tag: str) -> str:
    spec = node.spec
    kids = children(node)
    states = _child_states(spec, kids, state)
    op = "divide" if spec.name == "ratio" else spec.args.get("combine", "add")
    sides = "".join(
        f"<div style='{_COLUMN};flex:1'>{_card(c, s, depth, n)}</div>" for (n, c), s in zip(kids, states)
    )
    names = f" {_OPS.get(op, op)} ".join(n for n, _ in kids)
    combine = _PILL.format(_esc(f"{spec.name}: {names}"))
    label = f"<div style='color:#777'>{_esc(tag)}</div>" if tag else ""
    return (f"<div style='{_WRAPPER};border-style:dashed'>{label}<div style='{_ROW}'>{sides}</div>"
            f"{_ARROW}{combine}</div>")


def to_html(tx: GradientTransformation, state: Any = None) -> str:
    """An HTML diagram of a composition, for notebooks (``_repr_html_``).

    Data flows from top (gradients) to bottom (updates): a chain's stages one under the
    other, a branch's two sides side by side above the node that combines them, a named
    optimizer as a box with its hyperparameters and, folded inside, the composition it
    expands to.

    Args:
      tx: any transformation (an Optax one shows as an opaque box).
      state: optionally, the transformation's state (from ``init`` or ``update``): each
        hyperparameter then also shows its current value where it differs from the one
        given at construction, with each stage's step count and scalar state fields.

    Returns:
      A self-contained HTML fragment (inline styles, no scripts).

    Example:
      >>> import gradxform as gx
      >>> html = gx.inspect.to_html(gx.adam(1e-3))
      >>> "scale_by_learning_rate" in html and "learning_rate=0.001" in html
      True
    """
    check_transformation("to_html", "tx", tx)
    body = _card(tx, state, 0)
    return (f"<div style='{_FONT};display:inline-flex;flex-direction:column;align-items:stretch'>"
            f"{_PILL.format('gradients')}{_ARROW}{body}{_ARROW}{_PILL.format('updates')}</div>")


class Diagram:
    """A transformation, optionally with its state, that renders as a diagram in notebooks.

    Attributes:
      tx: the transformation.
      state: its state, or ``None``.
    """

    def __init__(self, tx: GradientTransformation, state: Any = None):
        self.tx = tx
        self.state = state

    def _repr_html_(self) -> str:
        return to_html(self.tx, self.state)

    def __repr__(self) -> str:
        return describe(self.tx)


def diagram(tx: GradientTransformation, state: Any = None) -> Diagram:
    """The notebook diagram of ``tx``, showing the current values held in ``state``.

    Args:
      tx: any transformation.
      state: its state (``tx.init(params)`` or the latest ``update``'s), or ``None``.
        Inside ``jax.jit`` its values are tracers and show as ``<traced ...>``; the
        composition and the hyperparameters it was built with show as outside.

    Returns:
      A `Diagram`: the last expression of a notebook cell renders it as HTML (see
      `to_html`); elsewhere it prints as `describe`.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.sgd(0.1)
      >>> state = gx.set_hyperparams(tx.init(jnp.zeros(2)), learning_rate=0.05)
      >>> "now 0.05" in gx.diagram(tx, state)._repr_html_()
      True
    """
    check_transformation("diagram", "tx", tx)
    return Diagram(tx, state)
