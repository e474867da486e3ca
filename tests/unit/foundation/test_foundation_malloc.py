"""recstream.malloc: which commands re-execute under tcmalloc, and never twice."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from recstream.malloc import LIBRARY, find_tcmalloc, preload_plan, training_command


@pytest.mark.parametrize(
    ("args", "trains"),
    [
        (["train", "--dataset", "ml-1m"], True),
        (["--log-level", "WARNING", "train", "--quick"], True),
        (["--log-level=DEBUG", "train"], True),
        (["--log-level", "train", "worker"], False),  # "train" is the option's value here
        (["evaluate", "--bundle", "b"], False),
        (["worker"], False),
        (["demo", "train"], False),  # an argument, not the command
        (["--version"], False),
        ([], False),
    ],
)
def test_only_the_training_command_is_re_executed(args: list[str], trains: bool) -> None:
    assert training_command(args) is trains


def test_plan_preloads_once_and_keeps_other_preloads(tmp_path: Path) -> None:
    lib = tmp_path / LIBRARY
    plan = preload_plan({"PATH": "/bin"}, lib)
    assert plan == {"PATH": "/bin", "LD_PRELOAD": str(lib)}
    assert preload_plan(plan, lib) is None  # the re-executed process does not loop
    kept = preload_plan({"LD_PRELOAD": "/x/libfoo.so"}, lib)
    assert kept is not None and kept["LD_PRELOAD"] == f"{lib}:/x/libfoo.so"


def test_plan_is_empty_without_the_library_or_when_turned_off(tmp_path: Path) -> None:
    assert preload_plan({}, None) is None
    assert preload_plan({"RECSTREAM_TCMALLOC": "0"}, tmp_path / LIBRARY) is None
    assert find_tcmalloc([str(tmp_path)]) is None
    (tmp_path / LIBRARY).write_bytes(b"")
    assert find_tcmalloc([str(tmp_path / "nope"), str(tmp_path)]) == tmp_path / LIBRARY


MAPS = f"print('tcmalloc' if any('{LIBRARY}' in l for l in open('/proc/self/maps')) else 'glibc')"
PROBE = (
    "import sys; from recstream.malloc import reexec_with_tcmalloc;"
    f"reexec_with_tcmalloc([sys.executable, '-c', {MAPS!r}]); print('not re-executed')"
)


def _probe(**extra: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "RECSTREAM_TCMALLOC")}
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env={**env, **extra},
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return out.stdout.strip()


@pytest.mark.skipif(find_tcmalloc() is None, reason="tcmalloc not installed (.ci/run installs it)")
def test_re_executed_process_runs_on_tcmalloc() -> None:
    assert _probe() == "tcmalloc"
    assert _probe(RECSTREAM_TCMALLOC="0") == "not re-executed"
