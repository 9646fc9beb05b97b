"""Orbax checkpoints of a training run, with the optimizer's config saved beside them.

Each checkpoint ``<dir>/<step>/`` holds the parameters, the optimizer state (its leaves, in
flattening order: the tree structure is rebuilt from the optimizer's own ``init``), the
training history, the optimizer's config and the job settings that shape the model and the
data; ``<dir>/optimizer.yaml`` is the same config in YAML, for people. Resuming checks that
the optimizer and those settings match the ones being run.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np

from gradxform.config import ConfigError, save_yaml


def _leaves_dict(tree: Any) -> dict[str, Any]:
    return {f"{i:05d}": leaf for i, leaf in enumerate(jax.tree.leaves(tree))}


class Checkpoints:
    """Saves and restores ``(step, params, opt_state, history)`` with Orbax.

    Args:
      directory: the checkpoint folder (created if needed).
      optimizer_config: the run's `gradxform.to_config` result, stored with each checkpoint.
      max_to_keep: how many recent checkpoints to keep.
      settings: the job settings a resumed run must share (model widths, seed, batch
        size, ...), as plain JSON values, stored with each checkpoint.

    Example:
      >>> import tempfile, jax.numpy as jnp
      >>> from gradxform.job.checkpoint import Checkpoints
      >>> ckpt = Checkpoints(tempfile.mkdtemp(), {"name": "sgd", "args": {}})
      >>> ckpt.save(5, {"w": jnp.ones(2)}, (), {"loss": [1.0]})
      >>> ckpt.latest_step()
      5
      >>> step, params, opt_state, history = ckpt.restore({"w": jnp.zeros(2)}, ())
      >>> step, params["w"].tolist(), history["loss"]
      (5, [1.0, 1.0], [1.0])
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        optimizer_config: dict[str, Any],
        max_to_keep: int = 2,
        settings: dict[str, Any] | None = None,
    ):
        import orbax.checkpoint as ocp

        logging.getLogger("absl").setLevel(logging.ERROR)
        self._ocp = ocp
        self.directory = Path(directory).absolute()
        self.optimizer_config = optimizer_config
        self.settings = dict(settings or {})
        self.manager = ocp.CheckpointManager(
            self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
        )

    def save(self, step: int, params: Any, opt_state: Any, history: dict[str, list[float]]) -> None:
        """Writes checkpoint ``step`` (asynchronously; `close` waits for it).

        Args:
          step: steps completed.
          params: the parameters.
          opt_state: the optimizer state.
          history: the curves so far (plain lists of floats).
        """
        ocp = self._ocp
        state = {"params": params, "opt_state": _leaves_dict(opt_state), "step": np.asarray(step, np.int64)}
        meta = {"history": history, "optimizer": self.optimizer_config, "settings": self.settings}
        self.manager.save(
            step, args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True
        )
        save_yaml(self.optimizer_config, self.directory / "optimizer.yaml")

    def latest_step(self) -> int | None:
        """The step of the newest checkpoint, or ``None`` if there is none."""
        return self.manager.latest_step()

    def restore(self, params: Any, opt_state: Any) -> tuple[int, Any, Any, dict[str, list[float]]]:
        """Restores the newest checkpoint into trees shaped like ``params`` and ``opt_state``.

        Args:
          params: freshly initialised parameters (their structure, shapes and dtypes).
          opt_state: the optimizer's ``init(params)`` (the same).

        Returns:
          ``(step, params, opt_state, history)``.

        Raises:
          ConfigError: if there is no checkpoint, or it was made with another optimizer or
            other settings.
        """
        ocp = self._ocp
        step = self.latest_step()
        if step is None:
            raise ConfigError("--resume", f"no checkpoint to resume from in {self.directory}.")
        meta = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        if meta["optimizer"] != self.optimizer_config:
            raise ConfigError(
                "--resume",
                f"the checkpoint in {self.directory} was made with a different optimizer "
                f"({self.directory / 'optimizer.yaml'}); resume with that config or use another --out.",
            )
        saved = meta.get("settings", {})  # absent from checkpoints written before settings were
        changed = [k for k in sorted(set(saved) & set(self.settings)) if saved[k] != self.settings[k]]
        if changed:
            differences = ", ".join(f"{k}: {saved[k]!r} there, {self.settings[k]!r} here" for k in changed)
            raise ConfigError(
                "--resume",
                f"the checkpoint in {self.directory} was made with other settings ({differences}); "
                "resume with the config it was made with, or use another --out.",
            )
        target = {"params": params, "opt_state": _leaves_dict(opt_state), "step": np.asarray(0, np.int64)}
        state = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))["state"]
        leaves = [state["opt_state"][k] for k in sorted(state["opt_state"])]
        opt_state = jax.tree.unflatten(jax.tree.structure(opt_state), leaves)
        return int(state["step"]), state["params"], opt_state, meta["history"]

    def close(self) -> None:
        """Waits for pending saves and releases the manager."""
        self.manager.wait_until_finished()
        self.manager.close()
