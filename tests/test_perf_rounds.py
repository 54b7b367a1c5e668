"""The benchmark scripts' --rounds: each reports the median round, not the best or the first."""

import importlib.util
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load(name):
    path = os.path.join(ROOT, "perf", f"{name}.py")
    if not os.path.isfile(path):
        pytest.skip("not a source checkout")
    spec = importlib.util.spec_from_file_location(f"perf_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cell(peer, rate, status="ok", round_=0):
    return {"config": "A14", "peer": peer, "batch_size": 32, "dtype": "float32", "threads": 2,
            "status": status, "samples_per_s": rate, "round": round_}


@pytest.mark.parametrize("rates, expected", [
    ([300.0, 100.0, 200.0], 200.0),
    ([100.0, 400.0, 200.0, 300.0], 200.0),       # even count: the slower of the middle two
    ([100.0, None, 300.0], 100.0),               # a failed round counts as the slowest
])
def test_compare_reports_the_median_round(rates, expected):
    compare = load("compare")
    results = [cell("fastmlp", rate or 0.0, "ok" if rate else "failed", i)
               for i, rate in enumerate(rates)]
    results.append(cell("numpy", 50.0))
    merged = {r["peer"]: r for r in compare.merge_rounds(results)}
    assert len(merged) == 2
    assert merged["fastmlp"]["samples_per_s"] == expected
    assert merged["fastmlp"]["round_samples_per_s"] == rates
    assert "round_samples_per_s" not in merged["numpy"]


def test_compare_keeps_cells_apart():
    compare = load("compare")
    other = dict(cell("fastmlp", 10.0), threads=1)
    merged = compare.merge_rounds([cell("fastmlp", 20.0), other])
    assert sorted(r["samples_per_s"] for r in merged) == [10.0, 20.0]


def summary(median_s, loss=0.5):
    return {"median_s": median_s, "spread": 1.0, "n_iter": 20, "loss": loss, "score": 0.9}


@pytest.mark.parametrize("medians, expected", [
    ([0.3, 0.1, 0.2], 0.2),
    ([0.1, 0.4, 0.2, 0.3], 0.3),                 # even count: the slower of the middle two
    ([0.25], 0.25),
])
def test_sklearn_dropin_reports_the_median_round(medians, expected):
    dropin = load("sklearn_dropin")
    chosen = dropin.median_round([summary(m) for m in medians])
    assert chosen["median_s"] == expected
    assert chosen["round_median_s"] == medians
    assert chosen["rounds_agree"]


def test_sklearn_dropin_notices_rounds_that_disagree():
    dropin = load("sklearn_dropin")
    assert not dropin.median_round([summary(0.1), summary(0.2, loss=0.6)])["rounds_agree"]
