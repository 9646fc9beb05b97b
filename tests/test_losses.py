"""gx.losses against optax.losses: the same values and gradients, under jit and without, and
clear errors where Optax would broadcast mismatched shapes into a wrong answer."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradxform as gx

RNG = np.random.default_rng(0)


def _normal(*shape: int) -> jnp.ndarray:
    return jnp.asarray(RNG.standard_normal(shape), jnp.float32)


LOGITS = _normal(4, 5)
LOGITS3 = _normal(2, 3, 4)
INT_LABELS = jnp.array([0, 3, 4, 1])
ONE_HOT = jax.nn.one_hot(INT_LABELS, 5)
SOFT = jax.nn.softmax(_normal(4, 5))
MASK = jnp.asarray(RNG.random((4, 5)) > 0.3).at[:, 0].set(True)
ROW_MASK = jnp.array([True, False, True, True])
MASKED_LOGITS = LOGITS.at[0, 1].set(-jnp.inf).at[2, 4].set(-jnp.inf)
MASKED_LABELS = jax.nn.one_hot(jnp.array([0, 3, 1, 1]), 5)
BINARY_LOGITS = jnp.array([-3.0, -0.5, 0.0, 0.7, 2.0, 100.0])
BINARY = jnp.array([0.0, 1.0, 1.0, 0.0, 1.0, 0.0])
SIGNS = 2.0 * BINARY - 1.0
PREDS, TARGETS = _normal(3, 4), _normal(3, 4)
ZERO_TARGETS = jnp.array([[0.0, 0.2, 0.8], [0.5, 0.5, 0.0]])
LOG_PREDS = jax.nn.log_softmax(_normal(2, 3))
EMBEDDINGS = _normal(6, 3)
GROUPS = jnp.array([0, 0, 1, 1, 2, 2])
CTC_LOGITS = _normal(3, 7, 5)
CTC_LOGIT_PADDINGS = jnp.array([[0.0] * 7, [0.0] * 5 + [1.0] * 2, [0.0] * 6 + [1.0]])
CTC_LABELS = jnp.array([[1, 2, 2, 3], [4, 1, 0, 0], [3, 3, 1, 0]])
CTC_LABEL_PADDINGS = jnp.array([[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.0, 1.0]])
CTC = (CTC_LOGITS, CTC_LOGIT_PADDINGS, CTC_LABELS, CTC_LABEL_PADDINGS)
SEG_LOGITS = _normal(2, 3, 4, 3)
SEG_TARGETS = jax.nn.one_hot(jnp.asarray(RNG.integers(0, 3, (2, 3, 4))), 3)
RELEVANCE = jnp.asarray(RNG.integers(0, 3, (4, 5)), jnp.float32)


# (id, name, positional args, keyword args)
CASES = [
    ("softmax_ce-one_hot", "softmax_cross_entropy", (LOGITS, ONE_HOT), {}),
    ("softmax_ce-soft", "softmax_cross_entropy", (LOGITS, SOFT), {}),
    ("softmax_ce-axis0", "softmax_cross_entropy", (LOGITS, SOFT), {"axis": 0}),
    ("softmax_ce-axes", "softmax_cross_entropy", (LOGITS3, jax.nn.softmax(LOGITS3.T).T), {"axis": (1, 2)}),
    ("softmax_ce-where", "softmax_cross_entropy", (LOGITS, SOFT), {"where": MASK}),
    ("softmax_ce-row_where", "softmax_cross_entropy", (LOGITS, SOFT), {"where": ROW_MASK}),
    ("softmax_ce-minus_inf_is_nan", "softmax_cross_entropy", (MASKED_LOGITS, MASKED_LABELS), {}),
    ("safe_softmax_ce", "safe_softmax_cross_entropy", (LOGITS, SOFT), {}),
    ("safe_softmax_ce-minus_inf", "safe_softmax_cross_entropy", (MASKED_LOGITS, MASKED_LABELS), {}),
    ("int_ce", "softmax_cross_entropy_with_integer_labels", (LOGITS, INT_LABELS), {}),
    ("int_ce-axis0", "softmax_cross_entropy_with_integer_labels", (LOGITS.T, INT_LABELS), {"axis": 0}),
    ("int_ce-axes", "softmax_cross_entropy_with_integer_labels", (LOGITS3, jnp.array([5, 11])), {"axis": (1, 2)}),
    ("int_ce-where", "softmax_cross_entropy_with_integer_labels", (LOGITS, INT_LABELS * 0), {"where": MASK}),
    ("int_ce-row_where", "softmax_cross_entropy_with_integer_labels", (LOGITS, INT_LABELS), {"where": ROW_MASK}),
    ("sigmoid_bce-hard", "sigmoid_binary_cross_entropy", (BINARY_LOGITS, BINARY), {}),
    ("sigmoid_bce-soft", "sigmoid_binary_cross_entropy", (LOGITS, SOFT), {}),
    ("focal", "sigmoid_focal_loss", (BINARY_LOGITS, BINARY), {}),
    ("focal-alpha_gamma", "sigmoid_focal_loss", (BINARY_LOGITS, BINARY), {"alpha": 0.25, "gamma": 1.5}),
    ("focal-soft", "sigmoid_focal_loss", (LOGITS, SOFT), {"alpha": 0.7}),
    ("poly", "poly_loss_cross_entropy", (LOGITS, ONE_HOT), {}),
    ("poly-eps-1", "poly_loss_cross_entropy", (LOGITS, SOFT), {"epsilon": -1.0}),
    ("poly-where", "poly_loss_cross_entropy", (LOGITS, SOFT), {"where": MASK}),
    ("hinge", "hinge_loss", (BINARY_LOGITS, SIGNS), {}),
    ("perceptron", "perceptron_loss", (BINARY_LOGITS, SIGNS), {}),
    ("multiclass_hinge", "multiclass_hinge_loss", (LOGITS, INT_LABELS), {}),
    ("multiclass_perceptron", "multiclass_perceptron_loss", (LOGITS, INT_LABELS), {}),
    ("sparsemax", "sparsemax_loss", (BINARY_LOGITS, BINARY.astype(jnp.int32)), {}),
    ("multiclass_sparsemax", "multiclass_sparsemax_loss", (LOGITS, INT_LABELS), {}),
    ("ctc", "ctc_loss", CTC, {}),
    ("ctc-blank_id", "ctc_loss", CTC, {"blank_id": 2}),
    ("ctc_with_forward_probs", "ctc_loss_with_forward_probs", CTC, {"log_epsilon": -1e4}),
    ("ranking_softmax", "ranking_softmax_loss", (LOGITS, RELEVANCE), {}),
    ("ranking_softmax-where_weights", "ranking_softmax_loss", (LOGITS, RELEVANCE),
     {"where": MASK.at[1].set(False), "weights": SOFT}),
    ("ranking_softmax-sum", "ranking_softmax_loss", (LOGITS, RELEVANCE), {"where": MASK, "reduce_fn": jnp.sum}),
    ("ranking_softmax-none", "ranking_softmax_loss", (LOGITS, RELEVANCE),
     {"where": MASK.at[1].set(False), "reduce_fn": None}),
    ("ranking_softmax-no_valid_list", "ranking_softmax_loss", (LOGITS, RELEVANCE), {"where": MASK & False}),
    ("dice", "dice_loss", (SEG_LOGITS, SEG_TARGETS), {}),
    ("dice-tversky", "dice_loss", (SEG_LOGITS, SEG_TARGETS), {"alpha": 0.3, "beta": 0.7, "smooth": 0.5}),
    ("dice-none", "dice_loss", (SEG_LOGITS, SEG_TARGETS), {"reduction": "none", "axis": (1,)}),
    ("dice-weights_sum_no_bg", "dice_loss", (SEG_LOGITS, SEG_TARGETS),
     {"class_weights": jnp.array([1.0, 2.0, 3.0]), "reduction": "sum", "ignore_background": True}),
    ("dice-binary_class_axis_added", "dice_loss", (SEG_LOGITS[..., 0], SEG_TARGETS[..., :1]), {}),
    ("generalized_dice", "multiclass_generalized_dice_loss", (SEG_LOGITS, SEG_TARGETS), {"ignore_background": True}),
    ("binary_dice", "binary_dice_loss", (SEG_LOGITS[..., 0], SEG_TARGETS[..., 0]), {"smooth": 0.1}),
    ("kl", "kl_divergence", (LOG_PREDS, ZERO_TARGETS), {}),
    ("kl-axis0", "kl_divergence", (LOG_PREDS, ZERO_TARGETS), {"axis": 0}),
    ("kl-where", "kl_divergence", (LOG_PREDS, ZERO_TARGETS), {"where": ZERO_TARGETS < 0.6}),
    ("kl_log_targets", "kl_divergence_with_log_targets", (LOG_PREDS, jax.nn.log_softmax(_normal(2, 3))), {}),
    ("generalized_kl", "generalized_kl_divergence", (LOG_PREDS + 0.3, ZERO_TARGETS * 2), {}),
    ("generalized_kl-where", "generalized_kl_divergence", (LOG_PREDS, ZERO_TARGETS), {"where": ZERO_TARGETS < 0.6}),
    ("convex_kl", "convex_kl_divergence", (LOG_PREDS + 0.3, ZERO_TARGETS * 2), {"axis": 0}),
    ("squared_error", "squared_error", (PREDS, TARGETS), {}),
    ("squared_error-no_targets", "squared_error", (PREDS,), {}),
    ("l2", "l2_loss", (PREDS, TARGETS), {}),
    ("l2-no_targets", "l2_loss", (PREDS,), {}),
    ("huber", "huber_loss", (PREDS * 2, TARGETS), {}),
    ("huber-delta", "huber_loss", (PREDS * 2,), {"delta": 0.5}),
    ("log_cosh", "log_cosh", (PREDS, TARGETS), {}),
    ("log_cosh-large", "log_cosh", (jnp.array([-100.0, 100.0, 1e-4]),), {}),
    ("cosine_similarity", "cosine_similarity", (PREDS, TARGETS), {}),
    ("cosine_similarity-eps", "cosine_similarity", (PREDS * 0.1, TARGETS), {"epsilon": 0.1}),
    ("cosine_similarity-axis0", "cosine_similarity", (PREDS, TARGETS), {"axis": 0}),
    ("cosine_similarity-where", "cosine_similarity", (PREDS, TARGETS), {"where": PREDS > -0.5}),
    ("cosine_distance", "cosine_distance", (PREDS, TARGETS), {"epsilon": 1e-3}),
    ("smooth_labels", "smooth_labels", (ONE_HOT, 0.1), {}),
    ("smooth_labels-axis0", "smooth_labels", (ONE_HOT, 0.2), {"axis": 0}),
    ("smooth_labels-where", "smooth_labels", (ONE_HOT, 0.1), {"where": MASK}),
    ("triplet", "triplet_margin_loss", (PREDS, TARGETS, _normal(3, 4)), {}),
    ("triplet-p4", "triplet_margin_loss", (PREDS, TARGETS, _normal(3, 4)), {"norm_degree": 4, "margin": 0.5}),
    ("ntxent", "ntxent", (EMBEDDINGS, GROUPS), {}),
    ("ntxent-temperature", "ntxent", (EMBEDDINGS, GROUPS), {"temperature": 0.5}),
]
IDS = [case[0] for case in CASES]


# Cases whose gradient is not compared (NaN by design, or a tuple of outputs): their values are
# compared under jit on their own.
NO_GRAD = {"softmax_ce-minus_inf_is_nan", "ctc_with_forward_probs"}
GRAD_CASES = [case for case in CASES if case[0] not in NO_GRAD]
JIT_ONLY_CASES = [case for case in CASES if case[0] in NO_GRAD]


@pytest.fixture(autouse=True)
def _no_deprecation_noise():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def _assert_same(ours, theirs, rtol=2e-6, atol=1e-6):
    assert jax.tree.structure(ours) == jax.tree.structure(theirs)
    for mine, optaxs in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
        assert mine.shape == optaxs.shape and mine.dtype == optaxs.dtype
        np.testing.assert_allclose(mine, optaxs, rtol=rtol, atol=atol)


@pytest.fixture(scope="module")
def jitted_values_and_grads():
    """For every gradient case, the value under jit and the gradient with respect to the first
    (floating) argument, from one compiled program per library (compiling a program per case
    would make up most of this file's run time)."""

    def all_cases(module):
        def run():
            out = {}
            for case_id, name, args, kwargs in GRAD_CASES:
                fn = lambda x, name=name, args=args, kwargs=kwargs: getattr(module, name)(x, *args[1:], **kwargs)
                out[case_id] = (fn(args[0]), jax.grad(lambda y, fn=fn: jnp.sum(fn(y)))(args[0]))
            return out

        return jax.jit(run)()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return all_cases(gx.losses), all_cases(optax.losses)


@pytest.mark.parametrize("case_id, name, args, kwargs", CASES, ids=IDS)
def test_eager_value_matches_optax(case_id, name, args, kwargs, jitted_values_and_grads):
    ours = getattr(gx.losses, name)(*args, **kwargs)
    if case_id in NO_GRAD:
        theirs = getattr(optax.losses, name)(*args, **kwargs)
    else:  # Optax's value under jit, computed once for all cases; ours runs op by op.
        theirs = jitted_values_and_grads[1][case_id][0]
    _assert_same(ours, theirs)


@pytest.mark.parametrize("case_id, name, args, kwargs", JIT_ONLY_CASES, ids=[c[0] for c in JIT_ONLY_CASES])
def test_jitted_value_matches_optax(case_id, name, args, kwargs):
    def jitted(module):
        return jax.jit(lambda *a: getattr(module, name)(*a, **kwargs))(*args)

    _assert_same(jitted(gx.losses), jitted(optax.losses))


@pytest.mark.parametrize("case_id", [c[0] for c in GRAD_CASES])
def test_jitted_value_and_gradient_match_optax(case_id, jitted_values_and_grads):
    ours, theirs = (results[case_id] for results in jitted_values_and_grads)
    _assert_same(ours[0], theirs[0])
    assert np.all(np.isfinite(ours[1]))
    _assert_same(ours[1], theirs[1], rtol=1e-5)


def test_safe_softmax_cross_entropy_is_finite_where_the_plain_one_is_not():
    assert np.all(np.isnan(gx.softmax_cross_entropy(MASKED_LOGITS, MASKED_LABELS)[jnp.array([0, 2])]))
    assert np.all(np.isfinite(gx.losses.safe_softmax_cross_entropy(MASKED_LOGITS, MASKED_LABELS)))


def test_kl_divergence_gradient_in_zero_targets_is_zero_not_nan():
    # Optax's gradient with respect to ``targets`` is NaN where a target is 0; ours is finite.
    grad = jax.grad(lambda t: gx.kl_divergence(LOG_PREDS, t).sum())(ZERO_TARGETS)
    assert np.all(np.isfinite(grad))


@pytest.mark.parametrize("norm_degree", [1, 2, 3], ids=["L1", "L2", "L3"])
def test_triplet_margin_loss_against_numpy(norm_degree):
    a, p, n = (np.asarray(x, np.float64) for x in (PREDS, TARGETS, -TARGETS))

    def d(x, y):
        return (np.sum(np.abs(x - y) ** norm_degree, axis=-1) + 1e-6) ** (1 / norm_degree)

    expected = np.maximum(d(a, p) - d(a, n) + 1.0, 0)
    ours = gx.losses.triplet_margin_loss(PREDS, TARGETS, -TARGETS, norm_degree=norm_degree)
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6)


