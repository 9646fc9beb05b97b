"""`update_and_apply`: one optimizer step, as one pass over memory where a kernel exists."""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp

from gradxform._factory import HyperparamsState
from gradxform.core import (
    GradientTransformation,
    Params,
    State,
    Updates,
    apply_updates,
    call_update,
    find_states,
    is_transformation,
)
from gradxform.kernels._build import ADAM_STEP, kernel_status
from gradxform.primitives.moments import CountState, EmaState, debias

# The factories whose state the Adam kernel understands, and the arguments under which its
# arithmetic is theirs (anything else takes the plain path, with the same result).
_ADAM_FAMILY = ("adam", "adamw")

# XLA's compile time grows faster than linearly in one custom call's operands (0.15 s for
# 50 leaves, 10 s for 400), so a large tree goes to several calls of this many leaves.
_LEAVES_PER_CALL = 32


def update_and_apply(
    tx: GradientTransformation,
    grads: Updates,
    state: State,
    params: Params,
    *,
    kernel: bool = True,
    **extra: Any,
) -> tuple[Params, State]:
    """One optimizer step: ``tx.update`` followed by `apply_updates`, fused where possible.

    For `adam` and `adamw` with float32 parameters on a CPU, the whole step (both moments
    and the parameters) runs as one hand-written kernel that reads and writes each array
    once, for every leaf of the tree in one call, instead of the three loops per leaf that
    XLA:CPU compiles the composition to. The numbers are the composition's, operation for
    operation; the state is the one ``tx.update`` returns, so checkpoints, `hyperparams`,
    `set_hyperparams` and schedules work unchanged, and a run may switch between this and
    ``tx.update`` at any step. On other devices, for other optimizers, other dtypes, Nadam's
    look-ahead, a weight-decay mask, or when the kernel could not be built (see
    `kernel_status`), it is exactly ``tx.update`` then `apply_updates`.

    Jit the step and donate the parameters and the state (``donate_argnums``), so the
    kernel updates them in place. The kernel has no derivative: differentiate through
    ``tx.update`` instead.

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

    References:
      Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.
      https://arxiv.org/abs/1412.6980

    Example:
      >>> import gradxform as gx, jax, jax.numpy as jnp
      >>> tx = gx.adam(0.1)
      >>> p = {"w": jnp.array([1.0, -1.0])}
      >>> step = jax.jit(lambda g, s, p: gx.update_and_apply(tx, g, s, p), donate_argnums=(1, 2))
      >>> p, s = step({"w": jnp.array([2.0, -2.0])}, tx.init(p), p)
      >>> [round(x, 4) for x in p["w"].tolist()]
      [0.9, -0.9]
    """
    if not is_transformation(tx):
        raise TypeError(
            f"update_and_apply: tx must be a gradient transformation (init, update), got {type(tx).__name__}"
        )

    def plain() -> tuple[Params, State]:
        updates, new_state = call_update(tx, grads, state, params, extra)
        return apply_updates(params, updates), new_state

    fused = _adam_kernel_step(tx, grads, state, params, extra) if kernel else None
    if fused is None:
        return plain()
    if _cpu_only():
        return fused()
    # With an accelerator present, the step may be placed on either: let lowering choose.
    return jax.lax.platform_dependent(cpu=fused, default=plain)


@functools.cache
def _cpu_only() -> bool:
    """Whether this process has no backend but the CPU (then the kernel branch is the only
    one: tracing the other too would double the trace for nothing)."""
    for platform in ("gpu", "tpu", "METAL"):
        try:
            if jax.devices(platform):
                return False
        except RuntimeError:
            pass
    return True


def _is_f32_array(x: Any) -> bool:
    return hasattr(x, "dtype") and hasattr(x, "shape") and jnp.dtype(x.dtype) == jnp.float32


