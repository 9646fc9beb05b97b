"""The ``train`` command: fit the MLP to the digits with the config's optimizer.

Shows a progress bar (loss, accuracy, and the learning rate read from the optimizer state
with `gradxform.hyperparams`), prints the final test accuracy, and writes to ``out``:
``curves.png`` (loss and accuracy), ``checkpoints/`` (Orbax, every ``checkpoint_every``
steps, with ``optimizer.yaml`` beside them) and ``params.npz`` (the final parameters).
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import gradxform as gx
from gradxform.config import ConfigError
from gradxform.core import GradientTransformation, path_str
from gradxform.job.data import Digits, batch_indices, load_digits
from gradxform.job.model import init_model, loss_and_accuracy
from gradxform.job.settings import JobConfig

LOG_EVERY = 10

# One compiled evaluation for every run of a model in this process (compare trains many).
_evaluate = jax.jit(loss_and_accuracy, static_argnums=0)


def make_step(graphdef: Any, tx: GradientTransformation) -> Callable[..., tuple[Any, Any, jax.Array, jax.Array]]:
    """The jitted step ``(params, opt_state, x, y, idx) -> (params, opt_state, loss, acc)``.

    The batch ``x[idx], y[idx]`` is gathered inside the compiled step (indexing eagerly
    costs more than the step itself on this model).

    Args:
      graphdef: the model's graph definition.
      tx: the optimizer.

    Returns:
      The compiled step function.
    """

    def step(params, opt_state, x, y, idx):
        x, y = x[idx], y[idx]
        (loss, acc), grads = jax.value_and_grad(loss_and_accuracy, argnums=1, has_aux=True)(graphdef, params, x, y)
        params, opt_state = gx.update_and_apply(tx, grads, opt_state, params, value=loss)
        return params, opt_state, loss, acc

    return jax.jit(step)


def current_learning_rate(opt_state: Any) -> float | None:
    """The learning rate the latest update used, read from the optimizer state.

    Args:
      opt_state: any optimizer state.

    Returns:
      The value of the ``learning_rate`` hyperparameter (the first one, if several stages
      have one), or ``None`` if the optimizer has none.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> from gradxform.job.train import current_learning_rate
      >>> round(current_learning_rate(gx.sgd(0.1).init(jnp.zeros(1))), 6)
      0.1
    """
    values = gx.hyperparams(opt_state)
    for key, value in values.items():
        if key == "learning_rate" or key.endswith("/learning_rate"):
            return float(value)
    return None


def init_optimizer(tx: GradientTransformation, params: Any) -> Any:
    """``tx.init(params)``, after checking (abstractly, at no cost in steps) that one update
    works on these parameters, so that a config that does not fit the model is reported as
    a `ConfigError` rather than failing inside the first step.

    Args:
      tx: the optimizer.
      params: the model's parameters.

    Returns:
      The optimizer state.

    Raises:
      ConfigError: if the optimizer rejects the parameters (a path pattern that matches no
        parameter, a mask of another structure), with its message.
    """
    try:
        state = tx.init(params)
        jax.eval_shape(lambda p, s: tx.update(p, s, p, value=jnp.zeros((), jnp.float32)), params, state)
        return state
    except ValueError as e:
        raise ConfigError("optimizer", f"does not fit the model's parameters: {e}") from None


@dataclasses.dataclass
class Run:
    """The result of `fit`: final state, curves and timing."""

    params: Any
    opt_state: Any
    history: dict[str, list[float]]
    test_accuracy: float
    test_loss: float
    seconds_per_step: float


def new_history() -> dict[str, list[float]]:
    """Empty curves: steps, train loss and accuracy (window means), test loss and accuracy."""
    return {"step": [], "loss": [], "accuracy": [], "test_loss": [], "test_accuracy": [], "learning_rate": []}


def fit(
    cfg: JobConfig,
    tx: GradientTransformation,
    data: Digits,
    steps: int,
    *,
    start: tuple[int, Any, Any, dict[str, list[float]]] | None = None,
    on_checkpoint: Callable[[int, Any, Any, dict[str, list[float]]], None] | None = None,
    label: str = "train",
    progress: bool = True,
) -> Run:
    """Trains for ``steps`` steps in total (from ``start`` when resuming).

    Args:
      cfg: the job config (seed, batch size, model, evaluation and checkpoint periods).
      tx: the optimizer.
      data: the data set.
      steps: the total number of steps (the run stops there).
      start: ``(step, params, opt_state, history)`` to continue from; ``None`` starts from the
        seed's initialisation.
      on_checkpoint: called with ``(step, params, opt_state, history)`` every
        ``cfg.checkpoint_every`` steps and at the end.
      label: the progress bar's description.
      progress: show the progress bar.

    Returns:
      A `Run`.
    """
    from tqdm import tqdm

    graphdef, params = init_model(cfg.hidden, cfg.seed)
    if start is None:
        first, opt_state, history = 0, init_optimizer(tx, params), new_history()
    else:
        first, params, opt_state, history = start
    # Committed arrays, as every step returns: otherwise the second step compiles again.
    params, opt_state = jax.device_put((params, opt_state), jax.devices()[0])
    step_fn = make_step(graphdef, tx)
    x_test, y_test = jnp.asarray(data.x_test), jnp.asarray(data.y_test)
    evaluate = lambda p: _evaluate(graphdef, p, x_test, y_test)  # noqa: E731
    x_train, y_train = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    window: list[tuple[jax.Array, jax.Array]] = []
    bar = tqdm(total=steps, initial=first, desc=label, disable=not progress, mininterval=0.25, leave=True)
    step_seconds, timed_steps = 0.0, 0
    for step in range(first, steps):
        idx = jnp.asarray(batch_indices(len(data.y_train), cfg.batch_size, cfg.seed, step))
        began = time.perf_counter()
        params, opt_state, loss, acc = jax.block_until_ready(step_fn(params, opt_state, x_train, y_train, idx))
        if step > first:  # the first step compiles
            step_seconds += time.perf_counter() - began
            timed_steps += 1
        window.append((loss, acc))
        done = step + 1
        if done % LOG_EVERY == 0 or done == steps:
            mean_loss, mean_acc = np.mean(np.asarray(jax.device_get(window), np.float64), axis=0).tolist()
            lr = current_learning_rate(opt_state)
            bar.set_postfix(loss=f"{mean_loss:.4f}", acc=f"{mean_acc:.3f}", lr="-" if lr is None else f"{lr:.3g}", refresh=False)
            if done % cfg.eval_every == 0 or done == steps:
                test_loss, test_acc = (float(v) for v in evaluate(params))
                for key, value in zip(history, (done, mean_loss, mean_acc, test_loss, test_acc, lr)):
                    history[key].append(value)
            window = []
        bar.update(1)
        if on_checkpoint is not None and (done == steps or cfg.checkpoint_every and done % cfg.checkpoint_every == 0):
            on_checkpoint(done, params, opt_state, history)
    bar.close()
    test_loss, test_acc = (float(v) for v in evaluate(params))
    return Run(params, opt_state, history, test_acc, test_loss, step_seconds / max(timed_steps, 1))


def plot_curves(history: dict[str, list[float]], path: Path, title: str) -> None:
    """Writes the loss and accuracy curves of one run as a PNG.

    Args:
      history: from `fit`.
      path: the PNG file.
      title: the figure's title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(history["step"], history["loss"], label="train")
    ax_loss.plot(history["step"], history["test_loss"], label="test")
    ax_loss.set(xlabel="step", ylabel="cross-entropy", yscale="log", title="loss")
    ax_acc.plot(history["step"], history["accuracy"], label="train")
    ax_acc.plot(history["step"], history["test_accuracy"], label="test")
    ax_acc.set(xlabel="step", ylabel="accuracy", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_params(params: Any, path: Path) -> None:
    """Saves the parameters as ``.npz``, one array per parameter path (``dense0/kernel``)."""
    flat, _ = jax.tree_util.tree_flatten_with_path(params)
    np.savez(path, **{path_str(p): np.asarray(v) for p, v in flat})


def train(
    cfg: JobConfig, *, steps: int | None = None, resume: bool = False, out: str | None = None, fresh: bool = False
) -> Run:
    """Runs the ``train`` command.

    Args:
      cfg: the validated job config.
      steps: total steps, overriding ``cfg.steps``.
      resume: continue from the latest checkpoint in ``out/checkpoints``.
      out: output folder, overriding ``cfg.out``.
      fresh: start from step 0 even if ``out/checkpoints`` holds an earlier run, deleting
        its checkpoints. Without it (or ``resume``) such a folder is an error, so that a
        command run twice never deletes a run's training state.

    Returns:
      The `Run`; its files are in the output folder.

    Raises:
      ConfigError: when resuming without a checkpoint, with a different optimizer or model,
        seed, batch size or test fraction, or with fewer total steps than it has; when
        both ``resume`` and ``fresh`` are given; when the output folder holds checkpoints and
        neither is.
    """
    from gradxform.job.checkpoint import Checkpoints

    if resume and fresh:
        raise ConfigError("--fresh", "give --resume (continue the checkpoints) or --fresh (replace them), not both.")
    total = steps if steps is not None else cfg.steps
    folder = Path(out or cfg.out)
    earlier = not resume and (folder / "checkpoints").exists()
    if earlier and not fresh:
        raise ConfigError(
            "--out",
            f"{folder / 'checkpoints'} holds the checkpoints of an earlier run. Pass --resume to "
            "continue it, --fresh to delete them and start again, or another --out.",
        )
    tx = cfg.build()
    data = load_digits(cfg.test_fraction, cfg.seed)
    _, params = init_model(cfg.hidden, cfg.seed)
    start = (0, params, init_optimizer(tx, params), new_history())  # checks the optimizer fits
    if earlier:  # deleted only once the config has built and fits the model
        print(f"Starting afresh: removing the checkpoints in {folder / 'checkpoints'} (--fresh)")
        shutil.rmtree(folder / "checkpoints")
    # What a resumed run must share with the checkpoint's: the model's widths (another shape
    # would fail deep inside Orbax) and the data and its order (else the run silently
    # differs from an uninterrupted one).
    settings = {"seed": cfg.seed, "batch_size": cfg.batch_size, "hidden": list(cfg.hidden), "test_fraction": cfg.test_fraction}
    ckpt = Checkpoints(folder / "checkpoints", gx.to_config(tx), settings=settings)
    try:
        if resume:
            start = ckpt.restore(start[1], start[2])
            if start[0] > total:
                raise ConfigError(
                    "--steps",
                    f"the checkpoint in {ckpt.directory} is at step {start[0]}, past the {total} steps "
                    f"asked for; give --steps {start[0]} or more to continue it.",
                )
            print(f"Resuming from step {start[0]} ({ckpt.directory})")
        run = fit(cfg, tx, data, total, start=start, on_checkpoint=ckpt.save, label=tx.spec.name)
    finally:
        ckpt.close()
    save_params(run.params, folder / "params.npz")
    plot_curves(run.history, folder / "curves.png", f"{tx.spec.name} on 8x8 digits")
    print(f"test accuracy: {run.test_accuracy:.4f}  (test loss {run.test_loss:.4f}, {total} steps)")
    print(f"wrote {folder / 'curves.png'}, {folder / 'params.npz'}, checkpoints in {ckpt.directory}")
    return run
