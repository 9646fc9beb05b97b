"""The transformation protocol, tree helpers and input validation.

A gradient transformation is a pair of pure functions::

    init(params) -> state
    update(updates, state, params=None, **extra) -> (updates, state)

`GradientTransformation` is a named tuple of those two functions, so it is accepted
wherever Optax's is (``optax.chain`` unpacks it, Flax stores it), and it also carries a
`Spec`: the public name it was built by, its arguments, and the composition it expands to.
Everything the library knows about itself (``describe``, configs, notebook diagrams) is
read from that spec.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import weakref
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

PyTree = Any
Params = PyTree
Updates = PyTree
State = PyTree
InitFn = Callable[[Params], State]
UpdateFn = Callable[..., tuple[Updates, State]]

COUNT_DTYPE = jnp.int32
HYPERPARAM_DTYPE = jnp.float32


# --------------------------------------------------------------------------- protocol


@dataclasses.dataclass(frozen=True)
class Spec:
    """What a transformation is: the public factory that built it and how.

    Attributes:
      name: the public name of the factory (``"adam"``, ``"chain"``, ...).
      args: every argument of the call, defaults included, in signature order.
      body: the transformation the factory expanded to, when it is a composition
        (``adam`` expands to a ``chain``); ``None`` for a leaf primitive.
      hyperparams: names of the arguments that are hyperparameters (data in the state).
    """

    name: str
    args: Mapping[str, Any]
    body: GradientTransformation | None = None
    hyperparams: tuple[str, ...] = ()

    def children(self) -> list[tuple[str, GradientTransformation]]:
        """Transformations given as arguments (a chain's stages, a wrapper's inner)."""
        out: list[tuple[str, GradientTransformation]] = []
        for key, value in self.args.items():
            if is_transformation(value):
                out.append((key, value))
            elif isinstance(value, (tuple, list)):
                for i, v in enumerate(value):
                    if is_transformation(v):
                        out.append((f"{i}", v))
                    elif is_named_pair(v):  # named_chain's (name, transformation) stages
                        out.append((str(v[0]), v[1]))
            elif isinstance(value, Mapping):
                out.extend((f"{k}", v) for k, v in value.items() if is_transformation(v))
        return out


def is_named_pair(value: Any) -> bool:
    """Whether ``value`` is a ``(name, transformation)`` pair, a stage of ``named_chain``."""
    return (
        isinstance(value, (tuple, list))
        and not is_transformation(value)
        and len(value) == 2
        and isinstance(value[0], str)
        and is_transformation(value[1])
    )


class _InitUpdate(NamedTuple):
    init: InitFn
    update: UpdateFn


class GradientTransformation(_InitUpdate):
    """A pair ``(init, update)`` of pure functions, plus a description of itself.

    It unpacks and indexes like Optax's ``GradientTransformation`` so that either library
    accepts the other's transformations. ``spec`` is ``None`` for a transformation made by
    hand from two functions.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.GradientTransformation(lambda p: (), lambda u, s, p=None: (u, s))
      >>> tx.update(jnp.ones(2), tx.init(jnp.ones(2)))[0].tolist()
      [1.0, 1.0]
    """

    spec: Spec | None

    def __new__(cls, init: InitFn, update: UpdateFn, spec: Spec | None = None):
        self = super().__new__(cls, init, update)
        self.spec = spec
        return self

    def __repr__(self) -> str:
        if self.spec is None:
            return "GradientTransformation(<custom>)"
        from gradxform.inspect import describe

        return describe(self)

    def _repr_html_(self) -> str:
        from gradxform.inspect import to_html

        return to_html(self)


class EmptyState(NamedTuple):
    """The state of a transformation that keeps none."""


def is_transformation(value: Any) -> bool:
    """Whether ``value`` looks like a gradient transformation (ours or Optax's)."""
    return (
        isinstance(value, tuple)
        and hasattr(value, "init")
        and hasattr(value, "update")
        and callable(value.init)
        and callable(value.update)
    )


# Keyed weakly by the update function itself: keying by ``id()`` went wrong once a function
# was collected and a foreign one reused its id (seen in CI as a flaky TypeError).
_EXTRA_OK: "weakref.WeakKeyDictionary[Callable[..., Any], bool]" = weakref.WeakKeyDictionary()


def check_transformation(owner: str, what: str, value: Any, call: str = "gx.{owner}({arg})") -> None:
    """Raises ``TypeError`` unless ``value`` is a gradient transformation, naming ``owner``'s
    argument ``what`` and, for the two usual slips, the fix: a factory not yet called (such
    as ``gx.adam``), and an object that only makes one (``MultiSteps``:
    ``.gradient_transformation()``).

    ``call`` shows how ``owner`` takes the argument in the first hint, ``{arg}`` standing
    for it (``named_chain`` takes ``(name, transformation)`` pairs)."""
    if is_transformation(value):
        return
    if callable(value) and hasattr(value, "__gradxform_hyperparams__"):
        example = call.format(owner=owner, arg=f"gx.{value.__name__}(...)")
        raise TypeError(
            f"{owner}: {what} is the factory gx.{value.__name__} itself, not a transformation; "
            f"call it first, as in {example}."
        )
    hint = ""
    if callable(getattr(value, "gradient_transformation", None)):
        owner_of = f"{what}." if what.isidentifier() else "its "
        hint = f"; pass {owner_of}gradient_transformation() to use this {type(value).__name__} here"
    raise TypeError(
        f"{owner}: {what} must be a gradient transformation (such as gx.adam(1e-3) or an Optax "
        f"transformation), got {type(value).__name__}: {value!r}{hint}."
    )


def check_function(owner: str, what: str, value: Any, expected: str) -> None:
    """Raises ``TypeError`` unless ``value`` is a function the user supplies (a measure, a
    condition, a map of the updates): callable, and neither a class nor a transformation or
    anything else with ``init`` and ``update``. The message names ``owner``'s argument
    ``what`` and says what the function should be (``expected``, such as "of the updates")."""
    if not callable(value) or isinstance(value, type) or (hasattr(value, "init") and hasattr(value, "update")):
        raise TypeError(f"{owner}: {what} must be a function {expected}, got {type(value).__name__} {value!r}.")


def _accepts_extra(fn: Callable[..., Any]) -> bool:
    try:
        cached = _EXTRA_OK.get(fn)
    except TypeError:  # not weak-referenceable or not hashable: no caching
        cached = None
    if cached is not None:
        return cached
    try:
        sig = inspect.signature(fn)
        accepts = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    except (TypeError, ValueError):
        accepts = False
    try:
        _EXTRA_OK[fn] = accepts
    except TypeError:
        pass
    return accepts


def call_update(
    tx: GradientTransformation,
    updates: Updates,
    state: State,
    params: Params | None,
    extra: Mapping[str, Any],
) -> tuple[Updates, State]:
    """Calls ``tx.update``, passing extra keyword arguments only if it accepts them.

    Our transformations take ``**extra`` and ignore what they do not use; a foreign one
    (a plain Optax transformation) may not, and then gets none.
    """
    if not extra:
        return tx.update(updates, state, params)
    if _accepts_extra(tx.update):
        return tx.update(updates, state, params, **extra)
    return tx.update(updates, state, params)


def apply_updates(params: Params, updates: Updates) -> Params:
    """Adds ``updates`` to ``params``, keeping each parameter's dtype.

    Args:
      params: the parameters, any pytree of arrays.
      updates: a pytree of the same structure (as returned by a transformation).

    Returns:
      ``params + updates``, leaf by leaf, cast back to each parameter's dtype. ``None``
      leaves in ``updates`` leave the parameter unchanged.

    Raises:
      ValueError: if the two trees differ, naming the differing paths; also where a
        parameter is ``None`` but its update is not (Optax drops such an update silently).

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.apply_updates({"w": jnp.ones(2)}, {"w": jnp.full(2, -0.5)})["w"].tolist()
      [0.5, 0.5]
    """
    check_same_tree(updates, params, "updates", "params", allow_none=True)

    def add(path: tuple[Any, ...], p: Any, u: Any) -> Any:
        if u is None:
            return p
        if p is None:
            raise ValueError(
                f"apply_updates: parameter '{path_str(path)}' is None but its update is an array of shape "
                f"{jnp.shape(u)}; an update for a missing parameter would be lost. Give None in the updates "
                "where the parameters have None (transformations do this when their params have None)."
            )
        return jnp.asarray(p + u).astype(jnp.asarray(p).dtype)

    return jax.tree_util.tree_map_with_path(add, params, updates, is_leaf=lambda x: x is None)


# --------------------------------------------------------------------------- tree helpers


def path_str(path: tuple[Any, ...]) -> str:
    """Renders a JAX key path as ``a/b/0`` (the form used in every error message)."""
    parts = []
    for key in path:
        for attr in ("key", "name", "idx"):
            if hasattr(key, attr):
                parts.append(str(getattr(key, attr)))
                break
        else:
            parts.append(str(key))
    return "/".join(parts) or "<root>"


def tree_paths(tree: PyTree, is_leaf: Callable[[Any], bool] | None = None) -> list[str]:
    """The leaf paths of ``tree`` as strings, in flattening order."""
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_leaf)
    return [path_str(p) for p, _ in leaves]


