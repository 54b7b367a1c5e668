"""Loss values and their gradients with respect to the output layer's pre-activation Z.

Shapes: Z, P, Y and the gradient are (n, k); P = output_activation(Z). Loss
values are means (over all n*k elements, or over the n samples for
cross-entropy), accumulated in float64 because they are reported, not trained
on; gradients stay in the arrays' dtype.

Cross-entropy and binary cross-entropy are computed from Z (log-sum-exp and
softplus forms) and use the fused gradients P*sum(Y) - Y and P - Y, so large
logits stay finite and exact.
"""

import numpy as np

from .._jit import kernel
from .activations import backprop_rows

MSE = 0
MAE = 1
RMSE = 2
CROSS_ENTROPY = 3
BINARY_CROSS_ENTROPY = 4


@kernel
def softplus(z):
    """log(1 + exp(z)) without overflow."""
    return max(z, type(z)(0)) + np.log1p(np.exp(-abs(z)))


@kernel
def squared_error_sum(P, Y):
    """sum over n, k of (P - Y)^2, in float64."""
    total = 0.0
    for i in range(P.shape[0]):
        for j in range(P.shape[1]):
            d = np.float64(P[i, j]) - np.float64(Y[i, j])
            total += d * d
    return total


@kernel
def loss_value(Z, P, Y, loss):
    """mean loss(P[n, k], Y[n, k]) as a float64; Z[n, k] is P before the output activation."""
    n, k = P.shape
    total = 0.0
    if loss == MSE or loss == RMSE:
        total = squared_error_sum(P, Y)
    elif loss == MAE:
        for i in range(n):
            for j in range(k):
                total += abs(np.float64(P[i, j]) - np.float64(Y[i, j]))
    elif loss == CROSS_ENTROPY:
        for i in range(n):
            largest = np.float64(Z[i, 0])
            for j in range(1, k):
                largest = max(largest, np.float64(Z[i, j]))
            exp_sum = 0.0
            y_sum = 0.0
            y_dot_z = 0.0
            for j in range(k):
                exp_sum += np.exp(np.float64(Z[i, j]) - largest)
                y_sum += np.float64(Y[i, j])
                y_dot_z += np.float64(Y[i, j]) * np.float64(Z[i, j])
            total += (largest + np.log(exp_sum)) * y_sum - y_dot_z
        return total / n
    elif loss == BINARY_CROSS_ENTROPY:
        for i in range(n):
            for j in range(k):
                z = np.float64(Z[i, j])
                total += softplus(z) - np.float64(Y[i, j]) * z
    mean = total / (n * k)
    if loss == RMSE:
        return np.sqrt(mean)
    return mean


@kernel
def loss_gradient(Z, P, Y, loss, output_activation, out):
    """out[n, k] = d loss / d Z[n, k] of the mean loss; returns the loss value (float64)."""
    n, k = P.shape
    dtype = out.dtype.type
    zero = dtype(0)
    value = loss_value(Z, P, Y, loss)
    if loss == CROSS_ENTROPY:
        scale = dtype(1.0 / n)
        for i in range(n):
            y_sum = zero
            for j in range(k):
                y_sum += Y[i, j]
            for j in range(k):
                out[i, j] = (P[i, j] * y_sum - Y[i, j]) * scale
        return value
    if loss == BINARY_CROSS_ENTROPY:
        scale = dtype(1.0 / (n * k))
        for i in range(n):
            for j in range(k):
                out[i, j] = (P[i, j] - Y[i, j]) * scale
        return value
    # Elementwise losses: d loss / d P, then back through the output activation.
    if loss == MSE:
        scale = dtype(2.0 / (n * k))
        for i in range(n):
            for j in range(k):
                out[i, j] = (P[i, j] - Y[i, j]) * scale
    elif loss == MAE:
        scale = dtype(1.0 / (n * k))
        for i in range(n):
            for j in range(k):
                d = P[i, j] - Y[i, j]
                out[i, j] = scale if d > zero else (-scale if d < zero else zero)
    elif loss == RMSE:
        # d sqrt(mse) = d mse / (2 sqrt(mse)); taken as 0 at a perfect fit.
        scale = dtype(1.0 / (n * k * value)) if value > 0.0 else zero
        for i in range(n):
            for j in range(k):
                out[i, j] = (P[i, j] - Y[i, j]) * scale
    backprop_rows(P, out, 0, n, output_activation, out)
    return value
