"""fastmlp.kernels.vector: the register tiles (explicit LLVM vector code) behind the matrix
kernels, called through small compiled wrappers here."""

import numba
import numpy as np
import pytest

import reference as ref
from fastmlp.kernels import vector
from fastmlp.kernels.matmul import accumulate_block


@numba.njit
def full_tile(X, W, i, j, out):
    vector.accumulate_tile(X, W, i, j, 0, 0, X.shape[1], out)


@numba.njit
def edge_tile(X, W, i, j, width, out):
    vector.accumulate_edge_tile(X, W, i, j, width, 0, X.shape[1], out)


@numba.njit
def row_tile(X, W, i, j, out):
    vector.accumulate_row_tile(X, W, i, j, 0, 0, X.shape[1], out)


@numba.njit
def row_edge_tile(X, W, i, j, width, out):
    vector.accumulate_row_edge_tile(X, W, i, j, width, 0, X.shape[1], out)


@numba.njit
def row_half_tile(X, W, i, j, width, out):
    vector.accumulate_row_half_tile(X, W, i, j, width, 0, X.shape[1], out)


@numba.njit
def row_narrow_tile(X, W, i, j, width, out):
    vector.accumulate_row_narrow_tile(X, W, i, j, width, 0, X.shape[1], out)


@numba.njit
def packed_tiles(X, W, b, i, j, width, lr, weight_decay, kind, out):
    """The full tile at column j with its packed edge `width` wide beside it (kind: 0 from
    out, 1 from zero, 2 from the bias row, 3 the SGD step on out), or, with kind + 4, the
    same sums from the full tile and the narrow tile."""
    k = X.shape[1]
    edge = j + vector.TILE_VECTORS * (vector.VECTOR_BYTES // out.itemsize)
    if kind == 0:
        vector.accumulate_packed_tile(X, W, i, j, width, 0, k, out)
    elif kind == 1:
        vector.product_packed_tile(X, W, i, j, width, 0, k, out)
    elif kind == 2:
        vector.bias_packed_tile(X, W, i, j, width, 0, k, b, out)
    elif kind == 3:
        vector.step_packed_tile(X, W, i, j, width, 0, k, lr, weight_decay, out)
    elif kind == 4:
        vector.accumulate_tile(X, W, i, j, 0, 0, k, out)
        vector.accumulate_narrow_tile(X, W, i, edge, width, 0, k, out)
    elif kind == 5:
        vector.product_tile(X, W, i, j, 0, 0, k, out)
        vector.product_narrow_tile(X, W, i, edge, width, 0, k, out)
    elif kind == 6:
        vector.bias_tile(X, W, i, j, 0, 0, k, b, out)
        vector.bias_narrow_tile(X, W, i, edge, width, 0, k, b, out)
    else:
        vector.step_tile(X, W, i, j, 0, 0, k, lr, weight_decay, out)
        vector.step_narrow_tile(X, W, i, edge, width, 0, k, lr, weight_decay, out)


@numba.njit
def chunked_tile(X, W, i, j, start, stop, out):
    vector.accumulate_tile(X, W, i, j, 0, start, stop, out)


@numba.njit
def columns_tile(A, dZ, p, width, start, stop, out):
    vector.gradient_columns_tile(A.T, dZ, p, width, start, stop, out)


@numba.njit
def transpose_tile(W, p, j, out):
    vector.transpose_tile(W, p, j, out)


@numba.njit
def block(X, W, i, rows, out):
    accumulate_block(X, W, i, rows, 0, X.shape[1], out)


def lanes(dtype):
    return vector.VECTOR_BYTES // np.dtype(dtype).itemsize


def tolerance(dtype):
    return dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("k", [1, 5, 64])
def test_full_tile_adds_its_rows_and_columns_of_the_product_and_nothing_else(k, dtype, rng):
    width = vector.TILE_VECTORS * lanes(dtype)
    rows = vector.TILE_ROWS
    X = rng.normal(size=(rows + 3, k)).astype(dtype)
    W = rng.normal(size=(k, width + 9)).astype(dtype)
    out = rng.normal(size=(rows + 3, width + 9)).astype(dtype)
    before = out.copy()
    full_tile(X, W, 2, 5, out)
    expected = before.astype(np.float64)
    expected[2:2 + rows, 5:5 + width] += X[2:2 + rows].astype(np.float64) @ W[:, 5:5 + width]
    np.testing.assert_allclose(out, expected, **tolerance(dtype))
    outside = np.ones(out.shape, bool)
    outside[2:2 + rows, 5:5 + width] = False
    assert np.array_equal(out[outside], before[outside])


@pytest.mark.parametrize("width", [1, 3, 16, 17, 31, 63, 100])
def test_edge_tiles_touch_only_their_width(width, dtype, rng):
    k = 7
    for kernel, rows, most in ((edge_tile, vector.TILE_ROWS, vector.TILE_VECTORS),
                               (row_edge_tile, 1, vector.ROW_TILE_VECTORS),
                               (row_half_tile, 1, vector.ROW_TILE_VECTORS // 2),
                               (row_narrow_tile, 1, 1)):
        width_here = min(width, most * lanes(dtype))
        X = rng.normal(size=(rows, k)).astype(dtype)
        # W and out end exactly at the tile's last column: a load or store past it would
        # read or write outside the arrays.
        W = rng.normal(size=(k, 3 + width_here)).astype(dtype)
        out = rng.normal(size=(rows, 3 + width_here)).astype(dtype)
        before = out.copy()
        kernel(X, W, 0, 3, width_here, out)
        expected = before.astype(np.float64)
        expected[:, 3:] += X.astype(np.float64) @ W[:, 3:]
        np.testing.assert_allclose(out, expected, **tolerance(dtype))
        assert np.array_equal(out[:, :3], before[:, :3])


@pytest.mark.parametrize("transposed", [False, True], ids=["rows", "transposed"])
@pytest.mark.parametrize("kind", ["accumulate", "product", "bias", "step"])
@pytest.mark.parametrize("width", range(1, vector.PACK_GROUP + 1))
def test_packed_edge_gives_the_narrow_tiles_bits_and_touches_only_its_columns(width, kind,
                                                                             transposed, dtype,
                                                                             rng):
    # Each element of the packed edge sums fma(x, w, sum) over k in order from the same start
    # as the narrow tile, so the bits agree; W and out end at the edge's last column, so a
    # load or store past it would read or write outside them. X as the forward pass has it,
    # or as the weight gradient's transposed view.
    code = ["accumulate", "product", "bias", "step"].index(kind)
    rows, k, j = vector.TILE_ROWS, 13, 3
    columns = j + vector.TILE_VECTORS * lanes(dtype) + width
    X = rng.normal(size=(rows + 2, k)).astype(dtype)
    if transposed:
        X = np.ascontiguousarray(X.T).T
    W = rng.normal(size=(k, columns)).astype(dtype)
    b = rng.normal(size=columns).astype(dtype)
    before = rng.normal(size=(rows + 2, columns)).astype(dtype)
    lr, weight_decay = np.dtype(dtype).type(0.1), np.dtype(dtype).type(0.01)
    packed, unpacked = before.copy(), before.copy()
    packed_tiles(X, W, b, 1, j, width, lr, weight_decay, code, packed)
    packed_tiles(X, W, b, 1, j, width, lr, weight_decay, code + 4, unpacked)
    assert np.array_equal(packed, unpacked)
    inside = np.zeros(before.shape, bool)
    inside[1:1 + rows, j:] = True
    assert np.array_equal(packed[~inside], before[~inside])
    product = X[1:1 + rows].astype(np.float64) @ W[:, j:]
    expected = {"accumulate": before[1:1 + rows, j:] + product, "product": product,
                "bias": b[j:] + product,
                "step": before[1:1 + rows, j:] - 0.1 * (product + 0.01 * before[1:1 + rows, j:])}
    np.testing.assert_allclose(packed[1:1 + rows, j:], expected[kind], **tolerance(dtype))


def test_row_tile_matches_the_product(dtype, rng):
    width = vector.ROW_TILE_VECTORS * lanes(dtype)
    X = rng.normal(size=(3, 11)).astype(dtype)
    W = rng.normal(size=(11, width)).astype(dtype)
    out = np.zeros((3, width), dtype)
    row_tile(X, W, 1, 0, out)
    np.testing.assert_allclose(out[1], X[1].astype(np.float64) @ W, **tolerance(dtype))
    assert not out[[0, 2]].any()


@pytest.mark.parametrize("m", [1, 7, 32, 33, 100, 130])
def test_every_path_gives_every_element_the_same_bits(m, dtype, rng):
    # The tile, its masked edge and the row tiles all sum each element over k in order with
    # one FMA per term, so a row computes to the same bits whichever path computes it.
    rows, k = vector.TILE_ROWS, 37
    X = rng.normal(size=(rows, k)).astype(dtype)
    W = rng.normal(size=(k, m)).astype(dtype)
    start = rng.normal(size=(rows, m)).astype(dtype)
    as_tile = start.copy()
    block(X, W, 0, rows, as_tile)
    as_rows = start.copy()
    for r in range(rows):
        block(X, W, r, 1, as_rows)
    assert np.array_equal(as_tile, as_rows)
    np.testing.assert_allclose(as_tile, start + X.astype(np.float64) @ W, **tolerance(dtype))


def test_a_tile_over_a_depth_range_sums_only_that_range_and_chunks_chain_exactly(dtype, rng):
    width = vector.TILE_VECTORS * lanes(dtype)
    rows, k = vector.TILE_ROWS, 50
    X = rng.normal(size=(rows, k)).astype(dtype)
    W = rng.normal(size=(k, width)).astype(dtype)
    part = np.zeros((rows, width), dtype)
    chunked_tile(X, W, 0, 0, 10, 30, part)
    np.testing.assert_allclose(part, X[:, 10:30].astype(np.float64) @ W[10:30], **tolerance(dtype))
    whole, pieces = np.zeros((rows, width), dtype), np.zeros((rows, width), dtype)
    chunked_tile(X, W, 0, 0, 0, k, whole)
    for start, stop in ((0, 7), (7, 30), (30, 50)):
        chunked_tile(X, W, 0, 0, start, stop, pieces)
    assert np.array_equal(whole, pieces)


def test_tile_shapes_fit_the_register_file():
    registers = 32 if vector.VECTOR_BYTES == 64 else 16
    # accumulators + one broadcast per row + one loaded vector of W per tile vector
    used = vector.TILE_ROWS * vector.TILE_VECTORS + vector.TILE_ROWS + vector.TILE_VECTORS
    assert used <= registers or vector.VECTOR_BYTES == 16
    assert 2 * vector.ROW_TILE_VECTORS + 1 <= registers or vector.VECTOR_BYTES == 16


@pytest.mark.parametrize("p,j", [(0, 0), (3, 5)])
def test_transpose_tile_writes_its_block_transposed_and_nothing_else(p, j, dtype, rng):
    size = lanes(dtype)
    W = rng.normal(size=(size + 7, size + 9)).astype(dtype)
    out = np.full(W.shape[::-1], np.nan, dtype)
    transpose_tile(W, p, j, out)
    expected = np.full(out.shape, np.nan, dtype)
    expected[j:j + size, p:p + size] = W[p:p + size, j:j + size].T
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("m", range(1, vector.COLUMN_TILE_MAX + 1))
@pytest.mark.parametrize("width", [1, 5, vector.COLUMN_TILE_ROWS])
def test_gradient_columns_tile_writes_its_rows_of_the_gradient_in_sample_order_and_nothing_else(
        m, width, dtype, rng):
    n, k, p = 23, vector.COLUMN_TILE_ROWS + 9, 3
    # Powers of two make every product exact, so only the order of the sums sets the bits.
    A = (rng.choice([-1, 1], size=(n, k)) * 2.0 ** rng.integers(-3, 4, size=(n, k))).astype(dtype)
    dZ = (1e3 * rng.normal(size=(n, m))).astype(dtype)
    out = np.full((k, m), np.nan, dtype)
    columns_tile(A, dZ, p, width, 2, 20, out)
    expected = np.full((k, m), np.nan, dtype)
    expected[p:p + width] = ref.ordered_weight_grad(A[2:20], dZ[2:20])[p:p + width]
    np.testing.assert_array_equal(out, expected)
