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

