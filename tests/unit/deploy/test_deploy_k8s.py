"""deploy/k8s: manifests parse, fit together (selectors, names, ports, probes),
keep secrets out of the ConfigMap, and render with `kubectl kustomize`."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.deploy.promql_names import DEPLOY

K8S = DEPLOY / "k8s"


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@pytest.fixture(scope="module")
def kustomization() -> dict[str, Any]:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


@pytest.fixture(scope="module")
def objects(kustomization: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    out = {}
    for name in kustomization["resources"]:
        for doc in _docs(K8S / name):
            assert {"apiVersion", "kind", "metadata"} <= set(doc), (name, doc)
            out[(doc["kind"], doc["metadata"]["name"])] = doc
    return out


def test_every_yaml_file_parses() -> None:
    files = sorted(K8S.glob("*.yaml"))
    assert len(files) >= 9
    for path in files:
        assert _docs(path), path


def test_kustomization_lists_every_manifest_but_the_secret_template(
    kustomization: dict[str, Any],
) -> None:
    listed = set(kustomization["resources"]) | {"kustomization.yaml", "secret.example.yaml"}
    assert listed == {p.name for p in K8S.glob("*.yaml")}
    assert sorted(p.name for p in K8S.iterdir()) == sorted(listed)  # no stray scripts


def _worker(objects: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    return objects[("StatefulSet", "recstream-worker")]


def test_worker_selectors_service_and_pdb_match(objects: dict) -> None:
    sts = _worker(objects)
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    assert sts["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    service = objects[("Service", sts["spec"]["serviceName"])]
    assert service["spec"]["clusterIP"] == "None"  # headless, per-pod DNS
    assert service["spec"]["selector"].items() <= pod_labels.items()
    pdb = objects[("PodDisruptionBudget", "recstream-worker")]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert pdb["spec"]["maxUnavailable"] == 1


def test_worker_probes_port_and_scrape_annotations_agree(objects: dict) -> None:
    sts = _worker(objects)
    config = objects[("ConfigMap", "recstream-config")]["data"]
    pod = sts["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    web_port = int(config["RECSTREAM_WORKER_WEB_PORT"])
    assert ports["http"] == web_port
    assert config["RECSTREAM_WORKER_WEB_HOST"] == "0.0.0.0"
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    notes = pod["metadata"]["annotations"]
    assert notes["prometheus.io/scrape"] == "true"
    assert int(notes["prometheus.io/port"]) == web_port
    assert notes["prometheus.io/path"] == "/metrics"


def test_workers_fit_the_partitions(objects: dict) -> None:
    config = objects[("ConfigMap", "recstream-config")]["data"]
    replicas = _worker(objects)["spec"]["replicas"]
    assert 1 <= replicas <= int(config["RECSTREAM_WORKER_PARTITIONS"])


def test_topics_are_replicated_for_production(objects: dict) -> None:
    """Three replicas, two of them in sync for a write: one broker may fail, none is lost."""
    config = objects[("ConfigMap", "recstream-config")]["data"]
    assert config["RECSTREAM_TOPIC_POLICY__REPLICATION_FACTOR"] == "3"
    assert config["RECSTREAM_TOPIC_POLICY__MIN_INSYNC_REPLICAS"] == "2"


def test_settings_come_from_configmap_and_secret(objects: dict) -> None:
    config = objects[("ConfigMap", "recstream-config")]["data"]
    assert not [k for k in config if "PASSWORD" in k or "USERNAME" in k]
    secret = _docs(K8S / "secret.example.yaml")[0]
    assert secret["kind"] == "Secret"
    assert "RECSTREAM_SECURITY__PASSWORD" in secret["stringData"]
    for kind, name in (("StatefulSet", "recstream-worker"), ("Job", "recstream-topics")):
        (container,) = objects[(kind, name)]["spec"]["template"]["spec"]["containers"]
        refs = {next(iter(r)): next(iter(r.values()))["name"] for r in container["envFrom"]}
        assert refs == {"configMapRef": "recstream-config", "secretRef": secret["metadata"]["name"]}


def test_worker_runs_as_the_image_user_with_its_own_state(objects: dict) -> None:
    spec = _worker(objects)["spec"]
    security = spec["template"]["spec"]["securityContext"]
    assert security["runAsNonRoot"] is True
    assert f"USER {security['runAsUser']}:" in (DEPLOY / "Dockerfile").read_text()
    (claim,) = spec["volumeClaimTemplates"]
    (container,) = spec["template"]["spec"]["containers"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    config = objects[("ConfigMap", "recstream-config")]["data"]
    assert mounts[claim["metadata"]["name"]] == config["RECSTREAM_STATE_DIR"]
    assert mounts["bundles"] == config["RECSTREAM_WORKER_BUNDLE"]


def test_topic_job_runs_recstream_topics_from_the_worker_image(objects: dict) -> None:
    job = objects[("Job", "recstream-topics")]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    (worker,) = _worker(objects)["spec"]["template"]["spec"]["containers"]
    assert container["image"] == worker["image"]  # the same code decides every topic's spec
    assert container["args"] == ["topics"]
    assert 'ENTRYPOINT ["recstream"]' in (DEPLOY / "Dockerfile").read_text()


def test_kubectl_kustomize_renders_the_stack() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed on this machine (rendering check only)")
    result = subprocess.run(
        [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == sorted(
        [
            "Namespace",
            "ConfigMap",
            "PersistentVolumeClaim",
            "Job",
            "Service",
            "StatefulSet",
            "PodDisruptionBudget",
        ]
    )
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"} == {
        "recstream"
    }
