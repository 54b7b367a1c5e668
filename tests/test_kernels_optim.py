"""fastmlp.kernels.optim: sgd_update (PyTorch SGD over the flat parameter buffer, in place),
and weight_grad_update / bias_grad_update (the gradient passes with the same step fused in)."""

import numpy as np
import pytest

import reference as ref
from fastmlp.kernels import optim
from fastmlp.kernels.matmul import bias_grad, weight_grad
from fastmlp.kernels.optim import bias_grad_update, sgd_update, weight_grad_update

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
# and a product large enough to be worth the parallel variant.
FUSED_SHAPES = [(1, 1, 1), (1, 7, 3), (5, 13, 6), (32, 41, 17), (64, 130, 100)]
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
            W, velocity, out = W0.copy(), velocity0.copy(), np.empty((k, m), dtype)
            variant(A, dZ, lr, momentum, weight_decay, nesterov, first, W, velocity, out)
            assert np.array_equal(out, grad)
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


def test_weight_grad_update_matches_reference_step(rng):
    n, k, m = 9, 6, 5
    A, dZ = rng.normal(size=(n, k)), rng.normal(size=(n, m))
    W, velocity = rng.normal(size=(k, m)), np.zeros((k, m))
    expected, buf = ref.sgd_update(W, A.T @ dZ, None, 0.1, 0.9, 0.01, True)
    weight_grad_update.serial(A, dZ, 0.1, 0.9, 0.01, True, True, W, velocity, np.empty((k, m)))
    np.testing.assert_allclose(W, expected, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(velocity, buf, rtol=1e-13, atol=1e-14)
