"""Plain NumPy reference implementations of everything fastmlp computes.

This file imports nothing from fastmlp, so the maths can be checked here alone.

Conventions (the library's): a layer computes ``A = act(A_prev @ W + b)`` with W of
shape (n_in, n_out); ``Z`` is the output layer's pre-activation, ``P = out_act(Z)``,
``Y`` the targets as an (n, k) array (one-hot rows for class labels). Derivatives of
activations are written in terms of the activation *output* ``A``.
"""

import numpy as np

LEAKY_RELU_SLOPE = 0.01
ACTIVATIONS = ("identity", "sigmoid", "tanh", "relu", "leaky_relu", "softmax")
LOSSES = ("mse", "mae", "rmse", "cross_entropy", "binary_cross_entropy")


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


def loss_value(name, Z, P, Y):
    """Mean loss: over all n*k elements, or over the n samples for cross-entropy."""
    if name == "mse":
        return np.mean((Y - P) ** 2)
    if name == "mae":
        return np.mean(np.abs(Y - P))
    if name == "rmse":
        return np.sqrt(np.mean((Y - P) ** 2))
    if name == "cross_entropy":          # -sum(y log softmax(z)), from the logits
        return np.mean(-(Y * log_softmax(Z)).sum(axis=1))
    if name == "binary_cross_entropy":   # -y log s(z) - (1-y) log(1-s(z)) = softplus(z) - y z
        return np.mean(np.logaddexp(0, Z) - Y * Z)
    raise ValueError(name)


def loss_gradient(name, Z, P, Y, output_activation):
    """d loss_value / d Z."""
    n, k = P.shape
    if name == "cross_entropy":          # fused softmax + CE
        return (P * Y.sum(axis=1, keepdims=True) - Y) / n
    if name == "binary_cross_entropy":   # fused sigmoid + BCE
        return (P - Y) / (n * k)
    if name == "mse":
        dP = 2 * (P - Y) / (n * k)
    elif name == "mae":
        dP = np.sign(P - Y) / (n * k)
    elif name == "rmse":                 # d sqrt(m) = dm / (2 sqrt(m)); 0 at a perfect fit
        r = np.sqrt(np.mean((P - Y) ** 2))
        dP = (P - Y) / (n * k * r) if r > 0 else np.zeros_like(P)
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


def loss_of(layers, X, Y, hidden, output_activation, loss):
    _, Z, P = forward(layers, X, hidden, output_activation)
    return loss_value(loss, Z, P, Y)


def backward(layers, X, Y, hidden, output_activation, loss):
    """Returns (loss value, [dW...], [db...]) by backpropagation."""
    acts, Z, P = forward(layers, X, hidden, output_activation)
    delta = loss_gradient(loss, Z, P, Y, output_activation)
    dWs, dbs = [None] * len(layers), [None] * len(layers)
    for i in range(len(layers) - 1, -1, -1):
        dWs[i] = acts[i].T @ delta
        dbs[i] = delta.sum(axis=0)
        if i > 0:
            delta = activation_backward(hidden[i - 1], acts[i], delta @ layers[i][0].T)
    return loss_value(loss, Z, P, Y), dWs, dbs


# ------------------------------------------------------------------ optimiser
def sgd_update(p, g, buf, lr, momentum=0.0, weight_decay=0.0, nesterov=False):
    """One torch.optim.SGD step (dampening 0) for one parameter; `buf` is None before
    the first step with momentum. Returns (new p, new buf)."""
    d = g + weight_decay * p
    if momentum != 0:
        buf = d.copy() if buf is None else momentum * buf + d
        d = d + momentum * buf if nesterov else buf
    return p - lr * d, buf


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
