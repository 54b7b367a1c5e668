"""perf/thread_sweep.py runs and prints one row of positive GFLOP/s per thread count."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "perf", "thread_sweep.py")


def test_thread_sweep_prints_a_row_per_thread_count():
    if not os.path.isfile(SCRIPT):
        pytest.skip("not a source checkout")
    import numba
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, SCRIPT, "--threads", "1,2,64", "--batch-size", "16",
                           "--calls", "3"], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and "threads" not in line]
    expected = [t for t in (1, 2, 64) if t <= numba.config.NUMBA_NUM_THREADS]
    assert [int(row.split("|")[1]) for row in rows] == expected
    for row in rows:
        cells = row.strip("| \n").split("|")[1:]
        assert len(cells) == 12
        for cell in cells:
            median, fast = cell.split()
            assert 0 <= float(median) <= float(fast.strip("()"))
