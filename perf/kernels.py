"""Kernel-level speed: fastmlp's hand-written kernels next to NumPy's BLAS on the same shapes.

    python perf/kernels.py [--dtype float32] [--batch-sizes 1,32,256,1024] [--threads 1,2]

Matrix kernels are reported in GFLOP/s (2 flops per multiply-add), elementwise kernels in GB/s
(bytes read + written). Shapes are the layers of the three reference networks (400-14-8-2,
400-100-40-2, 784-256-128-10) at each batch size:
  forward  out = act(X[B, k] @ W[k, m] + b)          vs  NumPy  X @ W + b
  dW       out = A[B, k].T @ dZ[B, m]                 vs  NumPy  A.T @ dZ
  dX       out = (dZ[B, m] @ WT[m, k]) * act'(A)      vs  NumPy  dZ @ W.T
Each (library, thread count) runs in its own process, since Numba's OpenMP threads spin after
a parallel region and would slow a BLAS call in the same process. Compile time is excluded
(a warm-up call first); figures are the median of many calls. NumPy's OpenBLAS runs with
OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset, i.e. with its best kernels for this CPU.
"""

import argparse
import json
import os
import subprocess
import sys
import time

LAYERS = [(400, 14), (14, 8), (8, 2), (400, 100), (100, 40), (40, 2), (784, 256), (256, 128), (128, 10)]


def median_seconds(call, min_time=0.05, min_repeats=7):
    call()
    times = []
    began = time.perf_counter()
    while len(times) < min_repeats or time.perf_counter() - began < min_time:
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2]


def worker(library, dtype, batch_sizes):
    import numpy as np

    rng = np.random.default_rng(0)
    results = []
    if library == "fastmlp":
        import numba

        from fastmlp._jit import PARALLEL_MIN_ELEMENTS, PARALLEL_MIN_WORK
        from fastmlp.kernels import activations as act
        from fastmlp.kernels.matmul import dense_forward, input_grad, weight_grad
        from fastmlp.kernels.optim import sgd_update
    for B in batch_sizes:
        for k, m in LAYERS:
            X = rng.standard_normal((B, k)).astype(dtype)
            W = rng.standard_normal((k, m)).astype(dtype)
            b = rng.standard_normal(m).astype(dtype)
            dZ = rng.standard_normal((B, m)).astype(dtype)
            out = np.empty((B, m), dtype)
            grad = np.empty((k, m), dtype)
            dX = np.empty((B, k), dtype)
            flops = 2.0 * B * k * m
            row = {"B": B, "k": k, "m": m}
            if library == "numpy":
                row["forward"] = median_seconds(lambda: np.add(np.matmul(X, W, out=out), b, out=out))
                row["dW"] = median_seconds(lambda: np.matmul(X.T, dZ, out=grad))
                row["dX"] = median_seconds(lambda: np.matmul(dZ, W.T, out=dX))
            else:
                big = B * k * m >= PARALLEL_MIN_WORK
                WT = np.ascontiguousarray(W.T)
                fwd, wg, ig = dense_forward.choose(big), weight_grad.choose(big), input_grad.choose(big)
                row["forward"] = median_seconds(lambda: fwd(X, W, b, act.IDENTITY, out))
                row["forward_sigmoid"] = median_seconds(lambda: fwd(X, W, b, act.SIGMOID, out))
                row["dW"] = median_seconds(lambda: wg(X, dZ, grad))
                row["dX"] = median_seconds(lambda: ig(dZ, WT, X, act.IDENTITY, dX))
            row = {key: (flops / value / 1e9 if key not in ("B", "k", "m") else value)
                   for key, value in row.items()}
            results.append(row)
    elementwise = []
    if library == "fastmlp":
        for B in batch_sizes:
            Z = rng.standard_normal((B, 256)).astype(dtype)
            A = np.empty_like(Z)
            nbytes = 2.0 * Z.nbytes
            entry = {"B": B, "m": 256}
            for name, code in (("sigmoid", act.SIGMOID), ("tanh", act.TANH), ("relu", act.RELU)):
                kernel = act.activation_forward.choose(Z.size >= PARALLEL_MIN_ELEMENTS)
                entry[name] = nbytes / median_seconds(lambda: kernel(Z, code, A)) / 1e9
            elementwise.append(entry)
        n = 235146  # parameters of 784-256-128-10
        params = rng.standard_normal(n).astype(dtype)
        grad = rng.standard_normal(n).astype(dtype)
        velocity = np.zeros(n, dtype)
        update = sgd_update.choose(n >= PARALLEL_MIN_ELEMENTS)
        lr, zero = dtype(0.01), dtype(0)
        seconds = median_seconds(lambda: update(grad, n, lr, zero, zero, False, False, params,
                                                velocity))
        elementwise.append({"sgd_update_params": n, "GB/s": 3.0 * params.nbytes / seconds / 1e9})
        threads = numba.get_num_threads()
    else:
        threads = int(os.environ.get("OPENBLAS_NUM_THREADS", "0"))
    json.dump({"library": library, "threads": threads, "matmul": results,
               "elementwise": elementwise}, sys.stdout)


def run_worker(library, threads, dtype, batch_sizes):
    env = dict(os.environ)
    env.update(NUMBA_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    if library == "numpy":
        env.pop("OPENBLAS_CORETYPE", None)
        env.pop("OPENBLAS_L2_SIZE", None)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    command = [sys.executable, __file__, "--worker", library, "--dtype", dtype,
               "--batch-sizes", ",".join(map(str, batch_sizes))]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--batch-sizes", default="1,32,256,1024")
    parser.add_argument("--threads", default=f"1,{os.cpu_count()}")
    parser.add_argument("--worker", choices=("fastmlp", "numpy"), help=argparse.SUPPRESS)
    parser.add_argument("--json", help="also write the raw results here")
    args = parser.parse_args()
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    if args.worker:
        import numpy as np
        worker(args.worker, np.dtype(args.dtype).type, batch_sizes)
        return
    thread_counts = sorted({int(t) for t in args.threads.split(",")})
    runs = {(lib, t): run_worker(lib, t, args.dtype, batch_sizes)
            for t in thread_counts for lib in ("fastmlp", "numpy")}
    print(f"# Kernel throughput, {args.dtype}, median of repeated calls, compile excluded")
    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores\n")
    for t in thread_counts:
        ours, blas = runs[("fastmlp", t)]["matmul"], runs[("numpy", t)]["matmul"]
        print(f"## {t} thread(s): GFLOP/s, fastmlp (NumPy BLAS)\n")
        print("| B | k x m | forward | forward+sigmoid | dW | dX |")
        print("|---|---|---|---|---|---|")
        for mine, theirs in zip(ours, blas):
            print(f"| {mine['B']} | {mine['k']}x{mine['m']} | {mine['forward']:.1f} ({theirs['forward']:.1f}) "
                  f"| {mine['forward_sigmoid']:.1f} | {mine['dW']:.1f} ({theirs['dW']:.1f}) "
                  f"| {mine['dX']:.1f} ({theirs['dX']:.1f}) |")
        print()
        print(f"Elementwise, {t} thread(s), GB/s (read + written):")
        for entry in runs[("fastmlp", t)]["elementwise"]:
            print("  " + ", ".join(f"{key} {value:.1f}" if isinstance(value, float) else f"{key} {value}"
                                   for key, value in entry.items()))
        print()
    if args.json:
        with open(args.json, "w") as stream:
            json.dump({f"{lib}-{t}": run for (lib, t), run in runs.items()}, stream, indent=1)


def cpu_name():
    try:
        with open("/proc/cpuinfo") as stream:
            for line in stream:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    main()
