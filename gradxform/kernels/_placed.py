"""A step that is the kernels' where it is lowered for a CPU and the plain composition
everywhere else, decided when XLA's program is built rather than when the step is traced.

``jax.lax.platform_dependent`` traces every branch up front, which doubles the trace of a
400-leaf step; deciding from the devices this process sees is wrong when a step is lowered
for a platform the process does not have (``jax.export`` for a TPU from a CPU host, an
ahead-of-time compile against an accelerator's topology). Here the kernels' step is traced
once into a jaxpr and bound as one primitive, ``gradxform_step``, whose lowering rules pick:

- on a CPU, the traced jaxpr (its custom calls included), unless XLA's SPMD partitioner will
  split the program over several devices;
- on any other platform, and where the program is partitioned, the plain composition,
  traced only then.

A custom call has no partitioning rule: the partitioner would gather each of its operands
onto every device, and the step's results (parameters and state) would come back
replicated. A partitioned program therefore takes the composition, which XLA partitions
leaf by leaf. Inside ``shard_map`` with every mesh axis manual, the operands are each
device's own shards and the kernels run on them.

Where the process's default device is an accelerator, it is the other way round: the plain
composition is traced, and the kernels' step only if the step is lowered for a CPU (so a GPU
or TPU job never builds the CPU kernels).

The primitive's derivative is the plain composition's, so ``jax.grad`` through a jitted
step works (the kernels have no derivative of their own), and under ``jax.vmap`` both
sides are batched.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence, Union

import jax
from jax.extend import core as jcore
from jax.interpreters import ad, batching, mlir

# A branch of the step: traced already (a closed jaxpr whose constants are concrete), or a
# function of the operands traced only when its platform is lowered for.
Branch = Union[jcore.ClosedJaxpr, Callable[..., Sequence[Any]]]

step_p = jcore.Primitive("gradxform_step")
step_p.multiple_results = True


def placed(fused: Branch, plain: Branch, operands: Sequence[Any]) -> list[Any]:
    """``fused``'s results where the step is lowered for a CPU, ``plain``'s elsewhere.

    Args:
      fused: the kernels' step.
      plain: the same step as the plain composition. At least one of the two is a closed
        jaxpr (it gives the results' shapes); the other may be a function of the operands
        that closes over concrete values only, traced when its platform is lowered for
        (and, for ``plain``, when the step is differentiated or batched). A step with
        effects (a callback) has both traced: the primitive carries their effects.
      operands: the step's traced operands.

    Returns:
      The step's results, as a list.
    """
    traced = fused if isinstance(fused, jcore.ClosedJaxpr) else plain
    effects = frozenset().union(*(b.effects for b in (fused, plain) if isinstance(b, jcore.ClosedJaxpr)))
    if effects and not all(isinstance(b, jcore.ClosedJaxpr) for b in (fused, plain)):
        raise ValueError("gradxform_step: a step with effects must have both branches traced")
    out_avals = tuple(traced.out_avals)
    return step_p.bind(*operands, fused=fused, plain=plain, out_avals=out_avals, step_effects=effects)


def _fun(branch: Branch) -> Callable[..., list[Any]]:
    if isinstance(branch, jcore.ClosedJaxpr):
        return jcore.jaxpr_as_fun(branch)
    return lambda *xs: list(branch(*xs))


def _abstract_eval(*avals: Any, out_avals: tuple[Any, ...], step_effects: frozenset, **branches: Branch):
    return list(out_avals), step_effects


def _impl(*operands: Any, plain: Branch, **params: Any) -> list[Any]:
    # Bound eagerly only from a batching rule outside jit: the plain composition is exact.
    return _fun(plain)(*operands)


def partitioned(ctx: Any) -> bool:
    """Whether the program being lowered (``ctx``, a lowering rule's context) will be split
    over more than one device by XLA's SPMD partitioner.

    ``jit`` over several devices is; ``shard_map`` is not along its manual axes (its body
    sees each device's shards), nor is a ``pmap`` replica."""
    axis_context = getattr(ctx.module_context, "axis_context", None)
    manual = getattr(axis_context, "manual_axes", None)
    mesh = getattr(axis_context, "mesh", None)
    if manual is not None and mesh is not None:  # inside shard_map
        return any(size > 1 for name, size in mesh.shape.items() if name not in manual)
    return getattr(axis_context, "num_devices", 1) > 1


def _lowering(which: str) -> Callable[..., Any]:
    def rule(
        ctx: Any, *operands: Any, fused: Branch, plain: Branch, out_avals: tuple[Any, ...], **params: Any
    ) -> Any:
        branch = fused if which == "fused" and not partitioned(ctx) else plain
        if isinstance(branch, jcore.ClosedJaxpr):
            # As traced (a call XLA inlines), not traced a second time.
            name = "gradxform_fused" if branch is fused else "gradxform_plain"
            return mlir.core_call_lowering(ctx, *operands, name=name, call_jaxpr=branch)

        def traced_now(*xs: Any) -> list[Any]:
            return [x.astype(a.dtype) for x, a in zip(branch(*xs), out_avals)]

        return mlir.lower_fun(traced_now, multiple_results=True)(ctx, *operands)

    return rule


def _jvp(primals: Sequence[Any], tangents: Sequence[Any], *, plain: Branch, **params: Any):
    tangents = [ad.instantiate_zeros(t) for t in tangents]
    return jax.jvp(_fun(plain), list(primals), tangents)


def _batch(operands: Sequence[Any], dims: Sequence[Any], *, fused: Branch, plain: Branch, **params: Any):
    in_axes = [d if isinstance(d, int) else None for d in dims]  # unmapped: None or a sentinel

    def batched(branch: Branch) -> Branch:
        fun = jax.vmap(_fun(branch), in_axes=in_axes)
        return jax.make_jaxpr(fun)(*operands) if isinstance(branch, jcore.ClosedJaxpr) else fun

    out = placed(batched(fused), batched(plain), operands)
    return out, [0] * len(out)


step_p.def_impl(_impl)
step_p.def_effectful_abstract_eval(_abstract_eval)
mlir.register_lowering(step_p, _lowering("plain"))
mlir.register_lowering(step_p, _lowering("fused"), platform="cpu")
ad.primitive_jvps[step_p] = _jvp
batching.primitive_batchers[step_p] = _batch
