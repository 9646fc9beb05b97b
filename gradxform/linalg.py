"""Small dense linear algebra used by second-order methods: the dominant eigenpair (power
iteration), inverse p-th roots of PSD matrices (Shampoo's preconditioners), and
non-negative least squares. Optax exports the same three at its top level.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from gradxform import tree as _tree
from gradxform.core import is_tracer

PyTree = Any


def _check_square(owner: str, name: str, matrix: Any) -> None:
    shape = jnp.shape(matrix)
    if len(shape) != 2 or shape[0] != shape[1]:
        raise ValueError(f"{owner}: {name} must be a square matrix (shape (n, n)), got {name} of shape {shape}.")


def _check_count(owner: str, name: str, value: Any, minimum: int) -> None:
    """Checks a concrete iteration count; a traced one is the caller's responsibility."""
    if is_tracer(value):
        return
    if isinstance(value, bool) or not float(value).is_integer() or value < minimum:
        raise ValueError(f"{owner}: {name} must be an integer >= {minimum}, got {name}={value!r}.")


def _normalized(v: PyTree) -> PyTree:
    return _tree.scale(1.0 / _tree.norm(v), v)


def power_iteration(
    matrix: jax.typing.ArrayLike | Callable[[PyTree], PyTree],
    *,
    v0: PyTree | None = None,
    num_iters: jax.typing.ArrayLike = 100,
    error_tolerance: jax.typing.ArrayLike = 1e-6,
    precision: lax.Precision = lax.Precision.HIGHEST,
    key: jax.Array | None = None,
) -> tuple[jax.Array, PyTree]:
    """The dominant eigenvalue (largest in magnitude) and a unit eigenvector for it.

    Repeats ``v <- A v / |A v|`` and estimates ``lambda = v . A v``, stopping after
    ``num_iters`` products or once ``|A v - lambda v| / |lambda| < error_tolerance``.
    Convergence is geometric in ``|lambda_2 / lambda_1|``; without a unique dominant
    eigenvalue it need not converge.

    Args:
      matrix: a square ``(n, n)`` array, or a function ``v -> A v`` on pytrees (a
        Hessian-vector product, say).
      v0: the starting vector (a ``(n,)`` vector for an array, a pytree shaped like the
        function's input for a function). If None (arrays only), uniform on ``[-1, 1]``
        drawn with ``key``.
      num_iters: the most matrix-vector products in the loop.
      error_tolerance: the relative residual at which to stop.
      precision: the `jax.lax.Precision` of the products with an array ``matrix``.
      key: the PRNG key that draws ``v0`` when it is None; None is ``PRNGKey(0)``.

    Returns:
      ``(eigenvalue, eigenvector)``: a scalar and a unit-norm vector (pytree for a function).

    Raises:
      ValueError: if an array ``matrix`` is not square, if ``matrix`` is a function and
        ``v0`` is None, or if ``num_iters`` is not a non-negative integer.

    References:
      Golub & Van Loan, "Matrix Computations", 4th ed., section 7.3.1 (the power method),
      Johns Hopkins University Press, 2013.

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> eig, vec = gx.power_iteration(jnp.array([[2.0, 0.0], [0.0, 5.0]]))
      >>> round(float(eig), 4), jnp.abs(vec).round(4).tolist()
      (5.0, [0.0, 1.0])
    """
    _check_count("power_iteration", "num_iters", num_iters, 0)
    if callable(matrix):
        if v0 is None:
            raise ValueError(
                "power_iteration: v0 is required when matrix is a function (a matrix-vector "
                "product), because the shape of its input is not known; give a v0 shaped like it."
            )
        product = matrix
    else:
        _check_square("power_iteration", "matrix", matrix)
        matrix = jnp.asarray(matrix)

        def product(v):
            return jnp.matmul(matrix, v, precision=precision)

        if v0 is None:
            draw = jax.random.PRNGKey(0) if key is None else key
            v0 = jax.random.uniform(draw, matrix.shape[-1:], matrix.dtype, -1.0, 1.0)

    def keep_going(carry):
        vec, image, eig, i = carry
        residual = _tree.norm(_tree.sub(image, _tree.scale(eig, vec)))
        # Before the first estimate eig is 0 and the ratio is inf (or nan): not converged.
        return ~(jnp.abs(residual / eig) < error_tolerance) & (i < num_iters)

    def step(carry):
        _, image, _, i = carry
        vec = _normalized(image)
        image = product(vec)
        return vec, image, _tree.vdot(vec, image), i + 1

    start = _normalized(v0)
    carry = (start, product(start), jnp.asarray(0.0), jnp.asarray(0))
    _, image, eig, _ = lax.while_loop(keep_going, step, carry)
    return eig, _normalized(image)


