"""The ``fastmlp`` command line (also ``python -m fastmlp``): train a network on a data file,
predict with it, inspect a model file, run the demo or the speed comparison."""

import argparse
import csv
import math
import os
import subprocess
import sys
import time

import numpy as np

from .datasets import DataFileError, csv_columns, detect_format, load_csv, load_mnist_idx, load_npz
from .errors import DivergenceError, ModelFileError
from .progress import ProgressBar
from .schedules import SCHEDULES

HIDDEN_ACTIVATIONS = ("relu", "tanh", "sigmoid", "leaky_relu", "identity")
LOSSES = ("cross_entropy", "binary_cross_entropy", "mse", "mae", "rmse")
CLASSIFICATION_LOSSES = ("cross_entropy", "binary_cross_entropy")


class CLIError(Exception):
    """A user mistake or bad input: printed as one line, exit status 1, no traceback."""


# ------------------------------------------------------------ argument types
def _int_at_least(text, minimum):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected a number >= {minimum}, got {value}")
    return value


def _positive_int(text):
    return _int_at_least(text, 1)


def _non_negative_int(text):
    return _int_at_least(text, 0)


def _real(text, low, low_open, high=math.inf, high_open=True):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and (value > low if low_open else value >= low)
            and (value < high if high_open else value <= high)):
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise argparse.ArgumentTypeError(f"expected a finite number in {interval}, got {text}")
    return value


def _positive_float(text):
    return _real(text, 0, True)


def _non_negative_float(text):
    return _real(text, 0, False)


def _fraction(text):
    return _real(text, 0, False, 1, True)


def _layers(text):
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers such as "
                                         f"400,100,40,2, got {text!r}") from None
    if len(sizes) < 2 or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected at least two sizes >= 1 (inputs,...,outputs), "
                                         f"got {text!r}")
    return sizes