def test_convex_kl_divergence_warns_and_equals_generalized():
    with pytest.warns(DeprecationWarning, match="generalized_kl_divergence"):
        old = gx.convex_kl_divergence(LOG_PREDS, ZERO_TARGETS)
    np.testing.assert_array_equal(old, gx.generalized_kl_divergence(LOG_PREDS, ZERO_TARGETS))


def test_top_level_names_are_exactly_those_optax_has_at_top_level():
    ours = {n for n in dir(gx.losses) if not n.startswith("_") and callable(getattr(gx.losses, n))}
    theirs = {n for n in dir(optax.losses) if not n.startswith("_")}
    shared = ours & theirs
    assert {c[1] for c in CASES} <= shared
    for name in shared:
        assert (getattr(gx, name, None) is getattr(gx.losses, name)) == hasattr(optax, name), name


BAD_SHAPES = [
    ("bce-column_labels", lambda: gx.sigmoid_binary_cross_entropy(jnp.zeros(4), jnp.zeros((4, 1))), "(4,)",
     "(4, 1)"),
    ("focal-column_labels", lambda: gx.sigmoid_focal_loss(jnp.zeros(4), jnp.zeros((4, 1))), "(4,)", "(4, 1)"),
    ("softmax_ce-incompatible", lambda: gx.softmax_cross_entropy(LOGITS, SOFT.T), "(4, 5)", "(5, 4)"),
    ("softmax_ce-enlarging", lambda: gx.softmax_cross_entropy(LOGITS, SOFT[:, None]), "(4, 5)", "(4, 1, 5)"),
    ("int_ce-column_labels", lambda: gx.softmax_cross_entropy_with_integer_labels(LOGITS, INT_LABELS[:, None]),
     "(4, 5)", "(4, 1)"),
    ("hinge-column_targets", lambda: gx.hinge_loss(BINARY_LOGITS, SIGNS[:, None]), "(6,)", "(6, 1)"),
    ("multiclass_hinge-labels", lambda: gx.losses.multiclass_hinge_loss(LOGITS, INT_LABELS[:3]), "(4, 5)", "(3,)"),
    ("squared_error", lambda: gx.squared_error(PREDS, TARGETS[:1]), "(3, 4)", "(1, 4)"),
    ("huber-column_targets", lambda: gx.huber_loss(jnp.zeros(3), jnp.zeros((3, 1))), "(3,)", "(3, 1)"),
    ("kl-incompatible", lambda: gx.kl_divergence(LOG_PREDS, ZERO_TARGETS.T), "(2, 3)", "(3, 2)"),
    ("ntxent-labels", lambda: gx.ntxent(EMBEDDINGS, GROUPS[:4]), "(6, 3)", "(4,)"),
    ("ctc-labels", lambda: gx.ctc_loss(CTC_LOGITS, CTC_LOGIT_PADDINGS, CTC_LABELS[:2], CTC_LABEL_PADDINGS),
     "(3, 7, 5)", "(2, 4)"),
    ("dice-targets", lambda: gx.losses.dice_loss(SEG_LOGITS, SEG_TARGETS[:1]), "(2, 3, 4, 3)", "(1, 3, 4, 3)"),
]


