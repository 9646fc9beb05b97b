"""Shared configuration for the test suite.

Two CPU devices are simulated so that sharding tests run anywhere; this must happen before
JAX is imported. The optimizer harness lives in ``harness.py`` beside this file.
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, str(Path(__file__).parent))
