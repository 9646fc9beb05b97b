"""The command line (``python -m gradxform``), run in subprocesses with few steps."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

import gradxform as gx

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
# One CPU device, and a cheaper XLA compile: these runs are short, compilation dominates.
ENV = {
    **os.environ,
    "JAX_PLATFORMS": "cpu",
    "XLA_FLAGS": "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true",
}


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gradxform", *args], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600
    )


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_default_reaches_95_percent_and_resume_is_bit_exact(tmp_path):
    default = str(ROOT / "configs" / "default.yaml")
    steps = yaml.safe_load(open(default))["steps"]
    whole = cli("train", "--config", default, "--out", str(tmp_path / "whole"))
    out = ok(whole)
    accuracy = float(re.search(r"test accuracy: ([0-9.]+)", out).group(1))
    assert accuracy >= 0.95, out
    assert re.search(r"lr=0\.003", whole.stderr), "the progress bar shows the learning rate"
    for name in ("curves.png", "params.npz", "checkpoints/optimizer.yaml"):
        assert (tmp_path / "whole" / name).is_file(), name
    saved = gx.load_yaml(tmp_path / "whole" / "checkpoints" / "optimizer.yaml")
    assert saved == gx.to_config(gx.from_config(default))

    half = str(tmp_path / "half")
    ok(cli("train", "--config", default, "--steps", str(steps // 2), "--out", half))
    resumed = ok(cli("train", "--config", default, "--resume", "--out", half))
    assert f"Resuming from step {steps // 2}" in resumed
    want, got = np.load(tmp_path / "whole" / "params.npz"), np.load(tmp_path / "half" / "params.npz")
    assert sorted(want.files) == sorted(got.files) == ["dense0/bias", "dense0/kernel", "dense1/bias", "dense1/kernel"]
    for key in want.files:
        np.testing.assert_array_equal(want[key], got[key], err_msg=key)


def test_a_second_run_into_the_same_folder_keeps_the_checkpoints_unless_told(tmp_path):
    """Running the same command twice must not delete the first run's training state: it
    stops with a message (exit 2) until --resume or --fresh says which is meant."""
    from gradxform.config import ConfigError
    from gradxform.job import settings, train

    default, out = str(ROOT / "configs" / "default.yaml"), str(tmp_path / "run")
    ok(cli("train", "--config", default, "--steps", "2", "--out", out))
    before = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    again = cli("train", "--config", default, "--steps", "2", "--out", out)
    assert again.returncode == 2, again.stderr[-2000:]
    assert "holds the checkpoints of an earlier run" in again.stderr and "--resume" in again.stderr
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == before
    cfg = settings.load(default)
    with pytest.raises(ConfigError, match="not both"):
        train.train(cfg, steps=2, out=out, resume=True, fresh=True)
    replaced = ok(cli("train", "--config", default, "--steps", "2", "--out", out, "--fresh"))
    assert "Starting afresh" in replaced and "test accuracy" in replaced


@pytest.mark.parametrize("config", [c for c in CONFIGS if c.name != "default.yaml"], ids=lambda c: c.name)
def test_every_config_trains(config, tmp_path):
    """Each YAML file trains for two steps: `compare` configs through the command line (the
    only test of that command), the others in this process (imports are paid once)."""
    from gradxform.job import settings, train

    cfg = settings.load(config)
    if cfg.optimizer is None:
        out = ok(cli("compare", "--config", str(config), "--steps", "2", "--out", str(tmp_path)))
        assert out.splitlines()[0].split() == ["optimizer", "final", "loss", "test", "acc", "ms/step"]
        assert len(out.splitlines()) == 2 + len(cfg.optimizers) and (tmp_path / "compare.png").is_file()
    else:
        run = train.train(cfg, steps=2, out=str(tmp_path))
        assert run.history["step"] == [2] and np.isfinite(run.history["loss"][0])
        assert (tmp_path / "curves.png").is_file() and (tmp_path / "checkpoints" / "2").is_dir()


def test_describe():
    out = ok(cli("describe", "--config", "configs/default.yaml"))
    assert out.startswith("adam(learning_rate=0.003") and "scale_by_learning_rate" in out


BAD = {
    "unknown-key": ("stepz: 10\n", r"^error: stepz: unknown key in .*Did you mean 'steps'\?"),
    "wrong-type": ("steps: ten\n", r"^error: steps: must be an integer >= 1, got 'ten' \(str\)\."),
    "unknown-optimizer": (
        "optimizer: {name: adamm, args: {learning_rate: 0.1}}\n",
        r"^error: optimizer\.name: unknown transformation 'adamm'\. Did you mean 'adam'",
    ),
    "negative-lr": (
        "optimizer: {name: sgd, args: {learning_rate: -0.1}}\n",
        r"^error: optimizer\.args\.learning_rate: sgd: learning_rate must be >= 0, got learning_rate=-0\.1\.",
    ),
    "missing-file": (None, r"^error: .*nope\.yaml: config file not found \(tried .*nope\.yaml\)"),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_config_exits_2_with_one_message(case, tmp_path):
    text, message = BAD[case]
    path = tmp_path / "nope.yaml"
    if text is not None:
        path = tmp_path / "bad.yaml"
        path.write_text(text + ("optimizer: {name: sgd, args: {learning_rate: 0.1}}\n" if "optimizer" not in text else ""))
    result = cli("train", "--config", str(path), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert re.search(message, result.stderr), result.stderr
    assert not (tmp_path / "out").exists()


def test_resume_with_fewer_steps_than_the_checkpoint_is_an_error(tmp_path):
    """It trained nothing, yet printed "(2 steps)" and rewrote params.npz and the plot."""
    from gradxform.config import ConfigError
    from gradxform.job import settings, train

    cfg, out = settings.load(str(ROOT / "configs" / "default.yaml")), str(tmp_path / "run")
    train.train(cfg, steps=3, out=out)
    written = (tmp_path / "run" / "params.npz").stat().st_mtime_ns
    with pytest.raises(ConfigError, match=r"--steps: .* at step 3, past the 2 steps asked for; give --steps 3"):
        train.train(cfg, steps=2, out=out, resume=True)
    assert (tmp_path / "run" / "params.npz").stat().st_mtime_ns == written


@pytest.mark.parametrize(
    "change,match",
    [({"hidden": (16,)}, r"hidden: \[128\] there, \[16\] here"), ({"batch_size": 8}, "batch_size: 64 there, 8 here")],
    ids=["hidden", "batch_size"],
)
def test_resume_with_other_model_or_data_settings_is_an_error(change, match, tmp_path):
    """Other widths failed deep inside Orbax with a long traceback; another batch size or
    seed silently continued a run that no longer matches an uninterrupted one."""
    import dataclasses

    from gradxform.config import ConfigError
    from gradxform.job import settings, train

    cfg, out = settings.load(str(ROOT / "configs" / "default.yaml")), str(tmp_path / "run")
    train.train(cfg, steps=2, out=out)
    with pytest.raises(ConfigError, match=f"--resume: .*other settings \\({match}\\)"):
        train.train(dataclasses.replace(cfg, **change), steps=4, out=out, resume=True)
