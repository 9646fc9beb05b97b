"""`update_and_apply`: one optimizer step, as one pass over memory where a kernel exists."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax.extend import core as jcore

from gradxform._factory import HyperparamsState
from gradxform.core import (
    GradientTransformation,
    Params,
    State,
    Updates,
    call_update,
    check_transformation,
    explicit_mesh_axes,
    find_states,
    safe_increment,
)
from gradxform.kernels._build import ADAM8_STEP, ADAM_STEP, SGD_STEP, SM3_STEP, kernel_status
from gradxform.kernels._noise import sampling
from gradxform.kernels._placed import placed
from gradxform.kernels._program import LEAVES_PER_CALL as _LEAVES_PER_CALL
from gradxform.kernels import _program
from gradxform.kernels._program import differentiated, plain_step, program_step
from gradxform.primitives.factored import Sm3State
from gradxform.primitives.moments import CountState, EmaState, TraceState, debias
from gradxform.wrappers.quantized import QuantizedArray, QuantizedState, decode_table

# Leaves per call of Adam's and SGD's kernels. Each call ends by waiting for every thread's
# last unit of work, so fewer calls leave the threads idle less often: inside a training
# step the 400-leaf tree's Adam step measured 1.15x the one-array step at 32 leaves a call,
# 1.09 to 1.11x at 64 and 1.05x at 400. XLA's fusion pass compares every operand of a call
# with every in-place result, so compiling grows faster than the operands: the tree's step
# compiled in 0.33 s at 32, 0.38 s at 64, 0.63 s at 128 and 2.6 s at 400.
KERNEL_LEAVES_PER_CALL = 64


def update_and_apply(
    tx: GradientTransformation,
    grads: Updates,
    state: State,
    params: Params,
    *,
    kernel: bool = True,
    **extra: Any,
) -> tuple[Params, State]:
    """One optimizer step: ``tx.update`` followed by `apply_updates`, in one pass on a CPU.

    XLA:CPU compiles an optimizer step to one loop per updated array, so Adam reads its
    gradients three times. Here, under ``jit`` with float32 parameters on a CPU, the step
    reads and writes each array once:

    - `adam`, `adamw` and `sgd` with momentum run a hand-written kernel, and so does `sm3`
      for leaves of rank 2 at most (it also takes the row and column maxima in that pass,
      where XLA reads the gradients three times);
    - any other step (ours or Optax's, alone or in a chain) is traced, and its per-leaf
      elementwise part becomes one small program per kind of leaf, compiled once to a C++
      loop (and cached on disk) and run for all the leaves in a few calls. Counts,
      schedules, norms, random numbers and other work across elements stay with XLA;
    - `quantized_state` around `adam` or `adamw` decodes, steps and encodes each block of
      both 8-bit moments in one pass, where XLA moves every moment through memory several
      times (the codes are the ones XLA would write);
    - `add_noise` (and so `noisy_sgd`) samples its Gaussian noise in a kernel that adds it
      to the gradients in the same pass, where XLA evaluates Threefry as a loop over whole
      arrays; the samples are ``jax.random.normal``'s up to the last bits.

    The numbers are the composition's, operation for operation, up to float32 rounding; the
    state is the one ``tx.update`` returns, so checkpoints, `hyperparams`, `set_hyperparams`
    and schedules work unchanged, and a run may switch between this and ``tx.update`` at any
    step. On other devices, for other dtypes, without ``jit``, for a step with no per-leaf
    float32 part that reads only its arguments, or when the kernels could not be built (see
    `kernel_status`), it is exactly ``tx.update`` then `apply_updates`.

    Jit the step and donate the parameters and the state (``donate_argnums``), so the
    kernels update them in place. Whether the kernels run is decided when XLA's program is
    built: a step lowered for a GPU or TPU (also from a CPU host, by ``jax.export`` or an
    ahead-of-time compile) is the plain composition, and so is a step that XLA splits over
    several devices (``jit`` with sharded arrays, or arrays on a mesh with ``Explicit``
    axes), which keeps its parameters' sharding;
    inside ``shard_map`` the kernels run on each device's shards. The kernels have no
    derivative, so a step that is being differentiated (``jax.grad`` through it, for
    meta-learning, also through an already-jitted step) has the plain composition's
    derivative.

    Args:
      tx: the optimizer (any gradient transformation, ours or Optax's).
      grads: gradients, a tree shaped like ``params``.
      state: ``tx``'s state.
      params: the current parameters.
      kernel: ``False`` forces the plain path (for comparisons).
      **extra: passed on to ``tx.update`` (for example ``value=`` for line searches).

    Returns:
      ``(new_params, new_state)``.

    Raises:
      TypeError: if ``tx`` is not a gradient transformation.
      ValueError: if ``params`` is None, or the trees do not match.

    References:
      Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.
      https://arxiv.org/abs/1412.6980
      Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019.
      https://arxiv.org/abs/1711.05101
      Dettmers, Lewis, Shleifer & Zettlemoyer, "8-bit Optimizers via Block-wise
      Quantization", ICLR 2022. https://arxiv.org/abs/2110.02861
      Anil, Gupta, Koren & Singer, "Memory-Efficient Adaptive Optimization", NeurIPS 2019.
      https://arxiv.org/abs/1901.11150
      Sutskever, Martens, Dahl & Hinton, "On the importance of initialization and momentum
      in deep learning", ICML 2013. https://proceedings.mlr.press/v28/sutskever13.html

    Example:
      >>> import gradxform as gx, jax, jax.numpy as jnp
      >>> tx = gx.adam(0.1)
      >>> p = {"w": jnp.array([1.0, -1.0])}
      >>> step = jax.jit(lambda g, s, p: gx.update_and_apply(tx, g, s, p), donate_argnums=(1, 2))
      >>> p, s = step({"w": jnp.array([2.0, -2.0])}, tx.init(p), p)
      >>> [round(x, 4) for x in p["w"].tolist()]
      [0.9, -0.9]
    """
    check_transformation("update_and_apply", "tx", tx)
    if params is None:
        raise ValueError(
            "update_and_apply: params is None, but the step returns the updated parameters: pass "
            "the parameter tree (the one init() was called with), as update_and_apply(tx, grads, state, params)."
        )

    if not kernel or differentiated(grads, state, params, extra):
        return plain_step(tx, grads, state, params, extra)
    leaves, tree = jax.tree.flatten((grads, state, params, extra))
    traced = [i for i, x in enumerate(leaves) if isinstance(x, jax.core.Tracer)]
    if not traced:  # eagerly, the plain composition is as fast
        return plain_step(tx, grads, state, params, extra)
    if any(_explicitly_split(leaves[i]) for i in traced):
        return plain_step(tx, grads, state, params, extra)
    # On a CPU host the kernels' step is traced now and the plain composition only if the
    # step is lowered for another platform. Where the default device is an accelerator, it
    # is the other way round, and the CPU kernels are not even built unless a CPU asks.
    on_accelerator = _accelerator_by_default()
    if not on_accelerator and kernel_status():
        return plain_step(tx, grads, state, params, extra)

    def rebuild(operands: tuple[Any, ...]) -> tuple[Updates, State, Params, dict[str, Any]]:
        values = list(leaves)
        for i, x in zip(traced, operands):
            values[i] = x
        return tree.unflatten(values)

    out_trees = []

    def flat(out: tuple[Params, State]) -> list[Any]:
        values, out_tree = jax.tree.flatten(out)
        out_trees.append(out_tree)
        return values

    def fused_flat(*operands: Any) -> list[Any]:
        return flat(_kernels_step(tx, *rebuild(operands)))

    def plain_flat(*operands: Any) -> list[Any]:
        return flat(plain_step(tx, *rebuild(operands)))

    operands = [leaves[i] for i in traced]
    first = jax.make_jaxpr(plain_flat if on_accelerator else fused_flat)(*operands)
    out_tree = out_trees[-1]
    if first.effects or any(isinstance(c, jax.core.Tracer) for c in first.consts):
        # The step has effects (a callback, a verbose line search's print) or closes over
        # traced values (a hyperparameter given as a tracer, perhaps being differentiated),
        # so it is not traced again later. Where the default device is an accelerator it is
        # the plain composition (no kernels are built for it); otherwise both branches are
        # traced now, and the values they close over become operands.
        if on_accelerator:
            return out_tree.unflatten(jcore.jaxpr_as_fun(first)(*operands))
        fused, plain, operands = _with_consts_as_operands(first, jax.make_jaxpr(plain_flat)(*operands), operands)
        return out_tree.unflatten(placed(fused, plain, operands))
    if on_accelerator:
        return out_tree.unflatten(placed(fused_flat, first, operands))
    if not _has_kernel(first.jaxpr):
        return out_tree.unflatten(jcore.jaxpr_as_fun(first)(*operands))
    return out_tree.unflatten(placed(first, plain_flat, operands))


def _with_consts_as_operands(
    fused: jcore.ClosedJaxpr, plain: jcore.ClosedJaxpr, operands: list[Any]
) -> tuple[jcore.ClosedJaxpr, jcore.ClosedJaxpr, list[Any]]:
    """The two branches as closed jaxprs of one operand list: ``operands``, then ``fused``'s
    constants, then ``plain``'s (so traced constants are passed, not captured)."""
    n, n_fused = len(operands), len(fused.consts)
    everything = [*operands, *fused.consts, *plain.consts]

    def over_everything(branch: jcore.ClosedJaxpr, lo: int) -> jcore.ClosedJaxpr:
        jaxpr = branch.jaxpr
        open_branch = jcore.ClosedJaxpr(jaxpr.replace(constvars=[], invars=[*jaxpr.constvars, *jaxpr.invars]), ())

        def call(*xs: Any) -> list[Any]:
            return jcore.jaxpr_as_fun(open_branch)(*xs[lo : lo + len(branch.consts)], *xs[:n])

        return jax.make_jaxpr(call)(*everything)

    return over_everything(fused, n), over_everything(plain, n + n_fused), everything


def _explicitly_split(x: Any) -> bool:
    """Whether ``x`` is traced over a mesh with an ``Explicit`` axis of more than one device
    that is not manual (``jax.sharding.AxisType.Explicit``, ``jax.set_mesh``).

    There the shardings are part of the arrays' types while the step is traced, and the
    program is split over devices, so it would take the composition at lowering anyway; but
    the primitive's result types come from the trace of the kernels' step, whose custom
    calls return unsharded types, so the parameters and state came back replicated on every
    device. Such a step is the composition from the start, with the composition's types.
    Inside ``shard_map`` the mesh axes are ``Manual`` and the kernels still run.
    """
    return bool(explicit_mesh_axes(x))


def _accelerator_by_default() -> bool:
    """Whether this process's default device is not a CPU (a GPU or TPU host)."""
    return jax.default_backend() != "cpu"


def _kernels_step(
    tx: GradientTransformation, grads: Updates, state: State, params: Params, extra: dict[str, Any]
) -> tuple[Params, State]:
    """The step with every kernel that applies (the plain composition where none does, or
    where the kernels could not be built)."""
    if kernel_status():
        return plain_step(tx, grads, state, params, extra)
    # `add_noise` samples its noise in a kernel while this step is traced, on either path.
    with sampling(True):
        step = (
            _kernel_step(tx, grads, state, params, extra)
            or _sm3_step(tx, grads, state, params, extra)
            or _quantized_adam_step(tx, grads, state, params, extra)
            or program_step(tx, grads, state, params, extra)
        )
        return step() if step is not None else plain_step(tx, grads, state, params, extra)


def _has_kernel(jaxpr: jcore.Jaxpr) -> bool:
    """Whether ``jaxpr`` calls one of the kernels (an FFI call), at any depth."""
    return any(eqn.primitive.name == "ffi_call" for eqn in jaxpr.eqns) or any(
        _has_kernel(sub) for sub in jcore.subjaxprs(jaxpr)
    )


def _is_f32_array(x: Any) -> bool:
    return hasattr(x, "dtype") and hasattr(x, "shape") and jnp.dtype(x.dtype) == jnp.float32


def _f32_or_default(args: dict[str, Any], *names: str) -> bool:
    return all(args.get(n) is None or jnp.dtype(args[n]) == jnp.float32 for n in names)


class _Kernel(NamedTuple):
    """How one factory's step maps onto a kernel.

    Attributes:
      target: the FFI target.
      node: the state class holding the per-parameter arrays (``slots`` of them, in the
        order the kernel takes them).
      slots: how many such arrays each parameter has.
      applies: whether the factory's arguments give the kernel's arithmetic.
      scalars: the kernel's scalar operand, from the state after the step and the arguments.
      needs: the hyperparameters ``scalars`` reads from the state (a value given as a tracer
        when the optimizer was built is a constant of the step instead, not state).
      floor: the `_program` size (its name) below which a leaf stays with XLA.
      xla: the kernel's arithmetic for one leaf with XLA's operations, for the leaves under
        ``floor``: ``(scalars, args, parameters, gradients, *slots) -> (parameters, *slots)``,
        where ``scalars`` are the elements of the kernel's scalar operand.
    """

    target: str
    node: type
    slots: int
    applies: Callable[[dict[str, Any]], bool]
    scalars: Callable[[HyperparamsState, dict[str, Any]], list[jax.Array]]
    needs: tuple[str, ...]
    floor: str
    xla: Callable[..., tuple[jax.Array, ...]]


def _adam_scalars(after: HyperparamsState, args: dict[str, Any]) -> list[jax.Array]:
    hp = after.hyperparams
    t1, t2 = (c.count for c in find_states(after.inner_state, CountState))
    wd = hp.get("weight_decay", jnp.zeros([], jnp.float32))
    return [hp["learning_rate"], hp["b1"], hp["b2"], hp["eps"], hp["eps_root"], wd, debias(hp["b1"], t1), debias(hp["b2"], t2)]


def _adam_xla(s: list[jax.Array], args: dict[str, Any], p: jax.Array, g: jax.Array, m: jax.Array, v: jax.Array) -> tuple[jax.Array, ...]:
    """``gradxform_adam_step`` for one leaf (see steps.cc), in the composition's order."""
    lr, b1, b2, eps, eps_root, wd, bc1, bc2 = s
    m = (1 - b1) * g + b1 * m
    v = (1 - b2) * (g * g) + b2 * v
    r = (m / bc1) / (jnp.sqrt(v / bc2 + eps_root) + eps)
    if "weight_decay" in args:  # adamw; adam's kernel adds 0 * p, which XLA need not read
        r = r + wd * p
    return p + (-lr) * r, m, v


def _sgd_scalars(after: HyperparamsState, args: dict[str, Any]) -> list[jax.Array]:
    hp = after.hyperparams
    return [hp["learning_rate"], hp["momentum"], jnp.asarray(float(bool(args["nesterov"])))]


def _sgd_xla(s: list[jax.Array], args: dict[str, Any], p: jax.Array, g: jax.Array, t: jax.Array) -> tuple[jax.Array, ...]:
    """``gradxform_sgd_step`` for one leaf (see steps.cc), in the composition's order."""
    lr, mu = s[0], s[1]
    t = g + mu * t
    d = g + mu * t if args["nesterov"] else t
    return p + d * (-lr), t


_ADAM = _Kernel(
    ADAM_STEP,
    EmaState,
    2,
    lambda a: not a.get("nesterov") and a.get("mask") is None and _f32_or_default(a, "mu_dtype", "nu_dtype"),
    _adam_scalars,
    ("learning_rate", "b1", "b2", "eps", "eps_root"),
    "TINY_LEAF",
    _adam_xla,
)
_KERNELS: dict[str, _Kernel] = {
    "adam": _ADAM,
    "adamw": _ADAM,
    "sgd": _Kernel(
        SGD_STEP,
        TraceState,
        1,
        lambda a: a.get("momentum") is not None and _f32_or_default(a, "accumulator_dtype"),
        _sgd_scalars,
        ("learning_rate", "momentum"),
        "KERNEL_MIN_LEAF",
        _sgd_xla,
    ),
}


def _kernel_step(
    tx: GradientTransformation, grads: Updates, state: State, params: Params, extra: dict[str, Any]
) -> Callable[[], tuple[Params, State]] | None:
    """The kernel's step as a thunk, or None where no kernel applies."""
    spec = getattr(tx, "spec", None)
    kern = _KERNELS.get(spec.name) if spec is not None else None
    if kern is None or not isinstance(state, HyperparamsState) or not kern.applies(spec.args):
        return None
    if not all(name in state.hyperparams for name in kern.needs):
        return None  # the generic programs take the step
    nodes = find_states(state.inner_state, kern.node)
    if len(nodes) != kern.slots:
        return None
    p_leaves, treedef = jax.tree.flatten(params)
    try:
        columns = [p_leaves, treedef.flatten_up_to(grads), *(treedef.flatten_up_to(n[0]) for n in nodes)]
    except (ValueError, TypeError):
        return None  # the plain path reports the mismatch with its paths
    if not p_leaves:
        return None
    for row in zip(*columns):
        if not all(_is_f32_array(x) and x.shape == row[0].shape for x in row):
            return None

    def fused() -> tuple[Params, State]:
        after = _scalar_part(tx, state, kern.node, kern.slots, extra)
        scalars = jnp.stack(kern.scalars(after, spec.args)).astype(jnp.float32)
        if differentiated(scalars):  # through a hyperparameter ``tx`` closes over
            return plain_step(tx, grads, state, params, extra)
        # Small leaves stay with XLA, where they measured faster (`KERNEL_MIN_LEAF` for SGD's
        # kernel, `TINY_LEAF` for Adam's).
        floor = getattr(_program, kern.floor)
        big = [i for i, p in enumerate(p_leaves) if p.size >= floor]
        tiny = [i for i, p in enumerate(p_leaves) if p.size < floor]
        new_columns: list[list[Any]] = [[None] * len(p_leaves) for _ in range(1 + kern.slots)]
        if big:
            # The parameters, then each state slot; the gradients (operand column 1) are only read.
            updated = [0, *range(2, 2 + kern.slots)]
            picked = [[col[i] for i in big] for col in columns]
            calls = _call_in_groups(kern.target, scalars, picked, updated, per_call=KERNEL_LEAVES_PER_CALL)
            for new_col, col in zip(new_columns, calls):
                for i, x in zip(big, col):
                    new_col[i] = x
        if tiny:
            # XLA's loops take the scalars as one array behind a barrier, which XLA cannot
            # take apart again: each small leaf's loops then read one operand for all of
            # them instead of one per hyperparameter. On a leaf this small, XLA:CPU's cost
            # per operand of a loop is much of the leaf's cost (`TINY_LEAF`).
            shared = jax.lax.optimization_barrier(scalars)
            shared = [shared[k] for k in range(shared.shape[0])]
            for i in tiny:
                for new_col, x in zip(new_columns, kern.xla(shared, spec.args, *(col[i] for col in columns))):
                    new_col[i] = x
        new_p, *new_slots = (treedef.unflatten(col) for col in new_columns)
        return new_p, _with_nodes(after, kern.node, new_slots)

    return fused


def _sm3_step(
    tx: GradientTransformation, grads: Updates, state: State, params: Params, extra: dict[str, Any]
) -> Callable[[], tuple[Params, State]] | None:
    """`sm3`'s step as a thunk (one pass that also takes the row and column maxima), or None
    where its kernel does not apply: another optimizer, a leaf of rank 3 or more, a dtype
    other than float32."""
    spec = getattr(tx, "spec", None)
    if spec is None or spec.name != "sm3" or not isinstance(state, HyperparamsState):
        return None
    accumulator = _find_spec(tx, "sm3_accumulator")
    if accumulator is None or not all(n in state.hyperparams for n in ("learning_rate", "momentum")):
        return None
    sm3_nodes, ema_nodes = find_states(state.inner_state, Sm3State), find_states(state.inner_state, EmaState)
    if len(sm3_nodes) != 1 or len(ema_nodes) != 1:
        return None
    p_leaves, treedef = jax.tree.flatten(params)
    try:
        g_leaves = treedef.flatten_up_to(grads)
        m_leaves = treedef.flatten_up_to(ema_nodes[0].ema)
        accs = treedef.flatten_up_to(sm3_nodes[0].mu)
    except (ValueError, TypeError):
        return None
    if not p_leaves:
        return None
    for p, g, m, a in zip(p_leaves, g_leaves, m_leaves, accs):
        if p.ndim > 2 or not all(_is_f32_array(x) and x.shape == p.shape for x in (p, g, m)):
            return None
        want = [(p.shape[0],), (p.shape[1],)] if p.ndim == 2 else [p.shape]
        if not isinstance(a, (list, tuple)) or [getattr(x, "shape", None) for x in a] != want:
            return None
        if not all(_is_f32_array(x) for x in a):
            return None

    def fused() -> tuple[Params, State]:
        nothing = jnp.zeros((0,), jnp.float32)
        shadow = _with_nodes(_with_nodes(state, Sm3State, [[nothing]]), EmaState, [nothing])
        _, after = call_update(tx, nothing, shadow, nothing, extra)
        hp = after.hyperparams
        b1 = jnp.asarray(hp["momentum"], jnp.float32)
        b2 = jnp.asarray(accumulator.args["b2"], jnp.float32)
        # The composition's arithmetic, rounded the same way (see sm3_accumulator and ema).
        cg = jnp.where(b2 == 1.0, jnp.float32(1.0), 1.0 - b2)
        eps = jnp.asarray(accumulator.args["eps"], jnp.float32)
        neg_lr = jnp.float32(-1.0) * jnp.asarray(hp["learning_rate"], jnp.float32)
        scalars = jnp.stack([cg, b2, eps, 1.0 - b1, b1, neg_lr]).astype(jnp.float32)
        if differentiated(scalars):
            return plain_step(tx, grads, state, params, extra)
        # A vector (or scalar) leaf is one row to the kernel, whose accumulator is the
        # column accumulator; its row accumulator (+inf, a constant whose result is dropped)
        # leaves every bound to the columns.
        rows = [a[0] if p.ndim == 2 else jnp.full((1,), jnp.inf, jnp.float32) for p, a in zip(p_leaves, accs)]
        cols = [a[1] if p.ndim == 2 else a[0] for p, a in zip(p_leaves, accs)]
        columns = [p_leaves, g_leaves, m_leaves, rows, cols]
        updated = [0, 2, 3, 4]  # parameters, momenta, row and column accumulators
        in_place = lambda column, leaf: column != 3 or p_leaves[leaf].ndim == 2
        new_p, new_m, new_r, new_c = _call_in_groups(SM3_STEP, scalars, columns, updated, in_place)
        new_accs = [[r, c] if p.ndim == 2 else [c] for r, c, p in zip(new_r, new_c, p_leaves)]
        new_state = _with_nodes(_with_nodes(after, Sm3State, [treedef.unflatten(new_accs)]), EmaState, [treedef.unflatten(new_m)])
        return treedef.unflatten(new_p), new_state

    return fused


def _quantized_adam_step(
    tx: GradientTransformation, grads: Updates, state: State, params: Params, extra: dict[str, Any]
) -> Callable[[], tuple[Params, State]] | None:
    """`quantized_state` around `adam` or `adamw` as a thunk: each block of both 8-bit moments
    is decoded, stepped and encoded in one pass (``adam8.h``); leaves whose moments are too
    small to be quantized take Adam's kernel. None where this does not apply."""
    spec = getattr(tx, "spec", None)
    if spec is None or spec.name != "quantized_state" or not isinstance(state, QuantizedState):
        return None
    inner = spec.args["inner"]
    inner_spec = getattr(inner, "spec", None)
    inner_state = state.inner_state
    if inner_spec is None or _KERNELS.get(inner_spec.name) is not _ADAM or not _ADAM.applies(inner_spec.args):
        return None
    if not isinstance(inner_state, HyperparamsState) or not all(n in inner_state.hyperparams for n in _ADAM.needs):
        return None
    nodes = find_states(inner_state.inner_state, EmaState)
    if len(nodes) != 2:
        return None
    p_leaves, treedef = jax.tree.flatten(params)
    try:
        columns = [p_leaves, treedef.flatten_up_to(grads), *(treedef.flatten_up_to(n.ema) for n in nodes)]
    except (ValueError, TypeError):
        return None
    if not p_leaves:
        return None
    for p, g, m, v in zip(*columns):
        if not (_is_f32_array(p) and _is_f32_array(g) and g.shape == p.shape):
            return None
        moments = [x for x in (m, v) if isinstance(x, QuantizedArray)]
        if len(moments) == 1:
            return None
        for x in moments or (m, v):
            plain = not isinstance(x, QuantizedArray)
            if (x.shape != p.shape) or (jnp.dtype(x.dtype) != jnp.float32) or (plain and not _is_f32_array(x)):
                return None
        if moments and moments[0].codes.shape != moments[1].codes.shape:
            return None

    def fused() -> tuple[Params, State]:
        after = _scalar_part(inner, inner_state, EmaState, 2, extra)
        scalars = jnp.stack(_adam_scalars(after, inner_spec.args)).astype(jnp.float32)
        if differentiated(scalars):
            return plain_step(tx, grads, state, params, extra)
        count = safe_increment(state.count)
        # quantized_state seeds each array's rounding with its position among the inner
        # state's leaves and the step: the same positions, read off the state's structure.
        arrays, structure = jax.tree.flatten(inner_state, is_leaf=lambda x: isinstance(x, QuantizedArray))
        positions = structure.unflatten(range(len(arrays)))
        m_at, v_at = (treedef.flatten_up_to(n.ema) for n in find_states(positions, EmaState))
        quantized = [i for i, m in enumerate(columns[2]) if isinstance(m, QuantizedArray)]
        rest = [i for i, m in enumerate(columns[2]) if not isinstance(m, QuantizedArray)]
        new_p: list[Any] = [None] * len(p_leaves)
        new_m: list[Any] = [None] * len(p_leaves)
        new_v: list[Any] = [None] * len(p_leaves)
        if quantized:
            stochastic = jnp.float32(1.0 if spec.args["stochastic_rounding"] else 0.0)
            head = jnp.concatenate([scalars, jnp.asarray(decode_table()), stochastic[None]])
            seed = lambda at: (count * 7919 + at).astype(jnp.uint32)  # noqa: E731
            qcols = [[p_leaves[i] for i in quantized], [columns[1][i] for i in quantized]]
            for slot in (2, 3):
                qs = [columns[slot][i] for i in quantized]
                qcols += [[q.codes for q in qs], [q.absmax for q in qs], [q.nonneg for q in qs]]
            qcols.append([jnp.stack([seed(m_at[i]), seed(v_at[i])]) for i in quantized])
            out = _call_in_groups(ADAM8_STEP, head, qcols, [0, 2, 3, 4, 5, 6, 7])
            for k, i in enumerate(quantized):
                new_p[i] = out[0][k]
                old_m, old_v = columns[2][i], columns[3][i]
                new_m[i] = QuantizedArray(out[1][k], out[2][k], out[3][k], old_m.shape, old_m.dtype)
                new_v[i] = QuantizedArray(out[4][k], out[5][k], out[6][k], old_v.shape, old_v.dtype)
        if rest:
            out = _call_in_groups(ADAM_STEP, scalars, [[c[i] for i in rest] for c in columns], [0, 2, 3])
            for k, i in enumerate(rest):
                new_p[i], new_m[i], new_v[i] = out[0][k], out[1][k], out[2][k]
        new_inner = _with_nodes(after, EmaState, [treedef.unflatten(new_m), treedef.unflatten(new_v)])
        return treedef.unflatten(new_p), QuantizedState(count, new_inner)

    return fused


def _scalar_part(tx: GradientTransformation, state: Any, node: type, slots: int, extra: dict[str, Any]) -> Any:
    """The state ``tx.update`` returns when every ``node`` holds one empty array in place of
    its per-parameter arrays. Its counts, hyperparameters and schedules are the step's: they
    do not depend on the tree, cost nothing to compute this way, and cannot drift from what
    ``tx.update`` does."""
    nothing = jnp.zeros((0,), jnp.float32)
    _, after = call_update(tx, nothing, _with_nodes(state, node, [nothing] * slots), nothing, extra)
    return after


def _call_in_groups(
    target: str,
    scalars: jax.Array,
    columns: list[list[jax.Array]],
    updated: list[int],
    in_place: Callable[[int, int], bool] = lambda column, leaf: True,
    per_call: int = _LEAVES_PER_CALL,
) -> list[list[jax.Array]]:
    """Runs a hand-written kernel over all leaves, at most ``per_call`` leaves a call.

    A call's operands are ``scalars`` and then, column by column, its leaves' arrays
    (``columns[c][leaf]``); its results are the new arrays of the ``updated`` columns, each the
    result of its operand in place (aliased) unless ``in_place(column, leaf)`` says otherwise.
    ``per_call`` defaults to the programs' `LEAVES_PER_CALL`.

    Returns:
      The new arrays of each updated column, in the order of ``updated``.
    """
    new_columns: list[list[jax.Array]] = [[] for _ in updated]
    for lo in range(0, len(columns[0]), per_call):
        group = [col[lo : lo + per_call] for col in columns]
        n = len(group[0])
        outputs = [jax.ShapeDtypeStruct(x.shape, x.dtype) for c in updated for x in group[c]]
        aliases = {
            1 + c * n + i: k * n + i for k, c in enumerate(updated) for i in range(n) if in_place(c, lo + i)
        }
        call = jax.ffi.ffi_call(target, outputs, input_output_aliases=aliases, vmap_method="sequential")
        out = call(scalars, *(x for col in group for x in col))
        for k in range(len(updated)):
            new_columns[k] += out[k * n : (k + 1) * n]
    return new_columns


def _find_spec(tx: GradientTransformation, name: str) -> Any:
    """The spec of the first transformation named ``name`` inside ``tx`` (depth first)."""
    spec = getattr(tx, "spec", None)
    if spec is None:
        return None
    if spec.name == name:
        return spec
    for inner in ([spec.body] if spec.body is not None else []) + [t for _, t in spec.children()]:
        found = _find_spec(inner, name)
        if found is not None:
            return found
    return None


def _with_nodes(state: HyperparamsState, node: type, values: list[Any]) -> HyperparamsState:
    """``state`` with its ``node`` instances (in order) holding ``values`` instead."""
    replacements = list(values)

    def swap(x: Any) -> Any:
        return node(replacements.pop(0)) if isinstance(x, node) else x

    return jax.tree.map(swap, state, is_leaf=lambda x: isinstance(x, node))
