"""Tests of the SQLite results store (lensllm_nb.collection.store)."""

import math
import multiprocessing
import sqlite3

import pandas as pd
import pytest

from lensllm_nb.collection.store import CURVE_COLUMNS, ResultsStore
from lensllm_nb.errors import ConfigError, StoreError

WRITERS = 4
WRITES_PER_WRITER = 200


def _row(**changes):
    row = {"model": "gpt2", "dataset": "zoo", "n_train": 16, "seed": 0,
           "config_hash": "abc123", "status": "ok", "test_loss": 2.5}
    row.update(changes)
    return row


def _write_many(path, writer):
    # Module level so that spawned processes can import it.
    store = ResultsStore(path)
    try:
        for i in range(WRITES_PER_WRITER):
            store.upsert(_row(model=f"m{writer}", n_train=i, test_loss=1.0 + i / 100))
    finally:
        store.close()


def _run_all(procs):
    """Start the processes, wait for them, and kill any still running."""
    try:
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=600)
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()


def test_concurrent_writers_lose_nothing(tmp_path):
    path = tmp_path / "results.db"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_write_many, args=(str(path), w)) for w in range(WRITERS)]
    _run_all(procs)
    assert [p.exitcode for p in procs] == [0] * WRITERS
    with ResultsStore(path) as store:
        runs = store.runs()
    assert len(runs) == WRITERS * WRITES_PER_WRITER
    assert runs.groupby("model").size().tolist() == [WRITES_PER_WRITER] * WRITERS


def _write_with(store, writer):
    for i in range(20):
        store.upsert(_row(model=f"w{writer}", n_train=i))


@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_store_object_can_be_handed_to_worker_processes(tmp_path, method):
    # spawn pickles the store (as Dask does); fork inherits its open connection.
    if method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"no {method} start method here")
    ctx = multiprocessing.get_context(method)
    with ResultsStore(tmp_path / "r.db") as store:
        store.upsert(_row(model="parent"))
        procs = [ctx.Process(target=_write_with, args=(store, w)) for w in range(2)]
        _run_all(procs)
        assert [p.exitcode for p in procs] == [0, 0]
        store.upsert(_row(model="parent", seed=1))
        assert len(store) == 1 + 2 * 20 + 1


def test_reupsert_same_key_keeps_one_row(tmp_path):
    with ResultsStore(tmp_path / "r.db") as store:
        store.upsert(_row(test_loss=3.0))
        store.upsert(_row(test_loss=2.0))
        store.upsert(_row(test_loss=2.0))
        runs = store.runs()
    assert len(runs) == 1
    assert runs.loc[0, "test_loss"] == 2.0


def test_failed_run_is_recorded_then_replaced_by_ok(tmp_path):
    with ResultsStore(tmp_path / "r.db") as store:
        store.upsert(_row(status="failed", test_loss=None, error="CUDA out of memory"))
        failed = store.runs(status="failed")
        assert len(failed) == 1 and failed.loc[0, "error"] == "CUDA out of memory"
        assert not store.is_done("gpt2", "zoo", 16, 0, "abc123")
        assert store.curves().empty

        store.upsert(_row(test_loss=2.25))
        assert store.is_done("gpt2", "zoo", 16, 0, "abc123")
        runs = store.runs()
        assert len(runs) == 1
        assert runs.loc[0, "status"] == "ok" and runs.loc[0, "error"] is None


def test_failure_never_overwrites_a_finished_run(tmp_path):
    with ResultsStore(tmp_path / "r.db") as store:
        store.upsert(_row(test_loss=2.0))
        store.upsert(_row(status="failed", test_loss=float("nan"), error="diverged"))
        runs = store.runs()
    assert runs.loc[0, "status"] == "ok" and runs.loc[0, "test_loss"] == 2.0


