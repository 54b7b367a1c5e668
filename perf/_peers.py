"""Worker side of perf/compare.py: runs ONE peer on ONE benchmark cell in this process.

compare.py starts this file as a fresh subprocess per (peer, configuration, batch size,
dtype, thread count), with the thread environment variables already set, and passes the
cell as JSON:

    python perf/_peers.py cell '{"peer": "fastmlp", "config": "A100", "batch_size": 32, ...}' RESULT.json
    python perf/_peers.py gemm '{"threads": 1, "dtypes": ["float32"]}' RESULT.json
    python perf/_peers.py info '{}' RESULT.json

Each peer is one function ``peer_<name>(cell)`` returning a trainer: ``epoch()`` runs one
whole epoch of plain SGD (lr 0.01, no momentum, batches in order, the last one shorter) and
``predict()`` returns the network's outputs on the whole training set (after the output
activation) as a NumPy array. Every peer starts from the same initial weights (Glorot
uniform from a fixed seed, biases zero) and the same data, so their final losses should
agree up to rounding. Only NumPy is imported at module level; each peer imports its own
library, so a missing library is reported as such (ImportError), never faked.
"""

import json
import os
import sys
import time
import traceback

# --------------------------------------------------------------------- cells

LR = 0.01
DATA_SEED = 1234
INIT_SEED = 0

CONFIGS = {
    # name: layer sizes, hidden activation, loss (output: identity for mse, softmax for CE)
    "A14": {"sizes": [400, 14, 8, 2], "hidden": "sigmoid", "loss": "mse"},
    "A100": {"sizes": [400, 100, 40, 2], "hidden": "sigmoid", "loss": "mse"},
    "B": {"sizes": [784, 256, 128, 10], "hidden": "relu", "loss": "cross_entropy"},
}

LOSS_DEFINITION = {
    "mse": "mean over all n*k elements of (y - p)^2, y one-hot (torch MSELoss); float64 from the "
           "peer's own predictions on the whole training set",
    "cross_entropy": "mean over samples of -log softmax(z)[label] (torch CrossEntropyLoss); "
                     "float64 from the peer's own softmax outputs on the whole training set",
}


def flops_per_step(sizes):
    """(per-sample, per-step) FLOPs of one SGD step: 2 * (forward + weight-gradient +
    input-gradient-except-first-layer multiply-adds) per sample, plus 2 * n_params for
    the update. Matrix products and the update only; activations/losses are not counted."""
    layers = list(zip(sizes[:-1], sizes[1:]))
    macs = sum(k * m for k, m in layers)
    input_grad = sum(k * m for k, m in layers[1:])
    n_params = macs + sum(sizes[1:])
    return 2 * (2 * macs + input_grad), 2 * n_params


# The figures quoted in the brief and in shared/peers.md.
assert flops_per_step([400, 100, 40, 2]) == (184_480, 88_444)
assert flops_per_step([784, 256, 128, 10]) == (1_007_104, 470_292)


