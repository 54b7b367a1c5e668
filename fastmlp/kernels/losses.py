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

from .._jit import helper, kernel
from .activations import IDENTITY, backprop_rows, exp_shifted_rows, row_max
from .functions import exp
from .vector import SQUARES_BLOCK, squares_sum

MSE = 0
MAE = 1
RMSE = 2
CROSS_ENTROPY = 3
BINARY_CROSS_ENTROPY = 4
POISSON = 5


@helper
def softplus(z):
    """log(1 + exp(z)) without overflow."""
    return max(z, type(z)(0)) + np.log1p(np.exp(-abs(z)))


@helper
def xlogx(y):
    """y log y, 0 at y = 0."""
    return y * np.log(y) if y > 0.0 else 0.0


@helper
def sample_weight(weights, i):
    """The weight of sample i: weights[i], or 1 when weights is empty."""
    return 1.0 if weights.shape[0] == 0 else np.float64(weights[i])


@helper
def row_scale(weights, i, factor, dtype):
    """factor * weights[i] (factor when weights is empty) in the gradient's dtype."""
    return dtype(factor) if weights.shape[0] == 0 else dtype(factor * np.float64(weights[i]))


@helper
def zero_row(out, i):
    """out[i, :] = 0"""
    for j in range(out.shape[1]):
        out[i, j] = 0


@helper
def cross_entropy_row(Z, Y, i, exp_sum):
    """Sample i's cross-entropy in float64 from its logits Z[i], targets Y[i] and exp_sum, the
    float64 sum over j of exp(Z[i, j] - max of Z[i]): (max + log(exp_sum)) * sum of Y[i]
    minus Y[i] . Z[i], the log-sum-exp form that stays finite for any logits."""
    y_sum = 0.0
    y_dot_z = 0.0
    for j in range(Z.shape[1]):
        y_sum += np.float64(Y[i, j])
        y_dot_z += np.float64(Y[i, j]) * np.float64(Z[i, j])
    return (np.float64(row_max(Z, i)) + np.log(exp_sum)) * y_sum - y_dot_z


@helper
def cross_entropy_gradient_row(P, Y, i, row, out):
    """out[i, :] = (P[i, :] * sum of Y[i, :] - Y[i, :]) * row: softmax with cross-entropy's
    gradient at the logits of sample i, times its scale `row`."""
    y_sum = out.dtype.type(0)
    for j in range(Y.shape[1]):
        y_sum += Y[i, j]
    for j in range(Y.shape[1]):
        out[i, j] = (P[i, j] * y_sum - Y[i, j]) * row


