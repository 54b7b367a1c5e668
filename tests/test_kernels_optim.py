"""fastmlp.kernels.optim: sgd_update (PyTorch SGD over the flat parameter buffer)."""

import numpy as np
import pytest

import reference as ref
from fastmlp.kernels import optim
from fastmlp.kernels.optim import sgd_update

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
         out, dtype):
    s = np.dtype(dtype).type
    kernel(params, grad, velocity, n_decayed, s(lr), s(momentum), s(weight_decay), nesterov, first, out)


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
        out = np.full(n, np.nan, dtype)
        call(sgd_update.serial, params, grad, velocity, n_decayed, lr, momentum, weight_decay,
             nesterov, first, out, dtype)
        assert_close(out, exp_p, dtype, scale=4)
        assert_close(velocity, exp_v, dtype, scale=4)
        params = out


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
        # in place, as the model calls it: `out` is `params`
        call(sgd_update.serial, params_s, grad, velocity_s, n_decayed, lr, momentum, weight_decay,
             nesterov, step == 0, params_s, dtype)
        call(sgd_update.parallel, params_p, grad, velocity_p, n_decayed, lr, momentum,
             weight_decay, nesterov, step == 0, params_p, dtype)
        assert params_p.dtype == dtype
        assert np.array_equal(params_p, params_s)
        assert np.array_equal(velocity_p, velocity_s)


def test_sgd_update_in_place_equals_separate_output(dtype, rng):
    n = 4099
    params, grad = rng.normal(size=n).astype(dtype), rng.normal(size=n).astype(dtype)
    v1 = rng.normal(size=n).astype(dtype)
    v2 = v1.copy()
    out = np.empty(n, dtype)
    in_place = params.copy()
    call(sgd_update.serial, params, grad, v1, 3000, 0.1, 0.9, 0.01, True, False, out, dtype)
    call(sgd_update.serial, in_place, grad, v2, 3000, 0.1, 0.9, 0.01, True, False, in_place, dtype)
    assert np.array_equal(in_place, out)
    assert np.array_equal(v1, v2)


def test_sgd_update_without_momentum_leaves_velocity_alone(dtype, rng):
    params, grad = rng.normal(size=50).astype(dtype), rng.normal(size=50).astype(dtype)
    velocity = rng.normal(size=50).astype(dtype)
    before = velocity.copy()
    out = np.empty(50, dtype)
    call(sgd_update.serial, params, grad, velocity, 20, 0.1, 0.0, 0.01, False, True, out, dtype)
    assert np.array_equal(velocity, before)


def test_sgd_update_decays_weights_only(rng):
    # A zero gradient isolates the decay: weights shrink by lr*wd, biases stay put.
    params = rng.normal(size=10)
    out = np.empty(10)
    sgd_update.serial(params, np.zeros(10), np.zeros(10), 6, 0.5, 0.0, 0.1, False, False, out)
    np.testing.assert_allclose(out[:6], params[:6] * (1 - 0.5 * 0.1), rtol=1e-15)
    assert np.array_equal(out[6:], params[6:])


def test_sgd_update_accepts_read_only_inputs_and_leaves_them_unchanged(rng, readonly):
    n, n_decayed = 4500, 4200
    params, grad = readonly(rng.normal(size=n)), readonly(rng.normal(size=n))
    originals = (params.copy(), grad.copy())
    velocity = rng.normal(size=n)
    exp_p, exp_v = expected_step(params, grad, velocity, n_decayed, 0.1, 0.9, 0.01, True, False)
    out = np.empty(n)
    sgd_update.serial(params, grad, velocity, n_decayed, 0.1, 0.9, 0.01, True, False, out)
    np.testing.assert_allclose(out, exp_p, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(velocity, exp_v, rtol=1e-13, atol=1e-14)
    assert np.array_equal(params, originals[0]) and np.array_equal(grad, originals[1])