def epoch_flops(sizes, n, batch_size):
    per_sample, per_step = flops_per_step(sizes)
    n_steps = -(-n // batch_size)
    return per_sample * n + per_step * n_steps


def make_data(config, n, dtype):
    """Deterministic synthetic data: X standard normal, labels from a noisy random
    linear teacher (learnable, not separable). Returns X (n, d) C-contiguous of dtype,
    labels (n,) int64, Y (n, k) one-hot of dtype."""
    import numpy as np
    sizes = CONFIGS[config]["sizes"]
    d, k = sizes[0], sizes[-1]
    rng = np.random.default_rng(DATA_SEED)
    X = rng.standard_normal((n, d))
    teacher = rng.standard_normal((d, k)) / np.sqrt(d)
    noise = 0.5 * rng.standard_normal((n, k))
    labels = np.argmax(X @ teacher + noise, axis=1).astype(np.int64)
    Y = np.zeros((n, k), dtype=dtype)
    Y[np.arange(n), labels] = 1
    return np.ascontiguousarray(X, dtype=dtype), labels, Y


def initial_params(config):
    """Glorot-uniform weights (n_in, n_out) and zero biases, float64, from a fixed seed."""
    import numpy as np
    rng = np.random.default_rng(INIT_SEED)
    params = []
    sizes = CONFIGS[config]["sizes"]
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        params.append((rng.uniform(-limit, limit, size=(fan_in, fan_out)), np.zeros(fan_out)))
    return params


def final_loss(loss, P, labels, Y):
    """The loss of predictions P (after the output activation), in float64."""
    import numpy as np
    P = np.asarray(P, dtype=np.float64)
    if not np.isfinite(P).all():
        return float("nan")
    if loss == "mse":
        return float(np.mean((P - Y.astype(np.float64)) ** 2))
    picked = P[np.arange(P.shape[0]), labels]
    return float(np.mean(-np.log(np.maximum(picked, np.finfo(np.float64).tiny))))


def initial_loss(config, n):
    """The loss at the shared initial weights (float64 forward pass), to show training moved it."""
    import numpy as np
    cfg = CONFIGS[config]
    X, labels, Y = make_data(config, n, "float64")
    params = initial_params(config)
    a = X
    for W, b in params[:-1]:
        z = a @ W + b
        a = 1 / (1 + np.exp(-z)) if cfg["hidden"] == "sigmoid" else np.maximum(z, 0)
    out = a @ params[-1][0] + params[-1][1]
    if cfg["loss"] != "mse":
        out = np.exp(out - out.max(axis=1, keepdims=True))
        out /= out.sum(axis=1, keepdims=True)
    return final_loss(cfg["loss"], out, labels, Y)


class Cell:
    """Everything a peer needs: config, data, initial weights, batch size, dtype, threads."""

    def __init__(self, spec):
        self.spec = spec
        self.config = spec["config"]
        cfg = CONFIGS[self.config]
        self.sizes = cfg["sizes"]
        self.hidden = cfg["hidden"]
        self.loss = cfg["loss"]
        self.mse = self.loss == "mse"
        self.B = int(spec["batch_size"])
        self.dtype = spec["dtype"]
        self.threads = int(spec["threads"])
        self.n = int(spec["samples"])
        self.X, self.labels, self.Y = make_data(self.config, self.n, self.dtype)
        self.init = initial_params(self.config)


class Skip(Exception):
    """The peer cannot run this cell on this machine (reported as skipped, with the reason)."""


# --------------------------------------------------------------------- peers

def peer_fastmlp(c):
    """fastmlp: the timed unit is exactly net.fit(X, y, epochs=1, batch_size=B, shuffle=False)."""
    import fastmlp
    net = fastmlp.MLP(c.sizes, activation=c.hidden,
                      output_activation="identity" if c.mse else "softmax",
                      loss=c.loss, dtype=c.dtype, seed=0, n_threads=c.threads)
    for W, b, (W0, b0) in zip(net.weights, net.biases, c.init):
        W[...] = W0
        b[...] = b0
    X = c.X
    y = c.Y if c.mse else c.labels          # integer labels for cross-entropy
    assert X.dtype == net.dtype and X.flags.c_contiguous
    state = {}

    def epoch():
        state["history"] = net.fit(X, y, epochs=1, batch_size=c.B, lr=LR, shuffle=False)

    def predict():
        return net.predict(X)

    def notes():
        import numba
        return {"fastmlp_reported_epoch_loss": state["history"]["loss"][-1],
                "numba_threads": numba.get_num_threads(),
                "numba_threading_layer": numba.threading_layer(),
                "numba_cache_dir": os.environ.get("NUMBA_CACHE_DIR", "(default: beside the package)")}

    return epoch, predict, notes


def peer_numpy(c):
    """Hand-written NumPy MLP: forward, backprop and SGD with `@` (BLAS), in the run's dtype."""
    import numpy as np
    dt = np.dtype(c.dtype)
    lr = dt.type(LR)
    Ws = [np.ascontiguousarray(W0, dtype=dt) for W0, _ in c.init]
    bs = [b0.astype(dt) for _, b0 in c.init]
    L = len(Ws)
    k = c.sizes[-1]
    X, Y, labels = c.X, c.Y, c.labels
    sigmoid = c.hidden == "sigmoid"
    rows = np.arange(c.B)

    def forward(x):
        acts = [x]
        a = x
        for layer in range(L - 1):
            z = a @ Ws[layer]
            z += bs[layer]
            if sigmoid:                      # 1 / (1 + exp(-z)), in place
                np.negative(z, out=z)
                np.exp(z, out=z)
                z += 1
                np.reciprocal(z, out=z)
            else:
                np.maximum(z, 0, out=z)
            acts.append(z)
            a = z
        out = a @ Ws[-1]
        out += bs[-1]
        return acts, out

    def softmax_(z):
        z -= z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        return z

    def step(x, y, lab):
        n = x.shape[0]
        acts, out = forward(x)
        if c.mse:                            # d/d out of mean((out - y)^2) over n*k
            delta = out
            delta -= y
            delta *= dt.type(2.0 / (n * k))
        else:                                # softmax + cross-entropy: (p - onehot) / n
            delta = softmax_(out)
            delta[rows[:n], lab] -= 1
            delta *= dt.type(1.0 / n)
        for layer in range(L - 1, -1, -1):
            gW = acts[layer].T @ delta
            gb = delta.sum(axis=0)
            if layer > 0:                    # input gradient with the weights before the update
                a = acts[layer]
                nxt = delta @ Ws[layer].T
                if sigmoid:
                    nxt *= a * (1 - a)
                else:
                    nxt *= a > 0
            gW *= lr
            Ws[layer] -= gW
            gb *= lr
            bs[layer] -= gb
            if layer > 0:
                delta = nxt

    def epoch():
        for i in range(0, c.n, c.B):
            step(X[i:i + c.B], Y[i:i + c.B], labels[i:i + c.B])

    def predict():
        out = forward(X)[1]
        return out if c.mse else softmax_(out)

    return epoch, predict, lambda: {"param_dtype": str(Ws[0].dtype)}


def peer_sklearn(c):
    """scikit-learn MLPRegressor (A: one-hot targets, squared_error) or MLPClassifier
    (B: softmax log-loss), solver="sgd", one partial_fit = one epoch."""
    import numpy as np
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    common = dict(hidden_layer_sizes=tuple(c.sizes[1:-1]),
                  activation="logistic" if c.hidden == "sigmoid" else "relu",
                  solver="sgd", learning_rate="constant", learning_rate_init=LR,
                  momentum=0.0, nesterovs_momentum=False, alpha=0.0, batch_size=c.B,
                  shuffle=False, max_iter=1, early_stopping=False, random_state=0)
    X = c.X
    if c.mse:
        model = MLPRegressor(**common)
        y = c.Y
        model.partial_fit(X[:c.B], y[:c.B])                  # builds the layers (setup, not timed)
    else:
        model = MLPClassifier(**common)
        y = c.labels
        model.partial_fit(X[:c.B], y[:c.B], classes=np.arange(c.sizes[-1]))
    # Start from the shared initial weights (in place: the optimizer holds these arrays).
    for W, b, (W0, b0) in zip(model.coefs_, model.intercepts_, c.init):
        W[...] = W0
        b[...] = b0

    def epoch():
        model.partial_fit(X, y)

    def predict():
        return model.predict(X) if c.mse else model.predict_proba(X)

    def notes():
        return {"param_dtype": str(model.coefs_[0].dtype),
                "out_activation": model.out_activation_,
                "sklearn_loss": ("squared_error = 0.5 * mean((y - p)^2); its gradient (p - y)/n "
                                 "equals the gradient of mean((y - p)^2) over n*k elements for "
                                 "k = 2 outputs, so the SGD steps match the other peers")
                if c.mse else "log_loss = mean cross-entropy, gradient (p - y)/n"}

    return epoch, predict, notes


def _torch_model(c):
    import torch
    from torch import nn
    torch.set_num_threads(c.threads)
    try:
        torch.set_num_interop_threads(c.threads)
    except RuntimeError:
        pass
    tdt = {"float32": torch.float32, "float64": torch.float64}[c.dtype]
    layers = []
    for i, (W0, b0) in enumerate(c.init):
        linear = nn.Linear(W0.shape[0], W0.shape[1], dtype=tdt)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(W0.T.copy()))
            linear.bias.copy_(torch.from_numpy(b0))
        layers.append(linear)
        if i < len(c.init) - 1:
            layers.append(nn.Sigmoid() if c.hidden == "sigmoid" else nn.ReLU())
    model = nn.Sequential(*layers)
    X = torch.from_numpy(c.X)                           # zero-copy views of the NumPy data
    y = torch.from_numpy(c.Y) if c.mse else torch.from_numpy(c.labels)
    loss_fn = nn.MSELoss() if c.mse else nn.CrossEntropyLoss()
    return torch, model, X, y, loss_fn


