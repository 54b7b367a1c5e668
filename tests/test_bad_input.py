"""Bad input raises ValueError/TypeError naming the problem and changes nothing;
divergence raises DivergenceError and restores the last good parameters;
read-only and non-contiguous inputs are accepted and never written to."""

import numba
import numpy as np
import pytest
import scipy.sparse

import fastmlp
from conftest import assert_unchanged, snapshot
from fastmlp import MLP, DivergenceError

N, D, K = 8, 4, 3


def good_data(loss="mse"):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N, D))
    if loss == "cross_entropy":
        return X, rng.integers(0, K, N)
    if loss == "binary_cross_entropy":
        return X, rng.uniform(0, 1, (N, K))
    if loss == "poisson":
        return X, rng.poisson(1.0, (N, K)).astype(float)
    return X, rng.normal(size=(N, K))


def trained_net(loss="mse", dtype="float64", optimizer="sgd"):
    """A net after one epoch with momentum (or Adam), so params, the optimiser state and
    rng are all non-trivial."""
    net = MLP([D, 5, K], activation="tanh", loss=loss, dtype=dtype, seed=0)
    if optimizer == "adam":
        net.fit(*good_data(loss), epochs=1, batch_size=3, lr=0.01, optimizer="adam")
        assert net._second_moment.any() and net._steps[0] == 3 and not net._has_velocity
    else:
        net.fit(*good_data(loss), epochs=1, batch_size=3, lr=0.01, momentum=0.9)
        assert net._has_velocity
    assert net._velocity.any()
    return net


def with_value(array, index, value):
    array = np.array(array, dtype=np.float64)
    array[index] = value
    return array


