"""Bucketed and flat layouts: many small leaves cost what one array costs.

Every leaf of a parameter tree costs a compiled step a fixed amount whatever its size: a
loop of its own in the compiled program (compile time grows with the number of leaves) and
one buffer per state array to hand over at every call. A model's biases and normalisation
scales are many and tiny, so they pay that cost for almost no work.

A `Layout` groups the small leaves of a tree (fewer than ``small_size`` elements) into a
few flat buckets, one per dtype (split past ``bucket_size`` elements), and keeps each large
leaf as it is, so large arrays are never concatenated. ``Layout.pack`` turns a tree into a
`Packed` (the kept leaves and the buckets); ``Layout.unpack`` turns it back.

Two ways to use it:

- ``bucketed(tx)`` wraps any transformation: its state is kept in the packed layout
  (persistent), the small gradients are packed at each step (small copies) and the updates
  unpacked. The API is unchanged: it takes and returns trees shaped like the parameters.
- Keep the parameters themselves packed (``params = layout.pack(params)``) and write the
  loss on ``layout.unpack(params)``: gradients then come out of autodiff already packed and
  any transformation runs on a handful of arrays with no copy at all.

``flat(tx)`` is the layout with every leaf in a bucket (the whole tree as one vector per
dtype), for comparison with `optax.flatten`; prefer `bucketed`, which copies no large leaf.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from gradxform._factory import transformation
from gradxform.core import (
    GradientTransformation,
    PyTree,
    call_update,
    check_positive_int,
    check_same_tree,
    check_transformation,
    explicit_axes,
    path_str,
    sharding_type,
)


class Packed(NamedTuple):
    """A tree in a `Layout`: its large leaves as they are, its small leaves in flat buckets.

    Attributes:
      leaves: the kept (large) leaves, in flattening order.
      buckets: one-dimensional arrays, each the concatenation of some small leaves raveled.
    """

    leaves: tuple[jax.Array, ...]
    buckets: tuple[jax.Array, ...]


@dataclasses.dataclass(frozen=True)
class _Bucket:
    dtype: Any
    members: tuple[int, ...]  # leaf indices
    offsets: tuple[int, ...]
    size: int


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where each leaf of a tree lives in its `Packed` form (static: shapes, not values).

    Build one with `bucket_layout`. ``pack`` and ``unpack`` work under ``jit`` and on
    abstract values; unpacking is slicing and reshaping, which XLA fuses into consumers.
    """

    treedef: Any
    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[Any, ...]
    kept: tuple[int, ...]
    buckets: tuple[_Bucket, ...]

    def pack(self, tree: PyTree) -> Packed:
        """The `Packed` form of ``tree`` (which must have this layout's structure and shapes).

        Large leaves are kept as they are, sharding included. A bucket whose leaves lie on a
        mesh is laid out replicated over that mesh, eagerly and under ``jit``: its leaves may
        be sharded in different ways, or not at all, and left to XLA's sharding propagation
        the bucket would take one leaf's sharding and pass it, through every slice of the
        bucket, on to the other leaves. Small leaves are cheap to replicate.

        Raises:
          ValueError: if the tree's structure or leaf shapes differ from the layout's, or a
            leaf to bucket is sharded over ``Explicit`` mesh axes.
        """
        leaves = self._leaves(tree)
        for b in self.buckets:
            for i in b.members:
                axes = explicit_axes(leaves[i])
                if axes:
                    path = path_str(jax.tree_util.tree_flatten_with_path(tree)[0][i][0])
                    raise ValueError(
                        f"Layout.pack: the small leaf {path} is sharded over the Explicit mesh axes "
                        f"{axes}; a bucket is one array, so its leaves cannot keep their own "
                        "shardings. Build the mesh with Auto axes "
                        "(axis_types=(jax.sharding.AxisType.Auto, ...)), replicate the small "
                        "leaves, or keep them out of buckets (a smaller small_size)."
                    )
        buckets = tuple(
            _replicated(
                jnp.concatenate([jnp.ravel(leaves[i]) for i in b.members])
                if len(b.members) > 1
                else jnp.ravel(leaves[b.members[0]]),
                [leaves[i] for i in b.members],
            )
            for b in self.buckets
        )
        return Packed(tuple(leaves[i] for i in self.kept), buckets)

    def unpack(self, packed: Packed) -> PyTree:
        """The tree that ``packed`` holds, with the original structure and shapes.

        A bucket on a mesh is laid out replicated before it is sliced (see `Layout.pack`),
        so each small leaf's layout is left to the arrays it meets, such as its parameter.
        """
        leaves: list[Any] = [None] * len(self.shapes)
        for j, i in enumerate(self.kept):
            leaves[i] = packed.leaves[j]
        for b, flat in zip(self.buckets, packed.buckets):
            flat = _replicated(flat, [flat])
            for i, off in zip(b.members, b.offsets):
                n = math.prod(self.shapes[i])
                leaves[i] = jax.lax.slice(flat, (off,), (off + n,)).reshape(self.shapes[i])
        return jax.tree.unflatten(self.treedef, leaves)

    def _leaves(self, tree: PyTree) -> list[Any]:
        leaves, treedef = jax.tree.flatten(tree)
        if treedef != self.treedef or tuple(tuple(jnp.shape(x)) for x in leaves) != self.shapes:
            hint = "Build the layout from the same parameter tree (bucket_layout(params))."
            # Names the paths or the leaf whose shape differs.
            layout = jax.tree.unflatten(self.treedef, [jax.ShapeDtypeStruct(s, d) for s, d in zip(self.shapes, self.dtypes)])
            check_same_tree(tree, layout, "arrays given to Layout.pack", "layout", hint=hint)
            raise ValueError(  # should check_same_tree find nothing to name, the difference is still an error
                f"This tree does not have the layout's structure and shapes: layout made for "
                f"{len(self.shapes)} leaves of {self.treedef}, got {len(leaves)} leaves of {treedef}. {hint}"
            )
        return leaves