@pytest.mark.parametrize("case_id, call, first, second", BAD_SHAPES, ids=[c[0] for c in BAD_SHAPES])
def test_mismatched_shapes_raise_naming_both(case_id, call, first, second):
    with pytest.raises(ValueError) as info:
        call()
    assert first in str(info.value) and second in str(info.value)


def test_mismatched_shapes_raise_under_jit_too():
    with pytest.raises(ValueError, match=r"\(4, 1\)"):
        jax.jit(gx.sigmoid_binary_cross_entropy)(jnp.zeros(4), jnp.zeros((4, 1)))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: gx.softmax_cross_entropy(jnp.zeros((2, 3), jnp.int32), ONE_HOT[:2, :3]), "logits"),
        (lambda: gx.softmax_cross_entropy_with_integer_labels(LOGITS, ONE_HOT.sum(-1)), "labels"),
    ],
    ids=["integer_logits", "float_labels"],
)
def test_wrong_dtype_raises_type_error(call, match):
    with pytest.raises(TypeError, match=match):
        call()


@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan"), np.array([0.1, 2.0])])
def test_smooth_labels_refuses_alpha_outside_unit_interval(alpha):
    with pytest.raises(ValueError, match="alpha must be in"):
        gx.smooth_labels(ONE_HOT, alpha)


