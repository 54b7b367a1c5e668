"""MLP.gradients is the exact gradient of MLP.loss (with and without sample weights):
checked against central finite differences, the NumPy reference backprop and
torch.autograd; MLP.loss against PyTorch's loss modules; the chunked full-data gradient
(MLP._dataset_gradient, dense or CSR input) against MLP.gradients."""

import numpy as np
import pytest
import scipy.sparse

import reference as ref
from conftest import targets_for
from fastmlp import MLP
from fastmlp import model as model_module

HIDDEN = ["identity", "sigmoid", "tanh", "relu", "leaky_relu"]
OUTPUTS = ["identity", "sigmoid", "tanh", "relu", "leaky_relu", "softmax", "exp"]
# (loss, output activation, integer labels?, layer sizes): every pair the model can build
CASES = ([(loss, out, False, (3, 5, 4, 2)) for loss in ("mse", "mae", "rmse") for out in OUTPUTS]
         + [("cross_entropy", "softmax", True, (3, 5, 4, 2)),
            ("cross_entropy", "softmax", False, (3, 5, 4, 2)),
            ("binary_cross_entropy", "sigmoid", False, (3, 5, 4, 2)),
            ("binary_cross_entropy", "sigmoid", False, (3, 5, 4, 1)),
            ("poisson", "exp", False, (3, 5, 4, 2)),
            ("poisson", "exp", False, (3, 5, 4, 1))])
CASE_IDS = [f"{loss}-{out}{'-labels' if labels else ''}-{sizes[-1]}out"
            for loss, out, labels, sizes in CASES]
KINKED = ("relu", "leaky_relu")
MARGIN = 0.02  # pre-activations (and mae residuals) stay this far from their kinks


def layers_of(net):
    return [(W.astype(np.float64), b.astype(np.float64)) for W, b in zip(net.weights, net.biases)]


def pre_activations(layers, X, hidden):
    Zs, A = [], X
    for i, (W, b) in enumerate(layers):
        Zs.append(A @ W + b)
        if i < len(hidden):
            A = ref.activation(hidden[i], Zs[-1])
    return Zs


def problem(hidden, loss, out, labels, sizes, n=6):
    """A float64 net with random weights and biases, and data (X, y), chosen by trying
    seeds in order until no kinked unit or MAE residual is within MARGIN of its kink."""
    for seed in range(200):
        rng = np.random.default_rng(seed)
        net = MLP(list(sizes), activation=hidden, output_activation=out, loss=loss,
                  dtype="float64", seed=seed)
        net.params[...] = rng.normal(scale=0.8, size=net.n_params)
        X = rng.normal(size=(n, sizes[0]))
        y = targets_for(loss, n, sizes[-1], rng, labels)
        Zs = pre_activations(layers_of(net), X, [hidden] * (len(sizes) - 2))
        kinked = [Z for Z in Zs[:-1] if hidden in KINKED] + ([Zs[-1]] if out in KINKED else [])
        if any(np.abs(Z).min() < MARGIN for Z in kinked):
            continue
        if loss == "mae":
            P = ref.activation(out, Zs[-1])
            if np.abs(P - y.reshape(P.shape)).min() < MARGIN:
                continue
        if out == "relu" and (Zs[-1] < 0).all():
            continue  # an all-dead output layer would make the check trivial
        return net, X, y
    raise AssertionError("no seed gave data away from the kinks")


def flat(dWs, dbs):
    return np.concatenate([g.ravel() for g in dWs] + [g.ravel() for g in dbs])


def numeric_gradient(net, X, y, h=1e-6, sample_weight=None):
    grad = np.empty(net.n_params)
    for i in range(net.n_params):
        saved = net.params[i]
        net.params[i] = saved + h
        up = net.loss(X, y, sample_weight=sample_weight)
        net.params[i] = saved - h
        down = net.loss(X, y, sample_weight=sample_weight)
        net.params[i] = saved
        grad[i] = (up - down) / (2 * h)
    return grad


def targets_2d(y, loss, k):
    y = np.asarray(y)
    if loss == "cross_entropy" and y.ndim == 1:
        return ref.one_hot(y, k)
    return y.reshape(-1, k).astype(np.float64)


