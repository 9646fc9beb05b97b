"""Muon: momentum, orthogonalised by Newton-Schulz iterations, for matrix-shaped parameters.

For a weight matrix ``W`` with gradient ``G``::

    M_t = beta M_{t-1} + (1 - beta) G_t                     (debiased; Nesterov look-ahead)
    O_t = NewtonSchulz(M^_t)  ~  U V^T  for  M^_t = U S V^T  (every singular value ~ 1)
    W_{t+1} = W_t - lr (sqrt(max(1, fan_out / fan_in)) O_t + weight_decay W_t)

Parameters that are not matrices (biases, scales, or anything the dimension numbers leave
out) are updated by AdamW instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

from gradxform._factory import transformation
from gradxform.combinators import chain
from gradxform.core import NON_NEGATIVE, UNIT, GradientTransformation, check_choice, check_positive_int
from gradxform.optimizers.adam import adamw, first_moment
from gradxform.primitives.elementwise import scale_by_learning_rate
from gradxform.primitives.orthogonal import (
    PRECONDITIONINGS,
    DimNums,
    MuonDimensionNumbers,
    is_dim_nums,
    orthogonalize,
    scale_by_shape,
)
from gradxform.primitives.weight_decay import MaskOrFn, add_decayed_weights
from gradxform.wrappers.groups import partition

DEFAULT_NS_COEFFS = (3.4445, -4.7750, 2.0315)
NS_COEFFS_PRESETS = {
    "standard": DEFAULT_NS_COEFFS,
    # Ahn et al., "Dion: Distributed Orthonormalized Updates", 2025: one set per iteration.
    "dion": (
        (4.0848, -6.8946, 2.9270),
        (3.9505, -6.3029, 2.6377),
        (3.7418, -5.5913, 2.3037),
        (2.8769, -3.1427, 1.2046),
        (2.8366, -3.0525, 1.2012),
    ),
}


@transformation({"beta": UNIT, "eps": NON_NEGATIVE})
def scale_by_muon(
    ns_coeffs: Any = DEFAULT_NS_COEFFS,
    ns_steps: int = 5,
    beta: float = 0.95,
    eps: float = 1e-8,
    mu_dtype: Any = None,
    *,
    nesterov: bool = True,
    adaptive: bool = False,
    preconditioning: str = "frobenius",
    weight_dimension_numbers: DimNums = None,
) -> GradientTransformation:
    """Muon's direction, without learning rate or shape scaling (see `muon`).

    Args:
      ns_coeffs: Newton-Schulz coefficients, ``(3,)`` or ``(n, 3)``.
      ns_steps: Newton-Schulz iterations (an int >= 1).
      beta: decay of the momentum, in [0, 1).
      eps: guards the normalisation, >= 0.
      mu_dtype: dtype of the momentum (default: the parameter's).
      nesterov: use the Nesterov look-ahead momentum.
      adaptive: scale each orthogonalised update by its dual norm ``<M^, O>``.
      preconditioning: ``"frobenius"``, ``"spectral"``, ``"aol"`` or ``"schatten"``.
      weight_dimension_numbers: how each parameter is a (batch of) matrix; ``None``: every
        parameter is a matrix.

    Returns:
      ``chain(first_moment(beta, mu_dtype, nesterov), orthogonalize(...))``.

    References:
      Jordan et al., "Muon: An optimizer for hidden layers in neural networks", 2024.
      https://kellerjordan.github.io/posts/muon/

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.scale_by_muon()
      >>> tx.update(jnp.ones((2, 3)), tx.init(jnp.ones((2, 3))))[0].shape
      (2, 3)
    """
    return chain(
        first_moment(beta, mu_dtype, nesterov),
        orthogonalize(
            ns_coeffs,
            ns_steps,
            eps,
            preconditioning=preconditioning,
            adaptive=adaptive,
            weight_dimension_numbers=weight_dimension_numbers,
        ),
    )


def _labels_and_dims(muon_weight_dimension_numbers: DimNums) -> tuple[Callable, DimNums]:
    """The label function of the partition ('muon' or 'adam' per parameter) and the
    dimension numbers of the Muon group."""
    if muon_weight_dimension_numbers is None:
        return (lambda params: jax.tree.map(lambda x: "muon" if x.ndim == 2 else "adam", params)), MuonDimensionNumbers()

    def labels(params):
        dims = muon_weight_dimension_numbers
        dims = dims(params) if callable(dims) else dims
        return jax.tree.map(
            lambda d, sub: jax.tree.map(lambda _: "adam" if d is None else "muon", sub),
            dims,
            params,
            is_leaf=lambda x: x is None or is_dim_nums(x),
        )

    return labels, muon_weight_dimension_numbers


@transformation(
    {
        "learning_rate": NON_NEGATIVE,
        "beta": UNIT,
        "eps": NON_NEGATIVE,
        "weight_decay": NON_NEGATIVE,
        "adam_b1": UNIT,
        "adam_b2": UNIT,
        "adam_eps_root": NON_NEGATIVE,
        "adam_weight_decay": NON_NEGATIVE,
        "adam_learning_rate": NON_NEGATIVE,
        "consistent_rms": NON_NEGATIVE,
    }
)
def muon(
    learning_rate: float,
    ns_coeffs: Any = DEFAULT_NS_COEFFS,
    ns_steps: int = 5,
    beta: float = 0.95,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    weight_decay_mask: MaskOrFn = None,
    mu_dtype: Any = None,
    *,
    nesterov: bool = True,
    adaptive: bool = False,
    preconditioning: str = "frobenius",
    adam_b1: float = 0.9,
    adam_b2: float = 0.999,
    adam_eps_root: float = 0.0,
    adam_weight_decay: float = 0.0,
    adam_learning_rate: float | None = None,
    muon_weight_dimension_numbers: DimNums = None,
    consistent_rms: float | None = None,
) -> GradientTransformation:
    r"""Muon for matrix-shaped parameters, AdamW for the rest (equations in this module's docstring).

    Args:
      learning_rate: a number >= 0 or a schedule.
      ns_coeffs: Newton-Schulz coefficients ``(3,)``, ``(n, 3)``, or a preset name
        (``"standard"``, ``"dion"``).
      ns_steps: Newton-Schulz iterations (an int >= 1).
      beta: decay of Muon's momentum, in [0, 1).
      eps: Muon's normalisation guard and AdamW's epsilon, >= 0.
      weight_decay: decoupled weight decay of the Muon group, >= 0.
      weight_decay_mask: which Muon parameters to decay.
      mu_dtype: dtype of the momenta (default: the parameters').
      nesterov: Nesterov look-ahead momentum (for AdamW too).
      adaptive: scale each orthogonalised update by its dual norm.
      preconditioning: ``"frobenius"``, ``"spectral"``, ``"aol"`` or ``"schatten"``.
      adam_b1: AdamW's first-moment decay, in [0, 1).
      adam_b2: AdamW's second-moment decay, in [0, 1).
      adam_eps_root: AdamW's ``eps_root``, >= 0.
      adam_weight_decay: AdamW's weight decay, >= 0.
      adam_learning_rate: AdamW's learning rate (``None``: ``learning_rate``).
      muon_weight_dimension_numbers: which parameters Muon updates and how each is a
        (batch of) matrix: one `MuonDimensionNumbers`, a tree of them with ``None`` for
        AdamW's parameters, or a function of the parameters returning one. ``None``: the
        2-D parameters, rows as fan-in.
      consistent_rms: scale Muon's updates to this RMS (``None``: width scaling).

    Returns:
      ``partition({"muon": chain(scale_by_muon(...), scale_by_shape(...),
      add_decayed_weights(...), scale_by_learning_rate(...)), "adam": adamw(...)}, labels)``.

    Raises:
      ValueError: for an unknown preset or preconditioning, bad ``ns_steps`` or
        ``ns_coeffs``.

    References:
      Jordan et al., "Muon: An optimizer for hidden layers in neural networks", 2024.
      https://kellerjordan.github.io/posts/muon/
      Bernstein & Newhouse, "Old Optimizer, New Norm: An Anthology", 2024.
      https://arxiv.org/abs/2409.20325
      Liu et al., "Muon is Scalable for LLM Training", 2025. https://arxiv.org/abs/2502.16982

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> tx = gx.muon(0.01)
      >>> params = {"w": jnp.ones((3, 2)), "b": jnp.ones(2)}
      >>> updates, state = tx.update(params, tx.init(params), params)
      >>> {k: v.shape for k, v in updates.items()} == {"w": (3, 2), "b": (2,)}
      True
    """
    if isinstance(ns_coeffs, str):
        check_choice("muon", "ns_coeffs", ns_coeffs, tuple(NS_COEFFS_PRESETS))
        ns_coeffs = NS_COEFFS_PRESETS[ns_coeffs]
    check_positive_int("muon", "ns_steps", ns_steps)
    check_choice("muon", "preconditioning", preconditioning, PRECONDITIONINGS)
    labels, dims = _labels_and_dims(muon_weight_dimension_numbers)
    muon_group = chain(
        scale_by_muon(
            ns_coeffs,
            ns_steps,
            beta,
            eps,
            mu_dtype,
            nesterov=nesterov,
            adaptive=adaptive,
            preconditioning=preconditioning,
            weight_dimension_numbers=dims,
        ),
        scale_by_shape(dims, consistent_rms),
        add_decayed_weights(weight_decay, weight_decay_mask),
        scale_by_learning_rate(learning_rate),
    )
    adam_group = adamw(
        learning_rate if adam_learning_rate is None else adam_learning_rate,
        adam_b1,
        adam_b2,
        eps,
        adam_eps_root,
        mu_dtype,
        adam_weight_decay,
        nesterov=nesterov,
    )
    return partition({"muon": muon_group, "adam": adam_group}, labels)