def test_smooth_labels_takes_a_traced_alpha():
    ours = jax.jit(gx.smooth_labels)(ONE_HOT, jnp.float32(0.3))
    _assert_same(ours, optax.smooth_labels(ONE_HOT, 0.3))


def test_fenchel_young_loss_of_logsumexp_matches_optax_and_is_cross_entropy():
    from jax.scipy.special import logsumexp

    ours = gx.losses.make_fenchel_young_loss(logsumexp)(LOGITS, SOFT)
    _assert_same(ours, optax.losses.make_fenchel_young_loss(logsumexp)(LOGITS, SOFT))
    np.testing.assert_allclose(ours, gx.softmax_cross_entropy(LOGITS, SOFT), rtol=1e-5, atol=1e-6)  # rows sum to 1


def test_binary_dice_loss_takes_probabilities_where_optax_refuses_them():
    probs, targets = jax.nn.sigmoid(SEG_LOGITS[..., 0]), SEG_TARGETS[..., 0]
    with pytest.raises(ValueError):
        optax.losses.binary_dice_loss(probs, targets, apply_sigmoid=False)
    np.testing.assert_allclose(
        gx.losses.binary_dice_loss(probs, targets, apply_sigmoid=False),
        optax.losses.binary_dice_loss(SEG_LOGITS[..., 0], targets),
        rtol=1e-6,
    )