def _replicated(bucket: jax.Array, members: list[Any]) -> jax.Array:
    """``bucket`` constrained to be replicated over the mesh of the first of ``members``
    that lies on a mesh of several devices; ``bucket`` itself when none does, or when that
    mesh has ``Manual`` axes (inside ``shard_map`` each device holds its own bucket)."""
    for x in members:
        mesh = getattr(sharding_type(x), "mesh", None)
        if mesh is None or math.prod(getattr(mesh, "axis_sizes", ())) <= 1:
            continue
        if jax.sharding.AxisType.Manual in getattr(mesh, "axis_types", ()):
            return bucket
        return jax.lax.with_sharding_constraint(bucket, NamedSharding(mesh, PartitionSpec()))
    return bucket


def bucket_layout(tree: PyTree, small_size: int = 16384, bucket_size: int = 2**24) -> Layout:
    """The layout grouping the leaves of ``tree`` with fewer than ``small_size`` elements
    into flat buckets (one per dtype, at most ``bucket_size`` elements each, except a single
    larger leaf) and keeping larger leaves whole.

    Args:
      tree: a pytree of arrays or of abstract values (only shapes and dtypes are read).
      small_size: leaves with fewer elements are bucketed; ``math.inf`` buckets all.
      bucket_size: the most elements a bucket gathers.

    Returns:
      A `Layout`.

    Raises:
      ValueError: if ``small_size`` or ``bucket_size`` is not a positive integer.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tree = {"w": jnp.zeros((256, 256)), "b": jnp.zeros(256), "scale": jnp.ones(256)}
      >>> layout = gx.bucket_layout(tree)
      >>> packed = layout.pack(tree)
      >>> [x.shape for x in packed.leaves], [x.shape for x in packed.buckets]
      ([(256, 256)], [(512,)])
      >>> layout.unpack(packed)["scale"].shape
      (256,)
    """
    if small_size != math.inf:
        check_positive_int("bucket_layout", "small_size", small_size)
    check_positive_int("bucket_layout", "bucket_size", bucket_size)
    leaves, treedef = jax.tree.flatten(tree)
    shapes = tuple(tuple(int(d) for d in jnp.shape(x)) for x in leaves)
    dtypes = tuple(jnp.dtype(x.dtype) if hasattr(x, "dtype") else jnp.asarray(x).dtype for x in leaves)
    return _layout(treedef, shapes, dtypes, small_size, bucket_size)


@functools.lru_cache(maxsize=256)
def _layout(treedef, shapes, dtypes, small_size, bucket_size) -> Layout:
    kept: list[int] = []
    open_buckets: dict[Any, list[int]] = {}
    closed: list[tuple[Any, list[int]]] = []
    for i, (shape, dtype) in enumerate(zip(shapes, dtypes)):
        n = math.prod(shape)
        if n >= small_size:
            kept.append(i)
            continue
        members = open_buckets.setdefault(dtype, [])
        if members and sum(math.prod(shapes[j]) for j in members) + n > bucket_size:
            closed.append((dtype, members))
            members = open_buckets[dtype] = []
        members.append(i)
    closed.extend(open_buckets.items())
    buckets = []
    for dtype, members in closed:
        sizes = [math.prod(shapes[i]) for i in members]
        offsets = tuple(int(o) for o in np.cumsum([0, *sizes[:-1]]))
        buckets.append(_Bucket(dtype, tuple(members), offsets, sum(sizes)))
    return Layout(treedef, shapes, dtypes, tuple(kept), tuple(buckets))


