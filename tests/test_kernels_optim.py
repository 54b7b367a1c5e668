"""fastmlp.kernels.optim: sgd_update (PyTorch SGD over the flat parameter buffer, in place),
weight_grad_update / bias_grad_update (the gradient passes with the same step fused in),
sgd_update_forward_row (one sample's step fused into the next sample's forward pass), and
the Adam twins adam_rate, adam_update, weight_grad_adam and bias_grad_adam."""

import math

import numpy as np
import pytest

import reference as ref
from conftest import ACTIVATION_CODES
from fastmlp.kernels import optim
from fastmlp.kernels.matmul import (GRAD_CHUNK_ROWS, GRAD_PASS_BYTES, bias_grad, column_tiles_for,
                                    dense_forward, input_grad, weight_grad)
from fastmlp.kernels.optim import (adam_rate, adam_update, bias_grad_adam, bias_grad_update,
                                   sgd_update, sgd_update_forward_row, sgd_update_input_grad_row,
                                   weight_grad_adam, weight_grad_update)

# (n, n_decayed): 1 element, odd sizes, all / none decayed, and the weights/biases
# boundary inside, before and after the parallel chunk boundary (CHUNK = 4096).
SIZES = [(1, 1), (1, 0), (7, 5), (13, 0), (13, 13), (4096, 4000), (4097, 4096), (9001, 4100),
         (9001, 8200)]
SIZE_IDS = [f"n{n}-decayed{d}" for n, d in SIZES]
# (lr, momentum, weight_decay, nesterov)
SETTINGS = [(0.1, 0.0, 0.0, False), (0.05, 0.0, 0.01, False), (0.1, 0.9, 0.0, False),
            (0.1, 0.9, 0.0, True), (0.02, 0.5, 0.1, True), (0.3, 0.8, 0.05, False)]
SETTING_IDS = ["plain", "decay", "momentum", "nesterov", "nesterov-decay", "momentum-decay"]


def test_chunk_size_is_fixed():
    assert optim.CHUNK == 4096


def expected_step(params, grad, velocity, n_decayed, lr, momentum, weight_decay, nesterov, first):
    """The reference step on the decayed (weights) and undecayed (biases) parts."""
    p64, g64, v64 = (a.astype(np.float64) for a in (params, grad, velocity))
    new_p, new_v = np.empty_like(p64), v64.copy()
    for part, decay in ((slice(0, n_decayed), weight_decay), (slice(n_decayed, None), 0.0)):
        buf = None if first else v64[part]
        new_p[part], buf = ref.sgd_update(p64[part], g64[part], buf, lr, momentum, decay, nesterov)
        if momentum != 0:
            new_v[part] = buf
    return new_p, new_v


def call(kernel, params, grad, velocity, n_decayed, lr, momentum, weight_decay, nesterov, first,
         dtype):
    """One in-place step: params and velocity are updated."""
    s = np.dtype(dtype).type
    kernel(grad, n_decayed, s(lr), s(momentum), s(weight_decay), nesterov, first, params, velocity)


@pytest.mark.parametrize("setting", SETTINGS, ids=SETTING_IDS)
@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
def test_sgd_update_matches_reference_over_two_steps(size, setting, dtype, rng, assert_close):
    n, n_decayed = size
    lr, momentum, weight_decay, nesterov = setting
    params = rng.normal(size=n).astype(dtype)
    velocity = np.zeros(n, dtype)
    for step in range(2):  # the first step starts the momentum buffer, the second uses it
        grad = rng.normal(size=n).astype(dtype)
        first = step == 0
        exp_p, exp_v = expected_step(params, grad, velocity, n_decayed, lr, momentum,
                                     weight_decay, nesterov, first)
        call(sgd_update.serial, params, grad, velocity, n_decayed, lr, momentum, weight_decay,
             nesterov, first, dtype)
        assert_close(params, exp_p, dtype, scale=4)
        assert_close(velocity, exp_v, dtype, scale=4)