def test_dice_loss_checks_probabilities_eagerly_and_runs_under_jit():
    with pytest.raises(ValueError, match="sum to 1"):
        gx.losses.dice_loss(SEG_TARGETS * 0.5, SEG_TARGETS, apply_softmax=False)
    probs = jax.nn.softmax(SEG_LOGITS)
    jitted = jax.jit(lambda p: gx.losses.dice_loss(p, SEG_TARGETS, apply_softmax=False))(probs)
    np.testing.assert_allclose(jitted, optax.losses.dice_loss(probs, SEG_TARGETS, apply_softmax=False), rtol=1e-6)


def test_dice_loss_refuses_an_unknown_reduction():
    with pytest.raises(ValueError, match="reduction='avg'"):
        gx.losses.dice_loss(SEG_LOGITS, SEG_TARGETS, reduction="avg")


@pytest.mark.parametrize(
    "shape, labels_shape, axis",
    [((0, 5), (0,), -1), ((0, 0), (0,), -1), ((3, 0), (3,), -1), ((0, 2, 3), (0,), (1, 2)), ((2, 0, 3), (2, 3), 1)],
    ids=["empty_batch", "empty_both", "no_classes", "empty_batch_axes", "no_classes_axis1"],
)
def test_integer_label_cross_entropy_of_an_empty_batch_is_empty(shape, labels_shape, axis):
    loss = gx.softmax_cross_entropy_with_integer_labels(jnp.zeros(shape), jnp.zeros(labels_shape, jnp.int32), axis=axis)
    assert loss.shape == labels_shape and loss.dtype == jnp.float32
    if labels_shape == (0,) and shape[-1] == 5:
        _assert_same(loss, optax.losses.softmax_cross_entropy_with_integer_labels(jnp.zeros(shape), jnp.zeros(0, int)))


