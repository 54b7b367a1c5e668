"""The compiled training loop: one call per epoch, the same kernels as the model class.

Buffers arrive flat; layer views are carved from them with the layout the model
uses (all weights in layer order, then all biases), so any depth runs through one
compiled function. Each kernel's serial or parallel variant is chosen by the same
size rule as in the model class, hence the same bits.

Optimiser state: `state1` is SGD's momentum buffer or Adam's first moment,
`state2` Adam's second moment (unused by SGD); for Adam, `momentum` is beta1
and `step` the 1-based number of the step being taken.

The optimiser is chosen while compiling, not at run time: the chain train_epoch ->
train_batch -> update_layer -> update_weights is compiled once per optimiser, with
OPTIMIZER and the next function of the chain bound (`compile_for`, at the end of
this module), so a fit compiles or loads only its own optimiser's kernels. With the
optimiser a run-time argument every first fit compiled both (and the one-sample loop,
now a kernel of its own): 400-100-40-2 at batch size 32 took 51.6 s, 39.0 so.
"""

import numpy as np

from .._jit import PARALLEL_MIN_ELEMENTS, PARALLEL_MIN_WORK, helper, kernel, matrix_view
from .activations import IDENTITY, activation_forward
from .data import gather_csr_rows, gather_rows, rows_finite
from .losses import CROSS_ENTROPY, loss_gradient, softmax_cross_entropy, squared_norm
from .matmul import (GRAD_CHUNK_ROWS, bias_grad, dense_forward, input_grad, input_grad_row, transpose,
                     weight_grad)
from .optim import (adam_rate, bias_grad_adam, bias_grad_update, sgd_update_forward_row,
                    sgd_update_input_grad_row, weight_grad_adam, weight_grad_update)

SGD = 0
ADAM = 1
# Bound to SGD or ADAM in each compiled chain (compile_for); never read from here.
OPTIMIZER = None

dense_forward_serial, dense_forward_parallel = dense_forward.serial, dense_forward.parallel
input_grad_serial, input_grad_parallel = input_grad.serial, input_grad.parallel
weight_grad_serial, weight_grad_parallel = weight_grad.serial, weight_grad.parallel
transpose_serial, transpose_parallel = transpose.serial, transpose.parallel
activation_forward_serial, activation_forward_parallel = activation_forward.serial, activation_forward.parallel
gather_rows_serial, gather_rows_parallel = gather_rows.serial, gather_rows.parallel
gather_csr_rows_serial, gather_csr_rows_parallel = gather_csr_rows.serial, gather_csr_rows.parallel
weight_grad_update_serial = weight_grad_update.serial
weight_grad_update_parallel = weight_grad_update.parallel
weight_grad_adam_serial, weight_grad_adam_parallel = weight_grad_adam.serial, weight_grad_adam.parallel


@kernel
def forward_layer(inputs, W, b, activation, out):
    """out = act(inputs @ W + b), serial or parallel by size."""
    if inputs.shape[0] * W.shape[0] * W.shape[1] >= PARALLEL_MIN_WORK:
        dense_forward_parallel(inputs, W, b, activation, out)
    else:
        dense_forward_serial(inputs, W, b, activation, out)


def update_weights(inputs, delta, lr, momentum, beta2, epsilon, weight_decay, nesterov,
                   first_step, W, W_state1, W_state2, W_grad):
    """The optimiser's step on W from the weight gradient inputs.T @ delta (W_grad: working
    space, its first rows only when serial); serial or parallel by size."""
    parallel = inputs.shape[0] * inputs.shape[1] * delta.shape[1] >= PARALLEL_MIN_WORK
    if not parallel:
        W_grad = W_grad[:GRAD_CHUNK_ROWS]
    if OPTIMIZER == ADAM:
        if parallel:
            weight_grad_adam_parallel(inputs, delta, lr, momentum, beta2, epsilon, weight_decay,
                                      W, W_state1, W_state2, W_grad)
        else:
            weight_grad_adam_serial(inputs, delta, lr, momentum, beta2, epsilon, weight_decay,
                                    W, W_state1, W_state2, W_grad)
    elif parallel:
        weight_grad_update_parallel(inputs, delta, lr, momentum, weight_decay, nesterov,
                                    first_step, W, W_state1, W_grad)
    else:
        weight_grad_update_serial(inputs, delta, lr, momentum, weight_decay, nesterov,
                                  first_step, W, W_state1, W_grad)