@pytest.mark.parametrize("setting", SETTINGS, ids=SETTING_IDS)
@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
def test_sgd_update_parallel_equals_serial_bitwise(size, setting, dtype, rng):
    n, n_decayed = size
    lr, momentum, weight_decay, nesterov = setting
    params = rng.normal(size=n).astype(dtype)
    velocity_s, velocity_p = np.zeros(n, dtype), np.zeros(n, dtype)
    params_s, params_p = params.copy(), params.copy()
    for step in range(2):
        grad = rng.normal(size=n).astype(dtype)
        call(sgd_update.serial, params_s, grad, velocity_s, n_decayed, lr, momentum, weight_decay,
             nesterov, step == 0, dtype)
        call(sgd_update.parallel, params_p, grad, velocity_p, n_decayed, lr, momentum,
             weight_decay, nesterov, step == 0, dtype)
        assert params_p.dtype == dtype
        assert np.array_equal(params_p, params_s)
        assert np.array_equal(velocity_p, velocity_s)


def test_sgd_update_without_momentum_leaves_velocity_alone(dtype, rng):
    params, grad = rng.normal(size=50).astype(dtype), rng.normal(size=50).astype(dtype)
    velocity = rng.normal(size=50).astype(dtype)
    before = velocity.copy()
    call(sgd_update.serial, params, grad, velocity, 20, 0.1, 0.0, 0.01, False, True, dtype)
    assert np.array_equal(velocity, before)


def test_sgd_update_decays_weights_only(rng):
    # A zero gradient isolates the decay: weights shrink by lr*wd, biases stay put.
    before = rng.normal(size=10)
    params = before.copy()
    sgd_update.serial(np.zeros(10), 6, 0.5, 0.0, 0.1, False, False, params, np.zeros(10))
    np.testing.assert_allclose(params[:6], before[:6] * (1 - 0.5 * 0.1), rtol=1e-15)
    assert np.array_equal(params[6:], before[6:])


