"""The parameter trees the benchmarks run on."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def one_array(n: int) -> dict[str, jax.Array]:
    """One float32 parameter of ``n`` elements (a square matrix when ``n`` is a square)."""
    side = int(round(n**0.5))
    shape = (side, side) if side * side == n else (n,)
    return {"w": jnp.asarray(np.random.default_rng(0).standard_normal(shape, np.float32))}


def transformer_tree(layers: int = 25, width: int = 232) -> dict[str, Any]:
    """A transformer-shaped tree: per layer 16 leaves (4 attention kernels and biases, two
    MLP kernels and biases, two LayerNorms). 25 layers of width 232: 400 leaves, 16.2M."""
    rng = np.random.default_rng(0)
    d, h = width, 4 * width
    shapes = {
        "q": (d, d), "q_b": (d,), "k": (d, d), "k_b": (d,), "v": (d, d), "v_b": (d,),
        "o": (d, d), "o_b": (d,), "up": (d, h), "up_b": (h,), "down": (h, d), "down_b": (d,),
        "ln1_scale": (d,), "ln1_bias": (d,), "ln2_scale": (d,), "ln2_bias": (d,),
    }
    return {
        f"layer_{i:02d}": {k: jnp.asarray(rng.standard_normal(s, np.float32)) for k, s in shapes.items()}
        for i in range(layers)
    }


def tiny_leaves(n: int = 400) -> dict[str, jax.Array]:
    """``n`` one-element leaves: the biases and scales every real model has."""
    return {f"p{i:03d}": jnp.full((1,), 0.1 * i, jnp.float32) for i in range(n)}


def size(tree: Any) -> int:
    """Number of parameters in ``tree``."""
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def gradients_like(tree: Any) -> Any:
    """Deterministic gradients with the tree's structure, as fresh buffers."""
    leaves, treedef = jax.tree.flatten(tree)
    rng = np.random.default_rng(1)
    return jax.tree.unflatten(
        treedef, [jnp.asarray(rng.standard_normal(x.shape).astype(x.dtype)) for x in leaves]
    )


def flax_model(vocab: int = 8192, width: int = 256, depth: int = 4) -> Any:
    """The parameters of a real Flax (linen) model: a small decoder-only transformer
    (token embedding, ``depth`` pre-LayerNorm blocks of self-attention and MLP, output head);
    7.4M parameters in 69 leaves with the defaults."""
    import flax.linen as nn

    class Block(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = x + nn.SelfAttention(num_heads=4)(nn.LayerNorm()(x))
            h = nn.Dense(4 * width)(nn.LayerNorm()(x))
            return x + nn.Dense(width)(nn.gelu(h))

    class LM(nn.Module):
        @nn.compact
        def __call__(self, tokens):
            x = nn.Embed(vocab, width)(tokens)
            for _ in range(depth):
                x = Block()(x)
            return nn.Dense(vocab)(nn.LayerNorm()(x))

    return LM().init(jax.random.key(0), jnp.zeros((1, 8), jnp.int32))["params"]
