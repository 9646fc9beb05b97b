"""Microbatching: evaluate a function on a large batch one slice at a time (``gx.microbatching``).

The namespace of Optax's ``optax.microbatching``. `microbatch` splits the batch arguments of
a function into ``batch_size // microbatch_size`` slices, evaluates the function on each in a
``lax.fori_loop`` (so peak memory is one slice's) and combines the results with an
`Accumulator` (sum, mean, running mean or concatenation). `micro_vmap` is ``jax.vmap`` built
on it, and `micro_grad` computes transformed per-example gradients (clipped, squared, ...)
with it.

Slices are strided, not contiguous: slice ``i`` holds examples ``i, i + n, i + 2n, ...``
(``n`` the number of slices), so a batch axis sharded in contiguous blocks stays sharded
within each slice. Concatenated outputs come back in the original order.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

Function = Callable[..., Any]
TreeFn = Callable[[Any], Any]


@dataclasses.dataclass(frozen=True)
class Accumulator:
    """How `microbatch` combines the results of the slices of a batch.

    For slice results ``x_0 .. x_{n-1}`` the combined result is ``finalize(c)`` where
    ``c = init(shape of x_0)`` and then ``c = update(c, x_i, i)`` for each ``i``.

    Attributes:
      init: ``(shapes) -> carry``, from the ``jax.ShapeDtypeStruct`` tree of one slice's result.
      update: ``(carry, value, index) -> carry``, folds in slice ``index``'s result.
      finalize: ``(carry) -> result``.
      aggregate: ``(values) -> value``, reduces a result with a leading batch axis the same
        way (what `micro_vmap` applies within one slice).

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> biggest = gx.microbatching.Accumulator(
      ...     init=lambda s: jnp.full(s.shape, -jnp.inf, s.dtype),
      ...     update=lambda c, x, i: jnp.maximum(c, x),
      ...     finalize=lambda c: c,
      ...     aggregate=lambda x: jnp.max(x, axis=0))
      >>> f = gx.microbatch(jnp.max, argnums=0, microbatch_size=2, accumulator=biggest)
      >>> float(f(jnp.array([1.0, 5.0, 2.0, 3.0])))
      5.0
    """

    init: TreeFn
    update: Callable[[Any, Any, Any], Any]
    finalize: TreeFn
    aggregate: TreeFn


class AccumulationType(enum.Enum):
    """Built-in ways to combine slice results, usable wherever an `Accumulator` is.

    ``MEAN`` (sum, then divide by the number of slices; floating-point results only), ``SUM``,
    ``RUNNING_MEAN`` (the mean of the slices actually run, see ``num_real_microbatches``;
    floating-point only) and ``CONCAT`` (along axis 0, in the batch's order).

    Example:
      >>> import gradxform as gx
      >>> gx.microbatching.AccumulationType.SUM.name
      'SUM'
    """

    MEAN = enum.auto()
    SUM = enum.auto()
    RUNNING_MEAN = enum.auto()
    CONCAT = enum.auto()


class Aux(NamedTuple):
    """Per-example outputs of a `micro_grad` function, each with a leading batch axis.

    Attributes:
      values: the function's values.
      metrics: ``metrics_fn`` of each example's gradient.
      aux: the function's auxiliary output (``None`` without ``has_aux``).
    """

    values: Any
    metrics: Any
    aux: Any


def _check_size(owner: str, name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{owner}: {name} must be an integer >= 1 or None, got {name}={value!r}.")


def _as_tuple(owner: str, name: str, value: Any, kind: type) -> tuple[Any, ...]:
    items = (value,) if isinstance(value, kind) else tuple(value)
    for item in items:
        if not isinstance(item, kind) or isinstance(item, bool):
            raise ValueError(f"{owner}: {name} must be {kind.__name__}s, got {name}={value!r}.")
    return items


def _batch_size(x: Any, axis: int) -> int:
    shape = jnp.shape(x)
    if not -len(shape) <= axis < len(shape):
        raise ValueError(
            f"microbatch: in_axes={axis} is out of range for a batch argument's leaf of shape {shape}; "
            f"every leaf of a batch argument needs a batch axis there."
        )
    return shape[axis]


def reshape_batch_axis(tree: Any, microbatch_size: int, axis: int = 0) -> Any:
    """Splits the batch axis of every leaf into ``(num_microbatches, microbatch_size)``.

    Slice ``i`` (index ``i`` on the new first axis) holds examples ``i, i + n, i + 2n, ...``
    where ``n = batch_size // microbatch_size``, so a batch axis sharded in contiguous blocks
    keeps its sharding on the new ``microbatch_size`` axis.

    Args:
      tree: a pytree of arrays, each with a batch axis at ``axis``.
      microbatch_size: examples per slice, >= 1, dividing the batch size.
      axis: the batch axis.

    Returns:
      The pytree with each leaf's batch axis replaced by the two new axes.

    Raises:
      ValueError: if ``microbatch_size`` is not an integer >= 1 or does not divide a leaf's
        batch size.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.microbatching.reshape_batch_axis(jnp.arange(6), 2).tolist()
      [[0, 3], [1, 4], [2, 5]]
    """
    _check_size("reshape_batch_axis", "microbatch_size", microbatch_size)

    def split(x):
        x = jnp.asarray(x)
        ax = axis % x.ndim if x.ndim else axis
        size = x.shape[ax]
        if size % microbatch_size:
            raise ValueError(
                f"reshape_batch_axis: the batch size {size} (axis {axis} of an array of shape {x.shape}) "
                f"is not divisible by microbatch_size={microbatch_size}."
            )
        # Row-major split into (microbatch_size, n), then swap: example b goes to slice b % n.
        y = x.reshape(x.shape[:ax] + (microbatch_size, size // microbatch_size) + x.shape[ax + 1 :])
        return jnp.swapaxes(y, ax, ax + 1)

    return jax.tree.map(split, tree)


def _per_leaf(acc: Accumulator) -> Accumulator:
    """An accumulator for one array, applied to every leaf of a subtree."""
    return Accumulator(
        init=lambda v: jax.tree.map(acc.init, v),
        update=lambda c, v, i: jax.tree.map(lambda cc, vv: acc.update(cc, vv, i), c, v),
        finalize=lambda c: jax.tree.map(acc.finalize, c),
        aggregate=lambda v: jax.tree.map(acc.aggregate, v),
    )


def _zeros_checked(kind: str) -> TreeFn:
    def init(shape):
        if not jnp.issubdtype(shape.dtype, jnp.inexact):
            raise ValueError(
                f"AccumulationType.{kind} averages, so it needs floating-point results; got dtype "
                f"{shape.dtype}. Use SUM (or CONCAT) for integer results, or cast them."
            )
        return jnp.zeros(shape.shape, shape.dtype)

    return init


def _builtin(kind: AccumulationType, num_microbatches: int) -> Accumulator:
    if kind is AccumulationType.SUM:
        leaf = Accumulator(
            lambda s: jnp.zeros(s.shape, s.dtype), lambda c, v, i: c + v, lambda c: c, functools.partial(jnp.sum, axis=0)
        )
    elif kind is AccumulationType.MEAN:
        leaf = Accumulator(
            _zeros_checked("MEAN"), lambda c, v, i: c + v, lambda c: c / num_microbatches, functools.partial(jnp.mean, axis=0)
        )
    elif kind is AccumulationType.RUNNING_MEAN:

        def running(c, v, i):
            keep = i / (i + 1)  # weight of the mean so far
            return c * keep + v * (1 - keep)

        leaf = Accumulator(_zeros_checked("RUNNING_MEAN"), running, lambda c: c, functools.partial(jnp.mean, axis=0))
    else:

        def stack_init(s):
            return jnp.zeros((num_microbatches,) + tuple(s.shape), s.dtype)

        def unstack(c):
            # Undo the strided split: (slice i, position j) was example i + n * j.
            return jnp.swapaxes(c, 0, 1).reshape((-1,) + c.shape[2:])

        leaf = Accumulator(stack_init, lambda c, v, i: c.at[i].set(v), unstack, lambda v: v)
    return _per_leaf(leaf)


def _resolve(spec: Any, num_microbatches: int) -> Accumulator:
    """One accumulator from a pytree prefix of `Accumulator` / `AccumulationType` leaves."""

    def one(a):
        if isinstance(a, Accumulator):
            return a
        if isinstance(a, AccumulationType):
            return _builtin(a, num_microbatches)
        raise ValueError(
            f"accumulator leaves must be gx.microbatching.Accumulator or AccumulationType members, got {a!r}."
        )

    accs = jax.tree.map(one, spec)

    def over(method):
        return lambda *trees: jax.tree.map(lambda a, *xs: getattr(a, method)(*xs), accs, *trees)

    return Accumulator(
        init=over("init"),
        update=lambda c, v, i: jax.tree.map(lambda a, cc, vv: a.update(cc, vv, i), accs, c, v),
        finalize=over("finalize"),
        aggregate=over("aggregate"),
    )


def microbatch(
    fun: Function,
    argnums: int | Sequence[int],
    microbatch_size: int | None,
    accumulator: Accumulator | AccumulationType | Any = AccumulationType.SUM,
    *,
    argnames: str | Sequence[str] = (),
    in_axes: int | Sequence[int] = 0,
    num_real_microbatches: int | jax.Array | None = None,
) -> Function:
    """Evaluates ``fun`` one slice of the batch at a time and combines the results.

    The batch arguments (``argnums`` and ``argnames``) are split with `reshape_batch_axis`;
    ``fun`` runs on each slice in a ``lax.fori_loop`` (sequentially: the memory of one
    slice), and the results are combined by ``accumulator``.

    Args:
      fun: any function of arrays.
      argnums: positions of the arguments with a batch axis.
      microbatch_size: examples per slice, >= 1, dividing the batch size; ``None`` returns
        ``fun`` itself.
      accumulator: an `Accumulator` or `AccumulationType`, or a pytree prefix of ``fun``'s
        output with them at its leaves (a different rule per output).
      argnames: names of keyword arguments with a batch axis.
      in_axes: the batch axis of each of ``argnums + argnames`` (one int for all).
      num_real_microbatches: run only this many slices (an int or a traced scalar, so
        that smaller batches padded to one size do not recompile).

    Returns:
      A function with ``fun``'s arguments returning the combined result.

    Raises:
      ValueError: eagerly, for a bad ``microbatch_size``, ``argnums``, ``argnames``,
        ``in_axes`` or ``num_real_microbatches``; when called, if a batch argument's leaf
        has no axis ``in_axes``, the batch arguments' batch sizes differ, are 0 or are not
        divisible by ``microbatch_size``, or an ``AccumulationType.MEAN`` meets integer
        results.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> f = gx.microbatch(lambda x: (x + 1, jnp.sum(x)), argnums=0, microbatch_size=2,
      ...     accumulator=(gx.microbatching.AccumulationType.CONCAT, gx.microbatching.AccumulationType.SUM))
      >>> y, total = f(jnp.array([1.0, 2.0, 3.0, 4.0]))
      >>> y.tolist(), float(total)
      ([2.0, 3.0, 4.0, 5.0], 10.0)
    """
    if microbatch_size is None:
        return fun
    _check_size("microbatch", "microbatch_size", microbatch_size)
    positions = _as_tuple("microbatch", "argnums", argnums, int)
    names = _as_tuple("microbatch", "argnames", argnames, str)
    axes = (in_axes,) * (len(positions) + len(names)) if isinstance(in_axes, int) else tuple(in_axes)
    if len(axes) != len(positions) + len(names):
        raise ValueError(
            f"microbatch: in_axes needs one axis per batch argument (argnums then argnames), "
            f"{len(positions) + len(names)} in all; got in_axes={in_axes!r}."
        )
    if isinstance(num_real_microbatches, int) and (isinstance(num_real_microbatches, bool) or num_real_microbatches < 0):
        raise ValueError(f"microbatch: num_real_microbatches must be >= 0, got num_real_microbatches={num_real_microbatches!r}.")
    pos_axes, name_axes = axes[: len(positions)], axes[len(positions) :]

    def microbatched(*args, **kwargs):
        if positions and max(positions) >= len(args):
            raise ValueError(f"microbatch: argnums={argnums!r} but the function was called with {len(args)} positional arguments.")
        missing = [n for n in names if n not in kwargs]
        if missing:
            raise ValueError(f"microbatch: argnames names {missing}, which the call did not pass.")
        batch = [args[i] for i in positions] + [kwargs[n] for n in names]
        sizes = sorted({_batch_size(x, ax) for ax, tree in zip(axes, batch) for x in jax.tree.leaves(tree)})
        if not sizes:
            raise ValueError("microbatch: the batch arguments hold no arrays, so there is no batch to split.")
        if len(sizes) > 1:
            raise ValueError(f"microbatch: the batch arguments must share one batch size, got sizes {sizes}.")
        batch_size = sizes[0]
        if batch_size == 0:
            raise ValueError("microbatch: the batch is empty (batch size 0), so there is no microbatch to run.")
        if batch_size % microbatch_size:
            raise ValueError(
                f"microbatch: the batch size {batch_size} is not divisible by microbatch_size={microbatch_size}; "
                f"it must split into a whole number of microbatches (divisors of {batch_size} work)."
            )
        n = batch_size // microbatch_size
        if isinstance(num_real_microbatches, int) and num_real_microbatches > n:
            raise ValueError(
                f"microbatch: num_real_microbatches={num_real_microbatches} exceeds the {n} microbatches "
                f"of a batch of {batch_size} with microbatch_size={microbatch_size}."
            )
        split_args = list(args)
        for i, ax in zip(positions, pos_axes):
            split_args[i] = reshape_batch_axis(args[i], microbatch_size, ax)
        split_kwargs = dict(kwargs)
        for name, ax in zip(names, name_axes):
            split_kwargs[name] = reshape_batch_axis(kwargs[name], microbatch_size, ax)
        acc = _resolve(accumulator, n)

        def take(tree, ax, index):
            # The split put (num_microbatches, microbatch_size) where the batch axis was, so a
            # batch axis counted from the end is now one further from the end.
            ax = ax if ax >= 0 else ax - 1
            return jax.tree.map(lambda x: jax.lax.dynamic_index_in_dim(x, index, ax, keepdims=False), tree)

        def on_slice(index):
            a, k = list(split_args), dict(split_kwargs)
            for i, ax in zip(positions, pos_axes):
                a[i] = take(a[i], ax, index)
            for name, ax in zip(names, name_axes):
                k[name] = take(k[name], ax, index)
            return fun(*a, **k)

        carry = acc.init(jax.eval_shape(on_slice, 0))
        stop = n if num_real_microbatches is None else num_real_microbatches
        carry = jax.lax.fori_loop(0, stop, lambda i, c: acc.update(c, on_slice(i), i), carry)
        return acc.finalize(carry)

    return microbatched


def micro_vmap(
    fun: Function,
    in_axes: int | Sequence[int] = 0,
    out_axes: Any = 0,
    *,
    microbatch_size: int | None = None,
    vmap_fn: Callable[[Function, Any, Any], Function] = jax.vmap,
    accumulator: Accumulator | AccumulationType | Any = AccumulationType.CONCAT,
    num_real_microbatches: int | jax.Array | None = None,
) -> Function:
    """``jax.vmap`` over a batch too large to map at once: vmapped slice by slice.

    With the default ``CONCAT`` it returns what ``jax.vmap(fun)`` does; ``SUM`` or ``MEAN``
    reduce over the batch without ever holding all per-example outputs.

    Args:
      fun: the function of one example.
      in_axes: the mapped axis of each positional argument (``None`` for unmapped ones);
        one int maps every positional argument on that axis. Keyword arguments are mapped
        on axis 0.
      out_axes: must be 0.
      microbatch_size: examples vmapped at once, >= 1, dividing the batch size; ``None``
        for the whole batch at once.
      vmap_fn: a function with ``jax.vmap``'s signature, to pass it other options.
      accumulator: what to do with the outputs (see `microbatch`).
      num_real_microbatches: run only this many slices (see `microbatch`).

    Returns:
      The mapped function.

    Raises:
      NotImplementedError: if ``out_axes`` is not 0.
      ValueError: as `microbatch`.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.microbatching.micro_vmap(lambda x: x ** 2, microbatch_size=2)(jnp.arange(4)).tolist()
      [0, 1, 4, 9]
    """
    if out_axes != 0:
        raise NotImplementedError(f"micro_vmap: only out_axes=0 is supported, got out_axes={out_axes!r}.")
    if microbatch_size is not None:
        _check_size("micro_vmap", "microbatch_size", microbatch_size)

    def mapped(*args, **kwargs):
        axes = (in_axes,) * len(args) if isinstance(in_axes, int) else tuple(in_axes)
        axes = axes + (None,) * (len(args) - len(axes))  # trailing arguments unmapped

        def vmapped_and_reduced(*a, kwargs):
            out = vmap_fn(fun, axes, 0)(*a, **kwargs)
            # Only ``aggregate`` is used here, which does not depend on the count.
            return _resolve(accumulator, 1).aggregate(out)

        batched = tuple(i for i, ax in enumerate(axes) if ax is not None)
        run = microbatch(
            vmapped_and_reduced,
            argnums=batched,
            microbatch_size=microbatch_size,
            accumulator=accumulator,
            argnames="kwargs",
            in_axes=tuple(axes[i] for i in batched) + (0,),
            num_real_microbatches=num_real_microbatches,
        )
        return run(*args, kwargs=kwargs)

    return mapped


def micro_grad(
    fun: Function,
    has_aux: bool = False,
    argnums: int | Sequence[int] = 0,
    *,
    batch_argnums: int | Sequence[int] = 1,
    keep_batch_dim: bool = True,
    microbatch_size: int | None = None,
    accumulator: Accumulator | AccumulationType | Any = AccumulationType.SUM,
    transform_fn: Callable[[Any], Any] = lambda g: g,
    metrics_fn: Callable[[Any], Any] = lambda g: None,
    num_real_microbatches: int | jax.Array | None = None,
) -> Callable[..., tuple[Any, Aux]]:
    """Per-example gradients, each transformed, then combined over the batch.

    Each example's gradient ``g`` of ``fun`` is computed (vmapped, ``microbatch_size``
    examples at a time), ``transform_fn(g)`` (a clip, ``(g, g**2)`` for moments, ...) is
    combined over the batch by ``accumulator``, and per-example values, ``metrics_fn(g)``
    and auxiliary outputs are returned alongside.

    Args:
      fun: ``fun(params, batch, ...)`` returning a scalar (and an auxiliary output with
        ``has_aux``).
      has_aux: whether ``fun`` returns ``(value, aux)``.
      argnums: the argument(s) to differentiate.
      batch_argnums: the argument(s) with a batch axis 0.
      keep_batch_dim: give ``fun`` each example with a batch axis of size 1 (as a batch of
        one), or without it.
      microbatch_size: examples at a time (see `micro_vmap`); ``None`` for all at once.
      accumulator: how transformed gradients are combined (see `microbatch`).
      transform_fn: applied to each example's gradient before combining.
      metrics_fn: applied to each example's gradient; kept per example.
      num_real_microbatches: run only this many slices (see `microbatch`).

    Returns:
      A function with ``fun``'s arguments returning ``(combined, aux)``, ``aux`` an `Aux`
      of per-example ``values``, ``metrics`` and ``aux``.

    Raises:
      ValueError: as `microbatch`, and for negative or no ``batch_argnums``.

    References:
      Abadi, Chu, Goodfellow, McMahan, Mironov, Talwar & Zhang, "Deep Learning with
      Differential Privacy", CCS 2016 (per-example clipping). https://arxiv.org/abs/1607.00133

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> loss = lambda w, x, y: 0.5 * jnp.mean((x @ w - y) ** 2)
      >>> g, aux = gx.microbatching.micro_grad(loss, batch_argnums=(1, 2), microbatch_size=2,
      ...     accumulator=gx.microbatching.AccumulationType.MEAN)(
      ...     jnp.zeros(1), jnp.ones((4, 1)), jnp.array([0.0, 2.0, 4.0, 6.0]))
      >>> g.tolist(), aux.values.tolist()
      ([-3.0], [0.0, 2.0, 8.0, 18.0])
    """
    batch_positions = _as_tuple("micro_grad", "batch_argnums", batch_argnums, int)
    if min(batch_positions, default=0) < 0 or not batch_positions:
        raise ValueError(
            f"micro_grad: batch_argnums must be one or more non-negative argument positions, "
            f"got batch_argnums={batch_argnums!r}."
        )
    with_aux = fun if has_aux else (lambda *a, **k: (fun(*a, **k), None))
    value_and_grad = jax.value_and_grad(with_aux, argnums, has_aux=True)

    def one_example(*args, **kwargs):
        (value, aux), grad = value_and_grad(*args, **kwargs)
        return transform_fn(grad), Aux(values=value, metrics=metrics_fn(grad), aux=aux)

    axes = [None] * (max(batch_positions) + 1)
    for i in batch_positions:
        axes[i] = 0
    mapped = micro_vmap(
        one_example,
        in_axes=axes,
        accumulator=(accumulator, AccumulationType.CONCAT),
        microbatch_size=microbatch_size,
        num_real_microbatches=num_real_microbatches,
    )
    if not keep_batch_dim:
        return mapped

    def with_unit_batch(*args, **kwargs):
        a = list(args)
        for i in batch_positions:
            a[i] = jax.tree.map(lambda x: jnp.expand_dims(x, 1), a[i])
        return mapped(*a, **kwargs)

    return with_unit_batch


__all__ = [
    "AccumulationType",
    "Accumulator",
    "Aux",
    "micro_grad",
    "micro_vmap",
    "microbatch",
    "reshape_batch_axis",
]
