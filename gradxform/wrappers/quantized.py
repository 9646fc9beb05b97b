"""8-bit block-wise quantized optimizer state (Dettmers et al., 2022).

`quantized_state(tx)` keeps every large floating-point array of ``tx``'s state in 8 bits
between steps: each block of ``block_size`` values is divided by its absolute maximum and
each value is stored as a one-byte code of a dynamic (non-linear) map. At each step the state
is decoded to float32, ``tx`` runs unchanged, and its new state is encoded again; Adam's
moments then take about 2 bytes per parameter instead of 8.

The dynamic map spends its codes on a sign, a decade (a power of ten) and a linear fraction
within the decade, so it resolves values from ``1e-6`` of the block's maximum up to it:
the range Adam's first moment spans. A block whose values are all non-negative (a second
moment) uses the unsigned map (7 decades, 254 levels) on the square roots of its values:
the roots span half as many decades, so the small second moments that set the largest
steps keep a fine resolution (rounded to the nearest level without this, Adam's steps grow
measurably on a small MLP). Other blocks use the signed map (6 decades, 126 levels per
sign). Both maps hold 0 and 1 exactly.

References:
  Dettmers, Lewis, Shleifer & Zettlemoyer, "8-bit Optimizers via Block-wise
  Quantization", ICLR 2022. https://arxiv.org/abs/2110.02861
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradxform._factory import transformation
from gradxform.core import (
    GradientTransformation,
    PyTree,
    call_update,
    check_positive_int,
    check_transformation,
    explicit_axes,
    new_count,
    path_str,
    safe_increment,
)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class QuantizedArray:
    """An array kept in 8 bits, block by block.

    Attributes:
      codes: uint8 ``[blocks, block_size]``, one code per value (zero-padded at the end).
      absmax: float32 ``[blocks]``, each block's largest magnitude (its scale).
      nonneg: bool ``[blocks]``, whether the block uses the unsigned map (of square roots).
      shape: the original shape (static).
      dtype: the original dtype (static).
    """

    codes: jax.Array
    absmax: jax.Array
    nonneg: jax.Array
    shape: tuple[int, ...] = dataclasses.field(metadata=dict(static=True))
    dtype: Any = dataclasses.field(metadata=dict(static=True))


def _decades(nonneg: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(number of decades D, top magnitude code R) of the unsigned or signed map."""
    return jnp.where(nonneg, 7, 6), jnp.where(nonneg, 255, 127)


def _magnitude(r: jax.Array, nonneg: jax.Array) -> jax.Array:
    """The value in [0, 1] of magnitude code ``r`` (int32)."""
    d, top = _decades(nonneg)
    e = 30 - jax.lax.clz(r + 1)  # decade index: floor(log2(r + 1)) - 1, exact on integers
    width = jnp.left_shift(1, e + 1)
    j = r + 1 - width
    mid = (0.1 + 0.9 * (j.astype(jnp.float32) + 0.5) / width.astype(jnp.float32)) * jnp.power(
        jnp.float32(10.0), (e + 1 - d).astype(jnp.float32)
    )
    return jnp.where(r == 0, 0.0, jnp.where(r == top, 1.0, mid))