def _torch_trainer(c, torch, model, train_model, X, y, loss_fn, optimizer):
    def epoch():
        for i in range(0, c.n, c.B):
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(train_model(X[i:i + c.B]), y[i:i + c.B])
            loss.backward()
            optimizer.step()

    def predict():
        with torch.inference_mode():
            out = model(X)
            return (out if c.mse else torch.softmax(out, dim=1)).numpy()

    def notes():
        return {"torch_threads": torch.get_num_threads(),
                "torch_interop_threads": torch.get_num_interop_threads(),
                "param_dtype": str(next(model.parameters()).dtype)}

    return epoch, predict, notes


def peer_torch(c):
    """PyTorch eager: nn.Sequential + torch.optim.SGD (default implementation)."""
    torch, model, X, y, loss_fn = _torch_model(c)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.0)
    return _torch_trainer(c, torch, model, model, X, y, loss_fn, optimizer)


def peer_torch_fused(c):
    """PyTorch eager with torch.optim.SGD(fused=True)."""
    torch, model, X, y, loss_fn = _torch_model(c)
    try:
        optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.0, fused=True)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise Skip(f"SGD(fused=True) unsupported here: {exc}") from None
    return _torch_trainer(c, torch, model, model, X, y, loss_fn, optimizer)


def peer_torch_compile(c):
    """torch.compile(model, dynamic=False) + eager torch.optim.SGD. dynamic=False keeps two
    static graphs (full batch and the shorter last batch); by default, the second shape
    would switch the model to one dynamic-shape graph for every batch."""
    torch, model, X, y, loss_fn = _torch_model(c)
    compiled = torch.compile(model, dynamic=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.0)
    return _torch_trainer(c, torch, model, compiled, X, y, loss_fn, optimizer)