def test_sgd_update_accepts_a_read_only_gradient_and_leaves_it_unchanged(rng, readonly):
    n, n_decayed = 4500, 4200
    grad = readonly(rng.normal(size=n))
    before = grad.copy()
    params, velocity = rng.normal(size=n), rng.normal(size=n)
    exp_p, exp_v = expected_step(params, grad, velocity, n_decayed, 0.1, 0.9, 0.01, True, False)
    sgd_update.serial(grad, n_decayed, 0.1, 0.9, 0.01, True, False, params, velocity)
    np.testing.assert_allclose(params, exp_p, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(velocity, exp_v, rtol=1e-13, atol=1e-14)
    assert np.array_equal(grad, before)


# ------------------------------------------------- fused gradient + update passes
# (n, k, m): the batch, the layer's inputs and outputs; k not a multiple of 4, n = 1,
# and a product large enough to be worth the parallel variant; m of every tile kind (whole
# tiles, masked edges, one vector or less, rows past the tile rows wider than a row tile);
# a batch the weight gradient sums in several passes (matmul.GRAD_PASS_BYTES).
FUSED_SHAPES = [(1, 1, 1), (1, 7, 3), (1, 130, 100), (5, 13, 6), (32, 41, 17), (64, 130, 100),
                (9, 21, 140), (3, 11, 200), (1100, 21, 40)]
FUSED_IDS = ["x".join(map(str, s)) for s in FUSED_SHAPES]


@pytest.mark.parametrize("setting", SETTINGS, ids=SETTING_IDS)
@pytest.mark.parametrize("shape", FUSED_SHAPES, ids=FUSED_IDS)
def test_weight_grad_update_equals_weight_grad_then_sgd_update_bitwise(shape, setting, dtype, rng):
    n, k, m = shape
    s = np.dtype(dtype).type
    lr, momentum, weight_decay, nesterov = s(setting[0]), s(setting[1]), s(setting[2]), setting[3]
    A = rng.normal(size=(n, k)).astype(dtype)
    dZ = rng.normal(size=(n, m)).astype(dtype)
    W0 = rng.normal(size=(k, m)).astype(dtype)
    for first in (True, False):
        velocity0 = rng.normal(size=(k, m)).astype(dtype)
        # Unfused: the gradient, then the flat update of those k*m weights.
        grad = np.empty((k, m), dtype)
        weight_grad.serial(A, dZ, grad)
        W_flat, v_flat = W0.copy().reshape(-1), velocity0.copy().reshape(-1)
        sgd_update.serial(grad.reshape(-1), k * m, lr, momentum, weight_decay, nesterov, first,
                          W_flat, v_flat)
        for variant in (weight_grad_update.serial, weight_grad_update.parallel):
            W, velocity = W0.copy(), velocity0.copy()
            out = np.full((k, m), np.nan, dtype)
            variant(A, dZ, lr, momentum, weight_decay, nesterov, first, W, velocity, out)
            if (momentum == 0 and n <= GRAD_PASS_BYTES // np.dtype(dtype).itemsize
                    and not column_tiles_for(m, n)):
                # The tiles step W from their sums: the gradient never reaches the working space.
                assert np.isnan(out).all()
            else:
                assert np.array_equal(out, grad)
            assert np.array_equal(W.reshape(-1), W_flat)
            assert np.array_equal(velocity.reshape(-1), v_flat)
        # Serially, one block of rows is enough working space: every chunk reuses it.
        W, velocity = W0.copy(), velocity0.copy()
        scratch = np.empty((min(k, GRAD_CHUNK_ROWS), m), dtype)
        weight_grad_update.serial(A, dZ, lr, momentum, weight_decay, nesterov, first, W, velocity,
                                  scratch)
        assert np.array_equal(W.reshape(-1), W_flat)
        assert np.array_equal(velocity.reshape(-1), v_flat)


@pytest.mark.parametrize("setting", SETTINGS, ids=SETTING_IDS)
@pytest.mark.parametrize("shape", FUSED_SHAPES, ids=FUSED_IDS)
def test_bias_grad_update_equals_bias_grad_then_undecayed_sgd_update_bitwise(shape, setting, dtype, rng):
    n, _, m = shape
    s = np.dtype(dtype).type
    lr, momentum, weight_decay, nesterov = s(setting[0]), s(setting[1]), s(setting[2]), setting[3]
    dZ = rng.normal(size=(n, m)).astype(dtype)
    b0, velocity0 = rng.normal(size=m).astype(dtype), rng.normal(size=m).astype(dtype)
    for first in (True, False):
        grad = np.empty(m, dtype)
        bias_grad(dZ, grad)
        b_flat, v_flat = b0.copy(), velocity0.copy()
        # n_decayed = 0: biases never decay, whatever weight_decay is.
        sgd_update.serial(grad, 0, lr, momentum, weight_decay, nesterov, first, b_flat, v_flat)
        b, velocity, out = b0.copy(), velocity0.copy(), np.empty(m, dtype)
        bias_grad_update(dZ, lr, momentum, nesterov, first, b, velocity, out)
        assert np.array_equal(out, grad)
        assert np.array_equal(b, b_flat)
        assert np.array_equal(velocity, v_flat)


# (k, m): widths below, at and between whole vectors and row tiles (16 float32 lanes a vector,
# 8 vectors a row tile with AVX-512), rows narrower than a vector, and k = 1.
ROW_UPDATE_SHAPES = [(1, 1), (7, 2), (400, 14), (9, 16), (100, 40), (400, 100), (33, 128),
                     (13, 130), (20, 256), (5, 300)]
ROW_UPDATE_IDS = ["x".join(map(str, s)) for s in ROW_UPDATE_SHAPES]


def unfused_row_step(A, dZ, W0, weight_decay):
    """(lr, weight decay, W0 after weight_grad_update's step without momentum from the one
    sample A[1, k], dZ[1, m]), all in W0's dtype: what the fused row kernels must match."""
    s = W0.dtype.type
    lr, decay = s(0.05), s(weight_decay)
    W = W0.copy()
    weight_grad_update.serial(A, dZ, lr, s(0), decay, False, False, W, np.zeros_like(W0),
                              np.empty_like(W0))
    return lr, decay, W


@pytest.mark.parametrize("weight_decay", [0.0, 0.01], ids=["plain", "decay"])
@pytest.mark.parametrize("activation", ["identity", "sigmoid", "relu"])
@pytest.mark.parametrize("shape", ROW_UPDATE_SHAPES, ids=ROW_UPDATE_IDS)
def test_sgd_update_forward_row_equals_weight_grad_update_then_dense_forward_bitwise(
        shape, activation, weight_decay, dtype, rng):
    k, m = shape
    A, X = rng.normal(size=(1, k)).astype(dtype), rng.normal(size=(1, k)).astype(dtype)
    dZ = rng.normal(size=(1, m)).astype(dtype)
    W0, b = rng.normal(size=(k, m)).astype(dtype), rng.normal(size=m).astype(dtype)
    code = ACTIVATION_CODES[activation]
    # Unfused: the step without momentum on W, then the forward pass on the stepped W.
    lr, decay, W_expected = unfused_row_step(A, dZ, W0, weight_decay)
    expected = np.empty((1, m), dtype)
    dense_forward.serial(X, W_expected, b, code, expected)
    W, out = W0.copy(), np.empty((1, m), dtype)
    sgd_update_forward_row(A, dZ, lr, decay, X, W, b, code, out)
    assert np.array_equal(W, W_expected)
    assert np.array_equal(out, expected)
    # And against the reference maths.
    W_ref, _ = ref.sgd_update(W0.astype(np.float64), A.T.astype(np.float64) @ dZ, None, 0.05,
                              weight_decay=weight_decay)
    out_ref = ref.activation(activation, X.astype(np.float64) @ W_ref + b)
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(W, W_ref, rtol=tolerance, atol=tolerance)
    np.testing.assert_allclose(out, out_ref, rtol=tolerance * 10, atol=tolerance * 10 * np.sqrt(k))


@pytest.mark.parametrize("weight_decay", [0.0, 0.01], ids=["plain", "decay"])
@pytest.mark.parametrize("activation", ["identity", "tanh", "relu"])
@pytest.mark.parametrize("shape", ROW_UPDATE_SHAPES, ids=ROW_UPDATE_IDS)
def test_sgd_update_input_grad_row_equals_weight_grad_update_then_input_grad_bitwise(
        shape, activation, weight_decay, dtype, rng):
    # The layer has k inputs and m outputs; WT is its (m, k) transpose.
    k, m = shape
    previous_inputs = rng.normal(size=(1, k)).astype(dtype)
    previous_delta, delta = (rng.normal(size=(1, m)).astype(dtype) for _ in range(2))
    inputs = rng.uniform(0.1, 0.9, size=(1, k)).astype(dtype)  # activation outputs
    W0 = rng.normal(size=(k, m)).astype(dtype)
    code = ACTIVATION_CODES[activation]
    # Unfused: the step on W, then the input gradient through the stepped W's transpose.
    lr, decay, W_expected = unfused_row_step(previous_inputs, previous_delta, W0, weight_decay)
    expected = np.empty((1, k), dtype)
    input_grad.serial(delta, np.ascontiguousarray(W_expected.T), inputs, code, expected)
    WT, out = np.ascontiguousarray(W0.T), np.empty((1, k), dtype)
    sgd_update_input_grad_row(previous_delta, previous_inputs, lr, decay, delta, WT, inputs, code,
                              out)
    assert np.array_equal(WT, W_expected.T)
    assert np.array_equal(out, expected)
    out_ref = ref.activation_backward(activation, inputs.astype(np.float64),
                                      delta.astype(np.float64) @ W_expected.T.astype(np.float64))
    tolerance = 1e-4 if dtype == np.float32 else 1e-11
    np.testing.assert_allclose(out, out_ref, rtol=tolerance, atol=tolerance * np.sqrt(m))


def test_weight_grad_update_matches_reference_step(rng):
    n, k, m = 9, 6, 5
    A, dZ = rng.normal(size=(n, k)), rng.normal(size=(n, m))
    W, velocity = rng.normal(size=(k, m)), np.zeros((k, m))
    expected, buf = ref.sgd_update(W, A.T @ dZ, None, 0.1, 0.9, 0.01, True)
    weight_grad_update.serial(A, dZ, 0.1, 0.9, 0.01, True, True, W, velocity, np.empty((k, m)))
    np.testing.assert_allclose(W, expected, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(velocity, buf, rtol=1e-13, atol=1e-14)


# ------------------------------------------------------------------------ Adam
# (lr, beta1, beta2, epsilon, weight_decay)
ADAM_SETTINGS = [(1e-3, 0.9, 0.999, 1e-8, 0.0), (0.01, 0.9, 0.999, 1e-8, 0.01),
                 (0.05, 0.5, 0.9, 1e-4, 0.0), (0.02, 0.0, 0.0, 0.1, 0.1)]
ADAM_IDS = ["default", "decay", "short-memory-big-eps", "no-memory"]


@pytest.mark.parametrize("step", [1, 2, 3, 10, 1000])
@pytest.mark.parametrize("setting", ADAM_SETTINGS, ids=ADAM_IDS)
def test_adam_rate_folds_both_bias_corrections_into_the_rate(setting, step):
    lr, beta1, beta2, _, _ = setting
    expected = lr * math.sqrt(1 - beta2 ** step) / (1 - beta1 ** step)
    # (beta ** step may be taken by repeated multiplication: a few roundings per step bit)
    assert adam_rate(lr, beta1, beta2, step) == pytest.approx(expected, rel=1e-13, abs=0)


def adam_call(kernel, grad, n_decayed, step, setting, params, m, v, dtype):
    """One in-place Adam step number `step`, its rate from adam_rate, every scalar of `dtype`."""
    lr, beta1, beta2, epsilon, weight_decay = setting
    s = np.dtype(dtype).type
    kernel(grad, n_decayed, s(adam_rate(lr, beta1, beta2, step)), s(beta1), s(beta2), s(epsilon),
           s(weight_decay), params, m, v)


def expected_adam(params, grad, m, v, n_decayed, step, setting):
    """The reference step on the decayed (weights) and undecayed (biases) parts."""
    lr, beta1, beta2, epsilon, weight_decay = setting
    p64, g64, m64, v64 = (a.astype(np.float64) for a in (params, grad, m, v))
    new = [np.empty_like(p64) for _ in range(3)]
    for part, decay in ((slice(0, n_decayed), weight_decay), (slice(n_decayed, None), 0.0)):
        result = ref.adam_update(p64[part], g64[part], m64[part], v64[part], step, lr, beta1,
                                 beta2, epsilon, decay)
        for array, value in zip(new, result):
            array[part] = value
    return new


@pytest.mark.parametrize("setting", ADAM_SETTINGS, ids=ADAM_IDS)
@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
def test_adam_update_matches_reference_over_three_steps(size, setting, dtype, rng, assert_close):
    n, n_decayed = size
    params = rng.normal(size=n).astype(dtype)
    m, v = np.zeros(n, dtype), np.zeros(n, dtype)
    for step in (1, 2, 3):
        grad = rng.normal(size=n).astype(dtype)
        exp_p, exp_m, exp_v = expected_adam(params, grad, m, v, n_decayed, step, setting)
        adam_call(adam_update.serial, grad, n_decayed, step, setting, params, m, v, dtype)
        assert_close(params, exp_p, dtype, scale=8)
        assert_close(m, exp_m, dtype, scale=4)
        assert_close(v, exp_v, dtype, scale=4)


@pytest.mark.parametrize("setting", ADAM_SETTINGS, ids=ADAM_IDS)
@pytest.mark.parametrize("size", SIZES, ids=SIZE_IDS)
def test_adam_update_parallel_equals_serial_bitwise(size, setting, dtype, rng):
    n, n_decayed = size
    params = rng.normal(size=n).astype(dtype)
    serial = [params.copy(), np.zeros(n, dtype), np.zeros(n, dtype)]
    parallel = [params.copy(), np.zeros(n, dtype), np.zeros(n, dtype)]
    for step in (1, 2):
        grad = rng.normal(size=n).astype(dtype)
        adam_call(adam_update.serial, grad, n_decayed, step, setting, *serial, dtype)
        adam_call(adam_update.parallel, grad, n_decayed, step, setting, *parallel, dtype)
        for a, b in zip(parallel, serial):
            assert a.dtype == dtype
            assert np.array_equal(a, b)


def test_adam_first_step_moves_every_parameter_by_about_lr(rng):
    # Bias-corrected, the first step is lr * g / (|g| + eps / sqrt(1 - beta2)): a signed lr.
    grad = rng.normal(size=100)
    params = np.zeros(100)
    m, v = np.zeros(100), np.zeros(100)
    adam_update.serial(grad, 0, adam_rate(0.01, 0.9, 0.999, 1), 0.9, 0.999, 1e-8, 0.0, params, m, v)
    np.testing.assert_allclose(params, -0.01 * grad / (np.abs(grad) + 1e-8 / math.sqrt(0.001)),
                               rtol=1e-13)
    np.testing.assert_allclose(np.abs(params)[np.abs(grad) > 0.1], 0.01, rtol=1e-5)


def test_adam_update_decays_weights_only_and_puts_epsilon_outside_the_root(rng):
    # A zero gradient isolates the decay: weights feel d = wd * p, biases nothing at all.
    before = rng.normal(size=10)
    params, m, v = before.copy(), np.zeros(10), np.zeros(10)
    rate = adam_rate(0.1, 0.9, 0.999, 1)
    adam_update.serial(np.zeros(10), 6, rate, 0.9, 0.999, 0.5, 0.1, params, m, v)
    assert np.array_equal(params[6:], before[6:]) and not m[6:].any() and not v[6:].any()
    d = 0.1 * before[:6]
    m1, v1 = 0.1 * d, 0.001 * d * d
    # scikit-learn's form: epsilon added to sqrt(v), not to the bias-corrected sqrt(v_hat).
    np.testing.assert_allclose(params[:6], before[:6] - rate * m1 / (np.sqrt(v1) + 0.5),
                               rtol=1e-14)
    torch_form = before[:6] - 0.1 * (m1 / 0.1) / (np.sqrt(v1 / 0.001) + 0.5)
    assert not np.allclose(params[:6], torch_form, rtol=1e-6)


def test_adam_update_accepts_a_read_only_gradient_and_leaves_it_unchanged(rng, readonly):
    n, n_decayed = 4500, 4200
    grad = readonly(rng.normal(size=n))
    before = grad.copy()
    params, m, v = rng.normal(size=n), rng.normal(size=n), rng.uniform(0, 1, n)
    setting = (0.01, 0.9, 0.999, 1e-8, 0.01)
    expected = expected_adam(params, grad, m, v, n_decayed, 4, setting)
    adam_call(adam_update.serial, grad, n_decayed, 4, setting, params, m, v, np.float64)
    for got, want in zip((params, m, v), expected):
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-14)
    assert np.array_equal(grad, before)


def test_reference_adam_matches_scikit_learn_adam_optimizer(rng):
    # Checks the reference itself against scikit-learn's (private) optimiser, when present.
    stochastic = pytest.importorskip("sklearn.neural_network._stochastic_optimizers")
    params = [rng.normal(size=(4, 3)), rng.normal(size=3)]
    optimizer = stochastic.AdamOptimizer([p.copy() for p in params], learning_rate_init=0.01,
                                         beta_1=0.8, beta_2=0.99, epsilon=1e-6)
    theirs = [p.copy() for p in params]
    optimizer.params = theirs
    ours = [(p.copy(), np.zeros_like(p), np.zeros_like(p)) for p in params]
    for step in (1, 2, 3):
        grads = [rng.normal(size=p.shape) for p in params]
        optimizer.update_params(theirs, grads)
        ours = [ref.adam_update(p, g, m, v, step, 0.01, 0.8, 0.99, 1e-6)
                for (p, m, v), g in zip(ours, grads)]
        for (p, _, _), q in zip(ours, theirs):
            np.testing.assert_allclose(p, q, rtol=1e-13, atol=1e-15)


# ------------------------------------------------- fused gradient + Adam passes
@pytest.mark.parametrize("setting", ADAM_SETTINGS, ids=ADAM_IDS)
@pytest.mark.parametrize("shape", FUSED_SHAPES, ids=FUSED_IDS)
def test_weight_grad_adam_equals_weight_grad_then_adam_update_bitwise(shape, setting, dtype, rng):
    n, k, m = shape
    s = np.dtype(dtype).type
    lr, beta1, beta2, epsilon, weight_decay = setting
    rate = s(adam_rate(lr, beta1, beta2, 3))
    A = rng.normal(size=(n, k)).astype(dtype)
    dZ = rng.normal(size=(n, m)).astype(dtype)
    W0 = rng.normal(size=(k, m)).astype(dtype)
    m0 = rng.normal(scale=0.1, size=(k, m)).astype(dtype)
    v0 = rng.uniform(0, 0.01, (k, m)).astype(dtype)
    grad = np.empty((k, m), dtype)
    weight_grad.serial(A, dZ, grad)
    W_flat, m_flat, v_flat = W0.copy().reshape(-1), m0.copy().reshape(-1), v0.copy().reshape(-1)
    adam_update.serial(grad.reshape(-1), k * m, rate, s(beta1), s(beta2), s(epsilon),
                       s(weight_decay), W_flat, m_flat, v_flat)
    scratch = np.empty((min(k, GRAD_CHUNK_ROWS), m), dtype)
    for variant, out in ((weight_grad_adam.serial, np.empty((k, m), dtype)),
                         (weight_grad_adam.parallel, np.empty((k, m), dtype)),
                         (weight_grad_adam.serial, scratch)):
        W, m1, v1 = W0.copy(), m0.copy(), v0.copy()
        variant(A, dZ, rate, s(beta1), s(beta2), s(epsilon), s(weight_decay), W, m1, v1, out)
        if out is not scratch:
            assert np.array_equal(out, grad)
        assert np.array_equal(W.reshape(-1), W_flat)
        assert np.array_equal(m1.reshape(-1), m_flat)
        assert np.array_equal(v1.reshape(-1), v_flat)


@pytest.mark.parametrize("setting", ADAM_SETTINGS, ids=ADAM_IDS)
@pytest.mark.parametrize("shape", FUSED_SHAPES, ids=FUSED_IDS)
def test_bias_grad_adam_equals_bias_grad_then_undecayed_adam_update_bitwise(shape, setting, dtype,
                                                                            rng):
    n, _, m = shape
    s = np.dtype(dtype).type
    lr, beta1, beta2, epsilon, weight_decay = setting
    rate = s(adam_rate(lr, beta1, beta2, 2))
    dZ = rng.normal(size=(n, m)).astype(dtype)
    b0 = rng.normal(size=m).astype(dtype)
    m0, v0 = rng.normal(scale=0.1, size=m).astype(dtype), rng.uniform(0, 0.01, m).astype(dtype)
    grad = np.empty(m, dtype)
    bias_grad(dZ, grad)
    b_flat, m_flat, v_flat = b0.copy(), m0.copy(), v0.copy()
    # n_decayed = 0: biases never decay, whatever weight_decay is.
    adam_update.serial(grad, 0, rate, s(beta1), s(beta2), s(epsilon), s(weight_decay),
                       b_flat, m_flat, v_flat)
    b, m1, v1, out = b0.copy(), m0.copy(), v0.copy(), np.empty(m, dtype)
    bias_grad_adam(dZ, rate, s(beta1), s(beta2), s(epsilon), b, m1, v1, out)
    assert np.array_equal(out, grad)
    assert np.array_equal(b, b_flat)
    assert np.array_equal(m1, m_flat)
    assert np.array_equal(v1, v_flat)


def test_weight_grad_adam_matches_reference_step(rng):
    n, k, m = 9, 6, 5
    A, dZ = rng.normal(size=(n, k)), rng.normal(size=(n, m))
    W, m1, v1 = rng.normal(size=(k, m)), rng.normal(size=(k, m)), rng.uniform(0, 1, (k, m))
    expected = ref.adam_update(W, A.T @ dZ, m1, v1, 5, 0.01, 0.9, 0.99, 1e-7, 0.02)
    weight_grad_adam.serial(A, dZ, adam_rate(0.01, 0.9, 0.99, 5), 0.9, 0.99, 1e-7, 0.02, W, m1,
                            v1, np.empty((k, m)))
    for got, want in zip((W, m1, v1), expected):
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-14)