def _adam_kernel_step(
    tx: GradientTransformation, grads: Updates, state: State, params: Params, extra: dict[str, Any]
) -> Callable[[], tuple[Params, State]] | None:
    """The kernel's step as a thunk, or None where the kernel does not apply."""
    spec = getattr(tx, "spec", None)
    if spec is None or spec.name not in _ADAM_FAMILY or not isinstance(state, HyperparamsState):
        return None
    args = spec.args
    if args.get("nesterov") or args.get("mask") is not None:
        return None
    if any(args.get(d) is not None and jnp.dtype(args[d]) != jnp.float32 for d in ("mu_dtype", "nu_dtype")):
        return None
    emas = find_states(state.inner_state, EmaState)
    counts = find_states(state.inner_state, CountState)
    if len(emas) != 2 or len(counts) != 2:
        return None
    p_leaves, treedef = jax.tree.flatten(params)
    try:
        g_leaves = treedef.flatten_up_to(grads)
        m_leaves = treedef.flatten_up_to(emas[0].ema)
        v_leaves = treedef.flatten_up_to(emas[1].ema)
    except (ValueError, TypeError):
        return None  # the plain path reports the mismatch with its paths
    if not p_leaves:
        return None
    for p, g, m, v in zip(p_leaves, g_leaves, m_leaves, v_leaves):
        if not all(_is_f32_array(x) for x in (p, g, m, v)) or not p.shape == g.shape == m.shape == v.shape:
            return None
    if kernel_status():
        return None

    def fused() -> tuple[Params, State]:
        # The scalar part of the state (counts, hyperparameters, schedules) comes from the
        # composition itself, run on one empty array: it does not depend on the tree, costs
        # nothing, and cannot drift from what ``tx.update`` does.
        nothing = jnp.zeros((0,), jnp.float32)
        shadow = _with_moments(state, nothing, nothing)
        _, after = call_update(tx, nothing, shadow, nothing, extra)
        hp = after.hyperparams
        t1, t2 = (c.count for c in find_states(after.inner_state, CountState))
        scalars = jnp.stack(
            [
                hp["learning_rate"],
                hp["b1"],
                hp["b2"],
                hp["eps"],
                hp["eps_root"],
                hp.get("weight_decay", jnp.zeros([], jnp.float32)),
                debias(hp["b1"], t1),
                debias(hp["b2"], t2),
            ]
        ).astype(jnp.float32)
        new_p, new_m, new_v = [], [], []
        for lo in range(0, len(p_leaves), _LEAVES_PER_CALL):
            group = slice(lo, lo + _LEAVES_PER_CALL)
            ps, ms, vs = _adam_call(scalars, p_leaves[group], g_leaves[group], m_leaves[group], v_leaves[group])
            new_p += ps
            new_m += ms
            new_v += vs
        new_state = _with_moments(after, treedef.unflatten(new_m), treedef.unflatten(new_v))
        return treedef.unflatten(new_p), new_state

    return fused


def _adam_call(
    scalars: jax.Array, ps: list[jax.Array], gs: list[jax.Array], ms: list[jax.Array], vs: list[jax.Array]
) -> tuple[list[jax.Array], list[jax.Array], list[jax.Array]]:
    """One kernel call over a group of leaves: new parameters, first and second moments."""
    n = len(ps)
    outputs = [jax.ShapeDtypeStruct(x.shape, x.dtype) for x in (*ps, *ms, *vs)]
    # Operands are (scalars, params, grads, mu, nu): each result overwrites its operand.
    aliases = {1 + i: i for i in range(n)}
    aliases |= {1 + 2 * n + i: n + i for i in range(n)}
    aliases |= {1 + 3 * n + i: 2 * n + i for i in range(n)}
    call = jax.ffi.ffi_call(ADAM_STEP, outputs, input_output_aliases=aliases, vmap_method="sequential")
    out = call(scalars, *ps, *gs, *ms, *vs)
    return list(out[:n]), list(out[n : 2 * n]), list(out[2 * n :])


def _with_moments(state: HyperparamsState, mu: Any, nu: Any) -> HyperparamsState:
    """``state`` with its two `EmaState` nodes (first, then second moment) replaced."""
    replacements = [EmaState(mu), EmaState(nu)]

    def swap(node: Any) -> Any:
        return replacements.pop(0) if isinstance(node, EmaState) else node

    return jax.tree.map(swap, state, is_leaf=lambda node: isinstance(node, EmaState))
