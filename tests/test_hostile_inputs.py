"""Hostile inputs through every CLI command, and hostile names through the whole report path.

Each CLI case must end with exit code 2 (or 1 for failed fits/jobs), exactly one
line on stderr, no traceback, nothing written outside the output folder and no
input file modified. The end-to-end case runs a curves file whose model names are
script injections through the batch runner, notebooks 02-04, their reports and
the index, and checks that no live handler or ``javascript:`` link survives.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
IMG = "<img src=x onerror=alert(1)>"
LINK = "[clickme](javascript:alert(4))"
MATH = "tex$\\frac{a}{b}$_{x}"
HOSTILE_MODELS = (IMG, LINK, MATH)

TIDY_HEADER = "model,dataset,n_train,seed,test_loss\n"


def _tidy(rows) -> str:
    return TIDY_HEADER + "".join(f"{m},{d},{n},{s},{loss}\n" for m, d, n, s, loss in rows)


def _curve(model, dataset, losses=(3.0, 2.5, 2.2, 2.0, 1.9, 1.85)):
    sizes = (0, 100, 200, 400, 800, 1600)
    return [(model, dataset, n, 0, loss) for n, loss in zip(sizes, losses)]


@pytest.fixture(scope="module")
def files(tmp_path_factory, flan, gigaword):
    """Hostile input files, written once; their hashes are checked after every case."""
    root = tmp_path_factory.mktemp("hostile-in")
    made = {
        "rising.csv": _tidy(_curve("m", "d", (2.0, 2.1, 2.3, 2.6, 3.0, 3.5))),
        "traversal.csv": _tidy(_curve("m1", "../../escaped", ) + _curve("m2", "../../escaped",
                                                                         (3.1, 2.6, 2.3, 2.1, 1.95, 1.9))),
        "absolute.csv": _tidy(_curve("m1", str(root / "abs-target")) + _curve("m2", str(root / "abs-target"),
                                                                              (3.1, 2.6, 2.3, 2.1, 1.95, 1.9))),
        "hub.csv": _tidy(_curve("m1", "org/name") + _curve("m2", "org/name", (3.1, 2.6, 2.3, 2.1, 1.95, 1.9))),
        "nan.csv": TIDY_HEADER + "m,d,100,0,nan\n",
        "seed.csv": TIDY_HEADER + "m,d,100,0.5,2.0\n",
        "short.csv": _tidy(_curve("m", "d")[:3]),
        "empty.csv": "",
        "grid_latin1.yaml": None,
        "broken.ipynb": "{not json",
        "notebook_list.ipynb": "[1, 2, 3]",
    }
    for name, text in made.items():
        if text is not None:
            (root / name).write_text(text, encoding="utf-8")
    (root / "grid_latin1.yaml").write_bytes(b"name: caf\xe9\njobs:\n  - notebook: x.ipynb\n")
    (root / "grid_typo.yaml").write_text(yaml.safe_dump({
        "root": str(ROOT), "jobs": [{"notebook": "notebooks/02_fit_phase_law.ipynb", "parameters": {"max_trian": 9}}],
    }), encoding="utf-8")
    (root / "grid_escape.yaml").write_text(yaml.safe_dump({
        "root": str(ROOT), "jobs": [{"notebook": "notebooks/../../../etc/passwd"}],
    }), encoding="utf-8")
    import pandas as pd

    pd.concat([flan, gigaword]).to_csv(root / "both.csv", index=False)
    return root


# (name, argv with {in} for the input folder and {out} for the output folder, expected exit code)
CASES = [
    ("fit rising curve", ["fit", "{in}/rising.csv", "--format", "json"], 1),
    ("fit nothing visible", ["fit", "{in}/both.csv", "--dataset", "flan", "--max-train", "100"], 2),
    ("fit --max-train 0", ["fit", "{in}/rising.csv", "--max-train", "0"], 2),
    ("fit NaN loss", ["fit", "{in}/nan.csv"], 2),
    ("fit fractional seed", ["fit", "{in}/seed.csv"], 2),
    ("fit short curve", ["fit", "{in}/short.csv"], 2),
    ("fit empty file", ["fit", "{in}/empty.csv"], 2),
    ("fit missing file", ["fit", "{in}/nope.csv"], 2),
    ("fit unknown dataset", ["fit", "{in}/both.csv", "--dataset", "<b>x</b>"], 2),
    # Several datasets run one after the other (issue 22); a ratio that none of them can serve is refused.
    ("benchmark several datasets, no usable ratio", ["benchmark", "{in}/both.csv", "--ratios", "100000000"], 2),
    ("benchmark huge ratio", ["benchmark", "{in}/both.csv", "--dataset", "flan", "--ratios", "100000000"], 2),
    ("benchmark bad ratios", ["benchmark", "{in}/both.csv", "--dataset", "flan", "--ratios", "8,x"], 2),
    ("benchmark unknown method", ["benchmark", "{in}/both.csv", "--dataset", "flan", "--methods", "ats,<img>"], 2),
    ("benchmark unwritable out", ["benchmark", "{in}/hub.csv", "--ratios", "2", "--out", "{in}/empty.csv/sub"], 2),
    ("run non-UTF-8 grid", ["run", "{in}/grid_latin1.yaml", "--out", "{out}"], 2),
    ("run misspelt parameter", ["run", "{in}/grid_typo.yaml", "--out", "{out}"], 2),
    ("run notebook outside root", ["run", "{in}/grid_escape.yaml", "--out", "{out}"], 2),
    ("run unwritable out", ["run", "{in}/grid_typo.yaml", "--out", "{in}/empty.csv/sub"], 2),
    ("report broken notebook", ["report", "{in}/broken.ipynb", "--out", "{out}"], 2),
    ("report non-notebook JSON", ["report", "{in}/notebook_list.ipynb", "--out", "{out}"], 2),
    ("finetune bad size", ["finetune", "--model", "zoo/gpt2-tiny", "--dataset", "zoo", "--sizes", "-5",
                           "--store", "{out}/r.db"], 2),
    ("fit unknown law", ["fit", "{in}/rising.csv", "--law", "<script>"], 2),
    ("fit non-integer --predict", ["fit", "{in}/rising.csv", "--predict", "1e9x"], 2),
    ("unknown command", ["frobnicate"], 2),
    ("report missing notebook", ["report", "{in}/nope.ipynb", "--out", "{out}"], 2),
    ("export missing store", ["export", "{in}/nope.db", "--out", "{out}/x.csv"], 2),
    ("select several datasets", ["select", "{in}/both.csv", "--max-train", "800"], 2),
    ("select --max-train 0", ["select", "{in}/both.csv", "--dataset", "flan", "--max-train", "0"], 2),
    ("select nothing visible", ["select", "{in}/both.csv", "--dataset", "flan", "--max-train", "100"], 2),
    ("select target below budget", ["select", "{in}/both.csv", "--dataset", "flan", "--max-train", "800",
                                    "--target", "400"], 2),
    ("select level above 1", ["select", "{in}/both.csv", "--dataset", "flan", "--max-train", "800",
                              "--level", "1.5"], 2),
    ("select unknown method", ["select", "{in}/both.csv", "--dataset", "flan", "--max-train", "800",
                               "--method", "<img>"], 2),
    ("select unknown dataset", ["select", "{in}/both.csv", "--dataset", "<b>x</b>", "--max-train", "800"], 2),
    ("select missing file", ["select", "{in}/nope.csv", "--max-train", "800"], 2),
]


def _snapshot(folder) -> dict:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def _cli(argv, cwd, env_extra=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "lensllm_nb.cli", *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("name, argv, code", CASES, ids=[case[0] for case in CASES])
def test_hostile_cli_input_is_one_clean_line(files, tmp_path, name, argv, code):
    work = tmp_path / "work"
    out = work / "out"
    work.mkdir()
    before = _snapshot(files)
    argv = [arg.replace("{in}", str(files)).replace("{out}", str(out)) for arg in argv]
    proc = _cli(argv, cwd=work, env_extra={"LENSLLM_NB_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    if code == 2:
        assert len(errors) == 1, proc.stderr
        assert errors[0].startswith("lensllm-nb") and "np.str_" not in errors[0] and "np.float64" not in errors[0]
    assert _snapshot(files) == before, "an input file was modified or a file was written next to the inputs"
    written = {p.relative_to(work) for p in work.rglob("*")}
    assert all(p.parts[0] == "out" for p in written), written
    assert not list(tmp_path.parent.glob("escaped*")) and not (files / "abs-target").exists()


@pytest.mark.parametrize("data", ["traversal.csv", "absolute.csv", "hub.csv"])
def test_benchmark_out_names_stay_inside_out(files, tmp_path, data):
    out = tmp_path / "deep" / "er" / "out"
    proc = _cli(["benchmark", str(files / data), "--ratios", "2", "--methods", "subtuning,ats",
                 "--format", "json", "--out", str(out)], cwd=tmp_path,
                env_extra={"LENSLLM_NB_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stderr
    json.loads(proc.stdout)
    outside = [p for p in tmp_path.rglob("*") if p.is_file() and out not in p.parents and "cache" not in p.parts]
    assert outside == []
    assert len(list(out.glob("*_results.json"))) == 1
    assert not (files / "abs-target").exists()


def test_fit_json_is_strict_and_keyed_by_dataset(files, tmp_path):
    proc = _cli(["fit", str(files / "both.csv"), "--law", "rectified", "--format", "json"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    models = json.loads(proc.stdout, parse_constant=lambda name: pytest.fail(f"non-strict JSON: {name}"))["models"]
    mine = {m["dataset"]: m["prediction"]["loss"] for m in models if m["model"] == "MBZUAI/LaMini-GPT-1.5B"}
    assert set(mine) == {"flan", "gigaword"} and mine["flan"] != mine["gigaword"]
    single = _cli(["fit", str(files / "both.csv"), "--law", "rectified", "--format", "json", "--dataset", "flan"],
                  cwd=tmp_path)
    flan_only = {m["model"]: m["prediction"]["loss"] for m in json.loads(single.stdout)["models"]}
    assert flan_only["MBZUAI/LaMini-GPT-1.5B"] == mine["flan"]


def test_duplicate_ratios_and_methods_give_one_row_each(files, tmp_path):
    proc = _cli(["benchmark", str(files / "hub.csv"), "--ratios", "2,2", "--methods", "ats,ats,ATS",
                 "--format", "json"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)["results"]
    assert [(r["method"], r["ratio"]) for r in rows] == [("ats", 2)]


def test_drop_invalid_flag_drops_and_fits_the_rest(files, tmp_path):
    text = (files / "rising.csv").read_text().replace("m,d,", "a,d,") + "".join(
        f"b,d,{n},0,{loss}\n" for n, loss in ((100, "nan"), (200, 2.0), (400, 1.8), (800, 1.7), (1600, 1.65)))
    path = tmp_path / "mixed.csv"
    path.write_text(text)
    assert _cli(["fit", str(path)], cwd=tmp_path).returncode == 2
    proc = _cli(["fit", str(path), "--drop-invalid", "--law", "vanilla", "--format", "json"], cwd=tmp_path)
    statuses = {m["model"]: m["status"] for m in json.loads(proc.stdout)["models"]}
    assert statuses == {"a": "failed", "b": "ok"}  # a rises; b lost one row and still has 4 sizes


# ---------------------------------------------------------------- end to end

class _LiveScript(HTMLParser):
    """Collects what a browser would run: on* handlers, javascript: URLs, inline script with our payload."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.found = []
        self._script = None

    def handle_starttag(self, tag, attrs):
        for key, value in attrs:
            value = (value or "").strip().lower()
            if key.startswith("on") and "alert" in value:
                self.found.append(f"<{tag} {key}={value!r}>")
            if key in ("href", "src", "action", "formaction") and value.startswith("javascript:"):
                self.found.append(f"<{tag} {key}={value!r}>")
        if tag == "script":
            kind = dict(attrs).get("type", "text/javascript") or "text/javascript"
            self._script = kind if "javascript" in kind or kind == "module" else None

    def handle_data(self, data):
        if self._script and "alert(1)" in data or self._script and "alert(4)" in data:
            self.found.append(f"<script> with {data.strip()[:80]!r}")

    def handle_endtag(self, tag):
        if tag == "script":
            self._script = None


