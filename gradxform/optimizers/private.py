"""Differentially private SGD (DP-SGD; Abadi et al., 2016)."""

from __future__ import annotations


from gradxform._factory import transformation
from gradxform.combinators import chain, identity
from gradxform.core import NON_NEGATIVE, UNIT_CLOSED, GradientTransformation
from gradxform.primitives.elementwise import scale_by_learning_rate
from gradxform.primitives.moments import trace
from gradxform.wrappers.privacy import differentially_private_aggregate


@transformation(
    {"learning_rate": NON_NEGATIVE, "l2_norm_clip": NON_NEGATIVE, "noise_multiplier": NON_NEGATIVE, "momentum": UNIT_CLOSED}
)
def dpsgd(
    learning_rate: float,
    l2_norm_clip: float,
    noise_multiplier: float,
    seed: int,
    momentum: float | None = None,
    nesterov: bool = False,
) -> GradientTransformation:
    """DP-SGD: SGD (optionally with momentum) on clipped, noised, averaged per-example gradients.

    With ``B`` examples in the batch, clipping norm ``C`` and noise multiplier ``sigma``:
    ``g_t = (sum_i clip_C(g_t^i) + N(0, (sigma C)^2 I)) / B``, where ``clip_C`` rescales an
    example's gradient to global norm at most ``C``; then ``v_t = g_t + momentum * v_{t-1}``
    (no momentum: ``v_t = g_t``) and ``u_t = -lr * v_t`` (``-lr * (g_t + momentum * v_t)``
    with Nesterov). The privacy guarantee depends on ``sigma``, the sampling rate and the
    number of steps; compute it with a privacy accountant (for example ``dp_accounting``).

    Args:
      learning_rate: a number >= 0 or a schedule.
      l2_norm_clip: the largest allowed global norm of one example's gradient, >= 0.
      noise_multiplier: the noise's standard deviation relative to ``l2_norm_clip``, >= 0.
      seed: the integer seed of the noise (Optax's argument; a PRNG key works too).
      momentum: in [0, 1], or ``None`` for none.
      nesterov: use Nesterov's look-ahead.

    Returns:
      ``chain(differentially_private_aggregate(l2_norm_clip, noise_multiplier, key=seed),
      trace(momentum, nesterov), scale_by_learning_rate(learning_rate))`` (no ``trace``
      without momentum). Its ``update`` takes per-example gradients, every leaf shaped
      ``(batch, *param.shape)``.

    Raises:
      ValueError: if a hyperparameter is out of range or ``seed`` is not a seed or a key;
        at ``update``, as `differentially_private_aggregate`.

    References:
      Abadi, Chu, Goodfellow, McMahan, Mironov, Talwar & Zhang, "Deep Learning with
      Differential Privacy", CCS 2016. https://arxiv.org/abs/1607.00133

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.dpsgd(learning_rate=0.1, l2_norm_clip=1.0, noise_multiplier=0.0, seed=0)
      >>> per_example = jnp.array([[3.0, 4.0], [0.3, 0.4]])
      >>> out, _ = tx.update(per_example, tx.init(jnp.zeros(2)))
      >>> [round(x, 4) for x in out.tolist()]
      [-0.045, -0.06]
    """
    return chain(
        differentially_private_aggregate(l2_norm_clip, noise_multiplier, key=seed),
        trace(momentum, nesterov) if momentum is not None else identity(),
        scale_by_learning_rate(learning_rate),
    )
