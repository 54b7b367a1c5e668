"""Plain NumPy reference implementations of everything fastmlp computes.

This file imports nothing from fastmlp, so the maths can be checked here alone.

Conventions (the library's): a layer computes ``A = act(A_prev @ W + b)`` with W of
shape (n_in, n_out); ``Z`` is the output layer's pre-activation, ``P = out_act(Z)``,
``Y`` the targets as an (n, k) array (one-hot rows for class labels). Derivatives of
activations are written in terms of the activation *output* ``A``.
"""

import numpy as np

LEAKY_RELU_SLOPE = 0.01
ACTIVATIONS = ("identity", "sigmoid", "tanh", "relu", "leaky_relu", "softmax", "exp")
LOSSES = ("mse", "mae", "rmse", "cross_entropy", "binary_cross_entropy", "poisson")


# ----------------------------------------------------------------- activations
def softmax(Z):
    E = np.exp(Z - Z.max(axis=1, keepdims=True))
    return E / E.sum(axis=1, keepdims=True)


def log_softmax(Z):
    shifted = Z - Z.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def sigmoid(Z):
    # exp(-|z|) never overflows: sigmoid(z) = 1/(1+e) for z >= 0 and e/(1+e) below.
    e = np.exp(-np.abs(Z))
    return np.where(Z >= 0, 1 / (1 + e), e / (1 + e))


def activation(name, Z):
    if name == "identity":
        return Z.copy()
    if name == "sigmoid":
        return sigmoid(Z)
    if name == "tanh":
        return np.tanh(Z)
    if name == "relu":
        return np.maximum(Z, 0)
    if name == "leaky_relu":
        return np.where(Z > 0, Z, LEAKY_RELU_SLOPE * Z)
    if name == "softmax":
        return softmax(Z)
    if name == "exp":
        return np.exp(Z)
    raise ValueError(name)


def activation_derivative(name, A):
    """d act / d z elementwise, from the output A (not for softmax)."""
    if name == "identity":
        return np.ones_like(A)
    if name == "sigmoid":
        return A * (1 - A)
    if name == "tanh":
        return 1 - A * A
    if name == "relu":
        return (A > 0).astype(A.dtype)
    if name == "leaky_relu":
        return np.where(A > 0, 1.0, LEAKY_RELU_SLOPE).astype(A.dtype)
    if name == "exp":                    # exp' = exp
        return A.copy()
    raise ValueError(name)


def activation_backward(name, A, dA):
    """dL/dZ from dL/dA; for softmax the row-wise Jacobian-vector product J^T dA."""
    if name == "softmax":
        return A * (dA - (dA * A).sum(axis=1, keepdims=True))
    return dA * activation_derivative(name, A)


# ---------------------------------------------------------------------- losses
def one_hot(labels, k, dtype=np.float64):
    Y = np.zeros((len(labels), k), dtype)
    Y[np.arange(len(labels)), labels] = 1
    return Y


def sample_losses(name, Z, P, Y):
    """The (n,) per-sample losses: the mean over a sample's k elements, or for
    cross-entropy the sum over its classes. RMSE's per-sample part is the MSE."""
    if name in ("mse", "rmse"):
        return np.mean((Y - P) ** 2, axis=1)
    if name == "mae":
        return np.mean(np.abs(Y - P), axis=1)
    if name == "cross_entropy":          # -sum(y log softmax(z)), from the logits
        return -(Y * log_softmax(Z)).sum(axis=1)
    if name == "binary_cross_entropy":   # -y log s(z) - (1-y) log(1-s(z)) = softplus(z) - y z
        return np.mean(np.logaddexp(0, Z) - Y * Z, axis=1)
    if name == "poisson":                # half the Poisson deviance with log(mean) = z:
        # y log(y / mu) - y + mu = y log y - y z - y + exp(z), 0 at mu = y (y log y = 0 at 0)
        y_log_y = np.where(Y > 0, Y * np.log(np.where(Y > 0, Y, 1.0)), 0.0)
        return np.mean(y_log_y - Y * Z - Y + np.exp(Z), axis=1)
    raise ValueError(name)


def _weights(n, weights, weight_total):
    """(per-sample weights, their total): 1 each and n without weights; weight_total
    overrides the total (a data set's, when the rows are one chunk of it)."""
    w = np.ones(n) if weights is None or len(weights) == 0 else np.asarray(weights, np.float64)
    total = w.sum() if weight_total is None else float(weight_total)
    return w, total