def update_layer(inputs, delta, lr, momentum, beta2, epsilon, weight_decay, nesterov, first_step,
                 W, b, W_state1, b_state1, W_state2, b_state2, W_grad, b_grad):
    """update_weights, then the step on b from the column sums of delta (b_grad: the bias
    gradient)."""
    update_weights(inputs, delta, lr, momentum, beta2, epsilon, weight_decay, nesterov,
                   first_step, W, W_state1, W_state2, W_grad)
    if OPTIMIZER == ADAM:
        bias_grad_adam(delta, lr, momentum, beta2, epsilon, b, b_state1, b_state2, b_grad)
    else:
        bias_grad_update(delta, lr, momentum, nesterov, first_step, b, b_state1, b_grad)


@helper
def output_of(Z, output_activation, output):
    """The output layer's activation of its pre-activation Z[rows, n_out], in a view of
    `output`; Z itself for the identity."""
    if output_activation == IDENTITY:
        return Z
    rows, n_out = Z.shape
    P = matrix_view(output, 0, rows, n_out)
    if rows * n_out >= PARALLEL_MIN_ELEMENTS:
        activation_forward_parallel(Z, output_activation, P)
    else:
        activation_forward_serial(Z, output_activation, P)
    return P


@helper
def transpose_by_size(W, WT):
    """WT = W.T, serial or parallel by size."""
    if W.shape[0] * W.shape[1] >= PARALLEL_MIN_ELEMENTS:
        transpose_parallel(W, WT)
    else:
        transpose_serial(W, WT)


@helper
def forward(X, sizes, activations, output_activation, params, hidden, logits, output):
    """The forward pass on X[rows, sizes[0]]: hidden layers into `hidden`, the last layer's
    pre-activation into `logits` and its activation into `output` (when not the identity);
    returns the (rows, sizes[-1]) views (Z, P)."""
    rows = X.shape[0]
    n_layers = sizes.shape[0] - 1
    n_weights = 0
    for layer in range(n_layers):
        n_weights += sizes[layer] * sizes[layer + 1]
    n_out = sizes[n_layers]
    Z = matrix_view(logits, 0, rows, n_out)
    w_at, b_at, h_at = 0, n_weights, 0
    for layer in range(n_layers):
        k, m = sizes[layer], sizes[layer + 1]
        W = matrix_view(params, w_at, k, m)
        b = params[b_at:b_at + m]
        last = layer == n_layers - 1
        out = Z if last else matrix_view(hidden, h_at, rows, m)
        activation = IDENTITY if last else activations[layer]
        if layer == 0:
            forward_layer(X, W, b, activation, out)
        else:
            previous = matrix_view(hidden, h_at - rows * k, rows, k)
            forward_layer(previous, W, b, activation, out)
        w_at += k * m
        b_at += m
        if not last:
            h_at += rows * m
    return Z, output_of(Z, output_activation, output)


@helper
def forward_deferred(x, previous_x, lr, weight_decay, sizes, activations, output_activation, params,
                     hidden, previous_hidden, deltas, logits, output):
    """forward() on the one sample x[1, sizes[0]], each layer's weights first taking the
    previous sample's SGD step (no momentum), from its input previous_x, its hidden layers in
    previous_hidden and its deltas in `deltas` (as train_samples leaves them), in the same
    pass over them (sgd_update_forward_row)."""
    n_layers = sizes.shape[0] - 1
    n_weights = 0
    for layer in range(n_layers):
        n_weights += sizes[layer] * sizes[layer + 1]
    n_out = sizes[n_layers]
    Z = matrix_view(logits, 0, 1, n_out)
    # At one row a layer's output in `hidden` and its delta in `deltas` start at the same offset.
    w_at, b_at, h_at = 0, n_weights, 0
    for layer in range(n_layers):
        k, m = sizes[layer], sizes[layer + 1]
        last = layer == n_layers - 1
        inputs, previous_inputs = x, previous_x
        if layer > 0:
            inputs = matrix_view(hidden, h_at - k, 1, k)
            previous_inputs = matrix_view(previous_hidden, h_at - k, 1, k)
        sgd_update_forward_row(previous_inputs, matrix_view(deltas, h_at, 1, m), lr, weight_decay,
                               inputs, matrix_view(params, w_at, k, m), params[b_at:b_at + m],
                               IDENTITY if last else activations[layer],
                               Z if last else matrix_view(hidden, h_at, 1, m))
        w_at += k * m
        b_at += m
        h_at += m
    return Z, output_of(Z, output_activation, output)