# ------------------------------------------------------------------ data checks
# (id, loss, make (X, y) from good (X, y), exception, message pattern, X-only case?)
DATA_CASES = [
    ("nan_in_X", "mse", lambda X, y: (with_value(X, (2, 1), np.nan), y), ValueError,
     r"X contains 1 NaN", True),
    ("inf_in_X", "mse", lambda X, y: (with_value(X, (0, 0), np.inf), y), ValueError,
     r"X contains infinite", True),
    ("minus_inf_in_X", "mse", lambda X, y: (with_value(X, (N - 1, D - 1), -np.inf), y), ValueError,
     r"X contains infinite", True),
    ("X_1d", "mse", lambda X, y: (X[0], y), ValueError, r"X must be 2-D", True),
    ("X_3d", "mse", lambda X, y: (X[None], y), ValueError, r"X must be 2-D", True),
    ("X_scalar", "mse", lambda X, y: (3.0, y), ValueError, r"X must be 2-D", True),
    ("wrong_features", "mse", lambda X, y: (X[:, :3], y), ValueError,
     r"X has 3 features, but the network expects 4", True),
    ("too_many_features", "mse", lambda X, y: (np.hstack([X, X]), y), ValueError,
     r"X has 8 features", True),
    ("empty_X", "mse", lambda X, y: (X[:0], y[:0]), ValueError, r"X is empty", True),
    ("string_X", "mse", lambda X, y: (X.astype(str), y), TypeError, r"X must hold numbers", True),
    ("object_X", "mse", lambda X, y: (X.astype(object), y), TypeError, r"X must hold numbers", True),
    ("none_X", "mse", lambda X, y: (None, y), TypeError, r"X must hold numbers", True),
    ("complex_X", "mse", lambda X, y: (X + 1j, y), TypeError, r"X is complex", True),
    ("ragged_X", "mse", lambda X, y: ([[1.0, 2.0, 3.0, 4.0], [1.0]], y[:2]), TypeError,
     r"X cannot be read as a numeric array", True),
    ("sparse_X", "mse", lambda X, y: (scipy.sparse.csr_matrix(X), y), TypeError,
     r"X is a sparse matrix", True),
    ("nan_in_y", "mse", lambda X, y: (X, with_value(y, (3, 2), np.nan)), ValueError,
     r"y contains 1 NaN", False),
    ("inf_in_y", "mse", lambda X, y: (X, with_value(y, (3, 2), -np.inf)), ValueError,
     r"y contains infinite", False),
    ("y_shorter", "mse", lambda X, y: (X, y[:-1]), ValueError,
     r"y has 7 samples but X has 8; they must have the same length", False),
    ("y_longer", "mse", lambda X, y: (X, np.vstack([y, y])), ValueError,
     r"y has 16 samples but X has 8", False),
    ("y_wrong_columns", "mse", lambda X, y: (X, y[:, :2]), ValueError,
     r"y has 2 columns but the network has 3 outputs", False),
    ("y_1d_for_3_outputs", "mse", lambda X, y: (X, y[:, 0]), ValueError,
     r"y is 1-D but the network has 3 outputs", False),
    ("y_3d", "mse", lambda X, y: (X, y[:, :, None]), ValueError, r"y must be 1-D or 2-D", False),
    ("y_scalar", "mse", lambda X, y: (X, 1.0), ValueError, r"y must be 1-D or 2-D", False),
    ("complex_y", "mse", lambda X, y: (X, y * 1j), TypeError, r"y is complex", False),
    ("string_y", "mse", lambda X, y: (X, y.astype(str)), TypeError, r"y must hold numbers", False),
    ("label_too_large", "cross_entropy", lambda X, y: (X, with_value(y, 4, 3).astype(int)),
     ValueError, r"label 3 out of range.*0\.\.2", False),
    ("label_negative", "cross_entropy", lambda X, y: (X, with_value(y, 4, -1).astype(int)),
     ValueError, r"label -1 out of range", False),
    ("label_non_integer", "cross_entropy", lambda X, y: (X, with_value(y, 4, 1.5)), ValueError,
     r"non-integer", False),
    ("label_nan", "cross_entropy", lambda X, y: (X, with_value(y, 4, np.nan)), ValueError,
     r"NaN or infinite labels", False),
    ("labels_wrong_length", "cross_entropy", lambda X, y: (X, y[:5]), ValueError,
     r"y has 5 samples but X has 8", False),
    ("negative_probabilities", "cross_entropy",
     lambda X, y: (X, with_value(np.full((N, K), 1 / 3), (1, 1), -0.1)), ValueError, r"negative",
     False),
    ("bce_target_above_one", "binary_cross_entropy", lambda X, y: (X, with_value(y, (0, 0), 1.5)),
     ValueError, r"outside \[0, 1\]", False),
    ("bce_target_below_zero", "binary_cross_entropy",
     lambda X, y: (X, with_value(y, (0, 0), -0.5)), ValueError, r"outside \[0, 1\]", False),
    ("poisson_negative_count", "poisson", lambda X, y: (X, with_value(y, (2, 1), -1.0)),
     ValueError, r"y holds negative values; poisson targets are counts", False),
]

METHODS = {
    "fit": lambda net, X, y: net.fit(X, y, epochs=2, batch_size=3, lr=0.01, momentum=0.9),
    "loss": lambda net, X, y: net.loss(X, y),
    "gradients": lambda net, X, y: net.gradients(X, y),
    "step": lambda net, X, y: net.step(X, y, lr=0.01, momentum=0.9),
    "predict": lambda net, X, y: net.predict(X),
}


# predict takes no targets, so it gets the X cases only.
DATA_CALLS = [pytest.param(case[1:], method, id=f"{case[0]}-{method}")
              for case in DATA_CASES for method in METHODS if case[-1] or method != "predict"]


@pytest.mark.parametrize("case,method", DATA_CALLS)
def test_bad_data_raises_and_changes_nothing(case, method):
    loss, make, error, match, _ = case
    net = trained_net(loss)
    before = snapshot(net)
    X, y = make(*good_data(loss))
    with pytest.raises(error, match=match):
        METHODS[method](net, X, y)
    assert_unchanged(net, before)