def _describe_tree_difference(a: PyTree, b: PyTree, is_leaf) -> str:
    pa, pb = set(tree_paths(a, is_leaf)), set(tree_paths(b, is_leaf))
    only_a, only_b = sorted(pa - pb), sorted(pb - pa)
    lines = []
    if only_a:
        lines.append("  only in the first:  " + ", ".join(only_a[:10]) + (" ..." if len(only_a) > 10 else ""))
    if only_b:
        lines.append("  only in the second: " + ", ".join(only_b[:10]) + (" ..." if len(only_b) > 10 else ""))
    if not lines:
        lines.append(f"  same paths, different containers: {jax.tree.structure(a)} vs {jax.tree.structure(b)}")
    return "\n".join(lines)


_SAME_TREE_HINT = (
    "An optimizer's state is built by init(params) for one parameter tree; give update() "
    "gradients of that same tree (or call init again for the new tree)."
)


def check_same_tree(
    tree: PyTree,
    reference: PyTree,
    what: str,
    reference_what: str,
    *,
    allow_none: bool = False,
    shapes: bool = True,
    hint: str = _SAME_TREE_HINT,
) -> None:
    """Raises a readable ``ValueError`` if two trees differ in structure or leaf shapes.

    Runs at trace time only (structure and shapes are static), so it costs nothing in a
    compiled step. ``hint``, the message's last line, says how to fix it where the trees
    come from (by default: an optimizer's state and its gradients).
    """
    is_leaf = (lambda x: x is None) if allow_none else None
    ta = jax.tree.structure(tree, is_leaf=is_leaf)
    tb = jax.tree.structure(reference, is_leaf=is_leaf)
    if ta != tb:
        if allow_none and jax.tree.structure(tree) == jax.tree.structure(reference):
            return
        raise ValueError(
            f"The {what} do not have the tree structure of the {reference_what}.\n"
            f"{_describe_tree_difference(tree, reference, is_leaf)}\n{hint}"
        )
    if not shapes:
        return
    la, _ = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_leaf)
    lb = jax.tree.leaves(reference, is_leaf=is_leaf)
    for (path, x), y in zip(la, lb):
        if x is None or y is None:
            continue
        if jnp.shape(x) != jnp.shape(y):
            raise ValueError(
                f"Parameter '{path_str(path)}' has shape {jnp.shape(x)} in the {what} but "
                f"{jnp.shape(y)} in the {reference_what}."
            )


