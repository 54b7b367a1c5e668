"""The MLP model: validates at the boundary, allocates once, and arranges kernels.

No numbers are computed here; every loop over data lives in ``fastmlp.kernels``.
"""

import contextlib
import math
import time
import typing

import numba
import numpy as np

from . import _validation as check
from ._jit import PARALLEL_MIN_ELEMENTS, PARALLEL_MIN_WORK, start_threads
from .errors import DivergenceError
from .kernels import activations as act
from .kernels import losses
from .kernels.activations import activation_forward
from .kernels.epoch import ADAM, EPOCHS, SGD, dataset_gradient, train_samples_sgd
from .kernels.losses import loss_gradient, loss_value, softmax_cross_entropy
from .kernels.matmul import (bias_grad, dense_forward, input_grad, input_grad_row, transpose,
                             weight_grad)
from .kernels.optim import adam_rate, adam_update, sgd_update
from .schedules import checked_lr, make_schedule

ACTIVATIONS = {
    "identity": act.IDENTITY,
    "sigmoid": act.SIGMOID,
    "logistic": act.SIGMOID,
    "tanh": act.TANH,
    "relu": act.RELU,
    "leaky_relu": act.LEAKY_RELU,
    "softmax": act.SOFTMAX,
    "exp": act.EXP,
}
# Activations for the output layer only.
OUTPUT_ONLY = ("softmax", "exp")
LOSSES = {
    "mse": losses.MSE,
    "mae": losses.MAE,
    "rmse": losses.RMSE,
    "cross_entropy": losses.CROSS_ENTROPY,
    "binary_cross_entropy": losses.BINARY_CROSS_ENTROPY,
    "poisson": losses.POISSON,
}
DEFAULT_OUTPUT_ACTIVATION = {
    "mse": "identity",
    "mae": "identity",
    "rmse": "identity",
    "cross_entropy": "softmax",
    "binary_cross_entropy": "sigmoid",
    "poisson": "exp",
}
# Losses computed from the output layer's pre-activation, which fix its activation.
FUSED_OUTPUT = {"cross_entropy": "softmax", "binary_cross_entropy": "sigmoid", "poisson": "exp"}
OPTIMIZERS = {"sgd": SGD, "adam": ADAM}
INITS = ("xavier", "he")
DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

# predict and loss walk large inputs in chunks of this many rows, so their
# buffers stay small and cached.
CHUNK_ROWS = 4096


class _Optimiser(typing.NamedTuple):
    """An optimiser's settings; for Adam, momentum is beta1."""
    name: str
    momentum: float
    nesterov: bool
    weight_decay: float
    beta2: float
    epsilon: float


# Empty stand-ins for "no sample weights" and "not a CSR matrix", per dtype.
_NO_WEIGHTS = {dtype: np.empty(0, dtype) for dtype in DTYPES}
_NO_CSR = {dtype: (np.empty(0, dtype), np.empty(0, np.int64), np.empty(0, np.int64))
           for dtype in DTYPES}


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
        # Two rows at least: at batch size 1 the compiled loop keeps the previous sample's.
        self.hidden_buffer = _aligned_empty(max(n, 2) * sum(sizes[1:-1]), dtype)
        self.delta_buffer = _aligned_empty(max(n, 2) * sum(sizes[1:]), dtype)
        self.logits = _aligned_empty((n, sizes[-1]), dtype)
        self.output = _aligned_empty((n, sizes[-1]), dtype)
        self.batch_X = _aligned_empty((n, sizes[0]), dtype)
        self.batch_Y = _aligned_empty((n, sizes[-1]), dtype)
        self.batch_weights = np.empty(n, dtype)
        self._chunk_grad = None
        self.hidden = _views(self.hidden_buffer, [(n, m) for m in sizes[1:-1]])
        self.deltas = _views(self.delta_buffer, [(n, m) for m in sizes[1:]])
        big = [n * k * m >= PARALLEL_MIN_WORK for k, m in layers]
        self.forward = [dense_forward.choose(p) for p in big]
        self.weight_grad = [weight_grad.choose(p) for p in big]
        self.input_grad = [input_grad.choose(p) for p in big]
        self.output_activation = activation_forward.choose(n * sizes[-1] >= PARALLEL_MIN_ELEMENTS)


    def chunk_grad(self, n_params):
        """A gradient buffer for dataset_gradient, allocated on first use."""
        if self._chunk_grad is None:
            self._chunk_grad = np.empty(n_params, self.batch_X.dtype)
        return self._chunk_grad


