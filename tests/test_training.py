"""MLP.fit: SGD and Adam steps against the NumPy reference and torch.optim.SGD, fit against
step, sample weights, CSR input, optimiser switches, reproducibility, thread-count
independence, history, validation, schedules and input conversion."""

import json
import math
import os
import pathlib
import subprocess
import sys
import textwrap

import numba
import numpy as np
import pytest
import scipy.sparse

import reference as ref
from conftest import assert_unchanged, snapshot, targets_for
import fastmlp
from fastmlp import MLP
from fastmlp.datasets import make_shapes

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
SIZES = [6, 7, 5, 3]
HIDDEN = ["tanh", "relu"]
# (loss, output activation, integer labels?)
LOSSES = [("mse", "identity", False), ("mse", "sigmoid", False), ("mae", "identity", False),
          ("rmse", "identity", False), ("cross_entropy", "softmax", True),
          ("binary_cross_entropy", "sigmoid", False)]
LOSS_IDS = ["mse", "mse-sigmoid", "mae", "rmse", "cross_entropy", "bce"]
# fit keyword arguments: momentum, nesterov, weight_decay
OPTIMISERS = [dict(), dict(momentum=0.9), dict(momentum=0.9, nesterov=True),
              dict(weight_decay=0.01), dict(momentum=0.5, nesterov=True, weight_decay=0.05)]
OPT_IDS = ["sgd", "momentum", "nesterov", "weight_decay", "nesterov-momentum-decay"]


def layers_of(net):
    return [(W.astype(np.float64).copy(), b.astype(np.float64).copy())
            for W, b in zip(net.weights, net.biases)]


def flat_layers(layers):
    return np.concatenate([W.ravel() for W, _ in layers] + [b for _, b in layers])


def regression_net(seed=0, dtype="float64", sizes=(4, 8, 3), **kwargs):
    return MLP(list(sizes), activation="tanh", dtype=dtype, seed=seed, **kwargs)


def regression_data(n=30, n_in=4, n_out=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_in))
    return X, np.tanh(X[:, :n_out]) + 0.1 * rng.normal(size=(n, n_out))


# ------------------------------------------------------- NumPy reference epoch
@pytest.mark.parametrize("optimiser", OPTIMISERS, ids=OPT_IDS)
@pytest.mark.parametrize("loss,out,labels", LOSSES, ids=LOSS_IDS)
def test_epochs_match_reference_sgd(loss, out, labels, optimiser):
    rng = np.random.default_rng(5)
    net = MLP(SIZES, activation=HIDDEN, output_activation=out, loss=loss, dtype="float64", seed=3)
    net.params[...] = rng.normal(scale=0.5, size=net.n_params)
    start = net.params.copy()
    n, batch_size, lr = 23, 5, 0.1  # 4 full batches and a last one of 3 rows
    X = rng.normal(size=(n, SIZES[0]))
    y = targets_for(loss, n, SIZES[-1], rng, labels)
    Y = ref.one_hot(y, SIZES[-1]) if labels else y
    layers, buffers, ref_losses = layers_of(net), None, []
    for _ in range(2):  # the second epoch checks that momentum carries over
        layers, buffers, value = ref.sgd_epoch(layers, X, Y, HIDDEN, out, loss, batch_size, lr,
                                               buffers=buffers, **optimiser)
        ref_losses.append(value)
    history = net.fit(X, y, epochs=2, batch_size=batch_size, lr=lr, shuffle=False, **optimiser)
    np.testing.assert_allclose(net.params, flat_layers(layers), rtol=0, atol=1e-10)
    np.testing.assert_allclose(history["loss"], ref_losses, rtol=1e-10, atol=1e-12)
    assert np.abs(net.params - start).max() > 1e-3  # training moved the parameters


@pytest.mark.parametrize("batch_size", [1, 7, 23, 100], ids=["b1", "b7", "b_eq_n", "b_gt_n"])
def test_batch_sizes_match_reference_sgd(batch_size):
    rng = np.random.default_rng(8)
    net = MLP(SIZES, activation=HIDDEN, dtype="float64", seed=4)
    X, Y = rng.normal(size=(23, 6)), rng.normal(size=(23, 3))
    layers, _, value = ref.sgd_epoch(layers_of(net), X, Y, HIDDEN, "identity", "mse", batch_size,
                                     0.05, momentum=0.9)
    history = net.fit(X, Y, epochs=1, batch_size=batch_size, lr=0.05, shuffle=False, momentum=0.9)
    np.testing.assert_allclose(net.params, flat_layers(layers), rtol=0, atol=1e-10)
    assert history["loss"][0] == pytest.approx(value, rel=1e-10, abs=0)


@pytest.mark.parametrize("sizes,hidden", [
    ([6, 3], []),
    ([6, 7, 3], ["sigmoid"]),
    ([5, 7, 6, 5, 4, 3], ["tanh", "leaky_relu", "sigmoid", "identity"]),
], ids=["no-hidden", "one-hidden", "four-hidden"])
def test_depths_match_reference_sgd(sizes, hidden):
    rng = np.random.default_rng(7)
    net = MLP(sizes, activation=hidden if hidden else "relu", dtype="float64", seed=1)
    net.params[...] = rng.normal(scale=0.5, size=net.n_params)
    X, Y = rng.normal(size=(17, sizes[0])), rng.normal(size=(17, sizes[-1]))
    layers, buffers = layers_of(net), None
    for _ in range(2):
        layers, buffers, _ = ref.sgd_epoch(layers, X, Y, hidden, "identity", "mse", 4, 0.05,
                                           momentum=0.9, weight_decay=0.01, buffers=buffers)
    net.fit(X, Y, epochs=2, batch_size=4, lr=0.05, momentum=0.9, weight_decay=0.01, shuffle=False)
    np.testing.assert_allclose(net.params, flat_layers(layers), rtol=0, atol=1e-10)


def test_shuffled_epochs_match_reference_on_the_permuted_rows():
    # shuffle=True draws one permutation of the rows per epoch from the model's generator;
    # replaying the generator gives the order, and the reference epoch on X[order] must agree.
    rng = np.random.default_rng(4)
    net = MLP(SIZES, activation=HIDDEN, loss="cross_entropy", dtype="float64", seed=9)
    X, labels = rng.normal(size=(23, 6)), rng.integers(0, 3, 23)
    Y = ref.one_hot(labels, 3)
    replay = np.random.default_rng()
    replay.bit_generator.state = net._rng.bit_generator.state
    layers, buffers = layers_of(net), None
    for _ in range(2):
        order = replay.permutation(23)
        layers, buffers, _ = ref.sgd_epoch(layers, X[order], Y[order], HIDDEN, "softmax",
                                           "cross_entropy", 5, 0.1, momentum=0.9, buffers=buffers)
    net.fit(X, labels, epochs=2, batch_size=5, lr=0.1, momentum=0.9, shuffle=True)
    np.testing.assert_allclose(net.params, flat_layers(layers), rtol=0, atol=1e-10)


