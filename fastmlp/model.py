"""The MLP model: validates at the boundary, allocates once, and arranges kernels.

No numbers are computed here; every loop over data lives in ``fastmlp.kernels``.
"""

import contextlib
import math
import time

import numba
import numpy as np

from . import _validation as check
from ._jit import PARALLEL_MIN_ELEMENTS, PARALLEL_MIN_WORK, start_threads
from .errors import DivergenceError
from .kernels import activations as act
from .kernels import losses
from .kernels.activations import activation_forward
from .kernels.epoch import train_epoch
from .kernels.losses import loss_gradient, loss_value
from .kernels.matmul import bias_grad, dense_forward, input_grad, transpose, weight_grad
from .kernels.optim import sgd_update
from .schedules import checked_lr, make_schedule

ACTIVATIONS = {
    "identity": act.IDENTITY,
    "sigmoid": act.SIGMOID,
    "logistic": act.SIGMOID,
    "tanh": act.TANH,
    "relu": act.RELU,
    "leaky_relu": act.LEAKY_RELU,
    "softmax": act.SOFTMAX,
}
LOSSES = {
    "mse": losses.MSE,
    "mae": losses.MAE,
    "rmse": losses.RMSE,
    "cross_entropy": losses.CROSS_ENTROPY,
    "binary_cross_entropy": losses.BINARY_CROSS_ENTROPY,
}
DEFAULT_OUTPUT_ACTIVATION = {
    "mse": "identity",
    "mae": "identity",
    "rmse": "identity",
    "cross_entropy": "softmax",
    "binary_cross_entropy": "sigmoid",
}
INITS = ("xavier", "he")
DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

# predict and loss walk large inputs in chunks of this many rows, so their
# buffers stay small and cached.
CHUNK_ROWS = 4096


def _canonical_activation(name, where):
    if not isinstance(name, str):
        raise TypeError(f"{where} must be a string, got {name!r}")
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown {where} {name!r}; expected one of {sorted(ACTIVATIONS)}")
    return "sigmoid" if name == "logistic" else name


class _Workspace:
    """Every buffer one batch size needs, allocated once and reused every step,
    with each kernel's serial or parallel variant chosen for that size.

    The buffers are flat, as the compiled epoch loop takes them; the lists hold
    the per-layer views the Python arrangement uses.
    """

    def __init__(self, sizes, n, dtype):
        layers = list(zip(sizes[:-1], sizes[1:]))
        self.n = n
        self.hidden_buffer = np.empty(n * sum(sizes[1:-1]), dtype)
        self.delta_buffer = np.empty(n * sum(sizes[1:]), dtype)
        self.logits = np.empty((n, sizes[-1]), dtype)
        self.output = np.empty((n, sizes[-1]), dtype)
        self.batch_X = np.empty((n, sizes[0]), dtype)
        self.batch_Y = np.empty((n, sizes[-1]), dtype)
        self.hidden = _views(self.hidden_buffer, [(n, m) for m in sizes[1:-1]])
        self.deltas = _views(self.delta_buffer, [(n, m) for m in sizes[1:]])
        big = [n * k * m >= PARALLEL_MIN_WORK for k, m in layers]
        self.forward = [dense_forward.choose(p) for p in big]
        self.weight_grad = [weight_grad.choose(p) for p in big]
        self.input_grad = [input_grad.choose(p) for p in big]
        self.output_activation = activation_forward.choose(n * sizes[-1] >= PARALLEL_MIN_ELEMENTS)


def _views(buffer, shapes):
    """Consecutive C-contiguous views of `buffer` with the given shapes."""
    views, at = [], 0
    for shape in shapes:
        size = math.prod(shape)
        views.append(buffer[at:at + size].reshape(shape))
        at += size
    return views


