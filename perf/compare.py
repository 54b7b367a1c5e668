"""End-to-end training throughput of fastmlp against other ways to train the same MLP on the CPU.

What is measured
----------------
Samples per second over whole epochs of plain mini-batch SGD (lr 0.01, no momentum, no weight
decay), batches taken in order (no shuffling; the last batch of an epoch is the shorter
remainder, n % B rows, for every peer), for:

    fastmlp        fastmlp.MLP(...).fit(X, y, epochs=1, batch_size=B, shuffle=False)
    numpy          hand-written NumPy MLP (forward, backprop, SGD with `@`) in the run's dtype
    sklearn        MLPRegressor / MLPClassifier(solver="sgd", momentum=0, alpha=0, shuffle=False),
                   one partial_fit per epoch
    torch          PyTorch eager, nn.Sequential + torch.optim.SGD
    torch_fused    the same with SGD(fused=True)
    torch_compile  torch.compile(model, dynamic=False) + eager SGD
    jax_jit        JAX, one jit-compiled step (params donated) called from a Python loop; the
                   step cuts its batch from the device-resident data (lax.dynamic_slice), which
                   measured a little faster than passing NumPy batch slices
    jax_scan       JAX, the whole epoch as one jit(lax.scan) call (params donated); the
                   shorter last batch is one more step inside the same compiled function

on three networks (same architecture, loss, batch size, lr, dtype and thread count for every peer):

    A14   400-14-8-2      sigmoid hidden, identity output, MSE on one-hot 2-class targets
    A100  400-100-40-2    sigmoid hidden, identity output, MSE on one-hot 2-class targets
    B     784-256-128-10  ReLU hidden, softmax cross-entropy, 10 classes (integer labels)

for batch sizes 1, 32, 256, 1024, float32 and float64, 1 thread and all cores.
Every peer starts from the same Glorot-uniform weights and trains on the same synthetic data
(X standard normal, labels from a noisy random linear teacher), generated deterministically in
the subprocess: 20,000 samples, or 4,000 for B=1 (--samples, --samples-b1).

How
---
Each (peer, network, batch size, dtype, threads) cell runs in its own fresh subprocess
(sys.executable perf/_peers.py), with OMP/MKL/OPENBLAS/NUMBA_NUM_THREADS set before any import,
torch.set_num_threads / set_num_interop_threads, XLA_FLAGS for one thread, and the process pinned
to that many cores (sched_setaffinity; XLA's CPU thread pool follows the affinity, not XLA_FLAGS).
OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE, which this machine sets for old OpenBLAS builds and which
slow the current NumPy, are removed for the numpy and sklearn peers and for the GEMM peak; the
OpenBLAS core type that actually ran is recorded (threadpoolctl) for every subprocess.

Timed: one warm-up epoch first (JIT / torch.compile / XLA compile / Numba cache load and any
cold start; reported as compile_s = first epoch - median epoch, and first_epoch_s), then
--repeats whole epochs; samples/s = samples / median epoch time. An epoch includes everything
the library does per epoch (fastmlp's and sklearn's input validation and label conversion,
torch's batch slicing, JAX's dispatch and the final block_until_ready). Not timed: process start,
imports, data generation, model construction, copying the initial weights, wrapping the data
as tensors (torch.from_numpy, jax.device_put), the final loss evaluation.

Correctness: after the timed epochs, each peer's outputs on the whole training set give its
final training loss, computed the same way for all in float64 (MSE over all n*k elements, or
mean cross-entropy). All peers take the same steps from the same start, so these should agree
up to rounding (they agree to ~1e-7 relative in float32); a fast wrong answer shows there. The
loss at the shared initial weights is printed too, to show that training moved it.

Peak: NumPy 2048 x 2048 matmul GFLOP/s (best of 10; best of the default and the unset OpenBLAS
core type) per dtype and thread count (for T threads, the best measured with at most T); each
cell's achieved GFLOP/s (FLOPs per SGD step = 2*(forward + weight-gradient + input-gradient-
except-first-layer multiply-adds)*B + 2*n_params, summed over the epoch's steps) is shown as %
of that peak.

Noise: the machine is shared. A cell whose slowest timed epoch is over 1.5x its fastest is
marked with a dagger; the 1-minute load average before each cell is in the JSON. OpenMP-based
runs with T = all cores (fastmlp's Numba 'omp' layer, PyTorch) can slow down 100x and more
while another process holds a core, evenly over all epochs (no dagger): compare the 1-thread
columns, and rerun multi-thread cells on an idle machine before trusting them. Even on an idle
machine, this one runs 2-thread work about half as fast for stretches of seconds to minutes
(the machine's state, not the process's; see the README). --rounds R runs every (peer, cell)
subprocess R times, one round over all cells after another, the cell's peers side by side in
each, and reports for each peer the round with the median samples/s (all rounds' figures are in
the JSON, and their range in the summary table): a slow stretch then moves one round, not the
result.
fastmlp's Numba kernels are cached in --numba-cache-dir (default perf/results/numba_cache, so the
package tree is not written to): the first fastmlp cell compiles (its compile_s is then ~20 s),
later ones load from that cache. torch.compile likewise reuses Inductor's on-disk cache.

Run (from the repository root)
-------------------------------
    PYTHONPATH=. .venv/bin/python perf/compare.py                  # everything (~1 hour on 2 cores)
    PYTHONPATH=. .venv/bin/python perf/compare.py --quick          # smoke test: tiny data, 1 repeat
    PYTHONPATH=. .venv/bin/python perf/compare.py --configs A100 --batch-sizes 32,256 \
        --dtypes float32 --threads 1 --peers fastmlp,torch,jax_scan --repeats 7
    PYTHONPATH=. .venv/bin/python perf/compare.py --dtypes float32 --rounds 3    # steadier ratios
    PYTHONPATH=. .venv/bin/python perf/compare.py --report perf/results/compare.json  # re-print

Writes the raw results to --out (default perf/results/compare.json; --quick defaults to
perf/results/compare_quick.json) after every cell, and a chart beside it (same name, .png).
"""

