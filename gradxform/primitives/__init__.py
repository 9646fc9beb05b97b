"""Primitives: small transformations that each do one thing to the update stream."""

from gradxform.primitives.clipping import (
    clip as clip,
    clip_by_global_norm as clip_by_global_norm,
    global_norm as global_norm,
    normalize as normalize,
    normalize_by_update_norm as normalize_by_update_norm,
)
from gradxform.primitives.elementwise import (
    absolute as absolute,
    add as add,
    elementwise as elementwise,
    scale as scale,
    scale_by_learning_rate as scale_by_learning_rate,
    scale_by_schedule as scale_by_schedule,
    scale_by_sign as scale_by_sign,
    sqrt as sqrt,
    square as square,
    stateless as stateless,
    stateless_with_tree_map as stateless_with_tree_map,
)
from gradxform.primitives.lagged import (
    LaggedRmsState as LaggedRmsState,
    StepCountState as StepCountState,
    clip_by_step as clip_by_step,
    scale_by_lagged_rms as scale_by_lagged_rms,
)
from gradxform.primitives.orthogonal import (
    MuonDimensionNumbers as MuonDimensionNumbers,
    orthogonalize as orthogonalize,
    orthogonalize_via_newton_schulz as orthogonalize_via_newton_schulz,
    scale_by_shape as scale_by_shape,
)
from gradxform.primitives.moments import (
    AccumulateState as AccumulateState,
    CountState as CountState,
    EmaState as EmaState,
    MaxState as MaxState,
    TraceState as TraceState,
    UpdateRmsState as UpdateRmsState,
    accumulate as accumulate,
    bias_correction as bias_correction,
    decayed_max as decayed_max,
    ema as ema,
    scale_by_update_rms as scale_by_update_rms,
    trace as trace,
)
from gradxform.primitives.weight_decay import add_decayed_weights as add_decayed_weights

# --- issue 3, Optax's remaining optimizers (first half) ---
from gradxform.primitives.factored import (
    FactoredRmsState as FactoredRmsState,
    Sm3State as Sm3State,
    scale_by_factored_rms as scale_by_factored_rms,
    sm3_accumulator as sm3_accumulator,
)
from gradxform.primitives.history import (
    EmaDifferenceState as EmaDifferenceState,
    PreviousState as PreviousState,
    ema_difference as ema_difference,
    previous as previous,
)
from gradxform.primitives.layerwise import (
    add_scaled_params as add_scaled_params,
    scale_by_param_block_norm as scale_by_param_block_norm,
    scale_by_param_block_rms as scale_by_param_block_rms,
    scale_by_trust_ratio as scale_by_trust_ratio,
)
from gradxform.primitives.second_moments import (
    LayerMomentState as LayerMomentState,
    PredictionErrorState as PredictionErrorState,
    YogiMomentState as YogiMomentState,
    layer_moment as layer_moment,
    prediction_error as prediction_error,
    rectify as rectify,
    yogi_moment as yogi_moment,
)
# --- end issue 3 (first half) ---
# --- issue 3, optimizers Optax lacks ---
from gradxform.primitives.projections import (
    keep_params_nonnegative as keep_params_nonnegative,
    project_box as project_box,
    project_hyperplane as project_hyperplane,
    project_l1_ball as project_l1_ball,
    project_l2_ball as project_l2_ball,
    project_non_negative as project_non_negative,
    project_params as project_params,
    project_simplex as project_simplex,
)
from gradxform.primitives.proximal import (
    ProximalState as ProximalState,
    inverse_sqrt as inverse_sqrt,
    prox_elastic_net as prox_elastic_net,
    proximal_step as proximal_step,
    soft_threshold as soft_threshold,
    to_updates as to_updates,
)
from gradxform.primitives.stochastic import (
    AverageState as AverageState,
    NoiseState as NoiseState,
    add_gaussian_noise as add_gaussian_noise,
    average_iterates as average_iterates,
    averaged_iterates as averaged_iterates,
    delay_compensation as delay_compensation,
    power_decay as power_decay,
    scale_by_power_decay as scale_by_power_decay,
)
# --- end issue 3, optimizers Optax lacks ---

__all__ = [n for n in dir() if not n.startswith("_")]
