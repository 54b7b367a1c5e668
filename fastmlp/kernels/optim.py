"""Parameter updates: PyTorch's SGD step (momentum, Nesterov, weight decay; dampening 0).

Every update, over the flat buffer or fused into the gradient passes, goes through
`sgd_step_row`, so each parameter gets the same arithmetic wherever it is updated.
"""

from numba import prange

from .._jit import kernel, parallel_kernel
from .matmul import accumulate_block, bias_grad, zero_rows

# Fixed chunk size for the parallel loop: the split never depends on the thread count.
CHUNK = 4096


@kernel
def sgd_step_row(grad, lr, momentum, weight_decay, nesterov, first_step, params, velocity):
    """params[i] -= lr * d[i], d = grad[i] + weight_decay * params[i] through the momentum
    buffer velocity[i] (updated; first_step: it starts as d); velocity unused at momentum 0."""
    n = params.shape[0]
    if momentum == 0:
        for i in range(n):
            params[i] = params[i] - lr * (grad[i] + weight_decay * params[i])
    else:
        for i in range(n):
            d = grad[i] + weight_decay * params[i]
            v = d if first_step else momentum * velocity[i] + d
            velocity[i] = v
            params[i] = params[i] - lr * (d + momentum * v if nesterov else v)


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
        sgd_step_row(grad[start:split], lr, momentum, weight_decay, nesterov, first_step,
                     params[start:split], velocity[start:split])
        sgd_step_row(grad[split:stop], lr, momentum, zero, nesterov, first_step,
                     params[split:stop], velocity[split:stop])


@parallel_kernel
def weight_grad_update(AT, dZ, lr, momentum, weight_decay, nesterov, first_step, W, velocity, out):
    """out[k, m] = AT[k, n] @ dZ[n, m] (the weight gradient, as weight_grad computes it), then
    the SGD step on W[k, m] and velocity[k, m] from it, four rows at a time while they are in cache."""
    k = AT.shape[0]
    for block in prange((k + 3) // 4):
        p = 4 * block
        rows = min(4, k - p)
        zero_rows(p, rows, out)
        accumulate_block(AT, dZ, p, rows, out)
        for r in range(rows):
            sgd_step_row(out[p + r], lr, momentum, weight_decay, nesterov, first_step,
                         W[p + r], velocity[p + r])


@kernel
def bias_grad_update(dZ, lr, momentum, nesterov, first_step, b, velocity, out):
    """out[m] = sum over n of dZ[n, m] (as bias_grad computes it), then the SGD step on b[m],
    velocity[m] from it, without weight decay."""
    bias_grad(dZ, out)
    sgd_step_row(out, lr, momentum, out.dtype.type(0), nesterov, first_step, b, velocity)