# fit tests X for NaN and infinity batch by batch in its first epoch (not in a pass of its
# own): every training path must find a bad row wherever it is, weighted 0 or not.
@pytest.mark.parametrize("row", [0, N - 1])
@pytest.mark.parametrize("zero_weight", [False, True], ids=["weighted", "weight-0"])
@pytest.mark.parametrize("shuffle", [False, True], ids=["in-order", "shuffled"])
@pytest.mark.parametrize("settings", [dict(batch_size=1), dict(batch_size=1, momentum=0.9),
                                      dict(batch_size=3), dict(batch_size=N, optimizer="adam")],
                         ids=["one-sample-loop", "one-sample-momentum", "batches", "adam"])
def test_fit_finds_a_non_finite_row_of_X_on_every_training_path(settings, shuffle, zero_weight,
                                                                 row, dtype):
    net = trained_net(dtype=dtype)
    before = snapshot(net)
    X, y = good_data()
    X[row, 1] = np.nan
    weights = np.ones(N)
    if zero_weight:
        weights[row] = 0.0
    with pytest.raises(ValueError, match=r"X contains 1 NaN"):
        net.fit(X, y, epochs=2, lr=0.01, shuffle=shuffle, sample_weight=weights, **settings)
    assert_unchanged(net, before)


def test_fit_reports_a_non_finite_X_even_when_training_diverges_before_reaching_it():
    net, X, y = divergent_problem("float64")
    before = snapshot(net)
    X[-1, 0] = np.inf
    with pytest.raises(ValueError, match=r"X contains infinite"):
        net.fit(X, y, epochs=1, batch_size=8, lr=1e10, momentum=0.9)
    assert_unchanged(net, before)


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_values_overflowing_a_float32_model_are_reported_as_infinite():
    net = trained_net(dtype="float32")
    before = snapshot(net)
    X, y = good_data()
    with pytest.raises(ValueError, match=r"X contains infinite"):
        net.fit(with_value(X, (0, 0), 1e39), y)
    with pytest.raises(ValueError, match=r"y contains infinite"):
        net.loss(X, with_value(y, (0, 0), -1e40))
    assert_unchanged(net, before)


@pytest.mark.parametrize("bad", ["X", "y"])
def test_bad_validation_data_raises_and_changes_nothing(bad):
    net = trained_net()
    before = snapshot(net)
    X, y = good_data()
    X_val, y_val = (with_value(X, (1, 1), np.nan), y) if bad == "X" else (X, y[:5])
    match = r"X_val contains 1 NaN" if bad == "X" else r"y_val has 5 samples but X has 8"
    with pytest.raises(ValueError, match=match):
        net.fit(X, y, epochs=2, validation_data=(X_val, y_val))
    with pytest.raises(TypeError, match=r"validation_data must be a pair"):
        net.fit(X, y, epochs=2, validation_data=X)
    assert_unchanged(net, before)


