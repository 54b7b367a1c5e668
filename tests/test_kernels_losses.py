"""fastmlp.kernels.losses: softplus, loss_value, loss_gradient."""

import numpy as np
import pytest

import reference as ref
from conftest import ACTIVATION_CODES, LOSS_CODES, targets_for
from fastmlp.kernels import losses
from fastmlp.kernels.losses import loss_gradient, loss_value, softplus

SHAPES = [(1, 1), (1, 3), (2, 5), (7, 13), (37, 11)]
SHAPE_IDS = ["x".join(map(str, s)) for s in SHAPES]
REGRESSION = ["mse", "mae", "rmse"]
OUTPUTS = list(ACTIVATION_CODES)

# (loss, output activation) pairs the model can build.
PAIRS = ([(loss, out) for loss in REGRESSION for out in OUTPUTS]
         + [("cross_entropy", "softmax"), ("binary_cross_entropy", "sigmoid")])
PAIR_IDS = [f"{loss}-{out}" for loss, out in PAIRS]


def test_loss_codes():
    for name, code in LOSS_CODES.items():
        assert getattr(losses, name.upper()) == code


# every (loss, output) pair with every shape; cross-entropy needs two classes or more
CASES = [pytest.param(loss, out, shape, id=f"{sid}-{pid}")
         for (loss, out), pid in zip(PAIRS, PAIR_IDS) for shape, sid in zip(SHAPES, SHAPE_IDS)
         if not (loss == "cross_entropy" and shape[1] == 1)]


def batch(loss, output, shape, dtype, rng):
    """Z, P = output(Z) and targets Y for `loss`, all of `dtype`."""
    n, k = shape
    Z = (2 * rng.normal(size=shape)).astype(dtype)
    P = ref.activation(output, Z.astype(np.float64)).astype(dtype)
    Y = targets_for(loss, n, k, rng, dtype=dtype)
    return Z, P, Y


def f64(*arrays):
    return [a.astype(np.float64) for a in arrays]


# -------------------------------------------------------------------- softplus
@pytest.mark.parametrize("z", [0.0, 1e-8, -1e-8, 0.7, -0.7, 30.0, -30.0, 700.0, -700.0, 1e4, -1e4])
def test_softplus_matches_logaddexp_without_overflow(z):
    value = softplus(z)
    assert np.isfinite(value)
    np.testing.assert_allclose(value, np.logaddexp(0.0, z), rtol=1e-15, atol=1e-300)


# ------------------------------------------------------------------ loss_value
@pytest.mark.parametrize("loss,output,shape", CASES)
def test_loss_value_matches_reference(loss, output, shape, dtype, rng):
    Z, P, Y = batch(loss, output, shape, dtype, rng)
    value = loss_value(Z, P, Y, LOSS_CODES[loss])
    assert isinstance(value, float)  # returned as a Python float (float64)
    rtol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(value, ref.loss_value(loss, *f64(Z, P, Y)), rtol=rtol, atol=1e-14)


@pytest.mark.parametrize("loss,Z,Y", [
    ("mse", [[0.1, 0.7]], [[-0.3, 1e-3]]),
    ("mae", [[0.1, 0.7]], [[-0.3, 1e-3]]),
    # confident and right: the loss is softplus(-z) ~ 2e-9, lost if computed in float32
    ("binary_cross_entropy", [[20.0, -20.0]], [[1.0, 0.0]]),
], ids=["mse", "mae", "bce"])
def test_loss_value_of_float32_inputs_is_computed_in_float64(loss, Z, Y):
    # losses.py: loss values are "accumulated in float64 because they are reported";
    # squared_error_sum: "sum over n, k of (P - Y)^2, in float64". So the value for
    # float32 inputs must be the float64 loss of those same float32 numbers.
    Z, Y = np.array(Z, np.float32), np.array(Y, np.float32)
    P = Z if loss != "binary_cross_entropy" else ref.sigmoid(Z.astype(np.float64)).astype(np.float32)
    value = loss_value(Z, P, Y, LOSS_CODES[loss])
    if loss == "binary_cross_entropy":
        expected = np.mean(np.log1p(np.exp(-np.abs(Z.astype(np.float64)))))  # both are right
    else:
        expected = ref.loss_value(loss, *f64(Z, P, Y))
    # softplus(20) - 20 cancels even in float64 (error ~ ulp(20) / 2e-9 ~ 2e-6); in float32
    # the term vanishes entirely.
    assert value == pytest.approx(expected, rel=1e-5 if loss == "binary_cross_entropy" else 1e-12,
                                  abs=0)


def test_loss_value_rmse_is_root_of_mse(rng):
    Z = rng.normal(size=(9, 4))
    Y = rng.normal(size=(9, 4))
    mse = loss_value(Z, Z, Y, LOSS_CODES["mse"])
    rmse = loss_value(Z, Z, Y, LOSS_CODES["rmse"])
    assert rmse == pytest.approx(np.sqrt(mse), rel=1e-15)