@kernel
def loss_value(Z, P, Y, loss, weights, weight_total):
    """sum over i of weights[i] * (loss of sample i) / weight_total, as a float64 (RMSE: its
    root). A sample's loss is the mean over its k elements, or the sum over classes for
    cross-entropy; samples of weight 0 are skipped, whatever their loss.

    One loop per loss, each with the row arithmetic written in line, which measured faster
    than a per-row call into a helper branching on the loss.
    """
    n, k = P.shape
    if weight_total == 0.0:
        return 0.0
    total = 0.0
    if loss == MSE or loss == RMSE:
        for i in range(n):
            w = sample_weight(weights, i)
            if w != 0.0:
                row = 0.0
                for j in range(k):
                    d = np.float64(P[i, j]) - np.float64(Y[i, j])
                    row += d * d
                total += w * (row / k)
    elif loss == MAE:
        for i in range(n):
            w = sample_weight(weights, i)
            if w != 0.0:
                row = 0.0
                for j in range(k):
                    row += abs(np.float64(P[i, j]) - np.float64(Y[i, j]))
                total += w * (row / k)
    elif loss == CROSS_ENTROPY:
        for i in range(n):
            w = sample_weight(weights, i)
            if w != 0.0:
                largest = row_max(Z, i)
                exp_sum = 0.0
                for j in range(k):
                    # In Z's dtype: float32's exp vectorises (1.3 ulp), float64's is libm's.
                    exp_sum += np.float64(exp(Z[i, j] - largest))
                total += w * cross_entropy_row(Z, Y, i, exp_sum)
    elif loss == BINARY_CROSS_ENTROPY:
        for i in range(n):
            w = sample_weight(weights, i)
            if w != 0.0:
                row = 0.0
                for j in range(k):
                    z = np.float64(Z[i, j])
                    row += softplus(z) - np.float64(Y[i, j]) * z
                total += w * (row / k)
    elif loss == POISSON:
        # The Poisson deviance's half, y log(y / p) - y + p with log p = z: 0 at p = y.
        for i in range(n):
            w = sample_weight(weights, i)
            if w != 0.0:
                row = 0.0
                for j in range(k):
                    z = np.float64(Z[i, j])
                    y = np.float64(Y[i, j])
                    row += xlogx(y) - y * z - y + np.exp(z)
                total += w * (row / k)
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
    if weight_total == 0.0:
        factor = 0.0
    elif loss == CROSS_ENTROPY:
        factor = scale / weight_total
    elif loss == RMSE:
        # d sqrt(mse) = d mse / (2 sqrt(mse)); taken as 0 at a perfect fit.
        factor = scale / (2.0 * k * weight_total * value) if value > 0.0 else 0.0
    else:
        factor = scale / (k * weight_total)
    # Each sample's gradient is (its loss's gradient) * row_scale(i); one loop per form. A row
    # of scale 0 (weight 0, or a perfect RMSE fit) is 0 even where its output overflowed.
    if loss == CROSS_ENTROPY:
        for i in range(n):
            row = row_scale(weights, i, factor, dtype)
            if row == zero:
                zero_row(out, i)
                continue
            cross_entropy_gradient_row(P, Y, i, row, out)
    elif loss == MAE:
        for i in range(n):
            row = row_scale(weights, i, factor, dtype)
            if row == zero:
                zero_row(out, i)
                continue
            for j in range(k):
                d = P[i, j] - Y[i, j]
                out[i, j] = row if d > zero else (-row if d < zero else zero)
    else:
        # (P - Y) times the row's scale, doubled for the squared errors.
        double = loss == MSE or loss == RMSE
        for i in range(n):
            row = row_scale(weights, i, factor, dtype)
            if row == zero:
                zero_row(out, i)
                continue
            if double:
                row = row + row
            for j in range(k):
                out[i, j] = (P[i, j] - Y[i, j]) * row
    if (loss == MSE or loss == MAE or loss == RMSE) and output_activation != IDENTITY:
        # Elementwise losses: the gradient so far is d loss / d P; back through the output activation.
        backprop_rows(P, out, 0, n, output_activation, out)
    return value


@kernel
def softmax_cross_entropy(Z, Y, weights, weight_total, scale, P, out):
    """P[n, k] = softmax(Z[n, k]) and, for the cross-entropy loss, out[n, k] = scale * d loss / d Z;
    returns the loss. The bits of activation_forward, loss_gradient and loss_value, which
    compute softmax's exponentials twice; here they are shared. P must not be Z."""
    n, k = Z.shape
    dtype = out.dtype.type
    zero = dtype(0)
    exp_shifted_rows(Z, 0, n, P)
    factor = 0.0 if weight_total == 0.0 else scale / weight_total
    total = 0.0
    for i in range(n):
        exp_sum = zero
        exp_sum_wide = 0.0
        for j in range(k):
            exp_sum += P[i, j]
            exp_sum_wide += np.float64(P[i, j])
        for j in range(k):
            P[i, j] = P[i, j] / exp_sum
        w = sample_weight(weights, i)
        if weight_total != 0.0 and w != 0.0:
            total += w * cross_entropy_row(Z, Y, i, exp_sum_wide)
        row = row_scale(weights, i, factor, dtype)
        if row == zero:
            zero_row(out, i)
            continue
        cross_entropy_gradient_row(P, Y, i, row, out)
    return 0.0 if weight_total == 0.0 else total / weight_total


@kernel
def squared_norm(x):
    """sum of x[i]^2 over the 1-D array x, in float64: the blocks of SQUARES_BLOCK elements
    on vectors of running sums (vector.squares_sum; one running sum would wait on the adder's
    latency at every element), the rest in order after them. The order is fixed."""
    n = x.shape[0]
    full = n - n % SQUARES_BLOCK
    total = squares_sum(x, full)
    for i in range(full, n):
        v = np.float64(x[i])
        total += v * v
    return total


@kernel
def add_l2_gradient(params, coefficient, grad):
    """grad[p] += coefficient * params[p] over the 1-D arrays; returns the penalty
    coefficient / 2 * sum of params[p]^2 (float64) whose gradient that is."""
    c = grad.dtype.type(coefficient)
    for i in range(params.shape[0]):
        grad[i] += c * params[i]
    return 0.5 * coefficient * squared_norm(params)
