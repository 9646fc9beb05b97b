"""The kernels' arithmetic is tested on small arrays and single-output steps, which the size
policy would otherwise hand to XLA: every test here runs with the minimum leaf sizes at 0 and
single-output programs allowed on every leaf, except the tests of the policy itself, which ask
for the real sizes (``real_leaf_sizes``)."""

import pytest
from stepping import TEST_SIZES

from gradxform.kernels import _program

REAL_SIZES = {
    "KERNEL_MIN_LEAF": _program.KERNEL_MIN_LEAF,
    "TINY_LEAF": _program.TINY_LEAF,
    "SINGLE_OUTPUT_LEAF": _program.SINGLE_OUTPUT_LEAF,
}


@pytest.fixture(autouse=True)
def kernels_on_every_leaf(monkeypatch):
    for name, value in TEST_SIZES.items():
        monkeypatch.setattr(_program, name, value)


@pytest.fixture
def real_leaf_sizes(monkeypatch, kernels_on_every_leaf):
    """The minimum leaf size the library ships with."""
    for name, value in REAL_SIZES.items():
        monkeypatch.setattr(_program, name, value)
    return dict(REAL_SIZES)
