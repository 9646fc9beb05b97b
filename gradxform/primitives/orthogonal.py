"""Orthogonalisation of matrix-shaped updates by Newton-Schulz iterations, and the shape
scaling that goes with it (both used by Muon; the mathematics is on `gradxform.muon`).

A parameter of any rank is seen as a batch of matrices through `MuonDimensionNumbers`:
the reduction (input) axes are flattened into rows, the output axes into columns, the
remaining axes form the batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradxform._factory import transformation
from gradxform.core import NON_NEGATIVE, EmptyState, GradientTransformation, PyTree, check_choice, check_positive_int

PRECONDITIONINGS = ("frobenius", "spectral", "aol", "schatten")


class MuonDimensionNumbers(NamedTuple):
    """Which axes of a parameter are its matrix's rows (reduction) and columns (output).

    Attributes:
      reduction_axis: an axis or a sequence of axes (negative counts from the end).
      output_axis: an axis or a sequence of axes, disjoint from ``reduction_axis``.
    """

    reduction_axis: Sequence[int] | int = 0
    output_axis: Sequence[int] | int = 1


DimNums = MuonDimensionNumbers | PyTree | Callable[[PyTree], PyTree] | None


def is_dim_nums(x: Any) -> bool:
    """Whether ``x`` is a `MuonDimensionNumbers` (a leaf, not a tuple to descend into)."""
    return isinstance(x, MuonDimensionNumbers)


def _axes(x: jax.Array, dims: MuonDimensionNumbers) -> tuple[tuple[int, ...], tuple[int, ...]]:
    as_tuple = lambda a: (a,) if isinstance(a, int) else tuple(a)
    reduction = tuple(a % x.ndim for a in as_tuple(dims.reduction_axis))
    output = tuple(a % x.ndim for a in as_tuple(dims.output_axis))
    if set(reduction) & set(output):
        raise ValueError(
            f"MuonDimensionNumbers: reduction and output axes must be disjoint, got {dims} for shape {x.shape}."
        )
    return reduction, output


def fans(x: jax.Array, dims: MuonDimensionNumbers | None) -> tuple[int, int]:
    """The sizes of the reduction (fan-in) and output (fan-out) axes of ``x`` together.

    Args:
      x: an array.
      dims: its dimension numbers (``None``: a matrix, rows as fan-in).

    Returns:
      ``(fan_in, fan_out)``.

    Raises:
      ValueError: if the axes overlap.

    Example:
      >>> import jax.numpy as jnp
      >>> from gradxform.primitives.orthogonal import MuonDimensionNumbers, fans
      >>> fans(jnp.zeros((2, 3, 4, 5)), MuonDimensionNumbers((0, 1), 3))
      (6, 5)
    """
    reduction, output = _axes(x, dims or MuonDimensionNumbers())
    return math.prod(x.shape[a] for a in reduction), math.prod(x.shape[a] for a in output)


def _newton_schulz_step(x: jax.Array, c: jax.Array) -> jax.Array:
    # c0 X + (c1 A + c2 A^2) X with A = X X^H: an odd polynomial in the singular values.
    a = x @ x.T.conj()
    return c[0] * x + (c[1] * a + c[2] * a @ a) @ x


def _first_step(x: jax.Array, c: jax.Array, preconditioning: str, eps: float) -> jax.Array:
    """The first iteration, with the AOL or Schatten-4 rescaling folded into it."""
    a = x @ x.T.conj()
    if preconditioning == "aol":
        s = jax.lax.rsqrt(jnp.maximum(jnp.abs(a).sum(axis=-1), eps))[:, None]
        x, a = x * s, a * s * s.T
    else:
        s = jax.lax.rsqrt(jnp.maximum(jnp.linalg.norm(a, ord="fro"), eps))
        x, a = x * s, a * s**2
    return c[0] * x + (c[1] * a + c[2] * a @ a) @ x


def orthogonalize_via_newton_schulz(
    x: jax.Array,
    ns_coeffs: jax.Array,
    ns_steps: int = 5,
    preconditioning: str = "frobenius",
    eps: float = 1e-8,
    dimension_numbers: MuonDimensionNumbers | None = None,
) -> jax.Array:
    """Maps a matrix (or a batch of them) close to the orthogonal factor of its polar decomposition.

    ``X`` is first normalised (Frobenius or spectral norm; AOL and Schatten-4 rescale inside
    the first iteration), then ``X <- c0 X + c1 (X X^H) X + c2 (X X^H)^2 X`` is applied
    ``ns_steps`` times (or once per row of a ``(n, 3)`` ``ns_coeffs``). Wide matrices are
    iterated on directly, tall ones through their transpose.

    Args:
      x: a matrix, or an array of any rank with ``dimension_numbers``.
      ns_coeffs: ``(3,)`` coefficients, or ``(n, 3)`` for one set per iteration.
      ns_steps: iterations with ``(3,)`` coefficients (an int >= 1).
      preconditioning: ``"frobenius"``, ``"spectral"``, ``"aol"`` or ``"schatten"``.
      eps: guards the normalisations, >= 0.
      dimension_numbers: how to see ``x`` as a batch of matrices (required unless 2-D).

    Returns:
      An array of ``x``'s shape.

    Raises:
      ValueError: for a non-matrix without dimension numbers, bad coefficient shapes, an
        unknown preconditioning, or overlapping axes.

    References:
      Jordan et al., "Muon: An optimizer for hidden layers in neural networks", 2024.
      https://kellerjordan.github.io/posts/muon/
      Boissin et al., "Turbo-Muon: Accelerating Orthogonality-Based Optimization with
      Pre-Conditioning", 2025. https://arxiv.org/abs/2512.04632

    Example:
      >>> import jax.numpy as jnp
      >>> from gradxform.primitives.orthogonal import orthogonalize_via_newton_schulz
      >>> q = orthogonalize_via_newton_schulz(jnp.diag(jnp.array([3.0, 0.5])), jnp.array([3.4445, -4.775, 2.0315]))
      >>> bool(jnp.all(jnp.abs(jnp.diag(q) - 1.0) < 0.35))  # singular values pushed towards 1
      True
    """
    check_choice("orthogonalize_via_newton_schulz", "preconditioning", preconditioning, PRECONDITIONINGS)
    coeffs = jnp.asarray(ns_coeffs)
    if coeffs.ndim > 2 or coeffs.shape[-1] != 3:
        raise ValueError(f"ns_coeffs must have shape (3,) or (n, 3), got {coeffs.shape}.")
    if x.ndim != 2 and dimension_numbers is None:
        raise ValueError(
            f"orthogonalize_via_newton_schulz: a parameter of shape {x.shape} is not a matrix; give "
            "MuonDimensionNumbers saying which axes are its rows and columns (or let Muon route it to Adam)."
        )
    dims = dimension_numbers if x.ndim != 2 or dimension_numbers is not None else MuonDimensionNumbers()
    reduction, output = _axes(x, dims)
    batch = tuple(a for a in range(x.ndim) if a not in reduction and a not in output)
    perm = batch + reduction + output
    sizes = lambda axes: tuple(x.shape[a] for a in axes)
    flat = x.transpose(perm).reshape(math.prod(sizes(batch)), math.prod(sizes(reduction)), math.prod(sizes(output)))
    steps = [coeffs] * ns_steps if coeffs.ndim == 1 else list(coeffs)

    def one(m):
        tall = m.shape[0] > m.shape[1]
        if tall:
            m = m.T
        if preconditioning == "frobenius":
            m = m / (jnp.linalg.norm(m, ord="fro") + eps)
        elif preconditioning == "spectral":
            m = m / (jnp.linalg.norm(m, ord=2) + eps)
        for i, c in enumerate(steps):
            c = c.astype(m.dtype)
            m = _first_step(m, c, preconditioning, eps) if i == 0 and preconditioning in ("aol", "schatten") else _newton_schulz_step(m, c)
        return m.T if tall else m

    out = jax.vmap(one)(flat)
    inverse = tuple(sorted(range(x.ndim), key=lambda i: perm[i]))
    return out.reshape(sizes(batch) + sizes(reduction) + sizes(output)).transpose(inverse)


def resolve_dim_nums(weight_dimension_numbers: DimNums, tree: PyTree) -> PyTree:
    """Each leaf's `MuonDimensionNumbers` (or ``None``), in a tree with ``tree``'s structure.

    Args:
      weight_dimension_numbers: one `MuonDimensionNumbers` for every leaf, a tree (a prefix
        of ``tree``'s) of them and ``None``, or a function of ``tree`` returning one.
      tree: the parameters or updates.

    Returns:
      A tree whose leaves (at ``tree``'s leaves) are `MuonDimensionNumbers` or ``None``.

    Example:
      >>> import jax.numpy as jnp
      >>> from gradxform.primitives.orthogonal import MuonDimensionNumbers, resolve_dim_nums
      >>> resolve_dim_nums(MuonDimensionNumbers(), {"w": jnp.zeros((2, 2))})
      {'w': MuonDimensionNumbers(reduction_axis=0, output_axis=1)}
    """
    dims = weight_dimension_numbers(tree) if callable(weight_dimension_numbers) else weight_dimension_numbers
    return jax.tree.map(
        lambda d, sub: jax.tree.map(lambda _: d, sub),
        dims,
        tree,
        is_leaf=lambda x: x is None or is_dim_nums(x),
    )


def _coeffs_ok(owner: str, ns_coeffs: Any, ns_steps: int) -> jax.Array:
    check_positive_int(owner, "ns_steps", ns_steps)
    coeffs = jnp.asarray(ns_coeffs, jnp.float32)
    if coeffs.ndim > 2 or coeffs.shape[-1] != 3:
        raise ValueError(f"{owner}: ns_coeffs must have shape (3,) or (n, 3), got shape {coeffs.shape}.")
    if coeffs.ndim == 2:
        if coeffs.shape[0] > ns_steps:
            raise ValueError(f"{owner}: {coeffs.shape[0]} rows of ns_coeffs but ns_steps={ns_steps}.")
        coeffs = coeffs[-ns_steps:]
    return coeffs


@transformation({"eps": NON_NEGATIVE})
def orthogonalize(
    ns_coeffs: Any = (3.4445, -4.7750, 2.0315),
    ns_steps: int = 5,
    eps: float = 1e-8,
    *,
    preconditioning: str = "frobenius",
    adaptive: bool = False,
    weight_dimension_numbers: DimNums = None,
) -> GradientTransformation:
    """Replaces each matrix-shaped update by its Newton-Schulz orthogonalisation.

    Args:
      ns_coeffs: the iteration's ``(3,)`` coefficients, or ``(n, 3)`` with ``n <= ns_steps``.
      ns_steps: iterations (an int >= 1).
      eps: guards the normalisation, >= 0.
      preconditioning: ``"frobenius"``, ``"spectral"``, ``"aol"`` or ``"schatten"``.
      adaptive: multiply each result ``O`` by ``<G, O>`` (the dual norm of the input ``G``).
      weight_dimension_numbers: `MuonDimensionNumbers` for every leaf, a tree of them, or a
        function of the updates returning one (``None``: every leaf must be a matrix).

    Returns:
      A stateless transformation.

    Raises:
      ValueError: for bad ``ns_coeffs``, ``ns_steps`` or ``preconditioning``; at ``update``
        for a non-matrix leaf without dimension numbers.

    References:
      Jordan et al., "Muon: An optimizer for hidden layers in neural networks", 2024.
      https://kellerjordan.github.io/posts/muon/
      Bernstein & Newhouse, "Old Optimizer, New Norm: An Anthology", 2024.
      https://arxiv.org/abs/2409.20325

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.orthogonalize()
      >>> u, _ = tx.update(jnp.eye(2) * 5.0, tx.init(jnp.eye(2)))
      >>> bool(jnp.allclose(u, jnp.eye(2), atol=0.35))
      True
    """
    coeffs = _coeffs_ok("orthogonalize", ns_coeffs, ns_steps)
    check_choice("orthogonalize", "preconditioning", preconditioning, PRECONDITIONINGS)

    def update(updates, state, params=None, **extra):
        dims = resolve_dim_nums(weight_dimension_numbers, updates) if weight_dimension_numbers is not None else None

        def leaf(g, d=None):
            o = orthogonalize_via_newton_schulz(g, coeffs, ns_steps, preconditioning, eps, d)
            if adaptive:
                o = jnp.sum(g.conj() * o) * o
            return o.astype(g.dtype)

        out = jax.tree.map(leaf, updates) if dims is None else jax.tree.map(leaf, updates, dims)
        return out, state

    return GradientTransformation(lambda params: EmptyState(), update)


@transformation({"consistent_rms": NON_NEGATIVE})
def scale_by_shape(weight_dimension_numbers: DimNums = None, consistent_rms: float | None = None) -> GradientTransformation:
    """Scales each matrix-shaped update by a factor of its shape (Muon's width transfer).

    By ``sqrt(max(1, fan_out / fan_in))``, or, with ``consistent_rms``, by
    ``consistent_rms * sqrt(max(fan_in, fan_out))`` (an update RMS matching AdamW's).

    Args:
      weight_dimension_numbers: as in `orthogonalize` (``None``: every leaf a matrix with
        rows as fan-in).
      consistent_rms: the target RMS, >= 0, or ``None``.

    Returns:
      A stateless transformation.

    References:
      Liu et al., "Muon is Scalable for LLM Training", 2025. https://arxiv.org/abs/2502.16982

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.scale_by_shape()
      >>> tx.update(jnp.ones((1, 4)), tx.init(jnp.ones((1, 4))))[0].tolist()  # sqrt(4 / 1)
      [[2.0, 2.0, 2.0, 2.0]]
    """

    def update(updates, state, params=None, **extra):
        dims = resolve_dim_nums(weight_dimension_numbers, updates) if weight_dimension_numbers is not None else None

        def leaf(g, d=None):
            fan_in, fan_out = fans(g, d)
            if consistent_rms is None:
                factor = jnp.sqrt(jnp.maximum(1, fan_out / fan_in))
            else:
                factor = jnp.sqrt(jnp.maximum(fan_in, fan_out)) * consistent_rms
            return (factor * g).astype(g.dtype)

        out = jax.tree.map(leaf, updates) if dims is None else jax.tree.map(leaf, updates, dims)
        return out, state

    return GradientTransformation(lambda params: EmptyState(), update)
