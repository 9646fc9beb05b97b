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
from gradxform.optimizers import *  # noqa: F401,F403
from gradxform.primitives import *  # noqa: F401,F403
from gradxform.schedules import *  # noqa: F401,F403
from gradxform.wrappers import *  # noqa: F401,F403
from gradxform.distributed import *  # noqa: F401,F403
from gradxform import schedules as schedules
from gradxform.primitives import projections as projections
from gradxform import tree as tree
from gradxform.core import safe_increment as safe_increment
from gradxform.numerics import (
    safe_int32_increment as safe_int32_increment,
    safe_norm as safe_norm,
    safe_root_mean_squares as safe_root_mean_squares,
)

__version__ = "0.1.0"