def test_loss_value_cross_entropy_with_unnormalised_rows(rng):
    # -sum(y log p) for rows that do not sum to one (the definition, not a label rule).
    Z = rng.normal(size=(4, 3))
    Y = rng.uniform(0, 2, size=(4, 3))
    value = loss_value(Z, ref.softmax(Z), Y, LOSS_CODES["cross_entropy"])
    assert value == pytest.approx(np.mean(-(Y * np.log(ref.softmax(Z))).sum(axis=1)), rel=1e-12)


# --------------------------------------------------------------- loss_gradient
@pytest.mark.parametrize("loss,output,shape", CASES)
def test_loss_gradient_matches_reference(loss, output, shape, dtype, rng, assert_close):
    Z, P, Y = batch(loss, output, shape, dtype, rng)
    out = np.full(shape, np.nan, dtype)
    value = loss_gradient(Z, P, Y, LOSS_CODES[loss], ACTIVATION_CODES[output], out)
    assert value == loss_value(Z, P, Y, LOSS_CODES[loss])
    expected = ref.loss_gradient(loss, *f64(Z, P, Y), output)
    assert out.dtype == dtype
    # The gradient is divided by n*k (or n): compare relative to its largest element.
    norm = np.abs(expected).max()
    norm = norm if norm > 0 else 1.0
    assert_close(out / dtype.type(norm), expected / norm, dtype, scale=4)


def test_loss_gradient_rmse_is_zero_at_a_perfect_fit(dtype):
    Z = np.arange(6, dtype=dtype).reshape(2, 3)
    out = np.full((2, 3), np.nan, dtype)
    value = loss_gradient(Z, Z, Z.copy(), LOSS_CODES["rmse"], ACTIVATION_CODES["identity"], out)
    assert value == 0.0
    assert np.array_equal(out, np.zeros((2, 3)))


def test_loss_gradient_mae_is_zero_where_prediction_equals_target(dtype):
    P = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype)
    Y = np.array([[1.0, 0.0, 3.0], [5.0, 5.0, 0.0]], dtype)
    out = np.full(P.shape, np.nan, dtype)
    loss_gradient(P, P, Y, LOSS_CODES["mae"], ACTIVATION_CODES["identity"], out)
    s = dtype.type(1 / 6)
    assert np.array_equal(out, np.array([[0, s, 0], [-s, 0, s]], dtype))


@pytest.mark.parametrize("logit", [1e4, -1e4, 3e4])
def test_cross_entropy_is_finite_and_exact_for_huge_logits(logit, dtype):
    Z = np.array([[logit, 0.0, -logit], [logit, 0.0, -logit]], dtype)
    P = ref.softmax(Z.astype(np.float64)).astype(dtype)
    Y = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype)
    out = np.empty_like(Z)
    value = loss_gradient(Z, P, Y, LOSS_CODES["cross_entropy"], ACTIVATION_CODES["softmax"], out)
    # Row 1: lse(z) - z0; row 2: lse(z) - z2; lse(z) = max(z) exactly at this size.
    top = abs(logit)
    expected = ((top - logit) + (top + logit)) / 2
    assert value == expected
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, (P.astype(np.float64) - Y) / 2, atol=1e-7)


@pytest.mark.parametrize("logit", [1e4, -1e4, 3e4])
def test_binary_cross_entropy_is_finite_and_exact_for_huge_logits(logit, dtype):
    Z = np.array([[logit, -logit]], dtype)
    P = ref.sigmoid(Z.astype(np.float64)).astype(dtype)
    Y = np.array([[0.0, 1.0]], dtype)
    out = np.empty_like(Z)
    value = loss_gradient(Z, P, Y, LOSS_CODES["binary_cross_entropy"], ACTIVATION_CODES["sigmoid"], out)
    # softplus(z) - y z: the wrong-side element costs |logit|, the right-side one 0.
    expected = np.mean([np.logaddexp(0, logit), np.logaddexp(0, -logit) + logit])
    assert value == pytest.approx(expected, rel=1e-15)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, (P.astype(np.float64) - Y) / 2, atol=1e-7)


# --------------------------------------------------------- read-only inputs
@pytest.mark.parametrize("loss,output", [("mse", "softmax"), ("cross_entropy", "softmax"),
                                         ("binary_cross_entropy", "sigmoid")])
def test_loss_kernels_accept_read_only_inputs_and_leave_them_unchanged(loss, output, rng, readonly):
    Z, P, Y = batch(loss, output, (5, 3), np.dtype(np.float64), rng)
    Z, P, Y = readonly(Z), readonly(P), readonly(Y)
    originals = [a.copy() for a in (Z, P, Y)]
    out = np.empty(Z.shape)
    value = loss_gradient(Z, P, Y, LOSS_CODES[loss], ACTIVATION_CODES[output], out)
    assert value == pytest.approx(ref.loss_value(loss, Z, P, Y), rel=1e-12)
    np.testing.assert_allclose(out, ref.loss_gradient(loss, Z, P, Y, output), rtol=1e-12, atol=1e-14)
    for array, original in zip((Z, P, Y), originals):
        assert np.array_equal(array, original)
