"""Drop-in replacements for scikit-learn's MLPClassifier and MLPRegressor.

    from fastmlp.sklearn import MLPClassifier, MLPRegressor

The constructor parameters, fitted attributes, methods, losses, stopping rules,
warnings and errors are scikit-learn's; the arithmetic is fastmlp's kernels,
arranged by :class:`fastmlp.MLP`. Given the same ``random_state`` both draw the
same initial weights and the same shuffles, so the two libraries train the same
network up to rounding.

Where this module differs from scikit-learn, on purpose:

- ``dtype`` (extra keyword): the training dtype. None follows X (float32 kept,
  anything else float64), as scikit-learn does.
- ``predict_proba`` stays strictly inside (0, 1), so ``predict_log_proba`` is finite.
- Log losses are computed from the logits, exactly, where scikit-learn clips
  probabilities at the dtype's epsilon; the two agree unless a prediction is
  confidently wrong.
- With several regression outputs, scikit-learn's gradient is that of half the
  squared error summed over the outputs while ``loss_`` reports it averaged over
  them; the L-BFGS solver here minimises the former (the function its gradient
  belongs to) and reports the latter.
- ``early_stopping`` stratifies the validation split by class for multiclass
  targets too, when every class has two samples and fits on both sides of the
  split (scikit-learn only stratifies binary targets). The best weights it
  restores are the best over every warm-started fit, not only the last.
- ``loss="poisson"`` with a negative target raises a ValueError (scikit-learn
  trains on and reports a NaN loss).
- ``MLPRegressor(solver="lbfgs")`` has no ``partial_fit``, as for the
  classifier (scikit-learn's regressor runs a full L-BFGS fit there).
- A warm start keeps training in the dtype of the first fit.
- A classifier fitted on one class (after dropping samples of weight 0) raises a
  ValueError naming the class.
- A mini-batch whose sample weights sum to 0 makes no update.
- Read-only input (a memory map) is copied once rather than compiled for.
"""

import functools
import numbers
import warnings

import numpy as np
import scipy.optimize
import scipy.sparse

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
except ImportError:  # pragma: no cover - depends on the environment
    raise ImportError("fastmlp.sklearn needs scikit-learn; install it with "
                      "pip install fastmlp[sklearn]") from None

import threadpoolctl  # a dependency of scikit-learn
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state, column_or_1d
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import type_of_target, unique_labels
from sklearn.utils.validation import check_is_fitted, validate_data

from . import _validation as check
from .kernels.losses import add_l2_gradient
from .model import MLP

__all__ = ["MLPClassifier", "MLPRegressor"]

_STOCHASTIC_SOLVERS = ("sgd", "adam")
# Rows of sparse or large input densified at a time by predict.
_PREDICT_CHUNK = 4096
@functools.lru_cache(maxsize=None)
def _thread_pools():
    """The process's thread pools, listed once, on first use (listing them takes ~3 ms)."""
    return threadpoolctl.ThreadpoolController()


def _one_blas_thread():
    """A context in which BLAS runs on one thread. SciPy's L-BFGS-B does its vector work
    through BLAS between the gradient evaluations; with more BLAS threads, OpenBLAS's
    spin-waiting threads and the kernels' OpenMP threads fight over the cores (20,000 x 400,
    2 threads: a fit took 0.88 s, with one BLAS thread 0.29 s)."""
    return _thread_pools().limit(limits=1, user_api="blas")


def _fitted_binarizer(y):
    """LabelBinarizer().fit(y). For a non-empty 1-D array of integers, the state that fit
    would reach, set directly: type_of_target and unique_labels each check y again, together
    about 0.2 ms of a 16 ms fit on the digits."""
    binarizer = LabelBinarizer()
    if not (isinstance(y, np.ndarray) and y.ndim == 1 and y.dtype.kind in "iu" and y.shape[0]):
        return binarizer.fit(y)
    binarizer.classes_ = np.unique(np.asarray(y))
    # type_of_target: at most two distinct values are binary, more multiclass.
    binarizer.y_type_ = "multiclass" if binarizer.classes_.shape[0] > 2 else "binary"
    binarizer.sparse_input_ = False
    return binarizer


def _check_dtype(dtype):
    if dtype is None:
        return None
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be None, 'float32' or 'float64', got {dtype!r}") from None
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be None, 'float32' or 'float64', got {dtype.name!r}")
    return dtype


