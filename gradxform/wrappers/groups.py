"""Parameter groups: masking, partitioning, freezing and per-group hyperparameters.

A group is chosen by a tree of labels (or booleans) with the parameters' structure, or a
prefix of it, or by a function of the parameters returning one (`gradxform.by_path` builds
such a function from path patterns). Parameters outside a transformation's group are
replaced by `MaskedNode` before that transformation sees them, so it allocates no state
and does no arithmetic for them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Hashable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradxform._factory import transformation
from gradxform.core import (
    NON_NEGATIVE,
    EmptyState,
    GradientTransformation,
    Params,
    PyTree,
    call_update,
    check_transformation,
    is_tracer,
    is_transformation,
    mask_bool,
    path_str,
)

LabelsOrFn = PyTree | Callable[[Params], PyTree]


class MaskedNode(NamedTuple):
    """Stands in for a parameter outside a transformation's group (a pytree with no leaves)."""


class MaskedState(NamedTuple):
    """State of `masked`: ``inner_state`` is the inner transformation's state, with
    `MaskedNode` in place of every parameter outside the mask."""

    inner_state: Any


class PartitionState(NamedTuple):
    """State of `partition`: ``inner_state`` maps each label to its group's `MaskedState`
    (also readable as ``inner_states``, Optax's name for it)."""

    inner_state: dict[Hashable, MaskedState]

    @property
    def inner_states(self) -> dict[Hashable, MaskedState]:
        return self.inner_state


_PREFIX_HELP = (
    "It must have the parameters' tree structure, or a prefix of it (one label for a "
    "whole sub-tree), or be a function of the parameters returning such a tree; "
    "gx.by_path({...}) builds one from path patterns."
)


def resolve_labels(owner: str, labels: LabelsOrFn, tree: PyTree) -> PyTree:
    """The label tree that ``labels`` denotes for ``tree``, checked to be a prefix of it.

    Args:
      owner: the public name used in error messages.
      labels: a tree of labels (a prefix of ``tree``'s structure) or a function of ``tree``.
      tree: the parameters or updates.

    Returns:
      The label tree.

    Raises:
      ValueError: if the label tree is not a prefix of ``tree`` or holds traced values.
    """
    resolved = labels(tree) if callable(labels) and not is_transformation(labels) else labels
    try:
        jax.tree.map(lambda _label, _sub: None, resolved, tree)
    except ValueError as e:
        raise ValueError(
            f"{owner}: the labels do not match the parameters' tree. {_PREFIX_HELP}\n"
            f"  label paths:     {_few(_leaf_paths(resolved))}\n"
            f"  parameter paths: {_few(_leaf_paths(tree))}\n  ({e})"
        ) from None
    for path, label in jax.tree_util.tree_flatten_with_path(resolved)[0]:
        if is_tracer(label) or (isinstance(label, (jax.Array, np.ndarray)) and np.ndim(label) != 0):
            raise ValueError(
                f"{owner}: the label at '{path_str(path)}' is an array ({label!r}); labels "
                "must be static Python values (str, bool, int) so that the groups are known "
                "when the step is compiled."
            )
    return resolved


