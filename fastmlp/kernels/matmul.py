"""Dense-layer matrix products, forward and backward.

The products are register-blocked: four rows of the left operand times four
rows of the right one are held in scalars while the innermost loop runs along
a contiguous row, which is the loop shape LLVM vectorises into FMAs. Every
output element sums its terms in the same order whatever the blocking, batch
position or thread, so results are reproducible bit for bit.
"""

from numba import prange

from .._jit import kernel, parallel_kernel
from .activations import activate_row, backprop_row


@kernel
def accumulate_rows4(X, W, i, out):
    """out[i:i+4, m] += X[i:i+4, k] @ W[k, m]"""
    k = X.shape[1]
    m = W.shape[1]
    x0 = X[i]
    x1 = X[i + 1]
    x2 = X[i + 2]
    x3 = X[i + 3]
    o0 = out[i]
    o1 = out[i + 1]
    o2 = out[i + 2]
    o3 = out[i + 3]
    k4 = k - k % 4
    for p in range(0, k4, 4):
        w0 = W[p]
        w1 = W[p + 1]
        w2 = W[p + 2]
        w3 = W[p + 3]
        x00, x01, x02, x03 = x0[p], x0[p + 1], x0[p + 2], x0[p + 3]
        x10, x11, x12, x13 = x1[p], x1[p + 1], x1[p + 2], x1[p + 3]
        x20, x21, x22, x23 = x2[p], x2[p + 1], x2[p + 2], x2[p + 3]
        x30, x31, x32, x33 = x3[p], x3[p + 1], x3[p + 2], x3[p + 3]
        for j in range(m):
            o0[j] = o0[j] + x00 * w0[j] + x01 * w1[j] + x02 * w2[j] + x03 * w3[j]
            o1[j] = o1[j] + x10 * w0[j] + x11 * w1[j] + x12 * w2[j] + x13 * w3[j]
            o2[j] = o2[j] + x20 * w0[j] + x21 * w1[j] + x22 * w2[j] + x23 * w3[j]
            o3[j] = o3[j] + x30 * w0[j] + x31 * w1[j] + x32 * w2[j] + x33 * w3[j]
    for p in range(k4, k):
        w0 = W[p]
        x00, x10, x20, x30 = x0[p], x1[p], x2[p], x3[p]
        for j in range(m):
            o0[j] = o0[j] + x00 * w0[j]
            o1[j] = o1[j] + x10 * w0[j]
            o2[j] = o2[j] + x20 * w0[j]
            o3[j] = o3[j] + x30 * w0[j]


@kernel
def accumulate_row(x, W, out):
    """out[m] += x[k] @ W[k, m], summed in the same order as accumulate_rows4."""
    k = x.shape[0]
    m = W.shape[1]
    k4 = k - k % 4
    for p in range(0, k4, 4):
        w0 = W[p]
        w1 = W[p + 1]
        w2 = W[p + 2]
        w3 = W[p + 3]
        x0, x1, x2, x3 = x[p], x[p + 1], x[p + 2], x[p + 3]
        for j in range(m):
            out[j] = out[j] + x0 * w0[j] + x1 * w1[j] + x2 * w2[j] + x3 * w3[j]
    for p in range(k4, k):
        w0 = W[p]
        x0 = x[p]
        for j in range(m):
            out[j] = out[j] + x0 * w0[j]


@kernel
def accumulate_block(X, W, i, rows, out):
    """out[i:i+rows, m] += X[i:i+rows, k] @ W[k, m] for rows <= 4."""
    if rows == 4:
        accumulate_rows4(X, W, i, out)
    else:
        for r in range(rows):
            accumulate_row(X[i + r], W, out[i + r])


@kernel
def zero_rows(i, rows, out):
    """out[i:i+rows, :] = 0"""
    zero = out.dtype.type(0)
    for r in range(rows):
        o = out[i + r]
        for j in range(o.shape[0]):
            o[j] = zero


@parallel_kernel
def dense_forward(X, W, b, activation, out):
    """out[n, m] = act(X[n, k] @ W[k, m] + b[m])"""
    n = X.shape[0]
    m = W.shape[1]
    for block in prange((n + 3) // 4):
        i = 4 * block
        rows = min(4, n - i)
        for r in range(rows):
            o = out[i + r]
            for j in range(m):
                o[j] = b[j]
        accumulate_block(X, W, i, rows, out)
        for r in range(rows):
            activate_row(out[i + r], activation, out[i + r])


@parallel_kernel
def input_grad(dZ, WT, A, activation, out):
    """out[n, k] = (dZ[n, m] @ WT[m, k]) * act'(A[n, k]), A the layer's input as activation output."""
    n = dZ.shape[0]
    for block in prange((n + 3) // 4):
        i = 4 * block
        rows = min(4, n - i)
        zero_rows(i, rows, out)
        accumulate_block(dZ, WT, i, rows, out)
        for r in range(rows):
            backprop_row(A[i + r], out[i + r], activation, out[i + r])


@parallel_kernel
def weight_grad(AT, dZ, out):
    """out[k, m] = AT[k, n] @ dZ[n, m], with AT = A.T the layer input transposed, summed over n in order.

    Taking A transposed turns the weight gradient into the same row-blocked product
    as the forward pass (walking A by columns runs at half the speed), and the
    parallel loop over rows of out never lets two threads add into one element.
    """
    k = AT.shape[0]
    for block in prange((k + 3) // 4):
        p = 4 * block
        rows = min(4, k - p)
        zero_rows(p, rows, out)
        accumulate_block(AT, dZ, p, rows, out)


@kernel
def bias_grad(dZ, out):
    """out[m] = sum over n of dZ[n, m], in order."""
    n, m = dZ.shape
    zero = out.dtype.type(0)
    for j in range(m):
        out[j] = zero
    for i in range(n):
        d = dZ[i]
        for j in range(m):
            out[j] = out[j] + d[j]


@parallel_kernel
def transpose(W, out):
    """out[m, k] = W[k, m]"""
    k, m = W.shape
    # Eight output rows at a time, so each row of W is read once per eight columns.
    for block in prange((m + 7) // 8):
        j = 8 * block
        if j + 8 <= m:
            o0, o1, o2, o3 = out[j], out[j + 1], out[j + 2], out[j + 3]
            o4, o5, o6, o7 = out[j + 4], out[j + 5], out[j + 6], out[j + 7]
            for p in range(k):
                w = W[p]
                o0[p], o1[p], o2[p], o3[p] = w[j], w[j + 1], w[j + 2], w[j + 3]
                o4[p], o5[p], o6[p], o7[p] = w[j + 4], w[j + 5], w[j + 6], w[j + 7]
        else:
            for c in range(j, m):
                o = out[c]
                for p in range(k):
                    o[p] = W[p, c]
