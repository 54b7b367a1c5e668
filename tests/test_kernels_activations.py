"""fastmlp.kernels.activations: sigmoid, activate_rows, backprop_rows,
activation_forward and activation_backward."""

import numpy as np
import pytest

import reference as ref
from conftest import ACTIVATION_CODES
from fastmlp.kernels import activations
from fastmlp.kernels.activations import (activate_rows, activation_backward, activation_forward,
                                         backprop_rows)

SHAPES = [(1, 1), (1, 7), (2, 3), (7, 13), (37, 23), (64, 5)]
SHAPE_IDS = ["x".join(map(str, s)) for s in SHAPES]
ACTIVATIONS = list(ACTIVATION_CODES)


def test_activation_codes_and_slope():
    for name, code in ACTIVATION_CODES.items():
        assert getattr(activations, name.upper()) == code
    assert activations.LEAKY_RELU_SLOPE == ref.LEAKY_RELU_SLOPE == 0.01


# --------------------------------------------------------------------- sigmoid
SIGMOID_POINTS = [0.0, 0.5, -0.5, 3.0, -3.0, 20.0, -20.0, 100.0, -100.0, 1000.0, -1000.0,
                  1e30, -1e30]


def test_sigmoid_matches_reference_without_overflow(dtype):
    # Through the compiled kernels (activate_rows and activation_forward call sigmoid).
    z = np.array(SIGMOID_POINTS, dtype)
    expected = ref.sigmoid(z.astype(np.float64))
    row = np.empty_like(z)
    with np.errstate(all="raise"):
        activate_rows(z[None], 0, 1, ACTIVATION_CODES["sigmoid"], row[None])
    assert np.isfinite(row).all() and (row >= 0).all() and (row <= 1).all()
    rtol = 1e-6 if dtype == np.float32 else 1e-15
    # float32 results below the smallest normal number may be rounded or flushed.
    np.testing.assert_allclose(row, expected, rtol=rtol, atol=np.finfo(dtype).tiny)
    table = np.empty((1, z.size), dtype)
    activation_forward.serial(z[None], ACTIVATION_CODES["sigmoid"], table)
    assert np.array_equal(table[0], row)


def test_sigmoid_array_kernel_float32_is_not_a_rounded_float64_computation(rng):
    Z = rng.normal(scale=4, size=(40, 25)).astype(np.float32)
    out = np.empty_like(Z)
    activation_forward.serial(Z, ACTIVATION_CODES["sigmoid"], out)
    rounded = ref.sigmoid(Z.astype(np.float64)).astype(np.float32)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, rounded, rtol=1e-6)
    assert not np.array_equal(out, rounded)


# ----------------------------------------------------------- activation_forward
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_activation_forward_matches_reference(shape, activation, dtype, rng, assert_close):
    Z = (3 * rng.normal(size=shape)).astype(dtype)
    out = np.full(shape, np.nan, dtype)
    activation_forward.serial(Z, ACTIVATION_CODES[activation], out)
    assert_close(out, ref.activation(activation, Z.astype(np.float64)), dtype, scale=4)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_activation_forward_parallel_equals_serial_bitwise(shape, activation, dtype, rng):
    Z = (3 * rng.normal(size=shape)).astype(dtype)
    serial, parallel = np.empty(shape, dtype), np.empty(shape, dtype)
    activation_forward.serial(Z, ACTIVATION_CODES[activation], serial)
    activation_forward.parallel(Z, ACTIVATION_CODES[activation], parallel)
    assert parallel.dtype == dtype
    assert np.array_equal(parallel, serial)


def test_activation_forward_softmax_is_stable_for_huge_logits(dtype):
    Z = np.array([[1e4, -1e4, 0.0], [3e4, 3e4, -3e4], [-1e4, -1e4 + 1, -1e4]], dtype)
    out = np.empty_like(Z)
    activation_forward.serial(Z, ACTIVATION_CODES["softmax"], out)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(out, ref.softmax(Z.astype(np.float64)), rtol=1e-6, atol=1e-30)


def test_activation_forward_relu_family_at_zero(dtype):
    Z = np.array([[0.0, -0.0, 1e-30, -1e-30]], dtype)
    relu, leaky = np.empty_like(Z), np.empty_like(Z)
    activation_forward.serial(Z, ACTIVATION_CODES["relu"], relu)
    activation_forward.serial(Z, ACTIVATION_CODES["leaky_relu"], leaky)
    assert np.array_equal(relu, [[0, 0, dtype.type(1e-30), 0]])
    assert np.array_equal(leaky, [[0, 0, dtype.type(1e-30), dtype.type(0.01) * dtype.type(-1e-30)]])


# ---------------------------------------------------------- activation_backward
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_activation_backward_matches_reference(shape, activation, dtype, rng, assert_close):
    A = ref.activation(activation, 2 * rng.normal(size=shape)).astype(dtype)
    dA = rng.normal(size=shape).astype(dtype)
    out = np.full(shape, np.nan, dtype)
    activation_backward.serial(A, dA, ACTIVATION_CODES[activation], out)
    expected = ref.activation_backward(activation, A.astype(np.float64), dA.astype(np.float64))
    assert_close(out, expected, dtype, scale=4)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_activation_backward_parallel_equals_serial_bitwise(shape, activation, dtype, rng):
    A = ref.activation(activation, 2 * rng.normal(size=shape)).astype(dtype)
    dA = rng.normal(size=shape).astype(dtype)
    serial, parallel = np.empty(shape, dtype), np.empty(shape, dtype)
    activation_backward.serial(A, dA, ACTIVATION_CODES[activation], serial)
    activation_backward.parallel(A, dA, ACTIVATION_CODES[activation], parallel)
    assert np.array_equal(parallel, serial)


