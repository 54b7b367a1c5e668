"""fastmlp.kernels.matmul: dense_forward, input_grad, weight_grad, bias_grad, transpose."""

import numpy as np
import pytest

import reference as ref
from conftest import ACTIVATION_CODES
from fastmlp.kernels.matmul import (GRAD_PASS_BYTES, bias_grad, dense_forward, input_grad,
                                    input_grad_row, transpose, weight_grad)

# (n, k, m): 1x1, batch below the thread count (n=1), sizes not multiples of 4,
# exact multiples of 4, and batches with 1..3 leftover rows; outputs one and two wide over
# blocks of 16 and 32 rows with rows and columns left over (the narrow forward tiles).
SHAPES = [(1, 1, 1), (1, 9, 3), (2, 3, 5), (4, 4, 4), (5, 8, 1), (7, 13, 5), (37, 23, 11),
          (64, 17, 6), (45, 37, 1), (70, 33, 2)]
SHAPE_IDS = ["x".join(map(str, s)) for s in SHAPES]
ACTIVATIONS = list(ACTIVATION_CODES)


def random(rng, shape, dtype, scale=1.0):
    return (scale * rng.normal(size=shape)).astype(dtype)


# --------------------------------------------------------------- dense_forward
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_dense_forward_matches_reference(shape, activation, dtype, rng, assert_close):
    n, k, m = shape
    X, W, b = random(rng, (n, k), dtype), random(rng, (k, m), dtype), random(rng, m, dtype)
    out = np.full((n, m), np.nan, dtype)
    dense_forward.serial(X, W, b, ACTIVATION_CODES[activation], out)
    expected = ref.activation(activation, X.astype(np.float64) @ W.astype(np.float64) + b)
    assert_close(out, expected, dtype, scale=np.sqrt(k))


@pytest.mark.parametrize("activation", ["identity", "tanh", "softmax"])
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_dense_forward_parallel_equals_serial_bitwise(shape, activation, dtype, rng):
    n, k, m = shape
    X, W, b = random(rng, (n, k), dtype), random(rng, (k, m), dtype), random(rng, m, dtype)
    serial, parallel = np.empty((n, m), dtype), np.empty((n, m), dtype)
    dense_forward.serial(X, W, b, ACTIVATION_CODES[activation], serial)
    dense_forward.parallel(X, W, b, ACTIVATION_CODES[activation], parallel)
    assert parallel.dtype == dtype
    assert np.array_equal(parallel, serial)


# m: outputs one and two wide (the narrow tiles), a narrow edge, and edges packed beside a full
# tile (vector.PACK_GROUP) of 1, 2 and 4 columns in float32 and float64.
# n: 27 leaves 11 rows after a block of 16, which float64's narrow tile runs as one group of
# 8 and three rows on the masked tile.
@pytest.mark.parametrize("n", [19, 27])
@pytest.mark.parametrize("m", [1, 2, 7, 33, 36, 66, 100, 130])
def test_dense_forward_row_does_not_depend_on_batch_position(m, n, dtype, rng):
    # The module promises the same summation order whatever the row blocking:
    # a row computed inside a full block equals the row computed on its own.
    k = 23
    X, W, b = random(rng, (n, k), dtype), random(rng, (k, m), dtype), random(rng, m, dtype)
    batch = np.empty((n, m), dtype)
    dense_forward.serial(X, W, b, ACTIVATION_CODES["identity"], batch)
    for i in range(n):
        alone = np.empty((1, m), dtype)
        dense_forward.serial(X[i:i + 1].copy(), W, b, ACTIVATION_CODES["identity"], alone)
        assert np.array_equal(alone[0], batch[i]), f"row {i}"


@pytest.mark.parametrize("m", [1, 2, 7])
def test_dense_forward_of_a_strided_input_equals_its_contiguous_copy_bitwise(m, dtype, rng):
    # Rows of X that are not contiguous: the narrow tiles read them element by element.
    n, k = 35, 21
    wide = random(rng, (n, 2 * k), dtype)
    X, W, b = wide[:, ::2], random(rng, (k, m), dtype), random(rng, m, dtype)
    strided, contiguous = np.empty((n, m), dtype), np.empty((n, m), dtype)
    dense_forward.serial(X, W, b, ACTIVATION_CODES["identity"], strided)
    dense_forward.serial(np.ascontiguousarray(X), W, b, ACTIVATION_CODES["identity"], contiguous)
    assert np.array_equal(strided, contiguous)


def test_dense_forward_float32_stays_float32(rng):
    # A float32 computation differs from the float64 one rounded to float32 for some
    # element; a silently promoted kernel would match it exactly everywhere.
    n, k, m = 37, 23, 11
    X, W, b = (random(rng, (n, k), np.float32), random(rng, (k, m), np.float32),
               random(rng, m, np.float32))
    out = np.empty((n, m), np.float32)
    dense_forward.serial(X, W, b, ACTIVATION_CODES["identity"], out)
    rounded = (X.astype(np.float64) @ W.astype(np.float64) + b).astype(np.float32)
    assert out.dtype == np.float32
    assert not np.array_equal(out, rounded)


