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

Timing: per case (data set, dtype, solver), one untimed warm-up fit of the fastmlp estimator
first -- Numba compiling the kernels or loading them from the cache -- reported as
"first fit (JIT load)"; one untimed 1-epoch fit of scikit-learn's (BLAS thread pool, page
faults); then --repeats (default 3) timed fits of each, alternating scikit-learn and fastmlp,
each a fresh sklearn.base.clone fitted from scratch (est.fit(X, y) only: input validation
included; data generation, imports and scoring excluded). Reported: the median fit time,
speed-up = scikit-learn median / fastmlp median, with the target next to it (>= 5x for
float32 input, >= 3x for float64), and the test-split accuracy (classifiers) or R^2
(regressors) and final loss_ of the last fitted estimator of each library. A library whose
slowest timed fit is over 1.5x its fastest is marked with a dagger (noise: rerun it).

Both estimators draw the same initial weights and shuffles from the same random_state, so the
two train the same network up to rounding: scores and loss_ should agree closely.

Threads: by default whatever the machine gives (the environment's settings are recorded).
--threads N sets NUMBA_NUM_THREADS, OMP_NUM_THREADS, OPENBLAS_NUM_THREADS and MKL_NUM_THREADS
to N before NumPy, Numba or scikit-learn are imported. OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE,
which this machine sets for old OpenBLAS builds and which slow the current NumPy (see
perf/compare.py), are removed before the imports, so scikit-learn gets NumPy's best BLAS
(--keep-openblas-env keeps them); fastmlp does not train through BLAS. The OpenBLAS core type
and thread counts that actually ran are recorded (threadpoolctl). fastmlp's Numba kernels are
cached in --numba-cache-dir (default perf/results/numba_cache, as perf/compare.py), so the
package tree is not written to; with an empty or stale cache the first fit compiles.

Run (from the repository root)
-------------------------------
    PYTHONPATH=. .venv/bin/python perf/sklearn_dropin.py                 # everything
    PYTHONPATH=. .venv/bin/python perf/sklearn_dropin.py --quick         # smoke run, small data
    PYTHONPATH=. .venv/bin/python perf/sklearn_dropin.py --threads 1 --datasets digits \\
        --solvers adam --dtypes float32 --repeats 5
    PYTHONPATH=. .venv/bin/python perf/sklearn_dropin.py --threads 1 \
        --json perf/results/sklearn_dropin_1thr.json       # steadier on a shared machine
    PYTHONPATH=. .venv/bin/python perf/sklearn_dropin.py --report perf/results/sklearn_dropin.json

Prints Markdown tables; writes the raw results to --json (default
perf/results/sklearn_dropin.json, with --quick perf/results/sklearn_dropin_quick.json) after
every case.
"""

import argparse
import datetime
import gc
import hashlib
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import time
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
    p.add_argument("--report", metavar="JSON",
                   help="only print the tables from an earlier run's JSON")
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


def describe_machine(settings):
    import numba
    import numpy
    import scipy
    import sklearn
    import threadpoolctl

    versions = {"python": platform.python_version(), "numpy": numpy.__version__,
                "scipy": scipy.__version__, "sklearn": sklearn.__version__,
                "numba": numba.__version__, "threadpoolctl": threadpoolctl.__version__}
    return {"cpu": cpu_model(), "cpu_count": os.cpu_count(),
            "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "platform": platform.platform(),
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "versions": versions, "fastmlp_source": fastmlp_source(), **settings}


def thread_state():
    """What actually runs: Numba's thread count and layer, and each BLAS / OpenMP pool."""
    import numba
    import threadpoolctl

    try:
        layer = numba.threading_layer()
    except ValueError:                       # no parallel kernel has run yet
        layer = "(not started)"
    pools = [{k: lib.get(k) for k in ("user_api", "internal_api", "prefix", "version",
                                       "num_threads", "architecture", "threading_layer")}
             for lib in threadpoolctl.threadpool_info()]
    return {"numba_num_threads": numba.config.NUMBA_NUM_THREADS,
            "numba_get_num_threads": numba.get_num_threads(),
            "numba_threading_layer": layer, "threadpools": pools}


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
             "coef_dtype": str(model.coefs_[0].dtype), "dtype_kept": model.coefs_[0].dtype == dtype}
    if lbfgs is not None:
        entry["lbfgs"] = lbfgs
    return entry