# ---------------------------------------------------------- torch.optim.SGD
TORCH_LOSSES = [l for l in LOSSES if l[0] != "mse" or l[1] == "identity"]
TORCH_LOSS_IDS = [i for l, i in zip(LOSSES, LOSS_IDS) if l in TORCH_LOSSES]


@pytest.mark.parametrize("optimiser", OPTIMISERS, ids=OPT_IDS)
@pytest.mark.parametrize("loss,out,labels", TORCH_LOSSES, ids=TORCH_LOSS_IDS)
def test_epochs_match_torch_sgd(loss, out, labels, optimiser):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    net = MLP(SIZES, activation=HIDDEN, output_activation=out, loss=loss, dtype="float64", seed=3)
    net.params[...] = rng.normal(scale=0.5, size=net.n_params)
    n, batch_size, lr = 23, 5, 0.1
    X = rng.normal(size=(n, SIZES[0]))
    y = targets_for(loss, n, SIZES[-1], rng, labels)

    linears = [torch.nn.Linear(k, m, dtype=torch.float64) for k, m in zip(SIZES[:-1], SIZES[1:])]
    with torch.no_grad():
        for linear, W, b in zip(linears, net.weights, net.biases):
            linear.weight.copy_(torch.tensor(W.T))
            linear.bias.copy_(torch.tensor(b))
    model = torch.nn.Sequential(linears[0], torch.nn.Tanh(), linears[1], torch.nn.ReLU(), linears[2])
    criterion = {
        "mse": torch.nn.MSELoss(),
        "mae": lambda z, t: torch.nn.functional.l1_loss(z, t),
        "rmse": lambda z, t: torch.sqrt(torch.nn.functional.mse_loss(z, t)),
        "cross_entropy": torch.nn.CrossEntropyLoss(),
        "binary_cross_entropy": torch.nn.BCEWithLogitsLoss(),
    }[loss]
    decay = optimiser.get("weight_decay", 0.0)
    sgd = torch.optim.SGD([{"params": [l.weight for l in linears], "weight_decay": decay},
                           {"params": [l.bias for l in linears], "weight_decay": 0.0}],
                          lr=lr, momentum=optimiser.get("momentum", 0.0),
                          nesterov=optimiser.get("nesterov", False))
    X_t, y_t = torch.tensor(X), torch.tensor(y)
    for _ in range(2):
        for start in range(0, n, batch_size):
            sgd.zero_grad()
            criterion(model(X_t[start:start + batch_size]), y_t[start:start + batch_size]).backward()
            sgd.step()

    net.fit(X, y, epochs=2, batch_size=batch_size, lr=lr, shuffle=False, **optimiser)
    for linear, W, b in zip(linears, net.weights, net.biases):
        np.testing.assert_allclose(W, linear.weight.detach().numpy().T, rtol=0, atol=1e-10)
        np.testing.assert_allclose(b, linear.bias.detach().numpy(), rtol=0, atol=1e-10)


# -------------------------------------------------------------------- learning
def test_loss_falls_on_a_learnable_regression_problem():
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (200, 2))
    y = np.sin(3 * X[:, 0]) * X[:, 1]
    net = MLP([2, 16, 1], activation="tanh", dtype="float64", seed=0)
    before = net.loss(X, y)
    history = net.fit(X, y, epochs=40, batch_size=16, lr=0.1)
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    assert net.loss(X, y) < 0.4 * before


def test_loss_falls_on_shape_images_and_accuracy_beats_chance():
    X, y = make_shapes(400, seed=0)
    net = MLP([400, 100, 40, 2], loss="cross_entropy", seed=0)
    history = net.fit(X, y, epochs=3, batch_size=64, lr=0.05, momentum=0.9)
    assert history["loss"][-1] < 0.85 * history["loss"][0]
    assert np.mean(net.predict(X).argmax(axis=1) == y) > 0.7


# ------------------------------------------------------------- reproducibility
def train_seeded(seed, dtype="float32"):
    rng = np.random.default_rng(11)
    X = rng.normal(size=(50, 20)).astype(dtype)
    y = rng.integers(0, 3, 50)
    net = MLP([20, 16, 3], loss="cross_entropy", dtype=dtype, seed=seed)
    history = net.fit(X, y, epochs=3, batch_size=8, lr=0.1, shuffle=True, momentum=0.9)
    return net, history


def test_seeded_runs_reproduce_bitwise():
    a, hist_a = train_seeded(7)
    b, hist_b = train_seeded(7)
    c, _ = train_seeded(8)
    assert np.array_equal(a.params, b.params)
    assert hist_a["loss"] == hist_b["loss"]
    assert not np.array_equal(a.params, c.params)
    assert not np.array_equal(MLP([20, 16, 3], seed=7).params, MLP([20, 16, 3], seed=8).params)


def test_seeded_run_reproduces_bitwise_in_a_new_process(tmp_path):
    script = textwrap.dedent("""
        import sys
        import numpy as np
        sys.path.insert(0, sys.argv[2])
        from test_training import train_seeded
        net, _ = train_seeded(7)
        np.save(sys.argv[1], net.params)
    """)
    out = tmp_path / "params.npy"
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    subprocess.run([sys.executable, "-c", script, str(out), str(pathlib.Path(__file__).parent)],
                   env=env, check=True, cwd=tmp_path, timeout=300)
    here, _ = train_seeded(7)
    assert np.array_equal(np.load(out), here.params)


@pytest.mark.parametrize("optimizer,batch_size", [("sgd", 10), ("adam", 10), ("sgd", 1)],
                         ids=["sgd", "adam", "sgd-one-sample"])