def _power(m: jax.Array, p: Any, precision: lax.Precision) -> jax.Array:
    """``m ** p`` for a positive integer ``p``: square-and-multiply when ``p`` is known,
    ``p`` products in a loop when it is traced."""
    if is_tracer(p):
        return lax.fori_loop(1, jnp.asarray(p, jnp.int32), lambda _, acc: jnp.matmul(acc, m, precision=precision), m)
    p, result, base = int(p), None, m
    while p:
        if p & 1:
            result = base if result is None else jnp.matmul(result, base, precision=precision)
        p >>= 1
        if p:
            base = jnp.matmul(base, base, precision=precision)
    return result


def matrix_inverse_pth_root(
    matrix: jax.typing.ArrayLike,
    p: jax.typing.ArrayLike,
    num_iters: jax.typing.ArrayLike = 100,
    ridge_epsilon: jax.typing.ArrayLike = 1e-6,
    error_tolerance: jax.typing.ArrayLike = 1e-6,
    precision: lax.Precision = lax.Precision.HIGHEST,
) -> tuple[jax.Array, jax.Array]:
    """``(A + eps I) ** (-1/p)`` of a symmetric PSD matrix ``A`` by coupled Newton iterations.

    With ``alpha = -1/p`` and ``z = (1 + p) / (2 |A + eps I|_F)``, start from
    ``M = z (A + eps I)``, ``H = z ** (1/p) I`` and repeat ``T = (1 - alpha) I + alpha M``,
    ``M <- T**p M``, ``H <- H T``: ``M`` tends to ``I`` and ``H`` to the root. The loop stops
    after ``num_iters`` steps, once ``max|M - I| <= error_tolerance``, or when that error
    grows by more than a factor 1.2 (the previous ``H`` is then returned). ``eps`` is
    ``ridge_epsilon`` times the dominant eigenvalue of ``A`` (from `power_iteration`), so
    the ridge scales with ``A``. The iterations run in float32; the root comes back in
    ``matrix``'s dtype.

    Args:
      matrix: a symmetric positive semi-definite ``(n, n)`` matrix.
      p: the root, a positive integer (Shampoo uses 2 or 4 per side of a matrix parameter).
      num_iters: the most Newton steps.
      ridge_epsilon: the ridge relative to the largest eigenvalue, which makes the matrix
        positive definite.
      error_tolerance: ``max|M - I|`` at which to stop.
      precision: the `jax.lax.Precision` of the matrix products.

    Returns:
      ``(root, error)``: the ``(n, n)`` inverse p-th root and the final ``max|M - I|`` (0
      for a ``1 x 1`` matrix, whose root is computed directly).

    Raises:
      ValueError: if ``matrix`` is not square, or ``p`` is not an integer >= 1.

    References:
      Higham, "Functions of Matrices: Theory and Computation", SIAM, 2008, section 7.3
      (coupled Newton iteration for the inverse p-th root).
      https://doi.org/10.1137/1.9780898717778

      Gupta, Koren & Singer, "Shampoo: Preconditioned Stochastic Tensor Optimization", ICML
      2018. https://arxiv.org/abs/1802.09568

      Anil, Gupta, Koren, Regan & Singer, "Scalable Second Order Optimization for Deep
      Learning", 2020. https://arxiv.org/abs/2002.09018

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> root, error = gx.matrix_inverse_pth_root(jnp.diag(jnp.array([4.0, 16.0])), 2)
      >>> jnp.diag(root).round(3).tolist()
      [0.5, 0.25]
    """
    _check_square("matrix_inverse_pth_root", "matrix", matrix)
    _check_count("matrix_inverse_pth_root", "p", p, 1)
    _check_count("matrix_inverse_pth_root", "num_iters", num_iters, 0)
    matrix = jnp.asarray(matrix)
    n = matrix.shape[0]
    alpha = jnp.asarray(-1.0 / p, jnp.float32)
    eye = jnp.eye(n, dtype=jnp.float32)
    max_ev, _ = power_iteration(matrix, num_iters=100, error_tolerance=1e-6, precision=precision)
    eps = ridge_epsilon * jnp.maximum(max_ev, 1e-16)

    if n == 1:
        return (matrix + eps) ** alpha, jnp.asarray(0.0)

    def keep_going(carry):
        i, _, _, _, error, improving = carry
        return (i < num_iters) & (error > error_tolerance) & improving

    def step(carry):
        i, m, h, _, error, _ = carry
        t = (1 - alpha) * eye + alpha * m
        new_m = jnp.matmul(_power(t, p, precision), m, precision=precision)
        new_h = jnp.matmul(h, t, precision=precision)
        new_error = jnp.max(jnp.abs(new_m - eye))
        # The error may rise for a step before it falls; a rise beyond 20% is divergence.
        return i + 1, new_m, new_h, h, new_error, new_error < 1.2 * error

    damped = matrix + eps * eye
    z = (1 + p) / (2 * jnp.linalg.norm(damped))
    m0, h0 = damped * z, eye * jnp.power(z, 1.0 / p)
    carry = (0, m0, h0, h0, jnp.max(jnp.abs(m0 - eye)), True)
    _, m, h, previous_h, _, improving = lax.while_loop(keep_going, step, carry)
    root = jnp.where(improving, h, previous_h)
    return root.astype(matrix.dtype), jnp.max(jnp.abs(m - eye))