import argparse
import datetime
import json
import math
import os
import pathlib
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
WORKER = HERE / "_peers.py"
sys.path.insert(0, str(HERE))
from _peers import CONFIGS, LOSS_DEFINITION, PEERS, epoch_flops, flops_per_step  # noqa: E402

PEER_LABELS = {
    "fastmlp": "fastmlp",
    "numpy": "NumPy hand-written",
    "sklearn": "scikit-learn MLP (sgd)",
    "torch": "PyTorch eager",
    "torch_fused": "PyTorch SGD(fused=True)",
    "torch_compile": "torch.compile(model)",
    "jax_jit": "JAX jit step + Python loop",
    "jax_scan": "JAX jit(lax.scan) epoch",
}
# Peers whose BLAS is NumPy's OpenBLAS: run without OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE.
OPENBLAS_PEERS = {"numpy", "sklearn"}
OPENBLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
DTYPE_SHORT = {"float32": "f32", "float64": "f64"}
NOISY_SPREAD, NOISY_MARK = 1.5, " †"


# ------------------------------------------------------------------ arguments

def csv(kind):
    def parse(text):
        return [kind(item) for item in text.split(",") if item.strip()]
    return parse


def parse_args(argv=None):
    cpus = os.cpu_count() or 1
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="See the module docstring for what is timed.")
    p.add_argument("--configs", type=csv(str), default=list(CONFIGS),
                   help=f"comma-separated, from {','.join(CONFIGS)} (default: all)")
    p.add_argument("--batch-sizes", type=csv(int), default=[1, 32, 256, 1024],
                   help="comma-separated (default: 1,32,256,1024)")
    p.add_argument("--dtypes", type=csv(str), default=["float32", "float64"],
                   help="comma-separated, float32 and/or float64 (default: both)")
    p.add_argument("--threads", type=csv(int), default=sorted({1, cpus}),
                   help=f"thread counts (default: 1,{cpus} = 1 and os.cpu_count())")
    p.add_argument("--peers", type=csv(str), default=list(PEERS),
                   help=f"comma-separated, from {','.join(PEERS)} (default: all)")
    p.add_argument("--repeats", type=int, default=None, help="timed epochs per cell (default 5)")
    p.add_argument("--rounds", type=int, default=None,
                   help="fresh subprocesses per (peer, cell), run in turns over the cell's peers; "
                        "the round with the median samples/s is reported (default 1)")
    p.add_argument("--samples", type=int, default=None, help="training samples (default 20000)")
    p.add_argument("--samples-b1", type=int, default=None,
                   help="training samples for batch size 1 (default min(4000, --samples))")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per subprocess (default 600)")
    p.add_argument("--out", default=None, help="JSON path (default perf/results/compare.json)")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 2,100 samples (100 for B=1), 1 repeat, output compare_quick.json")
    p.add_argument("--no-pin", action="store_true",
                   help="do not pin each subprocess to `threads` cores (then JAX may use all cores)")
    p.add_argument("--numba-cache-dir", default=str(HERE / "results" / "numba_cache"),
                   help="NUMBA_CACHE_DIR for the fastmlp subprocesses (keeps the package tree untouched)")
    p.add_argument("--report", metavar="JSON", help="only print the tables (and redraw the chart) "
                   "from an earlier run's JSON")
    args = p.parse_args(argv)
    if args.quick:
        args.samples = args.samples or 2100
        args.samples_b1 = args.samples_b1 or 100
        args.repeats = args.repeats or 1
        args.rounds = args.rounds or 1
        args.out = args.out or str(HERE / "results" / "compare_quick.json")
    args.samples = args.samples or 20000
    args.samples_b1 = args.samples_b1 or min(4000, args.samples)
    args.repeats = args.repeats or 5
    args.rounds = args.rounds or 1
    args.out = args.out or str(HERE / "results" / "compare.json")
    for name, allowed, chosen in (("config", CONFIGS, args.configs), ("peer", PEERS, args.peers),
                                  ("dtype", DTYPE_SHORT, args.dtypes)):
        unknown = [x for x in chosen if x not in allowed]
        if unknown:
            p.error(f"unknown {name}(s) {unknown}; choose from {list(allowed)}")
    if any(b < 1 for b in args.batch_sizes) or any(t < 1 for t in args.threads):
        p.error("batch sizes and thread counts must be >= 1")
    if args.repeats < 1 or args.rounds < 1 or args.samples < 1 or args.samples_b1 < 1:
        p.error("--repeats, --rounds, --samples and --samples-b1 must be >= 1")
    return args


