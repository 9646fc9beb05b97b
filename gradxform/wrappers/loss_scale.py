"""Dynamic loss scaling for float16 training (Keras ``LossScaleOptimizer`` semantics).

Inside a training step::

    def loss_fn(params):
        return gx.scale_loss(loss(params), state.opt_state)   # loss * current scale
    grads = jax.grad(loss_fn)(params)                         # scaled gradients
    updates, opt_state = tx.update(grads, state.opt_state, params)

The wrapper divides the gradients by the scale before the inner optimizer sees them. A step
whose scaled gradients overflowed is skipped (parameters and inner state bit-for-bit
unchanged) and the scale is halved; after ``dynamic_growth_steps`` consecutive good steps
the scale is doubled.

`scale_gradient` scales the gradient flowing back through one part of a model instead.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradxform._factory import transformation
from gradxform.core import (
    check_transformation,
    find_states,
    COUNT_DTYPE,
    POSITIVE,
    REAL,
    GradientTransformation,
    cast_like,
    check_hyperparam,
    check_number,
    check_positive_int,
    is_tracer,
    safe_increment,
)
from gradxform.wrappers.finite import all_finite, cond_update


class DynamicLossScaleState(NamedTuple):
    """State of `dynamic_loss_scale`.

    Attributes:
      loss_scale: float32 scalar, the scale the next loss must be multiplied by.
      good_steps: int32 scalar, consecutive finite steps since the scale last changed.
      total_skipped: int32 scalar, steps skipped for overflow so far.
      inner_state: the inner optimizer's state.
    """

    loss_scale: jax.Array
    good_steps: jax.Array
    total_skipped: jax.Array
    inner_state: Any


def _compute_dtype(dtype: Any) -> Any:
    return jnp.promote_types(dtype, jnp.float32)


@transformation()
def dynamic_loss_scale(
    inner: GradientTransformation,
    initial_scale: float = 2.0**15,
    dynamic_growth_steps: int = 2000,
) -> GradientTransformation:
    """Wraps an optimizer with Keras's dynamic loss scaling; give it *scaled* gradients.

    Each update divides the gradients by the current scale (in at least float32), then:
    if they are all finite, applies ``inner`` and, on the ``dynamic_growth_steps``-th
    consecutive finite step, doubles the scale; otherwise skips the step (zero updates,
    inner state unchanged) and halves the scale. Unlike Keras 3, the gradients are always
    divided by the scale the loss was multiplied by (Keras divides by the doubled scale on
    a growth step).

    Args:
      inner: the optimizer.
      initial_scale: the first scale, > 0 (Keras: 2**15).
      dynamic_growth_steps: good steps between doublings, >= 1 (Keras: 2000).

    Returns:
      A transformation with `DynamicLossScaleState`; read the scale with `loss_scale`.

    Raises:
      TypeError: if ``inner`` is not a transformation.
      ValueError: for a non-positive ``initial_scale`` or ``dynamic_growth_steps``.

    References:
      Micikevicius et al., "Mixed Precision Training", ICLR 2018.
      https://arxiv.org/abs/1710.03740

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.dynamic_loss_scale(gx.sgd(1.0), initial_scale=4.0)
      >>> state = tx.init(jnp.zeros(1))
      >>> out, state = tx.update(jnp.array([8.0]), state)  # gradient 8 / scale 4
      >>> out.tolist(), float(gx.loss_scale(state))
      ([-2.0], 4.0)
    """
    check_transformation("dynamic_loss_scale", "inner", inner)
    check_hyperparam("dynamic_loss_scale", "initial_scale", initial_scale, POSITIVE)
    if callable(initial_scale):
        raise ValueError("dynamic_loss_scale: initial_scale must be a number, not a schedule.")
    check_positive_int("dynamic_loss_scale", "dynamic_growth_steps", dynamic_growth_steps)

    def init(params):
        zero = jnp.zeros([], COUNT_DTYPE)
        return DynamicLossScaleState(jnp.asarray(initial_scale, jnp.float32), zero, zero, inner.init(params))

    def update(updates, state, params=None, **extra):
        scale = state.loss_scale
        unscaled = jax.tree.map(lambda g: g.astype(_compute_dtype(g.dtype)) / scale.astype(_compute_dtype(g.dtype)), updates)
        finite = all_finite(unscaled)
        out, inner_state = cond_update(finite, inner, unscaled, state.inner_state, params, extra)
        good = jnp.where(finite, state.good_steps + 1, 0).astype(COUNT_DTYPE)
        grow = good >= dynamic_growth_steps
        new_scale = jnp.where(finite, jnp.where(grow, scale * 2.0, scale), scale / 2.0)
        good = jnp.where(grow, 0, good).astype(COUNT_DTYPE)
        total = jnp.where(finite, state.total_skipped, safe_increment(state.total_skipped))
        return cast_like(out, updates), DynamicLossScaleState(new_scale, good, total, inner_state)

    return GradientTransformation(init, update)


def _find_scale_state(state: Any) -> DynamicLossScaleState:
    found = find_states(state, DynamicLossScaleState)
    if len(found) != 1:
        raise ValueError(
            f"Expected exactly one dynamic_loss_scale state in this optimizer state, found {len(found)}; "
            "wrap the optimizer in gx.dynamic_loss_scale(...) once."
        )
    return found[0]


def loss_scale(state: Any) -> jax.Array:
    """The current loss scale kept by `dynamic_loss_scale` in an optimizer state.

    Args:
      state: an optimizer state containing one `DynamicLossScaleState` (at any depth).

    Returns:
      A float32 scalar.

    Raises:
      ValueError: if the state holds no loss scale, or several.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> float(gx.loss_scale(gx.dynamic_loss_scale(gx.sgd(0.1)).init(jnp.zeros(1))))
      32768.0
    """
    return _find_scale_state(state).loss_scale


def scale_loss(loss: jax.Array, state: Any) -> jax.Array:
    """Multiplies a loss by the current loss scale, in at least float32.

    Args:
      loss: the loss (a scalar).
      state: the optimizer state of a `dynamic_loss_scale` optimizer.

    Returns:
      ``loss * loss_scale(state)``.

    Raises:
      ValueError: as `loss_scale`.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> state = gx.dynamic_loss_scale(gx.sgd(0.1), initial_scale=8.0).init(jnp.zeros(1))
      >>> float(gx.scale_loss(jnp.asarray(0.5, jnp.float16), state))
      4.0
    """
    loss = jnp.asarray(loss)
    dtype = _compute_dtype(loss.dtype)
    return loss.astype(dtype) * loss_scale(state).astype(dtype)


@jax.custom_vjp
def _scaled_backward(inputs: Any, scale: jax.Array) -> Any:
    return inputs


def _scaled_backward_fwd(inputs: Any, scale: jax.Array) -> tuple[Any, jax.Array]:
    return inputs, scale


def _scaled_backward_bwd(scale: jax.Array, cotangents: Any) -> tuple[Any, jax.Array]:
    # The scale gets no gradient: it is a constant of the model, as in Optax.
    scaled = jax.tree.map(lambda g: (g * scale).astype(g.dtype), cotangents)
    return scaled, jnp.zeros_like(scale)


_scaled_backward.defvjp(_scaled_backward_fwd, _scaled_backward_bwd)


def scale_gradient(inputs: Any, scale: Any) -> Any:
    """Returns ``inputs`` unchanged, but multiplies the gradient flowing back through them by ``scale``.

    Optax's ``scale_gradient``: the identity on the forward pass whose backward pass scales
    the cotangents, for slowing one part of a model (a shared torso in reinforcement
    learning, a discriminator's features) without a separate optimizer. ``scale = 0`` is
    ``jax.lax.stop_gradient`` and ``scale = 1`` returns ``inputs`` itself. The scaled
    gradients keep their dtype.

    Args:
      inputs: an array or a pytree of arrays.
      scale: the factor for the gradient, a finite real number or scalar array (a traced
        one is not checked).

    Returns:
      ``inputs``, with their backward pass scaled.

    Raises:
      ValueError: if ``scale`` is not a finite real scalar (naming it).

    Example:
      >>> import gradxform as gx, jax, jax.numpy as jnp
      >>> jax.grad(lambda x: jnp.sum(gx.scale_gradient(x, 0.5) ** 2))(jnp.array([1.0, 2.0])).tolist()
      [1.0, 2.0]
    """
    check_number("scale_gradient", "scale", scale, REAL)
    if not is_tracer(scale):
        if float(scale) == 1.0:
            return inputs
        if float(scale) == 0.0:
            return jax.lax.stop_gradient(inputs)
    return _scaled_backward(inputs, jnp.asarray(scale))