def _live_scripts(html_text) -> list:
    parser = _LiveScript()
    parser.feed(html_text)
    return parser.found


def test_live_script_detector_sees_the_attacks():
    assert _live_scripts(f"<p>{IMG}</p>") and _live_scripts('<a href="javascript:alert(4)">x</a>')
    assert not _live_scripts("<p>&lt;img src=x onerror=alert(1)&gt;</p><p>[clickme](javascript:alert(4))</p>")


@pytest.fixture(scope="module")
def hostile_curves(flan, tmp_path_factory):
    """Six FLAN curves, every model renamed to a script injection (so the chosen one is one)."""
    target = flan["n_train"].max()
    best = flan[flan["n_train"] == target].groupby("model")["test_loss"].mean().sort_values().index[:6]
    rename = {model: f"{IMG} {LINK} {MATH} {i}" for i, model in enumerate(best)}
    table = flan[flan["model"].isin(best)].assign(model=lambda t: t["model"].replace(rename),
                                                  dataset="flan-hostile")
    path = tmp_path_factory.mktemp("hostile-curves") / "curves.csv"
    table.to_csv(path, index=False)
    return path


@pytest.mark.slow
def test_hostile_names_never_become_live_script(hostile_curves, tmp_path):
    """curves file -> grid -> notebooks 02-04 -> reports -> index: no live handler or javascript: link."""
    curves = str(hostile_curves)
    grid = {
        "name": "hostile", "root": str(ROOT), "workers": 2, "timeout": 900,
        "jobs": [
            {"notebook": "notebooks/02_fit_phase_law.ipynb", "name": IMG,
             "grid": {"models": [[f"{IMG} {LINK} {MATH} {i}" for i in range(4)]]},
             "parameters": {"curves": curves, "law": "rectified"}},
            {"notebook": "notebooks/03_select_models.ipynb", "name": LINK,
             "parameters": {"curves": curves, "methods": ["zeroshot", "subtuning", "rectified"],
                            "widget_mode": "static", "law": "rectified"}},
            {"notebook": "notebooks/04_benchmark.ipynb",
             "parameters": {"sets": [curves], "methods": ["zeroshot", "subtuning", "ats"], "ratios": [8, 16]}},
        ],
    }
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid), encoding="utf-8")
    out = tmp_path / "out"
    proc = _cli(["run", str(path), "--out", str(out)], cwd=tmp_path)
    record = json.loads((out / "run_record.json").read_text())
    assert [job["status"] for job in record["jobs"]] == ["ok"] * 3, (proc.stdout[-2000:], proc.stderr[-2000:])
    pages = [out / "index.html", *sorted((out / "reports").glob("*.html"))]
    assert len(pages) == 4
    for page in pages:
        assert _live_scripts(page.read_text(encoding="utf-8")) == [], page.name
    # The names are shown, as text: the summary line of notebook 03 names the chosen model.
    executed = [nbformat.read(p, as_version=4) for p in sorted((out / "notebooks").glob("*.ipynb"))]
    markdown = [o["data"]["text/markdown"] for nb in executed for c in nb.cells for o in c.get("outputs", [])
                if "text/markdown" in o.get("data", {})]
    summary = [text for text in markdown if "picks" in text]
    assert summary and all("<img" not in text and "](javascript" not in text for text in summary), summary
    assert "&lt;img src=x onerror=alert" in summary[0] and r"\[clickme\]" in summary[0], summary
    assert all(p.resolve().is_relative_to(out.resolve()) for p in out.rglob("*"))


def test_run_record_cache_is_bounded(tmp_path, monkeypatch):
    from lensllm_nb import provenance
    from lensllm_nb.cli import main

    monkeypatch.setenv("LENSLLM_NB_CACHE", str(tmp_path))
    monkeypatch.setattr(provenance, "MAX_CACHED_RECORDS", 3)
    for _ in range(5):
        assert main(["fit", str(tmp_path / "missing.csv")]) == 2
    records = sorted((tmp_path / "runs").glob("*.json"))
    assert len(records) == 3
    assert all(json.loads(p.read_text())["status"] == "failed" for p in records)
