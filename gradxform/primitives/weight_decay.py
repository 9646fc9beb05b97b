"""Decoupled weight decay (Loshchilov & Hutter, 2019)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from gradxform._factory import transformation
from gradxform.core import NON_NEGATIVE, EmptyState, GradientTransformation, Params, check_same_tree, mask_bool, require_params

MaskOrFn = Any | Callable[[Params], Any] | None


def resolve_mask(owner: str, mask: MaskOrFn, params: Params) -> Any:
    """The boolean tree a mask argument denotes for ``params`` (``None``: all True).

    Raises:
      ValueError: if the mask's tree does not match the parameters', or a leaf is not a
        boolean (naming its path).
    """
    if mask is None:
        return jax.tree.map(lambda _: True, params)
    tree = mask(params) if callable(mask) else mask
    check_same_tree(tree, params, f"{owner} mask", "parameters", shapes=False)
    return jax.tree_util.tree_map_with_path(lambda path, m: mask_bool(owner, path, m), tree)


@transformation({"weight_decay": NON_NEGATIVE})
def add_decayed_weights(weight_decay: float = 0.0, mask: MaskOrFn = None) -> GradientTransformation:
    """Adds ``weight_decay * params`` to the updates (decoupled weight decay).

    Placed before the learning-rate stage, as in AdamW, the decay is scaled by the learning
    rate but not by the adaptive preconditioner.

    Args:
      weight_decay: the decay rate, >= 0 (a number or a schedule).
      mask: a tree of booleans with the parameters' structure, or a function of the
        parameters returning one; parameters marked False are not decayed.

    Returns:
      A stateless transformation; its ``update`` needs ``params``.

    Raises:
      ValueError: at ``update`` if ``params`` is not given or the mask does not match.

    References:
      Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019.
      https://arxiv.org/abs/1711.05101

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.add_decayed_weights(0.1)
      >>> p = jnp.array([2.0])
      >>> tx.update(jnp.zeros(1), tx.init(p), p)[0].tolist()
      [0.20000000298023224]
    """

    def update(updates, state, params=None, **extra):
        require_params("add_decayed_weights", params)
        check_same_tree(updates, params, "updates", "parameters")
        keep = resolve_mask("add_decayed_weights", mask, params)
        out = jax.tree.map(
            lambda g, p, m: (g + jnp.asarray(weight_decay).astype(jnp.real(g).dtype) * p).astype(g.dtype) if m else g,
            updates,
            params,
            keep,
        )
        return out, state

    return GradientTransformation(lambda params: EmptyState(), update)
