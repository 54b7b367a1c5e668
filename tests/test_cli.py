"""The command line end to end, as a user runs it (`python -m fastmlp ...` in a subprocess,
on tiny files written here): train, predict, info, bench, demo, their error messages and
exit codes; the progress bar and plot_history."""

import csv
import io
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import fastmlp
from fastmlp.progress import ProgressBar
from conftest import write_idx

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(fastmlp.__file__)))
MNIST = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared",
                     "data", "mnist-t10k")
SPECIES = ("setosa", "versicolor", "virginica")
FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")


def run(*args, cwd, env=None, code=None, stderr=subprocess.PIPE):
    """`python -m fastmlp ARGS` (or `python -c CODE`) with this checkout importable."""
    environment = dict(os.environ, **(env or {}))
    environment["PYTHONPATH"] = os.pathsep.join([ROOT, environment.get("PYTHONPATH", "")])
    command = ["-c", code] if code is not None else ["-m", "fastmlp"]
    return subprocess.run([sys.executable, *command, *map(str, args)], cwd=cwd, env=environment,
                          stdout=subprocess.PIPE, stderr=stderr, text=True, timeout=300)


def assert_user_error(done, *fragments):
    """Exit status 1 and one line "fastmlp: error: ..." holding every fragment; no traceback."""
    assert done.returncode == 1, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastmlp: error: "), done.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def read_csv(path_or_text):
    text = path_or_text.read_text() if hasattr(path_or_text, "read_text") else path_or_text
    rows = list(csv.reader(io.StringIO(text)))
    return rows[0], rows[1:]


def write_csv(path, header, rows):
    with open(path, "w", newline="") as stream:
        writer = csv.writer(stream)
        if header:
            writer.writerow(header)
        writer.writerows(rows)
    return path