@transformation()
def bucketed(inner: GradientTransformation, small_size: int = 16384, bucket_size: int = 2**24) -> GradientTransformation:
    """Runs ``inner`` on a bucketed layout: small leaves grouped into flat buckets.

    ``inner``'s state is kept, between steps, in the packed layout of `bucket_layout`: one
    array per bucket instead of one per small leaf, and large leaves as they are. At each
    step the small gradients (and parameters, when given) are concatenated into their
    buckets, ``inner`` runs on the packed tree, and its updates are sliced back into the
    parameters' shapes. Large leaves are never copied. The results equal ``inner``'s for
    any transformation that treats coordinates independently or through global sums
    (Adam, SGD, Lion, global-norm clipping, ...); a transformation that depends on a leaf's
    shape (Adafactor's factored moments) or masks leaves by name sees the buckets as leaves.

    On a mesh with ``Auto`` axes, large leaves and their state keep their sharding, each
    bucket (and its state) is replicated over the mesh, and each small leaf comes out of a
    jitted step with its own sharding. With ``Explicit`` axes, small leaves must not be
    sharded over them (see `Layout.pack`).

    Args:
      inner: the transformation to run.
      small_size: leaves with fewer elements are bucketed.
      bucket_size: the most elements one bucket gathers.

    Returns:
      A transformation taking and returning trees shaped like the parameters; its state is
      ``inner``'s state for the `Packed` tree.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> params = {"w": jnp.ones((128, 128)), "b": jnp.ones(128), "g": jnp.ones(8)}
      >>> tx = gx.bucketed(gx.adam(0.1))
      >>> state = tx.init(params)
      >>> updates, state = tx.update(params, state, params)
      >>> round(float(updates["b"][0]), 4)
      -0.1
    """
    check_transformation("bucketed", "inner", inner)
    if small_size != math.inf:
        check_positive_int("bucketed", "small_size", small_size)
    check_positive_int("bucketed", "bucket_size", bucket_size)

    def init(params):
        layout = bucket_layout(params, small_size, bucket_size)
        return inner.init(layout.pack(params))

    def update(updates, state, params=None, **extra):
        layout = bucket_layout(updates, small_size, bucket_size)
        if params is not None:
            check_same_tree(params, updates, "params", "updates", allow_none=True)
        packed_params = None if params is None else layout.pack(params)
        packed, state = call_update(inner, layout.pack(updates), state, packed_params, extra)
        return layout.unpack(packed), state

    return GradientTransformation(init, update)


@transformation()
def flat(inner: GradientTransformation) -> GradientTransformation:
    """Runs ``inner`` on the whole tree raveled into one vector per dtype (persistent state).

    Every step concatenates all gradients and slices the updates back; `bucketed`, which
    copies only small leaves, is faster on trees with large leaves. Same conditions of
    equality with ``inner`` as `bucketed`. On a mesh the one bucket, and so the whole
    state, is replicated on every device: use `bucketed` for a sharded model.

    Args:
      inner: the transformation to run.

    Returns:
      ``bucketed(inner, small_size=math.inf, bucket_size=2**62)``.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> params = {"w": jnp.ones((4, 4)), "b": jnp.ones(4)}
      >>> tx = gx.flat(gx.sgd(0.1))
      >>> state = tx.init(params)
      >>> tx.update(params, state)[0]["b"].tolist()
      [-0.10000000149011612, -0.10000000149011612, -0.10000000149011612, -0.10000000149011612]
    """
    check_transformation("flat", "inner", inner)
    return bucketed(inner, small_size=math.inf, bucket_size=2**62)


def flatten(inner: GradientTransformation) -> GradientTransformation:
    """Optax's name for `flat`: ``inner`` run on the whole tree raveled into one vector.

    The numbers are ``inner``'s on the tree (and so ``optax.flatten``'s); the state is
    `flat`'s, kept flat between steps instead of rebuilt from the tree at every update.

    Args:
      inner: the transformation to run.

    Returns:
      ``flat(inner)``.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.flatten(gx.sgd(0.5))
      >>> tx.update({"b": jnp.ones(2)}, tx.init({"b": jnp.zeros(2)}))[0]["b"].tolist()
      [-0.5, -0.5]
    """
    return flat(inner)
