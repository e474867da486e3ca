"""The Prometheus rules and configs, checked and unit-tested by the real promtool."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.unit.deploy.promql_names import DEPLOY, RULES_DIR

PROM = DEPLOY / "prometheus"
INSTALL_HINT = (
    "promtool not found: install Debian's prometheus package "
    "(apt-get update && apt-get install -y prometheus); .ci/run installs it."
)


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(INSTALL_HINT)
    return path


def run(promtool: str, *args: str | Path, cwd: Path = PROM) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_rule_files_pass_promtool_check(promtool: str) -> None:
    files = sorted(RULES_DIR.glob("*.yml"))
    assert len(files) == 2, files
    result = run(promtool, "check", "rules", *files)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass(promtool: str) -> None:
    tests = sorted((PROM / "tests").glob("*.test.yml"))
    assert len(tests) >= 4, tests
    result = run(promtool, "test", "rules", *tests)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(tests), result.stdout


def test_promtool_test_detects_a_wrong_expectation(promtool: str, tmp_path: Path) -> None:
    """Negative control: the harness really fails when an expected alert does not fire."""
    text = (PROM / "tests" / "workers.test.yml").read_text()
    text = text.replace("../rules/", f"{RULES_DIR}/")
    # Claim w1 (always up) is down.
    broken = text.replace(
        'summary: "recstream worker w2 is down"', 'summary: "recstream worker w1 is down"'
    )
    assert broken != text
    (tmp_path / "broken.test.yml").write_text(broken)
    result = run(promtool, "test", "rules", tmp_path / "broken.test.yml", cwd=tmp_path)
    assert result.returncode != 0
    assert "FAILED" in result.stdout + result.stderr


def test_every_alert_has_a_promtool_test_where_it_fires() -> None:
    alerts = {
        r["alert"]
        for path in RULES_DIR.glob("*.yml")
        for g in yaml.safe_load(path.read_text())["groups"]
        for r in g["rules"]
        if "alert" in r
    }
    fired: set[str] = set()
    for path in (PROM / "tests").glob("*.test.yml"):
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                if case.get("exp_alerts"):
                    fired.add(case["alertname"])
    assert alerts == fired, f"alerts without a firing test: {sorted(alerts - fired)}"


def test_compose_prometheus_config_is_valid(promtool: str) -> None:
    result = run(promtool, "check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_k8s_prometheus_config_is_valid_apart_from_service_discovery(
    promtool: str, tmp_path: Path
) -> None:
    """Debian's Prometheus is built without Kubernetes discovery, so swap it for a
    static target and let promtool validate everything else (relabel regexes...)."""
    config = yaml.safe_load((PROM / "prometheus-k8s.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "recstream-worker"  # the alert rules select on it
    assert job.pop("kubernetes_sd_configs") == [{"role": "pod"}]
    job["static_configs"] = [{"targets": ["127.0.0.1:6066"]}]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    result = run(promtool, "check", "config", "prometheus.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_runbook_section_in_the_readme() -> None:
    readme = (DEPLOY / "README.md").read_text()
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in readme.splitlines()
        if line.startswith("#")
    }
    for path in RULES_DIR.glob("*.yml"):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" not in rule:
                    continue
                page, _, anchor = rule["annotations"]["runbook"].partition("#")
                assert page == "deploy/README.md", rule["alert"]
                assert anchor == rule["alert"].lower() and anchor in anchors, rule["alert"]
                assert rule["labels"]["severity"] in {"critical", "warning"}