def loss_value(name, Z, P, Y, weights=None, weight_total=None):
    """Weighted mean loss sum_i w_i l_i / sum_i w_i (weight 1 each without weights; 0 when
    the total is 0), l_i from sample_losses; for RMSE the root of the weighted mean MSE.
    Without weights: the mean over all n*k elements, or over the n samples for
    cross-entropy."""
    w, total = _weights(P.shape[0], weights, weight_total)
    if total == 0:
        return 0.0
    mean = np.dot(w, sample_losses(name, Z, P, Y)) / total
    return np.sqrt(mean) if name == "rmse" else mean


def loss_gradient(name, Z, P, Y, output_activation, weights=None, weight_total=None, scale=1.0):
    """scale * d loss_value / d Z (0 when the total weight is 0)."""
    n, k = P.shape
    w, total = _weights(n, weights, weight_total)
    if total == 0:
        return np.zeros_like(P)
    row = (scale * w / total)[:, None]   # d loss / d l_i
    if name == "cross_entropy":          # fused softmax + CE: d l_i / d z = p * sum(y) - y
        return row * (P * Y.sum(axis=1, keepdims=True) - Y)
    if name == "binary_cross_entropy":   # fused sigmoid + BCE: d l_i / d z = (s(z) - y) / k
        return row * (sigmoid(Z) - Y) / k
    if name == "poisson":                # d l_i / d z = (exp(z) - y) / k
        return row * (np.exp(Z) - Y) / k
    if name == "mse":
        dP = row * 2 * (P - Y) / k
    elif name == "mae":
        dP = row * np.sign(P - Y) / k
    elif name == "rmse":                 # d sqrt(m) = dm / (2 sqrt(m)); 0 at a perfect fit
        r = loss_value("rmse", Z, P, Y, weights, weight_total)
        dP = row * 2 * (P - Y) / k / (2 * r) if r > 0 else np.zeros_like(P)
    else:
        raise ValueError(name)
    return activation_backward(output_activation, P, dP)


# ------------------------------------------------------------ forward/backward
def forward(layers, X, hidden, output_activation):
    """layers: list of (W, b); hidden: one activation name per hidden layer.
    Returns (activations [X, A1, ..., A_{L-1}], Z, P)."""
    acts = [X]
    for (W, b), name in zip(layers[:-1], hidden):
        acts.append(activation(name, acts[-1] @ W + b))
    W, b = layers[-1]
    Z = acts[-1] @ W + b
    return acts, Z, activation(output_activation, Z)


def loss_of(layers, X, Y, hidden, output_activation, loss, weights=None):
    _, Z, P = forward(layers, X, hidden, output_activation)
    return loss_value(loss, Z, P, Y, weights)


def backward(layers, X, Y, hidden, output_activation, loss, weights=None, weight_total=None):
    """Returns (loss value, [dW...], [db...]) by backpropagation, of the weighted loss
    with per-sample `weights` (None: 1 each) over `weight_total` (None: their sum)."""
    acts, Z, P = forward(layers, X, hidden, output_activation)
    delta = loss_gradient(loss, Z, P, Y, output_activation, weights, weight_total)
    dWs, dbs = [None] * len(layers), [None] * len(layers)
    for i in range(len(layers) - 1, -1, -1):
        dWs[i] = acts[i].T @ delta
        dbs[i] = delta.sum(axis=0)
        if i > 0:
            delta = activation_backward(hidden[i - 1], acts[i], delta @ layers[i][0].T)
    return loss_value(loss, Z, P, Y, weights, weight_total), dWs, dbs


def ordered_weight_grad(A, dZ):
    """A.T @ dZ in A's dtype, each element summed over the samples in order, one rounding per
    term: the kernels' bits wherever every product A[i, p] * dZ[i, j] is exact (a fused
    multiply-add then rounds only its sum)."""
    out = np.zeros((A.shape[1], dZ.shape[1]), A.dtype)
    for a, d in zip(A, dZ):
        out = out + np.multiply.outer(a, d)
    return out


def ordered_squared_norm(x, lanes, vectors):
    """sum of x[i]^2 in float64 in losses.squared_norm's order: element i of the leading
    whole blocks of lanes * vectors in lane i % lanes of running sum (i // lanes) % vectors,
    the sums added pairwise, their lanes in order, then the rest in order. The kernel's bits
    wherever every square is exact in float64 (float32 input: 48-bit products)."""
    x = np.asarray(x, np.float64)
    block = lanes * vectors
    full = len(x) - len(x) % block
    sums = np.zeros((vectors, lanes))
    for start in range(0, full, block):
        chunk = x[start:start + block].reshape(vectors, lanes)
        sums = sums + chunk * chunk
    while len(sums) > 1:
        sums = np.array([sums[k] + sums[k + 1] for k in range(0, len(sums), 2)])
    total = 0.0
    for lane in range(lanes):
        total = sums[0][lane] if lane == 0 else total + sums[0][lane]
    for value in x[full:]:
        total = total + value * value
    return float(total)


