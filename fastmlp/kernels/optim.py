"""Parameter updates: PyTorch's SGD step (momentum, Nesterov, weight decay; dampening 0)
and Adam.

Every update, over the flat buffer or fused into the gradient passes, computes
each parameter with `plain_step`, `momentum_step` or `adam_step`, so a parameter
gets the same arithmetic wherever it is updated.

Adam is the form of Kingma & Ba's section 2 that scikit-learn uses: the caller
folds both bias corrections into the step's rate, lr_t = lr * sqrt(1 - beta2^t)
/ (1 - beta1^t), and epsilon is added to sqrt(v) (not to the corrected sqrt(v_hat)
as in PyTorch). Weight decay is L2 added to the gradient, as in SGD.
"""

import math

import numpy as np
from numba import prange

from .._jit import helper, kernel, parallel_kernel, rows_flat
from .activations import activate_rows, backprop_rows
from .functions import fused_multiply_add
from .matmul import (GRAD_CHUNK_ROWS, GRAD_PASS_BYTES, bias_grad, column_tiles_for,
                     gradient_rows, packed_edge)
from .vector import (ROW_TILE_VECTORS, TILE_ROWS, TILE_VECTORS, VECTOR_BYTES,
                     step_edge_tile, step_narrow_tile, step_packed_tile, step_row_edge_tile,
                     step_row_half_tile, step_row_narrow_tile, step_row_tile, step_tile,
                     update_row_edge_tile, update_row_tile)

# Fixed chunk size for the parallel loop: the split never depends on the thread count.
CHUNK = 4096


@helper
def plain_step(grad, param, lr, weight_decay):
    """The parameter after one step without momentum, param - lr * (grad + weight_decay * param),
    each product-and-sum one explicit fused multiply-add (the decay's only when it is not 0),
    so that vector.update_row_tile can repeat its rounding exactly."""
    if weight_decay != 0:
        grad = fused_multiply_add(weight_decay, param, grad)
    return fused_multiply_add(-lr, grad, param)


@helper
def momentum_step(grad, param, velocity, lr, momentum, weight_decay, nesterov, first_step):
    """(parameter, momentum buffer) after one step; first_step: the buffer starts as the gradient."""
    d = grad + weight_decay * param
    v = d if first_step else momentum * velocity + d
    return param - lr * (d + momentum * v if nesterov else v), v


@helper
def adam_step(grad, param, m, v, lr, beta1, beta2, epsilon, weight_decay):
    """(parameter, first moment, second moment) after one Adam step at the step's rate lr."""
    # One of beta1's type: the integer literal 1 would make every float32 step float64.
    one = type(beta1)(1)
    d = grad + weight_decay * param
    m = beta1 * m + (one - beta1) * d
    v = beta2 * v + (one - beta2) * (d * d)
    return param - lr * m / (np.sqrt(v) + epsilon), m, v


@helper
def sgd_step_flat(grad, lr, momentum, weight_decay, nesterov, first_step, params, velocity):
    """The step on every element of the 1-D arrays params, velocity (velocity unused at momentum 0)."""
    if momentum == 0:
        for i in range(params.shape[0]):
            params[i] = plain_step(grad[i], params[i], lr, weight_decay)
    else:
        for i in range(params.shape[0]):
            params[i], velocity[i] = momentum_step(grad[i], params[i], velocity[i], lr, momentum,
                                                   weight_decay, nesterov, first_step)


@helper
def adam_step_flat(grad, lr, beta1, beta2, epsilon, weight_decay, params, m, v):
    """The Adam step on every element of the 1-D arrays params, m, v."""
    for i in range(params.shape[0]):
        params[i], m[i], v[i] = adam_step(grad[i], params[i], m[i], v[i], lr, beta1, beta2,
                                          epsilon, weight_decay)