# ------------------------------------------------------------ fit arguments
FIT_CASES = [
    ("epochs_zero", dict(epochs=0), ValueError, r"epochs must be >= 1, got 0"),
    ("epochs_negative", dict(epochs=-3), ValueError, r"epochs must be >= 1"),
    ("epochs_float", dict(epochs=1.5), TypeError, r"epochs must be an integer"),
    ("epochs_bool", dict(epochs=True), TypeError, r"epochs must be an integer"),
    ("batch_size_zero", dict(batch_size=0), ValueError, r"batch_size must be >= 1, got 0"),
    ("batch_size_negative", dict(batch_size=-1), ValueError, r"batch_size must be >= 1"),
    ("batch_size_float", dict(batch_size=4.0), TypeError, r"batch_size must be an integer"),
    ("lr_zero", dict(lr=0), ValueError, r"lr must be > 0"),
    ("lr_negative", dict(lr=-0.1), ValueError, r"lr must be > 0"),
    ("lr_nan", dict(lr=float("nan")), ValueError, r"lr must be finite"),
    ("lr_inf", dict(lr=float("inf")), ValueError, r"lr must be finite"),
    ("lr_string", dict(lr="0.1"), TypeError, r"lr must be a real number"),
    ("lr_none", dict(lr=None), TypeError, r"lr must be a real number"),
    ("momentum_negative", dict(momentum=-0.5), ValueError, r"momentum must be >= 0"),
    ("momentum_nan", dict(momentum=float("nan")), ValueError, r"momentum must be finite"),
    ("weight_decay_negative", dict(weight_decay=-1e-3), ValueError, r"weight_decay must be >= 0"),
    ("weight_decay_inf", dict(weight_decay=float("inf")), ValueError, r"weight_decay must be finite"),
    ("nesterov_without_momentum", dict(nesterov=True), ValueError, r"nesterov=True needs momentum > 0"),
    ("nesterov_not_bool", dict(nesterov="yes", momentum=0.9), TypeError, r"nesterov must be True or False"),
    ("shuffle_not_bool", dict(shuffle="yes"), TypeError, r"shuffle must be True or False"),
    ("unknown_schedule", dict(lr_schedule="warmup"), ValueError, r"unknown lr_schedule 'warmup'"),
    ("schedule_wrong_type", dict(lr_schedule=3), TypeError, r"lr_schedule must be one of"),
    # a callable schedule that goes bad after two good epochs: nothing may be kept
    ("schedule_negative_later", dict(lr_schedule=lambda e: 0.01 if e < 2 else -1.0, epochs=4),
     ValueError, r"lr_schedule returned lr=-1.0 for epoch 2"),
    ("schedule_nan_later", dict(lr_schedule=lambda e: 0.01 if e < 1 else float("nan"), epochs=3),
     ValueError, r"lr_schedule returned lr=nan for epoch 1"),
    ("schedule_zero", dict(lr_schedule=lambda e: 0), ValueError, r"must be finite and > 0"),
    ("schedule_not_a_number", dict(lr_schedule=lambda e: "fast"), TypeError,
     r"lr_schedule returned 'fast' for epoch 0; expected a real number"),
]


@pytest.mark.parametrize("name,kwargs,error,match", FIT_CASES, ids=[c[0] for c in FIT_CASES])
def test_bad_fit_arguments_raise_and_change_nothing(name, kwargs, error, match):
    net = trained_net()
    before = snapshot(net)
    X, y = good_data()
    arguments = dict(epochs=2, batch_size=3, lr=0.01, shuffle=True)
    arguments.update(kwargs)
    with pytest.raises(error, match=match):
        net.fit(X, y, **arguments)
    assert_unchanged(net, before)


def test_exception_inside_a_schedule_restores_the_state_from_before_fit():
    net = trained_net()
    before = snapshot(net)

    def schedule(epoch):
        if epoch == 2:
            raise ZeroDivisionError("schedule broke")
        return 0.01

    with pytest.raises(ZeroDivisionError, match="schedule broke"):
        net.fit(*good_data(), epochs=4, lr_schedule=schedule, momentum=0.9)
    assert_unchanged(net, before)


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(lr=0), ValueError, r"lr must be > 0"),
    (dict(lr=float("nan")), ValueError, r"lr must be finite"),
    (dict(momentum=-1.0), ValueError, r"momentum must be >= 0"),
    (dict(nesterov=True), ValueError, r"nesterov=True needs momentum > 0"),
], ids=["lr_zero", "lr_nan", "momentum_negative", "nesterov_without_momentum"])
def test_bad_step_arguments_raise_and_change_nothing(kwargs, error, match):
    net = trained_net()
    before = snapshot(net)
    with pytest.raises(error, match=match):
        net.step(*good_data(), **kwargs)
    assert_unchanged(net, before)


