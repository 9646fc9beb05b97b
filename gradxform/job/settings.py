"""The job's config file: its keys, their types and allowed values, and validation.

A job config is a YAML mapping; every key is optional except the optimizer::

    seed: 0               # model initialisation and data order
    steps: 400            # optimizer steps
    batch_size: 64
    hidden: [128]         # widths of the MLP's hidden layers
    test_fraction: 0.2    # held-out share of the 1,797 digits
    eval_every: 50        # steps between test-set evaluations (curve points)
    checkpoint_every: 100 # steps between Orbax checkpoints (0: only the last one)
    out: runs/default     # where the plot, checkpoints and final parameters go
    optimizer: {name: adam, args: {learning_rate: 3.0e-3}}

``compare`` reads ``optimizers`` (a mapping from label to optimizer) instead of
``optimizer``. Any mistake raises `gradxform.ConfigError` naming the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Mapping
from typing import Any

from gradxform.config import ConfigError, from_config, load_yaml
from gradxform.core import GradientTransformation


@dataclasses.dataclass
class JobConfig:
    """A validated job config (see the module docstring for the meaning of each key)."""

    seed: int = 0
    steps: int = 400
    batch_size: int = 64
    hidden: tuple[int, ...] = (128,)
    test_fraction: float = 0.2
    eval_every: int = 50
    checkpoint_every: int = 100
    out: str = "runs/default"
    optimizer: Mapping[str, Any] | None = None
    optimizers: Mapping[str, Mapping[str, Any]] | None = None

    def build(self) -> GradientTransformation:
        """The optimizer of ``optimizer`` (already validated when the file was read)."""
        if self.optimizer is None:
            raise ConfigError("optimizer", "this command needs an 'optimizer' key in the config.")
        return from_config(self.optimizer, path="optimizer")

    def build_all(self) -> dict[str, GradientTransformation]:
        """The optimizers of ``optimizers``, by label."""
        return {label: from_config(cfg, path=f"optimizers.{label}") for label, cfg in (self.optimizers or {}).items()}


_FIELDS = {f.name: f for f in dataclasses.fields(JobConfig)}


def _int(key: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(key, f"must be an integer >= {minimum}, got {value!r} ({type(value).__name__}).")
    return value


def _check(key: str, value: Any) -> Any:
    if key in ("seed", "checkpoint_every"):
        return _int(key, value, 0)
    if key in ("steps", "batch_size", "eval_every"):
        return _int(key, value, 1)
    if key == "hidden":
        if not isinstance(value, list) or not value:
            raise ConfigError(key, f"must be a non-empty list of layer widths, got {value!r}.")
        return tuple(_int(f"hidden.{i}", v, 1) for i, v in enumerate(value))
    if key == "test_fraction":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.05 <= value <= 0.5:
            raise ConfigError(key, f"must be a number in [0.05, 0.5], got {value!r}.")
        return float(value)
    if key == "out":
        if not isinstance(value, str) or not value:
            raise ConfigError(key, f"must be a folder path (a string), got {value!r}.")
        return value
    if key == "optimizer":
        from_config(value, path="optimizer")
        return value
    if not isinstance(value, Mapping) or not value:
        raise ConfigError(key, f"must map labels to optimizers ({{sgd: {{name: sgd, args: ...}}}}), got {value!r}.")
    for label, cfg in value.items():
        from_config(cfg, path=f"optimizers.{label}")
    return {str(k): v for k, v in value.items()}


def parse(document: Any, source: str = "config") -> JobConfig:
    """Validates a job config read from YAML.

    Args:
      document: the parsed YAML (a mapping).
      source: where it came from, for messages.

    Returns:
      The `JobConfig`, its optimizers checked by building them once.

    Raises:
      ConfigError: for an unknown key (suggesting the closest), a value of the wrong type
        or range, or an invalid optimizer (naming the key path inside it).

    Example:
      >>> from gradxform.job.settings import parse
      >>> parse({"steps": 10, "optimizer": {"name": "sgd", "args": {"learning_rate": 0.1}}}).steps
      10
    """
    if not isinstance(document, Mapping):
        raise ConfigError(source, f"must be a mapping of settings, got {type(document).__name__}.")
    values = {}
    for key, value in document.items():
        if key not in _FIELDS:
            close = difflib.get_close_matches(str(key), list(_FIELDS), n=2, cutoff=0.5)
            hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise ConfigError(str(key), f"unknown key in {source}.{hint} Allowed keys: {', '.join(_FIELDS)}.")
        values[key] = _check(key, value)
    return JobConfig(**values)


def load(path: str | os.PathLike) -> JobConfig:
    """Reads and validates a job config file.

    Args:
      path: the YAML file.

    Returns:
      The validated `JobConfig`.

    Raises:
      ConfigError: for a missing file (naming the path tried) or any invalid entry.

    Example:
      >>> from pathlib import Path
      >>> import gradxform
      >>> from gradxform.job.settings import load
      >>> default = Path(gradxform.__file__).parent.parent / "configs" / "default.yaml"
      >>> load(default).optimizer["name"]
      'adam'
    """
    return parse(load_yaml(path), source=str(path))
