"""Recording an optimizer's run for plotting: parameter path, loss and per-stage norms.

A *stage* is one top-level step of the composition, found by going down through named
optimizers (``adam`` expands to ``chain(scale_by_adam(...), scale_by_learning_rate(...))``)
and ``named`` wrappers until a ``chain`` is reached: its stages are the stages. A
transformation that does not expand to a chain is a single stage. Stage ``i``'s norm is the
global norm of the updates as they leave stage ``i``, so the last stage's norm is the norm
of the update applied to the parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradxform._factory import HyperparamsState
from gradxform.core import GradientTransformation, Params, PyTree, apply_updates, call_update
from gradxform.inspect import _child_states, _is_injected, _rebuild, children
from gradxform.primitives.clipping import global_norm


class OptimizerTrace(NamedTuple):
    """What `trace_optimizer` records.

    Attributes:
      params: the parameters' pytree, each leaf with a leading axis of ``steps + 1``: the
        initial parameters, then the parameters after each step.
      loss: float array ``(steps,)``, the loss at ``params[t]`` (on batch ``t``), whose
        gradient made step ``t``.
      grad_norm: float array ``(steps,)``, the global norm of that gradient.
      stage_norms: ``{stage label: float array (steps,)}``, in stage order; labels are
        ``"<index>: <name>"`` (see the module docstring for what a stage is).
      state: the optimizer state after the last step.
    """

    params: PyTree
    loss: jax.Array
    grad_norm: jax.Array
    stage_norms: dict[str, jax.Array]
    state: Any


def _next_values(spec: Any, state: HyperparamsState) -> dict[str, Any]:
    """The hyperparameters the next update of an injected stage will use."""
    values = dict(state.hyperparams)
    for name, args in state.schedule_args.items():
        schedule = spec.args[name]
        if args and hasattr(schedule, "replace"):
            schedule = schedule.replace(**args)
        values[name] = jnp.asarray(schedule(state.count), jnp.float32)
    return values


def stages(tx: GradientTransformation, state: Any) -> list[tuple[str, GradientTransformation, Any]]:
    """The top-level stages of ``tx`` and their states, as the next ``update`` runs them.

    Args:
      tx: any transformation.
      state: its state.

    Returns:
      ``[(label, stage, stage_state), ...]``: calling each stage's ``update`` in turn on its
      state reproduces the next update of ``tx``. Hyperparameters kept in the state (changed
      with ``set_hyperparams`` or following a schedule) are those of the next update.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.adam(1e-3)
      >>> [label for label, _, _ in gx.tracing.stages(tx, tx.init(jnp.zeros(2)))]
      ['0: scale_by_adam', '1: scale_by_learning_rate']
    """
    node, node_state = tx, state
    while True:
        spec = getattr(node, "spec", None)
        if spec is None:
            break
        kids = children(node)
        if spec.name in ("chain", "named_chain"):  # a named chain's stages go by their names
            states = _child_states(spec, kids, node_state)
            named = spec.name == "named_chain"
            return [(f"{i}: {key if named else _name(c)}", c, s) for i, ((key, c), s) in enumerate(zip(kids, states))]
        if _is_injected(spec, node_state):
            body = _rebuild(spec, _next_values(spec, node_state))
            if body is None:
                break
            node, node_state = body, node_state.inner_state
        elif spec.name == "named":
            node, node_state = spec.args["inner"], _child_states(spec, kids, node_state)[0]
        elif kids and kids[0][0] == "=":
            node = spec.body
        else:
            break
    return [(f"0: {_name(tx)}", tx, state)]


def _name(tx: Any) -> str:
    spec = getattr(tx, "spec", None)
    if spec is None:
        return type(tx).__name__
    return spec.args["name"] if spec.name == "named" else spec.name


def trace_optimizer(
    tx: GradientTransformation,
    loss_fn: Callable[..., jax.Array],
    init_params: Params,
    steps: int,
    *,
    batches: PyTree | None = None,
) -> OptimizerTrace:
    """Runs ``tx`` on ``loss_fn`` for ``steps`` steps (one compiled scan) and records it.

    Each step computes the loss and gradient, passes the gradient through ``tx`` with the
    loss as ``value=`` (for `reduce_on_plateau`; other stages ignore it) and applies the
    update. Each stage's output is recorded by replaying the stages one by one from the
    same state (see `stages`); the run itself uses ``tx.update``, so it is exactly the run
    a training loop makes.

    Args:
      tx: any transformation (a composition, a named optimizer, an Optax one).
      loss_fn: ``loss_fn(params) -> scalar``, or ``loss_fn(params, batch)`` with ``batches``.
      init_params: the starting parameters, any pytree of float arrays.
      steps: the number of steps, an integer >= 1.
      batches: optional pytree whose leaves have a leading axis of ``steps``; step ``t``
        gets slice ``t`` (mini-batches, or random keys for a noisy loss).

    Returns:
      An `OptimizerTrace` (parameter path, losses, gradient norms, each stage's update norm
      and the final state).

    Raises:
      ValueError: if ``steps`` is not a positive integer.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> run = gx.trace_optimizer(gx.adam(0.1), lambda p: jnp.sum(p**2), jnp.ones(2), 5)
      >>> run.params.shape, run.loss.shape, list(run.stage_norms)
      ((6, 2), (5,), ['0: scale_by_adam', '1: scale_by_learning_rate'])
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"trace_optimizer: steps must be an integer >= 1, got steps={steps!r}.")
    state0 = tx.init(init_params)
    labels = [label for label, _, _ in stages(tx, state0)]

    def step(carry, batch):
        params, state = carry
        args = () if batches is None else (batch,)
        loss, grads = jax.value_and_grad(loss_fn)(params, *args)
        extra = {"value": loss}
        norms, out = [], grads
        for _, stage, stage_state in stages(tx, state):
            out, _ = call_update(stage, out, stage_state, params, extra)
            norms.append(global_norm(out))
        updates, state = call_update(tx, grads, state, params, extra)
        params = apply_updates(params, updates)
        return (params, state), (params, loss, global_norm(grads), norms)

    @jax.jit
    def run(params, state, xs):
        return jax.lax.scan(step, (params, state), xs, length=steps)

    (_, state), (path, loss, grad_norm, norms) = run(init_params, state0, batches)
    path = jax.tree.map(lambda a, b: jnp.concatenate([jnp.asarray(a)[None], b]), init_params, path)
    return OptimizerTrace(path, loss, grad_norm, dict(zip(labels, norms)), state)


__all__ = ["OptimizerTrace", "stages", "trace_optimizer"]
