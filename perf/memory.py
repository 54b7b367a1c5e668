"""Memory: does training allocate per step, and does a process grow with the number of epochs?

    python perf/memory.py [--epochs 1,20] [--batch-size 32] [--dtype float32]

Each row is a fresh Python process (2 threads unless NUMBA_NUM_THREADS says otherwise; nothing
is timed) that makes 20,000 samples of synthetic data, builds
``MLP([400, 100, 40, 2], activation="sigmoid", loss="mse")``, runs one warm-up
``fit(epochs=1)`` (kernels loaded, workspace for the batch size allocated), and then
``fit(X, y, epochs=E, batch_size=B)``. It reports, for that second fit:

- peak RSS of the whole process (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) before and after
  it, i.e. whether training E epochs raised the high-water mark;
- blocks allocated by Numba's runtime (``NUMBA_NRT_STATS=1``): fastmlp's kernels run without
  it, so 0 is expected; anything per step would show as thousands;
- the peak of Python-level allocations during the fit (``tracemalloc``), which includes the
  per-epoch history lists and the per-call validation.

With no allocation in the hot loop, all three stay flat from 1 to 20 epochs (12,500 steps).
"""

import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, resource, sys, tracemalloc
import numpy as np
from numba.core.runtime import rtsys
import fastmlp

dtype, epochs, batch_size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(0)
X = rng.standard_normal((20000, 400)).astype(dtype)
y = np.eye(2, dtype=dtype)[rng.integers(0, 2, 20000)]
net = fastmlp.MLP([400, 100, 40, 2], activation="sigmoid", loss="mse", dtype=dtype, seed=0)
net.fit(X, y, epochs=1, batch_size=batch_size, lr=0.01)

def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux

rss_before = peak_rss_mib()
nrt_before = rtsys.get_allocation_stats()
tracemalloc.start()
history = net.fit(X, y, epochs=epochs, batch_size=batch_size, lr=0.01)
_, python_peak = tracemalloc.get_traced_memory()
tracemalloc.stop()
nrt_after = rtsys.get_allocation_stats()
print(json.dumps({
    "epochs": epochs, "steps": epochs * -(-20000 // batch_size),
    "peak_rss_before_mib": rss_before, "peak_rss_after_mib": peak_rss_mib(),
    "nrt_allocations": nrt_after.alloc - nrt_before.alloc,
    "nrt_meminfos": nrt_after.mi_alloc - nrt_before.mi_alloc,
    "python_peak_kib": python_peak / 1024,
    "final_loss": history["loss"][-1],
}))
"""


def measure(dtype, epochs, batch_size):
    env = dict(os.environ, NUMBA_NRT_STATS="1")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run([sys.executable, "-c", CHILD, dtype, str(epochs), str(batch_size)],
                          env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the worker failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", default="1,20",
                        help="comma-separated epoch counts, one process each (default 1,20)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    args = parser.parse_args()
    rows = [measure(args.dtype, int(e), args.batch_size) for e in args.epochs.split(",")]
    print(f"400-100-40-2, 20,000 x 400 {args.dtype}, batch {args.batch_size}, "
          f"NUMBA_NUM_THREADS={os.environ.get('NUMBA_NUM_THREADS', '(default)')}; "
          "the second fit of a process, after a 1-epoch warm-up fit\n")
    print("| epochs | steps | peak RSS before -> after (MiB) | Numba runtime allocations "
          "(blocks / arrays) | Python peak during fit (KiB) |")
    print("|--:|--:|---|--:|--:|")
    for r in rows:
        print(f"| {r['epochs']} | {r['steps']:,} | {r['peak_rss_before_mib']:.1f} -> "
              f"{r['peak_rss_after_mib']:.1f} | {r['nrt_allocations']} / {r['nrt_meminfos']} | "
              f"{r['python_peak_kib']:.1f} |")


if __name__ == "__main__":
    main()