@helper
def backward(delta, sizes, activations, hidden, deltas, transposed, params, layer,
             w_at, h_at, d_at, t_at):
    """Propagate delta (the gradient at layer `layer`'s pre-activation) one layer down:
    returns the previous layer's delta, a view of `deltas`. w_at..t_at locate the layer's
    buffers as train_batch tracks them."""
    k, m = sizes[layer], sizes[layer + 1]
    rows = delta.shape[0]
    W = matrix_view(params, w_at, k, m)
    inputs = matrix_view(hidden, h_at, rows, k)
    previous_delta = matrix_view(deltas, d_at, rows, k)
    if rows == 1:
        input_grad_row(delta, W, inputs, activations[layer - 1], previous_delta)
        return previous_delta
    # The input gradient reads W through WT, a copy taken before W is updated.
    WT = matrix_view(transposed, t_at, m, k)
    transpose_by_size(W, WT)
    if rows * k * m >= PARALLEL_MIN_WORK:
        input_grad_parallel(delta, WT, inputs, activations[layer - 1], previous_delta)
    else:
        input_grad_serial(delta, WT, inputs, activations[layer - 1], previous_delta)
    return previous_delta


@kernel
def layer_offsets(sizes, rows):
    """(weights, hidden, deltas, transposed) element counts summed over the layers, for
    walking the flat buffers from their ends."""
    n_layers = sizes.shape[0] - 1
    n_weights, n_hidden, n_deltas, n_transposed = 0, 0, 0, 0
    for layer in range(n_layers):
        n_weights += sizes[layer] * sizes[layer + 1]
        n_deltas += rows * sizes[layer + 1]
        if layer < n_layers - 1:
            n_hidden += rows * sizes[layer + 1]
        if layer >= 1:
            n_transposed += sizes[layer] * sizes[layer + 1]
    return n_weights, n_hidden, n_deltas, n_transposed


@helper
def forward_output(loss, output_activation):
    """The output activation forward() is to apply before output_loss_gradient: none for
    cross-entropy, whose kernel computes the softmax itself."""
    return IDENTITY if loss == CROSS_ENTROPY else output_activation


@helper
def output_loss_gradient(Z, P, Y, loss, output_activation, weights, weight_total, grad_scale,
                         output, delta):
    """loss_gradient at the output layer's pre-activation Z into delta, its activation P
    from forward() with forward_output; for cross-entropy the softmax goes into `output`
    in the same pass. Returns the loss."""
    if loss == CROSS_ENTROPY:
        P = matrix_view(output, 0, Z.shape[0], Z.shape[1])
        return softmax_cross_entropy(Z, Y, weights, weight_total, grad_scale, P, delta)
    return loss_gradient(Z, P, Y, loss, output_activation, weights, weight_total, grad_scale, delta)


@helper
def forward_loss_gradient(X, Y, weights, weight_total, sizes, activations, output_activation,
                          loss, grad_scale, params, hidden, deltas, d_at, logits, output):
    """The forward pass on X, then grad_scale times the gradient of the loss at the output
    layer's pre-activation into deltas from d_at; returns (the loss, that (rows, sizes[-1])
    view of deltas)."""
    rows = X.shape[0]
    n_out = sizes[sizes.shape[0] - 1]
    Z, P = forward(X, sizes, activations, forward_output(loss, output_activation), params, hidden,
                   logits, output)
    delta = matrix_view(deltas, d_at, rows, n_out)
    value = output_loss_gradient(Z, P, Y, loss, output_activation, weights, weight_total,
                                 grad_scale, output, delta)
    return value, delta