# ------------------------------------------------- optimiser and sample weights
# (id, keyword arguments, exception, message pattern); for fit and step alike
OPTIMIZER_CASES = [
    ("optimizer_unknown", dict(optimizer="rmsprop"), ValueError,
     r"unknown optimizer 'rmsprop'; expected one of \['adam', 'sgd'\]"),
    ("optimizer_upper_case", dict(optimizer="Adam"), ValueError, r"unknown optimizer 'Adam'"),
    ("optimizer_not_string", dict(optimizer=None), TypeError, r"optimizer must be a string"),
    ("betas_not_pair", dict(optimizer="adam", betas=(0.9,)), TypeError,
     r"betas must be a pair \(beta1, beta2\)"),
    ("betas_triple", dict(optimizer="adam", betas=(0.9, 0.99, 0.999)), TypeError,
     r"betas must be a pair"),
    ("betas_scalar", dict(optimizer="adam", betas=0.9), TypeError, r"betas must be a pair"),
    ("betas_string", dict(optimizer="adam", betas="ab"), TypeError, r"betas must be a pair"),
    ("beta1_one", dict(optimizer="adam", betas=(1.0, 0.999)), ValueError, r"betas\[0\] must be < 1"),
    ("beta1_negative", dict(optimizer="adam", betas=(-0.1, 0.999)), ValueError,
     r"betas\[0\] must be >= 0"),
    ("beta2_above_one", dict(optimizer="adam", betas=(0.9, 1.5)), ValueError,
     r"betas\[1\] must be < 1"),
    ("beta2_nan", dict(optimizer="adam", betas=(0.9, float("nan"))), ValueError,
     r"betas\[1\] must be finite"),
    ("beta1_string", dict(optimizer="adam", betas=("0.9", 0.999)), TypeError,
     r"betas\[0\] must be a real number"),
    ("epsilon_zero", dict(optimizer="adam", epsilon=0.0), ValueError, r"epsilon must be > 0"),
    ("epsilon_negative", dict(optimizer="adam", epsilon=-1e-8), ValueError, r"epsilon must be > 0"),
    ("epsilon_inf", dict(optimizer="adam", epsilon=float("inf")), ValueError,
     r"epsilon must be finite"),
    ("epsilon_string", dict(optimizer="adam", epsilon="1e-8"), TypeError,
     r"epsilon must be a real number"),
    ("adam_with_momentum", dict(optimizer="adam", momentum=0.9), ValueError,
     r"momentum and nesterov are SGD settings; Adam takes betas"),
    ("adam_with_nesterov", dict(optimizer="adam", momentum=0.9, nesterov=True), ValueError,
     r"momentum and nesterov are SGD settings"),
    # betas and epsilon are checked whichever optimiser is chosen
    ("sgd_with_bad_betas", dict(betas=(0.9, 1.0)), ValueError, r"betas\[1\] must be < 1"),
]

SAMPLE_WEIGHT_CASES = [
    ("weights_2d", np.ones((N, 1)), ValueError,
     r"sample_weight must be 1-D \(one weight per sample\), got shape \(8, 1\)"),
    ("weights_short", np.ones(N - 3), ValueError, r"sample_weight has 5 weights but X has 8 samples"),
    ("weights_long", np.ones(N + 1), ValueError, r"sample_weight has 9 weights but X has 8"),
    ("weights_nan", with_value(np.ones(N), 3, np.nan), ValueError,
     r"sample_weight contains 1 NaN"),
    ("weights_inf", with_value(np.ones(N), 0, np.inf), ValueError, r"sample_weight contains infinite"),
    ("weights_negative", with_value(np.ones(N), 5, -0.5), ValueError,
     r"sample_weight holds negative values \(smallest -0\.5\); weights must be >= 0"),
    ("weights_negative_scalar", -1.0, ValueError, r"sample_weight holds negative values"),
    ("weights_strings", np.array(["1"] * N), TypeError, r"sample_weight must hold numbers"),
    ("weights_complex", np.ones(N) * 1j, TypeError, r"sample_weight is complex"),
    ("weights_sparse", scipy.sparse.csr_matrix(np.ones((1, N))), TypeError,
     r"sample_weight is a sparse matrix"),
    ("weights_ragged", [[1.0, 2.0], [1.0]], TypeError, r"sample_weight cannot be read"),
]
# All-zero weights leave nothing to fit or average over; step takes them (no step).
ZERO_WEIGHT_CASES = [("weights_all_zero", np.zeros(N), ValueError,
                      r"sample_weight is (0|zero) for every sample"),
                     ("weights_zero_scalar", 0, ValueError, r"sample_weight is (0|zero) for every")]