# ------------------------------------------------------------------ helpers
def _require_matplotlib():
    """Fail before training, not after it, when --plot cannot be drawn."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise CLIError("--plot needs matplotlib, an optional extra: pip install fastmlp[plot]") from None


def _check_writable(path, what):
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise CLIError(f"{what} {path} is a directory")
    if not os.path.isdir(directory):
        raise CLIError(f"cannot write {what} {path}: the directory {directory} does not exist")
    if not os.access(directory, os.W_OK):
        raise CLIError(f"cannot write {what} {path}: the directory {directory} is not writable")


def _listing(values, limit=10):
    values = [str(v) for v in values]
    if len(values) <= limit:
        return ", ".join(values)
    return ", ".join(values[:limit - 1]) + f", ..., {values[-1]}"


def _read_data(paths, target=None):
    """(X as float64, y or None, feature names or None, target name, format) from DATA."""
    if len(paths) > 2:
        raise CLIError(f"DATA is one file (CSV or .npz) or two (MNIST IDX images and labels), "
                       f"got {len(paths)}")
    kind = detect_format(paths[0])
    if len(paths) == 2 and kind != "idx":
        raise CLIError(f"two DATA files are read as MNIST IDX images and labels, but {paths[0]} "
                       f"is not an IDX file")
    if kind == "npy":
        raise CLIError(f"{paths[0]} holds a single NumPy array; save features and target together "
                       f"with numpy.savez(path, X=X, y=y)")
    if target is not None and kind != "csv":
        raise CLIError(f"--target names a CSV column, but {paths[0]} is not a CSV file")
    if kind == "idx":
        X, y = load_mnist_idx(*paths, dtype=np.float64)
        return X, y, None, "label", kind
    if kind == "npz":
        X, y = load_npz(paths[0], dtype=np.float64)
        return X, y, None, "y", kind
    column = -1 if target is None else _csv_target(paths[0], target)
    X, y, names, target_name = load_csv(paths[0], target=column, dtype=np.float64, return_names=True)
    return X, y, names, target_name, kind


def _csv_target(path, target):
    """--target as load_csv takes it: a column name, else a column number counted from 1."""
    columns, _ = csv_columns(path)
    if target not in columns and target.isdigit() and 1 <= int(target) <= len(columns):
        return int(target) - 1
    return target


def _encode_target(y, loss, n_outputs, target_name):
    """(targets for fit, loss name, class labels or None): class labels, integers or
    strings, become 0..k-1 for training; predict maps them back."""
    labels = y.ndim == 1 and y.dtype.kind in "iuU"
    if loss is None:
        if labels and n_outputs > 1:
            loss = "cross_entropy"
        elif y.dtype.kind == "U" and n_outputs == 1:
            loss = "binary_cross_entropy"
        else:
            loss = "mse"
    if loss in CLASSIFICATION_LOSSES and y.ndim == 1:
        if not labels:
            example = y[y != np.round(y)][0]
            raise CLIError(f"--loss {loss} needs class labels, but the target {target_name!r} holds "
                           f"numbers that are not whole (e.g. {example:g}); use --loss mse for values")
        binary = loss == "binary_cross_entropy"
        if binary and n_outputs != 1:
            raise CLIError(f"--loss binary_cross_entropy with class labels needs one output; "
                           f"--layers ends in {n_outputs}")
        n_classes = 2 if binary else n_outputs
        # Labels that already are 0..k-1 keep their numbers (a class may be absent from
        # the data); any others are numbered in sorted order.
        if y.dtype.kind != "U" and y.min() >= 0 and y.max() < n_classes:
            classes, codes = np.arange(n_classes), y
        else:
            classes, codes = np.unique(y, return_inverse=True)
        if len(classes) != n_classes:
            found = f"the target {target_name!r} holds {len(classes)} classes ({_listing(classes)})"
            if binary:
                raise CLIError(f"{found}, but binary_cross_entropy needs 2; use --loss "
                               f"cross_entropy with --layers ending in {len(classes)}")
            raise CLIError(f"{found}, but the network has {n_outputs} outputs; make the last "
                           f"of --layers {len(classes)}")
        return (codes.astype(np.float64) if binary else codes), loss, classes.tolist()
    if y.dtype.kind == "U":
        raise CLIError(f"the target {target_name!r} holds class names (e.g. {str(y[0])!r}), which "
                       f"--loss {loss} cannot fit; use --loss cross_entropy")
    return y.astype(np.float64), loss, None


def _epoch_logger(epochs, bar):
    def log(epoch, metrics):
        line = f"epoch {epoch + 1}/{epochs}  loss {metrics['loss']:.6g}"
        if "val_loss" in metrics:
            line += f"  val_loss {metrics['val_loss']:.6g}"
        bar.write(f"{line}  {metrics['time']:.3f}s")
    return log


def _fit(net, X, y, args, validation_data=None, lr_schedule="constant", momentum=0.0,
         weight_decay=0.0):
    """net.fit with one printed line per epoch and, in a terminal, a progress bar beneath
    them (neither with --quiet); user mistakes in the options become CLIErrors."""
    bar = ProgressBar(args.epochs, len(X), enabled=False if args.quiet else None)
    callbacks = [] if args.quiet else [_epoch_logger(args.epochs, bar), bar]
    try:
        with bar:
            return net.fit(X, y, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                           lr_schedule=lr_schedule, momentum=momentum, weight_decay=weight_decay,
                           validation_data=validation_data, callbacks=callbacks)
    except (ValueError, TypeError) as error:
        raise CLIError(str(error)) from None


def _make_net(layers, args, **options):
    import numba

    import fastmlp

    if args.threads is not None and args.threads > numba.config.NUMBA_NUM_THREADS:
        raise CLIError(f"--threads {args.threads} exceeds the {numba.config.NUMBA_NUM_THREADS} "
                       f"threads available (NUMBA_NUM_THREADS)")
    try:
        return fastmlp.MLP(layers, dtype=args.dtype, seed=args.seed, n_threads=args.threads, **options)
    except (ValueError, TypeError) as error:
        raise CLIError(str(error)) from None


def _plot(history, path, title):
    from .plotting import plot_history

    plot_history(history, path, title=title)


# --------------------------------------------------------------------- demo
def demo(args):
    """Train the 400-100-40-2 network on generated 20x20 shape images and report accuracy."""
    import numba

    from .datasets import SHAPE_CLASSES, make_shapes

    if args.plot:
        _require_matplotlib()
        _check_writable(args.plot, "plot")
    n_test = args.samples // 5
    X, y = make_shapes(args.samples + n_test, seed=args.seed, dtype=args.dtype)
    X_train, y_train, X_test, y_test = X[:args.samples], y[:args.samples], X[args.samples:], y[args.samples:]
    net = _make_net([400, 100, 40, 2], args, activation="relu", loss="cross_entropy")
    threads = args.threads or numba.get_num_threads()
    print(f"data: {args.samples} training + {n_test} test images, 20x20 pixels, "
          f"2 classes ({' / '.join(SHAPE_CLASSES)}), generated with seed {args.seed}")
    print(f"network: 400-100-40-2, relu hidden, softmax + cross-entropy, {net.n_params} parameters, "
          f"{args.dtype}, {threads} thread(s)")
    print(f"training: {args.epochs} epochs of SGD, batch size {args.batch_size}, lr {args.lr} "
          f"(the first epoch includes JIT compilation, or loading it from the cache)", flush=True)
    began = time.perf_counter()
    history = _fit(net, X_train, y_train, args, validation_data=(X_test, y_test))
    total = time.perf_counter() - began
    accuracy = float(np.mean(net.predict(X_test).argmax(axis=1) == y_test))
    steady = history["time"][1:] or history["time"]
    rate = args.samples / float(np.median(steady))
    print(f"test accuracy: {accuracy:.2%}")
    print(f"time: {total:.2f} s in all; {rate:,.0f} samples/s per epoch after the first (median)")
    if args.plot:
        _plot(history, args.plot, "fastmlp demo: 400-100-40-2 on shape images")
        print(f"plot: {args.plot}")
    return 0


# -------------------------------------------------------------------- train
def train(args):
    """Train a network on a data file and save it."""
    _check_writable(args.output, "model file")
    if args.plot:
        _require_matplotlib()
        _check_writable(args.plot, "plot")
    X, y, feature_names, target_name, kind = _read_data(args.data, args.target)
    source = ", ".join(os.path.basename(p) for p in args.data)
    if y is None:
        raise CLIError(f"{args.data[0]} holds no target to train on"
                       + (": give the labels file after the images file" if kind == "idx"
                          else ": the .npz needs an array named y" if kind == "npz" else ""))
    if X.shape[1] != args.layers[0]:
        raise CLIError(f"{source} has {X.shape[1]} features, but --layers starts with "
                       f"{args.layers[0]}; the first size must be {X.shape[1]}")
    Y, loss, classes = _encode_target(y, args.loss, args.layers[-1], target_name)

    n = X.shape[0]
    # Without a split, the rows stay in file order, so training equals MLP.fit on the file.
    order = np.arange(n)
    n_val = 0
    if args.validation_split > 0:
        n_val = min(max(round(n * args.validation_split), 1), n - 1)
        if n_val < 1:
            raise CLIError(f"--validation-split needs at least 2 samples; {source} has {n}")
        order = np.random.default_rng(args.seed).permutation(n)
    train_rows, val_rows = order[:n - n_val], order[n - n_val:]

    standardize = None
    if args.standardize:
        # Statistics of the training rows only, so validation stays unseen; a constant
        # feature keeps scale 1 rather than dividing by zero.
        mean = X[train_rows].mean(axis=0)
        std = X[train_rows].std(axis=0)
        std[std == 0] = 1.0
        X = (X - mean) / std
        standardize = {"mean": mean.tolist(), "std": std.tolist()}
    X = X.astype(args.dtype)
    X_train, Y_train = X[train_rows], Y[train_rows]
    validation = (X[val_rows], Y[val_rows]) if n_val else None

    net = _make_net(args.layers, args, activation=args.activation, loss=loss)
    if not args.quiet:
        what = (f"{len(classes)} classes ({_listing(classes)})" if classes is not None
                else "values")
        print(f"data: {source} ({kind}), {n} samples, {X.shape[1]} features, "
              f"target {target_name!r}: {what}")
        if n_val:
            print(f"split: {n - n_val} training, {n_val} validation (shuffled with seed {args.seed})")
        hidden = f"{args.activation} hidden" if len(args.layers) > 2 else "no hidden layer"
        print(f"network: {'-'.join(map(str, args.layers))}, {hidden}, "
              f"{net.output_activation} output, {loss} loss, {net.n_params} parameters, {args.dtype}")
        print(f"training: {args.epochs} epochs of SGD, batch size {args.batch_size}, lr {args.lr:g} "
              f"({args.lr_schedule}), momentum {args.momentum:g}"
              + (", standardized features" if standardize else ""), flush=True)
    began = time.perf_counter()
    history = _fit(net, X_train, Y_train, args, validation, args.lr_schedule, args.momentum,
                   args.weight_decay)
    seconds = time.perf_counter() - began

    net.metadata = {
        "source": source,
        "format": kind,
        "feature_names": feature_names,
        "target": target_name,
        "classes": classes,
        "standardize": standardize,
        "history": {"loss": history["loss"], "val_loss": history.get("val_loss"),
                    "epochs": len(history["loss"]), "time": seconds},
        "training": {"samples": int(n - n_val), "validation_samples": int(n_val),
                     "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
                     "lr_schedule": args.lr_schedule, "momentum": args.momentum,
                     "weight_decay": args.weight_decay, "seed": args.seed},
    }
    net.save(args.output)
    if args.plot:
        _plot(history, args.plot, f"fastmlp train: {source}")
    if not args.quiet:
        scores = [_score(net, classes, X_train, Y_train, "training")]
        if validation:
            scores.append(_score(net, classes, *validation, "validation"))
        print(f"{'; '.join(scores)}; {seconds:.2f} s")
        print(f"saved: {args.output}" + (f"; plot: {args.plot}" if args.plot else ""))
    return 0


def _score(net, classes, X, Y, name):
    if classes is not None:
        predicted = _class_indices(net, net.predict(X))
        return f"{name} accuracy {np.mean(predicted == Y):.2%}"
    return f"{name} loss {net.loss(X, Y):.6g}"


def _class_indices(net, P):
    if P.shape[1] == 1:
        return (P[:, 0] > 0.5).astype(np.int64)
    return P.argmax(axis=1)


# ------------------------------------------------------------------ predict
def _load_model(path):
    import fastmlp

    if not os.path.exists(path):
        raise CLIError(f"{path}: no such file")
    if os.path.isdir(path):
        raise CLIError(f"{path} is a directory, not a model file")
    kind = detect_format(path)
    if kind != "npz":
        # np.load would guess at other files (as pickles); name what the file is instead.
        what = {"csv": "a text file", "idx": "an IDX data file", "npy": "a single NumPy array"}[kind]
        raise CLIError(f"{path} is not a fastmlp model file: it is {what}, not an .npz archive "
                       f"written by `fastmlp train` or MLP.save")
    return fastmlp.load(path)


def _read_prediction_data(paths, net):
    """X and y (or None) in the model's feature layout: the target column, when the file
    holds it by its saved name, is set aside; named columns are put in the training order."""
    meta = net.metadata
    n_inputs = net.layer_sizes[0]
    kind = detect_format(paths[0])
    if kind != "csv" or len(paths) != 1:
        X, y, _, _, _ = _read_data(paths)
        return X, y
    columns, has_header = csv_columns(paths[0])
    target = meta.get("target")
    y = None
    if target in columns and len(columns) == n_inputs + 1:
        try:
            X, y, names, _ = load_csv(paths[0], target=target, dtype=np.float64, return_names=True)
        except DataFileError:
            # Predicting does not need the target: a column that does not parse is skipped.
            X, _, names, _ = load_csv(paths[0], target=None, drop=[target], dtype=np.float64,
                                      return_names=True)
    else:
        X, _, names, _ = load_csv(paths[0], target=None, dtype=np.float64, return_names=True)
    trained_names = meta.get("feature_names")
    if has_header and trained_names and sorted(names) == sorted(trained_names) and names != trained_names:
        X = X[:, [names.index(name) for name in trained_names]]
    return X, y


def predict(args):
    """Predict with a saved model: class labels or values, or class probabilities with --proba."""
    if args.output:
        _check_writable(args.output, "output")
    net = _load_model(args.model)
    meta = net.metadata
    X, y = _read_prediction_data(args.data, net)
    n_inputs = net.layer_sizes[0]
    if X.shape[1] != n_inputs:
        raise CLIError(f"{', '.join(args.data)} has {X.shape[1]} feature columns, but the model "
                       f"expects {n_inputs}")
    if meta.get("standardize"):
        X = (X - np.array(meta["standardize"]["mean"])) / np.array(meta["standardize"]["std"])
    P = net.predict(X)
    target = meta.get("target") or "prediction"
    classes = meta.get("classes")
    if classes is None and (net.loss_name == "cross_entropy"
                            or (net.loss_name == "binary_cross_entropy" and P.shape[1] == 1)):
        classes = list(range(max(P.shape[1], 2)))
    indices = None if classes is None else _class_indices(net, P)
    if args.proba:
        if classes is None:
            raise CLIError(f"--proba needs a classifier; this model predicts values "
                           f"(loss {net.loss_name})")
        if P.shape[1] == 1:
            P = np.concatenate([1 - P, P], axis=1)
        header = [f"p_{c}" for c in classes]
        rows = ([str(v) for v in row] for row in P)
    elif classes is not None:
        header = [target]
        rows = ([classes[i]] for i in indices)
    else:
        header = [target] if P.shape[1] == 1 else [f"{target}{i + 1}" for i in range(P.shape[1])]
        rows = ([str(v) for v in row] for row in P)

    if args.output:
        with open(args.output, "w", newline="") as stream:
            _write_rows(stream, header, rows)
    else:
        _write_rows(sys.stdout, header, rows)
    # Standard output may hold the predictions; the summary then goes to stderr.
    report = sys.stdout if args.output else sys.stderr
    if args.output:
        print(f"predictions: {len(P)} rows -> {args.output}", file=report)
    if y is not None and classes is not None and y.ndim == 1:
        predicted = np.array([str(classes[i]) for i in indices])
        accuracy = np.mean(predicted == y.astype(str))
        print(f"accuracy against {target!r} in the data: {accuracy:.2%}", file=report)
    elif y is not None and classes is None and y.dtype.kind != "U" and y.size == P.size:
        error = np.mean((P.reshape(-1) - y.reshape(-1)) ** 2)
        print(f"mean squared error against {target!r} in the data: {error:.6g}", file=report)
    return 0


def _write_rows(stream, header, rows):
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)


# --------------------------------------------------------------------- info
def info(args):
    """Describe a saved model: architecture, parameters, data and training history."""
    net = _load_model(args.model)
    meta = net.metadata
    sizes = "-".join(map(str, net.layer_sizes))
    hidden = (", ".join(dict.fromkeys(net.activations)) + " hidden" if net.activations
              else "no hidden layer")
    print(f"model: {args.model}")
    print(f"network: {sizes}, {hidden}, {net.output_activation} output, "
          f"{net.loss_name} loss, {net.dtype.name}")
    weights = sum(W.size for W in net.weights)
    print(f"parameters: {net.n_params} ({weights} weights, {net.n_params - weights} biases)")
    if not meta.get("history"):
        print("history: none saved (this model was not trained by `fastmlp train`)")
        return 0
    names = meta.get("feature_names")
    features = f"{net.layer_sizes[0]} features" + (f" ({_listing(names)})" if names else "")
    classes = meta.get("classes")
    target = f"target {meta.get('target')!r}" + (f", {len(classes)} classes ({_listing(classes)})"
                                                 if classes is not None else ", values")
    print(f"data: {meta.get('source')} ({meta.get('format')}), {features}, {target}")
    if meta.get("standardize"):
        print("preprocessing: features standardized with the training rows' mean and std")
    t = meta.get("training", {})
    history = meta["history"]
    print(f"training: {history['epochs']} epochs on {t.get('samples')} samples"
          + (f" ({t['validation_samples']} held out for validation)" if t.get("validation_samples") else "")
          + f", batch size {t.get('batch_size')}, lr {t.get('lr')} ({t.get('lr_schedule')}), "
          f"momentum {t.get('momentum'):g}, seed {t.get('seed')}, {history['time']:.2f} s")
    for key in ("loss", "val_loss"):
        values = history.get(key)
        if values:
            best = int(np.argmin(values))
            print(f"{key}: {values[0]:.6g} (epoch 1) -> {values[-1]:.6g} (epoch {len(values)}), "
                  f"lowest {values[best]:.6g} (epoch {best + 1})")
    return 0


# -------------------------------------------------------------------- bench
def _compare_script():
    """perf/compare.py of a source checkout (beside the package); None in an installed package."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = os.path.join(root, "perf", "compare.py")
    return script if os.path.isfile(script) else None