# Buffers start on a cache line, as the vector tiles' full-width loads and stores do then:
# NumPy's large arrays start 16 bytes past one (784-256-128-10 at batch size 1: a step
# took 17 µs with its weights there, 12 µs aligned).
_ALIGNMENT = 64


def _aligned_empty(shape, dtype):
    """np.empty(shape, dtype) whose data starts at a multiple of _ALIGNMENT bytes."""
    dtype = np.dtype(dtype)
    size = math.prod(shape) if isinstance(shape, tuple) else shape
    raw = np.empty(size * dtype.itemsize + _ALIGNMENT, np.uint8)
    start = -raw.ctypes.data % _ALIGNMENT
    return raw[start:start + size * dtype.itemsize].view(dtype).reshape(shape)


def _aligned_zeros(shape, dtype):
    array = _aligned_empty(shape, dtype)
    array[...] = 0
    return array


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
        for name in OUTPUT_ONLY:
            if name in hidden:
                raise ValueError(f"{name} is an output activation only; choose another hidden "
                                 f"activation")
        if not isinstance(loss, str):
            raise TypeError(f"loss must be a string, got {loss!r}")
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; expected one of {sorted(LOSSES)}")
        if output_activation is None:
            output_activation = DEFAULT_OUTPUT_ACTIVATION[loss]
        output_activation = _canonical_activation(output_activation, "output_activation")
        if loss in FUSED_OUTPUT and output_activation != FUSED_OUTPUT[loss]:
            raise ValueError(f"loss={loss!r} needs output_activation={FUSED_OUTPUT[loss]!r}, "
                             f"got {output_activation!r}")
        if loss == "cross_entropy" and sizes[-1] < 2:
            raise ValueError("loss='cross_entropy' needs at least 2 outputs (one per class); "
                             "for one output use loss='binary_cross_entropy'")
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
        self.params = _aligned_zeros(n_params, self.dtype)
        self._grad = _aligned_zeros(n_params, self.dtype)
        # The optimiser's state: SGD's momentum buffer or Adam's first moment, Adam's
        # second moment, the steps taken, and which optimiser it belongs to.
        self._velocity = _aligned_zeros(n_params, self.dtype)
        self._second_moment = _aligned_zeros(n_params, self.dtype)
        self._steps = np.zeros(1, dtype=np.int64)
        self._state_optimizer = "sgd"
        self._has_velocity = False
        self._n_weights = n_weights
        shapes = layers + [(m,) for m in sizes[1:]]
        param_views, grad_views = _views(self.params, shapes), _views(self._grad, shapes)
        self.weights, self.biases = param_views[:len(layers)], param_views[len(layers):]
        self._weight_grads, self._bias_grads = grad_views[:len(layers)], grad_views[len(layers):]
        self._transposed_buffer = _aligned_empty(sum(k * m for k, m in layers[1:]), self.dtype)
        self._transposed = [None] + _views(self._transposed_buffer, [(m, k) for k, m in layers[1:]])
        self._sizes = np.array(sizes, dtype=np.int64)
        self._sgd = sgd_update.choose(n_params >= PARALLEL_MIN_ELEMENTS)
        self._adam = adam_update.choose(n_params >= PARALLEL_MIN_ELEMENTS)
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
    def _forward(self, X, workspace, output=None, activate_output=True):
        """Run the layers on X (workspace.n rows); returns the output activations (or without
        activate_output the output layer's pre-activation, workspace.logits)."""
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
        if not activate_output:
            return workspace.logits
        output = workspace.output if output is None else output
        workspace.output_activation(workspace.logits, self._output_code, output)
        return output

    def _backward(self, X, Y, workspace, weights=None, weight_total=None):
        """Fill self._grad with the gradient of the (weighted) mean loss on (X, Y); returns
        the loss."""
        last = self.n_layers - 1
        if weights is None:
            weights = _NO_WEIGHTS[self.dtype]
        if weight_total is None:
            weight_total = float(X.shape[0])
        if self._loss_code == losses.CROSS_ENTROPY:
            # The softmax is computed with the loss, sharing its exponentials.
            self._forward(X, workspace, activate_output=False)
            loss = softmax_cross_entropy(workspace.logits, Y, weights, weight_total, 1.0,
                                         workspace.output, workspace.deltas[last])
        else:
            P = self._forward(X, workspace)
            loss = loss_gradient(workspace.logits, P, Y, self._loss_code, self._output_code,
                                 weights, weight_total, 1.0, workspace.deltas[last])
        for layer in range(last, -1, -1):
            inputs = X if layer == 0 else workspace.hidden[layer - 1]
            delta = workspace.deltas[layer]
            workspace.weight_grad[layer](inputs, delta, self._weight_grads[layer])
            bias_grad(delta, self._bias_grads[layer])
            if layer > 0 and X.shape[0] == 1:
                input_grad_row(delta, self.weights[layer], inputs,
                               self._activation_codes[layer - 1], workspace.deltas[layer - 1])
            elif layer > 0:
                self._transpose[layer](self.weights[layer], self._transposed[layer])
                workspace.input_grad[layer](delta, self._transposed[layer], inputs,
                                            self._activation_codes[layer - 1],
                                            workspace.deltas[layer - 1])
        return loss

    def _optimizer_step(self, lr, optimizer):
        """Apply one step of `optimizer` from self._grad."""
        self._use_state(optimizer)
        dtype = self.dtype.type
        if optimizer.name == "adam":
            rate = adam_rate(lr, optimizer.momentum, optimizer.beta2, int(self._steps[0]) + 1)
            self._adam(self._grad, self._n_weights, dtype(rate), dtype(optimizer.momentum),
                       dtype(optimizer.beta2), dtype(optimizer.epsilon),
                       dtype(optimizer.weight_decay), self.params, self._velocity,
                       self._second_moment)
        else:
            first = optimizer.momentum != 0 and not self._has_velocity
            self._sgd(self._grad, self._n_weights, dtype(lr), dtype(optimizer.momentum),
                      dtype(optimizer.weight_decay), optimizer.nesterov, first, self.params,
                      self._velocity)
            if optimizer.momentum != 0:
                self._has_velocity = True
        self._steps[0] += 1

    def _use_state(self, optimizer):
        """Start the optimiser state afresh when it belongs to another optimiser."""
        if self._state_optimizer != optimizer.name:
            self._velocity[...] = 0
            self._second_moment[...] = 0
            self._steps[0] = 0
            self._has_velocity = False
            self._state_optimizer = optimizer.name

    # ------------------------------------------------------------- pickling
    def __getstate__(self):
        # Workspaces and kernel choices are rebuilt on load; only the model travels.
        config = {"layer_sizes": self.layer_sizes, "activation": list(self.activations),
                  "output_activation": self.output_activation, "loss": self.loss_name,
                  "dtype": self.dtype.name, "init": self.init, "seed": self.seed,
                  "n_threads": self.n_threads}
        state = self._state()
        state["rng"] = self._rng.bit_generator.state
        return {"config": config, "state": state, "metadata": self.metadata}

    def __setstate__(self, pickled):
        config = dict(pickled["config"])
        n_threads = config.pop("n_threads")
        self.__init__(**config)
        # A model pickled in a process with more Numba threads than this one keeps
        # its setting only where it still fits.
        if n_threads is not None and n_threads <= numba.config.NUMBA_NUM_THREADS:
            self.n_threads = n_threads
        self._restore_state(pickled["state"])
        self.metadata = pickled["metadata"]

    # ---------------------------------------------------------------- public
    def predict(self, X):
        """The network's output for X, after the output activation: (n_samples, n_outputs)."""
        return self._predict(check.check_X(X, self.layer_sizes[0], self.dtype))

    def _predict(self, X):
        """predict on a checked X."""
        n = X.shape[0]
        result = np.empty((n, self.layer_sizes[-1]), dtype=self.dtype)
        with self._threads():
            for start in range(0, n, CHUNK_ROWS):
                stop = min(start + CHUNK_ROWS, n)
                self._forward(X[start:stop], self._workspace(stop - start), result[start:stop])
        return result

    def loss(self, X, y, sample_weight=None):
        """The mean cost of the current parameters on (X, y), as a float; with sample_weight,
        the weighted mean."""
        X, Y = self._check_data(X, y)
        weights = check.check_sample_weight(sample_weight, X.shape[0], self.dtype)
        return self._loss(X, Y, weights)

    def _loss(self, X, Y, weights=None):
        n = X.shape[0]
        no_weights = _NO_WEIGHTS[self.dtype]
        total_weight = float(n) if weights is None else float(weights.sum(dtype=np.float64))
        # RMSE is the root of the whole set's MSE, so chunks add up squared errors.
        code = losses.MSE if self._loss_code == losses.RMSE else self._loss_code
        total = 0.0
        with self._threads():
            for start in range(0, n, CHUNK_ROWS):
                stop = min(start + CHUNK_ROWS, n)
                workspace = self._workspace(stop - start)
                P = self._forward(X[start:stop], workspace)
                chunk_weights = no_weights if weights is None else weights[start:stop]
                total += loss_value(workspace.logits, P, Y[start:stop], code, chunk_weights,
                                    total_weight)
        return math.sqrt(total) if self._loss_code == losses.RMSE else total

    def gradients(self, X, y, sample_weight=None):
        """The exact gradient of ``loss(X, y, sample_weight)``: (list of dW, list of db), new arrays."""
        X, Y = self._check_data(X, y)
        weights = check.check_sample_weight(sample_weight, X.shape[0], self.dtype)
        total = float(X.shape[0]) if weights is None else float(weights.sum(dtype=np.float64))
        with self._threads():
            self._backward(X, Y, _Workspace(self.layer_sizes, X.shape[0], self.dtype), weights,
                           total)
        return ([g.copy() for g in self._weight_grads], [g.copy() for g in self._bias_grads])

    def _check_data(self, X, y, name="X", y_name="y", finite_X=True):
        X = check.check_X(X, self.layer_sizes[0], self.dtype, name, finite=finite_X)
        Y = check.check_targets(y, X.shape[0], self.layer_sizes[-1], self.loss_name, self.dtype, y_name)
        return X, Y

    def fit(self, X, y, epochs=10, batch_size=32, lr=0.01, shuffle=True, lr_schedule="constant",
            momentum=0.0, nesterov=False, weight_decay=0.0, validation_data=None, verbose=False,
            callbacks=None, optimizer="sgd", betas=(0.9, 0.999), epsilon=1e-8, sample_weight=None):
        """Train by mini-batch SGD or Adam; returns the history {"loss": [...], "lr": [...],
        "time": [...]} (and "val_loss" with validation_data), one entry per epoch.

        optimizer="sgd": each step is ``w -= lr * grad`` of the batch's mean loss, with
        PyTorch's SGD semantics for momentum, nesterov and weight_decay (weights only,
        not biases). optimizer="adam": Adam with betas and epsilon in the form scikit-learn
        uses (epsilon added to sqrt(v) before the bias correction is folded into the rate);
        weight_decay is L2 added to the gradient. Calling fit again continues from the current
        parameters and optimiser state (a change of optimiser starts its state afresh).

        sample_weight: one non-negative weight per sample; each batch's loss is the weighted
        mean over it, and a batch whose weights sum to 0 makes no step. An epoch's loss is the
        mean of its batch losses weighted by batch size.

        callbacks: callables called after every epoch as ``callback(epoch, metrics)``, with
        epoch counted from 0 in this call and metrics that epoch's {"loss", "lr", "time"
        (and "val_loss")}; one that returns False or raises StopIteration ends training
        after that epoch, keeping it.
        """
        epochs = check.check_int(epochs, "epochs", 1)
        batch_size = check.check_int(batch_size, "batch_size", 1)
        lr, optimizer = self._check_optimiser(lr, momentum, nesterov, weight_decay, optimizer,
                                              betas, epsilon)
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
        # X's NaN and infinity are tested by the first epoch, batch by batch (_run_epoch).
        X, Y = self._check_data(X, y, finite_X=False)
        weights = check.check_sample_weight(sample_weight, X.shape[0], self.dtype)
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise TypeError("validation_data must be a pair (X_val, y_val)")
            X_val, Y_val = self._check_data(*validation_data, name="X_val", y_name="y_val")

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
                    loss, _ = self._run_epoch(X, Y, weights, order, workspace, epoch_lr, optimizer,
                                              check_X=epoch == 0)
                    loss /= X.shape[0]
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

    def _run_epoch(self, X, Y, weights, order, workspace, lr, optimizer, csr=None,
                   grad_scale=1.0, decay_per_weight=False, check_X=False):
        """One compiled pass of the optimiser over the data, batches of workspace.n rows.

        X is a checked array, or with `csr` = (data, indices, indptr) of a CSR matrix an empty
        (0, n_features) array, `order` then listing the rows. Returns (sum of batch loss * rows,
        sum of batch L2 penalty * rows); see train_batch for grad_scale and decay_per_weight.
        check_X: X has not been checked for NaN and infinity; the epoch tests each batch, and
        raises check.check_finite's ValueError (the epoch's steps taken, for the caller to undo)
        if X holds any, or if training diverged before every batch was tested.
        """
        self._use_state(optimizer)
        first_step = optimizer.momentum != 0 and not self._has_velocity
        if weights is None:
            weights = _NO_WEIGHTS[self.dtype]
        start_threads()
        if (workspace.n == 1 and optimizer.name == "sgd" and optimizer.momentum == 0
                and csr is None and not (decay_per_weight and optimizer.weight_decay != 0)):
            # The same steps as the epoch loop's, each weight step deferred into the next
            # sample's passes (epoch.train_samples).
            loss, penalty, finite = train_samples_sgd(
                X, Y, weights, order, self._sizes, self._activation_array, self._output_code,
                self._loss_code, float(grad_scale), float(lr), optimizer.weight_decay,
                optimizer.nesterov, first_step, self._steps, self.params, self._grad,
                self._velocity, workspace.hidden_buffer, workspace.delta_buffer,
                workspace.logits.reshape(-1), workspace.output.reshape(-1),
                self._transposed_buffer, bool(check_X))
        else:
            data, indices, indptr = _NO_CSR[self.dtype] if csr is None else csr
            loss, penalty, finite = EPOCHS[OPTIMIZERS[optimizer.name]](
                X, Y, weights, data, indices, indptr, order, workspace.n, self._sizes,
                self._activation_array, self._output_code, self._loss_code, float(grad_scale),
                bool(decay_per_weight), float(lr), optimizer.momentum, optimizer.beta2,
                optimizer.epsilon, optimizer.weight_decay, optimizer.nesterov, first_step,
                self._steps, self.params, self._grad, self._velocity, self._second_moment,
                workspace.hidden_buffer, workspace.delta_buffer, workspace.logits.reshape(-1),
                workspace.output.reshape(-1), self._transposed_buffer,
                workspace.batch_X.reshape(-1), workspace.batch_Y.reshape(-1),
                workspace.batch_weights, bool(check_X))
        if optimizer.name == "sgd" and optimizer.momentum != 0 and self._steps[0] > 0:
            self._has_velocity = True
        if check_X and not (finite and math.isfinite(loss)):
            check.check_finite(X, "X")
            if not finite:
                raise AssertionError("a batch of X tested not finite, X as a whole finite")
        return loss, penalty

    def _dataset_gradient(self, X, Y, weights, weight_total, csr=None, grad_scale=1.0):
        """self._grad = grad_scale * the gradient of the weighted loss over all of (X, Y),
        each weight divided by weight_total (the loss must be a sum over samples, not RMSE);
        returns the loss. X and csr as in _run_epoch."""
        if self._loss_code == losses.RMSE:
            raise ValueError("the whole-data gradient sums over chunks of samples, which RMSE "
                             "(a root of the whole mean) does not")
        n = Y.shape[0]
        workspace = self._workspace(min(n, CHUNK_ROWS))
        if weights is None:
            weights = _NO_WEIGHTS[self.dtype]
        data, indices, indptr = _NO_CSR[self.dtype] if csr is None else csr
        order = np.arange(n) if csr is not None else np.empty(0, dtype=np.int64)
        start_threads()
        return dataset_gradient(
            X, Y, weights, data, indices, indptr, order, float(weight_total), workspace.n,
            self._sizes, self._activation_array, self._output_code, self._loss_code,
            float(grad_scale), self.params, self._grad, workspace.chunk_grad(self.n_params),
            workspace.hidden_buffer, workspace.delta_buffer, workspace.logits.reshape(-1),
            workspace.output.reshape(-1), self._transposed_buffer,
            workspace.batch_X.reshape(-1), workspace.batch_Y.reshape(-1), workspace.batch_weights)

    def step(self, X, y, lr=0.01, momentum=0.0, nesterov=False, weight_decay=0.0,
             optimizer="sgd", betas=(0.9, 0.999), epsilon=1e-8, sample_weight=None):
        """One step of SGD or Adam on the batch (X, y), arranged in Python from the same
        kernels as ``fit``'s compiled loop (and giving the same numbers); returns the batch's
        loss. A batch whose sample weights sum to 0 makes no step."""
        lr, optimizer = self._check_optimiser(lr, momentum, nesterov, weight_decay, optimizer,
                                              betas, epsilon)
        X, Y = self._check_data(X, y)
        weights = check.check_sample_weight(sample_weight, X.shape[0], self.dtype,
                                            allow_zero_total=True)
        # A running sum, in float64, as train_batch totals a batch's weights (NumPy's
        # pairwise sum can differ in the last bit, and then so would every gradient).
        total = (float(X.shape[0]) if weights is None
                 else float(np.cumsum(weights, dtype=np.float64)[-1]))
        with self._threads():
            loss = self._backward(X, Y, self._workspace(X.shape[0]), weights, total)
            if total > 0:
                self._optimizer_step(lr, optimizer)
        return loss

    def _check_optimiser(self, lr, momentum, nesterov, weight_decay, optimizer="sgd",
                         betas=(0.9, 0.999), epsilon=1e-8):
        """lr as a float, and the optimiser's settings."""
        lr = check.check_real(lr, "lr", 0, exclusive=True)
        if not isinstance(optimizer, str):
            raise TypeError(f"optimizer must be a string, got {optimizer!r}")
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {optimizer!r}; expected one of {sorted(OPTIMIZERS)}")
        momentum = check.check_real(momentum, "momentum", 0)
        weight_decay = check.check_real(weight_decay, "weight_decay", 0)
        if not isinstance(nesterov, (bool, np.bool_)):
            raise TypeError(f"nesterov must be True or False, got {nesterov!r}")
        if nesterov and momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0")
        if isinstance(betas, (str, bytes)) or not hasattr(betas, "__len__") or len(betas) != 2:
            raise TypeError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        beta1 = check.check_real(betas[0], "betas[0]", 0, maximum=1, max_exclusive=True)
        beta2 = check.check_real(betas[1], "betas[1]", 0, maximum=1, max_exclusive=True)
        epsilon = check.check_real(epsilon, "epsilon", 0, exclusive=True)
        if optimizer == "adam":
            if momentum != 0 or nesterov:
                raise ValueError("momentum and nesterov are SGD settings; Adam takes betas")
            return lr, _Optimiser("adam", beta1, False, weight_decay, beta2, epsilon)
        return lr, _Optimiser("sgd", momentum, bool(nesterov), weight_decay, 0.0, 0.0)

    # ------------------------------------------------------ state snapshots
    def _state(self):
        return {"params": self.params.copy(), "velocity": self._velocity.copy(),
                "second_moment": self._second_moment.copy(), "steps": self._steps.copy(),
                "state_optimizer": self._state_optimizer,
                "has_velocity": self._has_velocity, "rng": self._rng.bit_generator.state}

    def _copy_state(self, state):
        np.copyto(state["params"], self.params)
        np.copyto(state["velocity"], self._velocity)
        np.copyto(state["second_moment"], self._second_moment)
        np.copyto(state["steps"], self._steps)
        state["state_optimizer"] = self._state_optimizer
        state["has_velocity"] = self._has_velocity
        state["rng"] = self._rng.bit_generator.state

    def _restore_state(self, state):
        np.copyto(self.params, state["params"])
        np.copyto(self._velocity, state["velocity"])
        np.copyto(self._second_moment, state["second_moment"])
        np.copyto(self._steps, state["steps"])
        self._state_optimizer = state["state_optimizer"]
        self._has_velocity = state["has_velocity"]
        self._rng.bit_generator.state = state["rng"]

    def save(self, path):
        """Write the model to `path` (.npz) atomically; ``fastmlp.load`` reads it back exactly."""
        from .serialization import save_model
        save_model(self, path)
