"""Executes each notebook in ``notebooks/`` top to bottom in a fresh kernel.

A notebook fails if a cell raises, if it was committed with outputs, if a cell tagged
``plot`` draws no image, or if it needs more than its time budget. The budget is measured
as the kernel's CPU time (user + system), which, unlike wall time, does not grow when other
processes share the machine; a cell that hangs is stopped by a wall-clock timeout.
"""

import os
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))
CPU_BUDGET_S = 60.0
CELL_TIMEOUT_S = 180


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process and its waited-for children (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 4


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_and_draws(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), (
        f"{path.name} was committed with outputs; clear them (jupyter nbconvert --clear-output --inplace)."
    )
    plots = [c for c in code if "plot" in c.metadata.get("tags", [])]
    assert plots, f"{path.name} has no cell tagged 'plot'"

    client = NotebookClient(
        nb, timeout=CELL_TIMEOUT_S, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    start = time.perf_counter()
    with client.setup_kernel():
        pid = client.km.provisioner.process.pid
        for index, cell in enumerate(nb.cells):
            client.execute_cell(cell, index)  # raises CellExecutionError, naming the cell
        cpu = cpu_seconds(pid)
    wall = time.perf_counter() - start
    print(f"{path.name}: {wall:.1f} s wall, {cpu} s kernel CPU")

    for cell in plots:
        images = [o for o in cell.outputs if "image/png" in o.get("data", {})]
        assert images, f"{path.name}: the plot cell starting {cell.source[:60]!r} drew no image"
    if cpu is not None:
        assert cpu < CPU_BUDGET_S, f"{path.name} used {cpu:.0f} s of CPU, over its {CPU_BUDGET_S:.0f} s budget"