def _jax_setup(c):
    import jax
    if c.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    params = [(jnp.asarray(W0.astype(c.dtype)), jnp.asarray(b0.astype(c.dtype)))
              for W0, b0 in c.init]
    act = jax.nn.sigmoid if c.hidden == "sigmoid" else jax.nn.relu

    def forward(params, x):
        for W, b in params[:-1]:
            x = act(x @ W + b)
        W, b = params[-1]
        return x @ W + b

    def loss(params, x, y):
        out = forward(params, x)
        if c.mse:
            return jnp.mean((out - y) ** 2)
        logp = jax.nn.log_softmax(out)
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

    def sgd(params, x, y):
        grads = jax.grad(loss)(params, x, y)
        return jax.tree_util.tree_map(lambda p, g: p - LR * g, params, grads)

    X = jax.device_put(c.X)
    y = jax.device_put(c.Y if c.mse else c.labels.astype(c.dtype.replace("float", "int")))
    predict_jit = jax.jit(lambda p, x: forward(p, x) if c.mse else jax.nn.softmax(forward(p, x)))
    return jax, params, sgd, X, y, predict_jit


def peer_jax_jit(c):
    """JAX: one jit-compiled SGD step (params donated), called from a Python loop over the
    batches; the step slices its batch from the device-resident data (lax.dynamic_slice)."""
    jax, params, sgd, X, y, predict_jit = _jax_setup(c)
    from functools import partial

    @partial(jax.jit, donate_argnums=0, static_argnums=4)
    def step(params, X, y, start, size):
        xb = jax.lax.dynamic_slice_in_dim(X, start, size)
        yb = jax.lax.dynamic_slice_in_dim(y, start, size)
        return sgd(params, xb, yb)

    state = {"params": params}

    def epoch():
        p = state["params"]
        for i in range(0, c.n, c.B):
            p = step(p, X, y, i, min(c.B, c.n - i))
        state["params"] = jax.block_until_ready(p)

    def predict():
        import numpy as np
        return np.asarray(predict_jit(state["params"], X))

    return epoch, predict, lambda: _jax_notes(jax, state["params"])


def peer_jax_scan(c):
    """JAX: the whole epoch is one jit call (params donated): lax.scan over the n // B full
    batches, then, if n % B != 0, one more SGD step on the shorter last batch inside the
    same compiled function, so every peer takes exactly the same steps."""
    jax, params, sgd, X, y, predict_jit = _jax_setup(c)
    from functools import partial
    n_full, rest = divmod(c.n, c.B)
    d = c.sizes[0]

    @partial(jax.jit, donate_argnums=0)
    def run_epoch(params, X, y):
        if n_full:
            xb = X[:n_full * c.B].reshape(n_full, c.B, d)
            yb = y[:n_full * c.B].reshape((n_full, c.B) + y.shape[1:])
            params, _ = jax.lax.scan(lambda p, batch: (sgd(p, *batch), None), params, (xb, yb))
        if rest:
            params = sgd(params, X[n_full * c.B:], y[n_full * c.B:])
        return params

    state = {"params": params}

    def epoch():
        state["params"] = jax.block_until_ready(run_epoch(state["params"], X, y))

    def predict():
        import numpy as np
        return np.asarray(predict_jit(state["params"], X))

    return epoch, predict, lambda: _jax_notes(jax, state["params"])


def _jax_notes(jax, params):
    return {"jax_backend": jax.default_backend(), "jax_devices": str(jax.devices()),
            "param_dtype": str(params[0][0].dtype), "XLA_FLAGS": os.environ.get("XLA_FLAGS", "")}