# ------------------------------------------------------------------ subprocesses

def child_env(threads, unset_openblas, extra=None):
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[var] = str(threads)
    if threads == 1:
        env["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    else:
        env.pop("XLA_FLAGS", None)
    env["JAX_PLATFORMS"] = "cpu"
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [x for x in [env.get("PYTHONPATH")] if x])
    if unset_openblas:
        for var in OPENBLAS_OVERRIDES:
            env.pop(var, None)
    env.update(extra or {})
    return env


def thread_settings(env):
    keys = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS",
            "XLA_FLAGS") + OPENBLAS_OVERRIDES
    return {k: env.get(k, "(unset)") for k in keys}


def run_worker(mode, spec, env, timeout):
    """Run perf/_peers.py in a fresh process; returns its result dict (never raises)."""
    with tempfile.TemporaryDirectory(prefix="fastmlp_compare_") as tmp:
        result_path = os.path.join(tmp, "result.json")
        began = time.perf_counter()
        proc = subprocess.Popen([sys.executable, str(WORKER), mode, json.dumps(spec), result_path],
                                env=env, cwd=str(ROOT), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            output, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)          # the worker and anything it started
            output, _ = proc.communicate()
            return {"status": "timeout", "error": f"timed out after {timeout:g} s",
                    "wall_s": time.perf_counter() - began}
        wall = time.perf_counter() - began
        try:
            with open(result_path) as f:
                result = json.load(f)
        except (OSError, ValueError):
            lines = [line for line in (output or "").strip().splitlines() if line.strip()]
            last = lines[-1] if lines else f"exit status {proc.returncode}, no output"
            result = {"status": "failed", "error": last}
        if proc.returncode != 0 and result.get("status") == "ok":
            result = {"status": "failed", "error": f"exit status {proc.returncode}"}
        result["wall_s"] = wall
        if result.get("status") == "failed" and output:
            result["output_tail"] = output[-2000:]
        return result


def fastmlp_source():
    """A short hash of fastmlp's Python sources and the git commit, to tie results to a version
    (and to notice when the package changes while a long run is in progress)."""
    import hashlib
    digest = hashlib.sha256()
    for path in sorted((ROOT / "fastmlp").rglob("*.py")):
        digest.update(str(path.relative_to(ROOT)).encode())
        digest.update(path.read_bytes())
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                                capture_output=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "fastmlp"], cwd=ROOT, text=True,
                               capture_output=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "?", ""
    return f"{commit or '?'}{'+dirty' if dirty else ''} src:{digest.hexdigest()[:10]}"


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def architectures(blas):
    return sorted({lib.get("architecture") for lib in blas or [] if lib.get("architecture")})


