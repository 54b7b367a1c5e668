"""Activation functions and their derivatives, row by row.

Derivatives are taken from the activation's *output* ``a``, which is what
backpropagation keeps: sigmoid' = a(1 - a), tanh' = 1 - a^2, and for the
ReLU family the sign of ``a`` equals the sign of its input.
"""

from numba import prange

from .._jit import kernel, parallel_kernel
from .functions import exp, sigmoid, tanh

IDENTITY = 0
SIGMOID = 1
TANH = 2
RELU = 3
LEAKY_RELU = 4
SOFTMAX = 5

LEAKY_RELU_SLOPE = 0.01


@kernel
def activate_row(z, activation, out):
    """out[m] = act(z[m]); softmax normalises the whole row. `out` may be `z`."""
    m = z.shape[0]
    zero = out.dtype.type(0)
    if activation == IDENTITY:
        for j in range(m):
            out[j] = z[j]
    elif activation == SIGMOID:
        for j in range(m):
            out[j] = sigmoid(z[j])
    elif activation == TANH:
        for j in range(m):
            out[j] = tanh(z[j])
    elif activation == RELU:
        for j in range(m):
            out[j] = max(z[j], zero)
    elif activation == LEAKY_RELU:
        slope = out.dtype.type(LEAKY_RELU_SLOPE)
        for j in range(m):
            out[j] = z[j] if z[j] > zero else slope * z[j]
    elif activation == SOFTMAX:
        largest = z[0]
        for j in range(1, m):
            largest = max(largest, z[j])
        for j in range(m):
            out[j] = exp(z[j] - largest)
        total = zero
        for j in range(m):
            total += out[j]
        for j in range(m):
            out[j] = out[j] / total


@kernel
def backprop_row(a, grad, activation, out):
    """out[m] = grad[m] * act'(...) from the activation output a[m]; softmax uses its Jacobian. `out` may be `grad`."""
    m = a.shape[0]
    zero = out.dtype.type(0)
    one = out.dtype.type(1)
    if activation == IDENTITY:
        for j in range(m):
            out[j] = grad[j]
    elif activation == SIGMOID:
        for j in range(m):
            out[j] = grad[j] * (a[j] * (one - a[j]))
    elif activation == TANH:
        for j in range(m):
            out[j] = grad[j] * (one - a[j] * a[j])
    elif activation == RELU:
        for j in range(m):
            out[j] = grad[j] if a[j] > zero else zero
    elif activation == LEAKY_RELU:
        slope = out.dtype.type(LEAKY_RELU_SLOPE)
        for j in range(m):
            out[j] = grad[j] if a[j] > zero else slope * grad[j]
    elif activation == SOFTMAX:
        dot = zero
        for j in range(m):
            dot += grad[j] * a[j]
        for j in range(m):
            out[j] = a[j] * (grad[j] - dot)


@parallel_kernel
def activation_forward(Z, activation, out):
    """out[n, m] = act(Z[n, m]), softmax row-wise."""
    for i in prange(Z.shape[0]):
        activate_row(Z[i], activation, out[i])


@parallel_kernel
def activation_backward(A, dA, activation, out):
    """out[n, m] = dA[n, m] * act'(A[n, m]) from outputs A; softmax: row-wise Jacobian-vector product."""
    for i in prange(A.shape[0]):
        backprop_row(A[i], dA[i], activation, out[i])
