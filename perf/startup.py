"""Start-up time: a new process imports fastmlp and trains one epoch, with an empty and a full kernel cache.

    python perf/startup.py [--repeats 3] [--dtype float32]

Each measurement is a fresh Python process that imports fastmlp and runs
``MLP([400, 100, 40, 2], activation="sigmoid", loss="mse").fit(X, y, epochs=1, batch_size=32)``
on 20,000 samples of synthetic data (made before the clock starts), 2 threads unless
NUMBA_NUM_THREADS says otherwise. It reports the time to import fastmlp, the time of that first
fit call (JIT compilation or cache loading included), and a second fit call for reference.

cold: NUMBA_CACHE_DIR points at a new empty directory, so every kernel is compiled.
warm: the same directory again, now filled by the cold run.
The package's own __pycache__ cache is bypassed by NUMBA_CACHE_DIR in both cases.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

CHILD = r"""
import json, sys, time
import numpy as np
rng = np.random.default_rng(0)
X = rng.standard_normal((20000, 400)).astype(sys.argv[1])
y = np.eye(2, dtype=sys.argv[1])[rng.integers(0, 2, 20000)]
t0 = time.perf_counter()
import fastmlp
t1 = time.perf_counter()
net = fastmlp.MLP([400, 100, 40, 2], activation="sigmoid", loss="mse", dtype=sys.argv[1], seed=0)
net.fit(X, y, epochs=1, batch_size=32, lr=0.01)
t2 = time.perf_counter()
net.fit(X, y, epochs=1, batch_size=32, lr=0.01)
t3 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "first_fit": t2 - t1, "second_fit": t3 - t2}))
"""


def measure(cache_dir, dtype):
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run([sys.executable, "-c", CHILD, dtype], env=env, capture_output=True,
                          text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    args = parser.parse_args()
    cold, warm = [], []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as cache_dir:
            cold.append(measure(cache_dir, args.dtype))
            warm.append(measure(cache_dir, args.dtype))
    print(f"# Start-up of a new process: import fastmlp + first epoch of 400-100-40-2, "
          f"20,000 samples, batch 32, {args.dtype} (median of {args.repeats})\n")
    print("| cache | import (s) | first fit, compile included (s) | import + first epoch (s) | second fit (s) |")
    print("|---|---|---|---|---|")
    for name, runs in (("cold (empty)", cold), ("warm (filled)", warm)):
        imp = statistics.median(r["import"] for r in runs)
        first = statistics.median(r["first_fit"] for r in runs)
        both = statistics.median(r["import"] + r["first_fit"] for r in runs)
        second = statistics.median(r["second_fit"] for r in runs)
        print(f"| {name} | {imp:.2f} | {first:.2f} | {both:.2f} | {second:.3f} |")


if __name__ == "__main__":
    main()
