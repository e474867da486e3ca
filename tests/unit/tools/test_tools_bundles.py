"""``recstream bundles``: atomic pointer changes that refuse unverified bundles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from inference.bundle.pointer import read_pointer, resolve_bundle, write_pointer
from inference.errors import BundlePointerError
from inference.testing import build_tiny_bundle
from recstream.errors import BundleError, ConfigError
from tools import bundles


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three real tiny bundles (sealed, hashed), copied per test by ``fresh``."""
    r = tmp_path_factory.mktemp("bundles")
    for i, v in enumerate(("v1", "v2", "v3")):
        build_tiny_bundle(r, n_items=20, dim=8, version=v, seed=i)
    return r


@pytest.fixture
def fresh(root: Path, tmp_path: Path) -> Path:
    import shutil

    dst = tmp_path / "bundles"
    shutil.copytree(root, dst)
    return dst


def pointers(root: Path) -> dict[str, str | None]:
    return {
        n: (None if (t := read_pointer(root, n)) is None else t.name)
        for n in ("CURRENT", "CANDIDATE", "PREVIOUS")
    }


def test_candidate_promote_rollback_cycle(fresh: Path) -> None:
    write_pointer(fresh, "CURRENT", "v1")
    change = bundles.candidate(fresh, "v2")
    assert change.lines() == ["CANDIDATE: - -> v2"]
    change = bundles.promote(fresh)
    assert pointers(fresh) == {"CURRENT": "v2", "CANDIDATE": None, "PREVIOUS": "v1"}
    assert change.lines() == ["CURRENT: v1 -> v2", "CANDIDATE: v2 -> -", "PREVIOUS: - -> v1"]
    bundles.rollback(fresh)
    assert pointers(fresh) == {"CURRENT": "v1", "CANDIDATE": None, "PREVIOUS": None}
    with pytest.raises(ConfigError, match="nothing to roll back"):
        bundles.rollback(fresh)
    with pytest.raises(ConfigError, match="no CANDIDATE"):
        bundles.promote(fresh)
    # no file is left behind but the pointers and the lock
    assert sorted(p.name for p in fresh.iterdir() if p.is_file()) == [".pointers.lock", "CURRENT"]


def test_promote_without_current_keeps_the_newest_as_previous(fresh: Path) -> None:
    serving = resolve_bundle(fresh)  # no CURRENT: the newest sealed bundle serves
    assert serving is not None and serving.name == "v3"
    bundles.candidate(fresh, "v1")
    bundles.promote(fresh)
    assert pointers(fresh) == {"CURRENT": "v1", "CANDIDATE": None, "PREVIOUS": "v3"}


def corrupt(bundle: Path) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    name = sorted(manifest["files"])[0]
    with (bundle / name).open("ab") as fh:
        fh.write(b"x")


def test_refuses_to_point_at_an_unverified_or_unsealed_bundle(fresh: Path) -> None:
    write_pointer(fresh, "CURRENT", "v1")
    corrupt(fresh / "v2")
    with pytest.raises(BundleError, match=r"v2 .*failed verification"):
        bundles.candidate(fresh, "v2")
    assert pointers(fresh)["CANDIDATE"] is None
    # a candidate that went bad after it was set is not promoted, and nothing changes
    bundles.candidate(fresh, "v3")
    corrupt(fresh / "v3")
    with pytest.raises(BundleError, match="failed verification"):
        bundles.promote(fresh)
    assert pointers(fresh) == {"CURRENT": "v1", "CANDIDATE": "v3", "PREVIOUS": None}
    # unsealed (a staging directory) or outside the root: refused before anything is written
    (fresh / "v9.tmp-1").mkdir()
    for bad in ("v9.tmp-1", "../v1", "nope", "v1\nv2"):
        with pytest.raises(BundlePointerError):
            write_pointer(fresh, "CANDIDATE", bad)
    assert pointers(fresh)["CANDIDATE"] == "v3"
    with pytest.raises(ConfigError, match="serves already"):
        bundles.candidate(fresh, "v1")


def test_cli_status_and_errors(fresh: Path) -> None:
    from recstream.cli import app

    runner = CliRunner()
    write_pointer(fresh, "CURRENT", "v1")
    ok = runner.invoke(app, ["bundles", "candidate", "v2", "--root", str(fresh)])
    assert ok.exit_code == 0, ok.output
    assert "CANDIDATE: - -> v2" in ok.output
    out = runner.invoke(app, ["bundles", "status", "--root", str(fresh), "--verify", "--json"])
    state = json.loads(out.output)
    assert state["serving"] == "v1"
    assert state["pointers"]["CANDIDATE"] == {"version": "v2", "verified": True}
    assert [b["version"] for b in state["bundles"]] == ["v1", "v2", "v3"]
    bad = runner.invoke(app, ["bundles", "rollback", "--root", str(fresh)])
    assert bad.exit_code == 1 and "nothing to roll back" in bad.output
    both = runner.invoke(app, ["bundles", "candidate", "v3", "--clear", "--root", str(fresh)])
    assert both.exit_code != 0