def nnls(
    A: jax.Array,  # noqa: N803 (Optax's name)
    b: jax.Array,
    iters: int,
    unroll: int | bool = 1,
    L: jax.typing.ArrayLike | None = None,  # noqa: N803 (Optax's name)
) -> jax.Array:
    """Non-negative least squares: ``argmin |A x - b|_2`` subject to ``x >= 0``.

    Runs ``iters`` steps of Polyak's fast projected gradient method on ``f(x) = x.Q x / 2 -
    q.x`` (``Q = A^T A``, ``q = A^T b``): a projected gradient step of length ``1/L`` from an
    extrapolated point, with Nesterov's momentum weights ``c' = (1 + sqrt(1 + 4c^2)) / 2``,
    ``x' = max(y - (Q y - q) / L, 0)``, ``y' = x' + (c - 1) / c' (x' - x)``, starting at
    ``x = y = 0``, ``c = 0``. The error in ``f`` falls as ``O(1/iters**2)``.

    Args:
      A: the ``(M, N)`` matrix.
      b: an ``(M,)`` vector, or an ``(M, K)`` matrix for ``K`` problems solved at once.
      iters: the number of steps.
      unroll: passed to `jax.lax.scan`.
      L: an upper bound on the largest eigenvalue of ``A^T A``; None is
        ``min(|Q|_F, |Q|_1)``. 0 is taken as 1.

    Returns:
      ``x >= 0``, of shape ``(N,)`` or ``(N, K)``.

    Raises:
      ValueError: if ``A`` is not a matrix, ``b`` not a vector or matrix with ``A``'s number
        of rows, or ``iters`` not a non-negative integer.

    References:
      Polyak, "Projected gradient method for non-negative least square", Contemporary
      Mathematics 636, AMS, 2015. http://www.ams.org/books/conm/636/

    Example:
      >>> import gradxform as gx, jax.numpy as jnp
      >>> x = gx.nnls(jnp.array([[1.0, 2.0], [3.0, 4.0]]), jnp.array([5.0, 6.0]), 1000)
      >>> [round(float(v), 2) for v in x]
      [0.0, 1.7]
    """
    a_shape, b_shape = jnp.shape(A), jnp.shape(b)
    if len(a_shape) != 2:
        raise ValueError(f"nnls: A must be a matrix (2 dimensions), got A of shape {a_shape}.")
    if len(b_shape) not in (1, 2) or b_shape[0] != a_shape[0]:
        raise ValueError(
            f"nnls: b must be a vector (M,) or a matrix (M, K) with A's M={a_shape[0]} rows, "
            f"got b of shape {b_shape}."
        )
    if isinstance(iters, bool) or not isinstance(iters, numbers.Integral) or iters < 0:
        raise ValueError(f"nnls: iters must be a non-negative integer (a Python int), got iters={iters!r}.")
    q_mat, q = A.mT @ A, A.mT @ b
    if L is None:
        frobenius = jnp.linalg.norm(q_mat)
        L = jnp.minimum(frobenius, jnp.max(jnp.sum(jnp.abs(q_mat), axis=0))) if q_mat.size else frobenius
    L = jnp.where(L == 0, 1, L)

    def step(carry, _):
        x, y, c = carry
        c_next = (1 + jnp.sqrt(1 + 4 * c**2)) / 2
        x_next = jnp.maximum(y - (q_mat @ y - q) / L, 0)
        y_next = x_next + (c - 1) / c_next * (x_next - x)
        return (x_next, y_next, c_next), None

    x0 = jnp.zeros(a_shape[-1:] + b_shape[1:], jnp.result_type(b))
    (x, _, _), _ = lax.scan(step, (x0, x0, 0.0), length=iters, unroll=unroll)
    return x