def measure_machine(args):
    """Versions and BLAS of the default environment, and the NumPy GEMM peaks."""
    machine = {"cpu": cpu_model(), "cpu_count": os.cpu_count(),
               "date": datetime.datetime.now().isoformat(timespec="seconds"),
               "platform": platform.platform(),
               "default_env": {k: os.environ.get(k, "(unset)") for k in OPENBLAS_OVERRIDES}}
    info = run_worker("info", {}, child_env(os.cpu_count() or 1, False), args.timeout)
    machine["versions"] = info.get("versions", {"error": info.get("error")})
    machine["blas_default_env"] = info.get("blas", [])
    peaks = {}
    for threads in args.threads:
        for label, unset in (("default env", False), ("OPENBLAS_CORETYPE/L2_SIZE unset", True)):
            r = run_worker("gemm", {"threads": threads, "dtypes": args.dtypes, "repeats": 10,
                                   "pin": not args.no_pin},
                           child_env(threads, unset), args.timeout)
            status = r.get("status")
            print(f"  GEMM peak, {threads} thread(s), {label}: "
                  + (", ".join(f"{d} {g:.0f} GFLOP/s" for d, g in r["gflops"].items())
                     if status == "ok" else f"{status}: {r.get('error')}")
                  + (f" [{', '.join(architectures(r.get('blas')))}]" if status == "ok" else ""),
                  file=sys.stderr, flush=True)
            if status != "ok":
                continue
            for dtype, gflops in r["gflops"].items():
                key = f"{dtype}/{threads}"
                entry = peaks.setdefault(key, {"dtype": dtype, "threads": threads, "runs": []})
                entry["runs"].append({"env": label, "gflops": gflops,
                                      "architecture": architectures(r.get("blas"))})
    for entry in peaks.values():
        best = max(entry["runs"], key=lambda run: run["gflops"])
        entry.update(measured_gflops=best["gflops"], best_env=best["env"],
                     best_architecture=best["architecture"])
    # A T-thread run may use fewer threads, so the peak with T threads is the best measured
    # with at most T (on a busy machine the 2-thread GEMM can come out below the 1-thread one).
    for entry in peaks.values():
        entry["peak_gflops"] = max(e["measured_gflops"] for e in peaks.values()
                                   if e["dtype"] == entry["dtype"] and e["threads"] <= entry["threads"])
    machine["gemm_peak"] = peaks
    return machine


# ------------------------------------------------------------------ rounds

def result_key(r):
    return (r["config"], r["peer"], r["batch_size"], r["dtype"], r["threads"])


def merge_rounds(results):
    """One result per (network, peer, batch size, dtype, threads): with --rounds, the round
    whose samples/s is the median (the lower of the middle two for an even count; a round that
    failed counts as slowest), with every round's samples/s in round_samples_per_s."""
    groups = {}
    for r in results:
        groups.setdefault(result_key(r), []).append(r)
    merged = []
    for rounds in groups.values():
        if len(rounds) == 1:
            merged.append(rounds[0])
            continue
        ranked = sorted(rounds, key=lambda r: r.get("samples_per_s", 0.0) if r["status"] == "ok" else -1.0)
        chosen = dict(ranked[(len(ranked) - 1) // 2])
        chosen["round_samples_per_s"] = [r.get("samples_per_s") if r["status"] == "ok" else None
                                         for r in rounds]
        merged.append(chosen)
    return merged


def round_range(r):
    rates = [x for x in r.get("round_samples_per_s") or [] if x]
    if len(rates) < 2:
        return ""
    return f"{fmt_rate(min(rates))}-{fmt_rate(max(rates))}"


# ------------------------------------------------------------------ formatting

def cell_label(r):
    return f"B={r['batch_size']} {DTYPE_SHORT[r['dtype']]} {r['threads']}thr"


def fmt_rate(x):
    if x >= 1e6:
        return f"{x / 1e6:.3g}M"
    if x >= 1e3:
        return f"{x / 1e3:.3g}k"
    return f"{x:.3g}"


def status_text(r):
    if r["status"] == "missing":
        return f"missing ({r.get('error', '')})"
    if r["status"] == "skipped":
        return f"skipped ({r.get('error', '')})"
    return f"{r['status'].upper()}: {r.get('error', '')}"


def fmt_load(load):
    return "(" + ", ".join(f"{x:.2f}" for x in load) + ")" if load else "?"


def markdown_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(x).replace("|", "/") for x in row) + " |" for row in rows]
    return "\n".join(lines)


def cells_of(results, config):
    seen = []
    for r in results:
        if r["config"] == config:
            key = (r["batch_size"], r["dtype"], r["threads"])
            if key not in seen:
                seen.append(key)
    return sorted(seen, key=lambda k: (k[0], k[1], k[2]))


