"""fastmlp.kernels.losses: softplus, loss_value, loss_gradient (per-sample weights, a total
weight, a gradient scale), softmax_cross_entropy, squared_norm and add_l2_gradient."""

import numpy as np
import pytest

import reference as ref
from conftest import ACTIVATION_CODES, LOSS_CODES, targets_for
from fastmlp.kernels import losses
from fastmlp.kernels.activations import activation_forward
from fastmlp.kernels.losses import (add_l2_gradient, loss_gradient, loss_value,
                                    softmax_cross_entropy, softplus, squared_norm)
from fastmlp.kernels.vector import SQUARES_BLOCK, VECTOR_BYTES

SHAPES = [(1, 1), (1, 3), (2, 5), (7, 13), (37, 11)]
SHAPE_IDS = ["x".join(map(str, s)) for s in SHAPES]
REGRESSION = ["mse", "mae", "rmse"]
OUTPUTS = list(ACTIVATION_CODES)

# (loss, output activation) pairs the model can build.
PAIRS = ([(loss, out) for loss in REGRESSION for out in OUTPUTS]
         + [("cross_entropy", "softmax"), ("binary_cross_entropy", "sigmoid"),
            ("poisson", "exp")])
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


def no_weights(dtype):
    """The kernels' "weight 1 each": an empty array of the model's dtype."""
    return np.empty(0, dtype)


def value_of(Z, P, Y, loss, weights=None, weight_total=None):
    """loss_value without weights (n as the total) or with them (their float64 sum)."""
    if weights is None:
        weights = no_weights(P.dtype)
        total = float(P.shape[0]) if weight_total is None else weight_total
    else:
        total = float(weights.sum(dtype=np.float64)) if weight_total is None else weight_total
    return loss_value(Z, P, Y, LOSS_CODES[loss], weights, total)


def gradient_of(Z, P, Y, loss, output, weights=None, weight_total=None, scale=1.0):
    """(value, out) of loss_gradient, totals as in value_of; out starts as NaN."""
    if weights is None:
        weights = no_weights(P.dtype)
        total = float(P.shape[0]) if weight_total is None else weight_total
    else:
        total = float(weights.sum(dtype=np.float64)) if weight_total is None else weight_total
    out = np.full(P.shape, np.nan, P.dtype)
    value = loss_gradient(Z, P, Y, LOSS_CODES[loss], ACTIVATION_CODES[output], weights, total,
                          scale, out)
    return value, out


# How the samples are weighted: "none" (the empty array), "random" (some exactly 0),
# "chunk" (random, divided by a total larger than their sum, as when a data set arrives
# in chunks).
WEIGHTINGS = ["none", "random", "chunk"]


def weighting(kind, n, dtype, rng):
    """(weights or None, weight_total or None) for `kind`."""
    if kind == "none":
        return None, None
    weights = rng.uniform(0, 3, n).astype(dtype)
    weights[rng.uniform(size=n) < 0.25] = 0
    weights[0] = dtype.type(1.5)  # never all zero
    total = float(weights.sum(dtype=np.float64))
    return weights, (None if kind == "random" else 2.5 * total)


# -------------------------------------------------------------------- softplus
@pytest.mark.parametrize("z", [0.0, 1e-8, -1e-8, 0.7, -0.7, 30.0, -30.0, 700.0, -700.0, 1e4, -1e4])
def test_softplus_matches_logaddexp_without_overflow(z):
    value = softplus(z)
    assert np.isfinite(value)
    np.testing.assert_allclose(value, np.logaddexp(0.0, z), rtol=1e-15, atol=1e-300)


# ------------------------------------------------------------------ loss_value
@pytest.mark.parametrize("kind", WEIGHTINGS)
@pytest.mark.parametrize("loss,output,shape", CASES)
def test_loss_value_matches_reference(loss, output, shape, kind, dtype, rng):
    Z, P, Y = batch(loss, output, shape, dtype, rng)
    weights, total = weighting(kind, shape[0], dtype, rng)
    value = value_of(Z, P, Y, loss, weights, total)
    assert isinstance(value, float)  # returned as a Python float (float64)
    rtol = 1e-6 if dtype == np.float32 else 1e-12
    expected = ref.loss_value(loss, *f64(Z, P, Y), weights, total)
    np.testing.assert_allclose(value, expected, rtol=rtol, atol=1e-14)


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
    value = value_of(Z, P, Y, loss)
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
    mse = value_of(Z, Z, Y, "mse")
    rmse = value_of(Z, Z, Y, "rmse")
    assert rmse == pytest.approx(np.sqrt(mse), rel=1e-15)
    weights = rng.uniform(0, 2, 9)
    mse = value_of(Z, Z, Y, "mse", weights)
    rmse = value_of(Z, Z, Y, "rmse", weights)
    assert rmse == pytest.approx(np.sqrt(mse), rel=1e-15)


