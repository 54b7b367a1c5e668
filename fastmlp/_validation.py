"""Checks at the public boundary. Kernels never validate: everything they get passed here."""

import math
import numbers

import numpy as np

from .kernels.data import FINITE_CHUNK, FINITE_LANES, finite_probe


def check_int(value, name, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_real(value, name, minimum=None, exclusive=False, maximum=None, max_exclusive=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if minimum is not None and (value <= minimum if exclusive else value < minimum):
        raise ValueError(f"{name} must be {'>' if exclusive else '>='} {minimum}, got {value}")
    if maximum is not None and (value >= maximum if max_exclusive else value > maximum):
        raise ValueError(f"{name} must be {'<' if max_exclusive else '<='} {maximum}, got {value}")
    return value


def as_numeric_array(value, name):
    """`value` as a NumPy array of a real (bool, int or float) dtype, not yet converted."""
    if hasattr(value, "toarray") and hasattr(value, "nnz"):
        raise TypeError(f"{name} is a sparse matrix; pass a dense array (e.g. {name}.toarray())")
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as error:
        raise TypeError(f"{name} cannot be read as a numeric array: {error}") from None
    if array.dtype.kind == "c":
        raise TypeError(f"{name} is complex ({array.dtype}); fastmlp trains on real numbers")
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold numbers, got an array of dtype {array.dtype}")
    return array


def all_finite(array):
    """True when the C-contiguous float array holds no NaN or infinity."""
    flat = array.reshape(-1)
    chunks = -(-flat.size // FINITE_CHUNK)
    probe = np.empty((chunks, FINITE_LANES), dtype=flat.dtype)
    finite_probe.choose(chunks > 1)(flat, probe)
    return not bool(probe.any())


def check_finite(array, name):
    """Raise ValueError if the C-contiguous float array holds NaN or infinity."""
    if not all_finite(array):
        n_nan = int(np.isnan(array).sum())
        kind = f"{n_nan} NaN value(s)" if n_nan else "infinite value(s)"
        raise ValueError(f"{name} contains {kind}; remove or impute them before training")


def check_X(X, n_features, dtype, name="X", finite=True):
    """X as a finite C-contiguous (n, n_features) array of `dtype`; copied only if it is not one
    already. finite=False leaves out the test for NaN and infinity (the caller's to make)."""
    array = as_numeric_array(X, name)
    if array.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got {array.ndim}-D "
                         f"with shape {array.shape}")
    if array.shape[0] == 0:
        raise ValueError(f"{name} is empty: it has 0 samples")
    if array.shape[1] != n_features:
        raise ValueError(f"{name} has {array.shape[1]} features, but the network expects {n_features}")
    array = as_kernel_array(array, dtype)
    if finite:
        check_finite(array, name)
    return array


def as_kernel_array(array, dtype):
    """array as a writable C-contiguous array of `dtype`, copied only if it is not one.

    The kernels are compiled for writable arrays; a read-only one (a memory map, say)
    would compile every kernel a second time, so it is copied instead (and never written).
    """
    array = np.ascontiguousarray(array, dtype=dtype)
    if not array.flags.writeable:
        array = array.copy()
    return array


def check_targets(y, n_samples, n_outputs, loss, dtype, name="y"):
    """y as a finite C-contiguous (n_samples, n_outputs) array of `dtype`.

    Integer class labels for cross-entropy become one-hot rows (one conversion
    per call). A 1-D y is accepted as a column when the network has one output.
    """
    array = as_numeric_array(y, name)
    if array.ndim == 0 or array.ndim > 2:
        raise ValueError(f"{name} must be 1-D or 2-D, got shape {array.shape}")
    if array.shape[0] != n_samples:
        raise ValueError(f"{name} has {array.shape[0]} samples but X has {n_samples}; "
                         f"they must have the same length")
    if loss == "cross_entropy" and array.ndim == 1:
        return one_hot_labels(array, n_outputs, dtype, name)
    if array.ndim == 1:
        if n_outputs != 1:
            raise ValueError(f"{name} is 1-D but the network has {n_outputs} outputs; pass {name} "
                             f"of shape (n_samples, {n_outputs})")
        array = array.reshape(-1, 1)
    if array.shape[1] != n_outputs:
        raise ValueError(f"{name} has {array.shape[1]} columns but the network has {n_outputs} outputs")
    array = np.ascontiguousarray(array, dtype=dtype)
    check_finite(array, name)
    if loss == "cross_entropy" and array.min() < 0:
        raise ValueError(f"{name} holds negative values; cross_entropy targets are class "
                         f"probabilities (rows of non-negative values) or integer labels")
    if loss == "poisson" and array.min() < 0:
        raise ValueError(f"{name} holds negative values; poisson targets are counts or rates (>= 0)")
    if loss == "binary_cross_entropy" and (array.min() < 0 or array.max() > 1):
        raise ValueError(f"{name} holds values outside [0, 1]; binary_cross_entropy targets "
                         f"are probabilities")
    return array


def one_hot_labels(labels, n_classes, dtype, name="y"):
    """Integer class labels 0..n_classes-1 as one-hot rows of `dtype`."""
    if labels.dtype.kind == "f":
        if not np.isfinite(labels).all():
            raise ValueError(f"{name} contains NaN or infinite labels")
        if not np.array_equal(labels, np.round(labels)):
            raise ValueError(f"{name} holds non-integer values; cross_entropy takes integer class "
                             f"labels 0..{n_classes - 1} or (n_samples, {n_classes}) probability rows")
    labels = labels.astype(np.int64, copy=False)
    low, high = labels.min(), labels.max()
    if low < 0 or high >= n_classes:
        bad = low if low < 0 else high
        raise ValueError(f"{name} holds label {bad} out of range: the network has {n_classes} "
                         f"outputs, so labels must be 0..{n_classes - 1}")
    onehot = np.zeros((labels.shape[0], n_classes), dtype=dtype)
    onehot[np.arange(labels.shape[0]), labels] = 1
    return onehot


def check_sample_weight(sample_weight, n_samples, dtype, allow_zero_total=False,
                        allow_negative=False, name="sample_weight"):
    """None, or sample_weight as a finite, non-negative (unless allow_negative) C-contiguous
    (n_samples,) array of `dtype`; a scalar gives every sample that weight."""
    if sample_weight is None:
        return None
    array = as_numeric_array(sample_weight, name)
    if array.ndim == 0:
        array = np.full(n_samples, array, dtype=dtype)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one weight per sample), got shape {array.shape}")
    if array.shape[0] != n_samples:
        raise ValueError(f"{name} has {array.shape[0]} weights but X has {n_samples} samples")
    array = np.ascontiguousarray(array, dtype=dtype)
    check_finite(array, name)
    if not allow_negative and array.min() < 0:
        raise ValueError(f"{name} holds negative values (smallest {array.min()}); weights "
                         f"must be >= 0")
    if not allow_zero_total and not array.any():
        raise ValueError(f"{name} is zero for every sample: there is nothing to train on")
    return array