def _encode(a: jax.Array, nonneg: jax.Array, u: jax.Array | float = 0.5) -> jax.Array:
    """The magnitude code (int32) of ``a`` in [0, 1]: the nearest level (to within one) when
    ``u`` is 0.5; with ``u`` uniform in [0, 1), one of the two levels around ``a``, the
    upper with probability proportional to the distance from the lower (stochastic
    rounding, unbiased within a decade)."""
    d, top = _decades(nonneg)
    safe = jnp.maximum(a, 1e-30)
    # The decade index e = clip(floor(log10(a)) + d, 0, d - 1) counts the decade bounds
    # 10^(j - d), j = 1 .. d - 1, that a reaches (bounds[j]: 10^(j - 7) unsigned, d = 7;
    # 10^(j - 6) signed, d = 6); `low` follows as the bound 10^(e + 1 - d).
    # Compares against float32 constants are exact where log10 rounds near the bounds, and
    # much cheaper than log10 on CPU.
    bounds = [jnp.where(nonneg, np.float32(10.0 ** (j - 7)), np.float32(10.0 ** (j - 6))) for j in range(8)]
    e = jnp.zeros(jnp.shape(safe), jnp.int32)
    low = bounds[1]
    for j in range(1, 7):
        reached = (j <= d - 1) & (safe >= bounds[j])
        e = e + reached.astype(jnp.int32)
        low = jnp.where(reached, bounds[j + 1], low)
    width = jnp.left_shift(1, e + 1)
    frac = safe / low
    pos = (frac - 0.1) / 0.9 * width.astype(jnp.float32) - 0.5
    j = jnp.clip(jnp.floor(pos + u).astype(jnp.int32), 0, width - 1)
    r = width - 1 + j
    smallest = 0.325 * bounds[1]
    largest = 1.0 - 0.45 / jnp.left_shift(1, d).astype(jnp.float32)
    r = jnp.where(a < 0.5 * smallest, 0, r)
    return jnp.where(a > 0.5 * (largest + 1.0), top, r)


def _uniform(shape: tuple[int, ...], seed: jax.Array) -> jax.Array:
    """Uniform values in [0, 1) from a counter-based integer hash of (element index, seed):
    cheap, fused into the quantization loop, and needing no key in the state."""
    x = jax.lax.broadcasted_iota(jnp.uint32, shape, 0) * jnp.uint32(shape[1]) + jax.lax.broadcasted_iota(
        jnp.uint32, shape, 1
    )
    x = x * jnp.uint32(0x9E3779B1) + seed.astype(jnp.uint32) * jnp.uint32(0x85EBCA6B)
    for shift, mult in ((16, 0x7FEB352D), (15, 0x846CA68B)):
        x = (x ^ (x >> shift)) * jnp.uint32(mult)
    x = x ^ (x >> 16)
    return (x >> 8).astype(jnp.float32) * jnp.float32(2.0**-24)


