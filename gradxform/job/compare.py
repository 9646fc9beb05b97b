"""The ``compare`` command: the same model, seed and batches with several optimizers.

Prints a table (final training loss, test accuracy, time per step) and writes one figure
with every optimizer's loss and test-accuracy curves to ``out/compare.png``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gradxform.job.data import load_digits
from gradxform.job.settings import JobConfig
from gradxform.job.train import Run, fit

DEFAULT_OPTIMIZERS: dict[str, dict[str, Any]] = {
    "sgd": {"name": "sgd", "args": {"learning_rate": 0.1}},
    "momentum": {"name": "sgd", "args": {"learning_rate": 0.05, "momentum": 0.9}},
    "nesterov": {"name": "sgd", "args": {"learning_rate": 0.05, "momentum": 0.9, "nesterov": True}},
    "adagrad": {"name": "adagrad", "args": {"learning_rate": 0.05}},
    "rmsprop": {"name": "rmsprop", "args": {"learning_rate": 0.001}},
    "adam": {"name": "adam", "args": {"learning_rate": 0.003}},
    "adamw": {"name": "adamw", "args": {"learning_rate": 0.003, "weight_decay": 0.05}},
    "signum": {"name": "signum", "args": {"learning_rate": 0.001}},
}


def table(results: dict[str, Run]) -> str:
    """The comparison as a fixed-width text table.

    Args:
      results: runs by label.

    Returns:
      One header line and one line per optimizer.
    """
    lines = [f"{'optimizer':<12} {'final loss':>10} {'test acc':>9} {'ms/step':>8}"]
    for label, run in results.items():
        final = run.history["loss"][-1] if run.history["loss"] else float("nan")
        lines.append(f"{label:<12} {final:>10.4f} {run.test_accuracy:>9.4f} {1e3 * run.seconds_per_step:>8.3f}")
    return "\n".join(lines)


def plot(results: dict[str, Run], path: Path) -> None:
    """Writes every run's training loss and test accuracy on one figure.

    Args:
      results: runs by label.
      path: the PNG file.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4.5))
    for label, run in results.items():
        ax_loss.plot(run.history["step"], run.history["loss"], label=label)
        ax_acc.plot(run.history["step"], run.history["test_accuracy"], label=label)
    ax_loss.set(xlabel="step", ylabel="training cross-entropy", yscale="log", title="loss")
    ax_acc.set(xlabel="step", ylabel="test accuracy", title="test accuracy")
    ax_acc.set_ylim(top=1.0)
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
    ax_acc.legend(loc="lower right", fontsize="small")
    fig.suptitle("Optimizers on 8x8 digits (same model, seed and batches)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def compare(cfg: JobConfig, *, steps: int | None = None, out: str | None = None) -> dict[str, Run]:
    """Runs the ``compare`` command.

    Args:
      cfg: the validated job config; ``cfg.optimizers`` (default: `DEFAULT_OPTIMIZERS`).
      steps: total steps per optimizer, overriding ``cfg.steps``.
      out: output folder, overriding ``cfg.out``.

    Returns:
      The runs by label (the table and plot are printed and written).
    """
    import dataclasses

    from gradxform.job.settings import parse

    if cfg.optimizers is None:
        cfg = dataclasses.replace(cfg, optimizers=parse({"optimizers": DEFAULT_OPTIMIZERS}).optimizers)
    total = steps if steps is not None else cfg.steps
    data = load_digits(cfg.test_fraction, cfg.seed)
    results = {label: fit(cfg, tx, data, total, label=label) for label, tx in cfg.build_all().items()}
    folder = Path(out or cfg.out)
    plot(results, folder / "compare.png")
    print(table(results))
    print(f"wrote {folder / 'compare.png'}")
    return results