def test_loss_value_cross_entropy_with_unnormalised_rows(rng):
    # -sum(y log p) for rows that do not sum to one (the definition, not a label rule).
    Z = rng.normal(size=(4, 3))
    Y = rng.uniform(0, 2, size=(4, 3))
    value = value_of(Z, ref.softmax(Z), Y, "cross_entropy")
    assert value == pytest.approx(np.mean(-(Y * np.log(ref.softmax(Z))).sum(axis=1)), rel=1e-12)


# --------------------------------------------------------------- loss_gradient
@pytest.mark.parametrize("kind", WEIGHTINGS)
@pytest.mark.parametrize("loss,output,shape", CASES)
def test_loss_gradient_matches_reference(loss, output, shape, kind, dtype, rng, assert_close):
    Z, P, Y = batch(loss, output, shape, dtype, rng)
    weights, total = weighting(kind, shape[0], dtype, rng)
    value, out = gradient_of(Z, P, Y, loss, output, weights, total)
    assert value == value_of(Z, P, Y, loss, weights, total)
    expected = ref.loss_gradient(loss, *f64(Z, P, Y), output, weights, total)
    assert out.dtype == dtype
    # The gradient is divided by n*k (or n): compare relative to its largest element.
    norm = np.abs(expected).max()
    norm = norm if norm > 0 else 1.0
    assert_close(out / dtype.type(norm), expected / norm, dtype, scale=4)


def test_loss_gradient_rmse_is_zero_at_a_perfect_fit(dtype):
    Z = np.arange(6, dtype=dtype).reshape(2, 3)
    value, out = gradient_of(Z, Z, Z.copy(), "rmse", "identity")
    assert value == 0.0
    assert np.array_equal(out, np.zeros((2, 3)))


def test_loss_gradient_mae_is_zero_where_prediction_equals_target(dtype):
    P = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype)
    Y = np.array([[1.0, 0.0, 3.0], [5.0, 5.0, 0.0]], dtype)
    _, out = gradient_of(P, P, Y, "mae", "identity")
    s = dtype.type(1 / 6)
    assert np.array_equal(out, np.array([[0, s, 0], [-s, 0, s]], dtype))


@pytest.mark.parametrize("logit", [1e4, -1e4, 3e4])
def test_cross_entropy_is_finite_and_exact_for_huge_logits(logit, dtype):
    Z = np.array([[logit, 0.0, -logit], [logit, 0.0, -logit]], dtype)
    P = ref.softmax(Z.astype(np.float64)).astype(dtype)
    Y = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype)
    value, out = gradient_of(Z, P, Y, "cross_entropy", "softmax")
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
    value, out = gradient_of(Z, P, Y, "binary_cross_entropy", "sigmoid")
    # softplus(z) - y z: the wrong-side element costs |logit|, the right-side one 0.
    expected = np.mean([np.logaddexp(0, logit), np.logaddexp(0, -logit) + logit])
    assert value == pytest.approx(expected, rel=1e-15)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, (P.astype(np.float64) - Y) / 2, atol=1e-7)


# -------------------------------------------------------- softmax_cross_entropy
@pytest.mark.parametrize("scale", [1.0, 0.3])
@pytest.mark.parametrize("kind", WEIGHTINGS + ["zero total"])
@pytest.mark.parametrize("shape", [(1, 2), (2, 5), (7, 13), (37, 11), (200, 10), (5, 40)],
                         ids=lambda s: f"{s[0]}x{s[1]}")
