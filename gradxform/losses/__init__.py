"""Loss functions under Optax's names, arguments and numbers (``optax.losses``).

Most functions return per-example losses (reduce them with ``.mean()`` yourself); ``ntxent``,
``multiclass_generalized_dice_loss`` and ``ranking_softmax_loss`` (with its default
``reduce_fn``) return one number for the batch. Unlike Optax, inputs whose shapes would
broadcast into a silently wrong answer (labels of shape ``(B, 1)`` against logits of shape
``(B,)`` give a ``(B, B)`` loss) are refused at call time with a ``ValueError`` that names
both shapes.
"""

from gradxform.losses._checks import Axis as Axis
from gradxform.losses._cross_entropy import (
    poly_loss_cross_entropy as poly_loss_cross_entropy,
    safe_softmax_cross_entropy as safe_softmax_cross_entropy,
    sigmoid_binary_cross_entropy as sigmoid_binary_cross_entropy,
    sigmoid_focal_loss as sigmoid_focal_loss,
    softmax_cross_entropy as softmax_cross_entropy,
    softmax_cross_entropy_with_integer_labels as softmax_cross_entropy_with_integer_labels,
)
from gradxform.losses._margin import (
    hinge_loss as hinge_loss,
    make_fenchel_young_loss as make_fenchel_young_loss,
    multiclass_hinge_loss as multiclass_hinge_loss,
    multiclass_perceptron_loss as multiclass_perceptron_loss,
    multiclass_sparsemax_loss as multiclass_sparsemax_loss,
    perceptron_loss as perceptron_loss,
    sparsemax_loss as sparsemax_loss,
)
from gradxform.losses._sequence import (
    ctc_loss as ctc_loss,
    ctc_loss_with_forward_probs as ctc_loss_with_forward_probs,
    ranking_softmax_loss as ranking_softmax_loss,
)
from gradxform.losses._divergences import (
    convex_kl_divergence as convex_kl_divergence,
    generalized_kl_divergence as generalized_kl_divergence,
    kl_divergence as kl_divergence,
    kl_divergence_with_log_targets as kl_divergence_with_log_targets,
)
from gradxform.losses._regression import (
    cosine_distance as cosine_distance,
    cosine_similarity as cosine_similarity,
    huber_loss as huber_loss,
    l2_loss as l2_loss,
    log_cosh as log_cosh,
    squared_error as squared_error,
)
from gradxform.losses._segmentation import (
    binary_dice_loss as binary_dice_loss,
    dice_loss as dice_loss,
    multiclass_generalized_dice_loss as multiclass_generalized_dice_loss,
)
from gradxform.losses._metric import (
    ntxent as ntxent,
    smooth_labels as smooth_labels,
    triplet_margin_loss as triplet_margin_loss,
)
