"""gradxform: composable gradient transformations for JAX.

``import gradxform as gx`` gives every public name: ``gx.adam``, ``gx.chain``,
``gx.hyperparams``, ``gx.describe``, ``gx.tree.norm``, ... Each subpackage re-exports what it defines.
"""

from gradxform._factory import (
    HyperparamsState as HyperparamsState,
    hyperparams as hyperparams,
    set_hyperparams as set_hyperparams,
    transformation as transformation,
)
from gradxform.combinators import (
    BranchState as BranchState,
    StageError as StageError,
    branch as branch,
    chain as chain,
    identity as identity,
    named as named,
    named_chain as named_chain,
    ratio as ratio,
)
from gradxform.config import (
    ConfigError as ConfigError,
    from_config as from_config,
    load_yaml as load_yaml,
    save_yaml as save_yaml,
    to_config as to_config,
)
from gradxform.core import (
    EmptyState as EmptyState,
    GradientTransformation as GradientTransformation,
    Schedule as Schedule,
    apply_updates as apply_updates,
)
from gradxform.kernels import kernel_status as kernel_status, update_and_apply as update_and_apply
from gradxform.inspect import Diagram as Diagram, describe as describe, diagram as diagram
from gradxform.tracing import OptimizerTrace as OptimizerTrace, trace_optimizer as trace_optimizer
# Loss functions that Optax also exports at top level; the rest are under gx.losses.
from gradxform.losses import (
    convex_kl_divergence as convex_kl_divergence,
    cosine_distance as cosine_distance,
    cosine_similarity as cosine_similarity,
    ctc_loss as ctc_loss,
    ctc_loss_with_forward_probs as ctc_loss_with_forward_probs,
    generalized_kl_divergence as generalized_kl_divergence,
    hinge_loss as hinge_loss,
    huber_loss as huber_loss,
    kl_divergence as kl_divergence,
    l2_loss as l2_loss,
    log_cosh as log_cosh,
    ntxent as ntxent,
    safe_softmax_cross_entropy as safe_softmax_cross_entropy,
    sigmoid_binary_cross_entropy as sigmoid_binary_cross_entropy,
    sigmoid_focal_loss as sigmoid_focal_loss,
    smooth_labels as smooth_labels,
    softmax_cross_entropy as softmax_cross_entropy,
    softmax_cross_entropy_with_integer_labels as softmax_cross_entropy_with_integer_labels,
    squared_error as squared_error,
)
from gradxform.optimizers import *  # noqa: F401,F403
from gradxform.primitives import *  # noqa: F401,F403
from gradxform.schedules import *  # noqa: F401,F403
from gradxform.wrappers import *  # noqa: F401,F403
from gradxform.distributed import *  # noqa: F401,F403
from gradxform import assignment as assignment
from gradxform import losses as losses
from gradxform import perturbations as perturbations
from gradxform import microbatching as microbatching
from gradxform.microbatching import microbatch as microbatch
from gradxform import schedules as schedules
from gradxform.primitives import projections as projections
from gradxform import tree as tree
from gradxform.protocol import init_empty_state as init_empty_state, with_extra_args_support as with_extra_args_support
from gradxform.tree import (
    map_params as tree_map_params,
    update_infinity_moment as update_infinity_moment,
    update_moment as update_moment,
    update_moment_per_elem_norm as update_moment_per_elem_norm,
)
from gradxform import second_order as second_order
from gradxform.hutchinson import (
    HutchinsonState as HutchinsonState,
    hutchinson_estimator_diag_hessian as hutchinson_estimator_diag_hessian,
)
from gradxform.linalg import (
    matrix_inverse_pth_root as matrix_inverse_pth_root,
    nnls as nnls,
    power_iteration as power_iteration,
)
from gradxform.core import safe_increment as safe_increment
from gradxform.numerics import (
    safe_int32_increment as safe_int32_increment,
    safe_norm as safe_norm,
    safe_root_mean_squares as safe_root_mean_squares,
)

__version__ = "0.1.0"