# ------------------------------------------------------------ finite differences
@pytest.mark.parametrize("hidden", HIDDEN)
@pytest.mark.parametrize("loss,out,labels,sizes", CASES, ids=CASE_IDS)
def test_gradients_match_finite_differences(loss, out, labels, sizes, hidden):
    net, X, y = problem(hidden, loss, out, labels, sizes)
    before = net.params.copy()
    dWs, dbs = net.gradients(X, y)
    assert np.array_equal(net.params, before), "gradients() changed the parameters"
    assert [g.shape for g in dWs] == [W.shape for W in net.weights]
    assert [g.shape for g in dbs] == [b.shape for b in net.biases]
    analytic = flat(dWs, dbs)
    assert np.abs(analytic).max() > 1e-6, "a zero gradient would make this check vacuous"
    np.testing.assert_allclose(analytic, numeric_gradient(net, X, y), rtol=1e-6, atol=1e-8)


def problem_weights(n, seed):
    """Sample weights for `problem`'s n rows: uneven, one of them 0."""
    weights = np.random.default_rng(seed).uniform(0.2, 3.0, n)
    weights[1] = 0.0
    return weights


@pytest.mark.parametrize("hidden", ["tanh", "leaky_relu"])
@pytest.mark.parametrize("loss,out,labels,sizes", CASES, ids=CASE_IDS)
def test_weighted_gradients_match_finite_differences(loss, out, labels, sizes, hidden):
    net, X, y = problem(hidden, loss, out, labels, sizes)
    weights = problem_weights(len(X), 1)
    dWs, dbs = net.gradients(X, y, sample_weight=weights)
    analytic = flat(dWs, dbs)
    assert np.abs(analytic).max() > 1e-6, "a zero gradient would make this check vacuous"
    numeric = numeric_gradient(net, X, y, sample_weight=weights)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)
    # The weights matter: the unweighted gradient is another one.
    assert not np.allclose(analytic, flat(*net.gradients(X, y)), rtol=1e-3)


# ------------------------------------------------------------ reference backprop
@pytest.mark.parametrize("loss,out,labels", [("mse", "identity", False), ("mse", "softmax", False),
                                             ("mae", "tanh", False), ("rmse", "sigmoid", False),
                                             ("cross_entropy", "softmax", True),
                                             ("binary_cross_entropy", "sigmoid", False),
                                             ("poisson", "exp", False), ("mae", "exp", False)])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_gradients_match_reference_backprop(loss, out, labels, weighted, dtype, rng, assert_close):
    sizes, hidden = [7, 13, 5, 3], ["tanh", "leaky_relu"]
    net = MLP(sizes, activation=hidden, output_activation=out, loss=loss, dtype=dtype, seed=1)
    net.params[...] = rng.normal(scale=0.5, size=net.n_params)
    X = rng.normal(size=(37, 7)).astype(dtype)
    y = targets_for(loss, 37, 3, rng, labels, dtype)
    weights = rng.uniform(0, 3, 37).astype(dtype) if weighted else None
    if weighted:
        weights[::5] = 0
    dWs, dbs = net.gradients(X, y, sample_weight=weights)
    X64 = X.astype(np.float64)
    _, ref_dW, ref_db = ref.backward(layers_of(net), X64, targets_2d(y, loss, 3), hidden, out, loss,
                                     weights)
    norm = max(np.abs(g).max() for g in ref_dW + ref_db)
    for got, expected in zip(dWs + dbs, ref_dW + ref_db):
        assert_close(got / dtype.type(norm), expected / norm, dtype, scale=5)


def test_loss_matches_reference_forward(dtype, rng):
    net = MLP([7, 13, 5, 3], activation="sigmoid", output_activation="softmax", loss="mse",
              dtype=dtype, seed=2)
    X = rng.normal(size=(9, 7)).astype(dtype)
    Y = rng.normal(size=(9, 3)).astype(dtype)
    _, Z, P = ref.forward(layers_of(net), X.astype(np.float64), ["sigmoid", "sigmoid"], "softmax")
    rtol = 1e-5 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(net.predict(X), P, rtol=rtol, atol=rtol / 10)
    assert net.loss(X, Y) == pytest.approx(ref.loss_value("mse", Z, P, Y), rel=rtol, abs=0)


