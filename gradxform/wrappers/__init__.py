"""Wrappers a real training run needs: parameter groups, safe steps, clipping, accumulation,
averaging, noise, mixed precision and step-size tuning (Mechanic). Each module holds one family;
this package re-exports."""

from gradxform.wrappers.accumulation import (
    ApplyEveryState as ApplyEveryState,
    MultiSteps as MultiSteps,
    MultiStepsState as MultiStepsState,
    apply_every as apply_every,
    multi_steps as multi_steps,
)
from gradxform.wrappers.averaging import (
    AveragedParamsState as AveragedParamsState,
    LookaheadParams as LookaheadParams,
    LookaheadState as LookaheadState,
    PeriodicAverageState as PeriodicAverageState,
    averaged_params as averaged_params,
    ema_params as ema_params,
    incremental_update as incremental_update,
    lookahead as lookahead,
    periodic_average as periodic_average,
    periodic_update as periodic_update,
    swa as swa,
)
from gradxform.wrappers.clipping import (
    adaptive_grad_clip as adaptive_grad_clip,
    clip_by_block_rms as clip_by_block_rms,
    clip_by_norm as clip_by_norm,
    per_example_global_norm_clip as per_example_global_norm_clip,
    per_example_layer_norm_clip as per_example_layer_norm_clip,
    unitwise_clip as unitwise_clip,
    unitwise_norm as unitwise_norm,
)
from gradxform.wrappers.complex import (
    SplitRealAndImaginaryArrays as SplitRealAndImaginaryArrays,
    SplitRealAndImaginaryState as SplitRealAndImaginaryState,
    split_real_and_imaginary as split_real_and_imaginary,
)
from gradxform.wrappers.inject import (
    InjectStatefulHyperparamsState as InjectStatefulHyperparamsState,
    inject_hyperparams as inject_hyperparams,
    inject_stateful_hyperparams as inject_stateful_hyperparams,
)
from gradxform.wrappers.finite import (
    ApplyIfFiniteState as ApplyIfFiniteState,
    ConditionallyMaskState as ConditionallyMaskState,
    ConditionallyTransformState as ConditionallyTransformState,
    ZeroNansState as ZeroNansState,
    all_finite as all_finite,
    apply_if_finite as apply_if_finite,
    conditionally_mask as conditionally_mask,
    conditionally_transform as conditionally_transform,
    skip_large_updates as skip_large_updates,
    skip_not_finite as skip_not_finite,
    zero_nans as zero_nans,
)
from gradxform.wrappers.groups import (
    MaskedNode as MaskedNode,
    MaskedState as MaskedState,
    PartitionState as PartitionState,
    freeze as freeze,
    masked as masked,
    multi_transform as multi_transform,
    param_group as param_group,
    partition as partition,
    selective_transform as selective_transform,
    set_to_zero as set_to_zero,
)
from gradxform.wrappers.layout import (
    Layout as Layout,
    Packed as Packed,
    bucket_layout as bucket_layout,
    bucketed as bucketed,
    flat as flat,
    flatten as flatten,
)
from gradxform.wrappers.loss_scale import (
    DynamicLossScaleState as DynamicLossScaleState,
    dynamic_loss_scale as dynamic_loss_scale,
    loss_scale as loss_scale,
    scale_gradient as scale_gradient,
    scale_loss as scale_loss,
)
from gradxform.wrappers.mechanic import MechanicState as MechanicState, mechanize as mechanize
from gradxform.wrappers.monitoring import (
    MonitorState as MonitorState,
    SnapshotState as SnapshotState,
    measure_with_ema as measure_with_ema,
    monitor as monitor,
    snapshot as snapshot,
)
from gradxform.wrappers.noise import AddNoiseState as AddNoiseState, add_noise as add_noise, centralize as centralize
from gradxform.wrappers.paths import by_path as by_path, param_paths as param_paths
from gradxform.wrappers.precision import (
    MultiPrecisionState as MultiPrecisionState,
    master_params as master_params,
    multi_precision as multi_precision,
)
from gradxform.wrappers.privacy import (
    DifferentiallyPrivateAggregateState as DifferentiallyPrivateAggregateState,
    differentially_private_aggregate as differentially_private_aggregate,
)
from gradxform.wrappers.sam import SAMState as SAMState, sam as sam
from gradxform.wrappers.quantized import (
    QuantizedArray as QuantizedArray,
    QuantizedState as QuantizedState,
    dequantize as dequantize,
    dynamic_map as dynamic_map,
    quantize as quantize,
    quantized_state as quantized_state,
)

__all__ = [n for n in dir() if not n.startswith("_")]
