"""`lensllm-nb finetune`, `zoo build` and `export`: output, resume after a kill, bad input."""

import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from lensllm_nb.cli import main
from lensllm_nb.collection import zoo
from lensllm_nb.collection.store import ResultsStore


# Fixed steps per run keep each run about a second on 2 cores.
QUICK = ["--model", "zoo/gpt2-tiny", "--dataset", "zoo", "--max-steps", "4", "--no-progress"]


def _cli(args):
    """Run the console script in a fresh process, as a user would."""
    command = [sys.executable, "-c", "import sys; from lensllm_nb.cli import main; sys.exit(main())"]
    return subprocess.Popen(command + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=dict(os.environ))


def test_zoo_build_lists_every_candidate(zoo_models, capsys):
    assert main(["zoo", "build"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(zoo.CANDIDATES)
    for line, model in zip(lines, zoo_models):
        name, path, params = line.split("\t")
        assert name == model.name and os.path.isdir(path) and int(params) == model.params


def test_finetune_then_export(zoo_models, tmp_path, capsys):
    store = tmp_path / "results.db"
    assert main(["finetune", *QUICK, "--sizes", "0,16", "--seeds", "0,1", "--store", str(store)]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.strip().splitlines()) == 4
    assert "4 run(s), 0 skipped" in captured.err

    assert main(["finetune", *QUICK, "--sizes", "0,16,32", "--seeds", "0,1", "--store", str(store)]) == 0
    assert "2 run(s), 4 skipped" in capsys.readouterr().err

    assert main(["export", str(store)]) == 0
    table = pd.read_csv(tmp_path / "results.csv")
    assert list(table.columns[:5]) == ["model", "dataset", "n_train", "seed", "test_loss"]
    assert len(table) == 6 and set(table["n_train"]) == {0, 16, 32}

    out = tmp_path / "curves.parquet"
    assert main(["export", str(store), "--format", "parquet", "--out", str(out)]) == 0
    assert pd.read_parquet(out)["test_loss"].gt(0).all()


def test_killed_grid_resumes_and_skips_finished_runs(zoo_models, tmp_path):
    store = tmp_path / "results.db"
    args = [*QUICK, "--max-steps", "40", "--sizes", "0,16,32,64,128,256", "--store", str(store)]
    process = _cli(["finetune", *args])
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if store.exists():
                with ResultsStore(store) as results:
                    runs = results.runs()
                if len(runs):
                    process.send_signal(signal.SIGKILL)  # no chance to clean up
                    process.wait()
                    break
            time.sleep(0.05)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL, "the grid finished before it could be killed"
    with ResultsStore(store) as results:
        before = results.runs()
    assert 1 <= len(before) < 6
    finished = dict(zip(before["n_train"], before["wall_seconds"]))

    resumed = _cli(["finetune", *args])
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    assert f"{6 - len(before)} run(s), {len(before)} skipped" in err
    with ResultsStore(store) as results:
        after = results.runs()
    assert sorted(after["n_train"]) == [0, 16, 32, 64, 128, 256]
    assert (after["status"] == "ok").all()
    for n, seconds in finished.items():  # finished runs were not run again
        assert after.loc[after["n_train"] == n, "wall_seconds"].item() == seconds


BAD = [
    (["--model", "zoo/no-such-model", "--dataset", "zoo", "--sizes", "0"], "not a zoo candidate"),
    (["--model", "./no/such/folder", "--dataset", "zoo", "--sizes", "0"], "not an existing folder"),
    (["--model", "no-such-org/no-such-model-xyz", "--dataset", "zoo", "--sizes", "0"], "Hugging Face Hub"),
    (["--model", "zoo/gpt2-tiny", "--dataset", "zoo", "--sizes", "0,100000"], "training split has only"),
    (["--model", "zoo/gpt2-tiny", "--dataset", "zoo", "--sizes", "0,1.5"], "whole numbers"),
    (["--model", "zoo/gpt2-tiny", "--dataset", "zoo", "--sizes", "0,ten"], "whole numbers"),
    (["--model", "zoo/gpt2-tiny", "--dataset", "zoo", "--sizes", "0", "--seeds", "-1"], "seeds"),
]
if not __import__("torch").cuda.is_available():
    BAD.append((["--model", "zoo/gpt2-tiny", "--dataset", "zoo", "--sizes", "0", "--device", "cuda"],
                "sees no GPU"))


@pytest.mark.parametrize("args, message", BAD)
def test_bad_input_is_one_line_and_writes_nothing(zoo_models, tmp_path, capsys, args, message):
    store = tmp_path / "results.db"
    assert main(["finetune", *args, "--store", str(store), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lensllm-nb finetune: error:")
    assert message in err[0]
    assert not store.exists()


def test_dataset_without_needed_columns(zoo_models, tmp_path, capsys):
    data = tmp_path / "qa.csv"
    rows = {"question": [f"q{i}" for i in range(20)], "answer": [f"a{i}" for i in range(20)]}
    pd.DataFrame(rows).to_csv(data, index=False)
    store = tmp_path / "results.db"
    code = main(["finetune", "--model", "zoo/gpt2-tiny", "--dataset", str(data), "--sizes", "0",
                 "--store", str(store)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "'question', 'answer'" in err[0]
    assert not store.exists()

    ok = main(["finetune", "--model", "zoo/gpt2-tiny", "--dataset", str(data), "--sizes", "0",
               "--input-column", "question", "--target-column", "answer", "--test-size", "4",
               "--store", str(store), "--no-progress"])
    assert ok == 0


def test_export_of_a_missing_store_creates_nothing(tmp_path, capsys):
    missing = tmp_path / "missing.db"
    assert main(["export", str(missing)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not missing.exists() and not (tmp_path / "missing.csv").exists()


def test_zoo_without_subcommand_prints_help(capsys):
    assert main(["zoo"]) == 2
    assert "build" in capsys.readouterr().out