def run_case(dataset, dtype_name, solver, data, args):
    import numpy as np
    from sklearn.base import clone
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier as SkClassifier
    from sklearn.neural_network import MLPRegressor as SkRegressor

    from fastmlp.sklearn import MLPClassifier as FmClassifier
    from fastmlp.sklearn import MLPRegressor as FmRegressor

    _, task, X_train, X_test, y_train, y_test = data
    dtype = np.dtype(dtype_name)
    X, Xt = X_train.astype(dtype), X_test.astype(dtype)      # the same arrays for both
    y = y_train.astype(dtype) if task == "regression" else y_train
    max_iter = args.max_iter_digits if dataset == "digits" else args.max_iter_large
    params = estimator_params(solver, max_iter, args.seed)
    sk_class, fm_class = ((SkRegressor, FmRegressor) if task == "regression"
                          else (SkClassifier, FmClassifier))
    sk, fm = sk_class(**params), fm_class(**params)
    result = {"dataset": dataset, "task": task, "solver": solver, "dtype": dtype_name,
              "n_train": X.shape[0], "n_features": X.shape[1], "n_test": Xt.shape[0],
              "max_iter": max_iter, "params": {k: (list(v) if isinstance(v, tuple) else v)
                                               for k, v in params.items()},
              "repeats": args.repeats, "loadavg_before": loadavg(),
              "target": TARGETS[dtype_name], "fastmlp_source": fastmlp_source()}
    stage = "fastmlp warm-up fit"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            _, result["fastmlp_first_fit_s"], _ = timed_fit(fm, X, y)
            stage = "scikit-learn warm-up fit"
            timed_fit(clone(sk).set_params(max_iter=1), X, y)
            times = {"sklearn": [], "fastmlp": []}
            fitted = {}
            for _ in range(args.repeats):
                for name, estimator in (("sklearn", sk), ("fastmlp", fm)):
                    stage = f"{name} fit"
                    fitted[name] = timed_fit(estimator, X, y)
                    times[name].append(fitted[name][1])
        for name in ("sklearn", "fastmlp"):
            stage = f"{name} scoring"
            model, _, lbfgs = fitted[name]
            result[name] = summary_of(model, times[name], lbfgs, Xt, y_test, dtype)
    except Exception as error:  # noqa: BLE001 - report it, go on with the rest
        result["status"] = "failed"
        result["error"] = f"{stage}: {type(error).__name__}: {error}"
        return result
    result["status"] = "ok"
    result["speedup"] = result["sklearn"]["median_s"] / result["fastmlp"]["median_s"]
    result["target_met"] = result["speedup"] >= result["target"]
    result["same_epochs"] = result["sklearn"]["n_iter"] == result["fastmlp"]["n_iter"]
    return result


# ------------------------------------------------------------------ formatting

def fmt_s(entry):
    mark = NOISY_MARK if entry["spread"] > NOISY_SPREAD else ""
    return f"{entry['median_s']:.3g}{mark}"


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
        if not r["same_epochs"]:
            problems.append(f"- {name}: n_iter_ differs (sklearn {r['sklearn']['n_iter']}, fastmlp "
                            f"{r['fastmlp']['n_iter']}): the times compare different work")
        elif r["solver"] == "lbfgs" and (r["sklearn"].get("lbfgs", {}).get("nfev")
                                         != r["fastmlp"].get("lbfgs", {}).get("nfev")):
            problems.append(f"- {name}: L-BFGS function evaluations differ (sklearn "
                            f"{r['sklearn'].get('lbfgs', {}).get('nfev')}, fastmlp "
                            f"{r['fastmlp'].get('lbfgs', {}).get('nfev')})")
        for lib in ("sklearn", "fastmlp"):
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