def find_states(state: Any, cls: type | tuple[type, ...]) -> list[Any]:
    """Every ``cls`` instance (of any of ``cls``, for a tuple) inside a nested optimizer
    state, outermost first.

    Looks through tuples (named or not), lists and mappings (dicts, Flax's FrozenDict and
    nnx State), and inside the instances it finds. Used by the helpers that read one
    stage's state out of a whole optimizer's (``gx.plateau_scale``, ``gx.averaged_params``,
    ``gx.value_and_grad_from_state``).
    """
    found: list[Any] = []

    def walk(node: Any) -> None:
        if isinstance(node, cls):
            found.append(node)
        if isinstance(node, (tuple, list)):
            for child in node:
                walk(child)
        elif isinstance(node, Mapping) or (hasattr(node, "items") and hasattr(node, "keys")):
            for _, child in node.items():
                walk(child)

    walk(state)
    return found


def tree_zeros_like(tree: PyTree, dtype: Any = None) -> PyTree:
    """Zeros shaped like each leaf, in ``dtype`` (default: `state_dtype`'s, the leaf's own
    for a floating-point leaf and float32 for an integer or boolean one), keeping shardings.

    Works on abstract values (``jax.eval_shape``) and keeps each concrete array's sharding,
    so a sharded model never gathers its optimizer state onto one device. It also keeps
    each array's commitment to its devices: a state whose leaves mixed committed and
    uncommitted arrays would make a jitted step compile twice.
    """
    return jax.tree.map(lambda x: jnp.zeros_like(x, dtype=state_dtype(dtype, x)), tree)


