"""The worker images: CPU default (python:3.11-slim, no torch) and the GPU variant."""

from __future__ import annotations

import re

import pytest

from tests.unit.deploy.promql_names import DEPLOY, REPO


def _instructions(name: str) -> list[tuple[str, str]]:
    text = (DEPLOY / name).read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.gpu"])
def test_image_runs_as_non_root_with_healthcheck(name: str) -> None:
    ins = _instructions(name)
    users = [rest for word, rest in ins if word == "USER"]
    assert users and users[-1].split(":")[0] == "10001"  # k8s runAsUser matches
    health = [rest for word, rest in ins if word == "HEALTHCHECK"]
    assert len(health) == 1 and "/healthz" in health[0]
    assert ("EXPOSE", "6066") in ins
    assert ("CMD", '["worker"]') in ins
    assert ("ENTRYPOINT", '["recstream"]') in ins


def test_cpu_image_is_slim_python_without_train_extra() -> None:
    ins = _instructions("Dockerfile")
    assert ("ARG", "PYTHON_IMAGE=python:3.11-slim") in ins
    runs = " ".join(rest for word, rest in ins if word == "RUN")
    assert "pip install ." in runs
    assert "[train]" not in runs and "torch" not in re.sub(r"find_spec\('torch'\)", "", runs)


def test_gpu_image_swaps_in_gpu_wheels() -> None:
    ins = _instructions("Dockerfile.gpu")
    assert any(word == "ARG" and rest.startswith("CUDA_IMAGE=nvidia/cuda:") for word, rest in ins)
    runs = " ".join(rest for word, rest in ins if word == "RUN")
    assert 'pip install ".[gpu]"' in runs
    assert "uninstall -y onnxruntime faiss-cpu" in runs
    assert "CUDAExecutionProvider" in runs
    pyproject = (REPO / "pyproject.toml").read_text()
    assert "onnxruntime-gpu" in pyproject and "faiss-gpu-cu12" in pyproject


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.gpu"])
def test_copied_paths_exist_and_pass_the_dockerignore(name: str) -> None:
    ignore = (DEPLOY / f"{name}.dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for word, rest in _instructions(name):
        if word != "COPY" or rest.startswith("--from"):
            continue
        *sources, _dest = rest.split()
        for src in sources:
            assert src in allowed, f"{src} is excluded by {name}.dockerignore"
            assert (REPO / src).exists(), src