PEERS = {
    "fastmlp": peer_fastmlp,
    "numpy": peer_numpy,
    "sklearn": peer_sklearn,
    "torch": peer_torch,
    "torch_fused": peer_torch_fused,
    "torch_compile": peer_torch_compile,
    "jax_jit": peer_jax_jit,
    "jax_scan": peer_jax_scan,
}


# ------------------------------------------------------------------- workers

def _blas_info():
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return [{"error": "threadpoolctl not installed"}]
    keep = ("user_api", "internal_api", "prefix", "version", "num_threads", "architecture",
            "threading_layer")
    return [{k: v for k, v in lib.items() if k in keep} for lib in threadpool_info()]


def run_cell(spec):
    import statistics
    result = {"status": "ok"}
    began = time.perf_counter()
    c = Cell(spec)
    result["data_s"] = time.perf_counter() - began
    began = time.perf_counter()
    epoch, predict, notes = PEERS[spec["peer"]](c)
    result["setup_s"] = time.perf_counter() - began          # imports + model construction

    began = time.perf_counter()
    epoch()                                                  # warm-up: JIT / compile / cold start
    result["first_epoch_s"] = time.perf_counter() - began
    times = []
    for _ in range(int(spec["repeats"])):
        began = time.perf_counter()
        epoch()
        times.append(time.perf_counter() - began)
    median = statistics.median(times)
    result.update(epoch_s=times, median_s=median, samples_per_s=c.n / median,
                  spread=max(times) / min(times),
                  compile_s=max(0.0, result["first_epoch_s"] - median),
                  gflops=epoch_flops(c.sizes, c.n, c.B) / median / 1e9)
    result["final_loss"] = final_loss(c.loss, predict(), c.labels, c.Y)
    result["initial_loss"] = initial_loss(c.config, c.n)
    result["loss_definition"] = LOSS_DEFINITION[c.loss]
    result["notes"] = notes()
    result["blas"] = _blas_info()
    return result


def run_gemm(spec):
    """Best-of-N 2048 x 2048 NumPy matmul GFLOP/s for each dtype in this process's env."""
    import numpy as np
    n, out = 2048, {}
    rng = np.random.default_rng(0)
    for dtype in spec["dtypes"]:
        A = rng.random((n, n)).astype(dtype)
        B = rng.random((n, n)).astype(dtype)
        C = np.empty((n, n), dtype)
        np.matmul(A, B, out=C)
        best = float("inf")
        for _ in range(int(spec.get("repeats", 5))):
            began = time.perf_counter()
            np.matmul(A, B, out=C)
            best = min(best, time.perf_counter() - began)
        out[dtype] = 2 * n ** 3 / best / 1e9
    return {"status": "ok", "gflops": out, "blas": _blas_info()}


def run_info(spec):
    """Library versions and the BLAS seen in this process's environment."""
    import platform
    versions = {"python": platform.python_version()}
    for name in ("numpy", "numba", "scipy", "sklearn", "torch", "jax", "jaxlib", "matplotlib",
                 "threadpoolctl", "fastmlp"):
        try:
            module = __import__(name)
            versions[name] = getattr(module, "__version__", "?")
        except Exception as exc:  # noqa: BLE001 - any failure means "not usable"
            versions[name] = f"missing ({type(exc).__name__})"
    import numpy  # noqa: F401 - so its OpenBLAS shows in threadpool_info
    return {"status": "ok", "versions": versions, "blas": _blas_info()}


def main(argv):
    mode, spec, result_path = argv[1], json.loads(argv[2]), argv[3]
    threads = spec.get("threads")
    # Pin the process to `threads` cores: XLA's CPU thread pool ignores XLA_FLAGS thread
    # settings but follows the CPU affinity; applied to every peer alike.
    if threads and spec.get("pin", True) and hasattr(os, "sched_setaffinity"):
        cores = sorted(os.sched_getaffinity(0))
        if threads < len(cores):
            os.sched_setaffinity(0, cores[:threads])
    try:
        if mode == "cell":
            result = run_cell(spec)
        elif mode == "gemm":
            result = run_gemm(spec)
        else:
            result = run_info(spec)
    except ImportError as exc:
        result = {"status": "missing", "error": f"{type(exc).__name__}: {exc}"}
    except Skip as exc:
        result = {"status": "skipped", "error": str(exc)}
    except Exception as exc:  # noqa: BLE001 - reported to the parent, never hidden
        traceback.print_exc()
        last = (str(exc).strip().splitlines() or [""])[-1]
        result = {"status": "failed", "error": f"{type(exc).__name__}: {last}"}
    if hasattr(os, "sched_getaffinity"):
        result["affinity"] = sorted(os.sched_getaffinity(0))
    with open(result_path, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(sys.argv)
