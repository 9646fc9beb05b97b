"""The model: a small Flax NNX multilayer perceptron, and its loss and accuracy.

Training is functional: the model is split once into its graph definition and a plain dict
of parameters (``{"dense0": {"kernel": ..., "bias": ...}, ...}``, so path patterns such as
``*/bias`` read naturally), and the jitted step merges them back to call the model.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx


class MLP(nnx.Module):
    """Dense layers with ReLU between them; the last layer outputs the class logits."""

    def __init__(self, sizes: tuple[int, ...], *, rngs: nnx.Rngs):
        self.depth = len(sizes) - 1
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            setattr(self, f"dense{i}", nnx.Linear(a, b, rngs=rngs))

    def __call__(self, x: jax.Array) -> jax.Array:
        for i in range(self.depth):
            x = getattr(self, f"dense{i}")(x)
            if i < self.depth - 1:
                x = jax.nn.relu(x)
        return x


def init_model(hidden: tuple[int, ...], seed: int, inputs: int = 64, classes: int = 10) -> tuple[Any, dict]:
    """Builds the MLP and splits it.

    Args:
      hidden: widths of the hidden layers.
      seed: initialisation seed.
      inputs: input features.
      classes: output classes.

    Returns:
      ``(graphdef, params)``: the static structure and a plain dict of float32 arrays.

    Example:
      >>> from gradxform.job.model import init_model
      >>> graphdef, params = init_model((8,), seed=0)
      >>> sorted(params), params["dense0"]["kernel"].shape
      (['dense0', 'dense1'], (64, 8))
    """
    graphdef, state = nnx.split(MLP((inputs, *hidden, classes), rngs=nnx.Rngs(seed)))
    return graphdef, nnx.to_pure_dict(state)


def loss_and_accuracy(graphdef: Any, params: dict, x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean softmax cross-entropy and accuracy of the model on a batch.

    Args:
      graphdef: from `init_model`.
      params: the parameters dict.
      x: inputs, ``(batch, 64)``.
      y: integer labels, ``(batch,)``.

    Returns:
      ``(loss, accuracy)``, float32 scalars.

    Example:
      >>> import jax.numpy as jnp
      >>> from gradxform.job.model import init_model, loss_and_accuracy
      >>> g, p = init_model((8,), seed=0)
      >>> loss, acc = loss_and_accuracy(g, p, jnp.zeros((2, 64)), jnp.array([0, 1]))
      >>> round(float(loss), 2)
      2.3
    """
    logits = nnx.merge(graphdef, params)(x)
    logp = jax.nn.log_softmax(logits)
    loss = -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))
    return loss, jnp.mean(jnp.argmax(logits, -1) == y)
