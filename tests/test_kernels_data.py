"""fastmlp.kernels.data: gather_rows, gather_csr_rows and finite_probe (behind
_validation.all_finite)."""

import numpy as np
import pytest
import scipy.sparse

from fastmlp._validation import all_finite
from fastmlp.kernels.data import (FINITE_CHUNK, FINITE_LANES, finite_probe, gather_csr_rows,
                                  gather_rows)

# (n_rows_of_X, n_features, n_gathered)
SHAPES = [(1, 1, 1), (1, 5, 1), (7, 13, 5), (37, 23, 11), (10, 3, 25), (300, 401, 64)]
SHAPE_IDS = ["x".join(map(str, s)) for s in SHAPES]


# ----------------------------------------------------------------- gather_rows
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_gather_rows_matches_fancy_indexing(shape, dtype, rng):
    n, k, r = shape
    X = rng.normal(size=(n, k)).astype(dtype)
    rows = rng.integers(0, n, r)  # arbitrary order, repeats allowed
    serial = np.full((r, k), np.nan, dtype)
    parallel = np.full((r, k), np.nan, dtype)
    gather_rows.serial(X, rows, serial)
    gather_rows.parallel(X, rows, parallel)
    assert serial.dtype == dtype
    assert np.array_equal(serial, X[rows])
    assert np.array_equal(parallel, X[rows])


def test_gather_rows_permutation_and_partial_output(rng, dtype):
    # The model gathers a batch of r rows into the first r rows of a buffer.
    X = rng.normal(size=(9, 4)).astype(dtype)
    order = rng.permutation(9)
    out = np.zeros((9, 4), dtype)
    gather_rows.serial(X, order[:3], out[:3])
    assert np.array_equal(out[:3], X[order[:3]])
    assert not out[3:].any()


def test_gather_rows_accepts_read_only_inputs_and_leaves_them_unchanged(rng, readonly):
    X = readonly(rng.normal(size=(11, 6)))
    rows = readonly(np.array([10, 0, 3, 3, 7]))
    X0, rows0 = X.copy(), rows.copy()
    out = np.empty((5, 6))
    gather_rows.serial(X, rows, out)
    assert np.array_equal(out, X0[rows0])
    assert np.array_equal(X, X0) and np.array_equal(rows, rows0)


