"""Speed and memory of gradxform against Optax (and fused PyTorch), measured in one run.

``python -m benchmarks`` prints the full table; ``python -m benchmarks.step`` the short
check that the composition costs nothing against Optax.
"""
