"""The benchmark protocol against the figures published by Lin et al. (2024)."""

import json
import subprocess
import sys

import numpy as np
import pytest

from lensllm_nb.analysis.protocol import DEFAULT_METHOD, METHODS, run_benchmark
from lensllm_nb.analysis.published_curves import published


@pytest.fixture(scope="module")
def results(flan, gigaword):
    return {name: run_benchmark(table) for name, table in (("flan", flan), ("gigaword", gigaword))}


def _table(result, method, metric):
    res = result.results
    return res[res["method"] == method].set_index("ratio")[metric]


@pytest.mark.parametrize("name", ["flan", "gigaword"])
def test_ats_reproduces_published_pearcorr(results, name):
    pub = published(name)
    pub = pub[(pub["method"] == "AtS") & (pub["metric"] == "PearCorr")].set_index("ratio")["value"]
    ours = _table(results[name], "ats", "pearson")
    assert len(pub) == 7
    np.testing.assert_allclose(ours.reindex(pub.index), pub, atol=0.01)


@pytest.mark.parametrize("name", ["flan", "gigaword"])
def test_baselines_reproduce_published_pearcorr(results, name):
    pub = published(name)
    mapping = {"SubTuning": "subtuning", "ZeroShot": "zeroshot", "ModelSize": "modelsize"}
    for theirs, ours in mapping.items():
        rows = pub[(pub["method"] == theirs) & (pub["metric"] == "PearCorr")].set_index("ratio")["value"]
        mine = _table(results[name], ours, "pearson").reindex(rows.index)
        np.testing.assert_allclose(mine, rows, atol=0.01)


@pytest.mark.parametrize("name", ["flan", "gigaword"])
def test_default_method_beats_ats(results, name):
    lens_p, ats_p = _table(results[name], DEFAULT_METHOD, "pearson"), _table(results[name], "ats", "pearson")
    lens_r, ats_r = _table(results[name], DEFAULT_METHOD, "relacc"), _table(results[name], "ats", "relacc")
    assert lens_p.mean() > ats_p.mean()
    assert lens_r.mean() >= ats_r.mean()


def test_results_cover_every_method_and_ratio(results):
    res = results["flan"].results
    assert set(res["method"]) == set(METHODS)
    assert sorted(res["ratio"].unique()) == [8, 16, 32, 64, 128, 256, 512]
    assert (res["max_train"] * res["ratio"] <= 1638400).all()
    prog = res[res["method"] == "progressive"].set_index("ratio")["cost_fraction"]
    fixed = res[res["method"] == "ats"].set_index("ratio")["cost_fraction"]
    assert (prog <= fixed + 1e-12).all()


def test_json_contract(results):
    doc = results["gigaword"].to_json_dict()
    assert set(doc) == {"dataset", "target", "default_method", "results", "wall_seconds"}
    assert doc["default_method"] == DEFAULT_METHOD
    assert doc["target"] == 1638400 and doc["dataset"] == "gigaword"
    row = doc["results"][0]
    assert set(row) == {"method", "ratio", "max_train", "pearson", "relacc", "spearman", "cost_fraction", "chosen"}
    json.dumps(doc)


def test_cli_benchmark_json_and_errors(data_dir, tmp_path):
    cmd = [sys.executable, "-m", "lensllm_nb.cli", "benchmark", str(data_dir / "gigaword.csv"),
           "--methods", "ats,lensllm", "--ratios", "8,512", "--format", "json"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    doc = json.loads(out.stdout)
    assert [r["method"] for r in doc["results"]] == ["ats", "lensllm", "ats", "lensllm"]
    assert doc["results"][0]["pearson"] == pytest.approx(0.989, abs=0.001)
    bad = subprocess.run([sys.executable, "-m", "lensllm_nb.cli", "benchmark", str(tmp_path / "missing.csv")],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr and "does not exist" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    bad = subprocess.run(cmd[:-2] + ["--methods", "oracle"], capture_output=True, text=True)
    assert bad.returncode != 0 and "unknown name" in bad.stderr and "Traceback" not in bad.stderr


def test_cli_fit_json(data_dir):
    cmd = [sys.executable, "-m", "lensllm_nb.cli", "fit", str(data_dir / "flan.csv"), "--law", "rectified",
           "--predict", "3000000", "--format", "json"]
    doc = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    assert doc["law"] == "rectified" and len(doc["models"]) == 30
    m = doc["models"][0]
    assert set(m) >= {"model", "params", "rmse_log", "d_star", "prediction"}
    p = m["prediction"]
    assert p["n"] == 3000000 and p["low"] < p["loss"] < p["high"]


def test_cli_leaves_a_run_record_also_on_failure(data_dir, tmp_path):
    import os

    env = {**os.environ, "LENSLLM_NB_CACHE": str(tmp_path)}
    ok = [sys.executable, "-m", "lensllm_nb.cli", "benchmark", str(data_dir / "flan.csv"), "--methods", "ats",
          "--ratios", "8", "--format", "csv"]
    subprocess.run(ok, capture_output=True, text=True, check=True, env=env)
    bad = ok[:4] + [str(tmp_path / "missing.csv")]
    assert subprocess.run(bad, capture_output=True, text=True, env=env).returncode == 2
    records = [json.loads(p.read_text()) for p in sorted((tmp_path / "runs").glob("*.json"))]
    assert sorted(r["status"] for r in records) == ["failed", "ok"]
    failed = next(r for r in records if r["status"] == "failed")
    assert "does not exist" in failed["error"] and failed["config"]["curves"].endswith("missing.csv")
    assert "numpy" in failed["versions"] and failed["config_hash"]


def test_cli_fit_holds_out_the_predicted_size_and_labels_its_columns(data_dir, capsys):
    from lensllm_nb.cli import main

    flan = str(data_dir / "flan.csv")
    assert main(["fit", flan, "--law", "rectified", "--predict", "1638400", "--format", "json"]) in (0, 1)
    held_out = json.loads(capsys.readouterr().out)
    assert main(["fit", flan, "--law", "rectified", "--predict", "1638400", "--max-train", "819200",
                 "--format", "json"]) in (0, 1)
    explicit = json.loads(capsys.readouterr().out)
    assert held_out["max_train"] == 819200 and held_out == explicit  # the law never sees the 1638400 runs
    assert {m["prediction"]["max_train"] for m in held_out["models"]} == {819200}
    main(["fit", flan, "--law", "rectified", "--predict", "1638400"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "law fit: rectified on sizes <= 819,200 (parameters, rmse_log)"
    from lensllm_nb.analysis.selection import DEFAULT_METHOD

    assert lines[1].startswith(f"engine: {DEFAULT_METHOD} on sizes <= 819,200, predicting 1,638,400")
    assert "engine loss@1638400" in lines[2] and "engine low90" in lines[2]


def test_cli_output_cut_by_a_pipe_exits_quietly(data_dir, monkeypatch, capsys):
    import io

    from lensllm_nb.cli import main

    class ClosedPipe(io.StringIO):  # what `lensllm-nb fit ... | head` writes into once head has exited
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert main(["fit", str(data_dir / "flan.csv"), "--law", "vanilla", "--format", "json"]) == 141
    assert capsys.readouterr().err == ""