# ------------------------------------------------------------------ input_grad
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_input_grad_matches_reference(shape, activation, dtype, rng, assert_close):
    n, k, m = shape
    dZ, W = random(rng, (n, m), dtype), random(rng, (k, m), dtype)
    A = ref.activation(activation, rng.normal(size=(n, k))).astype(dtype)  # the layer's input
    WT = np.ascontiguousarray(W.T)
    out = np.full((n, k), np.nan, dtype)
    input_grad.serial(dZ, WT, A, ACTIVATION_CODES[activation], out)
    A64 = A.astype(np.float64)
    expected = ref.activation_backward(activation, A64, dZ.astype(np.float64) @ W.T.astype(np.float64))
    assert_close(out, expected, dtype, scale=np.sqrt(m) * 4)


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "softmax"])
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_input_grad_parallel_equals_serial_bitwise(shape, activation, dtype, rng):
    n, k, m = shape
    dZ, WT = random(rng, (n, m), dtype), random(rng, (m, k), dtype)
    A = ref.activation(activation, rng.normal(size=(n, k))).astype(dtype)
    serial, parallel = np.empty((n, k), dtype), np.empty((n, k), dtype)
    input_grad.serial(dZ, WT, A, ACTIVATION_CODES[activation], serial)
    input_grad.parallel(dZ, WT, A, ACTIVATION_CODES[activation], parallel)
    assert np.array_equal(parallel, serial)


# input_grad_row(dZ, W, A, act, out): one sample's input gradient read from W itself.
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("shape", [(1, 1), (7, 3), (8, 1), (17, 40), (100, 40), (128, 10)],
                         ids=lambda s: "x".join(map(str, s)))
def test_input_grad_row_equals_input_grad_on_the_transpose_bitwise(shape, activation, dtype, rng):
    k, m = shape
    dZ, W = random(rng, (1, m), dtype), random(rng, (k, m), dtype)
    A = ref.activation(activation, rng.normal(size=(1, k))).astype(dtype)
    expected, out = np.empty((1, k), dtype), np.full((1, k), np.nan, dtype)
    input_grad.serial(dZ, np.ascontiguousarray(W.T), A, ACTIVATION_CODES[activation], expected)
    input_grad_row(dZ, W, A, ACTIVATION_CODES[activation], out)
    assert np.array_equal(out, expected)


@pytest.mark.parametrize("k", [7, 33, 36, 66, 100, 130])
def test_input_grad_row_does_not_depend_on_batch_position(k, dtype, rng):
    # Rows of full blocks, whose edge columns may run packed, against each row on its own.
    n, m = 19, 23
    dZ, W = random(rng, (n, m), dtype), random(rng, (k, m), dtype)
    A = ref.activation("sigmoid", rng.normal(size=(n, k))).astype(dtype)
    code = ACTIVATION_CODES["sigmoid"]
    batch = np.empty((n, k), dtype)
    input_grad.serial(dZ, np.ascontiguousarray(W.T), A, code, batch)
    for i in range(n):
        alone = np.full((1, k), np.nan, dtype)
        input_grad_row(dZ[i:i + 1].copy(), W, A[i:i + 1].copy(), code, alone)
        assert np.array_equal(alone[0], batch[i]), f"row {i}"


# ----------------------------------------------------------------- weight_grad
# weight_grad(A, dZ, out): out[k, m] = A[n, k].T @ dZ[n, m], A the layer input.
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_weight_grad_matches_reference(shape, dtype, rng, assert_close):
    n, k, m = shape
    A, dZ = random(rng, (n, k), dtype), random(rng, (n, m), dtype)
    out = np.full((k, m), np.nan, dtype)
    weight_grad.serial(A, dZ, out)
    assert_close(out, A.astype(np.float64).T @ dZ.astype(np.float64), dtype, scale=np.sqrt(n) * 2)


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_weight_grad_parallel_equals_serial_bitwise(shape, dtype, rng):
    n, k, m = shape
    A, dZ = random(rng, (n, k), dtype), random(rng, (n, m), dtype)
    serial, parallel = np.empty((k, m), dtype), np.empty((k, m), dtype)
    weight_grad.serial(A, dZ, serial)
    weight_grad.parallel(A, dZ, parallel)
    assert np.array_equal(parallel, serial)


def test_weight_grad_sums_over_the_batch_in_order():
    # "summed over n in order": a float32 sum whose value depends on the order.
    A = np.ones((3, 1), np.float32)
    dZ = np.array([[1e8], [1.0], [-1e8]], np.float32)
    out = np.empty((1, 1), np.float32)
    weight_grad.serial(A, dZ, out)
    assert out[0, 0] == (np.float32(1e8) + np.float32(1.0)) - np.float32(1e8)