def lookup(results, config, peer, cell):
    for r in results:
        if result_key(r) == (config, peer) + cell:
            return r
    return None


def config_tables(data):
    results, peaks = data["results"], data["machine"].get("gemm_peak", {})
    out = []
    for config in [c for c in CONFIGS if any(r["config"] == c for r in results)]:
        cfg = CONFIGS[config]
        cells = cells_of(results, config)
        peers = [p for p in PEERS if any(r["config"] == config and r["peer"] == p for r in results)]
        labels = [f"B={b} {DTYPE_SHORT[d]} {t}thr" for b, d, t in cells]
        sizes = "-".join(map(str, cfg["sizes"]))
        per_sample, per_step = flops_per_step(cfg["sizes"])
        out.append(f"\n### {config}: {sizes}, {cfg['hidden']} hidden, "
                   f"{'identity output, MSE' if cfg['loss'] == 'mse' else 'softmax cross-entropy'}"
                   f"  (FLOPs per SGD step: {per_sample:,} x B + {per_step:,})\n")
        out.append("Training throughput, samples/s (% of NumPy GEMM peak for that dtype and thread "
                   f"count; {NOISY_MARK.strip()} = slowest timed epoch over {NOISY_SPREAD}x the fastest: "
                   "noisy, rerun that cell):\n")
        rows, loss_rows, compile_rows = [], [], []
        for peer in peers:
            row, loss_row, compile_row = [PEER_LABELS[peer]], [PEER_LABELS[peer]], [PEER_LABELS[peer]]
            for cell in cells:
                r = lookup(results, config, peer, cell)
                if r is None:
                    row.append("-"); loss_row.append("-"); compile_row.append("-")
                elif r["status"] != "ok":
                    row.append(status_text(r)); loss_row.append(r["status"]); compile_row.append(r["status"])
                else:
                    peak = peaks.get(f"{cell[1]}/{cell[2]}", {}).get("peak_gflops")
                    pct = f" ({100 * r['gflops'] / peak:.1f}%)" if peak else ""
                    noisy = NOISY_MARK if r.get("spread", 1.0) > NOISY_SPREAD else ""
                    row.append(f"{fmt_rate(r['samples_per_s'])}{pct}{noisy}")
                    loss_row.append(f"{r['final_loss']:.5g}")
                    compile_row.append(f"{r['compile_s']:.2f}")
            rows.append(row); loss_rows.append(loss_row); compile_rows.append(compile_row)
        out.append(markdown_table(["peer"] + labels, rows))
        out.append(f"\nFinal training loss after the warm-up + timed epochs "
                   f"({LOSS_DEFINITION[cfg['loss']]}):\n")
        initial = []
        for cell in cells:
            r = next((r for r in results if r["config"] == config and "initial_loss" in r
                      and (r["batch_size"], r["dtype"], r["threads"]) == cell), None)
            initial.append(f"{r['initial_loss']:.5g}" if r else "-")
        loss_rows.append(["(at the shared initial weights)"] + initial)
        out.append(markdown_table(["peer"] + labels, loss_rows))
        out.append("\ncompile_s (first epoch minus median epoch: JIT / compile / cold start), seconds:\n")
        out.append(markdown_table(["peer"] + labels, compile_rows))
    return "\n".join(out)


def summary_table(data):
    """Per cell: fastmlp, the fastest other peer and the ratio; and how far the final losses
    spread (relative to the median over all peers that ran the cell)."""
    results = data["results"]
    with_rounds = any(r.get("round_samples_per_s") for r in results)
    rows = []
    for config in CONFIGS:
        for cell in cells_of(results, config):
            ran = [r for r in results if r["config"] == config and r["status"] == "ok"
                   and (r["batch_size"], r["dtype"], r["threads"]) == cell]
            mine = lookup(results, config, "fastmlp", cell)
            others = [r for r in ran if r["peer"] != "fastmlp"]
            best = max(others, key=lambda r: r["samples_per_s"], default=None)
            label = f"{config} B={cell[0]} {DTYPE_SHORT[cell[1]]} {cell[2]}thr"
            losses = [r["final_loss"] for r in ran if math.isfinite(r["final_loss"])]
            ref = statistics.median(losses) if losses else math.nan

            def rel(r):
                return (r["final_loss"] - ref) / abs(ref) if ref else math.nan

            if mine is not None and mine["status"] == "ok":
                fast, mine_dev = fmt_rate(mine["samples_per_s"]), f"{rel(mine):+.1e}"
            else:
                fast, mine_dev = ("-" if mine is None else status_text(mine)), "-"
            worst = max(ran, key=lambda r: abs(rel(r)) if math.isfinite(rel(r)) else math.inf,
                        default=None)
            spread = f"{rel(worst):+.1e} ({PEER_LABELS[worst['peer']]})" if worst else "-"
            ratio = (f"{mine['samples_per_s'] / best['samples_per_s']:.2f}x"
                     if best and mine is not None and mine["status"] == "ok" else "-")
            row = [label, fast, PEER_LABELS[best["peer"]] if best else "(no other peer ran)",
                   fmt_rate(best["samples_per_s"]) if best else "-", ratio, mine_dev, spread]
            if with_rounds:
                row.append(f"{round_range(mine) or '-'}; {round_range(best) or '-' if best else '-'}"
                           if mine is not None else "-")
            rows.append(row)
    header = ["cell", "fastmlp samples/s", "best other peer", "its samples/s", "fastmlp / best",
              "fastmlp final loss vs median of all", "largest deviation (peer)"]
    if with_rounds:
        header.append("rounds' range: fastmlp; best peer")
    return markdown_table(header, rows)