def test_training_allocates_nothing_per_step(optimizer, batch_size, tmp_path):
    # Numba's runtime counts its allocations when NUMBA_NRT_STATS is set before it loads, so
    # this runs in a new process. Twice the data is twice the steps (shuffled batches
    # included); the compiled loop's allocations must not follow.
    script = textwrap.dedent("""
        import json, sys
        import numpy as np
        from numba.core.runtime import rtsys
        import fastmlp
        rng = np.random.default_rng(0)
        X = rng.standard_normal((2000, 20)).astype(np.float32)
        y = rng.integers(0, 3, 2000)
        net = fastmlp.MLP([20, 16, 3], loss="cross_entropy", dtype=np.float32, seed=0)
        # At batch size 1 without momentum the loop defers each weight step (train_samples).
        batch_size = int(sys.argv[2])
        momentum = 0.0 if sys.argv[1] == "adam" or batch_size == 1 else 0.9
        options = dict(batch_size=batch_size, optimizer=sys.argv[1], momentum=momentum)
        net.fit(X, y, epochs=1, **options)
        counts = []
        for rows in (1000, 2000, 2000):
            before = rtsys.get_allocation_stats()
            net.fit(X[:rows], y[:rows], epochs=2, **options)
            after = rtsys.get_allocation_stats()
            counts.append([after.alloc - before.alloc, after.mi_alloc - before.mi_alloc])
        print(json.dumps(counts))
    """)
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), NUMBA_NRT_STATS="1")
    done = subprocess.run([sys.executable, "-c", script, optimizer, str(batch_size)], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    half, full, again = json.loads(done.stdout.strip().splitlines()[-1])
    assert full == again  # deterministic counts, so the comparison below means something
    assert full == half  # 200 steps allocate as much as 400: nothing per step
    assert full[0] < 100  # at most a few per call (kernels run without the runtime: 0)


def train_shapes(dtype, optimizer="sgd"):
    X, y = make_shapes(300, seed=1, dtype=dtype)
    net = MLP([400, 100, 40, 2], loss="cross_entropy", dtype=dtype, seed=3)
    if optimizer == "adam":
        net.fit(X, y, epochs=2, batch_size=64, lr=1e-3, optimizer="adam", weight_decay=1e-4)
    else:
        net.fit(X, y, epochs=2, batch_size=64, lr=0.05, momentum=0.9, weight_decay=1e-4)
    return net


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_training_does_not_depend_on_thread_count(optimizer, dtype, restore_threads):
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("Numba runs with one thread only")
    from fastmlp._jit import PARALLEL_MIN_ELEMENTS, PARALLEL_MIN_WORK
    # The check means something only if the parallel kernels run: batches of 64 rows
    # through a 400-100 layer, and 44222 parameters, are above the size thresholds.
    assert 64 * 400 * 100 >= PARALLEL_MIN_WORK and 44222 >= PARALLEL_MIN_ELEMENTS
    numba.set_num_threads(1)
    one = train_shapes(dtype, optimizer)
    numba.set_num_threads(2)
    two = train_shapes(dtype, optimizer)
    assert np.array_equal(one.params, two.params)
    assert np.array_equal(one._velocity, two._velocity)
    assert np.array_equal(one._second_moment, two._second_moment)


def test_n_threads_argument_gives_identical_results_and_restores_thread_count(restore_threads):
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("Numba runs with one thread only")
    X, y = make_shapes(200, seed=2)
    results = []
    for n_threads in (1, 2):
        numba.set_num_threads(2 if n_threads == 1 else 1)
        before = numba.get_num_threads()
        net = MLP([400, 100, 40, 2], loss="cross_entropy", seed=3, n_threads=n_threads)
        net.fit(X, y, epochs=1, batch_size=64, lr=0.05)
        results.append((net.params.copy(), net.predict(X)))
        assert numba.get_num_threads() == before
    assert np.array_equal(results[0][0], results[1][0])
    assert np.array_equal(results[0][1], results[1][1])


# ------------------------------------------------------------------------ step
@pytest.mark.parametrize("sizes,n", [([6, 7, 5, 3], 9), ([400, 100, 40, 2], 64), ([6, 17, 9, 3], 1)],
                         ids=["small", "parallel-kernels", "one-sample"])
def test_step_gives_the_same_numbers_as_fit(sizes, n, dtype):
    # MLP.step arranges the kernels in Python, fit runs the compiled epoch loop;
    # documented to give the same numbers.
    rng = np.random.default_rng(12)
    X = rng.normal(size=(n, sizes[0])).astype(dtype)
    y = rng.integers(0, sizes[-1], n)
    a = MLP(sizes, loss="cross_entropy", dtype=dtype, seed=0)
    b = MLP(sizes, loss="cross_entropy", dtype=dtype, seed=0)
    losses = [a.step(X, y, lr=0.05, momentum=0.9, weight_decay=1e-3) for _ in range(3)]
    history = b.fit(X, y, epochs=3, batch_size=n, lr=0.05, momentum=0.9, weight_decay=1e-3,
                    shuffle=False)
    assert np.array_equal(a.params, b.params)
    assert np.array_equal(a._velocity, b._velocity)
    assert losses == history["loss"]


# At batch size 1 without momentum, fit's compiled loop defers each sample's weight step into
# the next sample's forward pass (one pass over the weights instead of two); step takes each
# step at once. Nets: tile widths below, at and above a vector and a row tile; sigmoid, tanh and
# ReLU hidden layers; no hidden layer.
ONE_SAMPLE_NETS = [([7, 13, 5, 3], "sigmoid", "mse"), ([40, 100, 40, 2], "tanh", "mse"),
                   ([30, 150, 20, 10], "relu", "cross_entropy"), ([5, 3], "tanh", "cross_entropy")]


@pytest.mark.parametrize("shuffle", [False, True], ids=["ordered", "shuffled"])
@pytest.mark.parametrize("setting", [dict(), dict(weight_decay=1e-3), dict(weighted=True)],
                         ids=["sgd", "weight_decay", "sample_weight"])
@pytest.mark.parametrize("sizes,activation,loss", ONE_SAMPLE_NETS,
                         ids=["x".join(map(str, n[0])) for n in ONE_SAMPLE_NETS])
def test_one_sample_fit_equals_steps_on_each_sample_bitwise(sizes, activation, loss, setting,
                                                            shuffle, dtype):
    rng = np.random.default_rng(3)
    n = 23
    X = rng.normal(size=(n, sizes[0])).astype(dtype)
    y = (rng.integers(0, sizes[-1], n) if loss == "cross_entropy"
         else rng.normal(size=(n, sizes[-1])).astype(dtype))
    settings = dict(lr=0.05, weight_decay=setting.get("weight_decay", 0.0))
    weights = None
    if setting.get("weighted"):
        weights = rng.uniform(0, 2, n)
        weights[[0, 5, 6, n - 1]] = 0  # no step on these, first and last included
    a = MLP(sizes, activation=activation, loss=loss, dtype=dtype, seed=0)
    b = MLP(sizes, activation=activation, loss=loss, dtype=dtype, seed=0)
    shuffler = np.random.default_rng()
    shuffler.bit_generator.state = a._rng.bit_generator.state
    epochs = 2
    orders = [shuffler.permutation(n) if shuffle else np.arange(n) for _ in range(epochs)]
    history = a.fit(X, y, epochs=epochs, batch_size=1, shuffle=shuffle, sample_weight=weights,
                    **settings)
    losses = []
    for order in orders:
        total = 0.0
        for i in order:
            w = None if weights is None else weights[i:i + 1]
            total += b.step(X[i:i + 1], y[i:i + 1], sample_weight=w, **settings)
        losses.append(total / n)
    assert np.array_equal(a.params, b.params)
    assert a._steps[0] == b._steps[0] == epochs * (n if weights is None else np.count_nonzero(weights))
    np.testing.assert_allclose(history["loss"], losses, rtol=1e-12, atol=0)


# ---------------------------------------------------------------- float32 model
def test_float32_model_keeps_float32_everywhere():
    X, y = regression_data()
    net = regression_net(dtype="float32")
    history = net.fit(X, y, epochs=2, batch_size=8, lr=0.05, momentum=0.9)
    assert net.params.dtype == np.float32 and net._velocity.dtype == np.float32
    assert all(W.dtype == np.float32 for W in net.weights)
    assert all(b.dtype == np.float32 for b in net.biases)
    assert all(np.shares_memory(W, net.params) for W in net.weights + net.biases)
    assert net.predict(X).dtype == np.float32
    dWs, dbs = net.gradients(X, y)
    assert all(g.dtype == np.float32 for g in dWs + dbs)
    assert all(isinstance(v, float) for v in history["loss"])
    assert isinstance(net.loss(X, y), float)


def test_parameter_layout_weights_first_then_biases():
    net = MLP([400, 100, 40, 2])
    assert net.n_params == 44222
    assert MLP([400, 14, 8, 2]).n_params == 5752
    offset = 0
    for W in net.weights:
        assert np.shares_memory(W, net.params[offset:offset + W.size])
        offset += W.size
    for b in net.biases:
        assert np.shares_memory(b, net.params[offset:offset + b.size])
        offset += b.size
    assert offset == net.n_params
    net.params[:] = np.arange(net.n_params)
    assert net.weights[1][0, 0] == 400 * 100 and net.biases[0][0] == 400 * 100 + 100 * 40 + 40 * 2


# --------------------------------------------------------------- continuation
@pytest.mark.parametrize("shuffle", [False, True], ids=["ordered", "shuffled"])
def test_fit_twice_continues_like_one_longer_fit(shuffle):
    X, y = regression_data()
    once = regression_net(seed=2)
    once.fit(X, y, epochs=2, batch_size=7, lr=0.05, momentum=0.9, shuffle=shuffle)
    twice = regression_net(seed=2)
    h1 = twice.fit(X, y, epochs=1, batch_size=7, lr=0.05, momentum=0.9, shuffle=shuffle)
    h2 = twice.fit(X, y, epochs=1, batch_size=7, lr=0.05, momentum=0.9, shuffle=shuffle)
    assert np.array_equal(once.params, twice.params)
    assert np.array_equal(once._velocity, twice._velocity)
    assert h1["loss"][0] != h2["loss"][0]


# ---------------------------------------------------------- history/validation
def test_history_keys_and_lengths():
    X, y = regression_data()
    net = regression_net()
    history = net.fit(X, y, epochs=4, batch_size=8, lr=0.05)
    assert set(history) == {"loss", "lr", "time"}
    assert all(len(v) == 4 for v in history.values())
    assert all(isinstance(t, float) and t >= 0 for t in history["time"])
    assert history["lr"] == [0.05] * 4
    history = net.fit(X, y, epochs=3, validation_data=(X[:5], y[:5]))
    assert set(history) == {"loss", "lr", "time", "val_loss"}
    assert all(len(v) == 3 for v in history.values())


def test_history_loss_is_batch_weighted_mean_of_batch_losses():
    # With lr tiny the parameters barely move, so the epoch loss is the weighted mean of the
    # batch losses at (almost) the starting parameters: 10 rows of batch 4 -> 4, 4, 2.
    X, y = regression_data(n=10)
    net = MLP([4, 8, 3], activation="tanh", loss="rmse", dtype="float64", seed=0)
    batches = [net.loss(X[s:s + 4], y[s:s + 4]) for s in (0, 4, 8)]
    history = net.fit(X, y, epochs=1, batch_size=4, lr=1e-12, shuffle=False)
    expected = (4 * batches[0] + 4 * batches[1] + 2 * batches[2]) / 10
    assert history["loss"][0] == pytest.approx(expected, rel=1e-9, abs=0)
    assert history["loss"][0] != pytest.approx(np.mean(batches), rel=1e-6, abs=0)


def test_validation_loss_equals_loss_on_validation_data():
    X, y = regression_data(n=40)
    X_val, y_val = regression_data(n=13, seed=1)
    net = regression_net(seed=4)
    history = net.fit(X, y, epochs=3, batch_size=8, lr=0.05, shuffle=False,
                      validation_data=(X_val, y_val))
    step = regression_net(seed=4)
    expected = []
    for _ in range(3):
        step.fit(X, y, epochs=1, batch_size=8, lr=0.05, shuffle=False)
        expected.append(step.loss(X_val, y_val))
    assert history["val_loss"] == expected
    assert history["val_loss"][-1] == net.loss(X_val, y_val)


# -------------------------------------------------------------- lr schedules
EPOCHS = 21
SCHEDULES = {
    "constant": lambda e: 0.1,
    "step": lambda e: 0.1 * 0.5 ** (e // 10),
    "exponential": lambda e: 0.1 * 0.9 ** e,
    "invscaling": lambda e: 0.1 / (e + 1) ** 0.5,
    "cosine": lambda e: 0.1 * (1 + math.cos(math.pi * e / EPOCHS)) / 2,
}


@pytest.mark.parametrize("name", list(SCHEDULES) + ["callable"])
def test_lr_schedule_gives_documented_lr_per_epoch_and_uses_it(name):
    X, y = regression_data(n=12)
    net = regression_net(seed=5)
    if name == "callable":
        schedule, expected = (lambda e: 0.2 / (1 + e)), [0.2 / (1 + e) for e in range(EPOCHS)]
    else:
        schedule, expected = name, [SCHEDULES[name](e) for e in range(EPOCHS)]
    history = net.fit(X, y, epochs=EPOCHS, batch_size=5, lr=0.1, shuffle=False, lr_schedule=schedule)
    np.testing.assert_allclose(history["lr"], expected, rtol=1e-14, atol=0)
    # The reported rates are the ones applied: epoch-by-epoch fits at those constant rates
    # give the same parameters.
    manual = regression_net(seed=5)
    for lr in history["lr"]:
        manual.fit(X, y, epochs=1, batch_size=5, lr=lr, shuffle=False)
    assert np.array_equal(net.params, manual.params)


def test_lr_schedule_counts_epochs_from_zero_in_each_fit():
    X, y = regression_data(n=12)
    net = regression_net()
    assert net.fit(X, y, epochs=2, lr=0.1, lr_schedule="exponential")["lr"] == [0.1, 0.1 * 0.9]
    assert net.fit(X, y, epochs=2, lr=0.1, lr_schedule="exponential")["lr"] == [0.1, 0.1 * 0.9]


# ------------------------------------------------------- large inputs (chunks)
@pytest.mark.parametrize("loss", ["rmse", "cross_entropy"])
def test_predict_and_loss_on_more_rows_than_one_chunk(loss):
    # predict and loss walk inputs in chunks of rows; the result must not show the seams.
    rng = np.random.default_rng(3)
    n = 9000
    X = rng.normal(size=(n, 5))
    y = rng.integers(0, 3, n) if loss == "cross_entropy" else rng.normal(size=(n, 3))
    net = MLP([5, 8, 3], activation="tanh", loss=loss, dtype="float64", seed=0)
    P = net.predict(X)
    assert P.shape == (n, 3)
    assert np.array_equal(P[4000:5000], net.predict(X[4000:5000]))
    _, Z, P_ref = ref.forward(layers_of(net), X, ["tanh"], net.output_activation)
    np.testing.assert_allclose(P, P_ref, rtol=1e-13, atol=1e-15)
    Y = ref.one_hot(y, 3) if loss == "cross_entropy" else y
    assert net.loss(X, y) == pytest.approx(ref.loss_value(loss, Z, P_ref, Y), rel=1e-12, abs=0)


# --------------------------------------------------------- input conversion
def test_inputs_of_other_dtype_or_layout_give_the_same_result():
    rng = np.random.default_rng(9)
    base = rng.normal(size=(40, 8))
    X32 = base[::2, ::2].astype(np.float32)  # the canonical input: (20, 4) float32, C order
    y32 = np.tanh(X32[:, :3]).astype(np.float32)
    variants = {
        "float64": (X32.astype(np.float64), y32.astype(np.float64)),
        "fortran": (np.asfortranarray(X32), np.asfortranarray(y32)),
        "strided": (np.repeat(X32, 2, axis=1)[:, ::2], np.repeat(y32, 2, axis=0)[::2]),
        "lists": (X32.tolist(), y32.tolist()),
    }
    reference = regression_net(dtype="float32", seed=1)
    reference.fit(X32, y32, epochs=2, batch_size=6, lr=0.05)
    for name, (X, y) in variants.items():
        net = regression_net(dtype="float32", seed=1)
        net.fit(X, y, epochs=2, batch_size=6, lr=0.05)
        assert np.array_equal(net.params, reference.params), name
        assert np.array_equal(net.predict(X), reference.predict(X32)), name
        assert net.loss(X, y) == reference.loss(X32, y32), name


def test_integer_inputs_are_converted():
    X = np.arange(24).reshape(6, 4) % 5
    y = (np.arange(18).reshape(6, 3) % 3)
    a, b = regression_net(seed=3), regression_net(seed=3)
    a.fit(X, y, epochs=1, lr=0.01)
    b.fit(X.astype(np.float64), y.astype(np.float64), epochs=1, lr=0.01)
    assert np.array_equal(a.params, b.params)


def test_one_dimensional_y_on_a_single_output_regression_net():
    X, y = regression_data(n=20, n_out=1)
    a = regression_net(seed=6, sizes=(4, 8, 1))
    b = regression_net(seed=6, sizes=(4, 8, 1))
    a.fit(X, y[:, 0], epochs=2, batch_size=6, lr=0.05)
    b.fit(X, y, epochs=2, batch_size=6, lr=0.05)
    assert np.array_equal(a.params, b.params)
    assert a.loss(X, y[:, 0]) == a.loss(X, y)
    assert a.predict(X).shape == (20, 1)


def test_cross_entropy_labels_equal_one_hot_rows():
    rng = np.random.default_rng(10)
    X, labels = rng.normal(size=(15, 4)), rng.integers(0, 3, 15)
    a = MLP([4, 6, 3], loss="cross_entropy", dtype="float64", seed=1)
    b = MLP([4, 6, 3], loss="cross_entropy", dtype="float64", seed=1)
    a.fit(X, labels, epochs=2, batch_size=4, lr=0.1)
    b.fit(X, ref.one_hot(labels, 3), epochs=2, batch_size=4, lr=0.1)
    assert np.array_equal(a.params, b.params)


# ------------------------------------------------------------------ callbacks
def test_callbacks_see_every_epoch_and_its_metrics():
    X, Y = np.random.default_rng(0).normal(size=(40, 3)), np.random.default_rng(1).normal(size=(40, 2))
    net = fastmlp.MLP([3, 4, 2], seed=0)
    seen = []
    history = net.fit(X, Y, epochs=3, batch_size=8, validation_data=(X, Y),
                      callbacks=[lambda epoch, metrics: seen.append((epoch, metrics))])
    assert [epoch for epoch, _ in seen] == [0, 1, 2]
    for epoch, metrics in seen:
        assert set(metrics) == {"loss", "lr", "time", "val_loss"}
        assert metrics["loss"] == history["loss"][epoch]
        assert metrics["val_loss"] == history["val_loss"][epoch]


@pytest.mark.parametrize("stop", ["return_false", "stop_iteration"])
def test_a_callback_can_stop_training_and_the_finished_epochs_are_kept(stop):
    X, Y = np.random.default_rng(0).normal(size=(40, 3)), np.random.default_rng(1).normal(size=(40, 2))

    def stop_after_second(epoch, metrics):
        if epoch == 1:
            if stop == "return_false":
                return False
            raise StopIteration
        return None

    net = fastmlp.MLP([3, 4, 2], seed=0)
    history = net.fit(X, Y, epochs=5, batch_size=8, shuffle=False, callbacks=[stop_after_second])
    assert len(history["loss"]) == 2
    twin = fastmlp.MLP([3, 4, 2], seed=0)
    twin.fit(X, Y, epochs=2, batch_size=8, shuffle=False)
    assert np.array_equal(net.params, twin.params)


def test_a_single_callable_is_accepted_as_callbacks():
    X, Y = np.ones((8, 3)), np.zeros((8, 2))
    calls = []
    fastmlp.MLP([3, 2], seed=0).fit(X, Y, epochs=2, callbacks=lambda e, m: calls.append(e))
    assert calls == [0, 1]


def test_bad_callbacks_raise_before_training():
    net = fastmlp.MLP([3, 2], seed=0)
    before = net.params.copy()
    with pytest.raises(TypeError, match="callbacks"):
        net.fit(np.ones((8, 3)), np.zeros((8, 2)), callbacks=[print, 3])
    assert np.array_equal(net.params, before)


def test_a_callback_that_raises_leaves_the_model_as_before_fit():
    net = fastmlp.MLP([3, 2], seed=0)
    before = net.params.copy()

    def broken(epoch, metrics):
        raise RuntimeError("logging failed")

    with pytest.raises(RuntimeError, match="logging failed"):
        net.fit(np.ones((8, 3)), np.zeros((8, 2)), epochs=3, momentum=0.9, callbacks=[broken])
    assert np.array_equal(net.params, before) and not net._has_velocity


# ------------------------------------------------------------------------ Adam
ADAM_LOSSES = [("mse", "identity", False), ("mae", "identity", False), ("rmse", "identity", False),
               ("cross_entropy", "softmax", True), ("binary_cross_entropy", "sigmoid", False),
               ("poisson", "exp", False), ("mse", "exp", False)]
ADAM_LOSS_IDS = ["mse", "mae", "rmse", "cross_entropy", "bce", "poisson", "mse-exp"]
# fit keyword arguments for Adam
ADAMS = [dict(), dict(weight_decay=0.01), dict(betas=(0.5, 0.9), epsilon=1e-3)]
ADAM_IDS = ["default", "weight_decay", "betas-epsilon"]


def adam_problem(loss, out, labels, n=23, seed=5, scale=0.5):
    rng = np.random.default_rng(seed)
    net = MLP(SIZES, activation=HIDDEN, output_activation=out, loss=loss, dtype="float64", seed=3)
    net.params[...] = rng.normal(scale=scale, size=net.n_params)
    X = rng.normal(size=(n, SIZES[0]))
    y = targets_for(loss, n, SIZES[-1], rng, labels)
    Y = ref.one_hot(y, SIZES[-1]) if labels else y
    return net, X, y, Y


@pytest.mark.parametrize("adam", ADAMS, ids=ADAM_IDS)
@pytest.mark.parametrize("loss,out,labels", ADAM_LOSSES, ids=ADAM_LOSS_IDS)
def test_epochs_match_reference_adam(loss, out, labels, adam):
    net, X, y, Y = adam_problem(loss, out, labels)
    start = net.params.copy()
    batch_size, lr = 5, 0.01  # 4 full batches and a last one of 3 rows
    betas, epsilon = adam.get("betas", (0.9, 0.999)), adam.get("epsilon", 1e-8)
    layers, state, ref_losses = layers_of(net), None, []
    for _ in range(2):  # the second epoch checks that the moments and step count carry over
        layers, state, value = ref.adam_epoch(layers, X, Y, HIDDEN, out, loss, batch_size, lr,
                                              betas, epsilon, adam.get("weight_decay", 0.0),
                                              state)
        ref_losses.append(value)
    history = net.fit(X, y, epochs=2, batch_size=batch_size, lr=lr, shuffle=False,
                      optimizer="adam", **adam)
    np.testing.assert_allclose(net.params, flat_layers(layers), rtol=0, atol=1e-10)
    np.testing.assert_allclose(history["loss"], ref_losses, rtol=1e-10, atol=1e-12)
    assert net._steps[0] == state[0] == 10 and net._state_optimizer == "adam"
    m = np.concatenate([mW.ravel() for mW, _ in state[1]] + [mb for _, mb in state[1]])
    v = np.concatenate([vW.ravel() for vW, _ in state[2]] + [vb for _, vb in state[2]])
    np.testing.assert_allclose(net._velocity, m, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(net._second_moment, v, rtol=1e-9, atol=1e-14)
    assert np.abs(net.params - start).max() > 1e-3  # training moved the parameters


@pytest.mark.parametrize("sizes,n", [([6, 7, 5, 3], 9), ([400, 100, 40, 2], 64), ([6, 17, 9, 3], 1)],
                         ids=["small", "parallel-kernels", "one-sample"])
def test_adam_step_gives_the_same_numbers_as_fit(sizes, n, dtype):
    # step applies Adam over the flat buffers; fit's compiled loop fuses it into the
    # gradient passes. Documented to give the same numbers.
    rng = np.random.default_rng(12)
    X = rng.normal(size=(n, sizes[0])).astype(dtype)
    y = rng.integers(0, sizes[-1], n)
    a = MLP(sizes, loss="cross_entropy", dtype=dtype, seed=0)
    b = MLP(sizes, loss="cross_entropy", dtype=dtype, seed=0)
    settings = dict(lr=0.01, optimizer="adam", betas=(0.8, 0.99), epsilon=1e-6, weight_decay=1e-3)
    losses = [a.step(X, y, **settings) for _ in range(3)]
    history = b.fit(X, y, epochs=3, batch_size=n, shuffle=False, **settings)
    assert np.array_equal(a.params, b.params)
    assert np.array_equal(a._velocity, b._velocity)
    assert np.array_equal(a._second_moment, b._second_moment)
    assert a._steps[0] == b._steps[0] == 3
    assert a._state_optimizer == b._state_optimizer == "adam"
    assert losses == history["loss"]


def test_adam_fit_with_several_batches_equals_steps_on_the_batches(dtype):
    X, y = regression_data(n=17)
    a, b = regression_net(seed=1, dtype=dtype), regression_net(seed=1, dtype=dtype)
    a.fit(X, y, epochs=2, batch_size=5, lr=0.01, shuffle=False, optimizer="adam")
    for _ in range(2):
        for start in range(0, 17, 5):
            b.step(X[start:start + 5], y[start:start + 5], lr=0.01, optimizer="adam")
    assert np.array_equal(a.params, b.params)
    assert np.array_equal(a._second_moment, b._second_moment)
    assert a._steps[0] == b._steps[0] == 8


@pytest.mark.parametrize("shuffle", [False, True], ids=["ordered", "shuffled"])
def test_adam_fit_twice_continues_like_one_longer_fit(shuffle):
    X, y = regression_data()
    once = regression_net(seed=2)
    once.fit(X, y, epochs=2, batch_size=7, lr=0.01, optimizer="adam", shuffle=shuffle)
    twice = regression_net(seed=2)
    twice.fit(X, y, epochs=1, batch_size=7, lr=0.01, optimizer="adam", shuffle=shuffle)
    twice.fit(X, y, epochs=1, batch_size=7, lr=0.01, optimizer="adam", shuffle=shuffle)
    assert np.array_equal(once.params, twice.params)
    assert np.array_equal(once._second_moment, twice._second_moment)
    assert once._steps[0] == twice._steps[0] == 10


def test_switching_optimizer_starts_its_state_afresh():
    X, y = regression_data()
    # SGD with momentum, then Adam: Adam starts from zero moments at step 1 ...
    net = regression_net(seed=3)
    net.fit(X, y, epochs=1, batch_size=7, lr=0.05, momentum=0.9, shuffle=False)
    assert net._state_optimizer == "sgd" and net._velocity.any() and net._steps[0] == 5
    fresh = regression_net(seed=3)
    fresh.params[...] = net.params
    net.fit(X, y, epochs=1, batch_size=7, lr=0.01, optimizer="adam", shuffle=False)
    fresh.fit(X, y, epochs=1, batch_size=7, lr=0.01, optimizer="adam", shuffle=False)
    assert np.array_equal(net.params, fresh.params)
    assert np.array_equal(net._velocity, fresh._velocity)
    assert np.array_equal(net._second_moment, fresh._second_moment)
    assert net._steps[0] == 5 and net._state_optimizer == "adam"
    # ... and SGD after Adam starts a new momentum buffer, with no second moment left.
    fresh = regression_net(seed=3)
    fresh.params[...] = net.params
    net.fit(X, y, epochs=1, batch_size=7, lr=0.05, momentum=0.9, shuffle=False)
    fresh.fit(X, y, epochs=1, batch_size=7, lr=0.05, momentum=0.9, shuffle=False)
    assert np.array_equal(net.params, fresh.params)
    assert np.array_equal(net._velocity, fresh._velocity)
    assert not net._second_moment.any()
    assert net._steps[0] == 5 and net._state_optimizer == "sgd"


def test_switching_optimizer_in_step_starts_its_state_afresh():
    X, y = regression_data(n=9)
    net, fresh = regression_net(seed=4), regression_net(seed=4)
    net.step(X, y, lr=0.01, optimizer="adam")
    net.step(X, y, lr=0.01, optimizer="adam")
    fresh.params[...] = net.params
    net.step(X, y, lr=0.05, momentum=0.9)
    fresh.step(X, y, lr=0.05, momentum=0.9)
    assert np.array_equal(net.params, fresh.params)
    assert np.array_equal(net._velocity, fresh._velocity)
    assert not net._second_moment.any() and net._steps[0] == 1


# -------------------------------------------------------------- sample weights
def weighted_problem(dtype, n=23, seed=6):
    """(X, labels, weights); the weights, some 0, have a float64 sum that depends on the
    order of summation (NumPy's pairwise sum differs from a running sum), so a path that
    totals them differently from fit's compiled loop shows."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6)).astype(dtype)
    y = rng.integers(0, 3, n)
    for weight_seed in range(100):
        weights = np.random.default_rng(weight_seed).uniform(0, 2, n)
        weights[::6] = 0
        if n < 8 or weights.sum() != np.cumsum(weights)[-1]:
            return X, y, weights
    raise AssertionError("no weights with an order-dependent sum")


def weighted_net(dtype, seed=0):
    return MLP([6, 7, 3], activation="tanh", loss="cross_entropy", dtype=dtype, seed=seed)


@pytest.mark.parametrize("optimizer", [dict(momentum=0.9, weight_decay=1e-3),
                                       dict(optimizer="adam", weight_decay=1e-3)],
                         ids=["sgd", "adam"])
@pytest.mark.parametrize("batch_size", [5, 23], ids=["batches", "one-batch"])
def test_fit_with_sample_weight_equals_weighted_steps_bitwise(batch_size, optimizer, dtype):
    X, y, weights = weighted_problem(dtype)
    a, b = weighted_net(dtype), weighted_net(dtype)
    history = a.fit(X, y, epochs=2, batch_size=batch_size, lr=0.05, shuffle=False,
                    sample_weight=weights, **optimizer)
    losses = []
    for _ in range(2):
        epoch = 0.0
        for start in range(0, 23, batch_size):
            rows = slice(start, start + batch_size)
            epoch += b.step(X[rows], y[rows], lr=0.05, sample_weight=weights[rows],
                            **optimizer) * len(X[rows])
        losses.append(epoch / 23)
    assert np.array_equal(a.params, b.params)
    assert np.array_equal(a._velocity, b._velocity)
    assert np.array_equal(a._second_moment, b._second_moment)
    np.testing.assert_allclose(history["loss"], losses, rtol=1e-12, atol=0)


@pytest.mark.parametrize("adam", ADAMS, ids=ADAM_IDS)
@pytest.mark.parametrize("loss,out,labels", ADAM_LOSSES, ids=ADAM_LOSS_IDS)
def test_weighted_epochs_match_reference_adam(loss, out, labels, adam):
    net, X, y, Y = adam_problem(loss, out, labels, seed=9)
    weights = np.random.default_rng(1).uniform(0, 3, len(X))
    weights[[0, 7, 8]] = 0
    betas, epsilon = adam.get("betas", (0.9, 0.999)), adam.get("epsilon", 1e-8)
    layers, state, _ = ref.adam_epoch(layers_of(net), X, Y, HIDDEN, out, loss, 5, 0.01, betas,
                                      epsilon, adam.get("weight_decay", 0.0), weights=weights)
    net.fit(X, y, epochs=1, batch_size=5, lr=0.01, shuffle=False, optimizer="adam",
            sample_weight=weights, **adam)
    np.testing.assert_allclose(net.params, flat_layers(layers), rtol=0, atol=1e-10)


@pytest.mark.parametrize("optimizer", [dict(lr=0.05), dict(lr=0.01, optimizer="adam")],
                         ids=["sgd", "adam"])
def test_integer_sample_weights_equal_repeated_rows(optimizer, dtype):
    # In one full batch, weight 3 is three copies of the row and weight 0 none.
    X, y, _ = weighted_problem(dtype, n=11)
    counts = np.array([1, 3, 0, 2, 1, 1, 4, 0, 1, 2, 1])
    copies = np.repeat(np.arange(11), counts)
    a, b = weighted_net(dtype, seed=2), weighted_net(dtype, seed=2)
    la = a.fit(X, y, epochs=3, batch_size=11, shuffle=False, sample_weight=counts, **optimizer)
    lb = b.fit(X[copies], y[copies], epochs=3, batch_size=len(copies), shuffle=False, **optimizer)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    assert not np.array_equal(a.params, weighted_net(dtype, seed=2).params)
    np.testing.assert_allclose(a.params, b.params, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(la["loss"], lb["loss"], rtol=rtol)
    assert a.loss(X, y, sample_weight=counts) == pytest.approx(b.loss(X[copies], y[copies]),
                                                               rel=rtol)


@pytest.mark.parametrize("optimizer", [dict(lr=0.05, momentum=0.9), dict(lr=0.01, optimizer="adam")],
                         ids=["sgd", "adam"])
def test_a_batch_of_zero_weights_changes_nothing(optimizer, dtype):
    X, y, weights = weighted_problem(dtype, n=15)
    net = weighted_net(dtype)
    net.fit(X, y, epochs=1, batch_size=5, shuffle=False, sample_weight=weights, **optimizer)
    before = snapshot(net)
    assert net.step(X[:5], y[:5], sample_weight=np.zeros(5), **optimizer) == 0.0
    assert_unchanged(net, before)
    # In fit, a batch of zero weights takes no step (nor counts as one): training is that
    # of the data without the batch.
    zeroed = weights.copy()
    zeroed[5:10] = 0
    keep = np.r_[0:5, 10:15]
    a, b = weighted_net(dtype, seed=1), weighted_net(dtype, seed=1)
    a.fit(X, y, epochs=2, batch_size=5, shuffle=False, sample_weight=zeroed, **optimizer)
    b.fit(X[keep], y[keep], epochs=2, batch_size=5, shuffle=False, sample_weight=weights[keep],
          **optimizer)
    assert np.array_equal(a.params, b.params)
    assert np.array_equal(a._velocity, b._velocity)
    assert np.array_equal(a._second_moment, b._second_moment)
    assert a._steps[0] == b._steps[0] == 4


def test_unit_sample_weights_equal_no_weights_bitwise(dtype):
    X, y, _ = weighted_problem(dtype)
    a, b = weighted_net(dtype), weighted_net(dtype)
    ha = a.fit(X, y, epochs=2, batch_size=5, lr=0.01, optimizer="adam", sample_weight=np.ones(23))
    hb = b.fit(X, y, epochs=2, batch_size=5, lr=0.01, optimizer="adam")
    assert np.array_equal(a.params, b.params) and ha["loss"] == hb["loss"]
    c = weighted_net(dtype)
    c.fit(X, y, epochs=2, batch_size=5, lr=0.01, optimizer="adam", sample_weight=1.0)
    assert np.array_equal(c.params, b.params)


def test_loss_with_sample_weight_is_the_weighted_mean_of_sample_losses():
    X, y, weights = weighted_problem(np.float64, n=9)
    net = weighted_net(np.float64)
    per_sample = np.array([net.loss(X[i:i + 1], y[i:i + 1]) for i in range(9)])
    expected = (weights * per_sample).sum() / weights.sum()
    assert net.loss(X, y, sample_weight=weights) == pytest.approx(expected, rel=1e-13)


# ------------------------------------------------------------------ CSR input
def csr_arguments(X):
    matrix = scipy.sparse.csr_matrix(X)
    return (np.empty((0, X.shape[1]), X.dtype),
            (matrix.data, matrix.indices.astype(np.int64), matrix.indptr.astype(np.int64)))


@pytest.mark.parametrize("optimizer", [("sgd", dict(momentum=0.9, nesterov=True, weight_decay=1e-3)),
                                       ("adam", dict(weight_decay=1e-3))], ids=["sgd", "adam"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("sizes,n,batch_size", [([6, 7, 3], 23, 5), ([300, 100, 3], 70, 64)],
                         ids=["small", "parallel-kernels"])
def test_training_on_csr_input_equals_dense_training_bitwise(sizes, n, batch_size, weighted,
                                                             optimizer, dtype):
    rng = np.random.default_rng(13)
    X = rng.normal(size=(n, sizes[0]))
    X[rng.uniform(size=X.shape) < 0.7] = 0
    X = X.astype(dtype)
    y = rng.integers(0, sizes[-1], n)
    weights = rng.uniform(0, 2, n).astype(dtype) if weighted else None
    dense, sparse = (MLP(sizes, loss="cross_entropy", dtype=dtype, seed=0) for _ in range(2))
    name, settings = optimizer
    settings = dict(dict(momentum=0.0, nesterov=False), **settings)
    lr, opt = dense._check_optimiser(0.05 if name == "sgd" else 0.01, optimizer=name, **settings)
    X_checked, Y = dense._check_data(X, y)
    X_empty, csr = csr_arguments(X_checked)
    for epoch in range(2):
        order = rng.permutation(n)
        for net, X_in, matrix in ((dense, X_checked, None), (sparse, X_empty, csr)):
            result = net._run_epoch(X_in, Y, weights, order, net._workspace(batch_size), lr, opt,
                                    csr=matrix)
            if matrix is None:
                expected = result
        assert result == expected
        assert np.array_equal(sparse.params, dense.params)
        assert np.array_equal(sparse._velocity, dense._velocity)
        assert np.array_equal(sparse._second_moment, dense._second_moment)
        assert sparse._steps[0] == dense._steps[0]
    assert not np.array_equal(dense.params, MLP(sizes, loss="cross_entropy", dtype=dtype,
                                                seed=0).params)


def test_run_epoch_in_order_equals_fit_without_shuffle():
    # fit is _run_epoch per epoch: with the identity order, CSR input trains as fit does.
    X, y = regression_data(n=19)
    X[np.abs(X) < 0.7] = 0
    a, b = regression_net(seed=8), regression_net(seed=8)
    history = a.fit(X, y, epochs=1, batch_size=4, lr=0.01, optimizer="adam", shuffle=False)
    lr, opt = b._check_optimiser(0.01, 0.0, False, 0.0, "adam")
    X_checked, Y = b._check_data(X, y)
    X_empty, csr = csr_arguments(X_checked)
    loss, penalty = b._run_epoch(X_empty, Y, None, np.arange(19), b._workspace(4), lr, opt, csr=csr)
    assert np.array_equal(a.params, b.params)
    assert loss / 19 == history["loss"][0]  # the sum of batch loss * rows
    assert penalty == 0.0  # an L2 penalty is reported with decay_per_weight only


# --------------------------------------------------------------------- poisson
@pytest.mark.parametrize("optimizer", [dict(lr=0.01, momentum=0.9), dict(lr=0.01, optimizer="adam")],
                         ids=["sgd", "adam"])
def test_poisson_fit_decreases_the_loss(optimizer, dtype):
    rng = np.random.default_rng(21)
    X = rng.uniform(-1, 1, (200, 3)).astype(dtype)
    rate = np.exp(0.8 * X[:, :1] - 0.5 * X[:, 1:2] + 0.3)
    y = rng.poisson(rate).astype(dtype)
    net = MLP([3, 8, 1], activation="tanh", loss="poisson", dtype=dtype, seed=0)
    before = net.loss(X, y)
    history = net.fit(X, y, epochs=30, batch_size=16, **optimizer)
    assert history["loss"][-1] < 0.8 * history["loss"][0]
    assert net.loss(X, y) < 0.8 * before
    assert (net.predict(X) > 0).all()
    # The fitted means follow the true rates.
    assert np.corrcoef(net.predict(X)[:, 0], rate[:, 0])[0, 1] > 0.9


@pytest.mark.parametrize("sizes", [[3, 2], [784, 256, 128, 10], [400, 100, 40, 2]])
def test_parameter_and_workspace_buffers_start_on_a_cache_line(sizes, dtype):
    net = MLP(sizes, dtype=dtype, seed=0)
    X, y = np.zeros((5, sizes[0]), dtype), np.zeros((5, sizes[-1]), dtype)
    net.fit(X, y, epochs=1, batch_size=1)
    workspace = net._workspace(1)
    buffers = [net.params, net._grad, net._velocity, net._second_moment, net._transposed_buffer,
               workspace.hidden_buffer, workspace.delta_buffer, workspace.logits, workspace.output,
               workspace.batch_X, workspace.batch_Y]
    for buffer in buffers:
        assert buffer.size == 0 or buffer.ctypes.data % 64 == 0  # [3, 2] has no hidden layer
        assert buffer.dtype == np.dtype(dtype) and buffer.flags.c_contiguous and buffer.flags.writeable
    assert net.params.shape == (sum(k * m + m for k, m in zip(sizes[:-1], sizes[1:])),)