WEIGHT_METHODS = {
    "fit": lambda net, X, y, w: net.fit(X, y, epochs=2, batch_size=3, lr=0.01, optimizer="adam",
                                        sample_weight=w),
    "step": lambda net, X, y, w: net.step(X, y, lr=0.01, optimizer="adam", sample_weight=w),
    "loss": lambda net, X, y, w: net.loss(X, y, sample_weight=w),
    "gradients": lambda net, X, y, w: net.gradients(X, y, sample_weight=w),
}
WEIGHT_CALLS = ([pytest.param(case[1:], method, id=f"{case[0]}-{method}")
                 for case in SAMPLE_WEIGHT_CASES for method in WEIGHT_METHODS]
                + [pytest.param(case[1:], method, id=f"{case[0]}-{method}")
                   for case in ZERO_WEIGHT_CASES for method in WEIGHT_METHODS if method != "step"])


@pytest.mark.parametrize("optimizer", ["sgd", "adam"], ids=["after-sgd", "after-adam"])
@pytest.mark.parametrize("name,kwargs,error,match", OPTIMIZER_CASES,
                         ids=[c[0] for c in OPTIMIZER_CASES])
def test_bad_optimizer_arguments_raise_and_change_nothing(name, kwargs, error, match, optimizer):
    net = trained_net(optimizer=optimizer)
    before = snapshot(net)
    X, y = good_data()
    with pytest.raises(error, match=match):
        net.fit(X, y, epochs=2, batch_size=3, lr=0.01, **kwargs)
    assert_unchanged(net, before)
    with pytest.raises(error, match=match):
        net.step(X, y, lr=0.01, **kwargs)
    assert_unchanged(net, before)


@pytest.mark.parametrize("case,method", WEIGHT_CALLS)
def test_bad_sample_weight_raises_and_changes_nothing(case, method):
    weights, error, match = case
    net = trained_net(optimizer="adam")
    before = snapshot(net)
    X, y = good_data()
    with pytest.raises(error, match=match):
        WEIGHT_METHODS[method](net, X, y, weights)
    assert_unchanged(net, before)


def test_all_zero_weights_in_step_take_no_step():
    net = trained_net(optimizer="adam")
    before = snapshot(net)
    X, y = good_data()
    assert net.step(X, y, lr=0.01, optimizer="adam", sample_weight=np.zeros(N)) == 0.0
    assert_unchanged(net, before)


def test_sample_weight_failing_after_optimizer_switch_keeps_the_old_state():
    # fit checks everything before it touches the state: a bad sample_weight with a new
    # optimiser leaves the SGD momentum in place.
    net = trained_net()
    before = snapshot(net)
    with pytest.raises(ValueError, match="sample_weight"):
        net.fit(*good_data(), optimizer="adam", sample_weight=-np.ones(N))
    assert_unchanged(net, before)
    assert net._state_optimizer == "sgd" and net._velocity.any()