# ------------------------------------------------------------------ optimiser
def sgd_update(p, g, buf, lr, momentum=0.0, weight_decay=0.0, nesterov=False):
    """One torch.optim.SGD step (dampening 0) for one parameter; `buf` is None before
    the first step with momentum. Returns (new p, new buf)."""
    d = g + weight_decay * p
    if momentum != 0:
        buf = d.copy() if buf is None else momentum * buf + d
        d = d + momentum * buf if nesterov else buf
    return p - lr * d, buf


def adam_update(p, g, m, v, step, lr, beta1=0.9, beta2=0.999, epsilon=1e-8, weight_decay=0.0):
    """One Adam step (number `step`, from 1) in scikit-learn's form for one parameter,
    with L2 weight decay added to the gradient. Returns (new p, new m, new v)."""
    d = g + weight_decay * p
    m = beta1 * m + (1 - beta1) * d
    v = beta2 * v + (1 - beta2) * d * d
    rate = lr * np.sqrt(1 - beta2 ** step) / (1 - beta1 ** step)
    return p - rate * m / (np.sqrt(v) + epsilon), m, v


def sgd_epoch(layers, X, Y, hidden, output_activation, loss, batch_size, lr,
              momentum=0.0, weight_decay=0.0, nesterov=False, buffers=None):
    """One epoch of mini-batch SGD over the rows in order (shuffle=False), the last
    batch possibly shorter. Weight decay applies to weights only, not biases.
    Returns (new layers, momentum buffers, batch-size-weighted mean batch loss)."""
    layers = [(W.copy(), b.copy()) for W, b in layers]
    if buffers is None:
        buffers = [(None, None) for _ in layers]
    n, total = X.shape[0], 0.0
    for start in range(0, n, batch_size):
        Xb, Yb = X[start:start + batch_size], Y[start:start + batch_size]
        value, dWs, dbs = backward(layers, Xb, Yb, hidden, output_activation, loss)
        total += value * len(Xb)
        for i, ((W, b), (vW, vb)) in enumerate(zip(layers, buffers)):
            W, vW = sgd_update(W, dWs[i], vW, lr, momentum, weight_decay, nesterov)
            b, vb = sgd_update(b, dbs[i], vb, lr, momentum, 0.0, nesterov)
            layers[i], buffers[i] = (W, b), (vW, vb)
    return layers, buffers, total / n


def adam_epoch(layers, X, Y, hidden, output_activation, loss, batch_size, lr, betas=(0.9, 0.999),
               epsilon=1e-8, weight_decay=0.0, state=None, weights=None):
    """One epoch of mini-batch Adam over the rows in order, with per-sample `weights`
    (None: 1 each); a batch whose weights sum to 0 takes no step and does not count as
    one. state: (step count, [(mW, mb)...], [(vW, vb)...]), None for a fresh start.
    Returns (new layers, new state, batch-size-weighted mean batch loss)."""
    layers = [(W.copy(), b.copy()) for W, b in layers]
    if state is None:
        state = (0, [(np.zeros_like(W), np.zeros_like(b)) for W, b in layers],
                 [(np.zeros_like(W), np.zeros_like(b)) for W, b in layers])
    step, ms, vs = state[0], list(state[1]), list(state[2])
    beta1, beta2 = betas
    n, total = X.shape[0], 0.0
    for start in range(0, n, batch_size):
        Xb, Yb = X[start:start + batch_size], Y[start:start + batch_size]
        wb = None if weights is None else weights[start:start + batch_size]
        if wb is not None and wb.sum() == 0:
            continue
        value, dWs, dbs = backward(layers, Xb, Yb, hidden, output_activation, loss, wb)
        total += value * len(Xb)
        step += 1
        for i, (W, b) in enumerate(layers):
            (mW, mb), (vW, vb) = ms[i], vs[i]
            W, mW, vW = adam_update(W, dWs[i], mW, vW, step, lr, beta1, beta2, epsilon,
                                    weight_decay)
            b, mb, vb = adam_update(b, dbs[i], mb, vb, step, lr, beta1, beta2, epsilon, 0.0)
            layers[i], ms[i], vs[i] = (W, b), (mW, mb), (vW, vb)
    return layers, (step, ms, vs), total / n