# ----------------------------------------------------------------- huge logits
def test_cross_entropy_is_finite_and_exact_for_huge_logits(dtype):
    net = MLP([2, 3], loss="cross_entropy", dtype=dtype, seed=0)
    net.weights[0][...] = [[1e4, 0.0, -1e4], [-1e4, 0.0, 1e4]]
    net.biases[0][...] = 0
    X = np.eye(2, dtype=dtype)
    y = np.array([2, 0])  # both rows put everything on the wrong class
    assert net.loss(X, y) == 2e4
    dWs, dbs = net.gradients(X, y)
    # dZ = (P - Y) / n with P = [1, 0, 0] and [0, 0, 1] up to exp(-1e4), which float32
    # kernels may return as about the smallest normal float instead of 0.
    tiny = 10 * np.finfo(dtype).tiny
    assert np.isfinite(dWs[0]).all() and np.isfinite(dbs[0]).all()
    np.testing.assert_allclose(dWs[0], [[0.5, 0, -0.5], [-0.5, 0, 0.5]], rtol=0, atol=tiny)
    np.testing.assert_allclose(dbs[0], np.zeros(3), rtol=0, atol=tiny)
    y_right = np.array([0, 2])
    assert net.loss(X, y_right) == 0.0
    assert np.isfinite(net.predict(X)).all()


def test_binary_cross_entropy_is_finite_and_exact_for_huge_logits(dtype):
    net = MLP([2, 2], loss="binary_cross_entropy", dtype=dtype, seed=0)
    net.weights[0][...] = [[1e4, -1e4], [-1e4, 1e4]]
    net.biases[0][...] = 0
    X = np.eye(2, dtype=dtype)
    y = np.array([[0.0, 1.0], [1.0, 1.0]])  # three of four elements wrong by 1e4
    assert net.loss(X, y) == 3 * 1e4 / 4
    dWs, dbs = net.gradients(X, y)
    # dZ = (P - Y) / 4 with P = [[1, 0], [0, 1]] (up to about the smallest normal float)
    tiny = 10 * np.finfo(dtype).tiny
    assert np.isfinite(dWs[0]).all() and np.isfinite(dbs[0]).all()
    np.testing.assert_allclose(dWs[0], [[0.25, -0.25], [-0.25, 0.0]], rtol=0, atol=tiny)
    np.testing.assert_allclose(dbs[0], [0.0, -0.25], rtol=0, atol=tiny)


# ---------------------------------------------------------------------- torch
TORCH_ACTIVATIONS = {
    "identity": lambda t, z: z,
    "sigmoid": lambda t, z: t.sigmoid(z),
    "tanh": lambda t, z: t.tanh(z),
    "relu": lambda t, z: t.relu(z),
    "leaky_relu": lambda t, z: t.nn.functional.leaky_relu(z, 0.01),
    "softmax": lambda t, z: t.softmax(z, dim=1),
    "exp": lambda t, z: t.exp(z),
}


def torch_loss(torch, loss, Z, P, y, weights=None):
    """The loss from torch's functions; with weights, the weighted mean of the per-sample
    losses (their mean over outputs, or the cross-entropy) over the sum of the weights."""
    F = torch.nn.functional
    if weights is None:
        weights = torch.ones(Z.shape[0], dtype=Z.dtype)
    per_element = {
        "mse": lambda: F.mse_loss(P, y, reduction="none"),
        "rmse": lambda: F.mse_loss(P, y, reduction="none"),
        "mae": lambda: F.l1_loss(P, y, reduction="none"),
        "binary_cross_entropy": lambda: F.binary_cross_entropy_with_logits(Z, y, reduction="none"),
        # torch drops the y log y - y term of the deviance (full=False); it has no gradient
        "poisson": lambda: (F.poisson_nll_loss(Z, y, log_input=True, full=False, reduction="none")
                            + torch.xlogy(y, y) - y),
    }
    if loss == "cross_entropy":
        per_sample = F.cross_entropy(Z, y, reduction="none")  # integer labels or probability rows
    else:
        per_sample = per_element[loss]().mean(dim=1)
    value = (weights * per_sample).sum() / weights.sum()
    return torch.sqrt(value) if loss == "rmse" else value


TORCH_CASES = ([pytest.param(hidden, False, id=hidden) for hidden in HIDDEN]
               + [pytest.param("tanh", True, id="tanh-weighted")])


