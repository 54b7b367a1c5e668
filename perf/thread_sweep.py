"""Thread scaling of the matrix kernels inside one process: numba.set_num_threads(T) for each T.

    python perf/thread_sweep.py [--threads 1,2,4,8,12,16] [--batch-size 1024] [--calls 200]

For each layer shape (k x m) and thread count, GFLOP/s (2 flops per multiply-add) of the
parallel variants of the forward pass (identity activation), the weight gradient and the input
gradient on a batch of B rows, float32, each the median (and the 5th percentile of the call
times, i.e. a fast call) of --calls back-to-back calls from Python after a warm-up call;
compile time excluded. One process for every thread count, so the OpenMP workers and the
caches are those of a long-running user process (`perf/kernels.py` starts one per count).
Thread counts above the machine's cores are dropped. The OpenMP spin count in force
(GOMP_SPINCOUNT, which fastmlp sets to 30,000 unless the user set it) is printed.
"""

import argparse
import os
import time

import numpy as np

SHAPES = [(400, 14), (400, 100), (128, 10), (784, 256)]
KERNELS = ("forward", "dW", "dX")


def gflops(call, flops, calls):
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    times.sort()
    return flops / times[len(times) // 2] / 1e9, flops / times[len(times) // 20] / 1e9


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", default="1,2,4,8,12,16")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()

    import numba

    from fastmlp.kernels import activations as act
    from fastmlp.kernels.matmul import dense_forward, input_grad, weight_grad

    forward, weight, backward = (kernel.choose(True) for kernel in (dense_forward, weight_grad, input_grad))
    rng = np.random.default_rng(0)
    B, cases = args.batch_size, []
    for k, m in SHAPES:
        X, dZ = rng.standard_normal((B, k), np.float32), rng.standard_normal((B, m), np.float32)
        W, b = rng.standard_normal((k, m), np.float32), rng.standard_normal(m, np.float32)
        WT, out = np.ascontiguousarray(W.T), np.empty((B, m), np.float32)
        grad, dX = np.empty((k, m), np.float32), np.empty((B, k), np.float32)
        calls = (lambda X=X, W=W, b=b, out=out: forward(X, W, b, act.IDENTITY, out),
                 lambda X=X, dZ=dZ, grad=grad: weight(X, dZ, grad),
                 lambda dZ=dZ, WT=WT, X=X, dX=dX: backward(dZ, WT, X, act.IDENTITY, dX))
        for call in calls:
            call()
        cases.append((k, m, calls))

    print(f"# Kernel GFLOP/s by thread count, float32, B = {B}, median (fast call) of {args.calls} calls")
    print(f"threading layer {numba.threading_layer()}, {numba.config.NUMBA_NUM_THREADS} threads at most, "
          f"GOMP_SPINCOUNT={os.environ.get('GOMP_SPINCOUNT')}\n")
    print("| threads | " + " | ".join(f"{k}x{m} {name}" for k, m, _ in cases for name in KERNELS) + " |")
    print("|---" * (1 + len(cases) * len(KERNELS)) + "|")
    counts = [int(t) for t in args.threads.split(",") if int(t) <= numba.config.NUMBA_NUM_THREADS]
    for threads in counts:
        numba.set_num_threads(threads)
        cells = []
        for k, m, calls in cases:
            for call in calls:
                median, fast = gflops(call, 2.0 * B * k * m, args.calls)
                cells.append(f"{median:.0f} ({fast:.0f})")
        print(f"| {threads} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
