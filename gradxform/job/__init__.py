"""The main job behind ``python -m gradxform``: a Flax NNX model on scikit-learn's 8x8
digits, trained by an optimizer read from a YAML config (`gradxform.config`).

- `settings`: the job's config schema and its validation.
- `data`, `model`: the data set and the model.
- `checkpoint`: Orbax checkpoints with the optimizer's config beside them.
- `train`, `compare`: the ``train`` and ``compare`` commands.

Flax, Orbax, scikit-learn, tqdm and matplotlib (the ``demo`` extra) are imported only here,
never by the library itself.
"""
