"""Activation functions and their derivatives, applied to blocks of rows.

Derivatives are taken from the activation's *output* ``a``, which is what
backpropagation keeps: sigmoid' = a(1 - a), tanh' = 1 - a^2, exp' = a, and for the
ReLU family the sign of ``a`` equals the sign of its input.

Helpers here and in the other kernel modules index rows as ``A[i, j]`` rather
than through row views ``A[i]``: each view made inside a loop costs a
reference-count round trip (two atomic operations) that Numba does not remove,
which used to cost more than the arithmetic on rows of a hundred elements.
"""

from numba import prange

from .._jit import helper, parallel_kernel
from .functions import exp, sigmoid, tanh

IDENTITY = 0
SIGMOID = 1
TANH = 2
RELU = 3
LEAKY_RELU = 4
SOFTMAX = 5
EXP = 6

LEAKY_RELU_SLOPE = 0.01


@helper
def activate_rows(Z, start, stop, activation, out):
    """out[i, m] = act(Z[i, m]) for start <= i < stop; softmax normalises each row. `out` may be `Z`."""
    m = Z.shape[1]
    zero = out.dtype.type(0)
    slope = out.dtype.type(LEAKY_RELU_SLOPE)
    for i in range(start, stop):
        if activation == IDENTITY:
            for j in range(m):
                out[i, j] = Z[i, j]
        elif activation == SIGMOID:
            for j in range(m):
                out[i, j] = sigmoid(Z[i, j])
        elif activation == TANH:
            for j in range(m):
                out[i, j] = tanh(Z[i, j])
        elif activation == RELU:
            for j in range(m):
                out[i, j] = max(Z[i, j], zero)
        elif activation == LEAKY_RELU:
            for j in range(m):
                out[i, j] = Z[i, j] if Z[i, j] > zero else slope * Z[i, j]
        elif activation == SOFTMAX:
            largest = Z[i, 0]
            for j in range(1, m):
                largest = max(largest, Z[i, j])
            for j in range(m):
                out[i, j] = exp(Z[i, j] - largest)
            total = zero
            for j in range(m):
                total += out[i, j]
            for j in range(m):
                out[i, j] = out[i, j] / total
        elif activation == EXP:
            for j in range(m):
                out[i, j] = exp(Z[i, j])


@helper
def backprop_rows(A, G, start, stop, activation, out):
    """out[i, m] = G[i, m] * act'(...) from the activation output A[i, m], for start <= i < stop;
    softmax uses its Jacobian. `out` may be `G`."""
    m = A.shape[1]
    zero = out.dtype.type(0)
    one = out.dtype.type(1)
    slope = out.dtype.type(LEAKY_RELU_SLOPE)
    for i in range(start, stop):
        if activation == IDENTITY:
            for j in range(m):
                out[i, j] = G[i, j]
        elif activation == SIGMOID:
            for j in range(m):
                out[i, j] = G[i, j] * (A[i, j] * (one - A[i, j]))
        elif activation == TANH:
            for j in range(m):
                out[i, j] = G[i, j] * (one - A[i, j] * A[i, j])
        elif activation == RELU:
            for j in range(m):
                out[i, j] = G[i, j] if A[i, j] > zero else zero
        elif activation == LEAKY_RELU:
            for j in range(m):
                out[i, j] = G[i, j] if A[i, j] > zero else slope * G[i, j]
        elif activation == SOFTMAX:
            dot = zero
            for j in range(m):
                dot += G[i, j] * A[i, j]
            for j in range(m):
                out[i, j] = A[i, j] * (G[i, j] - dot)
        elif activation == EXP:
            for j in range(m):
                out[i, j] = G[i, j] * A[i, j]


# Rows per call of the row helpers: each call costs a few reference-count operations.
ROW_BLOCK = 16


@parallel_kernel
def activation_forward(Z, activation, out):
    """out[n, m] = act(Z[n, m]), softmax row-wise."""
    n = Z.shape[0]
    for block in prange((n + ROW_BLOCK - 1) // ROW_BLOCK):
        activate_rows(Z, block * ROW_BLOCK, min(block * ROW_BLOCK + ROW_BLOCK, n), activation, out)


@parallel_kernel
def activation_backward(A, dA, activation, out):
    """out[n, m] = dA[n, m] * act'(A[n, m]) from outputs A; softmax: row-wise Jacobian-vector product."""
    n = A.shape[0]
    for block in prange((n + ROW_BLOCK - 1) // ROW_BLOCK):
        backprop_rows(A, dA, block * ROW_BLOCK, min(block * ROW_BLOCK + ROW_BLOCK, n), activation,
                      out)