def tree_full_like(tree: PyTree, value: float, dtype: Any = None) -> PyTree:
    """Like `tree_zeros_like`, filled with ``value``."""
    return jax.tree.map(lambda z: z + jnp.asarray(value, z.dtype), tree_zeros_like(tree, dtype))


def tree_map_unzip(fn: Callable[..., tuple[Any, ...]], tree: PyTree, *rest: PyTree) -> tuple[PyTree, ...]:
    """Maps ``fn`` over the leaves of ``tree`` and ``rest`` (structured like ``tree``) and,
    ``fn`` returning a tuple of k arrays per leaf, returns the k trees.

    For a stage whose per-leaf step yields its output and new state in one function, so XLA
    sees each leaf's whole step at once.
    """
    treedef = jax.tree.structure(tree)
    flat = [jax.tree.leaves(tree), *(treedef.flatten_up_to(t) for t in rest)]
    results = [fn(*leaves) for leaves in zip(*flat)]
    return tuple(treedef.unflatten(list(column)) for column in zip(*results))


def state_dtype(dtype: Any, like: jax.Array) -> Any:
    """The dtype a state leaf is kept in: ``dtype`` if given, else the parameter's, except
    that the state of an integer or boolean parameter is float32.

    A momentum or a second moment kept in an integer dtype would be truncated every step
    (Adam's would even give NaN updates). Optax starts such state as integers and it turns
    float32 after the first step, changing the state's structure; float32 from the start
    gives the same numbers with one structure."""
    if dtype is not None:
        return jnp.dtype(dtype)
    own = like.dtype if hasattr(like, "dtype") else jnp.asarray(like).dtype
    return own if jnp.issubdtype(own, jnp.inexact) else jnp.dtype(jnp.float32)


NOT_AN_ARRAY = (
    "{owner}: {name} must be a tree of arrays (or numbers), but the leaf at {path} is "
    "{what}. Keep values that are not arrays (names, flags, configuration) out of the "
    "tree given to the optimizer: split them off first (for example with "
    "equinox.partition, or flax's nnx.state(model, nnx.Param))."
)


def _is_number_leaf(x: Any) -> bool:
    if hasattr(x, "dtype"):  # not strings, bytes or objects (float0 gradients are reported elsewhere)
        return getattr(x.dtype, "kind", "") not in ("U", "S", "O")
    return isinstance(x, (int, float, complex)) or hasattr(x, "__jax_array__")


def as_arrays(tree: PyTree, owner: str = "gradxform", name: str = "the tree") -> PyTree:
    """``tree`` with its Python-number leaves (``{"w": 0.5}``, which Optax accepts) made JAX
    arrays, so that every stage can read a leaf's dtype; ``tree`` itself when it has none.

    Raises:
      TypeError: naming ``owner``, the argument ``name`` and the path of the first leaf that
        is neither an array nor a number (a string ``"x"``), which JAX would reject without
        saying where it is.
    """
    leaves = jax.tree.leaves(tree)
    if all(hasattr(x, "dtype") and _is_number_leaf(x) for x in leaves):
        return tree
    for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if not _is_number_leaf(x):
            what = f"an array of dtype {x.dtype}" if hasattr(x, "dtype") else f"{type(x).__name__} {x!r}"
            raise TypeError(NOT_AN_ARRAY.format(owner=owner, name=name, path=path_str(path), what=what))
    return jax.tree.map(lambda x: x if hasattr(x, "dtype") else jnp.asarray(x), tree)


def cast_like(tree: PyTree, reference: PyTree) -> PyTree:
    """Casts each leaf of ``tree`` to the dtype of the matching leaf of ``reference``.

    A leaf of ``reference`` may be a Python number (gradients given as floats, as Optax
    accepts): its dtype is then JAX's default for it.
    """

    def cast(x: Any, r: Any) -> Any:
        if x is None:
            return x
        x = jnp.asarray(x)
        dtype = r.dtype if hasattr(r, "dtype") else jnp.result_type(r)
        return x if x.dtype == dtype else x.astype(dtype)

    return jax.tree.map(cast, tree, reference, is_leaf=lambda x: x is None)


