"""deploy/compose.yaml: accepted by `docker compose config`, and consistent with
the Prometheus config, the image and the topic job it wires together."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.deploy.promql_names import DEPLOY

COMPOSE = DEPLOY / "compose.yaml"


def _compose_cli() -> list[str] | None:
    docker = shutil.which("docker")
    if docker is None:
        return None
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30)
    return [docker, "compose"] if probe.returncode == 0 else None


def _render(env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    cli = _compose_cli()
    if cli is None:
        pytest.skip(
            "the docker CLI with its compose plugin is not installed on this machine "
            "(sh deploy/tools/install-compose-plugin.sh builds the plugin; no engine needed)"
        )
    return subprocess.run(
        [*cli, "-f", str(COMPOSE), "config", "--format", "yaml"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin:/usr/local/bin", "HOME": str(Path.home()), **(env or {})},
    )


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def test_docker_compose_config_accepts_the_file() -> None:
    result = _render()
    assert result.returncode == 0, result.stderr
    rendered = yaml.safe_load(result.stdout)
    assert set(rendered["services"]) == {"kafka", "topics", "worker", "prometheus", "grafana"}
    worker = rendered["services"]["worker"]
    assert worker["deploy"]["replicas"] == 2
    assert worker["depends_on"]["topics"]["condition"] == "service_completed_successfully"


def test_docker_compose_applies_the_knobs() -> None:
    result = _render({"WORKERS": "6", "PARTITIONS": "12", "BATCH_MAX_SIZE": "128"})
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert services["worker"]["deploy"]["replicas"] == 6
    assert services["worker"]["environment"]["RECSTREAM_WORKER_PARTITIONS"] == "12"
    assert services["worker"]["environment"]["RECSTREAM_WORKER_BATCH_MAX_SIZE"] == "128"
    assert services["topics"]["environment"]["RECSTREAM_WORKER_PARTITIONS"] == "12"


def test_docker_compose_rejects_a_bad_replica_count() -> None:
    result = _render({"WORKERS": "many"})
    assert result.returncode != 0
    assert "replicas" in result.stderr


def test_kafka_runs_kraft_from_the_official_image(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "CONTROLLER://" in env["KAFKA_LISTENERS"]
    assert "healthcheck" in kafka


def test_topic_service_runs_recstream_topics_with_the_workers_settings(
    compose: dict[str, Any],
) -> None:
    topics, worker = compose["services"]["topics"], compose["services"]["worker"]
    assert topics["image"] == worker["image"] and topics["command"] == ["topics"]
    assert topics["depends_on"]["kafka"]["condition"] == "service_healthy"
    # Every topic setting the job applies is one the workers read too (they re-check it).
    shared = {k: v for k, v in topics["environment"].items()}
    assert shared.items() <= worker["environment"].items()
    for var in (
        "RECSTREAM_WORKER_PARTITIONS",
        "RECSTREAM_TOPIC_POLICY__REPLICATION_FACTOR",
        "RECSTREAM_TOPIC_POLICY__MIN_INSYNC_REPLICAS",
    ):
        assert var in shared


def test_worker_port_is_the_one_prometheus_scrapes(compose: dict[str, Any]) -> None:
    env = compose["services"]["worker"]["environment"]
    port = int(env["RECSTREAM_WORKER_WEB_PORT"])
    assert env["RECSTREAM_WORKER_WEB_HOST"] == "0.0.0.0"  # reachable from Prometheus
    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    job = next(j for j in prom["scrape_configs"] if j["job_name"] == "recstream-worker")
    (sd,) = job["dns_sd_configs"]
    assert sd["names"] == ["worker"] and sd["port"] == port
    assert compose["services"]["worker"]["ports"][0].endswith(f":{port}")
    assert f"EXPOSE {port}" in (DEPLOY / "Dockerfile").read_text()


def test_mounted_files_exist(compose: dict[str, Any]) -> None:
    for name in ("prometheus", "grafana"):
        for mount in compose["services"][name]["volumes"]:
            source = mount.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), mount
    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    assert prom["rule_files"] == ["/etc/prometheus/rules/*.yml"]
    assert (
        "./prometheus/rules:/etc/prometheus/rules:ro"
        in compose["services"]["prometheus"]["volumes"]
    )
