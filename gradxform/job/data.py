"""scikit-learn's 8x8 handwritten digits (1,797 images, shipped with the package), split
once by a fixed seed, and a batch order that depends only on ``(seed, step)`` so that a
resumed run sees exactly the batches an uninterrupted one would."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Digits(NamedTuple):
    """The split data set: ``x`` float32 in [0, 1] of shape ``(n, 64)``, ``y`` int32 labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_digits(test_fraction: float = 0.2, seed: int = 0) -> Digits:
    """Loads and splits the digits (stratified, so every class is in both parts).

    Args:
      test_fraction: share of the images held out for testing.
      seed: seed of the split.

    Returns:
      A `Digits` tuple.

    Example:
      >>> from gradxform.job.data import load_digits
      >>> d = load_digits(0.2)
      >>> d.x_train.shape[1], d.x_train.dtype.name, len(d.y_train) + len(d.y_test)
      (64, 'float32', 1797)
    """
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    x, y = sk_load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    y = y.astype(np.int32)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_fraction, random_state=seed, stratify=y)
    return Digits(x_tr, y_tr, x_te, y_te)


def batch_indices(n: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """The example indices of step ``step``: epochs are fresh permutations seeded by
    ``(seed, epoch)``, cut into ``n // batch_size`` full batches.

    Args:
      n: number of training examples.
      batch_size: examples per batch (at most ``n``).
      seed: the run's seed.
      step: the 0-based step.

    Returns:
      An int array of ``batch_size`` indices.

    Example:
      >>> from gradxform.job.data import batch_indices
      >>> (batch_indices(100, 10, 0, 3) == batch_indices(100, 10, 0, 3)).all()
      np.True_
    """
    per_epoch = max(n // batch_size, 1)
    epoch, k = divmod(step, per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return order[k * batch_size : (k + 1) * batch_size]
