"""Drawing schedules with matplotlib (an optional dependency), for notebooks."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

MISSING_MATPLOTLIB = (
    "gradxform.schedules.plot needs matplotlib, which is an optional dependency and is not "
    "installed. Install it (`pip install matplotlib`) or evaluate the schedule yourself: "
    "`[schedule(t) for t in range(num_steps)]`."
)


def evaluate(schedule: Callable[[Any], Any], num_steps: int) -> np.ndarray:
    """The values of ``schedule`` at steps ``0 .. num_steps - 1``, as a float NumPy array.

    Args:
      schedule: any function of the step.
      num_steps: how many steps, an integer >= 1.

    Returns:
      An array of shape ``(num_steps,)``.

    Raises:
      ValueError: if ``num_steps`` is not a positive integer.

    Example:
      >>> import gradxform as gx
      >>> gx.schedules.evaluate(gx.schedules.linear_schedule(1.0, 0.0, 2), 3).tolist()
      [1.0, 0.5, 0.0]
    """
    if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)) or num_steps < 1:
        raise ValueError(f"num_steps must be an integer >= 1, got num_steps={num_steps!r}.")
    steps = jnp.arange(num_steps, dtype=jnp.int32)
    try:
        values = jax.jit(jax.vmap(schedule))(steps)
    except Exception:  # noqa: BLE001 - a user function that does not trace: evaluate step by step
        values = [schedule(int(t)) for t in range(num_steps)]
    return np.asarray(values, dtype=np.float64).reshape(num_steps)


def plot(
    schedule: Callable[[Any], Any] | Sequence[Callable[[Any], Any]] | Mapping[str, Callable[[Any], Any]],
    num_steps: int,
    *,
    ax: Any = None,
    log_scale: bool = False,
    title: str | None = None,
) -> Any:
    """Draws one or several schedules against the step.

    Args:
      schedule: a schedule, a list of schedules, or a dict ``{label: schedule}``.
      num_steps: the steps drawn, ``0 .. num_steps - 1``.
      ax: a matplotlib ``Axes`` to draw on (default: a new figure).
      log_scale: a logarithmic value axis.
      title: the axes' title.

    Returns:
      The matplotlib ``Figure``.

    Raises:
      ImportError: if matplotlib is not installed (it is optional).
      ValueError: if ``num_steps`` is not a positive integer.

    Example:
      >>> import matplotlib; matplotlib.use("Agg")
      >>> import gradxform as gx
      >>> fig = gx.schedules.plot(gx.schedules.cosine_decay_schedule(1.0, 100), 100)
      >>> len(fig.axes[0].lines)
      1
    """
    try:
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ImportError(MISSING_MATPLOTLIB) from e
    if isinstance(schedule, Mapping):
        items = list(schedule.items())
    elif isinstance(schedule, (list, tuple)):
        items = [(repr(s), s) for s in schedule]
    else:
        items = [(repr(schedule), schedule)]
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 4))
    else:
        fig = ax.figure
    steps = np.arange(num_steps)
    for label, s in items:
        ax.plot(steps, evaluate(s, num_steps), label=label if len(label) <= 80 else label[:77] + "...")
    ax.set_xlabel("step")
    ax.set_ylabel("value")
    if log_scale:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    if len(items) > 1:
        ax.legend(fontsize="small")
    return fig


__all__ = ["evaluate", "plot"]
