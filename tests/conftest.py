"""Shared configuration for the test suite.

Two CPU devices are simulated so that sharding tests run anywhere; this must happen before
JAX is imported. The optimizer harness lives in ``harness.py`` beside this file.
"""

import os
import sys
from pathlib import Path

# The suite compiles hundreds of tiny programs and runs each for microseconds, so XLA's
# backend optimisation is most of its cost: turning LLVM's expensive passes off cuts the
# suite's time by about a third. Numerics are unchanged (no fast-math either way), and
# benchmarks/ never runs with these flags.
os.environ.setdefault(
    "XLA_FLAGS",
    "--xla_force_host_platform_device_count=2 --xla_backend_optimization_level=0"
    " --xla_llvm_disable_expensive_passes=true",
)
os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, str(Path(__file__).parent))



def pytest_sessionfinish(session, exitstatus):
    """Exempts the session's objects from the garbage collections that run after it.

    Once a pytest-xdist worker reports that it has finished, execnet gives it 5 s to return
    and then sends it a SIGINT. pytest collects garbage again while unconfiguring, and a full
    collection walks every object the session made (gigabytes of traced and compiled
    programs): on a loaded 2-core machine that took longer, and the interrupt surfaced as a
    KeyboardInterrupt warning from JAX's collection callback at the end of ``make test``.
    Frozen objects are skipped by those collections; nothing runs after them.
    """
    import gc

    gc.freeze()
