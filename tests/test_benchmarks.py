"""lensllm_nb.analysis.published_curves: local folder first, else a checksummed download into the cache."""

import io

import pytest

from lensllm_nb.analysis import published_curves as benchmarks
from lensllm_nb.errors import ConfigError, CurveDataError


class _Response(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _serve(monkeypatch, payload, seen):
    def urlopen(url, timeout):
        seen.append(url)
        return _Response(payload)
    monkeypatch.setattr(benchmarks.urllib.request, "urlopen", urlopen)


def test_local_folder_wins(data_dir, monkeypatch):
    monkeypatch.setenv("LENSLLM_NB_DATA", str(data_dir))
    assert benchmarks.data_path("flan") == data_dir / "flan.csv"
    table = benchmarks.load("FLAN")
    assert table["dataset"].unique().tolist() == ["flan"] and table["model"].nunique() == 30


def test_download_is_checked_and_cached(data_dir, monkeypatch, tmp_path):
    monkeypatch.delenv("LENSLLM_NB_DATA")
    monkeypatch.setenv("LENSLLM_NB_CACHE", str(tmp_path))
    seen = []
    _serve(monkeypatch, (data_dir / "gigaword.csv").read_bytes(), seen)
    path = benchmarks.data_path("gigaword")
    assert path == tmp_path / "benchmarks" / "gigaword.csv"
    assert seen == [benchmarks.UPSTREAM_URL.format(name="gigaword")]
    benchmarks.data_path("gigaword")
    assert len(seen) == 1  # the second call reads the verified cache


def test_corrupt_download_is_rejected_and_not_kept(monkeypatch, tmp_path):
    monkeypatch.delenv("LENSLLM_NB_DATA")
    monkeypatch.setenv("LENSLLM_NB_CACHE", str(tmp_path))
    _serve(monkeypatch, b"config name,0,200\nm,1,2\n", [])
    with pytest.raises(CurveDataError, match="SHA-256"):
        benchmarks.data_path("flan")
    assert not list((tmp_path / "benchmarks").glob("flan*"))


def test_offline_without_data_says_how_to_fix(monkeypatch, tmp_path):
    monkeypatch.delenv("LENSLLM_NB_DATA")
    monkeypatch.setenv("LENSLLM_NB_CACHE", str(tmp_path))

    def refuse(url, timeout):
        raise OSError("no network")
    monkeypatch.setattr(benchmarks.urllib.request, "urlopen", refuse)
    with pytest.raises(CurveDataError, match="LENSLLM_NB_DATA"):
        benchmarks.load("flan")
    with pytest.raises(ConfigError, match="`name` must be one of"):
        benchmarks.load("imagenet")


def test_published_figures(data_dir, monkeypatch):
    monkeypatch.setenv("LENSLLM_NB_DATA", str(data_dir))
    table = benchmarks.published("flan")
    assert set(table["method"]) >= {"AtS", "SubTuning"} and (table["dataset"] == "FLAN").all()
    monkeypatch.delenv("LENSLLM_NB_DATA")
    assert benchmarks.published().empty