@parallel_kernel
def sgd_update(grad, n_decayed, lr, momentum, weight_decay, nesterov, first_step, params, velocity):
    """One SGD step on the flat buffers params[p], velocity[p] from grad[p]; weight decay
    applies to params[:n_decayed] (the weights) only."""
    n = params.shape[0]
    zero = params.dtype.type(0)
    for chunk in prange((n + CHUNK - 1) // CHUNK):
        start = chunk * CHUNK
        stop = min(start + CHUNK, n)
        split = min(max(n_decayed, start), stop)
        sgd_step_flat(grad[start:split], lr, momentum, weight_decay, nesterov, first_step,
                      params[start:split], velocity[start:split])
        sgd_step_flat(grad[split:stop], lr, momentum, zero, nesterov, first_step,
                      params[split:stop], velocity[split:stop])


@helper
def gradient_block(AT, dZ, start, stop, out):
    """Rows start..stop-1 of the weight gradient AT @ dZ into the working space out: at those
    rows when out has all of AT's, else from row 0 (the serial kernels' one block); returns
    the row of out they start at."""
    at = start if out.shape[0] >= AT.shape[0] else 0
    gradient_rows(AT[start:stop], dZ, 0, stop - start, out[at:])
    return at


@helper
def step_row_edge(AT, dZ, r, j, width, lr, weight_decay, W):
    """sgd_step_rows on W[r, j:j+width] for width < a row tile, on the narrowest masked row
    tile that covers it (as matmul.product_row_edge chooses)."""
    n = AT.shape[1]
    lanes = VECTOR_BYTES // W.itemsize
    if width <= lanes:
        step_row_narrow_tile(AT, dZ, r, j, width, 0, n, lr, weight_decay, W)
    elif width <= ROW_TILE_VECTORS // 2 * lanes:
        step_row_half_tile(AT, dZ, r, j, width, 0, n, lr, weight_decay, W)
    else:
        step_row_edge_tile(AT, dZ, r, j, width, 0, n, lr, weight_decay, W)


@helper
def sgd_step_rows(AT, dZ, start, stop, lr, weight_decay, W):
    """The SGD step without momentum (plain_step) on W[start:stop, m] from its gradient
    AT[start:stop, n] @ dZ[n, m], summed as gradient_rows sums it: each tile steps its block
    of W from the sums in its registers, so the gradient is never stored."""
    n = AT.shape[1]
    m = W.shape[1]
    lanes = VECTOR_BYTES // W.itemsize
    width = TILE_VECTORS * lanes
    full = m - m % width
    full_rows = start + (stop - start) // TILE_ROWS * TILE_ROWS
    packed = packed_edge(m, width, W)
    tiled = full - width if packed else full
    for j in range(0, tiled, width):
        for p in range(start, full_rows, TILE_ROWS):
            step_tile(AT, dZ, p, j, width, 0, n, lr, weight_decay, W)
    if packed:
        for p in range(start, full_rows, TILE_ROWS):
            step_packed_tile(AT, dZ, p, tiled, m - full, 0, n, lr, weight_decay, W)
    elif full < m:
        for p in range(start, full_rows, TILE_ROWS):
            if m - full > lanes:
                step_edge_tile(AT, dZ, p, full, m - full, 0, n, lr, weight_decay, W)
            else:
                step_narrow_tile(AT, dZ, p, full, m - full, 0, n, lr, weight_decay, W)
    row_width = ROW_TILE_VECTORS * lanes
    row_full = m - m % row_width
    for r in range(full_rows, stop):
        for j in range(0, row_full, row_width):
            step_row_tile(AT, dZ, r, j, row_width, 0, n, lr, weight_decay, W)
        if row_full < m:
            step_row_edge(AT, dZ, r, row_full, m - row_full, lr, weight_decay, W)


@parallel_kernel
def weight_grad_update(A, dZ, lr, momentum, weight_decay, nesterov, first_step, W, velocity, out):
    """The SGD step on W[k, m] and velocity[k, m] from the weight gradient A[n, k].T @ dZ[n, m]
    (as weight_grad computes it), GRAD_CHUNK_ROWS rows at a time while they are in cache.

    Without momentum, on batches that the gradient sums in one pass (matmul.GRAD_PASS_BYTES)
    and outputs not on column tiles (matmul.column_tiles_for), the tiles step W from the sums
    in their registers (sgd_step_rows; 784x256 at 32 samples, one thread: 66 µs became 53)
    and `out` is not touched. Otherwise the gradient passes through out, working space of
    (k, m), a block of rows per chunk, or for the serial kernel (GRAD_CHUNK_ROWS, m), one
    block that stays in the L1 cache and spares the whole gradient's trip through L2 (784x256
    at one sample: 20 µs became 17).
    """
    AT = A.T
    n, k = A.shape
    in_registers = (momentum == 0 and n <= GRAD_PASS_BYTES // W.itemsize
                    and not column_tiles_for(W.shape[1], n))
    for chunk in prange((k + GRAD_CHUNK_ROWS - 1) // GRAD_CHUNK_ROWS):
        p = GRAD_CHUNK_ROWS * chunk
        stop = min(p + GRAD_CHUNK_ROWS, k)
        if in_registers:
            sgd_step_rows(AT, dZ, p, stop, lr, weight_decay, W)
        else:
            at = gradient_block(AT, dZ, p, stop, out)
            sgd_step_flat(rows_flat(out, at, at + stop - p), lr, momentum, weight_decay, nesterov,
                          first_step, rows_flat(W, p, stop), rows_flat(velocity, p, stop))


@helper
def sgd_update_product_row(A, dZ, lr, weight_decay, X, W, out):
    """One sample's SGD step without momentum, W[k, m] from the gradient A[0, k].T @ dZ[0, m]
    (weight_grad_update's bits), and out[0, m] += X[0, k] @ the updated W, summed as the
    product tiles do, in one pass over W instead of two."""
    k, m = W.shape
    if m * out.itemsize <= VECTOR_BYTES // 4:
        # Rows this narrow share a vector, so a tile's masked store would hold up the next
        # rows' loads (40x2: 0.24 µs tiled, 0.15 unfused); scalar chains are short here.
        for p in range(k):
            a, x = A[0, p], X[0, p]
            for j in range(m):
                w = plain_step(a * dZ[0, j], W[p, j], lr, weight_decay)
                W[p, j] = w
                out[0, j] += x * w
        return
    lanes = VECTOR_BYTES // out.itemsize
    row_width = ROW_TILE_VECTORS * lanes
    row_full = m - m % row_width
    for j in range(0, row_full, row_width):
        update_row_tile(A, dZ, lr, weight_decay, X, W, j, row_width, out)
    if row_full < m:
        update_row_edge_tile(A, dZ, lr, weight_decay, X, W, row_full, m - row_full, out)


@kernel
def sgd_update_forward_row(A, dZ, lr, weight_decay, X, W, b, activation, out):
    """sgd_update_product_row, giving out[0, m] = act(X[0, k] @ W + b) on the updated W with
    dense_forward's bits."""
    for j in range(W.shape[1]):
        out[0, j] = b[j]
    sgd_update_product_row(A, dZ, lr, weight_decay, X, W, out)
    activate_rows(out, 0, 1, activation, out)


@kernel
def sgd_update_input_grad_row(previous_delta, previous_inputs, lr, weight_decay, delta, WT, inputs,
                              activation, out):
    """A layer's transposed weights WT[m, k] take the SGD step (no momentum) of the sample
    before, from previous_delta[0, m].T @ previous_inputs[0, k] (the transpose of its weight
    gradient), then out[0, k] = (delta[0, m] @ WT) * act'(inputs[0, k]) with input_grad's
    bits: sgd_update_product_row on WT."""
    zero = out.dtype.type(0)
    for p in range(WT.shape[1]):
        out[0, p] = zero
    sgd_update_product_row(previous_delta, previous_inputs, lr, weight_decay, delta, WT, out)
    backprop_rows(inputs, out, 0, 1, activation, out)


@kernel
def bias_grad_update(dZ, lr, momentum, nesterov, first_step, b, velocity, out):
    """out[m] = sum over n of dZ[n, m] (as bias_grad computes it), then the SGD step on b[m],
    velocity[m] from it, without weight decay."""
    bias_grad(dZ, out)
    sgd_step_flat(out, lr, momentum, out.dtype.type(0), nesterov, first_step, b, velocity)


@parallel_kernel
def adam_update(grad, n_decayed, lr, beta1, beta2, epsilon, weight_decay, params, m, v):
    """One Adam step at rate lr on the flat buffers params[p], m[p], v[p] from grad[p];
    weight decay applies to params[:n_decayed] (the weights) only."""
    n = params.shape[0]
    zero = params.dtype.type(0)
    for chunk in prange((n + CHUNK - 1) // CHUNK):
        start = chunk * CHUNK
        stop = min(start + CHUNK, n)
        split = min(max(n_decayed, start), stop)
        adam_step_flat(grad[start:split], lr, beta1, beta2, epsilon, weight_decay,
                       params[start:split], m[start:split], v[start:split])
        adam_step_flat(grad[split:stop], lr, beta1, beta2, epsilon, zero,
                       params[split:stop], m[split:stop], v[split:stop])


@parallel_kernel
def weight_grad_adam(A, dZ, lr, beta1, beta2, epsilon, weight_decay, W, m, v, out):
    """The Adam step on W[k, m], m[k, m], v[k, m] from the weight gradient A[n, k].T @ dZ[n, m]
    (as weight_grad computes it), GRAD_CHUNK_ROWS rows at a time; out is working space, as in
    weight_grad_update."""
    AT = A.T
    k = A.shape[1]
    for chunk in prange((k + GRAD_CHUNK_ROWS - 1) // GRAD_CHUNK_ROWS):
        p = GRAD_CHUNK_ROWS * chunk
        stop = min(p + GRAD_CHUNK_ROWS, k)
        at = gradient_block(AT, dZ, p, stop, out)
        adam_step_flat(rows_flat(out, at, at + stop - p), lr, beta1, beta2, epsilon, weight_decay,
                       rows_flat(W, p, stop), rows_flat(m, p, stop), rows_flat(v, p, stop))


@kernel
def bias_grad_adam(dZ, lr, beta1, beta2, epsilon, b, m, v, out):
    """out[m] = sum over n of dZ[n, m] (as bias_grad computes it), then the Adam step on
    b[m], m[m], v[m] from it, without weight decay."""
    bias_grad(dZ, out)
    adam_step_flat(out, lr, beta1, beta2, epsilon, out.dtype.type(0), b, m, v)


@kernel
def adam_rate(lr, beta1, beta2, step):
    """The rate of Adam's step number `step` (from 1), both bias corrections folded in."""
    return lr * math.sqrt(1.0 - beta2 ** step) / (1.0 - beta1 ** step)
