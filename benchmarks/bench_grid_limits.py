"""Benchmark: how fast the batch runner refuses grids that would hang it (issue 18, defect 5).

Three grid files are written to a temporary folder and read the way ``lensllm-nb run``
reads them, in this process (interpreter start-up not counted):

* a 10^6-job grid (two sweeps of 1,000 values): refused by `expand_grid` from the
  product of the sweep lengths, before any job is expanded;
* a YAML alias bomb (10 values repeated through 9 levels of 10 aliases: 10^10
  leaves): refused by `load_grid` from the composed node graph, before it is built;
* for scale, a grid at the default limit (10,000 jobs) expanded in full.

Each case is run ``--repeat`` times; the best and median wall seconds are printed.
Run from the repository root:

    .venv/bin/python benchmarks/bench_grid_limits.py
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import nbformat

from lensllm_nb.workflow.batch import expand_grid, load_grid
from lensllm_nb.errors import ConfigError


def _notebook(path):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("x = 0\nvalue = 1")
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell]
    nbformat.write(nb, path)


def _sweep_grid(n_x, n_value) -> str:
    return ("jobs:\n  - notebook: nb.ipynb\n    grid:\n"
            f"      x: [{', '.join(map(str, range(n_x)))}]\n"
            f"      value: [{', '.join(map(str, range(n_value)))}]\n")


def _alias_bomb(levels=9) -> str:
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + f"\njobs:\n  - notebook: nb.ipynb\n    parameters:\n      x: *l{levels}\n"


def _timed(path, out, expect_refusal):
    started = time.perf_counter()
    try:
        jobs = expand_grid(load_grid(path), out=out)
        outcome = f"{len(jobs):,} jobs"
    except ConfigError as exc:
        outcome = f"refused: {str(exc)[:70]}..."
    seconds = time.perf_counter() - started
    if expect_refusal != outcome.startswith("refused"):
        raise SystemExit(f"{path.name}: unexpected outcome {outcome}")
    return seconds, outcome


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        _notebook(folder / "nb.ipynb")
        cases = [("10^6-job grid", _sweep_grid(1000, 1000), True),
                 ("alias bomb (10^10 leaves)", _alias_bomb(), True),
                 ("10,000-job grid (expanded)", _sweep_grid(100, 100), False)]
        print(f"{'case':<28} {'best s':>8} {'median s':>9}  outcome")
        for name, text, refused in cases:
            path = folder / f"{len(text)}.yaml"
            path.write_text(text, encoding="utf-8")
            runs = [_timed(path, folder / "out", refused) for _ in range(args.repeat)]
            seconds = [s for s, _ in runs]
            print(f"{name:<28} {min(seconds):>8.3f} {statistics.median(seconds):>9.3f}  {runs[0][1]}")


if __name__ == "__main__":
    main()