def compact_table(data):
    """One row per network and batch size, one column per dtype and thread count: fastmlp's
    samples/s, its ratio to the fastest other peer (named) and to PyTorch eager."""
    results = data["results"]
    columns = sorted({(r["dtype"], r["threads"]) for r in results})
    short = {"numpy": "NumPy", "sklearn": "sklearn", "torch": "torch", "torch_fused": "torch fused",
             "torch_compile": "torch.compile", "jax_jit": "JAX jit step", "jax_scan": "JAX scan"}
    rows = []
    for config in CONFIGS:
        for batch in sorted({r["batch_size"] for r in results if r["config"] == config}):
            row = [config, str(batch)]
            for dtype, threads in columns:
                cell = (batch, dtype, threads)
                mine = lookup(results, config, "fastmlp", cell)
                others = [r for r in results if r["config"] == config and r["status"] == "ok"
                          and r["peer"] != "fastmlp" and (r["batch_size"], r["dtype"], r["threads"]) == cell]
                if mine is None or mine["status"] != "ok" or not others:
                    row.append("-")
                    continue
                best = max(others, key=lambda r: r["samples_per_s"])
                text = (f"{fmt_rate(mine['samples_per_s'])}: **{mine['samples_per_s'] / best['samples_per_s']:.2f}x** "
                        f"{short[best['peer']]} ({fmt_rate(best['samples_per_s'])})")
                torch = lookup(results, config, "torch", cell)
                if torch is not None and torch["status"] == "ok":
                    text += f"; {mine['samples_per_s'] / torch['samples_per_s']:.1f}x torch"
                row.append(text)
            rows.append(row)
    return markdown_table(["net", "B"] + [f"{DTYPE_SHORT[d]}, {t} thread{'s' if t > 1 else ''}"
                                          for d, t in columns], rows)


def fastmlp_versions(data):
    seen = []
    for r in data["results"]:
        if r.get("fastmlp_source") and r["fastmlp_source"] not in seen:
            seen.append(r["fastmlp_source"])
    if len(seen) > 1:
        return (f"CHANGED DURING THE RUN ({' -> '.join(seen)}): fastmlp cells measured different "
                f"code; rerun them (each result's fastmlp_source in the JSON says which)")
    if seen:
        return seen[0]
    return "(not recorded)" if any(r["peer"] == "fastmlp" for r in data["results"]) else "(not run)"


