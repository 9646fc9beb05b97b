"""A step that is the kernels' where it is lowered for a CPU and the plain composition
everywhere else, decided when XLA's program is built rather than when the step is traced.

``jax.lax.platform_dependent`` traces every branch up front, which doubles the trace of a
400-leaf step; deciding from the devices this process sees is wrong when a step is lowered
for a platform the process does not have (``jax.export`` for a TPU from a CPU host, an
ahead-of-time compile against an accelerator's topology). Here the kernels' step is traced
once into a jaxpr and bound as one primitive, ``gradxform_step``, whose lowering rules pick:

- on a CPU, the traced jaxpr (its custom calls included);
- on any other platform, the plain composition, traced only then.

The primitive's derivative is the plain composition's, so ``jax.grad`` through a jitted
step works (the kernels have no derivative of their own), and under ``jax.vmap`` both
sides are batched.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
from jax.extend import core as jcore
from jax.interpreters import ad, batching, mlir

Flat = Callable[..., Sequence[Any]]

step_p = jcore.Primitive("gradxform_step")
step_p.multiple_results = True


def placed(fused: jcore.ClosedJaxpr, plain: Flat, operands: Sequence[Any]) -> list[Any]:
    """``fused``'s results where the step is lowered for a CPU, ``plain``'s elsewhere.

    Args:
      fused: the kernels' step, a closed jaxpr without effects whose constants are concrete.
      plain: the same step as the plain composition, a function of the same operands with
        the same results (it may close over concrete values only: it is traced when the step
        is lowered for another platform, or differentiated, long after this call).
      operands: the step's traced operands.

    Returns:
      The step's results, as a list.
    """
    return step_p.bind(*operands, fused=fused, plain=plain)


def _abstract_eval(*avals: Any, fused: jcore.ClosedJaxpr, plain: Flat) -> list[Any]:
    return list(fused.out_avals)


def _impl(*operands: Any, fused: jcore.ClosedJaxpr, plain: Flat) -> list[Any]:
    # Bound eagerly only from a batching rule outside jit: the plain composition is exact.
    return list(plain(*operands))


def _lower_plain(*operands: Any, fused: jcore.ClosedJaxpr, plain: Flat) -> list[Any]:
    return [x.astype(a.dtype) for x, a in zip(plain(*operands), fused.out_avals)]


def _lower_fused(ctx: Any, *operands: Any, fused: jcore.ClosedJaxpr, plain: Flat) -> Any:
    # The traced jaxpr as it is (a call XLA inlines), not traced a second time.
    return mlir.core_call_lowering(ctx, *operands, name="gradxform_step", call_jaxpr=fused)


def _jvp(primals: Sequence[Any], tangents: Sequence[Any], *, fused: jcore.ClosedJaxpr, plain: Flat):
    tangents = [ad.instantiate_zeros(t) for t in tangents]
    out, out_tangents = jax.jvp(lambda *xs: list(plain(*xs)), list(primals), tangents)
    return out, out_tangents


def _batch(operands: Sequence[Any], dims: Sequence[Any], *, fused: jcore.ClosedJaxpr, plain: Flat):
    in_axes = [d if isinstance(d, int) else None for d in dims]  # unmapped: None or a sentinel
    batched_fused = jax.make_jaxpr(jax.vmap(jcore.jaxpr_as_fun(fused), in_axes=in_axes))(*operands)
    batched_plain = jax.vmap(lambda *xs: list(plain(*xs)), in_axes=in_axes)
    out = step_p.bind(*operands, fused=batched_fused, plain=batched_plain)
    return out, [0] * len(out)


step_p.def_impl(_impl)
step_p.def_abstract_eval(_abstract_eval)
mlir.register_lowering(step_p, mlir.lower_fun(_lower_plain, multiple_results=True))
mlir.register_lowering(step_p, _lower_fused, platform="cpu")
ad.primitive_jvps[step_p] = _jvp
batching.primitive_batchers[step_p] = _batch