def _leaf_paths(tree: PyTree) -> list[str]:
    return [path_str(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def _few(items: list[str], n: int = 12) -> str:
    return ", ".join(items[:n]) + (f" ... ({len(items)} in all)" if len(items) > n else "")


def _static(label: Any) -> Any:
    return label.item() if isinstance(label, (np.ndarray, np.generic, jax.Array)) else label


def _keep(tree: PyTree, select: PyTree) -> PyTree:
    """``tree`` with every sub-tree whose ``select`` leaf is false replaced by `MaskedNode`."""
    return jax.tree.map(lambda keep, sub: sub if keep else MaskedNode(), select, tree)


def _merge(select: PyTree, new: PyTree, old: PyTree) -> PyTree:
    return jax.tree.map(lambda keep, n, o: n if keep else o, select, new, old)


def _mask_extra(extra: Mapping[str, Any], like: PyTree, select: PyTree, enabled: bool) -> dict[str, Any]:
    if not enabled:
        return dict(extra)
    structure = jax.tree.structure(like)
    return {k: _keep(v, select) if jax.tree.structure(v) == structure else v for k, v in extra.items()}


@transformation()
def masked(
    inner: GradientTransformation,
    mask: LabelsOrFn,
    *,
    mask_compatible_extra_args: bool = False,
) -> GradientTransformation:
    """Applies ``inner`` to the parameters selected by ``mask``; passes the rest through.

    As Optax's ``masked``: ``inner`` keeps state only for the selected parameters (the
    others are `MaskedNode` in its state) and never computes anything for the others.

    Args:
      inner: the transformation to apply to the selected parameters.
      mask: a tree of booleans with the parameters' structure or a prefix of it, or a
        function of the parameters (or updates) returning one; ``True`` selects.
      mask_compatible_extra_args: also mask extra keyword arguments to ``update`` that have
        the updates' tree structure.

    Returns:
      A transformation with `MaskedState`.

    Raises:
      TypeError: if ``inner`` is not a transformation.
      ValueError: at ``init``/``update``, if the mask does not match the parameters.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.masked(gx.scale(-1.0), {"w": True, "b": False})
      >>> g = {"w": jnp.ones(2), "b": jnp.ones(1)}
      >>> out, _ = tx.update(g, tx.init(g))
      >>> out["w"].tolist(), out["b"].tolist()
      ([-1.0, -1.0], [1.0])
    """
    check_transformation("masked", "inner", inner)

    def select(tree):
        labels = resolve_labels("masked", mask, tree)
        return jax.tree_util.tree_map_with_path(lambda path, m: mask_bool("masked", path, m), labels)

    def init(params):
        return MaskedState(inner.init(_keep(params, select(params))))

    def update(updates, state, params=None, **extra):
        sel = select(updates)
        inner_params = None if params is None else _keep(params, sel)
        extra = _mask_extra(extra, updates, sel, mask_compatible_extra_args)
        new, inner_state = call_update(inner, _keep(updates, sel), state.inner_state, inner_params, extra)
        return _merge(sel, new, updates), MaskedState(inner_state)

    return GradientTransformation(init, update)


@transformation()
def partition(
    transforms: Mapping[Hashable, GradientTransformation],
    param_labels: LabelsOrFn,
    *,
    mask_compatible_extra_args: bool = False,
) -> GradientTransformation:
    """Applies a different transformation to each group of parameters.

    As Optax's ``partition``: every parameter carries a label, and the transformation
    under that label in ``transforms`` updates it; each transformation keeps state only for
    its own group. The state is keyed by label, so ``gx.hyperparams`` names a group's
    hyperparameters ``"<label>/learning_rate"``.

    Args:
      transforms: a mapping from label to transformation.
      param_labels: a tree of labels with the parameters' structure (or a prefix of it), or
        a function of the parameters returning one, such as ``gx.by_path({...})``.
      mask_compatible_extra_args: also mask extra keyword arguments to ``update`` that have
        the updates' tree structure.

    Returns:
      A transformation with `PartitionState`.

    Raises:
      TypeError: if a value of ``transforms`` is not a transformation.
      ValueError: if ``transforms`` is empty, or at ``init`` if a parameter's label has no
        transformation (naming the label and the parameters that carry it).

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.partition({"a": gx.sgd(0.1), "b": gx.sgd(1.0)}, {"w": "a", "b": "b"})
      >>> p = {"w": jnp.ones(1), "b": jnp.ones(1)}
      >>> out, state = tx.update(p, tx.init(p), p)
      >>> round(out["w"].item(), 4), out["b"].item()
      (-0.1, -1.0)
      >>> sorted(gx.hyperparams(state))
      ['a/learning_rate', 'b/learning_rate']
    """
    if not isinstance(transforms, Mapping) or not transforms:
        raise ValueError(
            f"partition: transforms must be a non-empty mapping from label to transformation, got {transforms!r}."
        )
    for label, tx in transforms.items():
        check_transformation("partition", f"transforms[{label!r}]", tx)

    def groups(tree):
        labels = jax.tree.map(_static, resolve_labels("partition", param_labels, tree))
        unknown = {}
        for path, label in jax.tree_util.tree_flatten_with_path(labels)[0]:
            if label not in transforms:
                unknown.setdefault(label, []).append(path_str(path))
        if unknown:
            lines = "\n".join(f"  label {lab!r}: {_few(paths)}" for lab, paths in unknown.items())
            raise ValueError(
                "partition: some parameters have a label with no transformation.\n"
                f"{lines}\n  transforms has labels: {sorted(map(repr, transforms))}.\n"
                "Add a transformation for each label (gx.set_to_zero() freezes a group)."
            )
        return {label: jax.tree.map(lambda lab, g=label: lab == g, labels) for label in transforms}

    def init(params):
        selections = groups(params)
        return PartitionState(
            {label: MaskedState(tx.init(_keep(params, selections[label]))) for label, tx in transforms.items()}
        )

    def update(updates, state, params=None, **extra):
        selections = groups(updates)
        new_state = {}
        for label, tx in transforms.items():
            sel = selections[label]
            inner_params = None if params is None else _keep(params, sel)
            group_extra = _mask_extra(extra, updates, sel, mask_compatible_extra_args)
            new, inner_state = call_update(
                tx, _keep(updates, sel), state.inner_state[label].inner_state, inner_params, group_extra
            )
            updates = _merge(sel, new, updates)
            new_state[label] = MaskedState(inner_state)
        return updates, PartitionState(new_state)

    return GradientTransformation(init, update)


@transformation()
def multi_transform(
    transforms: Mapping[Hashable, GradientTransformation],
    param_labels: LabelsOrFn,
    *,
    mask_compatible_extra_args: bool = False,
) -> GradientTransformation:
    """Optax's older name for `partition` (same arguments, same state, same results).

    Args:
      transforms: a mapping from label to transformation.
      param_labels: labels of the parameters, a tree or a function (see `partition`).
      mask_compatible_extra_args: see `partition`.

    Returns:
      ``partition(transforms, param_labels)``.

    Raises:
      ValueError: as `partition`.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.multi_transform({"x": gx.sgd(1.0)}, "x")
      >>> tx.update(jnp.ones(1), tx.init(jnp.ones(1)), jnp.ones(1))[0].tolist()
      [-1.0]
    """
    return partition(transforms, param_labels, mask_compatible_extra_args=mask_compatible_extra_args)


@transformation()
def set_to_zero() -> GradientTransformation:
    """Replaces every update by zero: the parameters it sees do not move.

    Returns:
      A stateless transformation.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.set_to_zero().update(jnp.ones(2), gx.EmptyState())[0].tolist()
      [0.0, 0.0]
    """

    def update(updates, state, params=None, **extra):
        return jax.tree.map(jnp.zeros_like, updates), state

    return GradientTransformation(lambda params: EmptyState(), update)


@transformation()
def freeze(mask: LabelsOrFn) -> GradientTransformation:
    """Zeroes the updates of the parameters selected by ``mask`` (``masked(set_to_zero(), mask)``).

    Put it before an optimizer with ``chain`` to freeze parameters in a running optimizer;
    to also give frozen parameters no optimizer state, use
    ``partition({"train": opt, "frozen": set_to_zero()}, labels)``.

    Args:
      mask: ``True`` for frozen parameters: a tree (or prefix) of booleans or a function of
        the parameters returning one.

    Returns:
      A transformation with `MaskedState`.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.freeze({"w": True, "b": False})
      >>> g = {"w": jnp.ones(1), "b": jnp.ones(1)}
      >>> out, _ = tx.update(g, tx.init(g))
      >>> out["w"].tolist(), out["b"].tolist()
      ([0.0], [1.0])
    """
    return masked(set_to_zero(), mask)


@transformation()
def selective_transform(optimizer: GradientTransformation, *, freeze_mask: LabelsOrFn) -> GradientTransformation:
    """Trains the parameters ``freeze_mask`` leaves free with ``optimizer``; the rest stay put.

    As Optax's ``selective_transform``: ``partition({"train": optimizer, "freeze":
    set_to_zero()}, labels)`` with the labels read from the mask, so frozen parameters get
    zero updates and no optimizer state. (`freeze` zeroes updates but keeps the state.)

    Args:
      optimizer: the transformation for the trained parameters.
      freeze_mask: ``True`` for frozen parameters: one bool for all of them, a tree (or
        prefix) of booleans with the parameters' structure, or a function of the parameters
        returning one (``gx.by_path`` builds such functions). Keyword-only, as in Optax.

    Returns:
      A transformation with `PartitionState` (groups ``"train"`` and ``"freeze"``).

    Raises:
      TypeError: if ``optimizer`` is not a transformation.
      ValueError: if a leaf of ``freeze_mask`` is not a boolean (at construction for a tree,
        at ``init`` for a function).

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.selective_transform(gx.sgd(1.0), freeze_mask={"w": True, "b": False})
      >>> g = {"w": jnp.ones(1), "b": jnp.ones(1)}
      >>> out, _ = tx.update(g, tx.init(g))
      >>> out["w"].tolist(), out["b"].tolist()
      ([0.0], [-1.0])
    """
    check_transformation("selective_transform", "optimizer", optimizer)

    def labels_of(mask: PyTree) -> PyTree:
        def label(path: Any, leaf: Any) -> str:
            return "freeze" if mask_bool("selective_transform: freeze_mask", path, leaf) else "train"

        return jax.tree_util.tree_map_with_path(label, mask)

    if callable(freeze_mask) and not isinstance(freeze_mask, (bool, np.bool_, np.ndarray, jax.Array)):
        param_labels: LabelsOrFn = lambda params: labels_of(freeze_mask(params))
    else:
        param_labels = labels_of(freeze_mask)
    return partition({"train": optimizer, "freeze": set_to_zero()}, param_labels)


@transformation(
    {"learning_rate": NON_NEGATIVE, "weight_decay": NON_NEGATIVE, "lr_mult": NON_NEGATIVE, "wd_mult": NON_NEGATIVE}
)
def param_group(
    optimizer: Callable[..., GradientTransformation],
    learning_rate: float,
    weight_decay: float | None = None,
    lr_mult: float = 1.0,
    wd_mult: float = 1.0,
    **options: Any,
) -> GradientTransformation:
    """An optimizer for one parameter group, with learning-rate and weight-decay multipliers.

    The group's optimizer is ``optimizer(learning_rate * lr_mult, weight_decay=weight_decay
    * wd_mult, **options)``, as MXNet's ``lr_mult``/``wd_mult`` and PyTorch's parameter
    groups. All four numbers are hyperparameters kept as data in the state: read them with
    ``gx.hyperparams`` (``"no_decay/wd_mult"`` inside a `partition`) and change them with
    ``gx.set_hyperparams`` without recompiling. ``learning_rate`` may be a schedule.

    Args:
      optimizer: an optimizer factory such as ``gx.adamw``.
      learning_rate: the base learning rate (a number >= 0 or a schedule).
      weight_decay: the base weight decay, or ``None`` for an optimizer without one.
      lr_mult: this group's learning-rate multiplier, >= 0.
      wd_mult: this group's weight-decay multiplier, >= 0.
      **options: other arguments of ``optimizer`` (``b1``, ``eps``, ...), kept fixed.

    Returns:
      The group's optimizer.

    Raises:
      TypeError: if ``optimizer`` is not callable or ``weight_decay`` is given to an
        optimizer that has no such argument.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> groups = {"decay": gx.param_group(gx.adamw, 1e-3, weight_decay=0.1),
      ...           "no_decay": gx.param_group(gx.adamw, 1e-3, weight_decay=0.1, wd_mult=0.0)}
      >>> tx = gx.partition(groups, {"w": "decay", "b": "no_decay"})
      >>> state = tx.init({"w": jnp.ones(2), "b": jnp.ones(1)})
      >>> float(gx.hyperparams(state)["no_decay/wd_mult"])
      0.0
    """
    if not callable(optimizer) or is_transformation(optimizer):
        raise TypeError(
            f"param_group: optimizer must be an optimizer factory such as gx.adamw (not a built "
            f"transformation), got {optimizer!r}."
        )
    kwargs = dict(options)
    if weight_decay is not None:
        try:
            accepts = "weight_decay" in inspect.signature(optimizer).parameters
        except (TypeError, ValueError):
            accepts = True
        if not accepts:
            raise TypeError(
                f"param_group: {getattr(optimizer, '__name__', optimizer)} has no weight_decay "
                "argument; leave weight_decay=None or use an optimizer with decoupled decay (gx.adamw)."
            )
        kwargs["weight_decay"] = jnp.asarray(weight_decay) * jnp.asarray(wd_mult)
    return optimizer(jnp.asarray(learning_rate) * jnp.asarray(lr_mult), **kwargs)
