"""fastmlp.sklearn against scikit-learn: fit time and test score of the same MLP, side by side.

What is measured
----------------
scikit-learn's MLPClassifier / MLPRegressor and fastmlp.sklearn's drop-in replacements are
constructed with the same hyperparameters (scikit-learn's defaults except those below) and the
same random_state, and fitted on the same arrays, for:

    solvers   sgd and adam at batch_size="auto" (= min(200, n)); lbfgs as an extra row
    dtypes    float32 and float64 input (both libraries get the same array, and both keep
              float32: scikit-learn trains in X's dtype, fastmlp's dtype=None follows X; but
              scikit-learn's lbfgs unpacks SciPy's float64 solution into coefs_, so after its
              first function evaluation it computes in float64 -- a note in the output says so)
    data      digits      scikit-learn's bundled 8x8 digits (load_digits), X / 16, 10 classes,
                          75/25 stratified split (1,347 train, 450 test), MLPClassifier
              classification  make_classification, 20,000 train + 5,000 test, 400 features
                          (40 informative, 40 redundant), 2 classes, standardised, MLPClassifier
              regression  20,000 train + 5,000 test, 400 standard normal features; the target
                          is a fixed nonlinear function of 8 random projections plus noise,
                          standardised (train mean and std), MLPRegressor
    network   hidden_layer_sizes=(100,), relu (scikit-learn's default)

Same work: max_iter is fixed (50 for digits, 20 for the 20k sets) with tol=0 and
n_iter_no_change=max_iter, so neither stochastic solver can stop early and both run exactly
max_iter epochs (n_iter_ is printed for both to show it). ConvergenceWarning is silenced. For
lbfgs, tol=0 is the gradient tolerance, but SciPy's L-BFGS-B may still stop early on its own
function-decrease test or a failed line search, and both libraries' number of iterations and
function evaluations (nfev, counted by wrapping scipy.optimize.minimize, which both call) can
differ by rounding: both are printed, compare lbfgs times only where they agree.

Processes: every measurement -- one (data set, dtype, solver, library) -- runs in its own fresh
Python process, this script's --worker mode started with sys.executable, and passes its results
back as JSON (as perf/compare.py and perf/kernels.py do). Why: Numba's OpenMP worker threads and
OpenBLAS's threads both spin-wait for a while after each parallel region, so in one process each
library's thread pool competes for the cores with the other's (on a 2-core machine scikit-learn's
digits fit measured ~15% slower in a process where fastmlp had run, with occasional 1 s stalls).
Both libraries' workers get the same environment (thread variables, OpenBLAS settings, Numba
cache). Each data set is generated once per run, in a subprocess of its own, and written to
temporary .npy files that every worker loads, so both libraries fit identical arrays (each
worker hashes what it fitted; the parent checks the hashes agree). The parent itself imports
neither NumPy nor Numba and only waits while a worker runs.

Timing: in each fastmlp worker, one untimed warm-up fit first: the first fit in that fresh
process (imports already done), so it always includes Numba loading every kernel the case
needs from the cache, or compiling them with an empty or stale cache -- reported as "first fit
(JIT load)". In each scikit-learn worker, one untimed 1-epoch fit (BLAS thread pool start, page
faults, lazy imports). Then --repeats (default 3) timed fits in the worker, each a fresh
sklearn.base.clone fitted from scratch (est.fit(X, y) only: input validation included; process
start, imports, data loading and scoring excluded); per case the scikit-learn worker runs
first, then the fastmlp worker. Reported: the median fit time,
speed-up = scikit-learn median / fastmlp median, with the target next to it (>= 5x for
float32 input, >= 3x for float64), and the test-split accuracy (classifiers) or R^2
(regressors) and final loss_ of the last fitted estimator of each library. A library whose
slowest timed fit is over 1.5x its fastest is marked with a dagger (noise: rerun it). The
JSON also holds each worker's import time, wall time and thread pools.

Rounds: --rounds R runs each case's pair of workers (scikit-learn's, then fastmlp's) R times,
one round over all cases after another, and reports, per library, the round whose median fit
time is the median of the R rounds (all rounds' medians are shown beside it). This machine runs
2-thread work about half as fast for stretches of seconds to minutes (the machine's state, not
the process's; see the README): with rounds spread over the whole run, such a stretch moves one
round of the cases it meets, not the result.

Both estimators draw the same initial weights and shuffles from the same random_state, so the
two train the same network up to rounding: scores and loss_ should agree closely.

Threads: by default whatever the machine gives (the environment's settings are recorded).
--threads N sets NUMBA_NUM_THREADS, OMP_NUM_THREADS, OPENBLAS_NUM_THREADS and MKL_NUM_THREADS
to N in every worker's environment, before NumPy, Numba or scikit-learn are imported.
OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE, which this machine sets for old OpenBLAS builds and
which slow the current NumPy (see perf/compare.py), are removed from the workers' environment,
so scikit-learn gets NumPy's best BLAS (--keep-openblas-env keeps them); fastmlp does not train
through BLAS. The OpenBLAS core type and thread counts that actually ran in each worker are
recorded (threadpoolctl). fastmlp's Numba kernels are cached in --numba-cache-dir (default
perf/results/numba_cache, as perf/compare.py), so the package tree is not written to; with an
empty or stale cache the first fit compiles (and writes the cache that later workers load).
--timeout bounds each worker process (default 1800 s).

Run (from the repository root)
-------------------------------
    PYTHONPATH=. .venv/bin/python perf/sklearn_dropin.py                 # everything
    PYTHONPATH=. .venv/bin/python perf/sklearn_dropin.py --quick         # smoke run, small data
    PYTHONPATH=. .venv/bin/python perf/sklearn_dropin.py --threads 1 --datasets digits \\
        --solvers adam --dtypes float32 --repeats 5
    PYTHONPATH=. .venv/bin/python perf/sklearn_dropin.py --threads 1 \\
        --json perf/results/sklearn_dropin_1thr.json       # steadier on a shared machine
    PYTHONPATH=. .venv/bin/python perf/sklearn_dropin.py --rounds 3    # 2 threads, 3 rounds
    PYTHONPATH=. .venv/bin/python perf/sklearn_dropin.py --report perf/results/sklearn_dropin.json

Prints Markdown tables; writes the raw results to --json (default
perf/results/sklearn_dropin.json, with --quick perf/results/sklearn_dropin_quick.json) after
every case.
"""