# ------------------------------------------------------------- gather_csr_rows
def random_csr(n, k, density, dtype, rng, duplicates=False):
    """An (n, k) CSR matrix with about density * n * k stored entries, some rows empty;
    with duplicates, some (row, column) pairs stored twice (scipy's toarray sums them)."""
    rows, cols, vals = [], [], []
    for i in range(n):
        if i % 3 == 1:
            continue  # an empty row
        count = rng.binomial(k, density)
        columns = rng.choice(k, size=count, replace=False)
        if duplicates and count:
            columns = np.concatenate([columns, columns[:1 + count // 2]])
        rng.shuffle(columns)  # unsorted indices within the row
        rows += [i] * len(columns)
        cols += list(columns)
        vals += list(rng.normal(size=len(columns)))
    indptr = np.zeros(n + 1, np.int64)
    np.add.at(indptr, np.array(rows, np.int64) + 1, 1)
    indptr = np.cumsum(indptr)
    order = np.argsort(rows, kind="stable")
    return scipy.sparse.csr_matrix(
        (np.array(vals, dtype)[order], np.array(cols, np.int64)[order], indptr), shape=(n, k))


# (n_rows_of_X, n_features, n_gathered, density)
CSR_SHAPES = [(1, 1, 1, 1.0), (1, 5, 3, 0.5), (7, 13, 5, 0.3), (37, 23, 11, 0.1), (10, 3, 25, 0.7),
              (300, 401, 64, 0.05)]
CSR_IDS = ["x".join(map(str, s[:3])) for s in CSR_SHAPES]


@pytest.mark.parametrize("index_dtype", [np.int64, np.int32])
@pytest.mark.parametrize("duplicates", [False, True], ids=["unique", "duplicates"])
@pytest.mark.parametrize("shape", CSR_SHAPES, ids=CSR_IDS)
def test_gather_csr_rows_matches_scipy_toarray(shape, duplicates, index_dtype, dtype, rng):
    n, k, r, density = shape
    X = random_csr(n, k, density, dtype, rng, duplicates)
    rows = rng.integers(0, n, r)  # arbitrary order, repeats allowed
    rows[0] = 1 % n  # an empty row whenever there is one
    expected = X.toarray()[rows]
    data = X.data
    indices, indptr = X.indices.astype(index_dtype), X.indptr.astype(index_dtype)
    for variant in (gather_csr_rows.serial, gather_csr_rows.parallel):
        out = np.full((r, k), np.nan, dtype)  # every element is written, zeros included
        variant(data, indices, indptr, rows, out)
        assert out.dtype == dtype
        assert np.array_equal(out, expected)


def test_gather_csr_rows_sums_duplicate_entries_in_storage_order(dtype):
    # Row 0 stores column 1 three times and column 2 once; row 1 is empty.
    data = np.array([0.5, 0.25, 2.0, 1.0], dtype)
    indices = np.array([1, 2, 1, 1], np.int64)
    indptr = np.array([0, 4, 4], np.int64)
    out = np.full((3, 3), np.nan, dtype)
    gather_csr_rows.serial(data, indices, indptr, np.array([1, 0, 1]), out)
    assert np.array_equal(out, np.array([[0, 0, 0], [0, 3.5, 0.25], [0, 0, 0]], dtype))


def test_gather_csr_rows_into_the_first_rows_of_a_buffer(dtype, rng):
    # The epoch loop gathers a batch of r rows into the first r rows of its buffer.
    X = random_csr(9, 4, 0.5, dtype, rng)
    order = rng.permutation(9)
    out = np.full((9, 4), 7, dtype)
    gather_csr_rows.serial(X.data, X.indices.astype(np.int64), X.indptr.astype(np.int64),
                           order[:3], out[:3])
    assert np.array_equal(out[:3], X.toarray()[order[:3]])
    assert (out[3:] == 7).all()


def test_gather_csr_rows_accepts_read_only_inputs_and_leaves_them_unchanged(rng, readonly):
    X = random_csr(11, 6, 0.4, np.float64, rng, duplicates=True)
    data, indices = readonly(X.data), readonly(X.indices.astype(np.int64))
    indptr, rows = readonly(X.indptr.astype(np.int64)), readonly(np.array([10, 0, 3, 3, 7]))
    originals = [a.copy() for a in (data, indices, indptr, rows)]
    out = np.empty((5, 6))
    gather_csr_rows.serial(data, indices, indptr, rows, out)
    assert np.array_equal(out, X.toarray()[originals[3]])
    for array, original in zip((data, indices, indptr, rows), originals):
        assert np.array_equal(array, original)


# ----------------------------------------------------- finite_probe / all_finite
def probe(variant, x):
    chunks = -(-x.size // FINITE_CHUNK)
    out = np.full((chunks, FINITE_LANES), 7, x.dtype)
    variant(x, out)
    return out


# Sizes around the lane width and the chunk size, so every tail path runs.
PROBE_SIZES = [1, 2, 31, 32, 33, 4097, FINITE_CHUNK - 1, FINITE_CHUNK, FINITE_CHUNK + 1,
               3 * FINITE_CHUNK + 45]


@pytest.mark.parametrize("n", PROBE_SIZES)
def test_finite_probe_is_zero_for_finite_values(n, dtype, rng):
    x = rng.normal(size=n).astype(dtype)
    x[0] = np.finfo(dtype).max
    x[-1] = -np.finfo(dtype).tiny / 4  # a subnormal is finite
    for variant in (finite_probe.serial, finite_probe.parallel):
        assert not probe(variant, x).any()
    assert all_finite(x) is True


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("n", PROBE_SIZES)
def test_finite_probe_finds_one_bad_value_anywhere(n, bad, dtype):
    for where in sorted({0, n // 2, n - 1, max(0, n - FINITE_LANES - 1)}):
        x = np.ones(n, dtype)
        x[where] = bad
        for variant in (finite_probe.serial, finite_probe.parallel):
            out = probe(variant, x)
            assert np.isnan(out[where // FINITE_CHUNK]).any()
            assert out.dtype == dtype
        assert all_finite(x) is False


def test_all_finite_true_for_empty(dtype):
    assert all_finite(np.empty(0, dtype)) is True


def test_all_finite_checks_every_element_of_a_2d_array(dtype):
    X = np.ones((300, 301), dtype)
    assert all_finite(X) is True
    X[299, 300] = np.nan
    assert all_finite(X) is False


def test_all_finite_accepts_read_only_input(readonly):
    x = readonly(np.array([1.0, np.inf, 2.0]))
    assert all_finite(x) is False
    assert all_finite(readonly(np.array([1.0, 2.0]))) is True
    assert np.array_equal(x, [1.0, np.inf, 2.0])