def bench(args):
    """Run perf/compare.py (a source checkout's speed comparison with the peers installed here)."""
    script = _compare_script()
    if script is None:
        raise CLIError("fastmlp bench runs perf/compare.py, which comes with a source checkout of "
                       "fastmlp, not with the installed package; run it from a checkout (its "
                       "perf/ directory beside fastmlp/)")
    options = list(args.options)
    if options[:1] == ["--"]:
        options = options[1:]
    root = os.path.dirname(os.path.dirname(script))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return subprocess.call([sys.executable, script, *options], cwd=root, env=env)


# ------------------------------------------------------------------- parser
def _add_run_options(p, epochs, lr, seed_help):
    p.add_argument("--epochs", type=_positive_int, default=epochs, help=f"default {epochs}")
    p.add_argument("--batch-size", type=_positive_int, default=32, help="default 32")
    p.add_argument("--lr", type=_positive_float, default=lr, help=f"learning rate (default {lr})")
    p.add_argument("--threads", type=_positive_int, default=None, help="default: all Numba threads")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--seed", type=_non_negative_int, default=0, help=f"{seed_help} (default 0)")
    p.add_argument("--plot", metavar="PNG", help="write the loss per epoch to this image "
                   "(needs matplotlib: pip install fastmlp[plot])")
    p.add_argument("--quiet", action="store_true", help="print no per-epoch lines or progress bar")