# ---------------------------------------------------------------- constructor
CONSTRUCTOR_CASES = [
    ("one_size", dict(layer_sizes=[4]), ValueError, r"at least two sizes"),
    ("no_sizes", dict(layer_sizes=[]), ValueError, r"at least two sizes"),
    ("zero_size", dict(layer_sizes=[4, 0, 2]), ValueError, r"every layer size must be >= 1, got 0"),
    ("negative_size", dict(layer_sizes=[4, 3, -2]), ValueError, r"every layer size must be >= 1"),
    ("zero_inputs", dict(layer_sizes=[0, 3]), ValueError, r"every layer size must be >= 1"),
    ("float_size", dict(layer_sizes=[4, 2.5, 2]), TypeError, r"every layer size must be an integer"),
    ("string_sizes", dict(layer_sizes="42"), TypeError, r"layer_sizes must be a sequence"),
    ("int_sizes", dict(layer_sizes=5), TypeError, r"layer_sizes must be a sequence"),
    ("unknown_activation", dict(activation="swish"), ValueError, r"unknown activation 'swish'"),
    ("activation_not_string", dict(activation=3), TypeError, r"activation must be a string"),
    ("activation_list_length", dict(activation=["relu", "tanh"]), ValueError,
     r"activation lists 2 names but the network has 1 hidden layers"),
    ("softmax_hidden", dict(activation="softmax"), ValueError, r"softmax is an output activation only"),
    ("unknown_output_activation", dict(output_activation="swish"), ValueError,
     r"unknown output_activation 'swish'"),
    ("unknown_loss", dict(loss="hinge"), ValueError, r"unknown loss 'hinge'"),
    ("loss_not_string", dict(loss=None), TypeError, r"loss must be a string"),
    ("cross_entropy_without_softmax", dict(loss="cross_entropy", output_activation="sigmoid"),
     ValueError, r"needs output_activation='softmax'"),
    ("cross_entropy_one_output", dict(layer_sizes=[4, 3, 1], loss="cross_entropy"), ValueError,
     r"needs at least 2 outputs"),
    ("bce_without_sigmoid", dict(loss="binary_cross_entropy", output_activation="identity"),
     ValueError, r"needs output_activation='sigmoid'"),
    ("poisson_without_exp", dict(loss="poisson", output_activation="softmax"), ValueError,
     r"loss='poisson' needs output_activation='exp'"),
    ("exp_hidden", dict(activation="exp"), ValueError, r"exp is an output activation only"),
    ("dtype_float16", dict(dtype="float16"), ValueError, r"dtype must be 'float32' or 'float64'"),
    ("dtype_int", dict(dtype=np.int32), ValueError, r"dtype must be 'float32' or 'float64'"),
    ("dtype_nonsense", dict(dtype="nonsense"), TypeError, r"dtype must be 'float32' or 'float64'"),
    ("unknown_init", dict(init="zeros"), ValueError, r"unknown init 'zeros'"),
    ("negative_seed", dict(seed=-1), ValueError, r"seed must be >= 0"),
    ("float_seed", dict(seed=1.5), TypeError, r"seed must be an integer"),
    ("zero_threads", dict(n_threads=0), ValueError, r"n_threads must be >= 1"),
    ("too_many_threads", dict(n_threads=numba.config.NUMBA_NUM_THREADS + 1), ValueError,
     r"exceeds the \d+ threads"),
]


@pytest.mark.parametrize("name,kwargs,error,match", CONSTRUCTOR_CASES,
                         ids=[c[0] for c in CONSTRUCTOR_CASES])
def test_bad_constructor_arguments_raise(name, kwargs, error, match):
    arguments = dict(layer_sizes=[4, 3, 2])
    arguments.update(kwargs)
    with pytest.raises(error, match=match):
        MLP(**arguments)


def test_logistic_is_an_alias_of_sigmoid():
    net = MLP([4, 3, 2], activation="logistic", output_activation="logistic", seed=0)
    assert net.activations == ("sigmoid",) and net.output_activation == "sigmoid"


# ------------------------------------------------------------------ divergence
def divergent_problem(dtype):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 4))
    y = X[:, :3] @ rng.normal(size=(3, 3))
    net = MLP([4, 8, 3], activation="identity", dtype=dtype, seed=0)
    return net, X, y


def test_huge_learning_rate_raises_divergence_error_and_restores_params(dtype):
    net, X, y = divergent_problem(dtype)
    net.fit(X, y, epochs=1, batch_size=8, lr=0.01, momentum=0.9)  # one good epoch
    good = snapshot(net)
    with pytest.raises(DivergenceError) as info:
        net.fit(X, y, epochs=3, batch_size=8, lr=1e10, momentum=0.9)
    error = info.value
    assert isinstance(error, FloatingPointError)
    assert error.epoch == 1 and error.lr == 1e10
    message = str(error)
    assert "diverged in epoch 1" in message
    assert "lower learning rate" in message and "lr=1e+09" in message
    assert_unchanged(net, good)
    assert np.isfinite(net.params).all()
    # The model is still usable: a sane learning rate trains from the restored state.
    history = net.fit(X, y, epochs=1, batch_size=8, lr=0.01)
    assert np.isfinite(history["loss"]).all()


