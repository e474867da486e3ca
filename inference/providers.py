"""Run-time choice of onnxruntime execution provider and FAISS device.

GPU paths are optional extras (``recstream[gpu]``): they are used only when the
installed package supports them *and* a GPU is present; the CPU path is the
tested default. The choice functions are pure (provider list, GPU count and
override passed in) so the selection logic is tested without a GPU.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from recstream.errors import ConfigError

log = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def nvidia_gpu_count() -> int:
    """GPUs the NVIDIA driver exposes (0 without a driver); no CUDA library is loaded."""
    gpus = Path("/proc/driver/nvidia/gpus")
    if gpus.is_dir():
        return sum(1 for _ in gpus.iterdir())
    return sum(1 for i in range(16) if os.path.exists(f"/dev/nvidia{i}"))


@dataclass(frozen=True)
class OnnxPlan:
    """Providers for an ``InferenceSession`` and the CPU threads to give it."""

    providers: tuple[str, ...]
    intra_op_threads: int

    @property
    def uses_gpu(self) -> bool:
        return self.providers[0] == CUDA


def choose_onnx_providers(
    available: Sequence[str],
    gpu_count: int,
    *,
    override: Literal["auto", "cpu", "cuda"] = "auto",
    threads: int = 1,
) -> OnnxPlan:
    """CUDA first when onnxruntime-gpu offers it and a GPU exists, else CPU.

    ``override="cuda"`` without CUDA support is a :class:`ConfigError` (the user
    asked for something this machine cannot do); ``"cpu"`` always wins.
    """
    cuda_ok = CUDA in available and gpu_count > 0
    if override == "cuda" and not cuda_ok:
        raise ConfigError(
            f"provider 'cuda' requested but onnxruntime offers {list(available)} with "
            f"{gpu_count} GPU(s): install recstream[gpu] on a GPU host or set "
            "RECSTREAM_INFERENCE_PROVIDER=cpu"
        )
    if cuda_ok and override != "cpu":
        return OnnxPlan((CUDA, CPU), threads)
    return OnnxPlan((CPU,), threads)


def choose_faiss_device(
    has_gpu_support: bool,
    gpu_count: int,
    *,
    override: Literal["auto", "cpu", "gpu"] = "auto",
) -> Literal["cpu", "gpu"]:
    """GPU when faiss was built with GPU support and sees a GPU, else CPU."""
    gpu_ok = has_gpu_support and gpu_count > 0
    if override == "gpu" and not gpu_ok:
        raise ConfigError(
            f"faiss device 'gpu' requested but faiss GPU support={has_gpu_support}, "
            f"GPUs={gpu_count}: install faiss-gpu on a GPU host or set "
            "RECSTREAM_INFERENCE_FAISS_DEVICE=cpu"
        )
    return "gpu" if gpu_ok and override != "cpu" else "cpu"


def onnx_plan(override: Literal["auto", "cpu", "cuda"], threads: int) -> OnnxPlan:
    """The plan for this machine (asks onnxruntime and the driver)."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    gpus = nvidia_gpu_count() if CUDA in available else 0
    plan = choose_onnx_providers(available, gpus, override=override, threads=threads)
    log.info("onnxruntime providers %s (available %s)", plan.providers, available)
    return plan


def faiss_device(override: Literal["auto", "cpu", "gpu"]) -> Literal["cpu", "gpu"]:
    """The FAISS device for this machine."""
    import faiss

    has_gpu = hasattr(faiss, "StandardGpuResources") and hasattr(faiss, "get_num_gpus")
    gpus = int(faiss.get_num_gpus()) if has_gpu else 0
    return choose_faiss_device(has_gpu, gpus, override=override)


def session_options(plan: OnnxPlan) -> Any:
    """``SessionOptions`` with explicit threads (never ORT's default of all cores)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = plan.intra_op_threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if plan.intra_op_threads == 1:
        # No spinning pool thread to steal the second core from the event loop.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts
