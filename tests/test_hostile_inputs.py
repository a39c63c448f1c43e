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
    # The report of what was dropped is one line of the command's own, not Python's warning format.
    assert proc.stderr.startswith("lensllm-nb fit: warning: ") and "dropped 1 invalid observation" in proc.stderr
    assert "UserWarning" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


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
    from lensllm_nb.cli import main
    from lensllm_nb.utils import provenance

    monkeypatch.setenv("LENSLLM_NB_CACHE", str(tmp_path))
    monkeypatch.setattr(provenance, "MAX_CACHED_RECORDS", 3)
    for _ in range(5):
        assert main(["fit", str(tmp_path / "missing.csv")]) == 2
    records = sorted((tmp_path / "runs").glob("*.json"))
    assert len(records) == 3
    assert all(json.loads(p.read_text())["status"] == "failed" for p in records)


# ---------------------------------------------------------------- issue 18: defects 2, 3, 5, 9 (grids and --out)

def _params_notebook(path, source="x = 0\nvalue = 1"):
    """A notebook whose tagged `parameters` cell is `source`, then one cell using `x`."""
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, nbformat.v4.new_code_cell("print(x)")]
    nbformat.write(nb, path)
    return path


def _grid_file(folder, text, name="grid.yaml"):
    _params_notebook(folder / "nb.ipynb")
    _params_notebook(folder / "magic.ipynb", "%matplotlib inline\n!echo hi\nx = 0")
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def _victims(folder) -> dict:
    """Files outside `out` that planted links point at, with their contents."""
    folder.mkdir()
    victims = {name: folder / name for name in ("record", "index", "lock", "hard")}
    for name, path in victims.items():
        path.write_text(f"precious {name}\n")
    return victims


@pytest.mark.parametrize("planted", ["run_record.json", "index.html", ".lensllm-nb.lock", "hardlinked-index"])
def test_run_never_writes_through_a_link_in_out(tmp_path, planted):
    """Defect 2: a symlink or hard link planted in --out is refused (exit 2); its target is untouched."""
    grid = _grid_file(tmp_path, "jobs:\n  - notebook: nb.ipynb\n")
    victims = _victims(tmp_path / "elsewhere")
    out = tmp_path / "out"
    out.mkdir()
    if planted == "hardlinked-index":
        os.link(victims["hard"], out / "index.html")
    else:
        target = {"run_record.json": "record", "index.html": "index", ".lensllm-nb.lock": "lock"}[planted]
        (out / planted).symlink_to(victims[target])
    proc = _cli(["run", str(grid), "--out", str(out)], cwd=tmp_path,
                env_extra={"LENSLLM_NB_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and "link" in errors[0], proc.stderr
    assert {name: path.read_text() for name, path in victims.items()} == {
        name: f"precious {name}\n" for name in victims}


def test_lock_and_every_out_writer_refuse_links(tmp_path):
    """Defect 2, the class: the lock (also when the run is refused), reports, index, summary, folders on the way."""
    from lensllm_nb.workflow.batch.control import lock_folder
    from lensllm_nb.errors import ConfigError
    from lensllm_nb.workflow.report import write_index
    from lensllm_nb.utils.safe_output import open_inside, write_inside

    victims = _victims(tmp_path / "elsewhere")
    out = tmp_path / "out"
    out.mkdir()
    (out / ".lensllm-nb.lock").symlink_to(victims["lock"])
    with pytest.raises(ConfigError, match="link"):
        with lock_folder(out):
            pass
    (out / "index.html").symlink_to(victims["index"])
    with pytest.raises(ConfigError, match="link"):
        write_index([], out / "index.html")
    (out / "reports").symlink_to(victims["record"].parent, target_is_directory=True)
    with pytest.raises(ConfigError, match="link"):
        write_inside(out, "reports/x.html", "<p>x</p>")
    os.link(victims["hard"], out / "hard.log")
    for mode in ("w", "a", "a+"):
        with pytest.raises(ConfigError, match="hard link"):
            open_inside(out, "hard.log", mode)
    assert {name: path.read_text() for name, path in victims.items()} == {
        name: f"precious {name}\n" for name in victims}
    assert sorted(p.name for p in victims["lock"].parent.iterdir()) == sorted(victims)  # no x.html written there
    assert write_inside(out, "logs/ok.log", "fine").read_text() == "fine"


def test_report_command_refuses_a_linked_index(tmp_path):
    """Defect 2 through `lensllm-nb report --out`."""
    notebook = _params_notebook(tmp_path / "nb.ipynb")
    victims = _victims(tmp_path / "elsewhere")
    out = tmp_path / "out"
    out.mkdir()
    (out / "index.html").symlink_to(victims["index"])
    proc = _cli(["report", str(notebook), "--out", str(out)], cwd=tmp_path,
                env_extra={"LENSLLM_NB_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 2 and "link" in proc.stderr, proc.stderr
    assert victims["index"].read_text() == "precious index\n"


INJECTION = "a = 1; __import__('os').system('touch pwned') #"


@pytest.mark.parametrize("grid_text", [
    f'parameters:\n  "{INJECTION}": 1\njobs:\n  - notebook: nb.ipynb\n',
    f'jobs:\n  - notebook: nb.ipynb\n    parameters:\n      "{INJECTION}": 1\n',
    f'jobs:\n  - notebook: magic.ipynb\n    grid:\n      "{INJECTION}": [1, 2]\n',
    'jobs:\n  - notebook: magic.ipynb\n    parameters:\n      "class": 1\n',
], ids=["grid-level", "job-level", "sweep-in-magic-notebook", "keyword"])
def test_parameter_names_are_declared_identifiers(tmp_path, grid_text):
    """Defect 3: a name papermill would write as code is refused up front (magics in the cell included)."""
    grid = _grid_file(tmp_path, grid_text)
    out = tmp_path / "out"
    proc = _cli(["run", str(grid), "--out", str(out)], cwd=tmp_path,
                env_extra={"LENSLLM_NB_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "identifier" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not list(tmp_path.rglob("pwned")) and not (out / "notebooks").exists()


def test_magic_parameters_cell_is_parsed_not_skipped(tmp_path):
    """Defect 3: a parameters cell with IPython magics still declares its names; unparsable is refused."""
    from lensllm_nb.workflow.batch import expand_grid
    from lensllm_nb.errors import ConfigError

    _grid_file(tmp_path, "")
    grid = {"root": str(tmp_path), "jobs": [{"notebook": "magic.ipynb", "grid": {"x": [1, 2]}}]}
    assert [job.parameters for job in expand_grid(grid, out=tmp_path / "out")] == [{"x": 1}, {"x": 2}]
    grid["jobs"][0]["grid"] = {"y": [1]}
    with pytest.raises(ConfigError, match=r"\['y'\].*does not declare"):
        expand_grid(grid, out=tmp_path / "out")
    _params_notebook(tmp_path / "broken.ipynb", "%matplotlib inline\nx = = 1")
    with pytest.raises(ConfigError, match="cannot be known"):
        expand_grid({"root": str(tmp_path), "jobs": [{"notebook": "broken.ipynb"}]}, out=tmp_path / "out")


def _alias_bomb(levels=9) -> str:
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + f"\njobs:\n  - notebook: nb.ipynb\n    parameters:\n      x: *l{levels}\n"


@pytest.mark.parametrize("grid_text, message", [
    (_alias_bomb(), "more than 1,000,000 values"),
    ("jobs:\n  - notebook: nb.ipynb\n    grid:\n      x: [" + ", ".join(map(str, range(1000))) + "]\n"
     "      value: [" + ", ".join(map(str, range(1000))) + "]\n", "1,000,000 jobs, above `max_jobs` = 10,000"),
    ("max_jobs: 3\njobs:\n  - notebook: nb.ipynb\n    grid:\n      x: [1, 2]\n      value: [1, 2]\n",
     "4 jobs, above `max_jobs` = 3"),
], ids=["alias-bomb", "million-jobs", "grid-max_jobs"])
def test_grid_expansion_is_bounded_before_expanding(tmp_path, grid_text, message):
    """Defect 5: an alias bomb (10^10 leaves) and a 10^6-job grid are refused, exit 2, with a run record."""
    grid = _grid_file(tmp_path, grid_text)
    out = tmp_path / "out"
    proc = _cli(["run", str(grid), "--out", str(out)], cwd=tmp_path,
                env_extra={"LENSLLM_NB_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    records = list((tmp_path / "cache" / "runs").glob("*.json"))
    assert len(records) == 1 and json.loads(records[0].read_text())["status"] == "failed"


def test_max_jobs_flag_overrides_the_limit(tmp_path):
    from lensllm_nb.workflow.batch import expand_grid
    from lensllm_nb.errors import ConfigError

    _grid_file(tmp_path, "")
    grid = {"root": str(tmp_path), "jobs": [{"notebook": "nb.ipynb", "grid": {"x": [1, 2, 3]}}]}
    with pytest.raises(ConfigError, match="3 jobs, above `max_jobs` = 2"):
        expand_grid(grid, out=tmp_path / "out", max_jobs=2)
    assert len(expand_grid({**grid, "max_jobs": 1}, out=tmp_path / "out", max_jobs=3)) == 3


def test_unique_names_is_linear_in_the_jobs():
    """Defect 5: naming n jobs costs O(n) (it was O(n^2): 10^3 jobs took 6 s).

    Compared, in one run and at the same n, with one linear pass over the same drafts
    (a dict keyed by name): linear naming is a few times that; quadratic, ~1000 times.
    """
    import gc
    import time

    from lensllm_nb.workflow.batch.grid import _unique_names

    drafts = [{"base": f"nb__{i}", "parameters": {"x": i}} for i in range(50_000)]

    def best(work):
        times = []
        gc.disable()  # a collection landing in one timing would swamp the ratio
        try:
            for _ in range(5):
                started = time.perf_counter()
                work()
                times.append(time.perf_counter() - started)
        finally:
            gc.enable()
        return min(times)

    assert len(set(_unique_names(drafts))) == len(drafts)
    naming = best(lambda: _unique_names(drafts))
    one_pass = best(lambda: {draft["base"]: draft for draft in drafts})
    assert naming / one_pass < 50, (naming, one_pass)


def test_sigterm_during_grid_expansion_stops_with_a_record(tmp_path):
    """Defect 5: SIGTERM while a large grid expands ends the run at once (143) with an `interrupted` record."""
    import signal
    import time

    grid = _grid_file(tmp_path, "jobs:\n  - notebook: nb.ipynb\n    grid:\n      x: [" + ", ".join(
        map(str, range(400))) + "]\n      value: [" + ", ".join(map(str, range(250))) + "]\n")
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LENSLLM_NB_CACHE": str(tmp_path / "cache")}
    proc = subprocess.Popen([sys.executable, "-m", "lensllm_nb.cli", "run", str(grid), "--out", str(out),
                             "--max-jobs", "100000"], cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    try:
        while not (out / ".lensllm-nb.lock").exists() and proc.poll() is None:
            time.sleep(0.05)  # the lock is taken after the grid is read, right before it expands
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    record = json.loads((out / "run_record.json").read_text())
    # Stopped during the expansion: no job was named, none ran.
    assert record["status"] == "interrupted" and record["config"]["jobs"] == [] and record["jobs"] == []


def test_signal_interrupts_pure_computation_before_any_job():
    """Defect 5: in the validation and expansion stages a signal raises at once (no flag to poll)."""
    import signal

    from lensllm_nb.workflow.batch.control import RunControl, StopRun

    control = RunControl()
    with control.signals():
        with pytest.raises(StopRun, match="SIGTERM"):
            with control.interruptible():
                os.kill(os.getpid(), signal.SIGTERM)
                while True:  # a loop that never checks a flag
                    pass
        with pytest.raises(StopRun):  # once stopped, the next stage does not start
            with control.interruptible():
                pass


@pytest.mark.parametrize("value, message", [
    ("2024-01-01", "(date) is not a plain JSON value"),
    ("2024-01-01 10:00:00", "(datetime) is not a plain JSON value"),
    ("!!binary aGVsbG8=", "(bytes) is not a plain JSON value"),
    ("!!set {a: null}", "(set) is not a plain JSON value"),
    (".nan", "(float) is not a plain JSON value"),
])
def test_non_json_grid_values_are_refused_up_front(tmp_path, value, message):
    """Defect 9: a YAML date, timestamp, !!binary, !!set or NaN fails before any job (exit 2), not at run time."""
    grid = _grid_file(tmp_path, f"jobs:\n  - notebook: nb.ipynb\n    parameters:\n      x: {value}\n")
    proc = _cli(["run", str(grid), "--out", str(tmp_path / "out")], cwd=tmp_path,
                env_extra={"LENSLLM_NB_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 2 and message in proc.stderr and "jobs[0].parameters.x" in proc.stderr, proc.stderr


@pytest.mark.parametrize("grid_text, message", [
    ("jobs:\n  - notebook: nb.ipynb\n    parameters: {x: 1, x: 2}\n", "found the key 'x' twice"),
    ("jobs:\n  - notebook: nb.ipynb\njobs:\n  - notebook: magic.ipynb\n", "found the key 'jobs' twice"),
    ("root: sub\njobs:\n  - notebook: ../nb.ipynb\n", "outside the grid's root"),
    ("parameters: {valeu: 3}\njobs:\n  - notebook: nb.ipynb\n", "did you mean 'value'?"),
    ("jobs:\n  - notebook: nb.ipynb\n    grid: {vlaue: [1, 2]}\n", "did you mean 'value'?"),
], ids=["duplicate-parameter", "duplicate-top-key", "notebook-outside-root", "grid-level-typo", "sweep-typo"])
def test_grid_validation_gaps_are_closed(tmp_path, grid_text, message):
    """Defect 9: duplicate keys, a notebook outside `root`, a misspelt grid-level parameter: exit 2 up front."""
    (tmp_path / "sub").mkdir()
    grid = _grid_file(tmp_path, grid_text)
    proc = _cli(["run", str(grid), "--out", str(tmp_path / "out")], cwd=tmp_path,
                env_extra={"LENSLLM_NB_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


# ------------------------------------------- issue 18, defects 1 and 6: secrets, model folders

SECRET = "Hunter2Secret"


def _leaks(folder) -> list:
    """Files under `folder` whose name or text holds SECRET."""
    found = []
    for path in Path(folder).rglob("*"):
        if SECRET in path.name or path.is_file() and SECRET.encode() in path.read_bytes():
            found.append(str(path.relative_to(folder)))
    return found


def test_mask_secrets_masks_every_scheme_query_key_and_flag():
    """Defect 1: userinfo of any scheme, ?password= and kin, key=value, dict keys and argv flags."""
    from lensllm_nb.utils.safe_output import mask_secrets
    from lensllm_nb.collection.store import mask_url

    leaking = [f"mysql://u:{SECRET}@127.0.0.1/db", f"postgresql+psycopg://lens:{SECRET}@db/runs",
               f"redis://:{SECRET}@h:6379/0", f"postgresql://u:p@{SECRET}@db/runs",
               f"postgresql://u@h/db?password={SECRET}&sslmode=require",
               f"postgresql://u@h/db?sslmode=require&PASSWD={SECRET}", f"https://h/x?access_token={SECRET}",
               f"https://h/x?api_key={SECRET}", f"host=h password='{SECRET} x' user=u",
               f"could not connect to --store=mysql://u:{SECRET}@h/db: refused",
               f"parameters {{'client_secret': '{SECRET}'}}"]
    for text in leaking:
        assert SECRET not in mask_secrets(text) and SECRET not in mask_url(text), text
    assert mask_secrets(f"mysql://u:{SECRET}@127.0.0.1/db?x=1") == "mysql://u:***@127.0.0.1/db?x=1"
    argv = ("lensllm-nb", "export", f"mysql://u:{SECRET}@h/db", "--password", SECRET, f"--token={SECRET}")
    assert SECRET not in str(mask_secrets(argv)) and isinstance(mask_secrets(argv), tuple)
    grid = {"parameters": {"password": SECRET, "lr": 1e-4, "store": [f"mysql://u:{SECRET}@h/db"]}}
    assert mask_secrets(grid) == {"parameters": {"password": "***", "lr": 1e-4, "store": ["mysql://u:***@h/db"]}}
    assert grid["parameters"]["password"] == SECRET  # input not mutated
    kept = ["zoo/gpt2-tiny", "http://host:8080/path", "eos_token=</s> max_tokens=12 --eos-token x",
            "postgresql://lens@db/runs", "results.db"]
    assert [mask_secrets(text) for text in kept] == kept
    assert mask_secrets({"eos_token": "</s>", "tokens": 12}) == {"eos_token": "</s>", "tokens": 12}


def test_store_error_masks_userinfo_and_query_passwords():
    """Defect 1: the server backend's message (raised to notebooks) shows the URL masked."""
    from lensllm_nb.errors import StoreError
    from lensllm_nb.collection.store import ResultsStore

    with pytest.raises(StoreError) as error:
        ResultsStore(f"postgresql+psycopg://u:{SECRET}@127.0.0.1:9/db?password={SECRET}", timeout=1)
    assert SECRET not in str(error.value) and "u:***@127.0.0.1:9/db?password=***" in str(error.value)


@pytest.mark.parametrize("url", [f"mysql://u:{SECRET}@127.0.0.1:9/db",
                                 f"mssql+pyodbc://u:{SECRET}@127.0.0.1:9/db",
                                 f"mysql://u@127.0.0.1:9/db?password={SECRET}"],
                         ids=["mysql-userinfo", "mssql-userinfo", "query-password"])
def test_failed_command_leaves_no_password_in_its_record_or_stderr(tmp_path, url):
    """Defect 1: `export URL` fails; stderr and the 0600 run record hold the URL masked."""
    cache = tmp_path / "cache"
    proc = _cli(["export", url, "--out", str(tmp_path / "x.csv")], cwd=tmp_path,
                env_extra={"LENSLLM_NB_CACHE": str(cache)})
    assert proc.returncode != 0 and SECRET not in proc.stdout + proc.stderr, proc.stderr
    assert "***" in proc.stderr, proc.stderr
    records = sorted((cache / "runs").glob("*.json"))
    assert len(records) == 1 and _leaks(cache) == []
    record = json.loads(records[0].read_text())
    assert record["status"] == "failed" and "***" in " ".join(record["argv"])
    assert records[0].stat().st_mode & 0o777 == 0o600


def test_run_record_and_store_rows_keep_masked_argv_and_errors(tmp_path, monkeypatch):
    """Defect 1: a fine-tune's row (built by run_record) and a raw row both reach the store masked."""
    from lensllm_nb.utils.provenance import run_record, write_record
    from lensllm_nb.collection.store import ResultsStore

    url = f"postgresql://lens:{SECRET}@db/runs?sslpassword={SECRET}"
    monkeypatch.setattr(sys, "argv", ["lensllm-nb", "finetune", "--store", url, "--password", SECRET])
    row = run_record("finetune", {"model": "m"}, seed=0, model="m", dataset="d", n_train=100, test_loss=2.0)
    raw = {"model": "m", "dataset": "d", "n_train": 200, "seed": 0, "config_hash": row["config_hash"],
           "status": "ok", "test_loss": 1.9, "argv": ["finetune", "--store", url],
           "error": f"warning: retried {url}", "config": {"store": url, "token": SECRET}}
    with ResultsStore(tmp_path / "runs.db") as store:
        store.upsert_many([row, raw])
        stored = store.runs()
        store.export(tmp_path / "curves.csv")
    assert SECRET not in stored.to_string() and SECRET not in (tmp_path / "curves.csv").read_text()
    assert "postgresql://lens:***@db/runs" in (tmp_path / "curves.csv").read_text()
    written = write_record(row, tmp_path / "records")
    assert written.stat().st_mode & 0o777 == 0o600
    assert _leaks(tmp_path) == []  # the SQLite file (and its WAL) included


def test_grid_swept_url_leaves_no_password_in_names_pages_or_records(tmp_path, capsys):
    """Defect 1: a store URL swept in a grid: names, file names, index.html, reports, run_record.json."""
    from lensllm_nb.workflow.batch import expand_grid
    from lensllm_nb.cli import main

    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("store = ''")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell("print('using', store)\nraise ValueError(f'cannot reach {store}')")]
    nbformat.write(nb, tmp_path / "nb.ipynb")
    stores = [f"postgresql://lens:{SECRET}@db1/runs", f"mysql://u@db2/x?password={SECRET}"]
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({"name": "secrets", "timeout": 300, "stagger": 0.1,
                                    "jobs": [{"notebook": "nb.ipynb", "grid": {"store": stores}}]}), encoding="utf-8")
    out = tmp_path / "out"
    names = [job.name for job in expand_grid(grid, out=out)]
    assert len(set(names)) == 2 and not any(SECRET in name for name in names), names
    assert main(["run", str(grid), "--out", str(out), "--workers", "1"]) == 1
    captured = capsys.readouterr()
    assert SECRET not in captured.out + captured.err
    record = json.loads((out / "run_record.json").read_text())
    assert [job["status"] for job in record["jobs"]] == ["failed", "failed"]
    assert "cannot reach" in record["jobs"][0]["error"] and "***" in record["jobs"][0]["error"]
    shown = [out / "index.html", out / "run_record.json", *(out / "reports").glob("*.html")]
    assert len(shown) == 4 and all(SECRET not in page.read_text(encoding="utf-8") for page in shown)
    assert not [p for p in out.rglob("*") if SECRET in p.name]


def _remote_code_folder(folder, marker):
    """A model folder whose config names a model type that only its own Python code defines."""
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({
        "model_type": "evil_custom",
        "auto_map": {"AutoConfig": "configuration_evil.EvilConfig", "AutoModelForCausalLM": "modeling_evil.EvilModel",
                     "AutoTokenizer": ["tokenization_evil.EvilTokenizer", None]}}))
    code = (f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n"
            "from transformers import PretrainedConfig\n"
            "class EvilConfig(PretrainedConfig):\n    model_type = 'evil_custom'\n")
    for name in ("configuration_evil.py", "modeling_evil.py", "tokenization_evil.py"):
        (folder / name).write_text(code)
    return folder


def test_model_folder_with_its_own_code_is_refused_without_reading_stdin(tmp_path):
    """Defect 6: transformers would ask on stdin and run the folder's code on 'y'; we refuse, code never runs."""
    marker = tmp_path / "PWNED"
    folder = _remote_code_folder(tmp_path / "evil-model", marker)
    data = tmp_path / "task.jsonl"
    data.write_text("".join(json.dumps({"text": f"def f{i}(): return {i}"}) + "\n" for i in range(40)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "LENSLLM_NB_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "lensllm_nb.cli", "finetune", "--model", str(folder),
                           "--dataset", str(data), "--sizes", "0", "--store", str(tmp_path / "r.db")],
                          cwd=tmp_path, env=env, input="y\ny\ny\n", capture_output=True, text=True, timeout=600)
    assert not marker.exists(), "the model folder's code ran"
    assert proc.returncode == 2 and "Do you wish to run the custom code" not in proc.stdout + proc.stderr
    assert "needs its own Python code" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_every_model_tokenizer_config_and_dataset_load_refuses_remote_code():
    """Defect 6: each from_pretrained / from_config / load_dataset call passes trust_remote_code=False."""
    import ast

    loaders = {"from_pretrained", "from_config", "load_dataset"}
    calls, missing = 0, []
    for path in sorted((ROOT / "lensllm_nb").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name not in loaders:
                continue
            calls += 1
            flags = [k.value for k in node.keywords if k.arg == "trust_remote_code"]
            if not (len(flags) == 1 and isinstance(flags[0], ast.Constant) and flags[0].value is False):
                missing.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert calls >= 9 and missing == [], missing


# ---- issue 18, defects 4, 7, 8, 10 (engine memory, n_train overflow, duplicate columns, extreme losses)

def _synthetic_candidates(n_models, seed=0):
    """Tidy curves of `n_models` rectified laws with 1 % noise (as benchmarks/bench_engine_scale.py)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    sizes = np.array([0, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 51200])
    b, beta = rng.uniform(5, 50, (n_models, 1)), rng.uniform(0.2, 0.6, (n_models, 1))
    dl, e = rng.uniform(1, 200, (n_models, 1)), rng.uniform(0.5, 1.5, (n_models, 1))
    loss = (b / (dl + np.maximum(sizes, 1) ** beta) + e) * np.exp(rng.normal(0, 0.01, (n_models, sizes.size)))
    return pd.DataFrame({"model": np.repeat([f"m{i:05d}" for i in range(n_models)], sizes.size),
                         "dataset": "synthetic", "n_train": np.tile(sizes, n_models), "seed": 0,
                         "test_loss": loss.ravel()})


def _peak_bytes(call):
    import tracemalloc

    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_engine_memory_is_linear_in_the_candidates():
    # Issue 18, defect 4: the quadrature held candidates x candidates x 512 floats
    # (tracemalloc peak 1.9 GB at 300 candidates, 7.6 GB at 600; now 63 MB at both).
    from lensllm_nb.analysis.predict import predict_candidates

    small, large = _synthetic_candidates(300), _synthetic_candidates(600)
    peak_small = _peak_bytes(lambda: predict_candidates(small, max_train=1600))
    peak_large = _peak_bytes(lambda: predict_candidates(large, max_train=1600))
    assert peak_large < 3 * peak_small, (peak_small, peak_large)


def test_p_best_memory_is_linear_and_equals_the_direct_product():
    # Issue 18, defect 4: p_best gives the direct product Π_{j≠i} P(Y_j > y_ik) over each
    # candidate's quantiles (what it computed before, in n x n x 512 memory) to 1e-9, both
    # where it evaluates the product at the quantiles (40 candidates) and where it reads it
    # from the shared grid (600 close candidates, one of the smallest scale), in memory linear in n.
    import numpy as np

    from lensllm_nb.analysis.predict import _LEVELS, _t2_ppf, _t2_sf, expected_regret, p_best

    def direct(center, scale):
        y = center[:, None] + scale[:, None] * _t2_ppf(_LEVELS)[None, :]
        mass = np.empty(center.size)
        for i in range(center.size):
            log_sf = np.log(_t2_sf((y[i][None, :] - center[:, None]) / scale[:, None]))
            log_sf[i] = 0.0
            mass[i] = np.exp(log_sf.sum(axis=0)).mean()
        return mass / mass.sum()

    rng = np.random.default_rng(1)
    for center in (np.log(rng.uniform(1.0, 3.0, 40)), np.log(2.0) + rng.normal(0.0, 0.02, 600)):
        scale = np.concatenate([[1e-3, 5e-3], rng.uniform(0.01, 0.3, center.size - 2)])
        np.testing.assert_allclose(p_best(center, scale), direct(center, scale), rtol=1e-9, atol=1e-12)

    def both(n):
        c, s = np.log(rng.uniform(1.0, 3.0, n)), rng.uniform(0.01, 0.2, n)
        return lambda: (p_best(c, s), expected_regret(c, s))

    assert _peak_bytes(both(400)) < 3 * _peak_bytes(both(200))


OVERFLOW_CSV = TIDY_HEADER + "".join(f"m,d,{n},0,{loss}\n" for n, loss in (
    (100, 2.0), (200, 1.9), ("9223372036854775808", 1.85), (400, 1.8), (800, 1.7), ("1e30", 1.65)))


def test_n_train_beyond_int64_is_refused_naming_its_row_and_dropped_cleanly(tmp_path):
    # Issue 18, defect 7: 2**63 and 1e30 were cast to -2**63 and the error blamed another row.
    import warnings

    from lensllm_nb.analysis.curves import read_curves
    from lensllm_nb.errors import CurveDataError

    path = tmp_path / "overflow.csv"
    path.write_text(OVERFLOW_CSV, encoding="utf-8")
    with pytest.raises(CurveDataError, match=r"row 4, column 'n_train': n_train is too large \(9\.22"):
        read_curves(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = read_curves(path, drop_invalid=True)
    assert table["n_train"].tolist() == [100, 200, 400, 800]
    assert [p.split(":")[0] for p in table.attrs["dropped"]] == ["row 4, column 'n_train'", "row 7, column 'n_train'"]
    assert "1e+30" in table.attrs["dropped"][1] and len(caught) == 1
    seeds = tmp_path / "seed.csv"
    seeds.write_text(TIDY_HEADER + "".join(f"m,d,{n},{2 ** 64},2.0\n" for n in (100, 200, 400)), encoding="utf-8")
    with pytest.raises(CurveDataError, match=r"row 2, column 'seed': seed is outside the 64-bit integer range"):
        read_curves(seeds)
    proc = _cli(["fit", str(path), "--drop-invalid"], cwd=tmp_path,
                env_extra={"LENSLLM_NB_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stderr
    assert "-9223372036854775808" not in proc.stdout + proc.stderr


def test_duplicate_column_names_are_refused_in_every_reader(tmp_path):
    # Issue 18, defect 8: pandas renames a repeated column to `test_loss.1` / `200.1`,
    # which was then dropped silently (tidy) or ignored as a non-size column (wide).
    import pandas as pd

    from lensllm_nb.analysis.curves import read_curves, read_wide, validate_curves
    from lensllm_nb.errors import CurveDataError

    tidy = tmp_path / "tidy.csv"
    tidy.write_text("model,dataset,n_train,seed,test_loss,test_loss\n"
                    + "".join(f"m,d,{n},0,2.0,{9 - n / 100}\n" for n in (100, 200, 400)), encoding="utf-8")
    wide = tmp_path / "wide.csv"
    wide.write_text("config name,0,200,400,200,800\nm,3.0,2.5,2.2,9.0,2.0\n", encoding="utf-8")
    padded = tmp_path / "padded.csv"
    padded.write_text("config name,0,200,400,0200,800\nm,3.0,2.5,2.2,9.0,2.0\n", encoding="utf-8")
    parquet = tmp_path / "tidy.parquet"
    pa, pq = pytest.importorskip("pyarrow"), pytest.importorskip("pyarrow.parquet")
    pq.write_table(pa.table([["m"] * 3, ["d"] * 3, [100, 200, 400], [0] * 3, [2.0] * 3, [9.0] * 3],
                            names=["model", "dataset", "n_train", "seed", "test_loss", "test_loss"]), parquet)
    for path, name in ((tidy, "test_loss"), (wide, "200"), (parquet, "test_loss")):
        with pytest.raises(CurveDataError, match=rf"column name\(s\) \['{name}'\] appear more than once"):
            read_curves(path)
    for path in (wide, padded):
        with pytest.raises(CurveDataError, match=r"\['200'\] appear more than once"):
            read_wide(path)
    frame = pd.DataFrame([["m", "d", n, 0, 2.0, 9.0] for n in (100, 200, 400)],
                         columns=["model", "dataset", "n_train", "seed", "test_loss", "test_loss"])
    with pytest.raises(CurveDataError, match="appear more than once"):
        validate_curves(frame)
    proc = _cli(["fit", str(tidy), "--drop-invalid"], cwd=tmp_path,
                env_extra={"LENSLLM_NB_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 2 and "appear more than once" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


@pytest.mark.parametrize("factor", [1e300, 1e-310], ids=["x1e300", "subnormal"])
def test_extreme_losses_fit_in_their_own_units_without_warnings(flan, tmp_path, factor):
    # Issue 18, defect 10: every fit failed and numpy's RuntimeWarnings reached stderr.
    import warnings

    import numpy as np

    from lensllm_nb.analysis.laws import LensLLMLaw, PowerLaw, RectifiedLaw
    from lensllm_nb.analysis.predict import predict_candidates

    table = flan[flan["model"].isin(sorted(flan["model"].unique())[:6])]
    scaled = table.assign(test_loss=table["test_loss"] * factor)
    rows = table[(table["model"] == table["model"].iloc[0]) & (table["n_train"] > 0)]
    D, L = rows["n_train"].to_numpy(float), rows["test_loss"].to_numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for law in (PowerLaw, RectifiedLaw, LensLLMLaw):
            usual, extreme = law().fit(D, L), law().fit(D, L * factor)
            np.testing.assert_allclose(extreme.predict(D) / factor, usual.predict(D), rtol=1e-6)
            assert extreme.reported_params()[1].keys() == usual.reported_params()[1].keys()
        for method in ("curvature_drift", "lensllm"):
            usual = predict_candidates(table, max_train=1600, method=method).frame
            extreme = predict_candidates(scaled, max_train=1600, method=method).frame
            assert extreme["model"].tolist() == usual["model"].tolist()
            np.testing.assert_allclose(extreme["predicted"] / factor, usual["predicted"], rtol=1e-6)
            np.testing.assert_allclose(extreme["p_best"], usual["p_best"], atol=1e-9)
    path = tmp_path / "extreme.csv"
    scaled[["model", "dataset", "n_train", "seed", "test_loss"]].to_csv(path, index=False)
    for argv in (["fit", str(path), "--law", "lensllm"], ["select", str(path), "--max-train", "1600",
                                                          "--method", "lensllm", "--format", "json"]):
        proc = _cli(argv, cwd=tmp_path, env_extra={"LENSLLM_NB_CACHE": str(tmp_path / "cache"),
                                                   "PYTHONWARNINGS": "default"})
        assert proc.returncode == 0 and proc.stderr == "", (argv, proc.stderr)