import argparse
import datetime
import gc
import hashlib
import importlib.metadata
import json
import os
import pathlib
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import types
import warnings

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent

DATASETS = ("digits", "classification", "regression")
SOLVERS = ("sgd", "adam", "lbfgs")
STOCHASTIC = ("sgd", "adam")
DTYPES = ("float32", "float64")
TARGETS = {"float32": 5.0, "float64": 3.0}   # speed-up wanted: sklearn time / fastmlp time
THREAD_VARS = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
OPENBLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
NOISY_SPREAD, NOISY_MARK = 1.5, "†"
LIBRARIES = ("sklearn", "fastmlp")          # per case, in this order, one worker process each
LIBRARY_LABELS = {"sklearn": "scikit-learn", "fastmlp": "fastmlp"}
DATA_SEED = 0
# Full run / --quick: rows of the synthetic training sets, features, held-out rows, max_iter.
FULL = {"samples": 20000, "features": 400, "test": 5000, "max_iter_digits": 50,
        "max_iter_large": 20, "repeats": 3}
QUICK = {"samples": 2000, "features": 100, "test": 1000, "max_iter_digits": 10,
         "max_iter_large": 5, "repeats": 1}


# ------------------------------------------------------------------ arguments

def csv(allowed):
    def parse(text):
        items = [item.strip() for item in text.split(",") if item.strip()]
        unknown = [item for item in items if item not in allowed]
        if unknown or not items:
            raise argparse.ArgumentTypeError(f"choose from {','.join(allowed)}, got {text!r}")
        return [a for a in allowed if a in items]
    return parse