@pytest.mark.parametrize("hidden,weighted", TORCH_CASES)
@pytest.mark.parametrize("loss,out,labels,sizes", CASES, ids=CASE_IDS)
def test_gradients_match_torch_autograd(loss, out, labels, sizes, hidden, weighted):
    torch = pytest.importorskip("torch")
    net, X, y = problem(hidden, loss, out, labels, sizes)
    params = [torch.tensor(a, requires_grad=True) for W, b in layers_of(net) for a in (W, b)]
    A = torch.tensor(X)
    for i in range(0, len(params), 2):
        Z = A @ params[i] + params[i + 1]
        A = TORCH_ACTIVATIONS[hidden](torch, Z)
    P = TORCH_ACTIVATIONS[out](torch, Z)
    if labels:
        target = torch.tensor(y)
    else:
        target = torch.tensor(np.asarray(y, np.float64).reshape(P.shape))
    weights = problem_weights(len(X), 2) if weighted else None
    value = torch_loss(torch, loss, Z, P, target, None if weights is None else torch.tensor(weights))
    value.backward()
    assert net.loss(X, y, sample_weight=weights) == pytest.approx(value.item(), rel=1e-12, abs=0)
    dWs, dbs = net.gradients(X, y, sample_weight=weights)
    for got, param in zip([g for pair in zip(dWs, dbs) for g in pair], params):
        np.testing.assert_allclose(got, param.grad.numpy(), rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("loss,out,labels", [
    ("mse", "identity", False), ("mse", "softmax", False), ("mae", "sigmoid", False),
    ("rmse", "tanh", False), ("cross_entropy", "softmax", True), ("cross_entropy", "softmax", False),
    ("binary_cross_entropy", "sigmoid", False), ("poisson", "exp", False)])
def test_loss_equals_torch_loss_modules(loss, out, labels):
    torch = pytest.importorskip("torch")
    net, X, y = problem("tanh", loss, out, labels, (3, 5, 4, 3), n=11)
    _, Z, _ = ref.forward(layers_of(net), X, ["tanh", "tanh"], out)
    P = torch.tensor(net.predict(X))
    Z = torch.tensor(Z)
    target = torch.tensor(y) if labels else torch.tensor(np.asarray(y, np.float64))
    nn = torch.nn
    expected = {
        "mse": lambda: nn.MSELoss()(P, target),
        "mae": lambda: nn.L1Loss()(P, target),
        "rmse": lambda: torch.sqrt(nn.MSELoss()(P, target)),
        "cross_entropy": lambda: nn.CrossEntropyLoss()(Z, target),  # on pre-softmax logits
        "binary_cross_entropy": lambda: nn.BCEWithLogitsLoss()(Z, target),  # pre-sigmoid
        # on log-means, without the y log y - y term (full=False): added here
        "poisson": lambda: (nn.PoissonNLLLoss(log_input=True, full=False)(Z, target)
                            + (torch.xlogy(target, target) - target).mean()),
    }[loss]().item()
    assert net.loss(X, y) == pytest.approx(expected, rel=1e-12, abs=0)


# ------------------------------------------------------------- poisson / exp
def test_poisson_loss_and_gradient_from_the_definition(dtype):
    # One layer, no hidden units: Z = X W + b, mu = exp(Z); loss = mean(y log(y/mu) - y + mu).
    net = MLP([2, 2], loss="poisson", dtype=dtype, seed=0)
    assert net.output_activation == "exp"
    net.weights[0][...] = [[0.5, -1.0], [0.25, 0.0]]
    net.biases[0][...] = [0.1, 0.2]
    X = np.array([[1.0, 2.0], [0.0, -1.0], [3.0, 0.5]], dtype)
    y = np.array([[1.0, 0.0], [2.0, 3.0], [0.0, 0.0]], dtype)
    Z = X.astype(np.float64) @ net.weights[0].astype(np.float64) + net.biases[0]
    mu = np.exp(Z)
    with np.errstate(divide="ignore", invalid="ignore"):
        y_log = np.where(y > 0, y * np.log(y / mu), 0.0)
    rtol = 1e-6 if dtype == np.float32 else 1e-14
    assert net.loss(X, y) == pytest.approx(np.mean(y_log - y + mu), rel=rtol)
    np.testing.assert_allclose(net.predict(X), mu, rtol=rtol)
    dWs, dbs = net.gradients(X, y)
    dZ = (mu - y) / y.size
    np.testing.assert_allclose(dWs[0], X.T.astype(np.float64) @ dZ, rtol=10 * rtol, atol=rtol / 10)
    np.testing.assert_allclose(dbs[0], dZ.sum(axis=0), rtol=10 * rtol, atol=rtol / 10)


# ----------------------------------------------------- chunked dataset gradient
# Losses that are sums over samples (RMSE, a root, is not): _dataset_gradient's domain.
SUM_LOSSES = [("mse", "identity", False), ("mae", "tanh", False), ("mse", "exp", False),
              ("cross_entropy", "softmax", True), ("binary_cross_entropy", "sigmoid", False),
              ("poisson", "exp", False)]
SUM_IDS = ["mse", "mae-tanh", "mse-exp", "cross_entropy", "bce", "poisson"]


def dataset_problem(loss, out, labels, dtype, n=23, weighted=True, seed=0):
    rng = np.random.default_rng(seed)
    net = MLP([6, 7, 5, 3], activation=["tanh", "relu"], output_activation=out, loss=loss,
              dtype=dtype, seed=seed)
    X = rng.normal(size=(n, 6))
    X[rng.uniform(size=X.shape) < 0.5] = 0  # sparse enough to be worth CSR
    X = X.astype(dtype)
    y = targets_for(loss, n, 3, rng, labels, dtype)
    Y = net._check_data(X, y)[1]
    weights = None
    if weighted:
        weights = rng.uniform(0, 2, n).astype(dtype)
        weights[::4] = 0
    return net, X, y, Y, weights


def as_csr_arguments(X):
    """X as _dataset_gradient / _run_epoch take a CSR matrix: an empty (0, d) X and the
    (data, int64 indices, int64 indptr) triple."""
    matrix = scipy.sparse.csr_matrix(X)
    return (np.empty((0, X.shape[1]), X.dtype),
            (matrix.data, matrix.indices.astype(np.int64), matrix.indptr.astype(np.int64)))


@pytest.mark.parametrize("chunk_rows", [1, 5, 22, 4096], ids=["chunk1", "chunk5", "chunk22",
                                                             "one-chunk"])
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("loss,out,labels", SUM_LOSSES, ids=SUM_IDS)
def test_dataset_gradient_equals_gradients(loss, out, labels, weighted, sparse, chunk_rows, dtype,
                                           monkeypatch):
    net, X, y, Y, weights = dataset_problem(loss, out, labels, dtype, weighted=weighted)
    monkeypatch.setattr(model_module, "CHUNK_ROWS", chunk_rows)
    dWs, dbs = net.gradients(X, y, sample_weight=weights)
    expected = flat(dWs, dbs)
    params = net.params.copy()
    total = len(X) if weights is None else float(weights.sum(dtype=np.float64))
    X_in, csr = as_csr_arguments(X) if sparse else (X, None)
    value = net._dataset_gradient(X_in, Y, weights, total, csr)
    assert np.array_equal(net.params, params), "the gradient changed the parameters"
    assert net._grad.dtype == dtype
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    assert value == pytest.approx(net.loss(X, y, sample_weight=weights), rel=rtol)
    if chunk_rows >= len(X):
        # One chunk: the same kernels on the same rows as gradients(), hence the same bits.
        assert np.array_equal(net._grad, expected)
    else:
        norm = np.abs(expected).max()
        np.testing.assert_allclose(net._grad / norm, expected / norm, rtol=0, atol=20 * rtol)


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
def test_dataset_gradient_over_more_rows_than_one_chunk(sparse):
    # The default chunk size (4096 rows): 5000 rows give a full chunk and a short one.
    net, X, y, Y, weights = dataset_problem("poisson", "exp", False, np.float64, n=5000, seed=3)
    assert len(X) > model_module.CHUNK_ROWS
    total = float(weights.sum())
    X_in, csr = as_csr_arguments(X) if sparse else (X, None)
    value = net._dataset_gradient(X_in, Y, weights, total, csr)
    expected = flat(*net.gradients(X, y, sample_weight=weights))
    assert value == pytest.approx(net.loss(X, y, sample_weight=weights), rel=1e-12)
    np.testing.assert_allclose(net._grad, expected, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("grad_scale", [0.5, 3.0])
def test_dataset_gradient_scales_the_gradient_but_not_the_loss(grad_scale, monkeypatch):
    net, X, y, Y, weights = dataset_problem("cross_entropy", "softmax", True, np.float64)
    monkeypatch.setattr(model_module, "CHUNK_ROWS", 7)
    total = float(weights.sum())
    value = net._dataset_gradient(X, Y, weights, total)
    unscaled = net._grad.copy()
    scaled_value = net._dataset_gradient(X, Y, weights, total, grad_scale=grad_scale)
    assert scaled_value == value
    if grad_scale == 0.5:  # a power of two scales every rounding step exactly
        assert np.array_equal(net._grad, grad_scale * unscaled)
    norm = np.abs(unscaled).max()
    np.testing.assert_allclose(net._grad, grad_scale * unscaled, rtol=0, atol=1e-14 * norm)