BAD_MASKS = [
    ("softmax_ce-per_class_axis0", lambda w: gx.softmax_cross_entropy(LOGITS, SOFT, where=w), jnp.ones(5, bool)),
    ("softmax_ce-rows", lambda w: gx.softmax_cross_entropy(LOGITS, SOFT, where=w), jnp.ones((3, 5), bool)),
    ("int_ce-per_class", lambda w: gx.softmax_cross_entropy_with_integer_labels(LOGITS, INT_LABELS, where=w),
     jnp.ones(5, bool)),
    ("int_ce-axes", lambda w: gx.softmax_cross_entropy_with_integer_labels(LOGITS3, jnp.array([5, 11]), axis=(1, 2),
                                                                            where=w), jnp.ones(3, bool)),
    ("poly-rows", lambda w: gx.losses.poly_loss_cross_entropy(LOGITS, SOFT, where=w), jnp.ones(3, bool)),
    ("kl", lambda w: gx.kl_divergence(LOG_PREDS, ZERO_TARGETS, where=w), jnp.ones((3, 2), bool)),
    ("kl_log_targets", lambda w: gx.losses.kl_divergence_with_log_targets(LOG_PREDS, LOG_PREDS, where=w),
     jnp.ones((3, 2), bool)),
    ("cosine", lambda w: gx.cosine_similarity(PREDS, TARGETS, where=w), jnp.ones((4, 3), bool)),
    ("ranking", lambda w: gx.losses.ranking_softmax_loss(LOGITS, RELEVANCE, where=w), jnp.ones((2, 4, 5), bool)),
]


@pytest.mark.parametrize("case_id, call, mask", BAD_MASKS, ids=[c[0] for c in BAD_MASKS])
def test_a_mask_of_the_wrong_shape_or_dtype_is_refused_naming_where(case_id, call, mask):
    with pytest.raises(ValueError, match=r"where") as info:
        call(mask)
    assert str(mask.shape) in str(info.value)
    with pytest.raises(TypeError, match=r"where must be a boolean mask.*float32"):
        call(jnp.ones(mask.shape, jnp.float32))


def test_poly_loss_takes_a_mask_per_example_like_softmax_cross_entropy():
    ours = gx.losses.poly_loss_cross_entropy(LOGITS, SOFT, where=ROW_MASK)
    full = jnp.broadcast_to(ROW_MASK[:, None], LOGITS.shape)
    np.testing.assert_array_equal(ours, gx.losses.poly_loss_cross_entropy(LOGITS, SOFT, where=full))


@pytest.mark.parametrize("name", ["ctc_loss", "ctc_loss_with_forward_probs"])
def test_ctc_float_labels_are_refused_naming_labels(name):
    with pytest.raises(TypeError, match=r"labels must have an integer dtype.*float32"):
        getattr(gx.losses, name)(CTC_LOGITS, CTC_LOGIT_PADDINGS, CTC_LABELS.astype(jnp.float32), CTC_LABEL_PADDINGS)