def build_parser():
    parser = argparse.ArgumentParser(prog="fastmlp", description=__doc__)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    p = commands.add_parser("demo", help="train 400-100-40-2 on generated shape images",
                            description=demo.__doc__)
    p.add_argument("--samples", type=_positive_int, default=20000, help="training images (default 20000)")
    _add_run_options(p, epochs=10, lr=0.05, seed_help="seed of the data and initial weights")
    p.set_defaults(handler=demo)

    p = commands.add_parser(
        "train", help="train a network on a CSV, .npz or MNIST IDX file and save it",
        description="Train a network on DATA and save it. DATA is a CSV file (header row optional; "
                    "every column but the target must be numeric), an .npz file with arrays X and y, "
                    "or an MNIST IDX images file and its labels file (gzipped or not).")
    p.add_argument("data", nargs="+", metavar="DATA")
    p.add_argument("--layers", type=_layers, required=True,
                   help="layer sizes from inputs to outputs, e.g. 400,100,40,2")
    p.add_argument("-o", "--output", required=True, metavar="MODEL", help="model file to write (.npz)")
    p.add_argument("--target", metavar="COLUMN",
                   help="CSV target column: a header name or a number from 1 (default: the last)")
    p.add_argument("--activation", choices=HIDDEN_ACTIVATIONS, default="relu",
                   help="hidden-layer activation (default relu)")
    p.add_argument("--loss", choices=LOSSES, default=None,
                   help="default: cross_entropy when the target holds class labels (integers or "
                        "names) and the network has several outputs, else mse")
    _add_run_options(p, epochs=20, lr=0.05,
                     seed_help="seed of the initial weights, shuffling and validation split")
    p.add_argument("--lr-schedule", choices=SCHEDULES, default="constant", help="default constant")
    p.add_argument("--momentum", type=_non_negative_float, default=0.0, help="default 0")
    p.add_argument("--weight-decay", type=_non_negative_float, default=0.0, help="default 0")
    p.add_argument("--validation-split", type=_fraction, default=0.0, metavar="F",
                   help="hold out this fraction of the samples (after a seeded shuffle) to report "
                        "validation loss (default 0: none)")
    p.add_argument("--standardize", action="store_true",
                   help="scale features to mean 0 and std 1 (statistics saved with the model "
                        "and reused by predict)")
    p.set_defaults(handler=train)

    p = commands.add_parser(
        "predict", help="predict with a saved model",
        description="Predict with a saved model. DATA is in the training data's format; a "
                    "column named like the training target is dropped (and used to report "
                    "accuracy). Writes a CSV with a one-line header.")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("data", nargs="+", metavar="DATA")
    p.add_argument("-o", "--output", metavar="CSV", help="default: standard output")
    p.add_argument("--proba", action="store_true", help="one column of probabilities per class")
    p.set_defaults(handler=predict)

    p = commands.add_parser("info", help="describe a saved model", description=info.__doc__)
    p.add_argument("model", metavar="MODEL")
    p.set_defaults(handler=info)

    p = commands.add_parser(
        "bench", help="compare training speed with the peers installed here (source checkout)",
        description=bench.__doc__ + " Options after -- go to compare.py: "
                    "`fastmlp bench -- --help` lists them, `fastmlp bench -- --quick` is a short run.")
    p.add_argument("options", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    p.set_defaults(handler=bench)
    return parser


def main(argv=None):
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        if args.command != "bench":
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.options = args.options + extra
    try:
        return args.handler(args)
    except (CLIError, DataFileError, ModelFileError, DivergenceError) as error:
        message = str(error)
    except BrokenPipeError:
        # The reader went away (`fastmlp predict ... | head`): stop quietly, and keep
        # Python's final flush of stdout from failing again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as error:
        message = f"{error.filename}: {error.strerror}" if error.filename else str(error)
    except KeyboardInterrupt:
        print("fastmlp: interrupted", file=sys.stderr)
        return 130
    print(f"fastmlp: error: {message}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