def test_divergence_in_a_later_epoch_restores_the_params_from_before_that_epoch():
    net, X, y = divergent_problem("float64")
    schedule = lambda epoch: 0.01 if epoch < 2 else 1e10  # noqa: E731
    with pytest.raises(DivergenceError, match=r"diverged in epoch 3.*lower learning rate"):
        net.fit(X, y, epochs=5, batch_size=8, lr_schedule=schedule, momentum=0.9, shuffle=True)
    # The same two good epochs, without the bad third one:
    expected, _, _ = divergent_problem("float64")
    expected.fit(X, y, epochs=2, batch_size=8, lr=0.01, momentum=0.9, shuffle=True)
    assert_unchanged(net, snapshot(expected))


def test_divergence_error_is_exported():
    assert fastmlp.DivergenceError is DivergenceError
    assert issubclass(DivergenceError, FloatingPointError)


# --------------------------------------------- read-only / non-contiguous input
def test_read_only_inputs_are_accepted_and_never_written(readonly):
    X, y = good_data()
    X_ro, y_ro = readonly(X), readonly(y)
    results = []
    for X_in, y_in in ((X_ro, y_ro), (X.copy(), y.copy())):
        net = MLP([D, 5, K], activation="tanh", dtype="float64", seed=0)
        history = net.fit(X_in, y_in, epochs=2, batch_size=3, lr=0.05, momentum=0.9, shuffle=True)
        history2 = net.fit(X_in, y_in, epochs=1, batch_size=3, lr=0.05, shuffle=False)
        results.append((net.params.copy(), history["loss"] + history2["loss"], net.predict(X_in),
                        net.loss(X_in, y_in), net.gradients(X_in, y_in)[0][0],
                        net.step(X_in, y_in, lr=0.01)))
    assert np.array_equal(X_ro, X) and np.array_equal(y_ro, y)
    (p1, h1, pred1, l1, g1, s1), (p2, h2, pred2, l2, g2, s2) = results
    assert np.array_equal(p1, p2) and h1 == h2 and np.array_equal(pred1, pred2)
    assert l1 == l2 and np.array_equal(g1, g2) and s1 == s2


@pytest.mark.parametrize("layout", ["fortran", "strided", "negative_strides"])
def test_non_contiguous_inputs_are_accepted_and_not_modified(layout):
    X, y = good_data()
    if layout == "fortran":
        X_in, y_in = np.asfortranarray(X), np.asfortranarray(y)
    elif layout == "strided":
        X_in, y_in = np.repeat(X, 3, axis=0)[::3], np.repeat(y, 2, axis=1)[:, ::2]
    else:
        X_in, y_in = X[::-1].copy()[::-1], y[::-1].copy()[::-1]
    assert not X_in.flags.c_contiguous
    X_before, y_before = X_in.copy(), y_in.copy()
    a = MLP([D, 5, K], activation="tanh", dtype="float64", seed=0)
    b = MLP([D, 5, K], activation="tanh", dtype="float64", seed=0)
    a.fit(X_in, y_in, epochs=2, batch_size=3, lr=0.05)
    b.fit(X, y, epochs=2, batch_size=3, lr=0.05)
    assert np.array_equal(a.params, b.params)
    assert np.array_equal(a.predict(X_in), b.predict(X))
    assert a.loss(X_in, y_in) == b.loss(X, y)
    assert np.array_equal(X_in, X_before) and np.array_equal(y_in, y_before)


def test_non_contiguous_one_dimensional_targets():
    X, y = good_data()
    net_a = MLP([D, 5, 1], activation="tanh", dtype="float64", seed=0)
    net_b = MLP([D, 5, 1], activation="tanh", dtype="float64", seed=0)
    column = y[:, 1]  # strided view
    assert not column.flags.c_contiguous
    net_a.fit(X, column, epochs=1, batch_size=3, lr=0.05)
    net_b.fit(X, column.copy(), epochs=1, batch_size=3, lr=0.05)
    assert np.array_equal(net_a.params, net_b.params)
    assert np.array_equal(y[:, 1], column)