def sharding_type(x: Any) -> Any:
    """The sharding in ``x``'s type (its mesh and partition spec), or ``None``."""
    return getattr(jax.typeof(x), "sharding", None) if hasattr(x, "shape") else None


def explicit_mesh_axes(x: Any) -> frozenset[str]:
    """The axes of ``x``'s mesh that have more than one device and type ``Explicit``
    (``jax.make_mesh``'s default axes, under ``jax.set_mesh``), whether or not ``x`` is
    sharded over them: on such a mesh an array's sharding is part of its type.

    Args:
      x: an array, a tracer or an abstract value.

    Returns:
      The axis names; empty on a single device and for ``Auto`` or ``Manual`` axes.
    """
    mesh = getattr(sharding_type(x), "mesh", None)
    kinds = zip(getattr(mesh, "axis_names", ()), getattr(mesh, "axis_types", ()), getattr(mesh, "axis_sizes", ()))
    return frozenset(name for name, kind, size in kinds if kind == jax.sharding.AxisType.Explicit and size > 1)


def explicit_axes(x: Any) -> tuple[str, ...]:
    """The `explicit_mesh_axes` that ``x`` is sharded over: reshapes across them must say
    where their result goes.

    Args:
      x: an array, a tracer or an abstract value.

    Returns:
      The axis names, in the order of ``x``'s partition spec; ``()`` for an array that is
      not sharded over such axes (a single device, ``Auto`` or ``Manual`` axes).
    """
    spec = getattr(sharding_type(x), "spec", None)
    explicit = explicit_mesh_axes(x)
    if spec is None or not explicit:
        return ()
    used = [a for entry in spec if entry is not None for a in (entry if isinstance(entry, tuple) else (entry,))]
    return tuple(a for a in used if a in explicit)


def safe_increment(count: jax.typing.ArrayLike) -> jax.Array:
    """``count + 1``, saturating at the dtype's maximum instead of wrapping around.

    Step counters use it so that a run longer than the counter's range keeps the last
    step's value (and its schedules' end values) instead of restarting from the minimum.

    Args:
      count: an integer or floating-point counter (array or Python number).

    Returns:
      ``count + 1`` in ``count``'s dtype, or that dtype's largest value once reached.

    Raises:
      ValueError: if ``count`` is neither an integer nor a floating-point number.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> gx.safe_increment(jnp.int32(2**31 - 1)).tolist()
      2147483647
    """
    dtype = jnp.asarray(count).dtype
    if jnp.issubdtype(dtype, jnp.integer):
        top = jnp.iinfo(dtype).max
    elif jnp.issubdtype(dtype, jnp.floating):
        top = jnp.finfo(dtype).max
    else:
        raise ValueError(f"count must be an integer or floating-point counter, got dtype {dtype}.")
    top = jnp.asarray(top, dtype)
    return jnp.where(count < top, count + jnp.asarray(1, dtype), top)


def new_count() -> jax.Array:
    """A fresh step counter (int32 zero)."""
    return jnp.zeros([], COUNT_DTYPE)


def abs_sq(x: jax.Array) -> jax.Array:
    """``|x|**2``, real even for complex ``x``."""
    if jnp.iscomplexobj(x):
        return jnp.real(x * jnp.conj(x))
    return x * x


def is_tracer(value: Any) -> bool:
    return isinstance(value, jax.core.Tracer)


# --------------------------------------------------------------------------- schedules


class Schedule:
    """Base class of schedules whose arguments are data.

    A schedule is any function ``count -> value``. Subclasses of `Schedule` are frozen
    dataclasses that also name, in ``dynamic``, the numeric fields that may change between
    steps without recompiling: the optimizer keeps those in its state.
    """

    dynamic: tuple[str, ...] = ()

    def __call__(self, count: jax.Array) -> jax.Array:
        raise NotImplementedError

    def dynamic_args(self) -> dict[str, Any]:
        """The current values of the fields named in ``dynamic``."""
        return {name: getattr(self, name) for name in self.dynamic}

    def replace(self, **changes: Any) -> Schedule:
        """A copy with some fields changed (used with traced values inside a step)."""
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


