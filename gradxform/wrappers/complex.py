"""Complex-valued parameters optimized as pairs of real ones."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradxform._factory import transformation
from gradxform.core import GradientTransformation, call_update, check_transformation


class SplitRealAndImaginaryArrays(NamedTuple):
    """The real and imaginary parts of one complex array, as two real arrays of its shape."""

    real: jax.Array
    imaginary: jax.Array


class SplitRealAndImaginaryState(NamedTuple):
    """State of `split_real_and_imaginary`: ``inner_state``, the inner transformation's state
    for the split tree (a complex leaf is a `SplitRealAndImaginaryArrays` there)."""

    inner_state: Any


def _split(x: Any) -> Any:
    return SplitRealAndImaginaryArrays(jnp.real(x), jnp.imag(x)) if jnp.iscomplexobj(x) else x


def _merge(x: Any) -> Any:
    return jax.lax.complex(x.real, x.imaginary) if isinstance(x, SplitRealAndImaginaryArrays) else x


@transformation()
def split_real_and_imaginary(inner: GradientTransformation) -> GradientTransformation:
    """Runs ``inner`` on the real and imaginary parts of complex updates as separate real arrays.

    Each complex leaf of the parameters and updates becomes a `SplitRealAndImaginaryArrays`
    pair before ``inner`` sees it, and ``inner``'s two real outputs are joined back into one
    complex update; real leaves pass to ``inner`` unchanged. An optimizer then treats a complex
    parameter exactly as two real ones: Adam keeps a second moment for each part instead of
    one of ``|g|^2``. JAX's gradient of a real loss with respect to a complex parameter is
    the conjugate of the descent direction: conjugate it before the update, as in Optax.

    Args:
      inner: the transformation to run on the real parts.

    Returns:
      A transformation with `SplitRealAndImaginaryState`.

    Raises:
      TypeError: if ``inner`` is not a transformation.

    References:
      Optax issue 196, "Complex-valued parameters".
      https://github.com/google-deepmind/optax/issues/196

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.split_real_and_imaginary(gx.scale_by_sign())
      >>> out, _ = tx.update(jnp.array([3.0 - 0.5j]), tx.init(jnp.zeros(1, jnp.complex64)))
      >>> out.tolist()
      [(1-1j)]
    """
    check_transformation("split_real_and_imaginary", "inner", inner)

    def init(params):
        return SplitRealAndImaginaryState(inner.init(jax.tree.map(_split, params)))

    def update(updates, state, params=None, **extra):
        split_params = None if params is None else jax.tree.map(_split, params)
        out, inner_state = call_update(inner, jax.tree.map(_split, updates), state.inner_state, split_params, extra)
        is_pair = lambda x: isinstance(x, SplitRealAndImaginaryArrays)
        return jax.tree.map(_merge, out, is_leaf=is_pair), SplitRealAndImaginaryState(inner_state)

    return GradientTransformation(init, update)
