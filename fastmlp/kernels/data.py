"""Moving and checking data: batch gathering and finiteness tests."""

import numpy as np
from numba import prange

from .._jit import kernel, parallel_kernel


@parallel_kernel
def gather_rows(X, rows, out):
    """out[r, k] = X[rows[r], k]"""
    for r in prange(rows.shape[0]):
        row = rows[r]
        for j in range(X.shape[1]):
            out[r, j] = X[row, j]


@kernel
def all_finite(x):
    """True when no element of the 1-D array x is NaN or infinite."""
    for i in range(x.shape[0]):
        if not np.isfinite(x[i]):
            return False
    return True