# Batches of several passes (GRAD_PASS_BYTES // itemsize samples each), the last one short,
# for every tile kind of the output: whole tiles, masked edges, rows past the tile rows.
@pytest.mark.parametrize("k, m", [(3, 5), (16, 32), (21, 40), (9, 140), (21, 36), (17, 100),
                                  (9, 130)])
def test_weight_grad_over_several_passes_sums_each_element_in_sample_order_bitwise(k, m, dtype,
                                                                                    rng):
    n = 2 * GRAD_PASS_BYTES // np.dtype(dtype).itemsize + 37
    # Powers of two make every product exact, so only the order of the sums sets the bits.
    A = (rng.choice([-1, 1], size=(n, k)) * 2.0 ** rng.integers(-3, 4, size=(n, k))).astype(dtype)
    dZ = random(rng, (n, m), dtype, scale=1e3)
    expected = ref.ordered_weight_grad(A, dZ)
    for variant in (weight_grad.serial, weight_grad.parallel):
        out = np.full((k, m), np.nan, dtype)
        variant(A, dZ, out)
        assert np.array_equal(out, expected)


# ------------------------------------------------------------------- bias_grad
@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (5, 3), (37, 11), (64, 6)])
def test_bias_grad_matches_reference(shape, dtype, rng, assert_close):
    dZ = random(rng, shape, dtype)
    out = np.full(shape[1], np.nan, dtype)
    bias_grad(dZ, out)
    assert_close(out, dZ.astype(np.float64).sum(axis=0), dtype, scale=np.sqrt(shape[0]) * 2)


# Widths of one vector or less, between vectors, and of one, two and more register passes.
@pytest.mark.parametrize("m", [1, 5, 16, 37, 100, 256, 300, 600])
@pytest.mark.parametrize("n", [1, 3, 37])
def test_bias_grad_sums_in_row_order(n, m, dtype, rng):
    # "summed over n in order": equal bitwise to a left-to-right sum in dtype, from +0.
    dZ = random(rng, (n, m), dtype, scale=1e3)
    dZ[0, 0] = -0.0
    out = np.full(m + 3, np.nan, dtype)
    bias_grad(dZ, out[:m])
    expected = np.zeros(m, dtype)
    for row in dZ:
        expected = expected + row
    assert np.array_equal(out[:m], expected)
    assert np.isnan(out[m:]).all()


def test_bias_grad_of_no_rows_is_zero(dtype):
    out = np.full(20, np.nan, dtype)
    bias_grad(np.empty((0, 20), dtype), out)
    assert np.array_equal(out, np.zeros(20, dtype))


# ------------------------------------------------------------------- transpose
# Shapes with and without whole square blocks of 8 and 16 (the register blocks), and edges
# in either dimension.
@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (7, 1), (3, 8), (5, 16), (7, 13), (8, 8),
                                   (16, 16), (16, 40), (37, 23), (64, 100), (100, 10), (256, 128)])
def test_transpose_matches_numpy(shape, dtype, rng):
    W = random(rng, shape, dtype)
    serial = np.empty(shape[::-1], dtype)
    parallel = np.empty(shape[::-1], dtype)
    transpose.serial(W, serial)
    transpose.parallel(W, parallel)
    assert serial.dtype == dtype
    assert np.array_equal(serial, W.T)
    assert np.array_equal(parallel, W.T)


# --------------------------------------------------------- read-only inputs
def test_matmul_kernels_accept_read_only_inputs_and_leave_them_unchanged(rng, readonly):
    n, k, m = 7, 13, 5
    dtype = np.float64
    X, W, b = readonly(random(rng, (n, k), dtype)), readonly(random(rng, (k, m), dtype)), \
        readonly(random(rng, m, dtype))
    dZ = readonly(random(rng, (n, m), dtype))
    A = readonly(np.tanh(random(rng, (n, k), dtype)))
    originals = [a.copy() for a in (X, W, b, dZ, A)]

    out = np.empty((n, m), dtype)
    dense_forward.serial(X, W, b, ACTIVATION_CODES["tanh"], out)
    np.testing.assert_allclose(out, np.tanh(X @ W + b), rtol=1e-12, atol=1e-13)
    WT = np.empty((m, k), dtype)
    transpose.serial(W, WT)
    WT = readonly(WT)
    grad_in = np.empty((n, k), dtype)
    input_grad.serial(dZ, WT, A, ACTIVATION_CODES["tanh"], grad_in)
    np.testing.assert_allclose(grad_in, (dZ @ W.T) * (1 - A * A), rtol=1e-12, atol=1e-13)
    grad_w = np.empty((k, m), dtype)
    weight_grad.serial(A, dZ, grad_w)
    np.testing.assert_allclose(grad_w, A.T @ dZ, rtol=1e-12, atol=1e-13)
    grad_b = np.empty(m, dtype)
    bias_grad(dZ, grad_b)
    np.testing.assert_allclose(grad_b, dZ.sum(axis=0), rtol=1e-12, atol=1e-13)

    for array, original in zip((X, W, b, dZ, A), originals):
        assert np.array_equal(array, original)
