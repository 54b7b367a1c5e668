"""Dense-layer matrix products, forward and backward.

The products are register-blocked: four rows of the left operand times four
rows of the right one are held in scalars while the innermost loop runs along
a contiguous row, which is the loop shape LLVM vectorises into FMAs. Every
output element sums its terms in the same order whatever the blocking, batch
position or thread, so results are reproducible bit for bit.
"""

from numba import prange

from .._jit import helper, kernel, parallel_kernel
from .activations import activate_rows, backprop_rows


@helper
def accumulate_rows4(X, W, i, out):
    """out[i:i+4, m] += X[i:i+4, k] @ W[k, m]"""
    k = X.shape[1]
    m = W.shape[1]
    k4 = k - k % 4
    for p in range(0, k4, 4):
        x00, x01, x02, x03 = X[i, p], X[i, p + 1], X[i, p + 2], X[i, p + 3]
        x10, x11, x12, x13 = X[i + 1, p], X[i + 1, p + 1], X[i + 1, p + 2], X[i + 1, p + 3]
        x20, x21, x22, x23 = X[i + 2, p], X[i + 2, p + 1], X[i + 2, p + 2], X[i + 2, p + 3]
        x30, x31, x32, x33 = X[i + 3, p], X[i + 3, p + 1], X[i + 3, p + 2], X[i + 3, p + 3]
        for j in range(m):
            w0, w1, w2, w3 = W[p, j], W[p + 1, j], W[p + 2, j], W[p + 3, j]
            out[i, j] = out[i, j] + x00 * w0 + x01 * w1 + x02 * w2 + x03 * w3
            out[i + 1, j] = out[i + 1, j] + x10 * w0 + x11 * w1 + x12 * w2 + x13 * w3
            out[i + 2, j] = out[i + 2, j] + x20 * w0 + x21 * w1 + x22 * w2 + x23 * w3
            out[i + 3, j] = out[i + 3, j] + x30 * w0 + x31 * w1 + x32 * w2 + x33 * w3
    for p in range(k4, k):
        x00, x10, x20, x30 = X[i, p], X[i + 1, p], X[i + 2, p], X[i + 3, p]
        for j in range(m):
            w0 = W[p, j]
            out[i, j] = out[i, j] + x00 * w0
            out[i + 1, j] = out[i + 1, j] + x10 * w0
            out[i + 2, j] = out[i + 2, j] + x20 * w0
            out[i + 3, j] = out[i + 3, j] + x30 * w0


@helper
def accumulate_row(X, W, i, out):
    """out[i, m] += X[i, k] @ W[k, m], summed in the same order as accumulate_rows4."""
    k = X.shape[1]
    m = W.shape[1]
    k4 = k - k % 4
    for p in range(0, k4, 4):
        x0, x1, x2, x3 = X[i, p], X[i, p + 1], X[i, p + 2], X[i, p + 3]
        for j in range(m):
            out[i, j] = out[i, j] + x0 * W[p, j] + x1 * W[p + 1, j] + x2 * W[p + 2, j] + x3 * W[p + 3, j]
    for p in range(k4, k):
        x0 = X[i, p]
        for j in range(m):
            out[i, j] = out[i, j] + x0 * W[p, j]


@helper
def accumulate_block(X, W, i, rows, out):
    """out[i:i+rows, m] += X[i:i+rows, k] @ W[k, m] for rows <= 4."""
    if rows == 4:
        accumulate_rows4(X, W, i, out)
    else:
        for r in range(i, i + rows):
            accumulate_row(X, W, r, out)


@helper
def fill_rows(i, rows, value, out):
    """out[i:i+rows, :] = value"""
    for r in range(i, i + rows):
        for j in range(out.shape[1]):
            out[r, j] = value


@parallel_kernel
def dense_forward(X, W, b, activation, out):
    """out[n, m] = act(X[n, k] @ W[k, m] + b[m])"""
    n = X.shape[0]
    m = W.shape[1]
    for block in prange((n + 3) // 4):
        i = 4 * block
        rows = min(4, n - i)
        for r in range(i, i + rows):
            for j in range(m):
                out[r, j] = b[j]
        accumulate_block(X, W, i, rows, out)
        activate_rows(out, i, i + rows, activation, out)


@parallel_kernel
def input_grad(dZ, WT, A, activation, out):
    """out[n, k] = (dZ[n, m] @ WT[m, k]) * act'(A[n, k]), A the layer's input as activation output."""
    n = dZ.shape[0]
    zero = out.dtype.type(0)
    for block in prange((n + 3) // 4):
        i = 4 * block
        rows = min(4, n - i)
        fill_rows(i, rows, zero, out)
        accumulate_block(dZ, WT, i, rows, out)
        backprop_rows(A, out, i, i + rows, activation, out)


@parallel_kernel
def weight_grad(AT, dZ, out):
    """out[k, m] = AT[k, n] @ dZ[n, m], with AT = A.T the layer input transposed, summed over n in order.

    Taking A transposed turns the weight gradient into the same row-blocked product
    as the forward pass (walking A by columns runs at half the speed), and the
    parallel loop over rows of out never lets two threads add into one element.
    """
    k = AT.shape[0]
    zero = out.dtype.type(0)
    for block in prange((k + 3) // 4):
        p = 4 * block
        rows = min(4, k - p)
        fill_rows(p, rows, zero, out)
        accumulate_block(AT, dZ, p, rows, out)


@kernel
def bias_grad(dZ, out):
    """out[m] = sum over n of dZ[n, m], in order."""
    n, m = dZ.shape
    zero = out.dtype.type(0)
    for j in range(m):
        out[j] = zero
    for i in range(n):
        for j in range(m):
            out[j] = out[j] + dZ[i, j]


@parallel_kernel
def transpose(W, out):
    """out[m, k] = W[k, m]"""
    k, m = W.shape
    # Eight output rows at a time, so each row of W is read once per eight columns.
    for block in prange((m + 7) // 8):
        j = 8 * block
        if j + 8 <= m:
            for p in range(k):
                out[j, p], out[j + 1, p], out[j + 2, p], out[j + 3, p] = \
                    W[p, j], W[p, j + 1], W[p, j + 2], W[p, j + 3]
                out[j + 4, p], out[j + 5, p], out[j + 6, p], out[j + 7, p] = \
                    W[p, j + 4], W[p, j + 5], W[p, j + 6], W[p, j + 7]
        else:
            for c in range(j, m):
                for p in range(k):
                    out[c, p] = W[p, c]
