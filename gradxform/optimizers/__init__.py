"""Optimizers: short compositions of primitives and combinators, one module per family."""

from gradxform.optimizers.adam import (
    adam as adam,
    adamax as adamax,
    adamaxw as adamaxw,
    adamw as adamw,
    amsgrad as amsgrad,
    nadam as nadam,
    nadamw as nadamw,
    scale_by_adam as scale_by_adam,
    scale_by_adamax as scale_by_adamax,
    scale_by_amsgrad as scale_by_amsgrad,
)
from gradxform.optimizers.rmsprop import (
    adadelta as adadelta,
    adagrad as adagrad,
    rmsprop as rmsprop,
    scale_by_adadelta as scale_by_adadelta,
    scale_by_rms as scale_by_rms,
    scale_by_rss as scale_by_rss,
    scale_by_stddev as scale_by_stddev,
)
from gradxform.optimizers.sgd import (
    interpolate_momentum as interpolate_momentum,
    lion as lion,
    refined_sign as refined_sign,
    scale_by_lion as scale_by_lion,
    sgd as sgd,
    sign_sgd as sign_sgd,
    signum as signum,
    smooth_sign as smooth_sign,
)

# --- issue 3, optimizers Optax lacks ---
from gradxform.optimizers.constrained import (
    PROJECTION_SETS as PROJECTION_SETS,
    projected as projected,
    proximal_adagrad as proximal_adagrad,
    proximal_gradient as proximal_gradient,
)
from gradxform.optimizers.lbsgd import lars_layer_rate as lars_layer_rate, lbsgd as lbsgd, lbsgd_warmup as lbsgd_warmup
from gradxform.optimizers.online import FtmlState as FtmlState, FtrlState as FtrlState, ftml as ftml, ftrl as ftrl
from gradxform.optimizers.stochastic import asgd as asgd, dcasgd as dcasgd, sgld as sgld
# --- end issue 3, optimizers Optax lacks ---

# --- issue 3, Optax's remaining optimizers (first half) ---
from gradxform.optimizers.adaptive_variants import (
    adabelief as adabelief,
    adan as adan,
    novograd as novograd,
    radam as radam,
    scale_by_adan as scale_by_adan,
    scale_by_belief as scale_by_belief,
    scale_by_novograd as scale_by_novograd,
    scale_by_radam as scale_by_radam,
    scale_by_yogi as scale_by_yogi,
    yogi as yogi,
)
from gradxform.optimizers.factored import adafactor as adafactor, scale_by_sm3 as scale_by_sm3, sm3 as sm3
from gradxform.optimizers.large_batch import fromage as fromage, lamb as lamb, lars as lars
from gradxform.optimizers.noisy import noisy_sgd as noisy_sgd
from gradxform.optimizers.private import dpsgd as dpsgd
from gradxform.optimizers.optimistic import (
    optimistic_adam as optimistic_adam,
    optimistic_adam_v2 as optimistic_adam_v2,
    optimistic_gradient_descent as optimistic_gradient_descent,
    scale_by_optimistic_gradient as scale_by_optimistic_gradient,
)
# --- end issue 3 (first half) ---
# --- issue 3, Optax's remaining optimizers (second half) ---
from gradxform.optimizers.lbfgs import ScaleByLBFGSState as ScaleByLBFGSState, lbfgs as lbfgs, scale_by_lbfgs as scale_by_lbfgs
from gradxform.optimizers.linesearch import (
    BacktrackingLinesearchInfo as BacktrackingLinesearchInfo,
    ScaleByBacktrackingLinesearchState as ScaleByBacktrackingLinesearchState,
    scale_by_backtracking_linesearch as scale_by_backtracking_linesearch,
    value_and_grad_from_state as value_and_grad_from_state,
)
from gradxform.optimizers.muon import muon as muon, scale_by_muon as scale_by_muon
from gradxform.optimizers.parameter_free import (
    COCOBState as COCOBState,
    DoGState as DoGState,
    DoWGState as DoWGState,
    ScaleByDistanceOverGradientsState as ScaleByDistanceOverGradientsState,
    cocob as cocob,
    dog as dog,
    dowg as dowg,
    scale_by_cocob as scale_by_cocob,
    scale_by_distance_over_gradients as scale_by_distance_over_gradients,
    scale_by_dog as scale_by_dog,
    scale_by_dowg as scale_by_dowg,
)
from gradxform.optimizers.polyak import polyak_sgd as polyak_sgd, scale_by_polyak as scale_by_polyak
from gradxform.optimizers.recent_adaptive import (
    ProdigyState as ProdigyState,
    ademamix as ademamix,
    adopt as adopt,
    prodigy as prodigy,
    scale_by_ademamix as scale_by_ademamix,
    scale_by_adopt as scale_by_adopt,
)
from gradxform.optimizers.rprop import ScaleByRpropState as ScaleByRpropState, rprop as rprop, scale_by_rprop as scale_by_rprop
from gradxform.optimizers.schedule_free import (
    ScheduleFreeState as ScheduleFreeState,
    schedule_free as schedule_free,
    schedule_free_adamw as schedule_free_adamw,
    schedule_free_eval_params as schedule_free_eval_params,
    schedule_free_sgd as schedule_free_sgd,
)
from gradxform.optimizers.zoom import (
    ScaleByZoomLinesearchState as ScaleByZoomLinesearchState,
    ZoomLinesearchInfo as ZoomLinesearchInfo,
    scale_by_zoom_linesearch as scale_by_zoom_linesearch,
)
# --- end issue 3 (second half) ---

# --- Optax contrib: MADGRAD, Simplified AdEMAMix, ACProp ---
from gradxform.optimizers.contrib_adaptive import (
    MadgradState as MadgradState,
    acprop as acprop,
    madgrad as madgrad,
    scale_by_acprop as scale_by_acprop,
    scale_by_madgrad as scale_by_madgrad,
    scale_by_simplified_ademamix as scale_by_simplified_ademamix,
    simplified_ademamix as simplified_ademamix,
)
# --- end Optax contrib: MADGRAD, Simplified AdEMAMix, ACProp ---

# --- Optax contrib: D-Adapt AdamW, MoMo, MoMo-Adam ---
from gradxform.optimizers.adaptive_step import (
    DAdaptAdamWState as DAdaptAdamWState,
    MomoAdamState as MomoAdamState,
    MomoState as MomoState,
    dadapt_adamw as dadapt_adamw,
    momo as momo,
    momo_adam as momo_adam,
)
# --- end Optax contrib: D-Adapt AdamW, MoMo, MoMo-Adam ---

# --- Optax contrib: Sophia, GaLore ---
from gradxform.optimizers.curvature import SophiaState as SophiaState, scale_by_sophia as scale_by_sophia, sophia as sophia
from gradxform.optimizers.low_rank import (
    GaLoreDimensionNumbers as GaLoreDimensionNumbers,
    GaLoreState as GaLoreState,
    galore as galore,
    scale_by_galore as scale_by_galore,
)
# --- end Optax contrib: Sophia, GaLore ---

__all__ = [n for n in dir() if not n.startswith("_")]
