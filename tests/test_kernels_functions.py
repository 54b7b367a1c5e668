"""fastmlp.kernels.functions: exp, expm1, sigmoid and tanh, whose float32 versions are
polynomial and vectorise. Their error bounds, stated in the module docstring, are checked
here over float32 inputs spanning the whole useful range."""

import numba
import numpy as np
import pytest

import reference as ref
from fastmlp.kernels import functions

ULP = 2.0 ** -24  # relative spacing of float32 just below a power of two


@numba.njit
def apply_exp(x, out):
    for i in range(x.shape[0]):
        out[i] = functions.exp(x[i])


@numba.njit
def apply_expm1(x, out):
    for i in range(x.shape[0]):
        out[i] = functions.expm1(x[i])


@numba.njit
def apply_sigmoid(x, out):
    for i in range(x.shape[0]):
        out[i] = functions.sigmoid(x[i])


@numba.njit
def apply_tanh(x, out):
    for i in range(x.shape[0]):
        out[i] = functions.tanh(x[i])


def float32_grid(low, high, n=400_001):
    return np.linspace(low, high, n).astype(np.float32)


def tiny_and_huge():
    magnitudes = np.logspace(-30, 2, 20_001)
    return np.concatenate([-magnitudes[::-1], [0.0], magnitudes]).astype(np.float32)


def apply(kernel, x):
    out = np.empty_like(x)
    kernel(x, out)
    assert out.dtype == x.dtype
    return out


def max_ulp_error(actual, exact, where):
    return (np.abs(actual.astype(np.float64) - exact)[where] / np.abs(exact[where])).max() / ULP


def test_float32_exp_is_within_1_5_ulp_and_never_subnormal():
    x = np.concatenate([float32_grid(-87.3, 88.3), tiny_and_huge()])
    x = x[x <= 88.3]
    exact = np.exp(x.astype(np.float64))
    out = apply(apply_exp, x)
    normal = exact >= np.finfo(np.float32).tiny
    assert max_ulp_error(out, exact, normal) <= 1.5
    assert ((out == 0) | (out >= np.finfo(np.float32).tiny)).all()
    assert (out[x < -87.3] == 0).all()


def test_float32_expm1_is_accurate_near_zero():
    x = np.concatenate([float32_grid(-20, 20), tiny_and_huge()])
    x = x[np.abs(x) <= 80]
    exact = np.expm1(x.astype(np.float64))
    out = apply(apply_expm1, x)
    nonzero = exact != 0
    assert max_ulp_error(out, exact, nonzero) <= 3
    assert (out[x == 0] == 0).all()


def test_float32_sigmoid_is_within_3_ulp_and_bounded():
    x = np.concatenate([float32_grid(-100, 100), tiny_and_huge()])
    exact = ref.sigmoid(x.astype(np.float64))
    out = apply(apply_sigmoid, x)
    normal = exact >= np.finfo(np.float32).tiny
    assert max_ulp_error(out, exact, normal) <= 3
    assert np.abs(out - exact).max() <= 1e-7
    assert ((out >= 0) & (out <= 1)).all()


def test_float32_tanh_is_within_3_ulp_including_tiny_inputs():
    x = np.concatenate([float32_grid(-20, 20), tiny_and_huge()])
    exact = np.tanh(x.astype(np.float64))
    out = apply(apply_tanh, x)
    nonzero = exact != 0
    assert max_ulp_error(out, exact, nonzero) <= 3
    assert np.abs(out - exact).max() <= 2e-7
    assert ((out >= -1) & (out <= 1)).all()
    np.testing.assert_array_equal(np.sign(out), np.sign(x))


@pytest.mark.parametrize("kernel, exact", [(apply_exp, np.exp), (apply_expm1, np.expm1),
                                           (apply_sigmoid, ref.sigmoid), (apply_tanh, np.tanh)],
                         ids=["exp", "expm1", "sigmoid", "tanh"])
def test_float64_functions_are_exact_libm(kernel, exact):
    x = np.concatenate([np.linspace(-30, 30, 10_001), np.logspace(-300, 2, 1000)])
    out = apply(kernel, x)
    np.testing.assert_allclose(out, exact(x), rtol=4e-16, atol=0)
