"""Shared fixtures: a seeded generator, dtype parametrisation, tolerances and data makers."""

import gzip

import numba
import numpy as np
import pytest

import reference as ref

# Activation names -> kernel codes, written out here (not read from fastmlp) so a
# renumbering in the library is caught.
ACTIVATION_CODES = {"identity": 0, "sigmoid": 1, "tanh": 2, "relu": 3, "leaky_relu": 4,
                    "softmax": 5, "exp": 6}
LOSS_CODES = {"mse": 0, "mae": 1, "rmse": 2, "cross_entropy": 3, "binary_cross_entropy": 4,
              "poisson": 5}

# Tolerances of a kernel result (computed in `dtype`) against the float64 reference.
TOLERANCES = {
    np.dtype(np.float32): dict(rtol=2e-5, atol=2e-6),
    np.dtype(np.float64): dict(rtol=1e-12, atol=1e-13),
}


@pytest.fixture
def rng():
    return np.random.default_rng(20240611)


@pytest.fixture(params=[np.float32, np.float64], ids=["float32", "float64"])
def dtype(request):
    return np.dtype(request.param)


@pytest.fixture
def assert_close():
    """assert_close(actual, expected, dtype, scale=1): compare with the tolerance of
    `dtype`, multiplied by `scale` (for longer sums), and check actual's dtype."""

    def check(actual, expected, dtype, scale=1.0):
        dtype = np.dtype(dtype)
        actual = np.asarray(actual)
        assert actual.dtype == dtype, f"result has dtype {actual.dtype}, expected {dtype}"
        tol = TOLERANCES[dtype]
        np.testing.assert_allclose(actual.astype(np.float64), np.asarray(expected, np.float64),
                                   rtol=tol["rtol"] * scale, atol=tol["atol"] * scale)

    return check


@pytest.fixture
def readonly():
    """readonly(a): a read-only copy of a (C-contiguous)."""

    def make(a):
        a = np.ascontiguousarray(a).copy()
        a.setflags(write=False)
        return a

    return make


def targets_for(loss, n, k, rng, labels=False, dtype=np.float64):
    """Targets suited to `loss`: real values for regression, integer labels (labels=True)
    or probability rows for cross-entropy, values in [0, 1] for binary cross-entropy,
    counts (zeros included) for Poisson."""
    if loss == "cross_entropy":
        if labels:
            return rng.integers(0, k, n)
        return ref.softmax(rng.normal(size=(n, k))).astype(dtype)
    if loss == "binary_cross_entropy":
        return rng.uniform(0, 1, (n, k)).astype(dtype)
    if loss == "poisson":
        return rng.poisson(1.5, (n, k)).astype(dtype)
    return rng.normal(size=(n, k)).astype(dtype)


@pytest.fixture
def make_data(rng):
    """make_data(loss, n, n_in, n_out, labels=False, dtype=float64) -> (X, y)."""

    def make(loss, n, n_in, n_out, labels=False, dtype=np.float64):
        X = rng.normal(size=(n, n_in)).astype(dtype)
        return X, targets_for(loss, n, n_out, rng, labels, dtype)

    return make


@pytest.fixture
def restore_threads():
    """Restores Numba's thread count after the test."""
    before = numba.get_num_threads()
    yield before
    numba.set_num_threads(before)


def snapshot(net):
    """Copies of everything a failed call must leave unchanged: the parameters, the
    optimiser state (SGD's velocity or Adam's moments, the step count, whose state it
    is) and the generator."""
    return {"params": net.params.copy(), "velocity": net._velocity.copy(),
            "second_moment": net._second_moment.copy(), "steps": net._steps.copy(),
            "state_optimizer": net._state_optimizer, "has_velocity": net._has_velocity,
            "rng": net._rng.bit_generator.state}


def assert_unchanged(net, snap):
    assert np.array_equal(net.params, snap["params"]), "params changed"
    assert np.array_equal(net._velocity, snap["velocity"]), "velocity changed"
    assert np.array_equal(net._second_moment, snap["second_moment"]), "second moment changed"
    assert np.array_equal(net._steps, snap["steps"]), "step count changed"
    assert net._state_optimizer == snap["state_optimizer"], "optimiser state changed hands"
    assert net._has_velocity == snap["has_velocity"]
    assert net._rng.bit_generator.state == snap["rng"]


def write_idx(path, array, magic, compress=False):
    """An IDX file of unsigned bytes: big-endian magic, dimensions, then the data (gzipped
    when compress). For the MNIST loader's tests."""
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    data = header + np.asarray(array, np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)
    return path
