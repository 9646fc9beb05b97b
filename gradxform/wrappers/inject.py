"""``inject_hyperparams``: Optax's way of making hyperparameters data, for code written for it.

gradxform's own factories keep their hyperparameters in the state already (see
`set_hyperparams`); this wrapper gives the same to any other factory (Optax's, a user's) and
accepts Optax's spelling around gradxform's, so ``opt_state.hyperparams["learning_rate"]``
works whichever library built the optimizer.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradxform._factory import _inject
from gradxform.core import HYPERPARAM_DTYPE, GradientTransformation, is_schedule


def _is_float_value(value: Any) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, float):
        return True
    return isinstance(value, (jax.Array, np.ndarray, np.floating)) and jnp.issubdtype(jnp.asarray(value).dtype, jnp.floating) and jnp.ndim(value) == 0


def inject_hyperparams(
    inner_factory: Callable[..., Any],
    static_args: str | Iterable[str] = (),
    hyperparam_dtype: Any = None,
) -> Callable[..., GradientTransformation]:
    """Wraps a factory so that its float hyperparameters (or schedules) live in the state.

    ``inject_hyperparams(factory)(**kwargs)`` is ``factory(**kwargs)`` whose state holds each
    float hyperparameter under ``state.hyperparams[name]``: read it, or replace the value
    there (``state.hyperparams["learning_rate"] = 1e-4``) or with `set_hyperparams`, and the
    next update uses it without recompiling. A callable argument is a schedule of the step
    count, evaluated every update, as in Optax.

    - For gradxform's own factories (``gx.adam``, ...) this is the factory itself: their
      declared hyperparameters are already data, with their ranges checked.
    - For any other factory (Optax's, a user's), the float arguments and callables are
      made data, in float32; booleans, integers, strings, dtypes and ``static_args`` stay
      Python values, so a factory may branch on them. (Optax also makes integer arguments
      data; here they stay static, since a factory usually needs them as Python ints.)

    Args:
      inner_factory: a function returning a gradient transformation.
      static_args: names of arguments to keep as Python values (a name or several).
      hyperparam_dtype: the dtype of the injected values; gradxform keeps hyperparameters in
        float32, so only ``None`` or float32 are accepted.

    Returns:
      A factory with ``inner_factory``'s arguments, returning a `GradientTransformation`
      whose state is a `HyperparamsState` (``.hyperparams``, ``.inner_state``).

    Raises:
      ValueError: if ``static_args`` names an argument ``inner_factory`` does not have, or
        ``hyperparam_dtype`` is not float32.
      TypeError: if ``inner_factory`` is not callable.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.inject_hyperparams(gx.sgd)(learning_rate=0.1)
      >>> state = tx.init(jnp.zeros(2))
      >>> state.hyperparams["learning_rate"] = jnp.asarray(0.5)
      >>> tx.update(jnp.ones(2), state)[0].tolist()
      [-0.5, -0.5]
    """
    if not callable(inner_factory):
        raise TypeError(f"inject_hyperparams: inner_factory must be a factory function, got {inner_factory!r}.")
    static = {static_args} if isinstance(static_args, str) else set(static_args)
    signature = inspect.signature(inner_factory)
    unknown = static - set(signature.parameters)
    if unknown:
        raise ValueError(
            f"inject_hyperparams: static_args {sorted(unknown)} are not arguments of "
            f"{getattr(inner_factory, '__name__', inner_factory)!r}, whose arguments are {list(signature.parameters)}."
        )
    if hyperparam_dtype is not None and jnp.dtype(hyperparam_dtype) != HYPERPARAM_DTYPE:
        raise ValueError(
            f"inject_hyperparams: gradxform keeps hyperparameters in float32, got hyperparam_dtype={hyperparam_dtype!r}."
        )
    if hasattr(inner_factory, "__gradxform_hyperparams__"):
        return inner_factory
    name = f"inject_hyperparams({getattr(inner_factory, '__name__', 'factory')})"

    @functools.wraps(inner_factory)
    def wrapped(*args: Any, **kwargs: Any) -> GradientTransformation:
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as e:
            raise TypeError(f"{name}: {e}") from None
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        dynamic = [
            a for a, v in arguments.items() if a not in static and (_is_float_value(v) or is_schedule(v))
        ]

        def build(values: dict[str, Any]) -> Any:
            call = inspect.BoundArguments(signature, values)  # type: ignore[arg-type]
            return inner_factory(*call.args, **call.kwargs)

        return _inject(name, arguments, dynamic, build)

    return wrapped
