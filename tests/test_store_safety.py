"""The SQLite store refuses unsafe use and `export` never changes a store (issues 9 and 14)."""

import hashlib
import os
import shutil
import sqlite3
import subprocess
import tomllib
from pathlib import Path

import pandas as pd
import pytest
import yaml

from lensllm_nb.analysis.curves import read_curves
from lensllm_nb.cli import main
from lensllm_nb.collection.store import ResultsStore, check_dask_store, location, mask_url, mask_urls
from lensllm_nb.errors import ConfigError, CurveDataError, StoreError

ROOT = Path(__file__).resolve().parents[1]


def _row(**changes):
    row = {"model": "gpt2", "dataset": "zoo", "n_train": 16, "seed": 0, "config_hash": "abc123",
           "status": "ok", "test_loss": 2.5, "created_utc": "2026-11-28T10:00:00+00:00"}
    row.update(changes)
    return row


def _fingerprint(folder):
    """Name -> (sha256, mtime) of every file in `folder`: equal before and after = untouched."""
    return {p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(Path(folder).iterdir())}


def _filled_store(path, models=40, sizes=10):
    with ResultsStore(path) as store:
        store.upsert_many([_row(model=f"org/model-{m:03d}", n_train=8 * (n + 1),
                                test_loss=1.0 + 1.0 / (n + 1), notes="x" * 200)
                           for m in range(models) for n in range(sizes)])
    return models * sizes


# -- issue 9, item 5: a damaged store -------------------------------------------------

def _damage(path):
    data = bytearray(path.read_bytes())
    middle = len(data) // 2 // 4096 * 4096
    data[middle:middle + 8192] = os.urandom(8192)
    path.write_bytes(bytes(data))


