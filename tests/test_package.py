"""The package around the kernels: import hygiene, the JIT cache set-up, the demo data set
and the `fastmlp demo` command."""

import gc
import os
import subprocess
import sys

import numba
import numpy as np
import pytest

import fastmlp
from fastmlp import _jit
from fastmlp.datasets import make_shapes
from fastmlp.kernels import epoch
from fastmlp.kernels.matmul import dense_forward

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OPTIONAL = ("torch", "sklearn", "jax", "matplotlib")


def run_python(*args, env=None, timeout=600):
    environment = dict(os.environ, **(env or {}))
    # The package under test: installed, or else this checkout.
    environment["PYTHONPATH"] = os.pathsep.join(
        [os.path.dirname(os.path.dirname(fastmlp.__file__)), environment.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          env=environment, timeout=timeout)


def test_importing_and_training_imports_no_optional_dependency():
    code = ("import sys, numpy as np, fastmlp\n"
            "net = fastmlp.MLP([3, 4, 2], seed=0)\n"
            "net.fit(np.ones((8, 3)), np.zeros((8, 2)), epochs=1)\n"
            f"print([m for m in {OPTIONAL!r} if m in sys.modules])")
    done = run_python("-c", code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_cached_kernels_are_named_with_the_fingerprint_of_options_and_sources():
    assert _jit.FINGERPRINT in dense_forward.serial.py_func.__qualname__
    assert _jit.FINGERPRINT in dense_forward.parallel.py_func.__qualname__
    assert dense_forward.serial.py_func.__qualname__ != dense_forward.parallel.py_func.__qualname__


def test_fingerprint_changes_with_the_jit_options(monkeypatch):
    before = _jit._fingerprint()
    assert _jit._fingerprint() == before  # stable: no hash randomisation leaks in
    monkeypatch.setitem(_jit.OPTIONS, "fastmath", frozenset({"contract"}))
    assert _jit._fingerprint() != before


def test_fingerprint_is_the_same_in_a_new_process():
    done = run_python("-c", "from fastmlp import _jit; print(_jit.FINGERPRINT)",
                      env={"PYTHONHASHSEED": "12345"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == _jit.FINGERPRINT


def test_caching_can_be_switched_off():
    code = ("from fastmlp.kernels.matmul import dense_forward\n"
            "print(type(dense_forward.serial._cache).__name__)")
    off = run_python("-c", code, env={"FASTMLP_NO_CACHE": "1"})
    on = run_python("-c", code, env={"FASTMLP_NO_CACHE": "0"})
    assert off.returncode == 0 and on.returncode == 0, off.stderr + on.stderr
    assert off.stdout.strip() == "NullCache"
    assert on.stdout.strip() == "FunctionCache"


def test_make_shapes_is_seeded_balanced_and_of_the_stated_shape():
    X, y = make_shapes(2000, seed=3)
    assert X.shape == (2000, 400) and X.dtype == np.float32 and X.flags.c_contiguous
    assert y.shape == (2000,) and set(np.unique(y)) == {0, 1}
    assert 0.4 < y.mean() < 0.6
    X2, y2 = make_shapes(2000, seed=3)
    assert np.array_equal(X, X2) and np.array_equal(y, y2)
    X3, _ = make_shapes(2000, seed=4)
    assert not np.array_equal(X, X3)
    assert make_shapes(10, dtype=np.float64)[0].dtype == np.float64


def test_make_shapes_classes_differ_in_their_mean_image():
    X, y = make_shapes(4000, seed=0)
    difference = X[y == 0].mean(axis=0) - X[y == 1].mean(axis=0)
    # Rings and squares put their ink in different places (the square's corners): far
    # more than the sampling noise of a mean over ~2000 images (0.2 / sqrt(2000) < 0.005).
    assert np.abs(difference).max() > 0.04


def test_demo_trains_and_reports_parameters_losses_accuracy_and_time():
    done = run_python("-m", "fastmlp", "demo", "--samples", "3000", "--epochs", "3",
                      "--batch-size", "16", "--lr", "0.05")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "44222 parameters" in out
    assert [line.split()[1] for line in out.splitlines() if line.startswith("epoch ")] == \
        ["1/3", "2/3", "3/3"]
    accuracy = float(out.split("test accuracy: ")[1].split("%")[0])
    assert accuracy > 70
    assert "samples/s" in out


@pytest.mark.parametrize("option, value", [("--epochs", "0"), ("--batch-size", "-1"),
                                           ("--lr", "0"), ("--lr", "nan"), ("--dtype", "float16")])
def test_demo_rejects_bad_options_with_a_message(option, value):
    done = run_python("-m", "fastmlp", "demo", option, value)
    assert done.returncode == 2
    assert option in done.stderr and "Traceback" not in done.stderr


def test_training_tiny_data_first_thing_in_a_new_process_with_a_warm_cache():
    # Tiny data takes only serial kernels before the compiled epoch loop, which calls parallel
    # ones; loaded from the cache, it once ran before Numba's thread pool existed and crashed.
    code = ("import numpy as np, fastmlp\n"
            "X = np.random.default_rng(0).normal(size=(150, 4)).astype(np.float32)\n"
            "y = np.arange(150) % 3\n"
            "net = fastmlp.MLP([4, 16, 3], loss='cross_entropy', seed=0)\n"
            "print(net.fit(X, y, epochs=2, lr=0.1)['loss'][-1])")
    for _ in range(2):  # the first run may compile; the second loads from the cache
        done = run_python("-c", code)
        assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
        assert float(done.stdout.strip()) > 0


def test_openmp_spin_count_gets_a_default_and_keeps_a_users_value():
    code = "import os, fastmlp; print(os.environ['GOMP_SPINCOUNT'])"
    env = {k: v for k, v in os.environ.items() if k != "GOMP_SPINCOUNT"}
    default = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env=env, check=True)
    assert default.stdout.strip() == "30000"
    env["GOMP_SPINCOUNT"] = "123"
    users = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env=env, check=True)
    assert users.stdout.strip() == "123"


@numba.njit
def _views(flat, start, rows, cols, matrix, first, last):
    return _jit.matrix_view(flat, start, rows, cols), _jit.rows_flat(matrix, first, last)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_view_intrinsics_are_writable_views_like_the_slices_they_replace(dtype):
    flat = np.arange(40, dtype=dtype)
    matrix = np.arange(42, dtype=dtype).reshape(7, 6)
    view, rows = _views(flat, 5, 3, 4, matrix, 2, 5)
    assert view.shape == (3, 4) and view.flags.c_contiguous
    assert np.array_equal(view, flat[5:17].reshape(3, 4))
    assert rows.shape == (18,) and np.array_equal(rows, matrix[2:5].reshape(-1))
    view[1, 2] = -1
    rows[0] = -2
    assert flat[5 + 4 + 2] == -1 and matrix[2, 0] == -2
    expected_view, expected_rows = view.copy(), rows.copy()
    del flat, matrix
    gc.collect()
    # The views hold references to their buffers, which outlive the names.
    assert np.array_equal(view, expected_view) and np.array_equal(rows, expected_rows)


def test_kernels_are_compiled_without_reference_counting():
    # Kernels allocate nothing and return no arrays; reference counts would only cost atomics.
    assert _jit.OPTIONS["_nrt"] is False
    assert dense_forward.serial.targetoptions["_nrt"] is False
    assert dense_forward.parallel.targetoptions["_nrt"] is False


@numba.njit
def _chosen(x):
    return x + 1.0


@numba.njit
def _not_chosen(x):
    return x - 1.0


def _choose_by_global(x):
    if _CHOICE == 1:  # noqa: F821 -- bound by the variant
        return _chosen(x)
    return _not_chosen(x)


@pytest.mark.parametrize("compile_as", [_jit.kernel, _jit.helper])
def test_a_bound_variant_compiles_only_the_branch_its_constant_chooses(monkeypatch, compile_as):
    monkeypatch.setattr(_jit, "CACHE", False)  # compile here, whatever a cache holds
    if compile_as is _jit.helper:
        inner = _jit.helper(_choose_by_global, "one", _CHOICE=1)
        variant = _jit.kernel(lambda x: inner(x) * 2.0)
    else:
        variant = _jit.kernel(_choose_by_global, "one", _CHOICE=1)
    assert variant(1.0) == (4.0 if compile_as is _jit.helper else 2.0)
    assert _chosen.signatures and not _not_chosen.signatures
    assert "one" in (inner if compile_as is _jit.helper else variant).py_func.__qualname__


@pytest.mark.parametrize("name, code", [("sgd", epoch.SGD), ("adam", epoch.ADAM)])
def test_each_optimisers_epoch_is_a_chain_bound_to_that_optimiser(name, code):
    train_epoch = epoch.EPOCHS[code]
    train_batch = train_epoch.py_func.__globals__["train_batch"]
    update_layer = train_batch.py_func.__globals__["update_layer"]
    update_weights = update_layer.py_func.__globals__["update_weights"]
    for link in (train_batch, update_layer, update_weights):
        assert link.py_func.__globals__["OPTIMIZER"] == code
    for link in (train_epoch, train_batch, update_layer, update_weights):
        assert f"_{name}_" in link.py_func.__qualname__
    assert epoch.OPTIMIZER is None  # the templates themselves are never compiled
    samples_update = epoch.train_samples_sgd.py_func.__globals__["update_weights"]
    assert samples_update.py_func.__globals__["OPTIMIZER"] == epoch.SGD