def flowers(n=150, seed=0):
    """Three well-separated blobs in 4 features, far from the origin (standardisation helps)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    centres = np.array([[50, 30, 10, 2], [60, 28, 45, 13], [65, 30, 55, 20]], float)
    X = np.round(centres[labels] + rng.normal(0, 1.5, (n, 4)), 2)
    return X, np.array(SPECIES)[labels]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """flowers.csv (with a header and species names) and a model trained on it by the CLI."""
    folder = tmp_path_factory.mktemp("flowers")
    X, species = flowers()
    write_csv(folder / "flowers.csv", FEATURES + ("species",),
              [list(map(str, row)) + [s] for row, s in zip(X, species)])
    done = run("train", "flowers.csv", "--layers", "4,16,3", "--epochs", "10", "--lr", "0.1",
               "--validation-split", "0.2", "--standardize", "--seed", "1", "-o", "model.npz",
               cwd=folder)
    assert done.returncode == 0, done.stderr
    return folder, X, species, done


# -------------------------------------------------------------------- train
def test_train_on_a_csv_reports_progress_and_saves_everything_predict_needs(trained):
    folder, X, species, done = trained
    out = done.stdout
    assert "3 classes (setosa, versicolor, virginica)" in out
    assert "split: 120 training, 30 validation" in out
    assert "cross_entropy loss" in out  # the default for class labels
    epochs = [line.split()[1] for line in out.splitlines() if line.startswith("epoch ")]
    assert epochs == [f"{i}/10" for i in range(1, 11)]
    assert "validation accuracy" in out and "saved: model.npz" in out
    assert done.stderr == ""  # no progress bar: stderr is not a terminal

    net = fastmlp.load(folder / "model.npz")
    assert net.layer_sizes == (4, 16, 3) and net.loss_name == "cross_entropy"
    assert net.activations == ("relu",) and net.dtype == np.float32
    meta = net.metadata
    assert meta["feature_names"] == list(FEATURES) and meta["target"] == "species"
    assert meta["classes"] == list(SPECIES) and meta["source"] == "flowers.csv"
    assert len(meta["standardize"]["mean"]) == 4 and min(meta["standardize"]["std"]) > 0
    np.testing.assert_allclose(meta["standardize"]["mean"], X.mean(axis=0), rtol=0.05)
    history = meta["history"]
    assert history["epochs"] == 10 and len(history["loss"]) == len(history["val_loss"]) == 10
    assert history["loss"][-1] < history["loss"][0]
    assert meta["training"]["samples"] == 120 and meta["training"]["validation_samples"] == 30
    assert meta["training"]["lr"] == 0.1 and meta["training"]["seed"] == 1


def test_training_is_reproducible_and_passes_its_options_to_fit(tmp_path):
    X, species = flowers(60)
    write_csv(tmp_path / "d.csv", FEATURES + ("species",),
              [list(map(str, row)) + [s] for row, s in zip(X, species)])
    options = ["--layers", "4,5,3", "--epochs", "3", "--batch-size", "8", "--lr", "0.01",
               "--lr-schedule", "cosine", "--momentum", "0.9", "--weight-decay", "0.001",
               "--dtype", "float64", "--seed", "3", "--activation", "tanh", "--threads", "1",
               "--quiet", "--standardize"]
    first = run("train", "d.csv", *options, "-o", "a.npz", cwd=tmp_path)
    second = run("train", "d.csv", *options, "-o", "b.npz", cwd=tmp_path)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert first.stdout == "" and first.stderr == ""  # --quiet
    a, b = fastmlp.load(tmp_path / "a.npz"), fastmlp.load(tmp_path / "b.npz")
    assert np.array_equal(a.params, b.params)
    assert a.dtype == np.float64 and a.activations == ("tanh",) and a.n_threads == 1
    assert a._has_velocity  # momentum reached fit
    training = a.metadata["training"]
    assert (training["batch_size"], training["lr_schedule"], training["momentum"]) == (8, "cosine", 0.9)

    # The same steps in Python: standardise, then MLP.fit with these options.
    net = fastmlp.MLP([4, 5, 3], activation="tanh", loss="cross_entropy", dtype="float64", seed=3)
    Xs = (X - X.mean(axis=0)) / X.std(axis=0)
    codes = np.unique(species, return_inverse=True)[1]
    net.fit(Xs, codes, epochs=3, batch_size=8, lr=0.01, lr_schedule="cosine", momentum=0.9,
            weight_decay=0.001)
    assert np.array_equal(net.params, a.params)


def test_integer_labels_in_a_headerless_csv_are_mapped_to_classes_and_back(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.choice([2, 5, 7], 90)
    centres = {2: (0, 0), 5: (4, 0), 7: (0, 4)}
    X = np.array([centres[label] for label in labels]) + rng.normal(0, 0.5, (90, 2))
    write_csv(tmp_path / "d.csv", None, [[f"{a:.3f}", f"{b:.3f}", str(c)] for (a, b), c in zip(X, labels)])
    done = run("train", "d.csv", "--layers", "2,8,3", "--epochs", "40", "--lr", "0.1",
               "-o", "m.npz", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "3 classes (2, 5, 7)" in done.stdout and "cross_entropy" in done.stdout
    meta = fastmlp.load(tmp_path / "m.npz").metadata
    assert meta["classes"] == [2, 5, 7] and meta["target"] == "3"
    # A file in the training layout: its third column is the saved target, "3".
    done = run("predict", "m.npz", "d.csv", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    header, rows = read_csv(done.stdout)
    assert header == ["3"] and len(rows) == 90
    predicted = np.array([int(r[0]) for r in rows])
    assert set(predicted) <= {2, 5, 7} and np.mean(predicted == labels) > 0.9


def test_two_class_names_and_one_output_train_binary_cross_entropy(tmp_path):
    rng = np.random.default_rng(3)
    spam = rng.integers(0, 2, 80).astype(bool)
    X = np.where(spam[:, None], 2.0, -2.0) + rng.normal(0, 0.5, (80, 2))
    write_csv(tmp_path / "d.csv", ["a", "b", "kind"],
              [[f"{a:.3f}", f"{b:.3f}", "spam" if s else "ham"] for (a, b), s in zip(X, spam)])
    done = run("train", "d.csv", "--layers", "2,1", "--epochs", "20", "--lr", "0.1",
               "-o", "m.npz", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "binary_cross_entropy loss" in done.stdout and "2 classes (ham, spam)" in done.stdout
    header, rows = read_csv(run("predict", "m.npz", "d.csv", cwd=tmp_path).stdout)
    assert header == ["kind"] and np.mean((np.array([r[0] for r in rows]) == "spam") == spam) > 0.95
    header, rows = read_csv(run("predict", "m.npz", "d.csv", "--proba", cwd=tmp_path).stdout)
    assert header == ["p_ham", "p_spam"]
    np.testing.assert_allclose(np.array(rows, float).sum(axis=1), 1, atol=1e-6)


def test_target_column_chosen_by_name_or_number(tmp_path):
    write_csv(tmp_path / "d.csv", ["y", "a", "b"], [[str(i % 2), str(i), str(-i)] for i in range(20)])
    for target in ("y", "1"):
        done = run("train", "d.csv", "--target", target, "--layers", "2,2", "--epochs", "1",
                   "--quiet", "-o", "m.npz", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        meta = fastmlp.load(tmp_path / "m.npz").metadata
        assert meta["target"] == "y" and meta["feature_names"] == ["a", "b"]


def test_regression_on_an_npz_defaults_to_mse_and_predicts_values(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.3
    np.savez(tmp_path / "r.npz", X=X, y=y)
    done = run("train", "r.npz", "--layers", "3,1", "--epochs", "30", "--lr", "0.05",
               "-o", "m.npz", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "mse loss" in done.stdout and "target 'y': values" in done.stdout
    done = run("predict", "m.npz", "r.npz", "-o", "p.csv", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "mean squared error against 'y'" in done.stdout
    header, rows = read_csv(tmp_path / "p.csv")
    assert header == ["y"]
    np.testing.assert_allclose([float(r[0]) for r in rows], y, atol=0.1)
    assert_user_error(run("predict", "m.npz", "r.npz", "--proba", cwd=tmp_path),
                      "--proba needs a classifier")


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
def test_train_and_predict_on_idx_images_and_labels(tmp_path, compress):
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, 200)
    images = rng.integers(0, 60, (200, 4, 4))
    images[labels == 1, :2] += 180  # class 1: a bright top half
    write_idx(tmp_path / "img", images, 2051, compress)
    write_idx(tmp_path / "lab", labels, 2049, compress)
    done = run("train", "img", "lab", "--layers", "16,8,2", "--epochs", "20", "--lr", "0.1",
               "-o", "m.npz", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "200 samples, 16 features, target 'label': 2 classes (0, 1)" in done.stdout
    done = run("predict", "m.npz", "img", cwd=tmp_path)  # images alone
    assert done.returncode == 0, done.stderr
    header, rows = read_csv(done.stdout)
    assert header == ["label"] and np.mean(np.array([int(r[0]) for r in rows]) == labels) > 0.95
    assert_user_error(run("train", "img", "--layers", "16,2", "-o", "m.npz", cwd=tmp_path),
                      "give the labels file after the images file")


def test_train_writes_a_loss_plot(tmp_path):
    pytest.importorskip("matplotlib")
    np.savez(tmp_path / "d.npz", X=np.eye(4), y=np.arange(4) % 2)
    done = run("train", "d.npz", "--layers", "4,2", "--epochs", "3", "--validation-split", "0.25",
               "--plot", "loss.png", "-o", "m.npz", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------ predict
def test_predict_writes_class_labels_under_a_one_line_header(trained):
    folder, X, species, _ = trained
    done = run("predict", "model.npz", "flowers.csv", "-o", "predictions.csv", cwd=folder)
    assert done.returncode == 0, done.stderr
    assert "predictions: 150 rows -> predictions.csv" in done.stdout
    assert "accuracy against 'species' in the data" in done.stdout
    header, rows = read_csv(folder / "predictions.csv")
    assert header == ["species"] and all(len(r) == 1 for r in rows)
    predicted = np.array([r[0] for r in rows])
    assert np.mean(predicted == species) > 0.9


def test_predict_takes_features_only_or_in_another_column_order(trained):
    folder, X, species, _ = trained
    layout = run("predict", "model.npz", "flowers.csv", cwd=folder)
    order = [3, 0, 2, 1]
    write_csv(folder / "new.csv", [FEATURES[i] for i in order], [list(map(str, row[order])) for row in X])
    features_only = run("predict", "model.npz", "new.csv", cwd=folder)
    assert layout.returncode == 0 and features_only.returncode == 0, features_only.stderr
    assert layout.stdout == features_only.stdout


def test_predict_proba_gives_one_column_per_class(trained):
    folder, X, species, _ = trained
    done = run("predict", "model.npz", "flowers.csv", "--proba", "-o", "p.csv", cwd=folder)
    assert done.returncode == 0, done.stderr
    header, rows = read_csv(folder / "p.csv")
    assert header == [f"p_{s}" for s in SPECIES]
    P = np.array(rows, dtype=float)
    assert P.shape == (150, 3) and (P >= 0).all()
    np.testing.assert_allclose(P.sum(axis=1), 1, atol=1e-5)
    labels = read_csv(run("predict", "model.npz", "flowers.csv", cwd=folder).stdout)[1]
    assert [SPECIES[i] for i in P.argmax(axis=1)] == [r[0] for r in labels]


def test_predict_reuses_the_saved_standardisation(trained):
    folder, X, species, _ = trained
    net = fastmlp.load(folder / "model.npz")
    mean, std = (np.array(net.metadata["standardize"][k]) for k in ("mean", "std"))
    expected = [SPECIES[i] for i in net.predict((X - mean) / std).argmax(axis=1)]
    unscaled = [SPECIES[i] for i in net.predict(X).argmax(axis=1)]
    assert expected != unscaled  # the test can tell whether the statistics were applied
    _, rows = read_csv(run("predict", "model.npz", "flowers.csv", cwd=folder).stdout)
    assert [r[0] for r in rows] == expected


def test_predict_with_a_python_model_into_a_pipe_that_closes_early(tmp_path):
    net = fastmlp.MLP([1, 1], seed=0)
    net.save(tmp_path / "m.npz")
    (tmp_path / "x.csv").write_text("".join(f"{i}\n" for i in range(30000)))
    process = subprocess.Popen([sys.executable, "-m", "fastmlp", "predict", "m.npz", "x.csv"],
                               cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=dict(os.environ, PYTHONPATH=ROOT))
    header = process.stdout.readline()
    first = float(process.stdout.readline())
    process.stdout.close()  # like `| head -2`: the output is larger than the pipe's buffer
    stderr = process.stderr.read().decode()
    process.wait(timeout=300)
    assert header == b"prediction\n"  # no target name saved: a generic one
    assert first == pytest.approx(float(net.predict([[0.0]])[0, 0]))
    assert process.returncode == 1 and stderr == ""


# --------------------------------------------------------------------- info
def test_info_describes_architecture_parameters_and_history(trained):
    folder, *_ = trained
    done = run("info", "model.npz", cwd=folder)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "network: 4-16-3, relu hidden, softmax output, cross_entropy loss, float32" in out
    assert "parameters: 131 (112 weights, 19 biases)" in out
    assert "sepal_length" in out and "3 classes (setosa, versicolor, virginica)" in out
    assert "standardized" in out
    assert "training: 10 epochs on 120 samples (30 held out for validation)" in out
    assert "\nloss: " in out and "(epoch 10)" in out and "\nval_loss: " in out


def test_info_on_a_model_saved_from_python(tmp_path):
    fastmlp.MLP([3, 2], dtype="float64").save(tmp_path / "m.npz")
    done = run("info", "m.npz", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "network: 3-2, no hidden layer" in done.stdout and "float64" in done.stdout
    assert "parameters: 8 (6 weights, 2 biases)" in done.stdout
    assert "none saved" in done.stdout


# -------------------------------------------------------------- user errors
@pytest.fixture
def files(tmp_path):
    write_csv(tmp_path / "good.csv", ["a", "b", "y"], [["1", "2", "0"], ["3", "4", "1"]])
    write_csv(tmp_path / "three.csv", ["a", "kind"], [["1", "x"], ["2", "y"], ["3", "z"]])
    write_csv(tmp_path / "values.csv", ["a", "b", "y"], [["1", "2", "0.5"], ["3", "4", "1.5"]])
    (tmp_path / "bad.csv").write_text("a,b,y\n1,2,0\n3,oops,1\n")
    (tmp_path / "ragged.csv").write_text("a,b,y\n1,2,0\n3,4\n")
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "notes.txt").write_text("not a model\n")
    np.savez(tmp_path / "arrays.npz", X=np.ones((2, 2)))
    fastmlp.MLP([2, 2], loss="cross_entropy").save(tmp_path / "m2.npz")
    return tmp_path


@pytest.mark.parametrize("args, fragments", [
    (["train", "nothere.csv", "--layers", "2,2", "-o", "m.npz"], ["nothere.csv: no such file"]),
    (["train", "bad.csv", "--layers", "2,2", "-o", "m.npz"],
     ["bad.csv, line 3, column 'b': 'oops' is not a number"]),
    (["train", "ragged.csv", "--layers", "2,2", "-o", "m.npz"], ["ragged.csv, line 3: 2 fields"]),
    (["train", "empty.csv", "--layers", "2,2", "-o", "m.npz"], ["empty.csv is empty"]),
    (["train", "good.csv", "--target", "colour", "--layers", "2,2", "-o", "m.npz"],
     ["no column 'colour'", "its columns are a, b, y"]),
    (["train", "good.csv", "--layers", "3,2", "-o", "m.npz"],
     ["has 2 features, but --layers starts with 3"]),
    (["train", "good.csv", "--layers", "2,3,1", "--loss", "cross_entropy", "-o", "m.npz"],
     ["2 classes (0, 1)", "make the last of --layers 2"]),
    (["train", "three.csv", "--layers", "1,1", "-o", "m.npz"],
     ["3 classes (x, y, z)", "binary_cross_entropy needs 2", "--loss cross_entropy"]),
    (["train", "good.csv", "--layers", "2,2", "--threads", "9999", "-o", "m.npz"], ["--threads 9999"]),
    (["train", "good.csv", "--layers", "2,2", "-o", "no/such/dir/m.npz"], ["does not exist"]),
    (["train", "arrays.npz", "--layers", "2,2", "-o", "m.npz"], ["needs an array named y"]),
    (["train", "values.csv", "--layers", "2,1", "--lr", "1e30", "-o", "m.npz"], ["training diverged"]),
    (["predict", "nothere.npz", "good.csv"], ["nothere.npz: no such file"]),
    (["predict", "notes.txt", "good.csv"], ["notes.txt is not a fastmlp model file"]),
    (["predict", "arrays.npz", "good.csv"], ["arrays.npz is not a fastmlp model file"]),
    (["predict", "m2.npz", "empty.csv"], ["empty.csv is empty"]),
    (["predict", "m2.npz", "bad.csv"], ["line 3", "'oops'"]),
    (["predict", "m2.npz", "good.csv", "good.csv"], ["not an IDX file"]),
    (["info", "notes.txt"], ["notes.txt is not a fastmlp model file"]),
    (["info", "nothere.npz"], ["nothere.npz: no such file"]),
])
def test_user_mistakes_give_one_line_and_exit_status_1(files, args, fragments):
    assert_user_error(run(*args, cwd=files), *fragments)


def test_feature_count_that_does_not_match_the_model_names_both_numbers(files):
    fastmlp.MLP([5, 2], loss="cross_entropy").save(files / "m5.npz")
    assert_user_error(run("predict", "m5.npz", "good.csv", cwd=files),
                      "good.csv has 3 feature columns, but the model expects 5")


def test_class_names_with_a_regression_loss_are_refused(tmp_path):
    write_csv(tmp_path / "d.csv", ["a", "kind"], [["1", "cat"], ["2", "dog"]])
    assert_user_error(run("train", "d.csv", "--layers", "1,1", "--loss", "mse", "-o", "m.npz",
                          cwd=tmp_path), "holds class names (e.g. 'cat')", "--loss cross_entropy")


@pytest.mark.parametrize("args, option", [
    (["train", "d.csv", "-o", "m.npz"], "--layers"),
    (["train", "d.csv", "--layers", "4,x", "-o", "m.npz"], "--layers"),
    (["train", "d.csv", "--layers", "4"], "--layers"),
    (["train", "d.csv", "--layers", "4,2"], "-o"),
    (["train", "d.csv", "--layers", "4,2", "-o", "m", "--validation-split", "1"], "--validation-split"),
    (["train", "d.csv", "--layers", "4,2", "-o", "m", "--lr-schedule", "fast"], "--lr-schedule"),
    (["train", "d.csv", "--layers", "4,2", "-o", "m", "--momentum", "-1"], "--momentum"),
    (["train", "d.csv", "--layers", "4,2", "-o", "m", "--seed", "-1"], "--seed"),
    (["predict", "m.npz", "d.csv", "--bogus"], "--bogus"),
    (["predict", "m.npz"], "DATA"),
    ([], "COMMAND"),
])
def test_usage_errors_exit_with_status_2(tmp_path, args, option):
    done = run(*args, cwd=tmp_path)
    assert done.returncode == 2
    assert option in done.stderr and "Traceback" not in done.stderr


def test_plot_without_matplotlib_says_how_to_install_it_before_training(files):
    code = ("import sys; sys.modules['matplotlib'] = None\n"
            "from fastmlp.cli import main; sys.exit(main(sys.argv[1:]))")
    done = run("train", "good.csv", "--layers", "2,2", "--plot", "p.png", "-o", "m.npz",
               code=code, cwd=files)
    assert_user_error(done, "pip install fastmlp[plot]")
    assert not (files / "m.npz").exists()


def test_help_lists_every_subcommand(tmp_path):
    done = run("--help", cwd=tmp_path)
    assert done.returncode == 0
    for command in ("demo", "train", "predict", "info", "bench"):
        assert command in done.stdout


# -------------------------------------------------------------------- bench
def test_bench_passes_its_options_to_perf_compare(tmp_path):
    if not os.path.isfile(os.path.join(ROOT, "perf", "compare.py")):
        pytest.skip("not a source checkout")
    done = run("bench", "--", "--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "usage: compare.py" in done.stdout and "--quick" in done.stdout


def test_bench_without_perf_directory_says_so(tmp_path):
    # An installed package: fastmlp/ without the checkout's perf/ beside it.
    shutil.copytree(os.path.join(ROOT, "fastmlp"), tmp_path / "site" / "fastmlp",
                    ignore=shutil.ignore_patterns("__pycache__"))
    done = subprocess.run([sys.executable, "-m", "fastmlp", "bench", "--", "--quick"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=str(tmp_path / "site"),
                                   FASTMLP_NO_CACHE="1"))
    assert_user_error(done, "perf/compare.py", "source checkout")


# --------------------------------------------------------------------- demo
def test_demo_quiet_with_a_plot(tmp_path):
    pytest.importorskip("matplotlib")
    done = run("demo", "--samples", "500", "--epochs", "2", "--quiet", "--plot", "demo.png",
               "--dtype", "float64", "--threads", "1", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert not [line for line in done.stdout.splitlines() if line.startswith("epoch ")]
    assert "test accuracy" in done.stdout and "plot: demo.png" in done.stdout
    assert (tmp_path / "demo.png").read_bytes()[:4] == b"\x89PNG"


# ------------------------------------------------------------- progress bar
class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_shows_epoch_loss_speed_and_eta_on_a_terminal():
    stream = FakeTerminal()
    bar = ProgressBar(4, 1000, stream=stream)
    with bar:
        bar(0, {"loss": 0.5, "lr": 0.1, "time": 0.01, "val_loss": 0.6})
        bar(1, {"loss": 0.25, "lr": 0.1, "time": 0.002})
    text = stream.getvalue()
    assert text.startswith("\repoch 0/4") and text.endswith("\n")
    assert "epoch 1/4 [##--------] loss 0.5  val_loss 0.6  ETA " in text
    assert "100k samples/s" in text and "500k samples/s" in text
    assert "epoch 2/4 [#####-----] loss 0.25" in text


def test_progress_bar_draws_nothing_when_not_a_terminal():
    stream = io.StringIO()
    bar = ProgressBar(2, 10, stream=stream)
    with bar:
        bar(0, {"loss": 1.0, "lr": 0.1, "time": 0.1})
    assert stream.getvalue() == ""
    assert ProgressBar(2, 10, stream=FakeTerminal(), enabled=False).enabled is False


def test_progress_bar_as_a_fit_callback_finishes_with_the_total_time():
    stream = FakeTerminal()
    X, y = np.random.default_rng(0).normal(size=(40, 3)), np.arange(40) % 2
    net = fastmlp.MLP([3, 2], loss="cross_entropy", seed=0)
    with ProgressBar(3, len(X), stream=stream) as bar:
        net.fit(X, y, epochs=3, callbacks=[bar])
    assert "epoch 3/3 [##########]" in stream.getvalue() and "done in 0:0" in stream.getvalue()


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
@pytest.mark.parametrize("quiet", [False, True])
def test_train_in_a_terminal_draws_the_bar_on_stderr_unless_quiet(files, quiet):
    master, slave = os.openpty()
    try:
        # The bar's few hundred bytes fit the terminal's buffer, read once the run is over
        # (while this process still holds the terminal open, so the buffer stays readable).
        done = run("train", "good.csv", "--layers", "2,2", "--epochs", "3", "-o", "m.npz",
                   *(["--quiet"] if quiet else []), cwd=files, stderr=slave)
        os.set_blocking(master, False)
        terminal = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            terminal += chunk
    finally:
        os.close(slave)
        os.close(master)
    terminal = terminal.decode()
    assert done.returncode == 0
    if quiet:
        assert terminal == "" and done.stdout == ""
    else:
        assert "epoch 3/3 [##########] loss" in terminal and "samples/s" in terminal
        assert "epoch 3/3  loss" in done.stdout  # the plain lines go to stdout


# --------------------------------------------------------------- plotting
def test_plot_history_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    figure = fastmlp.plot_history({"loss": [1.0, 0.5, 0.1], "val_loss": [1.1, 0.7, 0.4]},
                                  tmp_path / "h.png")
    assert (tmp_path / "h.png").read_bytes()[:4] == b"\x89PNG"
    axes = figure.axes[0]
    assert [line.get_label() for line in axes.lines] == ["training loss", "validation loss"]
    with pytest.raises(ValueError, match="non-empty 'loss'"):
        fastmlp.plot_history({"loss": []})


def test_plot_history_without_matplotlib_names_the_extra(tmp_path):
    code = ("import sys; sys.modules['matplotlib'] = None\n"
            "import fastmlp\n"
            "try:\n    fastmlp.plot_history({'loss': [1.0]}, 'h.png')\n"
            "except ImportError as error:\n    print(error)")
    done = run(code=code, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "pip install fastmlp[plot]" in done.stdout


# -------------------------------------------------------------- real data
@pytest.mark.skipif(not os.path.isdir(MNIST), reason="../shared/data/mnist-t10k is not here")
def test_mnist_one_epoch_learns_far_above_chance(tmp_path):
    from fastmlp.datasets import load_mnist_idx

    X, y = load_mnist_idx(os.path.join(MNIST, "t10k-images-idx3-ubyte.gz"),
                          os.path.join(MNIST, "t10k-labels-idx1-ubyte.gz"))
    pixels = np.round(X * 255).reshape(-1, 28, 28)
    write_idx(tmp_path / "train-images", pixels[:2000], 2051)
    write_idx(tmp_path / "train-labels.gz", y[:2000], 2049, compress=True)
    write_idx(tmp_path / "test-images.gz", pixels[8000:], 2051, compress=True)
    write_idx(tmp_path / "test-labels", y[8000:], 2049)
    done = run("train", "train-images", "train-labels.gz", "--layers", "784,64,10", "--epochs", "1",
               "--batch-size", "16", "--lr", "0.05", "-o", "mnist.npz", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    done = run("predict", "mnist.npz", "test-images.gz", "test-labels", "-o", "p.csv", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    header, rows = read_csv(tmp_path / "p.csv")
    accuracy = np.mean(np.array([int(r[0]) for r in rows]) == y[8000:])
    assert header == ["label"] and len(rows) == 2000
    # Chance is 0.1; seeds 0-4 give 0.77-0.83 here, so 0.6 leaves room for rounding changes.
    assert accuracy > 0.6, accuracy