class MLP:
    """A dense feed-forward network trained by mini-batch SGD with backpropagation.

    Each layer computes ``a(X @ W + b)`` with W of shape (n_in, n_out). All weights
    and biases live in one contiguous array, ``params``; ``weights[i]`` and
    ``biases[i]`` are writable views into it.
    """

    def __init__(self, layer_sizes, activation="relu", output_activation=None, loss="mse",
                 dtype="float32", init="xavier", seed=None, n_threads=None):
        sizes = self._check_sizes(layer_sizes)
        n_hidden = len(sizes) - 2
        if isinstance(activation, (list, tuple)):
            if len(activation) != n_hidden:
                raise ValueError(f"activation lists {len(activation)} names but the network has "
                                 f"{n_hidden} hidden layers")
            hidden = tuple(_canonical_activation(a, "activation") for a in activation)
        else:
            hidden = (_canonical_activation(activation, "activation"),) * n_hidden
        if "softmax" in hidden:
            raise ValueError("softmax is an output activation only; choose another hidden activation")
        if not isinstance(loss, str):
            raise TypeError(f"loss must be a string, got {loss!r}")
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; expected one of {sorted(LOSSES)}")
        if output_activation is None:
            output_activation = DEFAULT_OUTPUT_ACTIVATION[loss]
        output_activation = _canonical_activation(output_activation, "output_activation")
        if loss == "cross_entropy":
            if output_activation != "softmax":
                raise ValueError(f"loss='cross_entropy' needs output_activation='softmax', "
                                 f"got {output_activation!r}")
            if sizes[-1] < 2:
                raise ValueError("loss='cross_entropy' needs at least 2 outputs (one per class); "
                                 "for one output use loss='binary_cross_entropy'")
        if loss == "binary_cross_entropy" and output_activation != "sigmoid":
            raise ValueError(f"loss='binary_cross_entropy' needs output_activation='sigmoid', "
                             f"got {output_activation!r}")
        try:
            dtype = np.dtype(dtype)
        except TypeError:
            raise TypeError(f"dtype must be 'float32' or 'float64', got {dtype!r}") from None
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype.name!r}")
        if init not in INITS:
            raise ValueError(f"unknown init {init!r}; expected one of {INITS}")
        if seed is not None:
            seed = check.check_int(seed, "seed", 0)
        if n_threads is not None:
            n_threads = check.check_int(n_threads, "n_threads", 1)
            if n_threads > numba.config.NUMBA_NUM_THREADS:
                raise ValueError(f"n_threads={n_threads} exceeds the {numba.config.NUMBA_NUM_THREADS} "
                                 f"threads Numba was started with (NUMBA_NUM_THREADS)")

        self.layer_sizes = sizes
        self.activations = hidden
        self.output_activation = output_activation
        self.loss_name = loss
        self.dtype = dtype
        self.init = init
        self.seed = seed
        self.n_threads = n_threads
        self._activation_codes = [ACTIVATIONS[a] for a in hidden] + [act.IDENTITY]
        self._activation_array = np.array(self._activation_codes, dtype=np.int64)
        self._output_code = ACTIVATIONS[output_activation]
        self._loss_code = LOSSES[loss]

        # Free-form, JSON-serialisable facts saved with the model (e.g. preprocessing
        # statistics, column names); fastmlp itself never reads them.
        self.metadata = {}
        self._allocate()
        self._rng = np.random.default_rng(seed)
        self._initialise()

    # ------------------------------------------------------------------ setup
    @staticmethod
    def _check_sizes(layer_sizes):
        if isinstance(layer_sizes, (str, bytes)) or not hasattr(layer_sizes, "__len__"):
            raise TypeError(f"layer_sizes must be a sequence of integers, got {layer_sizes!r}")
        if len(layer_sizes) < 2:
            raise ValueError(f"layer_sizes needs at least two sizes (inputs and outputs), "
                             f"got {list(layer_sizes)}")
        return tuple(check.check_int(s, "every layer size", 1) for s in layer_sizes)

    def _allocate(self):
        sizes = self.layer_sizes
        layers = list(zip(sizes[:-1], sizes[1:]))
        n_weights = sum(k * m for k, m in layers)
        n_params = n_weights + sum(sizes[1:])
        # Weights first, then biases: weight decay covers exactly params[:n_weights].
        self.params = np.zeros(n_params, dtype=self.dtype)
        self._grad = np.zeros(n_params, dtype=self.dtype)
        self._velocity = np.zeros(n_params, dtype=self.dtype)
        self._has_velocity = False
        self._n_weights = n_weights
        shapes = layers + [(m,) for m in sizes[1:]]
        param_views, grad_views = _views(self.params, shapes), _views(self._grad, shapes)
        self.weights, self.biases = param_views[:len(layers)], param_views[len(layers):]
        self._weight_grads, self._bias_grads = grad_views[:len(layers)], grad_views[len(layers):]
        self._transposed_buffer = np.empty(sum(k * m for k, m in layers[1:]), self.dtype)
        self._transposed = [None] + _views(self._transposed_buffer, [(m, k) for k, m in layers[1:]])
        self._sizes = np.array(sizes, dtype=np.int64)
        self._sgd = sgd_update.choose(n_params >= PARALLEL_MIN_ELEMENTS)
        self._transpose = [transpose.choose(k * m >= PARALLEL_MIN_ELEMENTS) for k, m in layers]
        self._workspaces = {}

    def _initialise(self):
        for W in self.weights:
            fan_in, fan_out = W.shape
            if self.init == "xavier":
                limit = math.sqrt(6.0 / (fan_in + fan_out))
            else:
                limit = math.sqrt(6.0 / fan_in)
            W[...] = self._rng.uniform(-limit, limit, size=W.shape)
        for b in self.biases:
            b[...] = 0

    def _workspace(self, n):
        workspace = self._workspaces.get(n)
        if workspace is None:
            if len(self._workspaces) >= 4:
                self._workspaces.clear()
            workspace = self._workspaces[n] = _Workspace(self.layer_sizes, n, self.dtype)
        return workspace

    @contextlib.contextmanager
    def _threads(self):
        if self.n_threads is None:
            yield
            return
        before = numba.get_num_threads()
        numba.set_num_threads(self.n_threads)
        try:
            yield
        finally:
            numba.set_num_threads(before)

    # ------------------------------------------------------------ properties
    @property
    def n_params(self):
        return self.params.size

    @property
    def n_layers(self):
        """Number of weight layers (len(layer_sizes) - 1)."""
        return len(self.layer_sizes) - 1

    def __repr__(self):
        return (f"MLP({list(self.layer_sizes)}, activation={list(self.activations)}, "
                f"output_activation={self.output_activation!r}, loss={self.loss_name!r}, "
                f"dtype={self.dtype.name!r})")

    # ----------------------------------------------------- forward / backward
    def _forward(self, X, workspace, output=None):
        """Run the layers on X (workspace.n rows); returns the output activations."""
        inputs = X
        last = self.n_layers - 1
        for layer in range(last):
            workspace.forward[layer](inputs, self.weights[layer], self.biases[layer],
                                     self._activation_codes[layer], workspace.hidden[layer])
            inputs = workspace.hidden[layer]
        if self._output_code == act.IDENTITY:
            logits = workspace.logits if output is None else output
            workspace.forward[last](inputs, self.weights[last], self.biases[last], act.IDENTITY, logits)
            return logits
        workspace.forward[last](inputs, self.weights[last], self.biases[last], act.IDENTITY,
                                workspace.logits)
        output = workspace.output if output is None else output
        workspace.output_activation(workspace.logits, self._output_code, output)
        return output

    def _backward(self, X, Y, workspace):
        """Fill self._grad with the gradient of the mean loss on (X, Y); returns the loss."""
        P = self._forward(X, workspace)
        last = self.n_layers - 1
        loss = loss_gradient(workspace.logits, P, Y, self._loss_code, self._output_code,
                             workspace.deltas[last])
        for layer in range(last, -1, -1):
            inputs = X if layer == 0 else workspace.hidden[layer - 1]
            delta = workspace.deltas[layer]
            workspace.weight_grad[layer](inputs, delta, self._weight_grads[layer])
            bias_grad(delta, self._bias_grads[layer])
            if layer > 0:
                self._transpose[layer](self.weights[layer], self._transposed[layer])
                workspace.input_grad[layer](delta, self._transposed[layer], inputs,
                                            self._activation_codes[layer - 1],
                                            workspace.deltas[layer - 1])
        return loss

    def _sgd_step(self, lr, momentum, weight_decay, nesterov):
        first = momentum != 0 and not self._has_velocity
        self._sgd(self._grad, self._n_weights, lr, momentum, weight_decay, nesterov, first,
                  self.params, self._velocity)
        if momentum != 0:
            self._has_velocity = True

    # ---------------------------------------------------------------- public
    def predict(self, X):
        """The network's output for X, after the output activation: (n_samples, n_outputs)."""
        X = check.check_X(X, self.layer_sizes[0], self.dtype)
        n = X.shape[0]
        result = np.empty((n, self.layer_sizes[-1]), dtype=self.dtype)
        with self._threads():
            for start in range(0, n, CHUNK_ROWS):
                stop = min(start + CHUNK_ROWS, n)
                self._forward(X[start:stop], self._workspace(stop - start), result[start:stop])
        return result

    def loss(self, X, y):
        """The mean cost of the current parameters on (X, y), as a float."""
        X, Y = self._check_data(X, y)
        return self._loss(X, Y)

    def _loss(self, X, Y):
        n = X.shape[0]
        # RMSE is the root of the whole set's MSE, so chunks add up squared errors.
        code = losses.MSE if self._loss_code == losses.RMSE else self._loss_code
        total = 0.0
        with self._threads():
            for start in range(0, n, CHUNK_ROWS):
                stop = min(start + CHUNK_ROWS, n)
                workspace = self._workspace(stop - start)
                P = self._forward(X[start:stop], workspace)
                total += loss_value(workspace.logits, P, Y[start:stop], code) * (stop - start)
        mean = total / n
        return math.sqrt(mean) if self._loss_code == losses.RMSE else mean

    def gradients(self, X, y):
        """The exact gradient of ``loss(X, y)``: (list of dW, list of db), new arrays."""
        X, Y = self._check_data(X, y)
        with self._threads():
            self._backward(X, Y, _Workspace(self.layer_sizes, X.shape[0], self.dtype))
        return ([g.copy() for g in self._weight_grads], [g.copy() for g in self._bias_grads])

    def _check_data(self, X, y, name="X", y_name="y"):
        X = check.check_X(X, self.layer_sizes[0], self.dtype, name)
        Y = check.check_targets(y, X.shape[0], self.layer_sizes[-1], self.loss_name, self.dtype, y_name)
        return X, Y

    def fit(self, X, y, epochs=10, batch_size=32, lr=0.01, shuffle=True, lr_schedule="constant",
            momentum=0.0, nesterov=False, weight_decay=0.0, validation_data=None, verbose=False,
            callbacks=None):
        """Train by mini-batch SGD; returns the history {"loss": [...], "lr": [...], "time": [...]}
        (and "val_loss" with validation_data), one entry per epoch.

        Each step is ``w -= lr * grad`` of the batch's mean loss, with PyTorch's SGD
        semantics for momentum, nesterov and weight_decay (weights only, not biases).
        Calling fit again continues from the current parameters and momentum.

        callbacks: callables called after every epoch as ``callback(epoch, metrics)``, with
        epoch counted from 0 in this call and metrics that epoch's {"loss", "lr", "time"
        (and "val_loss")}; one that returns False or raises StopIteration ends training
        after that epoch, keeping it.
        """
        epochs = check.check_int(epochs, "epochs", 1)
        batch_size = check.check_int(batch_size, "batch_size", 1)
        lr, optimiser = self._check_optimiser(lr, momentum, nesterov, weight_decay)
        if not isinstance(shuffle, (bool, np.bool_)):
            raise TypeError(f"shuffle must be True or False, got {shuffle!r}")
        schedule = make_schedule(lr_schedule, lr, epochs)
        if callbacks is None:
            callbacks = ()
        elif callable(callbacks):
            callbacks = (callbacks,)
        if not isinstance(callbacks, (list, tuple)) or not all(callable(c) for c in callbacks):
            raise TypeError(f"callbacks must be a list of callables (epoch, metrics) -> bool, "
                            f"got {callbacks!r}")
        X, Y = self._check_data(X, y)
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise TypeError("validation_data must be a pair (X_val, y_val)")
            X_val, Y_val = self._check_data(*validation_data, name="X_val", y_name="y_val")

        dtype = self.dtype.type
        workspace = self._workspace(min(batch_size, X.shape[0]))
        no_order = np.empty(0, dtype=np.int64)
        history = {"loss": [], "lr": [], "time": []}
        if validation_data is not None:
            history["val_loss"] = []
        start_state = self._state()
        epoch_state = self._state()
        with self._threads():
            try:
                for epoch in range(epochs):
                    epoch_lr = checked_lr(schedule(epoch), epoch)
                    self._copy_state(epoch_state)
                    began = time.perf_counter()
                    order = self._rng.permutation(X.shape[0]) if shuffle else no_order
                    loss = self._train_epoch(X, Y, order, workspace, dtype(epoch_lr), *optimiser)
                    if not (math.isfinite(loss) and check.all_finite(self.params)):
                        self._restore_state(epoch_state)
                        raise DivergenceError(epoch + 1, epoch_lr)
                    elapsed = time.perf_counter() - began
                    history["loss"].append(loss)
                    history["lr"].append(epoch_lr)
                    history["time"].append(elapsed)
                    line = f"epoch {epoch + 1}/{epochs}  loss {loss:.6g}"
                    if validation_data is not None:
                        history["val_loss"].append(self._loss(X_val, Y_val))
                        line += f"  val_loss {history['val_loss'][-1]:.6g}"
                    if verbose:
                        print(f"{line}  {elapsed:.3f}s", flush=True)
                    if not self._run_callbacks(callbacks, epoch, history):
                        break
            except DivergenceError:
                raise
            except KeyboardInterrupt:
                # Keep what the finished epochs learned; a half-done epoch is dropped.
                self._restore_state(epoch_state)
                raise
            except BaseException:
                self._restore_state(start_state)
                raise
        return history

    @staticmethod
    def _run_callbacks(callbacks, epoch, history):
        """Call each callback on this epoch's metrics; False once one asks to stop."""
        metrics = {key: values[-1] for key, values in history.items()}
        keep_going = True
        for callback in callbacks:
            try:
                if callback(epoch, dict(metrics)) is False:
                    keep_going = False
            except StopIteration:
                keep_going = False
        return keep_going

    def _train_epoch(self, X, Y, order, workspace, lr, momentum, weight_decay, nesterov):
        """One compiled pass of mini-batch SGD; returns the batch-size-weighted mean batch loss."""
        first_step = momentum != 0 and not self._has_velocity
        start_threads()
        total = train_epoch(X, Y, order, workspace.n, self._sizes, self._activation_array,
                            self._output_code, self._loss_code, self.params, self._grad,
                            self._velocity, first_step, lr, momentum, weight_decay, nesterov,
                            workspace.hidden_buffer, workspace.delta_buffer, workspace.logits.reshape(-1),
                            workspace.output.reshape(-1), self._transposed_buffer,
                            workspace.batch_X.reshape(-1), workspace.batch_Y.reshape(-1))
        if momentum != 0:
            self._has_velocity = True
        return total / X.shape[0]

    def step(self, X, y, lr=0.01, momentum=0.0, nesterov=False, weight_decay=0.0):
        """One SGD step on the batch (X, y), arranged in Python from the same kernels
        as ``fit``'s compiled loop (and giving the same numbers); returns the batch's loss."""
        lr, optimiser = self._check_optimiser(lr, momentum, nesterov, weight_decay)
        X, Y = self._check_data(X, y)
        with self._threads():
            loss = self._backward(X, Y, self._workspace(X.shape[0]))
            self._sgd_step(self.dtype.type(lr), *optimiser)
        return loss

    def _check_optimiser(self, lr, momentum, nesterov, weight_decay):
        """lr as a float, and (momentum, weight_decay, nesterov) as the kernels take them."""
        lr = check.check_real(lr, "lr", 0, exclusive=True)
        momentum = check.check_real(momentum, "momentum", 0)
        weight_decay = check.check_real(weight_decay, "weight_decay", 0)
        if not isinstance(nesterov, (bool, np.bool_)):
            raise TypeError(f"nesterov must be True or False, got {nesterov!r}")
        if nesterov and momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0")
        dtype = self.dtype.type
        return lr, (dtype(momentum), dtype(weight_decay), bool(nesterov))

    # ------------------------------------------------------ state snapshots
    def _state(self):
        return {"params": self.params.copy(), "velocity": self._velocity.copy(),
                "has_velocity": self._has_velocity, "rng": self._rng.bit_generator.state}

    def _copy_state(self, state):
        np.copyto(state["params"], self.params)
        np.copyto(state["velocity"], self._velocity)
        state["has_velocity"] = self._has_velocity
        state["rng"] = self._rng.bit_generator.state

    def _restore_state(self, state):
        np.copyto(self.params, state["params"])
        np.copyto(self._velocity, state["velocity"])
        self._has_velocity = state["has_velocity"]
        self._rng.bit_generator.state = state["rng"]

    def save(self, path):
        """Write the model to `path` (.npz) atomically; ``fastmlp.load`` reads it back exactly."""
        from .serialization import save_model
        save_model(self, path)
