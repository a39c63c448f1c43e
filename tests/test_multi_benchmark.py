"""The protocol on a curves file with several datasets: per-dataset results, skips with reasons, summary."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from lensllm_nb.analysis.multi_benchmark import run_benchmarks

METHODS = ["zeroshot", "subtuning", "ats"]


def _curves(dataset, sizes, zero_shot, seed):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(5):
        b, beta, e = 2.0 + i, 0.3 + 0.05 * i, 1.0 + 0.1 * i
        for n in ([0] if zero_shot else []) + list(sizes):
            loss = b / (100.0 + n ** beta) + e if n else b / 100.0 + e + 0.5
            rows.append({"model": f"m{i}", "dataset": dataset, "n_train": n, "seed": 0,
                         "test_loss": loss * np.exp(rng.normal(0, 0.002))})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def table():
    # "big": zero-shot losses and 8 sizes; "small": no zero-shot, 5 sizes, so ratio 8 leaves 2 visible.
    return pd.concat([_curves("big", 100 * 2 ** np.arange(8), True, 0),
                      _curves("small", 100 * 2 ** np.arange(5), False, 1)], ignore_index=True)


@pytest.fixture(scope="module")
def result(table):
    return run_benchmarks(table, methods=METHODS, ratios=[4, 8])


def test_each_dataset_has_its_own_target_and_skips(result):
    by_name = {r.dataset: r for r in result.per_dataset}
    assert by_name["big"].target == 12800 and by_name["small"].target == 1600
    assert sorted(by_name["big"].results["ratio"].unique()) == [4, 8]
    assert sorted(by_name["small"].results["ratio"].unique()) == [4]
    assert [s["ratio"] for s in result.skipped_ratios["small"]] == [8]
    assert "fewer than 3" in result.skipped_ratios["small"][0]["reason"]
    # zeroshot cannot serve "small" (no n = 0): skipped with its reason, the run goes on.
    assert set(by_name["small"].results["method"]) == {"subtuning", "ats"}
    assert by_name["small"].skipped[0]["method"] == "zeroshot"
    assert "zero-shot loss" in by_name["small"].skipped[0]["reason"]


def test_summary_is_the_mean_over_datasets_and_ratios(result):
    rows = pd.concat([r.results for r in result.per_dataset])
    summary = result.summary.set_index("method")
    assert summary.loc["ats", "n"] == 3 and summary.loc["zeroshot", "n"] == 2
    for metric in ("relacc", "regret", "pearson", "spearman"):
        assert summary.loc["ats", metric] == pytest.approx(rows[rows["method"] == "ats"][metric].mean())


def test_json_contract(result):
    doc = json.loads(json.dumps(result.to_json_dict(), allow_nan=False))
    assert {"datasets", "summary"} <= set(doc)
    one = {d["dataset"]: d for d in doc["datasets"]}["small"]
    assert {"dataset", "target", "default_method", "results", "wall_seconds"} <= set(one)
    assert one["skipped_methods"][0]["method"] == "zeroshot" and one["skipped_ratios"][0]["ratio"] == 8
    assert set(doc["summary"][0]) == {"method", "relacc", "regret", "pearson", "spearman", "n"}


def test_cli_on_a_multi_dataset_file_and_on_one_dataset(table, tmp_path):
    path = tmp_path / "two.csv"
    table.to_csv(path, index=False)
    cmd = [sys.executable, "-m", "lensllm_nb.cli", "benchmark", str(path), "--methods", ",".join(METHODS),
           "--ratios", "4,8", "--format", "json"]
    out = subprocess.run(cmd, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert [d["dataset"] for d in doc["datasets"]] == ["big", "small"]
    assert {s["method"] for s in doc["summary"]} == set(METHODS)
    # One dataset of the same file keeps today's contract.
    out = subprocess.run(cmd + ["--dataset", "big"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert set(json.loads(out.stdout)) == {"dataset", "target", "default_method", "results", "wall_seconds"}
    table_out = subprocess.run(cmd[:-2], capture_output=True, text=True)
    assert table_out.returncode == 0 and "skipped zeroshot on small: " in table_out.stdout
    assert "skipped ratio 8 on small: " in table_out.stdout


def test_lcdb_dev_loads_as_84_problems(data_dir):
    from lensllm_nb.analysis.published_curves import load

    lcdb = load("lcdb_dev")
    assert lcdb["dataset"].nunique() == 84 and (lcdb["n_train"] > 0).all()


def _late_starters(table, first):
    """"big" (sizes 100 ... 12,800) with m0 and m1 first measured at `first`."""
    big = table[table["dataset"] == "big"]
    return big[~(big["model"].isin(["m0", "m1"]) & big["n_train"].between(1, first - 1))].reset_index(drop=True)


def test_a_ratio_some_candidate_cannot_serve_is_refused_naming_it(table):
    from lensllm_nb.analysis.protocol import run_benchmark, usable_ratios
    from lensllm_nb.errors import ConfigError

    late = _late_starters(table, 800)  # ratio 8 (sizes <= 1,600) leaves m0 and m1 two points
    usable, skipped = usable_ratios(late, [4, 8], 12800)
    assert usable == [4] and skipped[0]["ratio"] == 8 and "['m0', 'm1']" in skipped[0]["reason"]
    # Not every method dropped for every ratio because one ratio is short: the ratio is refused up front.
    with pytest.raises(ConfigError, match=r"`ratios` 8: sizes <= 1,600 leave 2 measured size\(s\) for "
                                          r"\['m0', 'm1'\], fewer than 3; use ratios up to 4"):
        run_benchmark(late, methods=METHODS, ratios=[4, 8])
    result = run_benchmark(late, methods=["subtuning", "ats", "backtested_pick"], ratios=[4])
    assert result.skipped == [] and set(result.results["method"]) == {"subtuning", "ats", "backtested_pick"}


def test_cli_default_ratios_leave_out_those_some_candidate_cannot_serve(table, tmp_path):
    path = tmp_path / "late.csv"
    _late_starters(table, 400).to_csv(path, index=False)
    cmd = [sys.executable, "-m", "lensllm_nb.cli", "benchmark", str(path), "--methods", "subtuning,ats",
           "--format", "json"]
    out = subprocess.run(cmd, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    # Of the default ratios 8 ... 512 only 8 leaves m0 and m1 three sizes (400, 800, 1,600); no method is lost.
    assert sorted({r["ratio"] for r in doc["results"]}) == [8] and "skipped_methods" not in doc
    out = subprocess.run(cmd + ["--ratios", "8,16"], capture_output=True, text=True)
    assert out.returncode == 2 and "`ratios` 16" in out.stderr and "use ratios up to 8" in out.stderr