def train_batch(X, Y, weights, sizes, activations, output_activation, loss, grad_scale,
                decay_per_weight, lr, momentum, beta2, epsilon, weight_decay, nesterov,
                first_step, step, params, grad, state1, state2,
                hidden, deltas, logits, output, transposed):
    """One step of the optimiser on the batch X[rows, sizes[0]], Y[rows, sizes[-1]] with
    sample weights `weights` (empty: 1 each), on grad_scale times the batch's loss.

    Weight decay is `weight_decay`, or with decay_per_weight `weight_decay` divided by the
    batch's total weight (scikit-learn's alpha). Returns (loss, L2 penalty, whether a step
    was taken): a batch of total weight 0 changes nothing. The penalty, weight decay / 2 times
    the sum of squared weights before the step, is computed with decay_per_weight only.

    hidden, deltas, logits, output, transposed: flat workspaces of at least
    rows * sum(sizes[1:-1]), rows * sum(sizes[1:]), rows * sizes[-1] (twice) and
    sum of sizes[l] * sizes[l + 1] for l >= 1 elements.
    """
    rows = X.shape[0]
    n_layers = sizes.shape[0] - 1
    if weights.shape[0] == 0:
        weight_total = float(rows)
    else:
        weight_total = 0.0
        for i in range(rows):
            weight_total += np.float64(weights[i])
        if weight_total == 0.0:
            return 0.0, 0.0, False
    n_weights, h_at, d_at, t_at = layer_offsets(sizes, rows)
    dtype = params.dtype.type
    decay = weight_decay / weight_total if decay_per_weight else weight_decay
    penalty = 0.0
    if decay_per_weight and weight_decay != 0.0:
        penalty = 0.5 * decay * squared_norm(params[:n_weights])
    step_lr = lr
    if OPTIMIZER == ADAM:
        step_lr = adam_rate(lr, momentum, beta2, step)
    lr_, momentum_, beta2_ = dtype(step_lr), dtype(momentum), dtype(beta2)
    epsilon_, decay_ = dtype(epsilon), dtype(decay)

    d_at -= rows * sizes[n_layers]
    value, delta = forward_loss_gradient(X, Y, weights, weight_total, sizes, activations,
                                         output_activation, loss, grad_scale, params, hidden,
                                         deltas, d_at, logits, output)

    # Backward, from the last layer down; the offsets start at the buffers' ends.
    w_at, b_at = n_weights, params.shape[0]
    for layer in range(n_layers - 1, -1, -1):
        k, m = sizes[layer], sizes[layer + 1]
        w_at -= k * m
        b_at -= m
        inputs = X
        previous_delta = delta
        if layer > 0:
            h_at -= rows * k
            t_at -= k * m
            d_at -= rows * k
            inputs = matrix_view(hidden, h_at, rows, k)
            previous_delta = backward(delta, sizes, activations, hidden, deltas, transposed,
                                      params, layer, w_at, h_at, d_at, t_at)
        update_layer(inputs, delta, lr_, momentum_, beta2_, epsilon_, decay_, nesterov,
                     first_step,
                     matrix_view(params, w_at, k, m), params[b_at:b_at + m],
                     matrix_view(state1, w_at, k, m), state1[b_at:b_at + m],
                     matrix_view(state2, w_at, k, m), state2[b_at:b_at + m],
                     matrix_view(grad, w_at, k, m), grad[b_at:b_at + m])
        delta = previous_delta
    return value, penalty, True


