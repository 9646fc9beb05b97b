"""The kernels' arithmetic is tested on small arrays, which the size policy would otherwise
hand to XLA: every test here runs with the minimum leaf size at 0, except the tests of the
policy itself, which ask for the real size (``real_leaf_sizes``)."""

import pytest

from gradxform.kernels import _program

REAL_SIZES = {"KERNEL_MIN_LEAF": _program.KERNEL_MIN_LEAF, "TINY_LEAF": _program.TINY_LEAF}


@pytest.fixture(autouse=True)
def kernels_on_every_leaf(monkeypatch):
    for name in REAL_SIZES:
        monkeypatch.setattr(_program, name, 0)


@pytest.fixture
def real_leaf_sizes(monkeypatch, kernels_on_every_leaf):
    """The minimum leaf size the library ships with."""
    for name, value in REAL_SIZES.items():
        monkeypatch.setattr(_program, name, value)
    return dict(REAL_SIZES)
