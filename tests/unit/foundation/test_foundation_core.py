"""Settings, the CLI surface, and the torch-free import guarantee."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from recstream.settings import Settings

REPO = Path(__file__).parents[3]


def test_settings_read_prefixed_nested_environment(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("RECSTREAM_BOOTSTRAP", "broker:1234")
    monkeypatch.setenv("RECSTREAM_TOPICS__RECOMMENDATIONS", "recs-v2")
    monkeypatch.setenv("RECSTREAM_SECURITY__PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("RECSTREAM_SECURITY__PASSWORD", "hunter2")
    monkeypatch.setenv("RECSTREAM_STATE_DIR", str(tmp_path))
    s = Settings()
    assert s.bootstrap == "broker:1234"
    assert s.topics.recommendations == "recs-v2" and s.topics.user_events == "user-events"
    assert s.security.password is not None and s.security.password.get_secret_value() == "hunter2"
    assert "hunter2" not in repr(s) and "hunter2" not in str(s.model_dump())
    assert s.bundles == tmp_path / "bundles"


def test_settings_reject_nonsense(monkeypatch) -> None:
    monkeypatch.setenv("RECSTREAM_SECURITY__PROTOCOL", "CARRIER_PIGEON")
    with pytest.raises(ValidationError, match="protocol"):
        Settings()


def test_cli_help_lists_commands_and_schema_writes_files(tmp_path) -> None:
    from recstream.cli import app

    runner = CliRunner()
    out = runner.invoke(app, ["--help"])
    assert out.exit_code == 0 and "kafka" in out.output and "schema" in out.output
    out = runner.invoke(app, ["kafka", "--help"])
    assert out.exit_code == 0 and "start" in out.output and "stop" in out.output
    out = runner.invoke(app, ["schema", "--out", str(tmp_path)])
    assert out.exit_code == 0, out.output
    assert (tmp_path / "user-events.schema.json").is_file()


def test_serving_packages_import_without_torch() -> None:
    """stream/ and inference/ must run where torch is not installed."""
    code = (
        "import sys, pkgutil, importlib\n"
        "sys.modules['torch'] = None  # any `import torch` now raises ImportError\n"
        "sys.modules['transformers'] = None\n"
        "import stream, inference, recstream.cli\n"
        "for pkg in (stream, inference):\n"
        "    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "        importlib.import_module(m.name)\n"
        "print('ok')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_missing_java_is_a_clear_error(monkeypatch) -> None:
    from recstream.errors import ConfigError
    from recstream.localkafka import java_executable

    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ConfigError, match="Java 17"):
        java_executable()