def header_text(data):
    m, a = data["machine"], data["args"]
    v = m.get("versions", {})
    lines = ["## fastmlp vs peers: end-to-end SGD training throughput", "",
             f"- Machine: {m['cpu']}, {m['cpu_count']} logical cores; {m['platform']}; {m['date']}",
             f"- Load average (1, 5, 15 min) at start {fmt_load(m.get('loadavg_start'))}, at end "
             f"{fmt_load(m.get('loadavg_end'))}: other work on the machine slows every peer, and multi-"
             f"thread runs (OpenMP barriers) far more than 1-thread ones",
             f"- fastmlp source: {fastmlp_versions(data)}",
             "- Versions: " + ", ".join(f"{k} {v[k]}" for k in
                                        ("python", "numpy", "numba", "scipy", "sklearn", "torch",
                                         "jax", "jaxlib", "fastmlp") if k in v),
             "- Default environment: " + ", ".join(f"{k}={x}" for k, x in m["default_env"].items())
             + f"; NumPy OpenBLAS core type there: {', '.join(architectures(m.get('blas_default_env'))) or '?'}"]
    cores = sorted({arch for r in data["results"] for arch in architectures(r.get("blas"))
                    if r.get("peer") in OPENBLAS_PEERS})
    lines.append(f"- numpy/sklearn peers and GEMM peak run with {' and '.join(OPENBLAS_OVERRIDES)} unset; "
                 f"OpenBLAS core type that ran there: {', '.join(cores) or '(not run)'}; other peers keep "
                 f"the default environment (they do not train through OpenBLAS)")
    peak_bits = []
    for e in sorted(m.get("gemm_peak", {}).values(), key=lambda e: (e["dtype"], e["threads"])):
        measured = e.get("measured_gflops", e["peak_gflops"])
        peak_bits.append(f"{e['dtype']} {e['threads']} thr {e['peak_gflops']:.0f}"
                         + (f" (measured {measured:.0f})" if measured < e["peak_gflops"] else "")
                         + f" [{', '.join(e['best_architecture']) or '?'}]")
    lines.append(f"- NumPy 2048x2048 GEMM peak (best of 10; for T threads the best with at most T), "
                 f"GFLOP/s: {'; '.join(peak_bits) or '(not measured)'}")
    lines.append(f"- Threads per subprocess: OMP/MKL/OPENBLAS/NUMBA_NUM_THREADS = T, "
                 f"torch.set_num_threads(T) and set_num_interop_threads(T), fastmlp n_threads=T, "
                 f"XLA_FLAGS='--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1' for T=1, "
                 f"{'no pinning' if a['no_pin'] else 'process pinned to T cores (sched_setaffinity)'}; "
                 f"T in {a['threads']}")
    lines.append(f"- Data: {a['samples']:,} synthetic samples ({a['samples_b1']:,} for B=1), generated "
                 f"in each subprocess; same initial weights for all peers; lr 0.01, plain SGD, batches in "
                 f"order, last batch = remainder; {a['repeats']} timed epoch(s) per cell after 1 warm-up epoch"
                 + (f"; {a['rounds']} rounds per cell (each peer's subprocess run {a['rounds']} times, "
                    f"the cell's peers in turn each round), the round with the median samples/s "
                    f"reported" if a.get("rounds", 1) > 1 else ""))
    lines.append("- Timed: whole epochs only (all per-step work, per-call validation, JAX's final "
                 "block_until_ready). Excluded: imports, data generation, model construction, the "
                 "warm-up epoch (compile / JIT, reported as compile_s), final loss evaluation. "
                 "samples/s = samples / median epoch seconds. % of peak = FLOPs of the epoch's SGD "
                 "steps / median time / GEMM peak of the same dtype and thread count")
    lines.append("- JAX scan: lax.scan over the n // B full batches plus one step on the n % B "
                 "remainder inside the same jit; torch.compile uses dynamic=False (one static graph "
                 "per batch shape). sklearn's squared_error is 0.5*MSE, but for 2 outputs its "
                 "gradient equals MSE's, so it takes the same steps; its final loss below is "
                 "recomputed as MSE like every peer's")
    return "\n".join(lines)


def report(data):
    data = dict(data, results=merge_rounds(data["results"]))
    text = [header_text(data), config_tables(data),
            "\n### Summary: fastmlp / best peer per cell\n", summary_table(data),
            "\n### Compact: fastmlp samples/s, then fastmlp / fastest other peer (named, its samples/s) "
            "and fastmlp / PyTorch eager\n", compact_table(data)]
    failures = [r for r in data["results"] if r["status"] not in ("ok",)]
    if failures:
        text.append("\nNot run / failed:")
        text += [f"- {r['config']} {cell_label(r)} {r['peer']}: {status_text(r)}" for r in failures]
    return "\n".join(text)