def test_softmax_cross_entropy_equals_softmax_then_loss_gradient_bitwise(shape, kind, scale, dtype,
                                                                         rng):
    n, k = shape
    Z = (4 * rng.normal(size=shape)).astype(dtype)
    Z[0, -1] = dtype.type(60)  # a logit whose exponential overflows unless shifted
    Y = targets_for("cross_entropy", n, k, rng, dtype=dtype)
    if kind == "zero total":
        weights, total = np.zeros(n, dtype), 0.0
    else:
        weights, total = weighting(kind, n, dtype, rng)
        if weights is None:
            weights = no_weights(dtype)
        if total is None:
            total = float(n) if kind == "none" else float(weights.sum(dtype=np.float64))
    code = LOSS_CODES["cross_entropy"]
    softmax = ACTIVATION_CODES["softmax"]
    P = np.empty_like(Z)
    activation_forward.serial(Z, softmax, P)
    expected_out = np.full(shape, np.nan, dtype)
    expected_value = loss_gradient(Z, P, Y, code, softmax, weights, total, scale, expected_out)
    fused_P = np.full(shape, np.nan, dtype)
    out = np.full(shape, np.nan, dtype)
    value = softmax_cross_entropy(Z, Y, weights, total, scale, fused_P, out)
    assert np.array_equal(fused_P, P)
    assert np.array_equal(out, expected_out)
    assert value == expected_value
    # and against the reference, independently of the kernels above
    reference_weights = None if weights.shape[0] == 0 else weights
    np.testing.assert_allclose(
        value, ref.loss_value("cross_entropy", *f64(Z, P, Y), reference_weights, total),
        rtol=1e-6 if dtype == np.float32 else 1e-12, atol=1e-14)
    np.testing.assert_allclose(fused_P, ref.softmax(Z.astype(np.float64)),
                               rtol=1e-5 if dtype == np.float32 else 1e-13, atol=1e-30)


# --------------------------------------------------------- read-only inputs
@pytest.mark.parametrize("loss,output", [("mse", "softmax"), ("cross_entropy", "softmax"),
                                         ("binary_cross_entropy", "sigmoid"), ("poisson", "exp")])
def test_loss_kernels_accept_read_only_inputs_and_leave_them_unchanged(loss, output, rng, readonly):
    Z, P, Y = batch(loss, output, (5, 3), np.dtype(np.float64), rng)
    Z, P, Y = readonly(Z), readonly(P), readonly(Y)
    weights = readonly(rng.uniform(0, 2, 5))
    originals = [a.copy() for a in (Z, P, Y, weights)]
    value, out = gradient_of(Z, P, Y, loss, output, weights)
    assert value == pytest.approx(ref.loss_value(loss, Z, P, Y, weights), rel=1e-12)
    np.testing.assert_allclose(out, ref.loss_gradient(loss, Z, P, Y, output, weights),
                               rtol=1e-12, atol=1e-14)
    for array, original in zip((Z, P, Y, weights), originals):
        assert np.array_equal(array, original)


# ------------------------------------------------------------- sample weights
@pytest.mark.parametrize("loss,output", PAIRS, ids=PAIR_IDS)
def test_unit_weights_equal_no_weights_bitwise(loss, output, dtype, rng):
    Z, P, Y = batch(loss, output, (7, 4), dtype, rng)
    ones = np.ones(7, dtype)
    assert value_of(Z, P, Y, loss, ones) == value_of(Z, P, Y, loss)
    value_w, out_w = gradient_of(Z, P, Y, loss, output, ones)
    value, out = gradient_of(Z, P, Y, loss, output)
    assert value_w == value
    assert np.array_equal(out_w, out)


@pytest.mark.parametrize("loss,output", PAIRS, ids=PAIR_IDS)
def test_integer_weights_equal_repeated_rows(loss, output, dtype, rng, assert_close):
    # Weight 3 is three copies of the row, weight 0 no copy: the loss is the same, and the
    # weighted row's gradient is the sum of its copies' gradients.
    Z, P, Y = batch(loss, output, (6, 3), dtype, rng)
    weights = np.array([1, 3, 0, 2, 1, 4], dtype)
    copies = np.repeat(np.arange(6), weights.astype(int))
    value = value_of(Z, P, Y, loss, weights)
    repeated = value_of(Z[copies], P[copies], Y[copies], loss)
    assert value == pytest.approx(repeated, rel=1e-6 if dtype == np.float32 else 1e-13)
    _, out = gradient_of(Z, P, Y, loss, output, weights)
    _, out_repeated = gradient_of(Z[copies], P[copies], Y[copies], loss, output)
    summed = np.zeros(Z.shape)
    np.add.at(summed, copies, out_repeated.astype(np.float64))
    norm = np.abs(summed).max()
    assert_close(out / dtype.type(norm), summed / norm, dtype, scale=4)