@functools.partial(jax.jit, static_argnums=1)
def _quantize(x: jax.Array, block_size: int, seed: jax.Array | None = None) -> tuple[jax.Array, jax.Array, jax.Array]:
    n = math.prod(x.shape)
    blocks = max(1, -(-n // block_size))
    flat = jnp.ravel(x).astype(jnp.float32)
    flat = jnp.pad(flat, (0, blocks * block_size - n)).reshape(blocks, block_size)
    # A NaN is left out of its block's maximum and minimum (a zero changes neither test), so
    # one NaN costs its own value, not its block's scale. Said here rather than left to XLA,
    # whose reductions propagate a NaN or drop it depending on the version and the backend.
    counted = jnp.where(jnp.isnan(flat), 0.0, flat)
    absmax = jnp.max(jnp.abs(counted), axis=1)
    nonneg = jnp.min(counted, axis=1) >= 0
    scale = jnp.where(absmax > 0, absmax, 1.0)[:, None]
    u = 0.5 if seed is None else _uniform(flat.shape, seed)
    a = jnp.abs(flat) / scale
    r = _encode(jnp.where(nonneg[:, None], jnp.sqrt(a), a), nonneg[:, None], u)
    sign = jnp.where((flat < 0) & ~nonneg[:, None], 128, 0)
    return (r | sign).astype(jnp.uint8), absmax, nonneg


@functools.cache
def decode_table() -> np.ndarray:
    """The signed map, then the squares of the unsigned map: 512 values, indexed by code
    plus 256 for blocks that use the unsigned map (of square roots)."""
    return np.concatenate([dynamic_map(True), dynamic_map(False) ** 2])


@functools.partial(jax.jit, static_argnums=(3, 4))
def _dequantize(codes: jax.Array, absmax: jax.Array, nonneg: jax.Array, shape: tuple[int, ...], dtype: Any) -> jax.Array:
    index = codes.astype(jnp.int32) + jnp.where(nonneg, 256, 0)[:, None]
    values = jnp.take(jnp.asarray(decode_table()), index, mode="clip") * absmax[:, None]
    return values.reshape(-1)[: math.prod(shape)].reshape(shape).astype(dtype)


def quantize(x: jax.Array, block_size: int = 2048, seed: jax.Array | int | None = None) -> QuantizedArray:
    """Encodes a real array in 8 bits per value, block by block.

    Args:
      x: a real floating-point array.
      block_size: values per block (the last block is zero-padded).
      seed: ``None`` rounds to the nearest level; an integer (a step count) rounds
        stochastically, up or down with probabilities that make the rounding unbiased.

    Returns:
      A `QuantizedArray`.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> q = gx.quantize(jnp.array([0.5, -1.0, 0.0]))
      >>> q.codes.dtype.name, [round(v, 2) for v in gx.dequantize(q).tolist()]
      ('uint8', [0.5, -1.0, 0.0])
    """
    _check_not_explicitly_sharded("quantize", "x", x)
    return _quantized(x, block_size, seed)


def _quantized(x: jax.Array, block_size: int, seed: jax.Array | int | None) -> QuantizedArray:
    """`quantize` without its check (the caller has made it, naming what ``x`` is)."""
    codes, absmax, nonneg = _quantize(x, block_size, None if seed is None else jnp.asarray(seed, jnp.int32))
    return QuantizedArray(codes, absmax, nonneg, tuple(x.shape), jnp.dtype(x.dtype))


def _check_not_explicitly_sharded(owner: str, what: str, x: Any) -> None:
    """Blocks run across the whole raveled array, which over ``Explicit`` mesh axes would
    need a layout for the blocks that JAX cannot infer: say so, instead of JAX's
    ``ShardingTypeError`` from inside the encoding."""
    axes = explicit_axes(x)
    if axes:
        raise ValueError(
            f"{owner}: {what} is sharded over the Explicit mesh axes {axes} "
            f"(spec {jax.typeof(x).sharding.spec}). 8-bit block-wise state runs its blocks across the "
            "whole array, which needs axes of type Auto: build the mesh with "
            "axis_types=(jax.sharding.AxisType.Auto, ...)."
        )


def dequantize(q: QuantizedArray) -> jax.Array:
    """Decodes a `QuantizedArray` to an array of its original shape and dtype.

    Args:
      q: from `quantize`.

    Returns:
      The decoded array.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> x = jnp.linspace(-1.0, 1.0, 5000)
      >>> float(jnp.max(jnp.abs(gx.dequantize(gx.quantize(x)) - x))) < 0.01
      True
    """
    return _dequantize(q.codes, q.absmax, q.nonneg, q.shape, q.dtype)


def dynamic_map(signed: bool) -> np.ndarray:
    """The 256 values in [-1, 1] that the codes stand for (code ``i`` at index ``i``).

    A block that uses the unsigned map stores square roots: its values are the squares
    of these times the block's maximum.

    Args:
      signed: the signed map (bit 7 is the sign) or the unsigned one.

    Returns:
      A float32 NumPy array of 256 values.

    Example:
      >>> import gradxform as gx
      >>> m = gx.dynamic_map(signed=False)
      >>> float(m[0]), float(m[255]), bool((m[1:] > m[:-1]).all())
      (0.0, 1.0, True)
    """
    with jax.ensure_compile_time_eval():  # concrete even when first needed inside a trace
        codes = jnp.arange(256, dtype=jnp.int32)
        nonneg = jnp.asarray(not signed)
        r = codes if not signed else codes & 127
        sign = jnp.where((codes >= 128) & signed, -1.0, 1.0)
        return np.asarray(sign * _magnitude(r, nonneg), np.float32)


def _quantizable(x: Any, min_size: int) -> bool:
    # Never a scalar, whatever min_size: counts and hyperparameters must stay float32 scalars
    # for gx.hyperparams and set_hyperparams (and one would take a whole block).
    return (
        hasattr(x, "dtype")
        and jnp.issubdtype(x.dtype, jnp.floating)
        and jnp.ndim(x) > 0
        and math.prod(jnp.shape(x)) >= min_size
    )


def _is_q(x: Any) -> bool:
    return isinstance(x, QuantizedArray)


class QuantizedState(NamedTuple):
    """State of `quantized_state`.

    Attributes:
      count: int32 scalar, steps taken (seeds the stochastic rounding).
      inner_state: the inner transformation's state, large arrays as `QuantizedArray`.
    """

    count: jax.Array
    inner_state: Any


@transformation()
def quantized_state(
    inner: GradientTransformation, block_size: int = 2048, min_size: int = 4096, stochastic_rounding: bool = True
) -> GradientTransformation:
    """Keeps ``inner``'s state in 8 bits per value between steps (block-wise dynamic map).

    Every real floating-point array of the state with at least ``min_size`` elements (the
    moments of large parameters) is stored as a `QuantizedArray`; smaller arrays, counts and
    hyperparameters stay as they are. Each ``update`` decodes the state, runs ``inner`` on
    float32 values and encodes its new state; the updates are ``inner``'s. Around `adam` or
    `adamw`, `update_and_apply` does all three for each block in one pass on a CPU (1.7 to
    3.5 times the time of a float32 Adam step, depending on the core, where XLA takes 8 to
    17 times as long).

    A slowly moving average (Adam's second moment, ``b2 = 0.999``) changes by less than a
    quantization level per step; rounded to the nearest level it would stay stuck, and its
    error would be systematic. Stochastic rounding (the default) makes each step's
    encoding unbiased, so the average drifts as it should.

    Args:
      inner: any transformation (``gx.adam(1e-3)``, ``gx.lion(1e-4)``, ...).
      block_size: values sharing one scale (2048 in the paper).
      min_size: arrays with fewer elements stay unquantized (their cost is negligible and
        small tensors are the most sensitive).
      stochastic_rounding: round stochastically (unbiased) rather than to the nearest level.

    Returns:
      A transformation with `QuantizedState`: Adam's two moments take about
      ``2 + 10 / block_size`` bytes per parameter.

    Raises:
      ValueError: from ``init``, if a state array to quantize is sharded over ``Explicit``
        mesh axes (use ``Auto`` axes: the blocks run across the whole array).

    References:
      Dettmers, Lewis, Shleifer & Zettlemoyer, "8-bit Optimizers via Block-wise
      Quantization", ICLR 2022. https://arxiv.org/abs/2110.02861

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.quantized_state(gx.adam(1e-3))
      >>> state = tx.init(jnp.zeros(8192))
      >>> updates, state = tx.update(jnp.ones(8192), state)
      >>> round(float(updates[0]), 6)
      -0.001
    """
    check_transformation("quantized_state", "inner", inner)
    check_positive_int("quantized_state", "block_size", block_size)
    check_positive_int("quantized_state", "min_size", min_size, minimum=0)

    def encode(state: PyTree, count: jax.Array) -> PyTree:
        paths, treedef = jax.tree_util.tree_flatten_with_path(state)
        out = []
        for i, (path, x) in enumerate(paths):
            if _quantizable(x, min_size):
                _check_not_explicitly_sharded("quantized_state", f"the state leaf {path_str(path)}", x)
                # A distinct stream per leaf and step: the seed mixes both.
                seed = count * 7919 + i if stochastic_rounding else None
                x = _quantized(x, block_size, seed)
            out.append(x)
        return jax.tree.unflatten(treedef, out)

    def decode(state: PyTree) -> PyTree:
        return jax.tree.map(lambda x: dequantize(x) if _is_q(x) else x, state, is_leaf=_is_q)

    def init(params):
        count = new_count()
        return QuantizedState(count, encode(inner.init(params), count))

    def update(updates, state, params=None, **extra):
        updates, new_state = call_update(inner, updates, decode(state.inner_state), params, extra)
        count = safe_increment(state.count)
        return updates, QuantizedState(count, encode(new_state, count))

    return GradientTransformation(init, update)