def plot(data, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        print(f"(no chart: {exc})", file=sys.stderr)
        return None
    everything = merge_rounds(data["results"])
    results = [r for r in everything if r["status"] == "ok"]
    configs = [c for c in CONFIGS if any(r["config"] == c for r in results)]
    if not configs:
        return None
    fig, axes = plt.subplots(len(configs), 1, figsize=(max(10, 1.3 * max(
        len(cells_of(results, c)) for c in configs) + 3), 4.5 * len(configs)), squeeze=False)
    peers = [p for p in PEERS if any(r["peer"] == p for r in results)]
    width = 0.8 / max(1, len(peers))
    for ax, config in zip(axes[:, 0], configs):
        cells = cells_of(results, config)
        not_run = []
        for i, peer in enumerate(peers):
            xs, ys = [], []
            for j, cell in enumerate(cells):
                x = j + (i - (len(peers) - 1) / 2) * width
                r = lookup(everything, config, peer, cell)
                if r is not None and r["status"] == "ok":
                    xs.append(x)
                    ys.append(r["samples_per_s"])
                elif r is not None:
                    not_run.append((x, r["status"]))
            ax.bar(xs, ys, width, label=PEER_LABELS[peer],
                   edgecolor="black" if peer == "fastmlp" else None, linewidth=1.2)
        ax.set_yscale("log")
        bottom = ax.get_ylim()[0]
        for x, status in not_run:              # failed / missing / skipped / timeout: say so
            ax.text(x, bottom, f" {status}", rotation=90, ha="center", va="bottom", fontsize=6,
                    color="red")
        ax.set_xticks(range(len(cells)))
        ax.set_xticklabels([f"B={b}\n{DTYPE_SHORT[d]} {t}thr" for b, d, t in cells], fontsize=8)
        ax.set_ylabel("samples/s (log)")
        ax.set_title(f"{config}: {'-'.join(map(str, CONFIGS[config]['sizes']))}")
        ax.grid(axis="y", which="both", alpha=0.3)
    axes[0, 0].legend(fontsize=8, ncol=4, loc="upper left")
    fig.suptitle(f"Training throughput, whole epochs of SGD ({data['machine']['cpu']}, "
                 f"{data['machine']['cpu_count']} cores)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ------------------------------------------------------------------ main

def save(data, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)


def main(argv=None):
    args = parse_args(argv)
    if args.report:
        data = json.loads(pathlib.Path(args.report).read_text())
        print(report(data))
        chart = plot(data, pathlib.Path(args.report).with_suffix(".png"))
        if chart:
            print(f"\nchart: {chart}")
        return 0
    out = pathlib.Path(args.out)
    print("measuring the machine (versions, NumPy GEMM peak)...", file=sys.stderr, flush=True)
    load_start = os.getloadavg() if hasattr(os, "getloadavg") else None
    data = {"args": vars(args), "machine": measure_machine(args), "results": []}
    data["machine"]["loadavg_start"] = load_start
    # One round over all cells after another, a cell's peers side by side in each: a slow
    # stretch of the shared machine meets one round of the cells it overlaps, not all of a
    # cell's rounds, nor one peer's alone.
    jobs = [(config, threads, dtype, B, peer, round_) for round_ in range(args.rounds)
            for config in args.configs for threads in args.threads for dtype in args.dtypes
            for B in args.batch_sizes for peer in args.peers]
    began = time.perf_counter()
    for i, (config, threads, dtype, B, peer, round_) in enumerate(jobs, 1):
        samples = args.samples_b1 if B == 1 else args.samples
        spec = {"peer": peer, "config": config, "batch_size": B, "dtype": dtype, "threads": threads,
                "samples": samples, "repeats": args.repeats, "pin": not args.no_pin}
        extra = {"NUMBA_CACHE_DIR": args.numba_cache_dir} if peer == "fastmlp" else {}
        env = child_env(threads, peer in OPENBLAS_PEERS, extra)
        source = fastmlp_source() if peer == "fastmlp" else None
        load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        r = run_worker("cell", spec, env, args.timeout)
        r["loadavg_1min_before"] = load_before
        if peer == "fastmlp":
            r["fastmlp_source"] = source
        r.update({k: spec[k] for k in ("peer", "config", "batch_size", "dtype", "threads", "samples",
                                       "repeats")})
        r["round"] = round_
        r["env"] = thread_settings(env)
        if r["status"] == "ok":
            r["epoch_flops"] = epoch_flops(CONFIGS[config]["sizes"], samples, B)
        data["results"].append(r)
        save(data, out)
        what = (f"{fmt_rate(r['samples_per_s'])} samples/s, loss {r['final_loss']:.5g}, "
                f"compile {r['compile_s']:.2f} s" if r["status"] == "ok" else status_text(r))
        which = f" round {round_ + 1}" if args.rounds > 1 else ""
        print(f"[{i}/{len(jobs)} {time.perf_counter() - began:6.0f}s] {config} B={B} {dtype} "
              f"{threads}thr {peer}{which}: {what}", file=sys.stderr, flush=True)
    data["machine"]["loadavg_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    data["machine"]["total_s"] = time.perf_counter() - began
    save(data, out)
    print(report(data))
    chart = plot(data, out.with_suffix(".png"))
    print(f"\nraw results: {out}" + (f"\nchart: {chart}" if chart else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
