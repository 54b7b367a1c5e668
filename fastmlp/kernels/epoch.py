"""The compiled training loop: one call per epoch, the same kernels as the model class.

Buffers arrive flat; layer views are carved from them with the layout the model
uses (all weights in layer order, then all biases), so any depth runs through one
compiled function. Each kernel's serial or parallel variant is chosen by the same
size rule as in the model class, hence the same bits.
"""

import numpy as np

from .._jit import PARALLEL_MIN_ELEMENTS, PARALLEL_MIN_WORK, kernel
from .activations import IDENTITY, activation_forward
from .data import gather_rows
from .losses import loss_gradient
from .matmul import dense_forward, input_grad, transpose
from .optim import bias_grad_update, weight_grad_update

dense_forward_serial, dense_forward_parallel = dense_forward.serial, dense_forward.parallel
input_grad_serial, input_grad_parallel = input_grad.serial, input_grad.parallel
transpose_serial, transpose_parallel = transpose.serial, transpose.parallel
activation_forward_serial, activation_forward_parallel = activation_forward.serial, activation_forward.parallel
gather_rows_serial, gather_rows_parallel = gather_rows.serial, gather_rows.parallel
weight_grad_update_serial = weight_grad_update.serial
weight_grad_update_parallel = weight_grad_update.parallel


@kernel
def forward_layer(inputs, W, b, activation, out):
    """out = act(inputs @ W + b), serial or parallel by size."""
    if inputs.shape[0] * W.shape[0] * W.shape[1] >= PARALLEL_MIN_WORK:
        dense_forward_parallel(inputs, W, b, activation, out)
    else:
        dense_forward_serial(inputs, W, b, activation, out)


@kernel
def update_layer(inputs, delta, lr, momentum, weight_decay, nesterov, first_step,
                 W, b, W_velocity, b_velocity, W_grad, b_grad):
    """The SGD step on W and b from the gradients inputs.T @ delta and the column sums of
    delta (left in W_grad, b_grad); serial or parallel by size."""
    if inputs.shape[0] * inputs.shape[1] * delta.shape[1] >= PARALLEL_MIN_WORK:
        weight_grad_update_parallel(inputs, delta, lr, momentum, weight_decay, nesterov,
                                    first_step, W, W_velocity, W_grad)
    else:
        weight_grad_update_serial(inputs, delta, lr, momentum, weight_decay, nesterov,
                                  first_step, W, W_velocity, W_grad)
    bias_grad_update(delta, lr, momentum, nesterov, first_step, b, b_velocity, b_grad)