def header_text(data):
    m, a = data["machine"], data["args"]
    v, threads = m["versions"], m.get("threads_end") or m.get("threads_start", {})
    pools = "; ".join(" ".join(str(x) for x in (p["internal_api"], p.get("version"),
                                                 f"{p['num_threads']} thr") if x)
                      + (f" [{p['architecture']}]" if p.get("architecture") else "")
                      + f" ({p.get('prefix')})" for p in threads.get("threadpools", []))
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
        (f"- Threads: {thread_choice}; Numba {threads.get('numba_get_num_threads')} of "
         f"{threads.get('numba_num_threads')} threads, threading layer "
         f"{threads.get('numba_threading_layer')}; thread pools: {pools or '?'}"),
        (f"- OpenBLAS overrides ({', '.join(OPENBLAS_OVERRIDES)}): {openblas}; Numba cache "
         f"{m['numba_cache_dir']}"),
        (f"- Same work: hidden_layer_sizes=(100,), relu, batch_size='auto' (min(200, n)), other "
         f"hyperparameters scikit-learn's defaults, random_state={a['seed']} for both; max_iter "
         f"{a['max_iter_digits']} (digits) / {a['max_iter_large']} (synthetic sets), tol=0, "
         f"n_iter_no_change=max_iter, so sgd and adam run exactly max_iter epochs in both "
         f"libraries (n_iter_ shows it; ≠ marks a difference); ConvergenceWarning silenced. "
         f"lbfgs (extra rows): tol=0 is its gradient tolerance, SciPy may still stop it early, "
         f"so compare its times only where n_iter_ and nfev agree"),
        (f"- Timing: per case one untimed warm-up fastmlp fit first (reported as first fit (JIT "
         f"load): Numba compiling, or loading from the cache, what the case needs and earlier "
         f"cases did not load) and one untimed 1-epoch scikit-learn fit; then {a['repeats']} "
         f"timed fit(s) per library, alternating, each a fresh clone fitted from scratch; times "
         f"are medians; {NOISY_MARK} = slowest repeat over {NOISY_SPREAD}x the fastest (noise). "
         f"Speed-up = sklearn median / fastmlp median; targets >= {TARGETS['float32']:g}x for "
         f"float32 input, >= {TARGETS['float64']:g}x for float64"),
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
        text.append(f"\n### {dataset}: {first['n_train']:,} x {first['n_features']} train, "
                    f"{first['n_test']:,} test, {estimator}, max_iter {first['max_iter']}\n")
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
    if args.report:
        print(report(json.loads(pathlib.Path(args.report).read_text())))
        return 0
    settings = configure_environment(args)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    machine = describe_machine(settings)
    machine["loadavg_start"] = loadavg()
    machine["threads_start"] = thread_state()
    data = {"args": vars(args), "machine": machine, "datasets": {}, "results": []}
    out = pathlib.Path(args.json)
    cases = [(dataset, dtype, solver) for dataset in args.datasets for dtype in args.dtypes
             for solver in args.solvers]
    began = time.perf_counter()
    loaded = {}
    for i, (dataset, dtype, solver) in enumerate(cases, 1):
        if dataset not in loaded:
            loaded = {dataset: make_data(dataset, args)}       # keep one data set in memory
            data["datasets"][dataset] = loaded[dataset][0]
        r = run_case(dataset, dtype, solver, loaded[dataset], args)
        data["results"].append(r)
        data["machine"]["threads_end"] = thread_state()
        save(data, out)
        what = (f"sklearn {r['sklearn']['median_s']:.3g} s, fastmlp {r['fastmlp']['median_s']:.3g} s"
                f" (first {r['fastmlp_first_fit_s']:.3g} s), {r['speedup']:.2f}x"
                if r["status"] == "ok" else f"FAILED: {r['error']}")
        print(f"[{i}/{len(cases)} {time.perf_counter() - began:6.0f}s] {dataset} {dtype} {solver}: "
              f"{what}", file=sys.stderr, flush=True)
    data["machine"]["loadavg_end"] = loadavg()
    data["machine"]["total_s"] = time.perf_counter() - began
    save(data, out)
    print(report(data))
    print(f"\nraw results: {out}")
    return 0 if all(r["status"] == "ok" for r in data["results"]) else 1


if __name__ == "__main__":
    sys.exit(main())
