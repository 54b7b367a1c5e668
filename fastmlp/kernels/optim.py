"""Parameter updates over the one flat parameter buffer."""

from numba import prange

from .._jit import parallel_kernel

# Fixed chunk size for the parallel loop: the split never depends on the thread count.
CHUNK = 4096


@parallel_kernel
def sgd_update(params, grad, velocity, n_decayed, lr, momentum, weight_decay, nesterov, first_step, out):
    """out[p] = params[p] - lr * step[p], PyTorch's SGD step (dampening 0) on grad[p],
    with weight_decay * params[p] added to grad[p] for p < n_decayed; updates velocity[p]
    in place when momentum != 0 (first_step: velocity starts as the gradient). `out` may be `params`."""
    n = params.shape[0]
    zero = params.dtype.type(0)
    for chunk in prange((n + CHUNK - 1) // CHUNK):
        start = chunk * CHUNK
        stop = min(start + CHUNK, n)
        decayed = min(max(n_decayed - start, 0), stop - start)
        for part in range(2):
            # Two contiguous parts, weights (decayed) then biases, each indexed from 0.
            lo = start if part == 0 else start + decayed
            hi = start + decayed if part == 0 else stop
            decay = weight_decay if part == 0 else zero
            p = params[lo:hi]
            g = grad[lo:hi]
            o = out[lo:hi]
            if momentum == zero:
                for i in range(hi - lo):
                    o[i] = p[i] - lr * (g[i] + decay * p[i])
            else:
                v = velocity[lo:hi]
                for i in range(hi - lo):
                    d = g[i] + decay * p[i]
                    v[i] = d if first_step else momentum * v[i] + d
                    if nesterov:
                        d = d + momentum * v[i]
                    else:
                        d = v[i]
                    o[i] = p[i] - lr * d