def is_schedule(value: Any) -> bool:
    """Whether ``value`` is used as a schedule (a callable that is not a transformation)."""
    return callable(value) and not is_transformation(value) and not isinstance(value, type)


# --------------------------------------------------------------------------- validation


@dataclasses.dataclass(frozen=True)
class Interval:
    """An allowed range for a scalar hyperparameter, for validation and error messages."""

    low: float = -math.inf
    high: float = math.inf
    low_closed: bool = True
    high_closed: bool = True

    def contains(self, x: float) -> bool:
        if math.isnan(x):
            return False
        lo = x >= self.low if self.low_closed else x > self.low
        hi = x <= self.high if self.high_closed else x < self.high
        return lo and hi

    def __str__(self) -> str:
        if self.high == math.inf and self.low == -math.inf:
            return "a finite number"
        if self.high == math.inf:
            return f"{'>=' if self.low_closed else '>'} {self.low:g}"
        if self.low == -math.inf:
            return f"{'<=' if self.high_closed else '<'} {self.high:g}"
        left = "[" if self.low_closed else "("
        right = "]" if self.high_closed else ")"
        return f"in {left}{self.low:g}, {self.high:g}{right}"


REAL = Interval()
NON_NEGATIVE = Interval(0.0)
POSITIVE = Interval(0.0, low_closed=False)
UNIT = Interval(0.0, 1.0, True, False)  # [0, 1): decay rates such as Adam's b1 and b2
UNIT_CLOSED = Interval(0.0, 1.0)  # [0, 1]


def check_hyperparam(owner: str, name: str, value: Any, allowed: Interval) -> None:
    """Validates a scalar hyperparameter eagerly; tracers and schedules pass through.

    Raises:
      ValueError: naming ``owner``'s argument ``name``, its value and what is allowed.
    """
    if value is None or is_tracer(value) or is_schedule(value):
        return
    if isinstance(value, (bool, np.bool_)) or isinstance(value, (str, bytes)):
        raise ValueError(
            f"{owner}: {name} must be a number or a schedule, got {type(value).__name__} {name}={value!r}."
        )
    try:
        x = float(np.asarray(value))
    except (TypeError, ValueError):
        raise ValueError(
            f"{owner}: {name} must be a scalar number or a schedule, got {type(value).__name__} {name}={value!r}."
        ) from None
    if math.isinf(x):
        # Hyperparameters are float32 data that set_hyperparams also keeps finite; an
        # infinite one (a learning rate of inf) only turns the parameters into NaN.
        bound = "" if allowed.low == -math.inf and allowed.high == math.inf else f" and {allowed}"
        raise ValueError(f"{owner}: {name} must be finite{bound}, got {name}={value!r}.")
    if not allowed.contains(x):
        raise ValueError(f"{owner}: {name} must be {allowed}, got {name}={value!r}.")
    with np.errstate(over="ignore"):
        x32 = float(np.float32(x))
    if math.isinf(x32) or not allowed.contains(x32):
        # Hyperparameters are float32 data: b2 = 0.99999999 is stored as 1.0 (a division by
        # zero in the bias correction), 1e39 as inf; a compiled step could not check them.
        raise ValueError(
            f"{owner}: {name}={value!r} is {x32!r} in float32, the dtype hyperparameters are "
            f"kept in; {name} must be {allowed} after that rounding."
        )


def check_number(owner: str, name: str, value: Any, allowed: Interval) -> None:
    """Validates a scalar argument that is a number, never a schedule (``scale_gradient``'s
    ``scale``, ``incremental_update``'s ``step_size``); tracers pass through.

    Raises:
      ValueError: naming ``owner``'s argument ``name`` unless ``value`` is a real number or
        a 0-d array, finite and within ``allowed``.
    """
    if is_tracer(value):
        return
    numeric = isinstance(value, (int, float, np.integer, np.floating)) or (
        isinstance(value, (np.ndarray, jax.Array)) and jnp.issubdtype(value.dtype, jnp.number)
    )
    if isinstance(value, (bool, np.bool_)) or not numeric or jnp.iscomplexobj(value):
        what = "a function" if callable(value) else type(value).__name__
        raise ValueError(f"{owner}: {name} must be a real number, got {what} {name}={value!r}.")
    if np.ndim(value) != 0:
        raise ValueError(f"{owner}: {name} must be a scalar, got an array of shape {np.shape(value)}.")
    check_hyperparam(owner, name, value, allowed)