@helper
def gather_batch(X, Y, weights, X_data, X_indices, X_indptr, order, start, rows,
                 batch_X, batch_Y, batch_weights):
    """The batch of rows start..start+rows-1 in `order`, as (rows, d), (rows, k) and (rows,)
    arrays of X, Y and weights: slices of them when `order` is empty (rows in order), else the
    rows order[start:start + rows] of X (or of the CSR matrix X_data, X_indices, X_indptr when
    X_indptr is not empty; X is then an empty (0, d) array), Y and weights gathered into views
    of the flat batch buffers."""
    if order.shape[0] == 0:
        wb = weights[start:start + rows] if weights.shape[0] > 0 else weights
        return X[start:start + rows], Y[start:start + rows], wb
    batch_rows = order[start:start + rows]
    d = X.shape[1]
    k = Y.shape[1]
    Xb = matrix_view(batch_X, 0, rows, d)
    Yb = matrix_view(batch_Y, 0, rows, k)
    if X_indptr.shape[0] > 0:
        if rows * d >= PARALLEL_MIN_ELEMENTS:
            gather_csr_rows_parallel(X_data, X_indices, X_indptr, batch_rows, Xb)
        else:
            gather_csr_rows_serial(X_data, X_indices, X_indptr, batch_rows, Xb)
    elif rows * d >= PARALLEL_MIN_ELEMENTS:
        gather_rows_parallel(X, batch_rows, Xb)
    else:
        gather_rows_serial(X, batch_rows, Xb)
    gather_rows_serial(Y, batch_rows, Yb)
    wb = batch_weights[:0]
    if weights.shape[0] > 0:
        wb = batch_weights[:rows]
        for r in range(rows):
            wb[r] = weights[batch_rows[r]]
    return Xb, Yb, wb


@helper
def half(buffer, size, which):
    """buffer[which * size:(which + 1) * size]: sample `which` (0 or 1) of a two-sample workspace."""
    return buffer[which * size:(which + 1) * size]


def train_samples(X, Y, weights, order, sizes, activations, output_activation, loss, grad_scale, lr,
                  weight_decay, nesterov, first_step, steps, params, grad, state1, hidden, deltas,
                  logits, output, transposed, check_rows):
    """train_epoch at batch size 1 for SGD without momentum and without the penalty that
    decay_per_weight reports, on dense X: the same steps, in the same bits, with each sample's
    weight step deferred into the next sample's passes over the weights, so each step reads and
    writes them once, not twice. The forward pass takes the step on W (forward_deferred);
    the input gradient reads a transposed copy of W (`transposed`, layers 1 and up), taking
    the same step on it as it goes. The last step is applied to W before returning.

    `hidden` and `deltas` hold two samples' worth: the pending step reads the previous
    sample's. nesterov and first_step, which change nothing without momentum, are the
    caller's flags, not constants, so that the kernels called here share train_batch's compiled
    signatures (constants would give them literal ones). With check_rows, stops at the first
    sample whose row of X is not finite; returns (sum of losses, 0, whether every row read was
    finite).
    """
    n = Y.shape[0]
    n_layers = sizes.shape[0] - 1
    n_out = sizes[n_layers]
    n_weights, n_hidden, n_deltas, n_transposed = layer_offsets(sizes, 1)
    dtype = params.dtype.type
    lr_, decay_, zero = dtype(lr), dtype(weight_decay), dtype(0)
    # The transposed copies stay equal to W, step for step. A sample's input gradient as one
    # chain per input, read down W's columns, is scalar code (256x128: 4.7 µs); read along
    # the rows of W's transpose it runs on the vector tiles (1.5 µs with the step included).
    w_at, t_at = sizes[0] * sizes[1], 0
    for layer in range(1, n_layers):
        k, m = sizes[layer], sizes[layer + 1]
        transpose_by_size(matrix_view(params, w_at, k, m), matrix_view(transposed, t_at, m, k))
        w_at += k * m
        t_at += k * m
    total = 0.0
    previous = -1  # the row of X whose weight step is pending
    current = 0  # which half of `hidden` and `deltas` this sample uses
    finite = True
    for start in range(n):
        row = start if order.shape[0] == 0 else order[start]
        if check_rows and not rows_finite(X, row, row + 1):
            finite = False
            break
        weight_total = 1.0
        sample_weight = weights
        if weights.shape[0] > 0:
            weight_total = np.float64(weights[row])
            if weight_total == 0.0:
                continue  # no step, as in train_batch
            sample_weight = weights[row:row + 1]
        x = X[row:row + 1]
        sample_hidden = half(hidden, n_hidden, current)
        previous_hidden = half(hidden, n_hidden, 1 - current)
        sample_deltas = half(deltas, n_deltas, current)
        previous_deltas = half(deltas, n_deltas, 1 - current)
        if previous >= 0:
            Z, P = forward_deferred(x, X[previous:previous + 1], lr_, decay_, sizes, activations,
                                    forward_output(loss, output_activation), params,
                                    sample_hidden, previous_hidden, previous_deltas, logits,
                                    output)
        else:
            Z, P = forward(x, sizes, activations, forward_output(loss, output_activation), params,
                           sample_hidden, logits, output)
        d_at = n_deltas - n_out
        delta = matrix_view(sample_deltas, d_at, 1, n_out)
        total += output_loss_gradient(Z, P, Y[row:row + 1], loss, output_activation,
                                      sample_weight, weight_total, grad_scale, output, delta)
        # Backward: input gradients and bias steps now, weight steps in the next sample's passes.
        w_at, b_at, h_at, t_at = n_weights, params.shape[0], n_hidden, n_transposed
        for layer in range(n_layers - 1, -1, -1):
            k, m = sizes[layer], sizes[layer + 1]
            w_at -= k * m
            b_at -= m
            previous_delta = delta
            if layer > 0:
                h_at -= k
                t_at -= k * m
                previous_delta = matrix_view(sample_deltas, d_at - k, 1, k)
                inputs = matrix_view(sample_hidden, h_at, 1, k)
                if previous >= 0:
                    sgd_update_input_grad_row(matrix_view(previous_deltas, d_at, 1, m),
                                              matrix_view(previous_hidden, h_at, 1, k), lr_,
                                              decay_, delta, matrix_view(transposed, t_at, m, k),
                                              inputs, activations[layer - 1], previous_delta)
                else:
                    input_grad_row(delta, matrix_view(params, w_at, k, m), inputs,
                                   activations[layer - 1], previous_delta)
                d_at -= k
            bias_grad_update(delta, lr_, zero, nesterov, first_step, params[b_at:b_at + m],
                             state1[b_at:b_at + m], grad[b_at:b_at + m])
            delta = previous_delta
        previous = row
        current = 1 - current
        steps[0] += 1
        if not np.isfinite(total):
            break
    if previous >= 0:
        # The last sample's weight steps; its layers' values are in the other halves now.
        last_hidden = half(hidden, n_hidden, 1 - current)
        last_deltas = half(deltas, n_deltas, 1 - current)
        w_at, h_at = 0, 0
        for layer in range(n_layers):
            k, m = sizes[layer], sizes[layer + 1]
            inputs = X[previous:previous + 1]
            if layer > 0:
                inputs = matrix_view(last_hidden, h_at - k, 1, k)
            update_weights(inputs, matrix_view(last_deltas, h_at, 1, m), lr_, zero, zero, zero,
                           decay_, nesterov, first_step, matrix_view(params, w_at, k, m),
                           matrix_view(state1, w_at, k, m), matrix_view(state1, w_at, k, m),
                           matrix_view(grad, w_at, k, m))
            w_at += k * m
            h_at += m
    return total, 0.0, finite


