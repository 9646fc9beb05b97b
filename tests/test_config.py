"""Optimizers as data: to_config / from_config round trips and config error messages."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml

import gradxform as gx
from gradxform._factory import REGISTRY  # every public factory, by name

# Two leaves of one shape: each jnp operation compiles once for the whole file (matrices,
# so that Muon's orthogonalization applies too).
PARAMS = {
    "w": jnp.asarray(np.random.default_rng(0).normal(size=(3, 2)), jnp.float32),
    "b": jnp.asarray(np.random.default_rng(1).normal(size=(3, 2)), jnp.float32),
}
STEPS = 1


def objective(params: Any) -> jax.Array:
    """A quadratic with its minimum at 0.25 everywhere (line searches evaluate it)."""
    return sum(0.5 * jnp.sum((p - 0.25) ** 2) for p in jax.tree.leaves(params))


def _by_path(patterns: dict[str, Any]) -> Any:
    return gx.by_path(patterns)


# Arguments for factories that need more than a learning rate. A factory exported by `gx`
# whose required arguments are not all here fails `test_round_trip` with a message saying so.
REQUIRED: dict[str, dict[str, Any]] = {
    "accumulate_micro_batches": {"inner": lambda: gx.sgd(0.1), "num_micro_batches": 2},
    "adaptive_grad_clip": {"clipping": 0.1},
    "add": {"value": 0.1},
    "add_gaussian_noise": {"variance": 0.01},
    "add_noise": {"eta": 0.01, "gamma": 0.55},
    "add_scaled_params": {"factor": 0.1},
    "apply_if_finite": {"inner": lambda: gx.adam(0.1), "max_consecutive_errors": 3},
    "bias_correction": {"decay": 0.9},
    "bucketed": {"inner": lambda: gx.adam(0.1)},
    "branch": {"left": lambda: gx.scale(2.0), "right": lambda: gx.sgd(0.1, momentum=0.5), "combine": "multiply"},
    "clip": {"max_delta": 0.5},
    "clip_by_block_rms": {"threshold": 0.5},
    "clip_by_global_norm": {"max_norm": 1.0},
    "clip_by_norm": {"max_norm": 1.0},
    # Conditions and stateless functions are code: a public gx function stands in for one
    # (all_finite of the step is always true; apply_updates(updates, params) adds them).
    "conditionally_mask": {"inner": lambda: gx.sgd(0.1), "should_transform_fn": lambda: gx.all_finite},
    "conditionally_transform": {"inner": lambda: gx.adam(0.1), "should_transform_fn": lambda: gx.all_finite},
    "clip_by_step": {"clip_value_fn": lambda: gx.schedules.linear_schedule(1.0, 0.1, 10)},
    "delay_compensation": {"lamda": 0.1},
    "differentially_private_aggregate": {"l2_norm_clip": 1.0, "noise_multiplier": 0.5, "key": 0},
    "dpsgd": {"l2_norm_clip": 1.0, "noise_multiplier": 0.5, "seed": 0, "momentum": 0.9},
    "dynamic_loss_scale": {"inner": lambda: gx.sgd(0.1)},
    "ema": {"decay": 0.9},
    "ema_difference": {"decay": 0.9},
    "ema_params": {"inner": lambda: gx.sgd(0.1)},
    "flat": {"inner": lambda: gx.adam(0.1)},
    "freeze": {"mask": {"w": True, "b": False}},
    "layer_moment": {"decay": 0.9},
    "lbsgd_warmup": {"batch_scale": 4.0},
    "sam": {"optimizer": lambda: gx.sgd(0.1), "adv_optimizer": lambda: gx.chain(gx.normalize(), gx.sgd(0.05))},
    "lookahead": {"fast_optimizer": lambda: gx.adam(0.01), "sync_period": 2, "slow_step_size": 0.5},
    "masked": {"inner": lambda: gx.adam(0.1), "mask": lambda: _by_path({"w": True, "*": False})},
    "measure_with_ema": {"measure": lambda: gx.global_norm, "decay": 0.9},
    "mechanize": {"base_optimizer": lambda: gx.adam(1.0)},
    "monitor": {"measures": lambda: {"norm": gx.global_norm, "ema": gx.measure_with_ema(gx.global_norm, 0.5)}},
    "multi_precision": {"inner": lambda: gx.adamw(0.01)},
    "multi_steps": {"opt": lambda: gx.sgd(0.1), "every_k_schedule": 2},
    "multi_transform": {
        "transforms": lambda: {"a": gx.sgd(0.1), "b": gx.adam(0.1)},
        "param_labels": {"w": "a", "b": "b"},
    },
    "named": {"name": "head", "inner": lambda: gx.sgd(0.1)},
    "param_group": {"optimizer": lambda: gx.adamw, "learning_rate": 0.01, "weight_decay": 0.1, "wd_mult": 0.5},
    "partition": {
        "transforms": lambda: {"decay": gx.adamw(0.1, weight_decay=0.1), "no_decay": gx.adam(0.1)},
        "param_labels": lambda: _by_path({"b": "no_decay", "*": "decay"}),
    },
    "periodic_average": {"inner": lambda: gx.sgd(0.1), "period": 2},
    "project_params": {"projection": lambda: gx.project_non_negative},
    "prediction_error": {"decay": 0.9},
    "projected": {"inner": lambda: gx.sgd(0.1), "onto": "l2_ball", "radius": 2.0},
    "quantized_state": {"inner": lambda: gx.adam(0.1)},
    "ratio": {"numerator": lambda: gx.identity(), "denominator": lambda: gx.chain(gx.square(), gx.add(1.0), gx.sqrt())},
    "scale": {"step_size": -0.1},
    "scale_by_schedule": {"step_size_fn": lambda: gx.schedules.exponential_decay(-0.1, 3, 0.5)},
    "schedule_free": {"base_optimizer": lambda: gx.sgd(0.1)},
    "scale_by_backtracking_linesearch": {"max_backtracking_steps": 5},
    "scale_by_dog": {"init_step": ("distance", 0.1)},
    "scale_by_power_decay": {"rate": 0.1, "power": 0.5},
    "scale_by_zoom_linesearch": {"max_linesearch_steps": 5},
    "smooth_sign": {"beta": 2.0},
    "split_real_and_imaginary": {"inner": lambda: gx.adam(0.1)},
    "selective_transform": {"optimizer": lambda: gx.adam(0.1), "freeze_mask": {"w": True, "b": False}},
    "snapshot": {"measure_name": "norm", "measure": lambda: gx.global_norm},
    "stateless": {"f": lambda: gx.apply_updates},
    "stateless_with_tree_map": {"f": lambda: gx.apply_updates},
    "swa": {"inner": lambda: gx.sgd(0.1)},
    "trace": {"decay": 0.9},
    "yogi_moment": {"decay": 0.9},
}
VARIADIC: dict[str, Any] = {
    "named_chain": lambda: (("clip", gx.clip(1.0)), ("opt", gx.adam(0.1))),
    "chain": lambda: (gx.clip(1.0), gx.adam(gx.schedules.warmup_cosine_decay_schedule(0.0, 0.1, 2, 10)), gx.named("tail", gx.scale(0.5))),
}

# Factories that take per-example gradients (a batch axis in front of each parameter's shape).
PER_EXAMPLE = {"differentially_private_aggregate", "dpsgd"}

EXPORTED = sorted(name for name in REGISTRY if getattr(gx, name, None) is REGISTRY[name])


def make(name: str) -> gx.GradientTransformation:
    """The factory called with a representative argument set."""
    factory = REGISTRY[name]
    params = inspect.signature(factory).parameters
    kwargs = {k: v() if callable(v) else v for k, v in REQUIRED.get(name, {}).items()}
    if "learning_rate" in params and params["learning_rate"].default is inspect.Parameter.empty:
        kwargs.setdefault("learning_rate", 0.01)
    missing = [
        p.name
        for p in params.values()
        if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.name not in kwargs
    ]
    assert not missing, (
        f"gx.{name} needs the argument(s) {missing}: add a representative value to REQUIRED in "
        "tests/test_config.py so that its config round trip is tested."
    )
    positional = VARIADIC[name]() if name in VARIADIC else ()
    return factory(*positional, **kwargs)


def run(tx: gx.GradientTransformation, name: str = "") -> tuple[list[Any], Any]:
    """STEPS gradient steps on `objective` from PARAMS, passing the value, gradient and
    objective to the stages that take them (line searches, plateau rules). lookahead gets its
    two parameter sets; periodic_average runs on two replicas under ``vmap`` (its
    ``axis_name`` is ``batch``)."""
    params = gx.LookaheadParams.init_synced(PARAMS) if name == "lookahead" else PARAMS
    init = tx.init

    def update(state, params):
        at = params.fast if name == "lookahead" else params
        value, grad = jax.value_and_grad(objective)(at)
        if name in PER_EXAMPLE:  # a batch of two examples
            grad = jax.tree.map(lambda g: jnp.stack([g, -0.5 * g]), grad)
        return tx.update(grad, state, params, value=value, grad=grad, value_fn=objective)

    if name == "periodic_average":
        params = jax.tree.map(lambda x: jnp.stack([x, 2 * x]), PARAMS)
        init = jax.vmap(tx.init)
        update = jax.vmap(lambda s, p: tx.update(jax.grad(objective)(p), s, p), axis_name="batch")
    state, outs = init(params), []
    for _ in range(STEPS):
        updates, state = update(state, params)
        if jax.tree.map(jnp.shape, updates) == jax.tree.map(jnp.shape, params):  # not for per-layer statistics
            params = gx.apply_updates(params, updates)
        outs.append(updates)
    return outs, state


def _plain(x: Any) -> np.ndarray:
    if jnp.issubdtype(jnp.asarray(x).dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    return np.asarray(x)


def test_every_public_factory_is_covered():
    assert len(EXPORTED) >= 30 and {"adam", "sgd", "chain", "named"} <= set(EXPORTED)
    stale = sorted(set(REQUIRED) - set(REGISTRY))
    assert not stale, f"REQUIRED names factories that no longer exist: {stale}"


@pytest.mark.parametrize("name", EXPORTED, ids=EXPORTED)
def test_round_trip(name, tmp_path):
    tx = make(name)
    config = gx.to_config(tx)
    assert config["name"] == name
    gx.save_yaml(config, tmp_path / "opt.yaml")
    rebuilt = gx.from_config(tmp_path / "opt.yaml")
    assert gx.to_config(rebuilt) == config
    with jax.disable_jit():  # both run op by op, with no compilation of control flow
        (want, want_state), (got, got_state) = run(tx, name), run(rebuilt, name)
    assert jax.tree.structure(got_state) == jax.tree.structure(want_state)
    for a, b in zip(jax.tree.leaves((want, want_state)), jax.tree.leaves((got, got_state))):
        np.testing.assert_array_equal(_plain(a), _plain(b))


def test_config_is_readable_and_omits_defaults():
    tx = gx.chain(gx.clip_by_global_norm(1.0), gx.adamw(1e-3, mu_dtype=jnp.bfloat16))
    assert gx.to_config(tx, include_defaults=False) == {
        "name": "chain",
        "args": {
            "transforms": [
                {"name": "clip_by_global_norm", "args": {"max_norm": 1.0}},
                {"name": "adamw", "args": {"learning_rate": 0.001, "mu_dtype": "bfloat16"}},
            ]
        },
    }
    rebuilt = gx.from_config(gx.to_config(tx, include_defaults=False))
    assert gx.to_config(rebuilt) == gx.to_config(tx)
    assert jnp.dtype(rebuilt.spec.args["transforms"][1].spec.args["mu_dtype"]) == jnp.bfloat16


@dataclasses.dataclass(frozen=True)
class HalvingSchedule(gx.Schedule):
    """A test schedule: ``init * 0.5 ** (count // every)``."""

    init: float
    every: int
    dynamic = ("init",)

    def __call__(self, count):
        return self.init * 0.5 ** (count // self.every)


def test_schedule_written_as_its_fields():
    tx = gx.sgd(HalvingSchedule(0.4, 1), momentum=0.9)
    config = gx.to_config(tx)
    assert config["args"]["learning_rate"] == {"schedule": "HalvingSchedule", "init": 0.4, "every": 1}
    rebuilt = gx.from_config(yaml.safe_load(yaml.safe_dump(config)))
    assert rebuilt.spec.args["learning_rate"] == HalvingSchedule(0.4, 1)
    for t in (tx, rebuilt):
        state = t.init(PARAMS)
        for _ in range(3):
            _, state = t.update(PARAMS, state, PARAMS)
        assert float(gx.hyperparams(state)["learning_rate"]) == pytest.approx(0.1)  # 0.4 / 2**2


def test_tabulated_multiplicative_schedule_round_trips_through_its_function():
    schedule = gx.schedules.multiplicative_schedule(1.0, lambda t: 0.5 if t % 2 else 1.0, num_steps=4)
    config = gx.to_config(gx.sgd(schedule))
    assert config["args"]["learning_rate"] == {"schedule": "MultiplicativeSchedule", "init_value": 1.0, "factor": [0.5, 1.0, 0.5, 1.0]}
    rebuilt = gx.from_config(yaml.safe_load(yaml.safe_dump(config))).spec.args["learning_rate"]
    assert rebuilt == schedule
    assert [float(rebuilt(t)) for t in range(6)] == [1.0, 0.5, 0.5, 0.25, 0.25, 0.25]


def test_schedule_by_function_name_in_handwritten_yaml(tmp_path):
    (tmp_path / "opt.yaml").write_text(
        "optimizer:\n  name: adamw\n  args:\n    learning_rate:\n      schedule: warmup_cosine_decay_schedule\n"
        "      init_value: 0.0\n      peak_value: 1e-3\n      warmup_steps: 10\n      decay_steps: 100\n"
    )
    tx = gx.from_config(tmp_path / "opt.yaml")
    schedule = tx.spec.args["learning_rate"]
    assert type(schedule).__name__ == "WarmupCosineDecaySchedule"
    assert float(schedule(10)) == pytest.approx(1e-3)


def test_mapping_with_reserved_keys_is_escaped():
    params = {"name": jnp.ones(2), "args": jnp.ones(2)}
    tx = gx.masked(gx.sgd(1.0), {"name": True, "args": False})
    config = gx.to_config(tx)
    assert config["args"]["mask"] == {"mapping": {"name": True, "args": False}}
    rebuilt = gx.from_config(config)
    out, _ = rebuilt.update(params, rebuilt.init(params), params)
    assert out["name"].tolist() == [-1.0, -1.0] and out["args"].tolist() == [1.0, 1.0]


def test_handmade_transformation_is_named_by_path():
    handmade = gx.GradientTransformation(lambda p: (), lambda u, s, p=None: (u, s))
    with pytest.raises(gx.ConfigError, match=r"args\.transforms\.1: the transformation .* cannot be written"):
        gx.to_config(gx.chain(gx.sgd(0.1), handmade))
    with pytest.raises(gx.ConfigError, match=r"args\.learning_rate: the function .*<lambda>"):
        gx.to_config(gx.sgd(lambda count: 0.1))


@pytest.mark.parametrize(
    "config, message",
    [
        ({"name": "adamm", "args": {"learning_rate": 0.1}}, r"optimizer\.name: unknown transformation 'adamm'\. Did you mean 'adam'"),
        ({"name": "adam", "args": {"lr": 0.1}}, r"optimizer\.args\.lr: adam has no argument 'lr'.*Allowed: learning_rate, b1, b2"),
        ({"name": "adam", "args": {"learning_rate": -0.1}}, r"optimizer\.args\.learning_rate: .*must be >= 0, got learning_rate=-0\.1"),
        ({"name": "adam", "args": {"learning_rate": "fast"}}, r"optimizer\.args\.learning_rate: .*must be a number or a schedule"),
        ({"name": "adam"}, r"optimizer\.args: adam needs the argument\(s\) learning_rate"),
        ({"name": "adam", "arg": {}}, r"optimizer: unknown key\(s\) \['arg'\]"),
        (["adam"], r"optimizer: expected a transformation"),
        (
            {"name": "chain", "args": {"transforms": [{"name": "sgd", "args": {"learning_rate": 0.1, "momentum": 1.5}}]}},
            r"optimizer\.args\.transforms\.0\.args\.momentum: sgd: momentum must be in \[0, 1\]",
        ),
        (
            {"name": "sgd", "args": {"learning_rate": {"schedule": "cosine_decay", "init_value": 0.1}}},
            r"optimizer\.args\.learning_rate\.schedule: unknown schedule 'cosine_decay'\. Did you mean 'cosine_decay_schedule'",
        ),
        (
            {"name": "masked", "args": {"inner": {"name": "sgd", "args": {"learning_rate": 0.1}}, "mask": {"function": "by_pat"}}},
            r"optimizer\.args\.mask\.function: unknown function 'by_pat'\. Did you mean 'by_path'",
        ),
        (
            {"name": "adam", "args": {"learning_rate": {"schedule": "CosineDecaySchedule", "init_value": 0.1, "decay_steps": -5}}},
            r"optimizer\.args\.learning_rate: schedule CosineDecaySchedule: cosine_decay_schedule: decay_steps must be an integer >= 1",
        ),
        (
            {"name": "adam", "args": {"learning_rate": {"schedule": "PiecewiseConstantSchedule", "init_value": 0.1, "boundaries_and_scales": {10: -1.0}}}},
            r"optimizer\.args\.learning_rate: .*boundaries_and_scales\[10\] must be >= 0",
        ),
        (
            {"name": "chain", "args": {"transforms": {"name": "sgd", "args": {"learning_rate": 0.1}}}},
            r"optimizer\.args\.transforms: chain takes transforms as a list, got dict",
        ),
        (
            {"name": "sgd", "args": {"learning_rate": {"schedule": "MultiplicativeSchedule", "init_value": 0.1, "factor": -0.5}}},
            r"optimizer\.args\.learning_rate: schedule MultiplicativeSchedule: multiplicative_schedule: factor must be > 0, got factor=-0\.5",
        ),
        (
            {"name": "sgd", "args": {"learning_rate": {"schedule": "MultiplicativeSchedule", "init_value": 0.1, "factor": [0.5, 0.0]}}},
            r"optimizer\.args\.learning_rate: schedule MultiplicativeSchedule: multiplicative_schedule: factor\[1\] must be > 0, got factor\[1\]=0\.0",
        ),
    ],
    ids=["unknown-name", "unknown-arg", "negative-lr", "wrong-type", "missing-arg", "unknown-key", "not-a-mapping", "nested", "unknown-schedule", "unknown-function", "schedule-class-checked", "schedule-class-scale", "stages-not-a-list", "multiplicative-class-factor", "multiplicative-class-table"],
)
def test_errors_name_the_key(config, message):
    with pytest.raises(gx.ConfigError, match=message):
        gx.from_config(config, path="optimizer")


def test_yaml_files(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(gx.ConfigError, match=rf"config file not found \(tried {missing}\)"):
        gx.from_config(missing)
    (tmp_path / "bad.yaml").write_text("name: [adam\n")
    with pytest.raises(gx.ConfigError, match="not valid YAML"):
        gx.load_yaml(tmp_path / "bad.yaml")
    (tmp_path / "ok.yaml").write_text("name: adam\nargs: {learning_rate: 1e-3, eps: 1E-8}\n")
    assert gx.load_yaml(tmp_path / "ok.yaml")["args"] == {"learning_rate": 1e-3, "eps": 1e-8}


def test_yaml_duplicate_key_is_an_error_naming_it(tmp_path):
    # YAML keeps the last of two equal keys; a config that sets b1 twice must not silently
    # train with the second value.
    (tmp_path / "dup.yaml").write_text("name: adam\nargs:\n  learning_rate: 1e-3\n  b1: 0.9\n  b1: 0.5\n")
    with pytest.raises(gx.ConfigError, match=r"duplicate key 'b1'.*line 5"):
        gx.load_yaml(tmp_path / "dup.yaml")


def test_save_yaml_of_a_transformation_says_to_call_to_config_and_keeps_the_file(tmp_path):
    file = tmp_path / "opt.yaml"
    file.write_text("name: sgd\nargs: {learning_rate: 0.1}\n")
    with pytest.raises(TypeError, match=r"save_yaml: data.*gx.to_config"):
        gx.save_yaml(gx.adam(1e-3), file)
    with pytest.raises(TypeError, match=r"save_yaml: data\['args'\]\['f'\].*function"):
        gx.save_yaml({"args": {"f": lambda c: c}}, file)
    assert gx.load_yaml(file) == {"name": "sgd", "args": {"learning_rate": 0.1}}