def check_scalar_value(owner: str, name: str, value: Any, expected: str) -> None:
    """Validates a scalar given to ``update`` as data (a loss given as ``value=``). Its type,
    dtype and shape are static, so tracers are checked too, at no cost under ``jit``.

    Args:
      expected: what the value should be, for the message ("the loss f(params)").

    Raises:
      TypeError: naming ``owner``'s argument ``name`` unless ``value`` is a real number or
        an array of a real numeric dtype (a string such as ``"1.0"`` would otherwise be
        parsed by JAX, or fail deep inside the step).
      ValueError: if ``value`` is not a scalar, naming its shape.
    """
    if isinstance(value, (jax.Array, np.ndarray, np.generic)) or is_tracer(value):
        numeric = jnp.issubdtype(value.dtype, jnp.integer) or jnp.issubdtype(value.dtype, jnp.floating)
    else:
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not numeric:
        what = f"{type(value).__name__} {name}={value!r}"
        if hasattr(value, "dtype"):
            what = f"an array of dtype {value.dtype}"
        raise TypeError(f"{owner}: {name} must be a scalar number or a scalar array of a real dtype ({expected}), got {what}.")
    if np.shape(value) != ():
        raise ValueError(
            f"{owner}: {name} must be a scalar ({expected}), got an array of shape {np.shape(value)}; "
            "reduce it to one number first (for example with .mean())."
        )


def check_state_dtype(owner: str, name: str, value: Any) -> None:
    """Validates the dtype asked for an optimizer's state (``mu_dtype``, ``accumulator_dtype``).

    Raises:
      ValueError: naming ``owner``'s argument ``name`` unless ``value`` is ``None`` or a
        floating-point or complex dtype. An integer moment would truncate every update
        (``1 - b2`` times a small gradient rounds to zero) and yield NaN or no progress.
    """
    if value is None:
        return
    try:
        dtype = jnp.dtype(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"{owner}: {name} must be a dtype such as jnp.float32 or 'bfloat16' (or None for the "
            f"parameters' dtype), got {name}={value!r}."
        ) from None
    if not jnp.issubdtype(dtype, jnp.inexact):
        raise ValueError(
            f"{owner}: {name} must be a floating-point (or complex) dtype, or None for the "
            f"parameters' dtype, got {name}={value!r}."
        )


def mask_bool(owner: str, path: tuple[Any, ...], leaf: Any) -> bool:
    """A leaf of a mask as a bool.

    Raises:
      ValueError: naming ``owner`` and the leaf's path unless the leaf is a boolean (or 0/1,
        as a Python or NumPy scalar). A string such as ``"no_decay"`` (a partition label
        given as a mask) would otherwise be truthy and select its parameters silently.
    """
    value = leaf.item() if isinstance(leaf, (np.ndarray, np.generic, jax.Array)) and np.ndim(leaf) == 0 else leaf
    if isinstance(value, (bool, np.bool_)) or (isinstance(value, (int, np.integer)) and value in (0, 1)):
        return bool(value)
    raise ValueError(
        f"{owner}: the mask at '{path_str(path)}' is {type(value).__name__} {value!r}; a mask holds "
        "booleans (True selects). To give groups of parameters different transformations by "
        "label, use gx.partition (gx.multi_transform)."
    )


def require_params(owner: str, params: Any) -> None:
    """Raises ``ValueError`` if ``params`` is None, for an ``update`` that needs the
    parameters: names ``owner`` and shows the call that passes them."""
    if params is None:
        raise ValueError(f"{owner} needs the parameters: call update(updates, state, params).")


def check_choice(owner: str, name: str, value: Any, choices: tuple[Any, ...]) -> None:
    """Raises ``ValueError`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{owner}: {name} must be one of {choices}, got {name}={value!r}.")


def check_positive_int(owner: str, name: str, value: Any, minimum: int = 1) -> None:
    """Raises ``ValueError`` unless ``value`` is an int >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{owner}: {name} must be an integer >= {minimum}, got {name}={value!r}.")