def train_epoch(X, Y, weights, X_data, X_indices, X_indptr, order, batch_size, sizes, activations,
                output_activation, loss, grad_scale, decay_per_weight, lr, momentum,
                beta2, epsilon, weight_decay, nesterov, first_step, steps, params, grad, state1,
                state2, hidden, deltas, logits, output, transposed, batch_X, batch_Y,
                batch_weights, check_rows):
    """One epoch of train_batch over the rows of X[n, d] (or the CSR matrix, see
    gather_batch), Y[n, k] and weights in `order` (in order if `order` is empty; CSR input
    needs an order), batches of `batch_size`, the last one shorter.

    steps[0] counts the steps taken (Adam's t), updated in place. Returns (sum of batch
    loss * rows, sum of batch penalty * rows, whether every batch of X read was finite),
    stopping early with a non-finite loss if training diverges. With check_rows (dense X),
    each batch of X is tested for NaN and infinity while in cache, and the epoch stops at the
    first that holds any: the caller's whole-array test then needs no pass of its own.
    (At batch size 1, train_samples takes the same steps faster where it applies.)
    """
    n = Y.shape[0]
    total = 0.0
    penalty_total = 0.0
    for start in range(0, n, batch_size):
        rows = min(batch_size, n - start)
        Xb, Yb, wb = gather_batch(X, Y, weights, X_data, X_indices, X_indptr, order, start, rows,
                                  batch_X, batch_Y, batch_weights)
        if check_rows and not rows_finite(Xb, 0, rows):
            return total, penalty_total, False
        value, penalty, stepped = train_batch(
            Xb, Yb, wb, sizes, activations, output_activation, loss, grad_scale,
            decay_per_weight, lr, momentum, beta2, epsilon, weight_decay, nesterov,
            first_step, steps[0] + 1, params, grad, state1, state2,
            hidden, deltas, logits, output, transposed)
        if stepped:
            first_step = False
            steps[0] += 1
        total += value * rows
        penalty_total += penalty * rows
        if not np.isfinite(total):
            return total, penalty_total, True
    return total, penalty_total, True


