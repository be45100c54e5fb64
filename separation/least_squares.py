"""Closed-form linear least squares from streamed statistics (the DNN's layer initialisation).

For pairs (x_p, s_p), p = 1..P, the affine map s ~ W x + b minimising sum_p ||s_p - W x_p - b||^2 is
    W = C_sx C_xx^-1,  b = s_mean - W x_mean,
with the centred sums C_xx = sum (x - x_mean)(x - x_mean)^T and C_sx = sum (s - s_mean)(x - x_mean)^T.

Accumulation is streaming and numerically stable: each batch's count, means and *batch-centred*
cross-products are computed by a jitted float64 kernel (x64 is switched on only inside this module,
`jax.enable_x64(True)`), and batches are merged on the host with Chan et al.'s pairwise update
    C = C_a + C_b + (n_a n_b / n) d_a d_b^T,   d = mean_b - mean_a,
so the raw-moment cancellation of sum(x x^T) - n mean mean^T never happens.

The solve adds a ridge relative to the scale of the data, lambda = ridge * trace(C_xx) / dim (silent
frames make C_xx ill-conditioned), factorises C_xx + lambda I by Cholesky and back-substitutes; it
never forms an inverse. Constant inputs (trace 0) give W = 0, b = s_mean.
"""

from __future__ import annotations

from typing import Iterable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg

from mt3x.errors import Mt3xError


class LeastSquaresStats(NamedTuple):
    """Running centred statistics (float64 numpy arrays).

    Attributes:
      count: number of pairs accumulated (float, may be a weighted count).
      mean_x: float64[dim_in]; mean_s: float64[dim_out].
      cxx: float64[dim_in, dim_in] centred sum of x x^T.
      csx: float64[dim_out, dim_in] centred sum of s x^T.
    """
    count: float
    mean_x: np.ndarray
    mean_s: np.ndarray
    cxx: np.ndarray
    csx: np.ndarray

    @classmethod
    def zeros(cls, dim_in: int, dim_out: int) -> "LeastSquaresStats":
        return cls(0.0, np.zeros(dim_in), np.zeros(dim_out), np.zeros((dim_in, dim_in)),
                   np.zeros((dim_out, dim_in)))

    def add(self, x: np.ndarray | jax.Array, s: np.ndarray | jax.Array,
            mask: np.ndarray | jax.Array | None = None) -> "LeastSquaresStats":
        """Accumulates one batch of pairs.

        Args:
          x: float[n, dim_in] inputs (any leading shape is flattened).
          s: float[n, dim_out] targets, same leading shape as x.
          mask: optional bool/0-1 float[n] (same leading shape): pairs to include.
        Returns: the merged statistics (this object is unchanged).
        """
        x = jnp.reshape(x, (-1, x.shape[-1]))
        s = jnp.reshape(s, (-1, s.shape[-1]))
        if x.shape[0] != s.shape[0]:
            raise Mt3xError(f"least squares: {x.shape[0]} inputs but {s.shape[0]} targets")
        if (x.shape[1], s.shape[1]) != (self.mean_x.size, self.mean_s.size):
            raise Mt3xError(f"least squares: batch dims ({x.shape[1]}, {s.shape[1]}) != "
                            f"statistics dims ({self.mean_x.size}, {self.mean_s.size})")
        w = jnp.ones(x.shape[0]) if mask is None else jnp.reshape(mask, (-1,))
        with jax.enable_x64(True):
            n_b, mx_b, ms_b, cxx_b, csx_b = (np.asarray(a) for a in _batch_moments(
                jnp.asarray(x, jnp.float64), jnp.asarray(s, jnp.float64),
                jnp.asarray(w, jnp.float64)))
        return merge(self, LeastSquaresStats(float(n_b), mx_b, ms_b, cxx_b, csx_b))


@jax.jit
def _batch_moments(x: jax.Array, s: jax.Array, w: jax.Array):
    """float64 count, means and batch-centred cross-products of one weighted batch."""
    n = jnp.sum(w)
    safe_n = jnp.maximum(n, 1e-300)
    mean_x = (w @ x) / safe_n
    mean_s = (w @ s) / safe_n
    xc = (x - mean_x) * w[:, None]
    sc = (s - mean_s) * w[:, None]
    hi = jax.lax.Precision.HIGHEST
    cxx = jnp.matmul(xc.T, x - mean_x, precision=hi)
    csx = jnp.matmul(sc.T, x - mean_x, precision=hi)
    return n, mean_x, mean_s, cxx, csx


def merge(a: LeastSquaresStats, b: LeastSquaresStats) -> LeastSquaresStats:
    """Chan et al.'s pairwise merge of two sets of centred statistics."""
    if b.count <= 0:
        return a
    if a.count <= 0:
        return b
    n = a.count + b.count
    dx = b.mean_x - a.mean_x
    ds = b.mean_s - a.mean_s
    f = a.count * b.count / n
    return LeastSquaresStats(
        n,
        a.mean_x + dx * (b.count / n),
        a.mean_s + ds * (b.count / n),
        a.cxx + b.cxx + f * np.outer(dx, dx),
        a.csx + b.csx + f * np.outer(ds, dx),
    )


def accumulate(pairs: Iterable[tuple[np.ndarray, np.ndarray]] | Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]],
               dim_in: int, dim_out: int) -> LeastSquaresStats:
    """Statistics of a stream of (x[n, dim_in], s[n, dim_out]) or (x, s, mask[n]) batches."""
    stats = LeastSquaresStats.zeros(dim_in, dim_out)
    for item in pairs:
        stats = stats.add(*item)
    return stats


def solve(stats: LeastSquaresStats, *, ridge: float = 1e-6, max_tries: int = 8
          ) -> tuple[np.ndarray, np.ndarray]:
    """The ridge-regularised least-squares affine map from accumulated statistics.

    Args:
      stats: accumulated statistics (count > 0).
      ridge: lambda / (trace(C_xx) / dim_in); raised tenfold while the Cholesky factorisation
        fails (numerically non-positive-definite matrix), up to `max_tries` times.
    Returns:
      (W float64[dim_out, dim_in], b float64[dim_out]) with s ~ W x + b.
    Raises:
      Mt3xError when no pairs were accumulated.
    """
    if stats.count <= 0:
        raise Mt3xError("least squares: no training pairs were accumulated (empty data?)")
    dim_in = stats.mean_x.size
    cxx = 0.5 * (stats.cxx + stats.cxx.T)
    scale = float(np.trace(cxx)) / dim_in
    if not np.isfinite(scale):
        raise Mt3xError("least squares: statistics contain inf/NaN (check the input features)")
    if scale <= 0.0:
        w = np.zeros((stats.mean_s.size, dim_in))
        return w, stats.mean_s.copy()
    lam = ridge * scale
    for _ in range(max_tries):
        try:
            factor = scipy.linalg.cho_factor(cxx + lam * np.eye(dim_in), lower=True,
                                             check_finite=False)
            break
        except np.linalg.LinAlgError:
            lam *= 10.0
    else:
        raise Mt3xError(f"least squares: C_xx is not positive definite even with ridge {lam:g}")
    w = scipy.linalg.cho_solve(factor, stats.csx.T, check_finite=False).T
    b = stats.mean_s - w @ stats.mean_x
    return w, b
