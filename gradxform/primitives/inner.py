"""Inner products over whole parameter trees (for line searches, L-BFGS, Prodigy)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gradxform.core import PyTree


def tree_vdot(a: PyTree, b: PyTree) -> jax.Array:
    """The inner product ``<a, b>`` of two trees of the same structure, conjugating ``a``.

    Each leaf contracts all its axes at once (no flattening copy, sharding-friendly) at the
    highest matmul precision, and the leaves' products are summed in flattening order.

    Args:
      a: a pytree of arrays (conjugated if complex).
      b: a pytree of the same structure and shapes.

    Returns:
      A scalar (complex if the leaves are).

    Example:
      >>> import jax.numpy as jnp
      >>> from gradxform.primitives.inner import tree_vdot
      >>> tree_vdot({"x": jnp.array([1.0, 2.0])}, {"x": jnp.array([3.0, 4.0])}).tolist()
      11.0
    """

    def leaf(x, y):
        x, y = jnp.asarray(x), jnp.asarray(y)
        if jnp.iscomplexobj(x):
            x = jnp.conj(x)
        return jnp.tensordot(x, y, x.ndim, precision=jax.lax.Precision.HIGHEST)

    total = 0
    for product in jax.tree.leaves(jax.tree.map(leaf, a, b)):
        total = total + product
    return jnp.asarray(total)


def tree_real_vdot(a: PyTree, b: PyTree) -> jax.Array:
    """The real part of `tree_vdot` (the inner product of the real vector space).

    Args:
      a: a pytree of arrays.
      b: a pytree of the same structure and shapes.

    Returns:
      A real scalar.

    Example:
      >>> import jax.numpy as jnp
      >>> from gradxform.primitives.inner import tree_real_vdot
      >>> tree_real_vdot(jnp.array([1j]), jnp.array([1j])).tolist()
      1.0
    """
    return jnp.real(tree_vdot(a, b))
