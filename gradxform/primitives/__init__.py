"""Primitives: small transformations that each do one thing to the update stream."""

from gradxform.primitives.clipping import clip as clip, clip_by_global_norm as clip_by_global_norm, global_norm as global_norm
from gradxform.primitives.elementwise import (
    absolute as absolute,
    add as add,
    elementwise as elementwise,
    scale as scale,
    scale_by_learning_rate as scale_by_learning_rate,
    scale_by_sign as scale_by_sign,
    sqrt as sqrt,
    square as square,
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

__all__ = [n for n in dir() if not n.startswith("_")]