@kernel
def train_batch(X, Y, sizes, activations, output_activation, loss, params, grad, velocity,
                first_step, lr, momentum, weight_decay, nesterov,
                hidden, deltas, logits, output, transposed):
    """One SGD step on the batch X[rows, sizes[0]], Y[rows, sizes[-1]]; returns its mean loss.

    hidden, deltas, logits, output, transposed: flat workspaces of at least
    rows * sum(sizes[1:-1]), rows * sum(sizes[1:]), rows * sizes[-1] (twice) and
    sum of sizes[l] * sizes[l + 1] for l >= 1 elements.
    """
    rows = X.shape[0]
    n_layers = sizes.shape[0] - 1
    n_weights = 0
    for layer in range(n_layers):
        n_weights += sizes[layer] * sizes[layer + 1]
    n_out = sizes[n_layers]
    Z = logits[:rows * n_out].reshape((rows, n_out))

    # Forward. Layer 0 reads X; the others read the previous hidden layer.
    w_at, b_at, h_at = 0, n_weights, 0
    for layer in range(n_layers):
        k, m = sizes[layer], sizes[layer + 1]
        W = params[w_at:w_at + k * m].reshape((k, m))
        b = params[b_at:b_at + m]
        last = layer == n_layers - 1
        out = Z if last else hidden[h_at:h_at + rows * m].reshape((rows, m))
        activation = IDENTITY if last else activations[layer]
        if layer == 0:
            forward_layer(X, W, b, activation, out)
        else:
            previous = hidden[h_at - rows * k:h_at].reshape((rows, k))
            forward_layer(previous, W, b, activation, out)
        w_at += k * m
        b_at += m
        if not last:
            h_at += rows * m

    P = Z
    if output_activation != IDENTITY:
        P = output[:rows * n_out].reshape((rows, n_out))
        if rows * n_out >= PARALLEL_MIN_ELEMENTS:
            activation_forward_parallel(Z, output_activation, P)
        else:
            activation_forward_serial(Z, output_activation, P)

    # Backward, from the last layer down; w_at, b_at, h_at now sit at the ends.
    d_at = 0
    for layer in range(n_layers):
        d_at += rows * sizes[layer + 1]
    t_at = 0
    for layer in range(1, n_layers):
        t_at += sizes[layer] * sizes[layer + 1]
    d_at -= rows * n_out
    delta = deltas[d_at:d_at + rows * n_out].reshape((rows, n_out))
    value = loss_gradient(Z, P, Y, loss, output_activation, delta)
    for layer in range(n_layers - 1, -1, -1):
        k, m = sizes[layer], sizes[layer + 1]
        w_at -= k * m
        b_at -= m
        W = params[w_at:w_at + k * m].reshape((k, m))
        W_velocity = velocity[w_at:w_at + k * m].reshape((k, m))
        W_grad = grad[w_at:w_at + k * m].reshape((k, m))
        b, b_velocity, b_grad = params[b_at:b_at + m], velocity[b_at:b_at + m], grad[b_at:b_at + m]
        if layer == 0:
            update_layer(X, delta, lr, momentum, weight_decay, nesterov, first_step,
                         W, b, W_velocity, b_velocity, W_grad, b_grad)
            break
        # The input gradient reads W through WT, a copy taken before W is updated.
        h_at -= rows * k
        inputs = hidden[h_at:h_at + rows * k].reshape((rows, k))
        t_at -= k * m
        WT = transposed[t_at:t_at + k * m].reshape((m, k))
        if k * m >= PARALLEL_MIN_ELEMENTS:
            transpose_parallel(W, WT)
        else:
            transpose_serial(W, WT)
        d_at -= rows * k
        previous_delta = deltas[d_at:d_at + rows * k].reshape((rows, k))
        if rows * k * m >= PARALLEL_MIN_WORK:
            input_grad_parallel(delta, WT, inputs, activations[layer - 1], previous_delta)
        else:
            input_grad_serial(delta, WT, inputs, activations[layer - 1], previous_delta)
        update_layer(inputs, delta, lr, momentum, weight_decay, nesterov, first_step,
                     W, b, W_velocity, b_velocity, W_grad, b_grad)
        delta = previous_delta
    return value


@kernel
def train_epoch(X, Y, order, batch_size, sizes, activations, output_activation, loss,
                params, grad, velocity, first_step, lr, momentum, weight_decay, nesterov,
                hidden, deltas, logits, output, transposed, batch_X, batch_Y):
    """One epoch of SGD over the rows of X[n, d], Y[n, k] in `order` (in order if `order` is
    empty), batches of `batch_size`, the last one shorter; returns the sum of batch loss * rows,
    stopping early with a non-finite value if the loss diverges."""
    n, d = X.shape
    k = Y.shape[1]
    total = 0.0
    for start in range(0, n, batch_size):
        rows = min(batch_size, n - start)
        if order.shape[0] == 0:
            value = train_batch(X[start:start + rows], Y[start:start + rows], sizes, activations,
                                output_activation, loss, params, grad, velocity, first_step, lr,
                                momentum, weight_decay, nesterov, hidden, deltas, logits, output,
                                transposed)
        else:
            batch_rows = order[start:start + rows]
            Xb = batch_X[:rows * d].reshape((rows, d))
            Yb = batch_Y[:rows * k].reshape((rows, k))
            if rows * d >= PARALLEL_MIN_ELEMENTS:
                gather_rows_parallel(X, batch_rows, Xb)
            else:
                gather_rows_serial(X, batch_rows, Xb)
            gather_rows_serial(Y, batch_rows, Yb)
            value = train_batch(Xb, Yb, sizes, activations, output_activation, loss, params, grad,
                                velocity, first_step, lr, momentum, weight_decay, nesterov, hidden,
                                deltas, logits, output, transposed)
        first_step = False
        total += value * rows
        if not np.isfinite(total):
            return total
    return total