def compile_for(optimizer, name):
    """train_epoch and update_weights with `optimizer` (SGD or ADAM) bound through the chain,
    compiled as the variant `name`."""
    weights = helper(update_weights, name, OPTIMIZER=optimizer)
    layer = kernel(update_layer, name, OPTIMIZER=optimizer, update_weights=weights)
    batch = kernel(train_batch, name, OPTIMIZER=optimizer, update_layer=layer)
    return kernel(train_epoch, name, train_batch=batch), weights


train_epoch_sgd, update_weights_sgd = compile_for(SGD, "sgd")
train_epoch_adam, _ = compile_for(ADAM, "adam")
# The compiled epochs by optimiser code, and the one-sample SGD loop.
EPOCHS = {SGD: train_epoch_sgd, ADAM: train_epoch_adam}
train_samples_sgd = kernel(train_samples, "sgd", update_weights=update_weights_sgd)


@kernel
def dataset_gradient(X, Y, weights, X_data, X_indices, X_indptr, order, weight_total, chunk_rows,
                     sizes, activations, output_activation, loss, grad_scale, params, grad,
                     chunk_grad, hidden, deltas, logits, output, transposed, batch_X, batch_Y,
                     batch_weights):
    """grad = grad_scale * the gradient of the loss over all of X (or the CSR matrix, see
    gather_batch, whose rows `order` then lists as 0..n-1; empty for dense X), Y and weights,
    each sample's weight divided by weight_total, taken chunk_rows rows at a time; returns the
    loss (float64). The workspaces hold chunk_rows rows.

    The loss must be a sum over samples (any but RMSE).
    """
    n = Y.shape[0]
    n_layers = sizes.shape[0] - 1
    for p in range(grad.shape[0]):
        grad[p] = 0
    total = 0.0
    for start in range(0, n, chunk_rows):
        rows = min(chunk_rows, n - start)
        Xb, Yb, wb = gather_batch(X, Y, weights, X_data, X_indices, X_indptr, order, start, rows,
                                  batch_X, batch_Y, batch_weights)
        n_weights, h_at, d_at, t_at = layer_offsets(sizes, rows)
        d_at -= rows * sizes[n_layers]
        value, delta = forward_loss_gradient(Xb, Yb, wb, weight_total, sizes, activations,
                                             output_activation, loss, grad_scale, params, hidden,
                                             deltas, d_at, logits, output)
        total += value
        w_at, b_at = n_weights, params.shape[0]
        for layer in range(n_layers - 1, -1, -1):
            k, m = sizes[layer], sizes[layer + 1]
            w_at -= k * m
            b_at -= m
            inputs = Xb
            previous_delta = delta
            if layer > 0:
                h_at -= rows * k
                t_at -= k * m
                d_at -= rows * k
                inputs = matrix_view(hidden, h_at, rows, k)
                previous_delta = backward(delta, sizes, activations, hidden, deltas, transposed,
                                          params, layer, w_at, h_at, d_at, t_at)
            W_grad = matrix_view(chunk_grad, w_at, k, m)
            if rows * k * m >= PARALLEL_MIN_WORK:
                weight_grad_parallel(inputs, delta, W_grad)
            else:
                weight_grad_serial(inputs, delta, W_grad)
            bias_grad(delta, chunk_grad[b_at:b_at + m])
            delta = previous_delta
        for p in range(grad.shape[0]):
            grad[p] += chunk_grad[p]
    return total