@pytest.mark.parametrize("bad, field", [
    ({"test_loss": float("nan")}, "test_loss"),
    ({"test_loss": -1.0}, "test_loss"),
    ({"test_loss": None}, "test_loss"),
    ({"n_train": 3.5}, "n_train"),
    ({"n_train": -2}, "n_train"),
    ({"seed": "zero"}, "seed"),
    ({"status": "done"}, "status"),
    ({"model": ""}, "model"),
    ({"config": "lr=1e-4"}, "config"),
    ({"note": object()}, "note"),
    ({"config_hash": None}, "config_hash"),
])
def test_bad_rows_raise_and_write_nothing(tmp_path, bad, field):
    with ResultsStore(tmp_path / "r.db") as store:
        with pytest.raises(StoreError, match=field):
            # The good first row must not be written either: one transaction.
            store.upsert_many([_row(seed=1), _row(**bad)])
        assert len(store) == 0


def test_known_and_extra_columns_round_trip(tmp_path):
    ntk = {"gram": [[1.0, 0.5], [0.5, 1.0]], "sketch": "countsketch"}
    row = _row(params=1_000, family="gpt2", tokens=4096, flops=2.5e10, train_loss=2.0,
               steps=10, wall_seconds=1.5, device="cpu", config={"lr": 1e-4},
               versions={"torch": "2.13.0"}, ntk=ntk, lora_rank=8)
    with ResultsStore(tmp_path / "r.db") as store:
        store.upsert(row)
        runs = store.runs()
        curves = store.curves()
    assert runs.loc[0, "config"] == {"lr": 1e-4}
    assert runs.loc[0, "ntk"] == ntk
    assert runs.loc[0, "extra"] == {"lora_rank": 8}
    assert runs.loc[0, "params"] == 1_000
    assert list(curves.columns) == [*CURVE_COLUMNS, "lr", "lora_rank"]  # lr from the config
    assert curves.loc[0, "lora_rank"] == 8
    assert row["config"] == {"lr": 1e-4} and "extra" not in row  # input not mutated


def test_curves_sorted_ok_only_and_typed(tmp_path):
    with ResultsStore(tmp_path / "r.db") as store:
        store.upsert_many([
            _row(model="b", n_train=32, test_loss=1.5),
            _row(model="a", n_train=32, test_loss=1.7),
            _row(model="a", n_train=8, test_loss=2.0),
            _row(model="a", n_train=0, status="failed", test_loss=None, error="boom"),
        ])
        curves = store.curves()
    assert list(curves.columns[:5]) == ["model", "dataset", "n_train", "seed", "test_loss"]
    assert curves[["model", "n_train"]].values.tolist() == [["a", 8], ["a", 32], ["b", 32]]
    assert curves["n_train"].dtype == "int64" and curves["test_loss"].dtype == float


def test_export_csv_and_parquet(tmp_path):
    with ResultsStore(tmp_path / "r.db") as store:
        store.upsert_many([_row(n_train=n, test_loss=3.0 / (1 + n)) for n in (0, 8, 16)])
        csv = store.export(tmp_path / "out" / "curves.csv")
        parquet = store.export(tmp_path / "curves.parquet", format="parquet")
        with pytest.raises(ConfigError, match="`format`"):
            store.export(tmp_path / "curves.xlsx", format="xlsx")
    from_csv = pd.read_csv(csv)
    from_parquet = pd.read_parquet(parquet)
    assert from_csv["n_train"].tolist() == [0, 8, 16]
    assert list(from_parquet.columns) == list(from_csv.columns)
    assert math.isclose(from_parquet["test_loss"].iloc[1], 3.0 / 9)
    assert not (tmp_path / "curves.xlsx").exists()


def test_store_file_can_be_reopened(tmp_path):
    path = tmp_path / "sub" / "results.db"
    store = ResultsStore(path)
    store.upsert(_row())
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.runs()
    reopened = ResultsStore(str(path))
    assert reopened.path == path
    assert reopened.is_done("gpt2", "zoo", 16, 0, "abc123")
    assert len(reopened.runs()) == 1
    reopened.close()


def test_foreign_files_and_bad_arguments_are_refused(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database" * 100)
    with pytest.raises(StoreError, match="junk.db.*not a SQLite file"):
        ResultsStore(junk)
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE runs (x INTEGER)")
    with pytest.raises(StoreError, match="lacks column"):
        ResultsStore(other)
    with pytest.raises(ConfigError, match="`timeout`"):
        ResultsStore(tmp_path / "r.db", timeout=0)
    with ResultsStore(tmp_path / "r.db") as store, pytest.raises(ConfigError, match="`status`"):
        store.runs(status="done")
