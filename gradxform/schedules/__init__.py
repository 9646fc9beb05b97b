"""Schedules, reduce-on-plateau and batch-size control.

Every schedule is a `gradxform.core.Schedule`: a frozen dataclass whose fields are the
arguments of the public function that made it, and whose numeric fields are kept in the
optimizer's state (changeable between steps without recompiling). ``SCHEDULE_TYPES`` maps
each class name to its class, so a schedule is rebuilt from its type name and fields.
"""

from gradxform.schedules.batch_size import (
    BatchSizePlan as BatchSizePlan,
    MicroBatchState as MicroBatchState,
    TrainingProfile as TrainingProfile,
    accumulate_micro_batches as accumulate_micro_batches,
    lr_to_batch_size_schedule as lr_to_batch_size_schedule,
    noise_scale as noise_scale,
    training_profile as training_profile,
)
from gradxform.schedules.cyclic import CyclicSchedule as CyclicSchedule, cyclic_schedule as cyclic_schedule
from gradxform.schedules.decay import (
    ConstantSchedule as ConstantSchedule,
    CosineDecaySchedule as CosineDecaySchedule,
    InverseTimeDecay as InverseTimeDecay,
    LinearSchedule as LinearSchedule,
    PolynomialSchedule as PolynomialSchedule,
    constant_schedule as constant_schedule,
    cosine_decay_schedule as cosine_decay_schedule,
    inverse_time_decay as inverse_time_decay,
    linear_schedule as linear_schedule,
    polynomial_schedule as polynomial_schedule,
)
from gradxform.schedules.join import JoinedSchedule as JoinedSchedule, join_schedules as join_schedules
from gradxform.schedules.multiplicative import (
    ExponentialDecay as ExponentialDecay,
    MultiplicativeSchedule as MultiplicativeSchedule,
    StepDecaySchedule as StepDecaySchedule,
    exponential_decay as exponential_decay,
    multiplicative_schedule as multiplicative_schedule,
    step_decay_schedule as step_decay_schedule,
)
from gradxform.schedules.piecewise import (
    CosineOnecycleSchedule as CosineOnecycleSchedule,
    LinearOnecycleSchedule as LinearOnecycleSchedule,
    PiecewiseConstantSchedule as PiecewiseConstantSchedule,
    PiecewiseInterpolateSchedule as PiecewiseInterpolateSchedule,
    StepwiseSchedule as StepwiseSchedule,
    cosine_onecycle_schedule as cosine_onecycle_schedule,
    linear_onecycle_schedule as linear_onecycle_schedule,
    piecewise_constant_schedule as piecewise_constant_schedule,
    piecewise_interpolate_schedule as piecewise_interpolate_schedule,
    stepwise_schedule as stepwise_schedule,
)
from gradxform.schedules.plateau import (
    ReduceLROnPlateauState as ReduceLROnPlateauState,
    plateau_scale as plateau_scale,
    reduce_on_plateau as reduce_on_plateau,
)
from gradxform.schedules.plotting import evaluate as evaluate, plot as plot
from gradxform.schedules.warmup import (
    SGDRSchedule as SGDRSchedule,
    WarmupConstantSchedule as WarmupConstantSchedule,
    WarmupCosineDecaySchedule as WarmupCosineDecaySchedule,
    WarmupExponentialDecaySchedule as WarmupExponentialDecaySchedule,
    sgdr_schedule as sgdr_schedule,
    warmup_constant_schedule as warmup_constant_schedule,
    warmup_cosine_decay_schedule as warmup_cosine_decay_schedule,
    warmup_exponential_decay_schedule as warmup_exponential_decay_schedule,
)

SCHEDULE_TYPES: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        ConstantSchedule,
        PolynomialSchedule,
        LinearSchedule,
        ExponentialDecay,
        CosineDecaySchedule,
        InverseTimeDecay,
        StepDecaySchedule,
        MultiplicativeSchedule,
        PiecewiseConstantSchedule,
        PiecewiseInterpolateSchedule,
        LinearOnecycleSchedule,
        CosineOnecycleSchedule,
        StepwiseSchedule,
        JoinedSchedule,
        WarmupConstantSchedule,
        WarmupCosineDecaySchedule,
        WarmupExponentialDecaySchedule,
        SGDRSchedule,
        CyclicSchedule,
    )
}

_MODULES = ("batch_size", "cyclic", "decay", "join", "multiplicative", "piecewise", "plateau", "plotting", "warmup")

# plot and evaluate stay out of __all__ so that `import gradxform as gx` keeps them under
# gx.schedules (gx.schedules.plot) rather than at the top level.
__all__ = sorted(n for n in dir() if not n.startswith("_") and n not in _MODULES + ("plot", "evaluate"))
