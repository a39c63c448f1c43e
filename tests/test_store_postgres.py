"""The results store on a real PostgreSQL server, started by the test session (issue 14).

The session fixture starts :class:`~lensllm_nb.collection.store.tempserver.TemporaryPostgres`
(``initdb`` + ``pg_ctl`` of Debian's ``postgresql`` package into a temporary folder,
on a free port of 127.0.0.1, as the ``postgres`` user when the tests run as root)
and stops it at the end, also when a test fails. ``make test`` installs the package
when it is missing.
"""

import os
import signal
import socket
import uuid
from pathlib import Path

import pandas as pd
import pytest

from lensllm_nb.cli import main
from lensllm_nb.collection.store import ResultsStore
from lensllm_nb.collection.store.tempserver import INSTALL_HINT, TemporaryPostgres, postgres_bindir
from lensllm_nb.errors import StoreError

pytest.importorskip("psycopg")
sa = pytest.importorskip("sqlalchemy")

PASSWORD = "s3cret-pw"


@pytest.fixture(scope="session")
def postgres():
    """A running PostgreSQL server for the session; stopped at the end, also on failure."""
    if postgres_bindir() is None:
        pytest.skip(f"PostgreSQL server not installed; run `{INSTALL_HINT}` (make test does it as root)")
    server = TemporaryPostgres(password=PASSWORD)
    try:
        yield server.start()
    finally:
        server.stop(remove=True)