def test_activation_backward_is_chain_rule_of_forward():
    # Independent of the reference's derivative formulas: compare with central
    # differences of activation_forward (float64, away from the ReLU kink).
    rng = np.random.default_rng(3)
    Z = rng.normal(size=(5, 4))
    Z[np.abs(Z) < 0.05] = 0.5
    dA = rng.normal(size=Z.shape)
    h = 1e-6
    for name, code in ACTIVATION_CODES.items():
        A, up, down = np.empty_like(Z), np.empty_like(Z), np.empty_like(Z)
        activation_forward.serial(Z, code, A)
        out = np.empty_like(Z)
        activation_backward.serial(A, dA, code, out)
        numeric = np.zeros_like(Z)
        for idx in np.ndindex(*Z.shape):
            Zp, Zm = Z.copy(), Z.copy()
            Zp[idx] += h
            Zm[idx] -= h
            activation_forward.serial(Zp, code, up)
            activation_forward.serial(Zm, code, down)
            numeric[idx] = ((up - down) * dA).sum() / (2 * h)
        np.testing.assert_allclose(out, numeric, rtol=1e-6, atol=1e-8, err_msg=name)


# ---------------------------------------------- activate_rows / backprop_rows
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_activate_rows_matches_reference_on_its_rows_only_also_in_place(activation, dtype, rng,
                                                                         assert_close):
    Z = (3 * rng.normal(size=(5, 13))).astype(dtype)
    expected = ref.activation(activation, Z.astype(np.float64))
    out = np.full_like(Z, 7)
    activate_rows(Z, 1, 4, ACTIVATION_CODES[activation], out)
    assert_close(out[1:4], expected[1:4], dtype, scale=4)
    assert (out[[0, 4]] == 7).all()  # rows outside start..stop are not touched
    in_place = Z.copy()
    activate_rows(in_place, 1, 4, ACTIVATION_CODES[activation], in_place)  # `out` may be `Z`
    assert np.array_equal(in_place[1:4], out[1:4])
    assert np.array_equal(in_place[[0, 4]], Z[[0, 4]])


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_backprop_rows_matches_reference_on_its_rows_only_also_in_place(activation, dtype, rng,
                                                                         assert_close):
    A = ref.activation(activation, 2 * rng.normal(size=(5, 13))).astype(dtype)
    G = rng.normal(size=(5, 13)).astype(dtype)
    expected = ref.activation_backward(activation, A.astype(np.float64), G.astype(np.float64))
    out = np.full_like(A, 7)
    backprop_rows(A, G, 1, 4, ACTIVATION_CODES[activation], out)
    assert_close(out[1:4], expected[1:4], dtype, scale=4)
    assert (out[[0, 4]] == 7).all()
    in_place = G.copy()
    backprop_rows(A, in_place, 1, 4, ACTIVATION_CODES[activation], in_place)  # `out` may be `G`
    assert np.array_equal(in_place[1:4], out[1:4])


# --------------------------------------------------------- read-only inputs
def test_activation_kernels_accept_read_only_inputs_and_leave_them_unchanged(rng, readonly):
    Z = readonly(rng.normal(size=(7, 5)))
    Z_before = Z.copy()
    for name, code in ACTIVATION_CODES.items():
        A = np.empty_like(Z)
        activation_forward.serial(Z, code, A)
        np.testing.assert_allclose(A, ref.activation(name, Z), rtol=1e-12, atol=1e-15)
        A = readonly(A)
        dA = readonly(rng.normal(size=Z.shape))
        originals = (A.copy(), dA.copy())
        out = np.empty_like(Z)
        activation_backward.serial(A, dA, code, out)
        np.testing.assert_allclose(out, ref.activation_backward(name, A, dA), rtol=1e-12, atol=1e-15)
        assert np.array_equal(A, originals[0]) and np.array_equal(dA, originals[1])
    assert np.array_equal(Z, Z_before)


# ------------------------------------------------------------------------- exp
def test_exp_activation_matches_numpy_over_the_dtype_range(dtype, rng):
    # The output activation of the Poisson loss: exp over (almost) the whole finite range.
    top = 85.0 if dtype == np.float32 else 700.0
    Z = np.concatenate([[0.0, 1.0, -1.0, top, -top], rng.uniform(-top, top, 40)])
    Z = Z.astype(dtype)[None]
    for variant in (activation_forward.serial, activation_forward.parallel):
        out = np.empty_like(Z)
        variant(Z, ACTIVATION_CODES["exp"], out)
        assert np.isfinite(out).all() and (out > 0).all()
        np.testing.assert_allclose(out, np.exp(Z.astype(np.float64)),
                                   rtol=4 * np.finfo(dtype).eps, atol=0)
    assert out[0, 0] == 1


def test_exp_backward_is_the_gradient_times_the_output(dtype, rng):
    # exp' = exp, taken from the output A: dZ = dA * A, one rounding.
    A = np.exp(rng.normal(size=(6, 5))).astype(dtype)
    dA = rng.normal(size=(6, 5)).astype(dtype)
    out = np.empty_like(A)
    activation_backward.serial(A, dA, ACTIVATION_CODES["exp"], out)
    assert out.dtype == dtype
    assert np.array_equal(out, dA * A)
