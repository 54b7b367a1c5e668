"""fastmlp.kernels.data: gather_rows and finite_probe (behind _validation.all_finite)."""

import numpy as np
import pytest

from fastmlp._validation import all_finite
from fastmlp.kernels.data import FINITE_CHUNK, FINITE_LANES, finite_probe, gather_rows

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