def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="See the module docstring for what is timed.")
    p.add_argument("--datasets", type=csv(DATASETS), default=list(DATASETS),
                   help=f"comma-separated, from {','.join(DATASETS)} (default: all)")
    p.add_argument("--solvers", type=csv(SOLVERS), default=list(SOLVERS),
                   help=f"comma-separated, from {','.join(SOLVERS)} (default: all)")
    p.add_argument("--dtypes", type=csv(DTYPES), default=list(DTYPES),
                   help="comma-separated, float32 and/or float64 (default: both)")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="set NUMBA/OMP/OPENBLAS/MKL_NUM_THREADS to N before the imports "
                        "(default: leave the environment as it is)")
    p.add_argument("--rounds", type=positive_int, default=1,
                   help="worker pairs per case (scikit-learn's, then fastmlp's, each round); "
                        "the round with the median fit time is reported (default 1)")
    p.add_argument("--repeats", type=positive_int, default=None,
                   help=f"timed fits per library and case (default {FULL['repeats']}, "
                        f"--quick {QUICK['repeats']})")
    p.add_argument("--samples", type=positive_int, default=None,
                   help=f"training rows of the synthetic sets (default {FULL['samples']:,}, "
                        f"--quick {QUICK['samples']:,})")
    p.add_argument("--features", type=positive_int, default=None,
                   help=f"features of the synthetic sets (default {FULL['features']}, "
                        f"--quick {QUICK['features']})")
    p.add_argument("--max-iter", type=positive_int, default=None,
                   help=f"epochs / L-BFGS iterations for every data set (default "
                        f"{FULL['max_iter_digits']} for digits, {FULL['max_iter_large']} for the "
                        f"synthetic sets; --quick {QUICK['max_iter_digits']} and "
                        f"{QUICK['max_iter_large']})")
    p.add_argument("--seed", type=int, default=0, help="random_state of both estimators (default 0)")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke run: {QUICK['samples']:,} x {QUICK['features']} synthetic sets, "
                        f"max_iter {QUICK['max_iter_digits']}/{QUICK['max_iter_large']}, "
                        f"{QUICK['repeats']} repeat; output sklearn_dropin_quick.json")
    p.add_argument("--json", metavar="PATH", default=None,
                   help="where to write the results (default perf/results/sklearn_dropin.json, "
                        "--quick: perf/results/sklearn_dropin_quick.json)")
    p.add_argument("--keep-openblas-env", action="store_true",
                   help=f"keep {' and '.join(OPENBLAS_OVERRIDES)} (default: remove them before "
                        f"NumPy loads OpenBLAS)")
    p.add_argument("--numba-cache-dir", default=str(HERE / "results" / "numba_cache"),
                   help="NUMBA_CACHE_DIR for fastmlp's kernels (default perf/results/numba_cache)")
    p.add_argument("--timeout", type=float, default=1800.0,
                   help="seconds allowed to each worker process (default 1800)")
    p.add_argument("--report", metavar="JSON",
                   help="only print the tables from an earlier run's JSON")
    # Internal: run one measurement (or generate one data set) in this process; see worker_main.
    p.add_argument("--worker", nargs=3, metavar=("MODE", "SPEC", "RESULT"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    args.repeats = args.repeats or sizes["repeats"]
    args.samples = args.samples or sizes["samples"]
    args.features = args.features or sizes["features"]
    args.test = sizes["test"]
    args.max_iter_digits = args.max_iter or sizes["max_iter_digits"]
    args.max_iter_large = args.max_iter or sizes["max_iter_large"]
    default_json = "sklearn_dropin_quick.json" if args.quick else "sklearn_dropin.json"
    args.json = args.json or str(HERE / "results" / default_json)
    if "classification" in args.datasets and args.features < 4:
        p.error("--features must be >= 4 for the classification set")
    return args


def configure_environment(args):
    """Thread counts, OpenBLAS overrides and the Numba cache: set before anything loads them."""
    late = [name for name in ("numpy", "numba", "sklearn", "scipy") if name in sys.modules]
    if late:
        print(f"warning: {', '.join(late)} already imported; thread and OpenBLAS settings may "
              f"not take effect", file=sys.stderr)
    before = {k: os.environ.get(k) for k in THREAD_VARS + OPENBLAS_OVERRIDES}
    if args.threads is not None:
        for var in THREAD_VARS:
            os.environ[var] = str(args.threads)
    removed = []
    if not args.keep_openblas_env:
        for var in OPENBLAS_OVERRIDES:
            if os.environ.pop(var, None) is not None:
                removed.append(f"{var}={before[var]}")
    os.environ["NUMBA_CACHE_DIR"] = args.numba_cache_dir
    root = [str(ROOT)] + [x for x in [os.environ.get("PYTHONPATH")] if x]
    os.environ["PYTHONPATH"] = os.pathsep.join(root)      # the workers import fastmlp from here
    return {"env_before": {k: v if v is not None else "(unset)" for k, v in before.items()},
            "env_used": {k: os.environ.get(k, "(unset)") for k in THREAD_VARS + OPENBLAS_OVERRIDES},
            "openblas_removed": removed, "numba_cache_dir": args.numba_cache_dir}


# ------------------------------------------------------------------ machine and versions

def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def fastmlp_source():
    """Git commit (+dirty when fastmlp/ has uncommitted changes) and a hash of fastmlp's sources."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "fastmlp").rglob("*.py")):
        digest.update(str(path.relative_to(ROOT)).encode())
        digest.update(path.read_bytes())
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                                capture_output=True, timeout=10, check=False).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "fastmlp"], cwd=ROOT,
                               text=True, capture_output=True, timeout=10, check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "?", ""
    return f"{commit or '?'}{'+dirty' if dirty else ''} src:{digest.hexdigest()[:10]}"


def loadavg():
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def package_version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


def describe_machine(settings):
    """Read from the installed packages' metadata: the parent imports none of them (the workers
    run the same interpreter and site-packages)."""
    versions = {"python": platform.python_version(), "numpy": package_version("numpy"),
                "scipy": package_version("scipy"), "sklearn": package_version("scikit-learn"),
                "numba": package_version("numba"), "threadpoolctl": package_version("threadpoolctl")}
    return {"cpu": cpu_model(), "cpu_count": os.cpu_count(),
            "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "platform": platform.platform(),
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "versions": versions, "fastmlp_source": fastmlp_source(), **settings}


def thread_state():
    """In a worker, after its fits: each BLAS / OpenMP pool loaded in the process and, where the
    worker loaded Numba (fastmlp's), Numba's thread count and threading layer."""
    import threadpoolctl

    pools = [{k: lib.get(k) for k in ("user_api", "internal_api", "prefix", "version",
                                       "num_threads", "architecture", "threading_layer")}
             for lib in threadpoolctl.threadpool_info()]
    state = {"threadpools": pools}
    if "numba" in sys.modules:
        import numba
        try:
            layer = numba.threading_layer()
        except ValueError:                   # no parallel kernel has run
            layer = "(not started)"
        state.update(numba_num_threads=numba.config.NUMBA_NUM_THREADS,
                     numba_get_num_threads=numba.get_num_threads(), numba_threading_layer=layer)
    return state


# ------------------------------------------------------------------ data

def make_data(name, args):
    """(description, task, X_train, X_test, y_train, y_test) in float64; X C-contiguous."""
    import numpy as np
    from sklearn.datasets import load_digits, make_classification
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    if name == "digits":
        X, y = load_digits(return_X_y=True)
        X_train, X_test, y_train, y_test = train_test_split(
            X / 16.0, y, test_size=0.25, stratify=y, random_state=DATA_SEED)
        return ("load_digits, X/16, 10 classes, 75/25 stratified split", "classification",
                np.ascontiguousarray(X_train), np.ascontiguousarray(X_test), y_train, y_test)

    n, d = args.samples + args.test, args.features
    if name == "classification":
        informative = min(40, d // 2)
        redundant = min(40, d - informative)
        X, y = make_classification(n_samples=n, n_features=d, n_informative=informative,
                                   n_redundant=redundant, n_classes=2, n_clusters_per_class=4,
                                   flip_y=0.01, random_state=DATA_SEED)
        X_train, X_test, y_train, y_test = train_test_split(
            X, y, test_size=args.test, stratify=y, random_state=DATA_SEED)
        description = (f"make_classification(n_informative={informative}, n_redundant={redundant},"
                       f" n_classes=2, n_clusters_per_class=4, flip_y=0.01, random_state="
                       f"{DATA_SEED}), X standardised")
    else:
        rng = np.random.default_rng(DATA_SEED)
        X = rng.standard_normal((n, d))
        Z = X @ (rng.standard_normal((d, 8)) / np.sqrt(d))        # 8 unit-variance projections
        y = (2 * np.tanh(Z[:, 0]) + np.sin(2 * Z[:, 1]) + Z[:, 2] * Z[:, 3]
             + 0.5 * Z[:, 4] ** 2 + np.maximum(Z[:, 5], 0) - np.maximum(-Z[:, 6] - 0.5, 0)
             + 0.5 * Z[:, 7] + 0.3 * rng.standard_normal(n))
        X_train, X_test, y_train, y_test = X[:args.samples], X[args.samples:], \
            y[:args.samples], y[args.samples:]
        mean, std = y_train.mean(), y_train.std()
        y_train, y_test = (y_train - mean) / std, (y_test - mean) / std
        description = ("X standard normal, Z = X @ A (8 unit-variance projections), y = "
                       "2tanh(Z0) + sin(2Z1) + Z2Z3 + Z4^2/2 + relu(Z5) - relu(-Z6-1/2) + Z7/2 "
                       "+ 0.3 noise; X and y standardised")
    scaler = StandardScaler().fit(X_train)
    return (description, name, np.ascontiguousarray(scaler.transform(X_train)),
            np.ascontiguousarray(scaler.transform(X_test)), y_train, y_test)


# ------------------------------------------------------------------ measuring

class CountMinimize:
    """Wrap scipy.optimize.minimize (which both libraries' lbfgs call through the module
    attribute) to record each call's function evaluations and iterations."""

    def __init__(self):
        import scipy.optimize
        self.module, self.calls = scipy.optimize, []

    def __enter__(self):
        self.real = self.module.minimize

        def minimize(*a, **k):
            result = self.real(*a, **k)
            self.calls.append({"nfev": int(result.nfev), "nit": int(result.nit),
                               "status": int(result.status)})
            return result
        self.module.minimize = minimize
        return self

    def __exit__(self, *exc):
        self.module.minimize = self.real
        return False


def timed_fit(estimator, X, y):
    """Fit a fresh clone; returns (fitted estimator, seconds, L-BFGS info or None)."""
    from sklearn.base import clone

    model = clone(estimator)
    gc.collect()
    with CountMinimize() as counter:
        began = time.perf_counter()
        model.fit(X, y)
        seconds = time.perf_counter() - began
    return model, seconds, (counter.calls[-1] if counter.calls else None)


def estimator_params(solver, max_iter, seed):
    params = {"hidden_layer_sizes": (100,), "solver": solver, "max_iter": max_iter,
              "tol": 0.0, "random_state": seed}
    if solver in STOCHASTIC:
        params["n_iter_no_change"] = max_iter      # never reached: no early stop
    return params


def summary_of(model, seconds_list, lbfgs, X_test, y_test, dtype):
    entry = {"times_s": seconds_list, "median_s": statistics.median(seconds_list),
             "spread": max(seconds_list) / min(seconds_list),
             "n_iter": int(model.n_iter_), "loss": float(model.loss_),
             "score": float(model.score(X_test, y_test)),
             "coef_dtype": str(model.coefs_[0].dtype),
             "dtype_kept": bool(model.coefs_[0].dtype == dtype)}
    if lbfgs is not None:
        entry["lbfgs"] = lbfgs
    return entry


def median_round(summaries):
    """One library's summary over its rounds (worker processes): the round with the median of
    the rounds' median fit times (the slower of the middle two for an even count), with every
    round's median in round_median_s, and whether all rounds ended with the same n_iter_, loss_
    and score (training is deterministic, so they should)."""
    ranked = sorted(summaries, key=lambda entry: entry["median_s"])
    chosen = dict(ranked[len(ranked) // 2])
    chosen["round_median_s"] = [entry["median_s"] for entry in summaries]
    chosen["rounds_agree"] = len({(entry["n_iter"], entry["loss"], entry["score"])
                                  for entry in summaries}) == 1
    return chosen


DATA_FILES = ("X_train", "X_test", "y_train", "y_test")


def digest(*arrays):
    """sha256 of the arrays' dtypes, shapes and bytes: shows both libraries fitted the same data."""
    h = hashlib.sha256()
    for array in arrays:
        h.update(f"{array.dtype.str}{array.shape}".encode())
        h.update(array.tobytes())
    return h.hexdigest()[:16]


def worker_data(spec):
    """Generate one data set and write its arrays to spec["dir"] as .npy files."""
    import numpy as np

    sizes = types.SimpleNamespace(samples=spec["samples"], features=spec["features"],
                                  test=spec["test"])
    description, task, *arrays = make_data(spec["dataset"], sizes)
    for name, array in zip(DATA_FILES, arrays):
        np.save(os.path.join(spec["dir"], f"{name}.npy"), array, allow_pickle=False)
    X_train, X_test = arrays[0], arrays[1]
    return {"status": "ok", "description": description, "task": task,
            "n_train": X_train.shape[0], "n_features": X_train.shape[1], "n_test": X_test.shape[0],
            "data_sha256": digest(*arrays)}


def worker_fit(spec, stage):
    """One library's measurement of one case, in this (fresh) process: load the data, the
    warm-up fit, the timed fits, the scores. stage[0] names the step in progress (for errors)."""
    began = time.perf_counter()
    stage[0] = "imports"
    import numpy as np
    from sklearn.base import clone
    from sklearn.exceptions import ConvergenceWarning
    if spec["library"] == "fastmlp":
        from fastmlp.sklearn import MLPClassifier as Classifier
        from fastmlp.sklearn import MLPRegressor as Regressor
    else:
        from sklearn.neural_network import MLPClassifier as Classifier
        from sklearn.neural_network import MLPRegressor as Regressor
    import_s = time.perf_counter() - began
    # The sources this worker imported (and Numba compiles from): other people may be editing
    # fastmlp while a long run is in progress.
    source = fastmlp_source() if spec["library"] == "fastmlp" else None

    stage[0] = "loading the data"
    loaded = {name: np.load(os.path.join(spec["dir"], f"{name}.npy"), allow_pickle=False)
              for name in DATA_FILES}
    dtype = np.dtype(spec["dtype"])
    regression = spec["task"] == "regression"
    X, Xt = loaded["X_train"].astype(dtype), loaded["X_test"].astype(dtype)
    y = loaded["y_train"].astype(dtype) if regression else loaded["y_train"]
    y_test = loaded["y_test"]
    result = {"library": spec["library"], "pid": os.getpid(), "import_s": import_s,
              "fastmlp_source": source,
              "data_sha256": digest(X, Xt, y, y_test), "loadavg_start": loadavg()}
    params = dict(spec["params"], hidden_layer_sizes=tuple(spec["params"]["hidden_layer_sizes"]))
    estimator = (Regressor if regression else Classifier)(**params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if spec["library"] == "fastmlp":
            stage[0] = "fastmlp warm-up fit"
            _, result["first_fit_s"], _ = timed_fit(estimator, X, y)
        else:
            stage[0] = "scikit-learn warm-up fit"
            _, result["warmup_1_epoch_s"], _ = timed_fit(clone(estimator).set_params(max_iter=1),
                                                         X, y)
        stage[0] = f"{spec['library']} fit"
        times = []
        for _ in range(spec["repeats"]):
            fitted = timed_fit(estimator, X, y)
            times.append(fitted[1])
    stage[0] = f"{spec['library']} scoring"
    model, _, lbfgs = fitted
    result["summary"] = summary_of(model, times, lbfgs, Xt, y_test, dtype)
    result["threads"] = thread_state()
    result["loadavg_end"] = loadavg()
    result["status"] = "ok"
    return result


def worker_main(mode, spec_json, result_path):
    """--worker MODE SPEC RESULT: run worker_data or worker_fit and write its dict as JSON to
    RESULT. The environment (threads, OpenBLAS, Numba cache) was set by the parent."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    spec, stage = json.loads(spec_json), ["start"]
    try:
        result = worker_data(spec) if mode == "data" else worker_fit(spec, stage)
    except Exception as error:  # noqa: BLE001 - reported to the parent, never hidden
        import traceback
        traceback.print_exc()
        last = (str(error).strip().splitlines() or [""])[-1]
        where = f"{stage[0]}: " if mode != "data" else ""
        result = {"status": "failed", "error": f"{where}{type(error).__name__}: {last}"}
    with open(result_path, "w") as f:
        json.dump(result, f, default=str)
    return 0


def run_worker(mode, spec, timeout):
    """Run this script's --worker mode in a fresh process with the environment that
    configure_environment set; returns the worker's dict (never raises)."""
    with tempfile.TemporaryDirectory(prefix="fastmlp_dropin_") as tmp:
        result_path = os.path.join(tmp, "result.json")
        began = time.perf_counter()
        try:
            proc = subprocess.Popen([sys.executable, str(pathlib.Path(__file__).resolve()),
                                     "--worker", mode, json.dumps(spec), result_path],
                                    env=dict(os.environ), cwd=str(ROOT), stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True, start_new_session=True)
        except OSError as error:
            return {"status": "failed", "error": f"could not start the worker: {error}"}
        try:
            output, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)          # the worker and anything it started
            proc.communicate()
            return {"status": "failed", "error": f"worker timed out after {timeout:g} s "
                    f"(--timeout)", "wall_s": time.perf_counter() - began}
        wall = time.perf_counter() - began
        try:
            with open(result_path) as f:
                result = json.load(f)
        except (OSError, ValueError):
            lines = [line for line in (output or "").strip().splitlines() if line.strip()]
            last = lines[-1] if lines else "no output"
            result = {"status": "failed", "error": f"exit status {proc.returncode}: {last}"}
        if proc.returncode != 0 and result.get("status") == "ok":
            result = {"status": "failed", "error": f"exit status {proc.returncode}"}
        result["wall_s"] = wall
        if output and output.strip():
            result["output_tail"] = output[-2000:]
        return result


def new_case(dataset, dtype_name, solver, data, args):
    """A case's record before its rounds: what runs, with whose parameters."""
    max_iter = args.max_iter_digits if dataset == "digits" else args.max_iter_large
    params = {k: (list(v) if isinstance(v, tuple) else v)
              for k, v in estimator_params(solver, max_iter, args.seed).items()}
    return {"dataset": dataset, "task": data["task"], "solver": solver, "dtype": dtype_name,
            "n_train": data["n_train"], "n_features": data["n_features"],
            "n_test": data["n_test"], "max_iter": max_iter, "params": params,
            "repeats": args.repeats, "loadavg_before": loadavg(),
            "target": TARGETS[dtype_name], "fastmlp_source": fastmlp_source(), "workers": {},
            "rounds": args.rounds, "later_rounds_workers": [], "errors": [],
            "summaries": {library: [] for library in LIBRARIES}}


def run_round(result, round_, data, args):
    """One round of a case: a scikit-learn worker, then a fastmlp worker, each a fresh
    process; nothing more once a round has failed."""
    if result["errors"]:
        return
    for library in LIBRARIES:
        spec = {"library": library, "dir": data["dir"], "task": data["task"],
                "dtype": result["dtype"], "params": result["params"], "repeats": args.repeats}
        worker = run_worker("fit", spec, args.timeout)
        summary = worker.pop("summary", None)
        if round_ == 0:
            result["workers"][library] = worker
        else:
            result["later_rounds_workers"].append(dict(worker, library=library, round=round_))
        if worker.get("status") != "ok":
            result["errors"].append(f"{LIBRARY_LABELS[library]} worker (round {round_ + 1}): "
                                    f"{worker.get('error')}")
            continue
        result["summaries"][library].append(summary)


def finish_case(result):
    """The case's result from its rounds: each library's median round, the speed-up."""
    errors = result.pop("errors")
    summaries = result.pop("summaries")
    for library in LIBRARIES:
        if summaries[library] and not errors:
            result[library] = median_round(summaries[library])
    if errors:
        result["status"] = "failed"
        result["error"] = "; ".join(errors)
        return result
    result["fastmlp_source"] = result["workers"]["fastmlp"]["fastmlp_source"]
    result["fastmlp_first_fit_s"] = result["workers"]["fastmlp"]["first_fit_s"]
    result["sklearn_warmup_1_epoch_s"] = result["workers"]["sklearn"]["warmup_1_epoch_s"]
    result["same_data"] = (result["workers"]["sklearn"]["data_sha256"]
                           == result["workers"]["fastmlp"]["data_sha256"])
    result["status"] = "ok"
    result["speedup"] = result["sklearn"]["median_s"] / result["fastmlp"]["median_s"]
    result["target_met"] = result["speedup"] >= result["target"]
    result["same_epochs"] = result["sklearn"]["n_iter"] == result["fastmlp"]["n_iter"]
    return result


# ------------------------------------------------------------------ formatting

def fmt_s(entry):
    mark = NOISY_MARK if entry["spread"] > NOISY_SPREAD else ""
    rounds = entry.get("round_median_s") or []
    span = f" [{min(rounds):.3g}-{max(rounds):.3g}]" if len(rounds) > 1 else ""
    return f"{entry['median_s']:.3g}{mark}{span}"


def fmt_iter(r):
    text = f"{r['sklearn']['n_iter']} / {r['fastmlp']['n_iter']}"
    if r["solver"] == "lbfgs" and "lbfgs" in r["sklearn"] and "lbfgs" in r["fastmlp"]:
        text += f" (nfev {r['sklearn']['lbfgs']['nfev']} / {r['fastmlp']['lbfgs']['nfev']})"
    if not r["same_epochs"]:
        text += " ≠"
    return text


def score_name(task):
    return "R²" if task == "regression" else "accuracy"


def one_line(text):
    return " ".join(str(text).split()).replace("|", "/")


def case_table(rows):
    task = rows[0]["task"]
    lines = [(f"| solver | dtype | n_iter_ sklearn / fastmlp | sklearn fit (s) | fastmlp fit (s) "
             f"| fastmlp first fit (JIT load) (s) | speed-up | target | met | {score_name(task)} "
             f"sklearn | {score_name(task)} fastmlp | loss_ sklearn / fastmlp |"),
             "|---|---|---|--:|--:|--:|--:|--:|---|--:|--:|---|"]
    for r in rows:
        if r["status"] != "ok":
            lines.append("| " + " | ".join([r["solver"], r["dtype"], f"FAILED: {one_line(r['error'])}"]
                                          + [""] * 9) + " |")
            continue
        sk, fm = r["sklearn"], r["fastmlp"]
        extra = " (extra row)" if r["solver"] not in STOCHASTIC else ""
        met = ("yes" if r["target_met"] else "**no**") + extra
        lines.append(
            f"| {r['solver']} | {r['dtype']} | {fmt_iter(r)} | {fmt_s(sk)} | {fmt_s(fm)} "
            f"| {r['fastmlp_first_fit_s']:.3g} | {r['speedup']:.2f}x | >= {r['target']:g}x | {met} "
            f"| {sk['score']:.4f} | {fm['score']:.4f} | {sk['loss']:.5g} / {fm['loss']:.5g} |")
    return "\n".join(lines)


def summary_lines(results):
    lines = []
    for group, solvers in (("sgd/adam", STOCHASTIC), ("lbfgs (extra)", ("lbfgs",))):
        for dtype in DTYPES:
            rows = [r for r in results if r["status"] == "ok" and r["solver"] in solvers
                    and r["dtype"] == dtype]
            if not rows:
                continue
            met = sum(r["target_met"] for r in rows)
            ratios = sorted(r["speedup"] for r in rows)
            lines.append(f"- {group}, {dtype}: target >= {TARGETS[dtype]:g}x met in {met} of "
                         f"{len(rows)} cases; speed-up min {ratios[0]:.2f}x, median "
                         f"{statistics.median(ratios):.2f}x, max {ratios[-1]:.2f}x")
    problems, sklearn_lbfgs_float64 = [], []
    for r in results:
        name = f"{r['dataset']} {r['solver']} {r['dtype']}"
        if r["status"] != "ok":
            problems.append(f"- {name}: FAILED ({one_line(r['error'])})")
            continue
        if not r.get("same_data", True):
            problems.append(f"- {name}: the two workers' data hashes differ "
                            f"({r['workers']['sklearn']['data_sha256']} / "
                            f"{r['workers']['fastmlp']['data_sha256']}): not the same arrays")
        if not r["same_epochs"]:
            problems.append(f"- {name}: n_iter_ differs (sklearn {r['sklearn']['n_iter']}, fastmlp "
                            f"{r['fastmlp']['n_iter']}): the times compare different work")
        elif r["solver"] == "lbfgs" and (r["sklearn"].get("lbfgs", {}).get("nfev")
                                         != r["fastmlp"].get("lbfgs", {}).get("nfev")):
            problems.append(f"- {name}: L-BFGS function evaluations differ (sklearn "
                            f"{r['sklearn'].get('lbfgs', {}).get('nfev')}, fastmlp "
                            f"{r['fastmlp'].get('lbfgs', {}).get('nfev')})")
        for lib in ("sklearn", "fastmlp"):
            if not r[lib].get("rounds_agree", True):
                problems.append(f"- {name}: {lib}'s rounds ended with different n_iter_, loss_ or "
                                f"score (a fit that is not deterministic)")
            if r[lib]["dtype_kept"]:
                continue
            if lib == "sklearn" and r["solver"] == "lbfgs" and r["dtype"] == "float32":
                sklearn_lbfgs_float64.append(r["dataset"])       # expected: see the note
            else:
                problems.append(f"- {name}: {lib} trained in {r[lib]['coef_dtype']}, not {r['dtype']}")
    if sklearn_lbfgs_float64:
        problems.append(f"- Note ({', '.join(sklearn_lbfgs_float64)}, lbfgs float32): scikit-learn's "
                        f"lbfgs ends with float64 coefs_ for float32 X (it unpacks SciPy's float64 "
                        f"x as is), so after the first evaluation its products run in float64; "
                        f"fastmlp stays in float32. These rows compare float32 with float64 work")
    sources = sorted({r.get("fastmlp_source") for r in results if r.get("fastmlp_source")})
    if len(sources) > 1:
        problems.append(f"- fastmlp's source CHANGED DURING THE RUN ({' -> '.join(sources)}): "
                        f"rerun (each result's fastmlp_source in the JSON says which it measured)")
    return lines, problems


def fmt_load(values):
    return ", ".join(f"{x:.2f}" for x in values) if values else "?"


def pools_text(state):
    return "; ".join(" ".join(str(x) for x in (p["internal_api"], p.get("version"),
                                                f"{p['num_threads']} thr") if x)
                     + (f" [{p['architecture']}]" if p.get("architecture") else "")
                     + f" ({p.get('prefix')})" for p in state.get("threadpools", [])) or "?"


def threads_text(m):
    """What ran: per library, from its last worker (older JSONs: the one shared process)."""
    by_library = m.get("threads_by_library")
    if by_library is None:
        state = m.get("threads_end") or m.get("threads_start", {})
        return (f"Numba {state.get('numba_get_num_threads')} of {state.get('numba_num_threads')} "
                f"threads, threading layer {state.get('numba_threading_layer')}; thread pools: "
                f"{pools_text(state)}")
    parts = []
    for library in LIBRARIES:
        state = by_library.get(library)
        if state is None:
            continue
        numba = (f"Numba {state['numba_get_num_threads']} of {state['numba_num_threads']} "
                 f"threads, threading layer {state['numba_threading_layer']}; "
                 if "numba_num_threads" in state else "")
        parts.append(f"{LIBRARY_LABELS[library]} workers: {numba}thread pools: "
                     f"{pools_text(state)}")
    return ". ".join(parts) or "no worker finished"


def header_text(data):
    m, a = data["machine"], data["args"]
    v = m["versions"]
    thread_choice = (f"--threads {a['threads']}: " + ", ".join(f"{k}={a['threads']}" for k in THREAD_VARS)
                     if a["threads"] else "machine default (--threads not given): "
                     + ", ".join(f"{k}={m['env_used'][k]}" for k in THREAD_VARS))
    openblas = (f"removed {', '.join(m['openblas_removed'])}" if m["openblas_removed"] else
                "kept " + ", ".join(f"{k}={m['env_used'][k]}" for k in OPENBLAS_OVERRIDES)
                if a["keep_openblas_env"] else "none were set")
    lines = [
        "## fastmlp.sklearn vs scikit-learn: MLP fit time and test score",
        "",
        (f"- Machine: {m['cpu']}, {m['cpu_count']} logical cores ({m['affinity']} usable); "
         f"{m['platform']}; {m['date']}"),
        (f"- Load average (1, 5, 15 min) at start {fmt_load(m.get('loadavg_start'))}, at end "
         f"{fmt_load(m.get('loadavg_end'))} (a shared machine slows both libraries, fastmlp's "
         f"multi-thread kernels most)"),
        "- Versions: " + ", ".join(f"{k} {v[k]}" for k in v) + f"; fastmlp {m['fastmlp_source']}",
        f"- Threads: {thread_choice}; {threads_text(m)}",
        (f"- OpenBLAS overrides ({', '.join(OPENBLAS_OVERRIDES)}): {openblas}; Numba cache "
         f"{m['numba_cache_dir']}"),
        (f"- Same work: hidden_layer_sizes=(100,), relu, batch_size='auto' (min(200, n)), other "
         f"hyperparameters scikit-learn's defaults, random_state={a['seed']} for both; max_iter "
         f"{a['max_iter_digits']} (digits) / {a['max_iter_large']} (synthetic sets), tol=0, "
         f"n_iter_no_change=max_iter, so sgd and adam run exactly max_iter epochs in both "
         f"libraries (n_iter_ shows it; ≠ marks a difference); ConvergenceWarning silenced. "
         f"lbfgs (extra rows): tol=0 is its gradient tolerance, SciPy may still stop it early, "
         f"so compare its times only where n_iter_ and nfev agree"),
        ("- Processes: each (data set, dtype, solver, library) runs in its own fresh Python "
         "process (this script's --worker mode), scikit-learn's first, then fastmlp's, with the "
         "same environment; each data set is generated once and loaded by every worker from "
         ".npy files, so both fit identical arrays (hashes checked). Why: Numba's OpenMP threads "
         "and OpenBLAS's threads spin-wait after each parallel region, so in one shared process "
         "each library's thread pool slows the other (scikit-learn's digits fit measured ~15% "
         "slower after fastmlp had run in the same process, with occasional 1 s stalls)"),
        (f"- Timing: in each fastmlp worker one untimed warm-up fit first, the first fit of that "
         f"fresh process after the imports, reported as first fit (JIT load): Numba loading "
         f"every kernel the case needs from the cache (compiling them if the cache is empty or "
         f"stale); in each scikit-learn worker one untimed 1-epoch fit (BLAS pool start, page "
         f"faults); then {a['repeats']} timed fit(s) in the worker, each a fresh clone fitted "
         f"from scratch; times are medians; {NOISY_MARK} = slowest repeat over {NOISY_SPREAD}x "
         f"the fastest (noise)"
         + (f"; {a['rounds']} rounds (worker pairs) per case: the round with the median time is "
            f"shown, [the rounds' range] beside it" if a.get("rounds", 1) > 1 else "")
         + f". Speed-up = sklearn median / fastmlp median; targets >= "
         f"{TARGETS['float32']:g}x for float32 input, >= {TARGETS['float64']:g}x for float64"),
        ("- Both libraries get the same arrays in the stated dtype and train in it (but see the "
         "notes on scikit-learn's lbfgs with float32). Scores "
         "on the held-out split, of the last fitted estimator; both start from the same weights "
         "and shuffles, so scores and loss_ should agree up to rounding"),
    ]
    if a["quick"]:
        lines.append("- **--quick smoke run**: small data, few epochs, "
                     f"{a['repeats']} repeat(s): the ratios say little about the full-size cases")
    return "\n".join(lines)


def report(data):
    text = [header_text(data)]
    results = data["results"]
    for dataset in DATASETS:
        rows = [r for r in results if r["dataset"] == dataset]
        if not rows:
            continue
        first = rows[0]
        description = data["datasets"].get(dataset, "")
        estimator = "MLPRegressor" if first["task"] == "regression" else "MLPClassifier"
        if "n_train" in first:
            text.append(f"\n### {dataset}: {first['n_train']:,} x {first['n_features']} train, "
                        f"{first['n_test']:,} test, {estimator}, max_iter {first['max_iter']}\n")
        else:
            text.append(f"\n### {dataset}: {estimator}\n")
        if description:
            text.append(f"{description}\n")
        text.append(case_table(rows))
    lines, problems = summary_lines(results)
    if lines:
        text.append("\n### Targets\n")
        text += lines
    if problems:
        text.append("\n### Warnings and notes\n")
        text += problems
    return "\n".join(text)


def save(data, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    tmp.replace(path)


# ------------------------------------------------------------------ main

def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        return worker_main(*args.worker)
    if args.report:
        print(report(json.loads(pathlib.Path(args.report).read_text())))
        return 0
    settings = configure_environment(args)          # the workers' environment
    machine = describe_machine(settings)
    machine["loadavg_start"] = loadavg()
    machine["threads_by_library"] = {}
    data = {"args": vars(args), "machine": machine, "datasets": {}, "data_workers": {},
            "results": []}
    out = pathlib.Path(args.json)
    cases = [(dataset, dtype, solver) for dataset in args.datasets for dtype in args.dtypes
             for solver in args.solvers]
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fastmlp_dropin_data_") as tmp:
        loaded = {}
        for dataset in dict.fromkeys(dataset for dataset, _, _ in cases):
            folder = pathlib.Path(tmp) / dataset
            folder.mkdir()
            info = run_worker("data", {"dataset": dataset, "dir": str(folder),
                                       "samples": args.samples, "features": args.features,
                                       "test": args.test}, args.timeout)
            info["dir"] = str(folder)
            loaded[dataset] = info
            data["data_workers"][dataset] = {k: v for k, v in info.items() if k != "dir"}
            if info["status"] == "ok":
                data["datasets"][dataset] = info["description"]
        # Round by round over all cases, so that a stretch of slow machine meets one round
        # of a case, not all of them.
        records = [new_case(dataset, dtype, solver, loaded[dataset], args)
                   if loaded[dataset]["status"] == "ok" else None
                   for dataset, dtype, solver in cases]
        for round_ in range(args.rounds):
            for i, (dataset, dtype, solver) in enumerate(cases, 1):
                if records[i - 1] is not None:
                    run_round(records[i - 1], round_, loaded[dataset], args)
                if round_ < args.rounds - 1:
                    continue
                if records[i - 1] is not None:
                    r = finish_case(records[i - 1])
                else:
                    r = {"dataset": dataset, "solver": solver, "dtype": dtype, "status": "failed",
                         "task": "regression" if dataset == "regression" else "classification",
                         "error": f"data worker: {loaded[dataset].get('error')}"}
                for library, worker in r.get("workers", {}).items():
                    if worker.get("status") == "ok":
                        machine["threads_by_library"][library] = worker["threads"]
                data["results"].append(r)
                save(data, out)
                what = (f"sklearn {r['sklearn']['median_s']:.3g} s, fastmlp "
                        f"{r['fastmlp']['median_s']:.3g} s (first {r['fastmlp_first_fit_s']:.3g} s), "
                        f"{r['speedup']:.2f}x" if r["status"] == "ok" else f"FAILED: {r['error']}")
                print(f"[{i}/{len(cases)} {time.perf_counter() - began:6.0f}s] {dataset} {dtype} "
                      f"{solver}: {what}", file=sys.stderr, flush=True)
            if round_ < args.rounds - 1:
                print(f"[round {round_ + 1}/{args.rounds} {time.perf_counter() - began:6.0f}s] done",
                      file=sys.stderr, flush=True)
    data["machine"]["loadavg_end"] = loadavg()
    data["machine"]["total_s"] = time.perf_counter() - began
    save(data, out)
    print(report(data))
    print(f"\nraw results: {out}")
    return 0 if all(r["status"] == "ok" for r in data["results"]) else 1


if __name__ == "__main__":
    sys.exit(main())
