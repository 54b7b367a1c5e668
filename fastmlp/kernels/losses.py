"""Loss values and their gradients with respect to the output layer's pre-activation Z.

Shapes: Z, P, Y and the gradient are (n, k); P = output_activation(Z); weights
is (n,) per-sample weights, or empty for weight 1 each. A loss is the weighted
mean over samples, divided by `weight_total`, of the sample's loss: the mean
over its k elements, or for cross-entropy the sum over classes. Callers pass
the total (the batch's sum of weights, or a whole data set's when the data
arrive in chunks); a zero total gives loss 0 and gradient 0. Values are
accumulated in float64 because they are reported, not trained on; gradients
stay in the arrays' dtype.

Cross-entropy, binary cross-entropy and Poisson are computed from Z
(log-sum-exp, softplus and exp(z) - y z forms) and use the fused gradients
P*sum(Y) - Y, P - Y and P - Y, so large logits stay finite and exact.
"""

import numpy as np

from .._jit import kernel
from .activations import backprop_rows

MSE = 0
MAE = 1
RMSE = 2
CROSS_ENTROPY = 3
BINARY_CROSS_ENTROPY = 4
POISSON = 5


@kernel
def softplus(z):
    """log(1 + exp(z)) without overflow."""
    return max(z, type(z)(0)) + np.log1p(np.exp(-abs(z)))


@kernel
def xlogx(y):
    """y log y, 0 at y = 0."""
    return y * np.log(y) if y > 0.0 else 0.0


@kernel
def sample_loss(Z, P, Y, i, loss):
    """The loss of sample i (float64): the mean over its k elements, or the sum over
    classes for cross-entropy."""
    k = P.shape[1]
    total = 0.0
    if loss == MSE or loss == RMSE:
        for j in range(k):
            d = np.float64(P[i, j]) - np.float64(Y[i, j])
            total += d * d
    elif loss == MAE:
        for j in range(k):
            total += abs(np.float64(P[i, j]) - np.float64(Y[i, j]))
    elif loss == CROSS_ENTROPY:
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
        return (largest + np.log(exp_sum)) * y_sum - y_dot_z
    elif loss == BINARY_CROSS_ENTROPY:
        for j in range(k):
            z = np.float64(Z[i, j])
            total += softplus(z) - np.float64(Y[i, j]) * z
    elif loss == POISSON:
        # The Poisson deviance's half, y log(y / p) - y + p with log p = z: 0 at p = y.
        for j in range(k):
            z = np.float64(Z[i, j])
            y = np.float64(Y[i, j])
            total += xlogx(y) - y * z - y + np.exp(z)
    return total / k


@kernel
def loss_value(Z, P, Y, loss, weights, weight_total):
    """sum over i of weights[i] * (loss of sample i) / weight_total, as a float64 (RMSE: its root)."""
    n = P.shape[0]
    if weight_total == 0.0:
        return 0.0
    total = 0.0
    if weights.shape[0] == 0:
        for i in range(n):
            total += sample_loss(Z, P, Y, i, loss)
    else:
        for i in range(n):
            if weights[i] != 0:
                total += np.float64(weights[i]) * sample_loss(Z, P, Y, i, loss)
    mean = total / weight_total
    if loss == RMSE:
        return np.sqrt(mean)
    return mean


@kernel
def loss_gradient(Z, P, Y, loss, output_activation, weights, weight_total, scale, out):
    """out[n, k] = scale * d loss / d Z[n, k] of loss_value(Z, P, Y, loss, weights,
    weight_total); returns that value."""
    n, k = P.shape
    dtype = out.dtype.type
    zero = dtype(0)
    value = loss_value(Z, P, Y, loss, weights, weight_total)
    # factor: d loss / d (sample i's loss) = weights[i] * factor.
    if loss == CROSS_ENTROPY:
        factor = scale / weight_total
    elif loss == RMSE:
        # d sqrt(mse) = d mse / (2 sqrt(mse)); taken as 0 at a perfect fit.
        factor = scale / (2.0 * k * weight_total * value) if value > 0.0 else 0.0
    else:
        factor = scale / (k * weight_total) if weight_total != 0.0 else 0.0
    if weight_total == 0.0:
        factor = 0.0
    unit = weights.shape[0] == 0
    for i in range(n):
        row = dtype(factor) if unit else dtype(factor * np.float64(weights[i]))
        if loss == CROSS_ENTROPY:
            y_sum = zero
            for j in range(k):
                y_sum += Y[i, j]
            for j in range(k):
                out[i, j] = (P[i, j] * y_sum - Y[i, j]) * row
        elif loss == BINARY_CROSS_ENTROPY or loss == POISSON:
            for j in range(k):
                out[i, j] = (P[i, j] - Y[i, j]) * row
        elif loss == MSE:
            row2 = row + row
            for j in range(k):
                out[i, j] = (P[i, j] - Y[i, j]) * row2
        elif loss == MAE:
            for j in range(k):
                d = P[i, j] - Y[i, j]
                out[i, j] = row if d > zero else (-row if d < zero else zero)
        elif loss == RMSE:
            row2 = row + row
            for j in range(k):
                out[i, j] = (P[i, j] - Y[i, j]) * row2
    if loss == MSE or loss == MAE or loss == RMSE:
        # Elementwise losses: the gradient so far is d loss / d P; back through the output activation.
        backprop_rows(P, out, 0, n, output_activation, out)
    return value


@kernel
def squared_norm(x):
    """sum of x[i]^2 over the 1-D array x, in float64."""
    total = 0.0
    for i in range(x.shape[0]):
        value = np.float64(x[i])
        total += value * value
    return total


@kernel
def add_l2_gradient(params, coefficient, grad):
    """grad[p] += coefficient * params[p] over the 1-D arrays; returns the penalty
    coefficient / 2 * sum of params[p]^2 (float64) whose gradient that is."""
    c = grad.dtype.type(coefficient)
    for i in range(params.shape[0]):
        grad[i] += c * params[i]
    return 0.5 * coefficient * squared_norm(params)