@pytest.fixture
def pg_url(postgres):
    """The URL of a fresh, empty database on the session's server (dropped afterwards)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    url = postgres.create_database(name)
    try:
        yield url
    finally:
        postgres.drop_database(name)


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(n_workers=4, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster, distributed.Client(cluster) as client:
        yield client


def _row(**changes):
    row = {"model": "gpt2", "dataset": "zoo", "n_train": 16, "seed": 0, "config_hash": "abc123",
           "status": "ok", "test_loss": 2.5, "created_utc": "2026-11-28T10:00:00+00:00"}
    row.update(changes)
    return row


def _write_fifty(store, worker):
    # Module level: Dask pickles it, and the store, to the worker process.
    for i in range(50):
        store.upsert(_row(model=f"worker-{worker}", n_train=i, test_loss=1.0 + i / 100))
    return os.getpid()


def test_four_dask_workers_write_fifty_rows_each(pg_url, dask_client):
    store = ResultsStore(pg_url)
    pids = dask_client.gather(dask_client.map(_write_fifty, [store] * 4, range(4), pure=False))
    assert len(set(pids)) > 1  # really several processes
    runs = store.runs()
    store.close()
    assert len(runs) == 200
    assert runs.groupby("model").size().tolist() == [50] * 4
    assert not runs.duplicated(["model", "n_train"]).any()


def _write_then_die_once(store, marker):
    """Write 50 rows; on the first attempt the worker process is killed after 25."""
    first = not os.path.exists(marker)
    for i in range(50):
        if first and i == 25:
            Path(marker).write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        store.upsert(_row(model="retried", n_train=i, test_loss=1.0 + i / 100))
    return os.getpid()


def test_killed_worker_job_is_retried_without_duplicates_or_losses(pg_url, dask_client, tmp_path):
    marker = tmp_path / "killed"
    store = ResultsStore(pg_url)
    pid = dask_client.submit(_write_then_die_once, store, str(marker), pure=False).result(timeout=300)
    assert marker.exists() and int(marker.read_text()) != pid  # killed, then run again elsewhere
    runs = store.runs()
    store.close()
    assert len(runs) == 50
    assert sorted(runs["n_train"]) == list(range(50))


def _grid(store, plan, after_write=None):
    """A grid runner as FineTuner.grid uses the store: skip stored runs, write, report failures."""
    pending = [n for n in plan if not store.is_done("gpt2", "zoo", n, 0, "abc123")]
    written, failures = 0, []
    for i, n in enumerate(pending):
        try:
            store.upsert(_row(n_train=n, test_loss=1.0 + 1.0 / (1 + n)))
            written += 1
        except StoreError as exc:
            failures.append(str(exc))
        if after_write:
            after_write(i)
    return written, failures


def test_server_restart_mid_grid_fails_writes_clearly_and_a_rerun_completes(postgres, pg_url):
    plan = list(range(6))
    store = ResultsStore(pg_url, timeout=1.0)
    try:
        written, failures = _grid(store, plan, after_write=lambda i: i == 2 and postgres.stop())
        assert written == 3 and len(failures) == 3
        for message in failures:
            assert "did not answer" in message and "NOT stored" in message and "rerun" in message
            assert PASSWORD not in message and "lensllm:***@127.0.0.1" in message
        postgres.start()
        assert _grid(store, plan) == (3, [])
        assert sorted(store.runs()["n_train"]) == plan
    finally:
        if not (postgres.folder / "data" / "postmaster.pid").exists():
            postgres.start()  # later tests need the server
        store.close()


def test_url_store_keeps_the_sqlite_semantics(pg_url):
    with ResultsStore(pg_url) as store:
        assert PASSWORD not in repr(store) and PASSWORD not in store.location
        store.upsert(_row(status="failed", test_loss=None, error="CUDA out of memory"))
        assert not store.is_done("gpt2", "zoo", 16, 0, "abc123")
        store.upsert(_row(test_loss=2.25, params=7_000_000_000, config={"lr": 1e-4}))
        store.upsert(_row(status="failed", test_loss=float("nan"), error="diverged"))
        assert store.is_done("gpt2", "zoo", 16, 0, "abc123")
        runs = store.runs()
        assert len(store) == 1 and runs.loc[0, "status"] == "ok" and runs.loc[0, "error"] is None
        assert runs.loc[0, "params"] == 7_000_000_000 and runs.loc[0, "config"] == {"lr": 1e-4}
        with pytest.raises(StoreError, match="test_loss"):
            store.upsert_many([_row(seed=5), _row(test_loss=-1.0)])
        assert len(store) == 1


def test_url_store_opened_readonly_needs_the_table(pg_url):
    with pytest.raises(StoreError, match="no `runs` table") as error:
        ResultsStore(pg_url, readonly=True)
    assert PASSWORD not in str(error.value)
    engine = sa.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
        assert not sa.inspect(conn).has_table("runs")
    engine.dispose()


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_unreachable_server_fails_with_a_masked_url():
    url = f"postgresql://lensllm:{PASSWORD}@127.0.0.1:{_free_port()}/postgres"
    with pytest.raises(StoreError, match="did not answer") as error:
        ResultsStore(url, timeout=0.5)
    assert PASSWORD not in str(error.value) and "lensllm:***@" in str(error.value)


def test_export_of_url_store_equals_export_of_sqlite_store(pg_url, tmp_path, capsys):
    rows = [_row(model=m, n_train=n, seed=s, test_loss=1.0 + 1.0 / (1 + n + s), params=124_000_000,
                 family="gpt2", tokens=1000 * n, flops=6.0e9 * n, device="cpu", lora_rank=8)
            for m in ("a/b", "gpt2", "x") for n in (0, 8, 16, 32) for s in (0, 1)]
    rows += [_row(model="gpt2", n_train=64, status="failed", test_loss=None, error="oom"),
             _row(model="x", n_train=8, config_hash="older", test_loss=9.0,
                  created_utc="2026-11-01T00:00:00+00:00")]
    sqlite_path = tmp_path / "results.db"
    for target in (pg_url, sqlite_path):
        with ResultsStore(target) as store:
            store.upsert_many(rows[::2])
            for row in rows[1::2]:
                store.upsert(row)
    from_url, from_file = tmp_path / "url.csv", tmp_path / "file.csv"
    assert main(["export", pg_url, "--out", str(from_url)]) == 0
    assert main(["export", str(sqlite_path), "--out", str(from_file)]) == 0
    out = capsys.readouterr().out
    assert PASSWORD not in out
    assert from_url.read_bytes() == from_file.read_bytes()
    table = pd.read_csv(from_url)
    assert len(table) == 24 and set(table["config_hash"]) == {"abc123"}
    with ResultsStore(pg_url) as url_store, ResultsStore(sqlite_path) as file_store:
        pd.testing.assert_frame_equal(url_store.runs(), file_store.runs())


def test_export_run_record_masks_the_password(pg_url, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("LENSLLM_NB_CACHE", str(tmp_path / "cache"))
    with ResultsStore(pg_url) as store:
        store.upsert(_row())
    assert main(["export", pg_url, "--out", str(tmp_path / "c.csv")]) == 0
    records = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert records, "the command left no run record"
    for record in records:
        text = record.read_text(encoding="utf-8", errors="replace")
        assert PASSWORD not in text


@pytest.mark.slow
def test_finetune_grid_writes_and_resumes_through_a_url(zoo_models, pg_url, capsys):
    quick = ["--model", "zoo/gpt2-tiny", "--dataset", "zoo", "--max-steps", "4", "--no-progress",
             "--seeds", "0", "--store", pg_url]
    assert main(["finetune", *quick, "--sizes", "0,16"]) == 0
    assert main(["finetune", *quick, "--sizes", "0,16,32"]) == 0
    captured = capsys.readouterr()
    assert "1 run(s), 2 skipped" in captured.err  # resumed from the server's rows
    assert PASSWORD not in captured.out + captured.err and "lensllm:***@" in captured.err
    with ResultsStore(pg_url) as store:
        assert sorted(store.curves()["n_train"]) == [0, 16, 32]
