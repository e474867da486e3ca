"""Provider / device choice with faked provider lists and GPU counts."""

from __future__ import annotations

import pytest

from inference.providers import (
    CPU,
    CUDA,
    choose_faiss_device,
    choose_onnx_providers,
    onnx_plan,
)
from recstream.errors import ConfigError

GPU_BUILD = ["TensorrtExecutionProvider", CUDA, CPU]


def test_cuda_first_when_gpu_build_and_gpu_present() -> None:
    plan = choose_onnx_providers(GPU_BUILD, 1, threads=3)
    assert plan.providers == (CUDA, CPU) and plan.uses_gpu and plan.intra_op_threads == 3


def test_cpu_when_gpu_build_but_no_gpu() -> None:
    assert choose_onnx_providers(GPU_BUILD, 0).providers == (CPU,)


def test_cpu_when_cpu_build_even_with_gpu() -> None:
    assert choose_onnx_providers(["AzureExecutionProvider", CPU], 2).providers == (CPU,)


def test_override_cpu_wins_and_cuda_without_support_is_a_config_error() -> None:
    assert choose_onnx_providers(GPU_BUILD, 1, override="cpu").providers == (CPU,)
    with pytest.raises(ConfigError, match="RECSTREAM_INFERENCE_PROVIDER=cpu"):
        choose_onnx_providers([CPU], 1, override="cuda")


def test_faiss_device_choice() -> None:
    assert choose_faiss_device(True, 1) == "gpu"
    assert choose_faiss_device(True, 0) == "cpu"
    assert choose_faiss_device(False, 4) == "cpu"
    assert choose_faiss_device(True, 1, override="cpu") == "cpu"
    with pytest.raises(ConfigError, match="faiss-gpu"):
        choose_faiss_device(False, 0, override="gpu")


def test_this_machine_uses_cpu_with_the_configured_threads() -> None:
    plan = onnx_plan("auto", 2)
    assert plan.providers == (CPU,) and plan.intra_op_threads == 2
