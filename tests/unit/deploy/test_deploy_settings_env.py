"""Every RECSTREAM_* variable deploy/ sets names a real settings field, and
the settings classes accept the values deploy/ gives them.

pydantic-settings ignores unknown variables (extra="ignore"), so a misspelt
knob in compose or a ConfigMap would be silently dropped: this test is the
only thing that notices.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from tests.unit.deploy.promql_names import DEPLOY

# Longest prefix first: RECSTREAM_WORKER_X is a worker setting, not Settings.worker_x.
OWNERS = (
    ("RECSTREAM_WORKER_", "stream.settings", "WorkerSettings", ""),
    ("RECSTREAM_INFERENCE_", "inference.settings", "InferenceSettings", "__"),
    ("RECSTREAM_", "recstream.settings", "Settings", "__"),
)
_COMPOSE_DEFAULT = re.compile(r"^\$\{[A-Z_]+:-(.*)\}$")


def _compose_env() -> dict[str, str]:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    env: dict[str, str] = {}
    for service in compose["services"].values():
        for key, value in (service.get("environment") or {}).items():
            m = _COMPOSE_DEFAULT.match(str(value))
            env[key] = m.group(1) if m else str(value)
    return env


def _k8s_env() -> dict[str, str]:
    data = yaml.safe_load((DEPLOY / "k8s" / "configmap.yaml").read_text())["data"]
    secret = yaml.safe_load((DEPLOY / "k8s" / "secret.example.yaml").read_text())["stringData"]
    return {**data, **secret}


def _dockerfile_env() -> dict[str, str]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    return dict(re.findall(r"\b(RECSTREAM_[A-Z_]+)=(\S+)", text))


SOURCES = {"compose": _compose_env, "k8s": _k8s_env, "dockerfile": _dockerfile_env}


def _owner(var: str) -> tuple[str, str, str, str]:
    return next(o for o in OWNERS if var.startswith(o[0]))


def _load(module: str, cls: str) -> type[BaseModel]:
    mod = pytest.importorskip(module, reason=f"{module} is not in this tree yet")
    return getattr(mod, cls)


def _field_path(model: type[BaseModel], var: str, prefix: str, nested: str) -> list[str]:
    """The field path a variable sets; fails naming the first unknown part."""
    rest = var[len(prefix) :].lower()
    parts = rest.split(nested) if nested else [rest]
    current: Any = model
    for part in parts:
        fields = current.model_fields
        assert part in fields, f"{var}: {current.__name__} has no field {part!r}"
        current = fields[part].annotation
    return parts


def _all_vars() -> list[tuple[str, str]]:
    out = {
        (src, var)
        for src, load in SOURCES.items()
        for var in load()
        if var.startswith("RECSTREAM_")
    }
    return sorted(out)


@pytest.mark.parametrize(("source", "var"), _all_vars())
def test_variable_names_a_settings_field(source: str, var: str) -> None:
    prefix, module, cls, nested = _owner(var)
    _field_path(_load(module, cls), var, prefix, nested)


@pytest.mark.parametrize("source", sorted(SOURCES))
@pytest.mark.parametrize(("prefix", "module", "cls", "nested"), OWNERS, ids=lambda v: str(v))
def test_settings_accept_the_deployed_values(
    source: str, prefix: str, module: str, cls: str, nested: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {k: v for k, v in SOURCES[source]().items() if k.startswith("RECSTREAM_")}
    mine = {k: v for k, v in env.items() if _owner(k)[0] == prefix}
    if not mine:
        return  # this source sets nothing for this class
    model = _load(module, cls)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = model()
    for key, value in mine.items():
        got: Any = settings
        for part in _field_path(model, key, prefix, nested):
            got = getattr(got, part)
        if hasattr(got, "get_secret_value"):
            got = got.get_secret_value()
        assert str(got) == value or float(str(got)) == float(value), (key, got, value)


def test_checker_rejects_a_misspelt_variable() -> None:
    from recstream.settings import Settings

    with pytest.raises(AssertionError, match="no field 'bootstrapp'"):
        _field_path(Settings, "RECSTREAM_BOOTSTRAPP", "RECSTREAM_", "__")
    with pytest.raises(AssertionError, match="no field 'pasword'"):
        _field_path(Settings, "RECSTREAM_SECURITY__PASWORD", "RECSTREAM_", "__")