class _BaseMLP(BaseEstimator):
    """What the classifier and the regressor share: the solvers, arranged on fastmlp.MLP."""

    _parameter_constraints: dict = {
        "hidden_layer_sizes": ["array-like", Interval(numbers.Integral, 1, None, closed="left")],
        "activation": [StrOptions({"identity", "logistic", "tanh", "relu"})],
        "solver": [StrOptions({"lbfgs", "sgd", "adam"})],
        "alpha": [Interval(numbers.Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(numbers.Integral, 1, None, closed="left")],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
        "learning_rate_init": [Interval(numbers.Real, 0, None, closed="neither")],
        "power_t": [Interval(numbers.Real, 0, None, closed="left")],
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(numbers.Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "momentum": [Interval(numbers.Real, 0, 1, closed="both")],
        "nesterovs_momentum": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(numbers.Real, 0, 1, closed="left")],
        "beta_1": [Interval(numbers.Real, 0, 1, closed="left")],
        "beta_2": [Interval(numbers.Real, 0, 1, closed="left")],
        "epsilon": [Interval(numbers.Real, 0, None, closed="neither")],
        "n_iter_no_change": [Interval(numbers.Integral, 1, None, closed="left"),
                             Options(numbers.Real, {np.inf})],
        "max_fun": [Interval(numbers.Integral, 1, None, closed="left")],
        "dtype": [None, str, type, np.dtype],
    }

    # ------------------------------------------------------------- the network
    def _net_settings(self, n_outputs):
        """(fastmlp loss, output activation, loss-value scale, gradient scale) for the task:
        fastmlp's losses are means over outputs; scikit-learn's sum over them (and halve
        the squared error, but not its gradient)."""
        raise NotImplementedError

    def _build_net(self, layer_units, dtype):
        loss, output, value_scale, grad_scale = self._net_settings(layer_units[-1])
        activation = "sigmoid" if self.activation == "logistic" else self.activation
        self._net = MLP(layer_units, activation=activation, output_activation=output, loss=loss,
                        dtype=dtype)
        self._value_scale, self._grad_scale = value_scale, grad_scale

    def _link(self):
        """coefs_ and intercepts_ as views of the network's parameters."""
        self.coefs_ = list(self._net.weights)
        self.intercepts_ = list(self._net.biases)

    def _sync(self):
        """Make the network hold coefs_ and intercepts_, which a user (or unpickling) may
        have replaced by other arrays."""
        net = self._net
        if len(self.coefs_) != len(net.weights) or len(self.intercepts_) != len(net.biases):
            raise ValueError(f"coefs_ and intercepts_ must hold {len(net.weights)} arrays each, "
                             f"got {len(self.coefs_)} and {len(self.intercepts_)}")
        if (all(a is b for a, b in zip(self.coefs_, net.weights))
                and all(a is b for a, b in zip(self.intercepts_, net.biases))):
            return
        for target, source in zip(net.weights + net.biases, self.coefs_ + self.intercepts_):
            source = np.asarray(source)
            if source.shape != target.shape:
                raise ValueError(f"coefs_/intercepts_ hold an array of shape {source.shape} where "
                                 f"the network has {target.shape}")
            target[...] = source
        self._link()

    def _initialize(self, y, layer_units, dtype):
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = y.shape[1]
        self.n_layers_ = len(layer_units)
        self._build_net(layer_units, dtype)
        # scikit-learn's initialisation, drawn from the same generator in the same order.
        factor = 2.0 if self.activation == "logistic" else 6.0
        for W, b in zip(self._net.weights, self._net.biases):
            fan_in, fan_out = W.shape
            bound = np.sqrt(factor / (fan_in + fan_out))
            W[...] = self._random_state.uniform(-bound, bound, (fan_in, fan_out))
            b[...] = self._random_state.uniform(-bound, bound, fan_out)
        self._link()
        self._best_coefs = [c.copy() for c in self.coefs_]
        self._best_intercepts = [i.copy() for i in self.intercepts_]
        if self.solver in _STOCHASTIC_SOLVERS:
            self.loss_curve_ = []
            self._no_improvement_count = 0
            if self.early_stopping:
                self.validation_scores_ = []
                self.best_validation_score_ = -np.inf
                self.best_loss_ = None
            else:
                self.best_loss_ = np.inf
                self.validation_scores_ = None
                self.best_validation_score_ = None

    # ------------------------------------------------------------------- input
    def _target_dtype(self, X, first_pass):
        dtype = _check_dtype(self.dtype)
        if not first_pass:
            return self._net.dtype  # a warm start keeps training in the network's dtype
        if dtype is not None:
            return dtype
        return np.dtype(np.float32) if X.dtype == np.float32 else np.dtype(np.float64)

    def _prepare_X(self, X, dtype):
        """X as the kernels take it: a dense C-contiguous array, or an empty (0, n_features)
        array and the CSR triple (data, indices, indptr)."""
        if scipy.sparse.issparse(X):
            # gather_csr_rows adds entries into zeroed rows: index order does not matter.
            X = X.tocsr()
            csr = (np.ascontiguousarray(X.data, dtype=dtype),
                   np.ascontiguousarray(X.indices, dtype=np.int64),
                   np.ascontiguousarray(X.indptr, dtype=np.int64))
            return np.empty((0, X.shape[1]), dtype), csr
        # validate_data has checked X's shape and finiteness already.
        return check.as_kernel_array(X, dtype), None

    # ------------------------------------------------------------------- fit
    def _fit(self, X, y, sample_weight=None, incremental=False):
        hidden_layer_sizes = self.hidden_layer_sizes
        if not hasattr(hidden_layer_sizes, "__iter__"):
            hidden_layer_sizes = [hidden_layer_sizes]
        hidden_layer_sizes = list(hidden_layer_sizes)
        if np.any(np.array(hidden_layer_sizes) <= 0):
            raise ValueError(f"hidden_layer_sizes must be > 0, got {hidden_layer_sizes}.")
        first_pass = self._first_pass(incremental)
        X, y = self._validate_input(X, y, incremental, reset=first_pass)
        n_samples, n_features = X.shape
        # scikit-learn accepts negative weights too; fastmlp.MLP does not.
        weights = check.check_sample_weight(sample_weight, n_samples, np.float64,
                                            allow_negative=True)
        if y.ndim == 1:
            y = y.reshape((-1, 1))
        labels = self.__dict__.pop("_labels", None)
        if not incremental:
            self._check_classes_weighted(labels, weights)
        layer_units = [n_features] + hidden_layer_sizes + [y.shape[1]]
        if not first_pass:
            self._sync()
            if self._net.layer_sizes != tuple(layer_units):
                raise ValueError(f"the fitted network has layers {list(self._net.layer_sizes)} "
                                 f"but this data and hidden_layer_sizes need {layer_units}; "
                                 f"fit without warm_start to start afresh")
        dtype = self._target_dtype(X, first_pass)
        X, csr = self._prepare_X(X, dtype)
        Y = np.ascontiguousarray(y, dtype=dtype)
        if weights is not None:
            weights = np.ascontiguousarray(weights, dtype=dtype)
        self.n_outputs_ = y.shape[1]
        self._random_state = check_random_state(self.random_state)
        if first_pass:
            self._initialize(y, layer_units, dtype)
        if self.solver in _STOCHASTIC_SOLVERS:
            self._fit_stochastic(X, Y, weights, csr, incremental)
        else:
            self._fit_lbfgs(X, Y, weights, csr)
        if not all(np.isfinite(w).all() for w in self.coefs_ + self.intercepts_):
            raise ValueError("Solver produced non-finite parameter weights. The input data may "
                             "contain large values and need to be preprocessed.")
        return self

    def _fit_guarded(self, X, y, sample_weight, incremental):
        """_fit, leaving the estimator as it was if it raises."""
        self._validate_params()
        before = self._snapshot(copy_network=not self._first_pass(incremental))
        try:
            return self._fit(X, y, sample_weight=sample_weight, incremental=incremental)
        except BaseException:
            self._restore(before)
            raise

    def _first_pass(self, incremental):
        """Whether this fit starts a new network (else it trains the fitted one further)."""
        return not hasattr(self, "coefs_") or (not self.warm_start and not incremental)

    def _snapshot(self, copy_network=True):
        """What a failed fit must put back. Training changes the network's buffers and
        appends to the lists in place; everything else it replaces. A fit that starts a new
        network leaves the old one untouched, so it need not be copied."""
        attributes = {key: list(value) if isinstance(value, list) else value
                      for key, value in self.__dict__.items()}
        net = self.__dict__.get("_net") if copy_network else None
        return attributes, net, None if net is None else net._state()

    def _restore(self, snapshot):
        attributes, net, net_state = snapshot
        self.__dict__.clear()
        self.__dict__.update(attributes)
        if net is not None:
            net._restore_state(net_state)

    def _check_classes_weighted(self, labels, sample_weight):
        """Classifiers: raise when the samples of non-zero weight hold one class only."""

    def _new_optimizer(self):
        net = self._net
        net._velocity[...] = 0
        net._second_moment[...] = 0
        net._steps[0] = 0
        net._has_velocity = False
        self._learning_rate = float(self.learning_rate_init)

    def _optimiser(self):
        """The kernel settings of the solver; the weight decay alpha is divided by each
        batch's total sample weight in the kernels (decay_per_weight)."""
        if self.solver == "adam":
            return self._net._check_optimiser(self.learning_rate_init, 0.0, False, self.alpha,
                                              "adam", (self.beta_1, self.beta_2), self.epsilon)[1]
        nesterov = bool(self.nesterovs_momentum) and self.momentum > 0
        return self._net._check_optimiser(self._learning_rate, self.momentum, nesterov,
                                          self.alpha, "sgd")[1]

    def _set_learning_rate(self, rate):
        """Change the SGD rate. scikit-learn's velocity includes the rate, fastmlp's (PyTorch's)
        does not: rescaling the buffer keeps every later step the same as scikit-learn's."""
        if rate != self._learning_rate and self._net._has_velocity:
            self._net._velocity *= self._net.dtype.type(self._learning_rate / rate)
        self._learning_rate = rate

    def _fit_stochastic(self, X, Y, weights, csr, incremental):
        if not incremental or not hasattr(self, "_learning_rate"):
            self._new_optimizer()
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        early_stopping = self.early_stopping
        if early_stopping:
            X_train, X_val, Y_train, y_val, weights_train, weights_val, csr = \
                self._split_validation(X, Y, weights, csr)
        else:
            X_train, Y_train, weights_train = X, Y, weights
            X_val = y_val = weights_val = None
        n_samples = Y_train.shape[0]
        sample_idx = np.arange(n_samples, dtype=np.int64)
        if self.batch_size == "auto":
            batch_size = min(200, n_samples)
        else:
            if self.batch_size > n_samples:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is "
                              "going to be clipped")
            batch_size = int(np.clip(self.batch_size, 1, n_samples))

        net = self._net
        workspace = net._workspace(batch_size)
        ordered = np.empty(0, dtype=np.int64) if csr is None else sample_idx
        # The rate travels apart from these settings, so they hold for the whole fit.
        optimiser = self._optimiser()
        try:
            self.n_iter_ = 0
            for _ in range(self.max_iter):
                if self.shuffle:
                    # sklearn.utils.shuffle's draw, without its per-call argument checks: it
                    # shuffles an arange and indexes sample_idx with it, which the same swaps
                    # in place give directly.
                    self._random_state.shuffle(sample_idx)
                    order = sample_idx
                else:
                    order = ordered
                with net._threads():
                    loss_sum, penalty_sum = net._run_epoch(
                        X_train, Y_train, weights_train, order, workspace, self._learning_rate,
                        optimiser, csr=csr, grad_scale=self._grad_scale, decay_per_weight=True)
                self.n_iter_ += 1
                self.loss_ = (self._value_scale * loss_sum + penalty_sum) / n_samples
                if not np.isfinite(self.loss_):
                    raise ValueError("Solver produced non-finite parameter weights. The input "
                                     "data may contain large values and need to be preprocessed.")
                self.t_ += n_samples
                self.loss_curve_.append(self.loss_)
                if self.verbose:
                    print("Iteration %d, loss = %.8f" % (self.n_iter_, self.loss_))
                self._update_no_improvement_count(early_stopping, X_val, y_val, weights_val)
                if self.solver == "sgd" and self.learning_rate == "invscaling":
                    self._set_learning_rate(float(self.learning_rate_init)
                                            / (self.t_ + 1) ** self.power_t)
                if self._no_improvement_count > self.n_iter_no_change:
                    if early_stopping:
                        msg = ("Validation score did not improve more than tol=%f for %d "
                               "consecutive epochs." % (self.tol, self.n_iter_no_change))
                    else:
                        msg = ("Training loss did not improve more than tol=%f for %d "
                               "consecutive epochs." % (self.tol, self.n_iter_no_change))
                    if self._trigger_stopping(msg):
                        break
                    self._no_improvement_count = 0
                if incremental:
                    break
                if self.n_iter_ == self.max_iter:
                    warnings.warn("Stochastic Optimizer: Maximum iterations (%d) reached and the "
                                  "optimization hasn't converged yet." % self.max_iter,
                                  ConvergenceWarning)
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.")
        if early_stopping:
            for target, best in zip(self.coefs_ + self.intercepts_,
                                    self._best_coefs + self._best_intercepts):
                target[...] = best

    def _trigger_stopping(self, msg):
        if self.solver == "adam" or self.learning_rate != "adaptive":
            if self.verbose:
                print(msg + " Stopping.")
            return True
        if self._learning_rate <= 1e-6:
            if self.verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        self._set_learning_rate(self._learning_rate / 5.0)
        if self.verbose:
            print(msg + " Setting learning rate to %f" % self._learning_rate)
        return False

    def _split_validation(self, X, Y, weights, csr):
        stratify = self._stratify_labels(Y)
        n = Y.shape[0]
        index = np.arange(n)
        train, val = train_test_split(index, random_state=self._random_state,
                                      test_size=self.validation_fraction, stratify=stratify)
        if val.shape[0] < 2:
            raise ValueError("The validation set is too small. Increase 'validation_fraction' "
                             "or the size of your dataset.")
        train = np.ascontiguousarray(train, dtype=np.int64)
        if csr is None:
            X_train, X_val = X[train], X[val]
            csr_train = None
        else:
            matrix = scipy.sparse.csr_matrix(csr, shape=(n, X.shape[1]))
            X_val = matrix[val]
            part = matrix[train]
            csr_train = (part.data, part.indices.astype(np.int64), part.indptr.astype(np.int64))
            X_train = X
        y_val = self._validation_targets(Y[val])
        weights_train = None if weights is None else weights[train]
        weights_val = None if weights is None else weights[val]
        return X_train, X_val, Y[train], y_val, weights_train, weights_val, csr_train

    def _stratify_labels(self, Y):
        return None

    def _validation_targets(self, Y):
        return Y

    def _update_no_improvement_count(self, early_stopping, X_val, y_val, weights_val):
        if early_stopping:
            score = self._score(X_val, y_val, weights_val)
            self.validation_scores_.append(score)
            if self.verbose:
                print("Validation score: %f" % self.validation_scores_[-1])
            if score < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best_coefs = [c.copy() for c in self.coefs_]
                self._best_intercepts = [i.copy() for i in self.intercepts_]
        else:
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if self.loss_curve_[-1] < self.best_loss_:
                self.best_loss_ = self.loss_curve_[-1]

    def _fit_lbfgs(self, X, Y, weights, csr):
        net = self._net
        n_weights = net._n_weights
        weight_total = float(Y.shape[0]) if weights is None else float(weights.sum(dtype=np.float64))
        coefficient = float(self.alpha) / weight_total
        scale = self._grad_scale

        def loss_and_gradient(packed):
            net.params[...] = packed
            with net._threads():
                loss = net._dataset_gradient(X, Y, weights, weight_total, csr, scale)
            penalty = add_l2_gradient(net.params[:n_weights], coefficient, net._grad[:n_weights])
            return scale * loss + penalty, net._grad.astype(np.float64)

        with _one_blas_thread():
            result = scipy.optimize.minimize(
                loss_and_gradient, net.params.astype(np.float64), method="L-BFGS-B", jac=True,
                options={"maxfun": self.max_fun, "maxiter": self.max_iter, "gtol": self.tol})
        self.n_iter_ = min(result.nit, self.max_iter)
        if result.status != 0:
            message = result.message
            if isinstance(message, bytes):
                message = message.decode("latin1")
            advice = (f"\nIncrease the number of iterations to improve the convergence "
                      f"(max_iter={self.max_iter})." if self.n_iter_ == self.max_iter else "")
            warnings.warn(f"lbfgs failed to converge after {self.n_iter_} iteration(s) "
                          f"(status={result.status}):\n{message}\n{advice}",
                          ConvergenceWarning, stacklevel=3)
        net.params[...] = result.x
        self.loss_ = float(result.fun)
        if scale != self._value_scale:
            # Report scikit-learn's loss (see the module's notes), not the one minimised.
            with net._threads():
                loss = net._dataset_gradient(X, Y, weights, weight_total, csr, scale)
            penalty = add_l2_gradient(net.params[:n_weights], coefficient, net._grad[:n_weights])
            self.loss_ = self._value_scale * loss + penalty

    # --------------------------------------------------------------- predict
    def _forward_pass_fast(self, X, check_input=True):
        """The network's output (after the output activation) for X."""
        if check_input:
            X = validate_data(self, X, accept_sparse=["csr", "csc"], reset=False)
        self._sync()
        net = self._net
        # scikit-learn's output dtype: float64 input promotes float32 coefficients.
        dtype = np.result_type(X.dtype, net.dtype)
        if scipy.sparse.issparse(X):
            X = X.tocsr()
            out = np.empty((X.shape[0], net.layer_sizes[-1]), dtype=dtype)
            for start in range(0, X.shape[0], _PREDICT_CHUNK):
                stop = min(start + _PREDICT_CHUNK, X.shape[0])
                out[start:stop] = net._predict(check.as_kernel_array(X[start:stop].toarray(),
                                                                     net.dtype))
            return out
        return net._predict(check.as_kernel_array(X, net.dtype)).astype(dtype, copy=False)

    def _score_with_function(self, X, y, sample_weight, score_function):
        y_pred = self._predict(X, check_input=False)
        if np.issubdtype(y_pred.dtype, np.floating) and not np.isfinite(y_pred).all():
            return np.nan
        return score_function(y, y_pred, sample_weight=sample_weight)

    def _check_solver(self):
        if self.solver not in _STOCHASTIC_SOLVERS:
            raise AttributeError("partial_fit is only available for stochastic optimizers. "
                                 "%s is not stochastic." % self.solver)
        return True

    def fit(self, X, y, sample_weight=None):
        """Fit the model to data matrix X and target(s) y; see scikit-learn's MLP."""
        return self._fit_guarded(X, y, sample_weight, incremental=False)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier: scikit-learn's MLPClassifier on fastmlp's kernels.

    Parameters and attributes are scikit-learn's (see its documentation), plus
    ``dtype``: the training dtype, None to follow X.
    """

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 dtype=None):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dtype = dtype

    @property
    def loss(self):
        return "log_loss"

    def _net_settings(self, n_outputs):
        if self._label_binarizer.y_type_ == "multiclass":
            self.out_activation_ = "softmax"
            return "cross_entropy", "softmax", 1.0, 1.0
        self.out_activation_ = "logistic"
        return "binary_cross_entropy", "sigmoid", float(n_outputs), float(n_outputs)

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if (not hasattr(self, "classes_")) or (not self.warm_start and not incremental):
            self._label_binarizer = _fitted_binarizer(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError(f"warm_start can only be used where `y` has the same "
                                     f"classes as in the previous call to fit. Previously got "
                                     f"{self.classes_}, `y` has {classes}")
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has "
                                 f"{self.classes_}. 'y' has {classes}.")
        self._labels = y
        return X, self._indicator(y)

    def _indicator(self, y):
        """The label binarizer's transform of y, as booleans. For 1-D numeric labels that are
        all among classes_ it is built here, the same matrix without the binarizer's checks
        (0.4 ms of a 20 ms fit on digits); anything else goes through the binarizer."""
        binarizer = self._label_binarizer
        classes = binarizer.classes_
        if (binarizer.y_type_ in ("binary", "multiclass") and isinstance(y, np.ndarray)
                and y.ndim == 1 and y.dtype.kind in "biuf" and classes.dtype.kind in "biuf"
                and classes.shape[0] >= 2):
            index = np.minimum(np.searchsorted(classes, y), classes.shape[0] - 1)
            if np.array_equal(classes[index], y):
                # label_binarize: one column for two classes (the second is positive),
                # else one column per class.
                if classes.shape[0] == 2:
                    return (index == 1).reshape(-1, 1)
                indicator = np.zeros((y.shape[0], classes.shape[0]), dtype=bool)
                indicator[np.arange(y.shape[0]), index] = True
                return indicator
        return binarizer.transform(y).astype(bool)

    def _check_classes_weighted(self, labels, sample_weight):
        if self._label_binarizer.y_type_ not in ("binary", "multiclass"):
            return
        if sample_weight is None:
            # Every class of classes_ is in y: they were found in it, or (warm start) checked
            # to be the classes it holds.
            present = self.classes_.tolist()
        else:
            labels = labels[np.asarray(sample_weight) != 0]
            present = unique_labels(labels).tolist() if labels.shape[0] else []
        if len(present) < 2:
            if sample_weight is not None:
                raise ValueError(f"only one class, {present[0]!r}, has samples of non-zero "
                                 f"weight; a classifier needs at least 2 classes"
                                 if present else
                                 "every sample has weight zero; a classifier needs samples of at "
                                 "least 2 classes")
            raise ValueError(f"y holds only one class, {present[0]!r}; a classifier needs at "
                             f"least 2 classes")

    def _stratify_labels(self, Y):
        if self._label_binarizer.y_type_ == "multiclass":
            labels = Y.argmax(axis=1)
            counts = np.bincount(labels)
            counts = counts[counts > 0]
            n_val = int(np.ceil(self.validation_fraction * labels.shape[0]))
            # A stratified split needs two samples of every class and room for each on both
            # sides; scikit-learn does not stratify multiclass targets, so neither do we then.
            if (counts.min() < 2 or n_val < counts.shape[0]
                    or labels.shape[0] - n_val < counts.shape[0]):
                return None
            return labels
        if self.n_outputs_ == 1:
            return Y[:, 0]
        return None

    def _validation_targets(self, Y):
        return self._label_binarizer.inverse_transform(Y)

    def predict(self, X):
        """Predict using the multi-layer perceptron classifier."""
        check_is_fitted(self)
        return self._predict(X)

    def _predict(self, X, check_input=True):
        y_pred = self._forward_pass_fast(X, check_input=check_input)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        return self._label_binarizer.inverse_transform(y_pred)

    def _score(self, X, y, sample_weight=None):
        return self._score_with_function(X, y, sample_weight, accuracy_score)

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """Update the model with a single iteration over the given data."""
        first_call = not hasattr(self, "classes_")
        if first_call:
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit.")
            self._validate_params()
            label_binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                label_binarizer.fit(y)
            else:
                label_binarizer.fit(classes)
        elif classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            raise ValueError(f"`classes={classes!r}` is not the same as on last call to "
                             f"partial_fit, was: {self.classes_!r}")
        before = self._snapshot()
        try:
            if first_call:
                self._label_binarizer = label_binarizer
                self.classes_ = label_binarizer.classes_
            return self._fit(X, y, sample_weight=sample_weight, incremental=True)
        except BaseException:
            self._restore(before)
            raise

    def predict_proba(self, X):
        """Probability estimates, strictly inside (0, 1), columns in the order of classes_."""
        check_is_fitted(self)
        y_pred = self._forward_pass_fast(X)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        if y_pred.ndim == 1:
            y_pred = np.vstack([1 - y_pred, y_pred]).T
        high = np.nextafter(y_pred.dtype.type(1), y_pred.dtype.type(0))
        return np.clip(y_pred, np.finfo(y_pred.dtype).tiny, high, out=y_pred)

    def predict_log_proba(self, X):
        """The log of predict_proba: finite."""
        y_prob = self.predict_proba(X)
        return np.log(y_prob, out=y_prob)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor: scikit-learn's MLPRegressor on fastmlp's kernels.

    Parameters and attributes are scikit-learn's (see its documentation), plus
    ``dtype``: the training dtype, None to follow X.
    """

    _parameter_constraints: dict = {
        **_BaseMLP._parameter_constraints,
        "loss": [StrOptions({"squared_error", "poisson"})],
    }

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *,
                 solver="adam", alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 dtype=None):
        self.loss = loss
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dtype = dtype

    def _net_settings(self, n_outputs):
        if self.loss == "poisson":
            self.out_activation_ = "exp"
            return "poisson", "exp", float(n_outputs), float(n_outputs)
        self.out_activation_ = "identity"
        return "mse", "identity", 0.5, n_outputs / 2.0

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             y_numeric=True, dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if self.loss == "poisson" and np.min(y) < 0:
            raise ValueError("Some value(s) of y are negative which is not allowed for "
                             "Poisson regression.")
        return X, y

    def predict(self, X):
        """Predict using the multi-layer perceptron model."""
        check_is_fitted(self)
        return self._predict(X)

    def _predict(self, X, check_input=True):
        y_pred = self._forward_pass_fast(X, check_input=check_input)
        if y_pred.shape[1] == 1:
            return y_pred.ravel()
        return y_pred

    def _score(self, X, y, sample_weight=None):
        return self._score_with_function(X, y, sample_weight, r2_score)

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X, y, sample_weight=None):
        """Update the model with a single iteration over the given data."""
        return self._fit_guarded(X, y, sample_weight, incremental=True)