@pytest.mark.parametrize("loss,output", PAIRS, ids=PAIR_IDS)
def test_scaling_all_weights_leaves_the_loss_and_gradient_unchanged(loss, output, dtype, rng):
    Z, P, Y = batch(loss, output, (5, 3), dtype, rng)
    weights = rng.uniform(0.5, 2, 5).astype(dtype)
    value, out = gradient_of(Z, P, Y, loss, output, weights)
    value4, out4 = gradient_of(Z, P, Y, loss, output, weights * dtype.type(4))
    # A power of two scales the weights and their total exactly.
    assert value4 == value
    assert np.array_equal(out4, out)


@pytest.mark.parametrize("weights", ["all_zero", "empty"])
@pytest.mark.parametrize("loss,output", PAIRS, ids=PAIR_IDS)
def test_zero_total_weight_gives_zero_loss_and_zero_gradient(loss, output, weights, dtype, rng):
    Z, P, Y = batch(loss, output, (4, 3), dtype, rng)
    w = np.zeros(4, dtype) if weights == "all_zero" else no_weights(dtype)
    assert value_of(Z, P, Y, loss, w, 0.0) == 0.0
    value, out = gradient_of(Z, P, Y, loss, output, w, 0.0, scale=3.0)
    assert value == 0.0
    assert not np.isnan(out).any()
    assert np.array_equal(out, np.zeros(Z.shape, dtype))


@pytest.mark.parametrize("scale", [4.0, 0.5, 0.3, 1e3], ids=["4", "half", "0.3", "1e3"])
@pytest.mark.parametrize("kind", ["none", "random"])
@pytest.mark.parametrize("loss,output", PAIRS, ids=PAIR_IDS)
def test_scale_multiplies_the_gradient_but_not_the_value(loss, output, kind, scale, dtype, rng,
                                                         assert_close):
    Z, P, Y = batch(loss, output, (6, 4), dtype, rng)
    weights, total = weighting(kind, 6, dtype, rng)
    value, out = gradient_of(Z, P, Y, loss, output, weights, total)
    scaled_value, scaled = gradient_of(Z, P, Y, loss, output, weights, total, scale=scale)
    assert scaled_value == value
    if scale in (4.0, 0.5):  # powers of two scale every rounding step exactly
        assert np.array_equal(scaled, out * dtype.type(scale))
    expected = scale * ref.loss_gradient(loss, *f64(Z, P, Y), output, weights, total)
    # Otherwise within a few roundings (of the largest element: softmax's backprop cancels).
    unrounded = scale * out.astype(np.float64)
    np.testing.assert_allclose(scaled, unrounded, rtol=0,
                               atol=8 * np.finfo(dtype).eps * np.abs(unrounded).max())
    norm = np.abs(expected).max()
    assert_close(scaled / dtype.type(norm), expected / norm, dtype, scale=4)


def test_weight_total_divides_a_chunk_of_a_data_set(rng):
    # Two chunks with the data set's total add up to the whole set's loss and gradient.
    Z, P, Y = batch("poisson", "exp", (10, 3), np.dtype(np.float64), rng)
    weights = rng.uniform(0, 2, 10)
    total = float(weights.sum())
    whole_value, whole = gradient_of(Z, P, Y, "poisson", "exp", weights)
    a_value, a = gradient_of(Z[:4], P[:4], Y[:4], "poisson", "exp", weights[:4], total)
    b_value, b = gradient_of(Z[4:], P[4:], Y[4:], "poisson", "exp", weights[4:], total)
    assert a_value + b_value == pytest.approx(whole_value, rel=1e-14)
    np.testing.assert_allclose(np.vstack([a, b]), whole, rtol=1e-14, atol=0)


# --------------------------------------------------------------------- poisson
def test_poisson_loss_is_zero_where_the_prediction_equals_the_counts(dtype):
    Y = np.array([[0.5, 1.0, 3.0], [2.0, 7.0, 0.25]], dtype)
    Z = np.log(Y.astype(np.float64)).astype(dtype)
    P = np.exp(Z.astype(np.float64)).astype(dtype)
    value, out = gradient_of(Z, P, Y, "poisson", "exp")
    # exp(log y) is y up to a rounding or two of y (7 at most here), divided by n*k = 6.
    tol = float(7 * 4 * np.finfo(dtype).eps)
    assert value == pytest.approx(0.0, abs=tol)
    np.testing.assert_allclose(out, 0.0, atol=tol / 6)