def test_damaged_store_is_refused_for_writing_and_export_salvages(tmp_path, capsys):
    path = tmp_path / "results.db"
    total = _filled_store(path)
    _damage(path)
    before = _fingerprint(tmp_path)
    with pytest.raises(StoreError, match="damaged.*quick_check.*export"):
        ResultsStore(path)
    assert _fingerprint(tmp_path) == before  # nothing written to the damaged file

    out = tmp_path / "salvaged.csv"
    code = main(["export", str(path), "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 1
    assert "damaged" in captured.err and "could not read: rows with rowid" in captured.err
    salvaged = pd.read_csv(out)
    assert 0 < len(salvaged) < total
    assert salvaged["test_loss"].gt(0).all()
    assert f"{out}\t{len(salvaged)} rows" in captured.out


# -- issue 9, item 7: export is read-only ------------------------------------------------

def test_export_refuses_a_foreign_sqlite_file_untouched(tmp_path, capsys):
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE things (x INTEGER)")
        conn.execute("INSERT INTO things VALUES (1)")
    conn.close()
    wal = tmp_path / "wal.db"
    with sqlite3.connect(wal) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE runs (x INTEGER)")
    conn.close()
    text = tmp_path / "notes.db"
    text.write_text("not a database\n" * 50)
    before = _fingerprint(tmp_path)
    for path, reason in ((other, "no `runs` table"), (wal, "lacks column"), (text, "not a SQLite file")):
        assert main(["export", str(path), "--out", str(tmp_path / "x.csv")]) == 2
        err = capsys.readouterr().err
        assert reason in err and len(err.strip().splitlines()) == 1
    assert _fingerprint(tmp_path) == before
    with sqlite3.connect(other) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    conn.close()


def test_export_reads_a_store_without_writing_it(tmp_path):
    path = tmp_path / "results.db"
    _filled_store(path, models=2, sizes=3)
    before = _fingerprint(tmp_path)
    with ResultsStore(path, readonly=True) as store:
        assert len(store.curves()) == 6
        with pytest.raises(StoreError, match="readonly=True"):
            store.upsert(_row())
    assert _fingerprint(tmp_path) == before
    with pytest.raises(StoreError, match="does not exist"):
        ResultsStore(tmp_path / "missing.db", readonly=True)
    assert not (tmp_path / "missing.db").exists()


def _make_read_only(*paths):
    """Make files and folders unwritable, also for root (which ignores file modes)."""
    for path in paths:
        path.chmod(0o555 if path.is_dir() else 0o444)
    if os.geteuid() == 0:
        # The immutable attribute stops root too; without it the test cannot show anything.
        done = subprocess.run(["chattr", "+i", *map(str, paths)], capture_output=True, text=True) \
            if shutil.which("chattr") else None
        if done is None or done.returncode:
            pytest.skip("as root, a read-only file needs `chattr +i`, which this filesystem refuses")


def test_export_works_on_a_read_only_file(tmp_path, capsys):
    store_dir = tmp_path / "store"
    store_dir.mkdir()
    path = store_dir / "results.db"
    _filled_store(path, models=2, sizes=3)
    _make_read_only(path, store_dir)
    try:
        with pytest.raises(OSError):
            (store_dir / "probe").write_text("x")  # really read-only
        out = tmp_path / "curves.csv"
        assert main(["export", str(path), "--out", str(out)]) == 0, capsys.readouterr().err
        assert len(pd.read_csv(out)) == 6
        assert sorted(p.name for p in store_dir.iterdir()) == ["results.db"]
    finally:
        if os.geteuid() == 0 and shutil.which("chattr"):
            subprocess.run(["chattr", "-i", str(path), str(store_dir)], capture_output=True)
        store_dir.chmod(0o755)
        path.chmod(0o644)


# -- issue 9, item 8: re-runs under another config ------------------------------------------

def test_export_of_reruns_with_another_config_is_accepted_by_readers(tmp_path, capsys):
    path = tmp_path / "results.db"
    old = [_row(n_train=n, test_loss=3.0 / (1 + n), config_hash="old",
                created_utc="2026-11-01T00:00:00+00:00") for n in (8, 16, 32, 64)]
    new = [_row(n_train=n, test_loss=2.0 / (1 + n), config_hash="new",
                created_utc="2026-11-02T00:00:00+00:00") for n in (8, 16, 32, 64)]
    with ResultsStore(path) as store:
        store.upsert_many(old + new + [_row(model="other", n_train=n, test_loss=1.5 / n)
                                       for n in (8, 16, 32)])
    every = tmp_path / "all.csv"
    assert main(["export", str(path), "--config", "all", "--out", str(every)]) == 0
    with pytest.raises(CurveDataError, match="conflicting duplicates"):
        read_curves(every)  # what every export gave before: fit and benchmark refused it

    latest = tmp_path / "latest.csv"
    assert main(["export", str(path), "--out", str(latest)]) == 0
    table = read_curves(latest)
    gpt2 = table[table["model"] == "gpt2"]
    assert set(pd.read_csv(latest).query("model == 'gpt2'")["config_hash"]) == {"new"}
    assert sorted(gpt2["test_loss"]) == sorted(r["test_loss"] for r in new)
    assert len(table[table["model"] == "other"]) == 3

    chosen = tmp_path / "old.csv"
    assert main(["export", str(path), "--config", "ol", "--out", str(chosen)]) == 0
    assert set(pd.read_csv(chosen)["config_hash"]) == {"old"}
    capsys.readouterr()
    assert main(["export", str(path), "--config", "zzz", "--out", str(chosen)]) == 2
    assert "matches 0 of the stored config hashes" in capsys.readouterr().err


# -- issue 14: SQLite only on a local disk and one host ------------------------------------

def _mountinfo(tmp_path, fstype, point):
    table = tmp_path / "mountinfo"
    table.write_text(
        "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
        f"90 27 0:50 / {point} rw,relatime shared:1 - {fstype} server:/export rw\n"
    )
    return table


@pytest.mark.parametrize("fstype", ["nfs", "nfs4", "cifs", "smb3", "lustre", "gpfs", "9p",
                                    "fuse.sshfs", "fuse", "ceph", "glusterfs"])
def test_sqlite_on_a_network_filesystem_is_refused(tmp_path, monkeypatch, fstype):
    shared = tmp_path / "shared space"
    shared.mkdir()
    point = str(shared).replace(" ", "\\040")  # how mountinfo writes a space
    monkeypatch.setattr(location, "MOUNTINFO", str(_mountinfo(tmp_path, fstype, point)))
    with pytest.raises(StoreError, match=f"{fstype} network filesystem.*database URL"):
        ResultsStore(shared / "sub" / "results.db")
    assert not (shared / "sub").exists()


@pytest.mark.parametrize("fstype", ["ext4", "xfs", "tmpfs", "overlay", "fuse.fuse-overlayfs"])
def test_sqlite_on_a_local_filesystem_is_allowed(tmp_path, monkeypatch, fstype):
    monkeypatch.setattr(location, "MOUNTINFO", str(_mountinfo(tmp_path, fstype, str(tmp_path))))
    with ResultsStore(tmp_path / "results.db") as store:
        store.upsert(_row())
        assert len(store) == 1


def test_filesystem_type_takes_the_longest_mount_prefix(tmp_path):
    data, database = tmp_path / "data", tmp_path / "database"
    data.mkdir()
    database.mkdir()
    table = _mountinfo(tmp_path, "nfs4", str(data))
    assert location.filesystem_type(data / "x" / "results.db", table) == "nfs4"  # not yet created
    assert location.filesystem_type(data, table) == "nfs4"
    assert location.filesystem_type(database / "results.db", table) == "ext4"
    assert location.filesystem_type(tmp_path / "results.db", tmp_path / "missing") is None


class _FakeClient:
    """What check_dask_store asks of a dask.distributed.Client: each worker's host name."""

    def __init__(self, hosts):
        self.hosts = hosts

    def run(self, function):
        return dict(self.hosts)


def test_dask_workers_on_other_hosts_refuse_a_sqlite_store():
    cluster = _FakeClient({"tcp://10.0.0.1:4000": "runner", "tcp://10.0.0.7:4000": "node7"})
    with pytest.raises(StoreError, match=r"tcp://10.0.0.7:4000 \(node7\).*database URL"):
        check_dask_store(cluster, ["results.db", None], runner_host="runner")
    with pytest.raises(StoreError, match="SQLite store"):
        check_dask_store(cluster, ["sqlite:///results.db"], runner_host="runner")
    # A database URL, or no store at all, is fine on any cluster.
    check_dask_store(cluster, ["postgresql://u:pw@db/lensllm", "", None], runner_host="runner")
    # A LocalCluster: every worker on this host.
    local = _FakeClient({"tcp://127.0.0.1:4000": "runner", "tcp://127.0.0.1:4001": "runner"})
    check_dask_store(local, ["results.db"], runner_host="runner")


def test_local_cluster_with_sqlite_store_is_allowed():
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster, distributed.Client(cluster) as client:
        check_dask_store(client, ["results.db"])


# -- issue 14: credentials and dependencies --------------------------------------------------

@pytest.mark.parametrize("url, masked", [
    ("postgresql://lens:s3cret@db:5432/runs", "postgresql://lens:***@db:5432/runs"),
    ("postgresql+psycopg://lens:p@ss/word@db/runs", "postgresql+psycopg://lens:***@db/runs"),
    ("postgresql://lens@db/runs", "postgresql://lens@db/runs"),
    ("results.db", "results.db"),
])
def test_mask_url_hides_the_password(url, masked):
    assert mask_url(url) == masked


def test_mask_urls_masks_nested_parameters():
    grid = {"parameters": {"store": ["postgresql://lens:pw1@db/a", "results.db"], "lr": 1e-4},
            "jobs": [{"store": "postgresql://u:pw2@db/b"}]}
    masked = mask_urls(grid)
    assert "pw1" not in str(masked) and "pw2" not in str(masked)
    assert masked["parameters"]["store"] == ["postgresql://lens:***@db/a", "results.db"]
    assert grid["jobs"][0]["store"] == "postgresql://u:pw2@db/b"  # input not mutated


def test_bad_store_arguments_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="`store`"):
        ResultsStore(None)
    with pytest.raises(ConfigError, match="not a SQLite file URL"):
        ResultsStore("sqlite://")
    with pytest.raises(ConfigError, match="'mysql' database is not supported"):
        ResultsStore("mysql://u:pw@localhost/x")
    with pytest.raises(ConfigError, match=r"not a valid database URL") as error:
        ResultsStore("postgresql://u:pw@localhost:notaport/x")
    assert "pw" not in str(error.value)
    with ResultsStore(f"sqlite:///{tmp_path / 'u.db'}") as store:
        assert store.path == tmp_path / "u.db"


def test_database_drivers_are_dependencies_in_both_environments():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    names = {d.split(">")[0].split("=")[0].split("[")[0].lower() for d in project["dependencies"]}
    assert {"psycopg", "sqlalchemy"} <= names
    assert any(d.startswith("psycopg[binary]") for d in project["dependencies"])
    conda = yaml.safe_load((ROOT / "environment.yml").read_text(encoding="utf-8"))["dependencies"]
    conda_names = {d.split(">")[0].split("=")[0].lower() for d in conda if isinstance(d, str)}
    assert {"psycopg", "sqlalchemy"} <= conda_names