def test_poisson_loss_of_zero_counts_is_the_predicted_mean(dtype):
    # y log y is 0 at y = 0, so a zero count costs exp(z): no NaN from 0 * log 0.
    Z = np.array([[-2.0, 0.0, 1.5]], dtype)
    P = np.exp(Z.astype(np.float64)).astype(dtype)
    Y = np.zeros((1, 3), dtype)
    value, out = gradient_of(Z, P, Y, "poisson", "exp")
    assert value == pytest.approx(np.mean(np.exp(Z.astype(np.float64))), rel=1e-6)
    np.testing.assert_allclose(out, P / 3, rtol=1e-6)


@pytest.mark.parametrize("logit", [-1e4, -700.0, 40.0])
def test_poisson_is_finite_for_large_negative_and_moderate_logits(logit, dtype):
    Z = np.array([[logit, 0.0]], dtype)
    P = np.exp(Z.astype(np.float64)).astype(dtype)
    Y = np.array([[2.0, 1.0]], dtype)
    value, out = gradient_of(Z, P, Y, "poisson", "exp")
    assert np.isfinite(value) and np.isfinite(out).all()
    expected = ref.loss_value("poisson", *f64(Z, P, Y))
    assert value == pytest.approx(expected, rel=1e-12)


# ------------------------------------------------- squared_norm / add_l2_gradient
# Sizes below, at and past whole blocks of the vector sums (SQUARES_BLOCK: 32 with AVX-512).
@pytest.mark.parametrize("n", [0, 1, 7, 31, 32, 33, 65, 1000, 40100])
def test_squared_norm_is_the_float64_sum_of_squares(n, dtype, rng):
    x = rng.normal(size=n).astype(dtype)
    value = squared_norm(x)
    assert isinstance(value, float)
    x64 = x.astype(np.float64)
    assert value == pytest.approx(float(x64 @ x64), rel=1e-13, abs=0)


@pytest.mark.parametrize("n", [31, 32, 33, 100, 1000, 40100])
def test_squared_norm_of_float32_sums_in_its_documented_order_bitwise(n, rng):
    x = rng.normal(size=n).astype(np.float32)
    lanes = VECTOR_BYTES // 8
    assert squared_norm(x) == ref.ordered_squared_norm(x, lanes, SQUARES_BLOCK // lanes)


@pytest.mark.parametrize("n", [1, 7, 1000])
def test_add_l2_gradient_adds_the_penalty_gradient_and_returns_the_penalty(n, dtype, rng,
                                                                          assert_close):
    params = rng.normal(size=n).astype(dtype)
    grad = rng.normal(size=n).astype(dtype)
    before = grad.astype(np.float64)
    penalty = add_l2_gradient(params, 0.03, grad)
    p64 = params.astype(np.float64)
    assert penalty == pytest.approx(0.5 * 0.03 * float(p64 @ p64), rel=1e-13)
    assert_close(grad, before + 0.03 * p64, dtype)
    # The penalty's gradient, by central differences of the returned penalty (float64).
    if dtype == np.float64 and n <= 7:
        h = 1e-6
        for i in range(n):
            up, down = params.copy(), params.copy()
            up[i] += h
            down[i] -= h
            numeric = (add_l2_gradient(up, 0.03, np.zeros(n)) -
                       add_l2_gradient(down, 0.03, np.zeros(n))) / (2 * h)
            assert numeric == pytest.approx(0.03 * params[i], rel=1e-6, abs=1e-10)


def test_a_zero_weight_sample_with_an_overflowed_output_leaves_the_gradient_finite():
    Z = np.array([[1000.0], [0.5]])
    with np.errstate(over="ignore"):
        P = np.exp(Z)
    Y = np.array([[1.0], [2.0]])
    weights = np.array([0.0, 1.0])
    value, out = gradient_of(Z, P, Y, "poisson", "exp", weights)
    assert np.isfinite(value)  # the sample is skipped in the value ...
    assert np.isfinite(out).all()  # ... and in the gradient
    assert (out[0] == 0).all()
