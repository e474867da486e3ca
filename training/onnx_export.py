"""ONNX export of both encoders, parity checks against torch, int8 quantisation, timing.

Classic TorchScript exporter (``dynamo=False``) with dynamic batch and length
axes; eager attention in the text tower (the exporter needs both with transformers
5). A parity failure raises :class:`TrainingError`: a bundle whose ONNX graph
disagrees with torch is never written.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer
from torch import nn

from training.errors import TrainingError
from training.sequence_model import SequenceEncoder
from training.tokenization import encode_batch

log = logging.getLogger(__name__)

OPSET = 17
PARITY_MIN_COS = 0.999


@contextmanager
def _quiet_exporter():
    # the tracer warns about python-int shape arithmetic we rely on on purpose
    # (dynamic length slices); parity is checked on real inputs right after
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def session(path: Path | bytes, threads: int = 1):
    """An onnxruntime CPU session with an explicit thread count (a file, or its bytes)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    source = path if isinstance(path, bytes) else str(path)
    return ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])


def export_text_encoder(encoder: nn.Module, path: Path) -> None:
    encoder.eval()
    ids = torch.tensor([[101, 7592, 2088, 102], [101, 7592, 102, 0]], dtype=torch.int64)
    mask = (ids != 0).to(torch.int64)
    with _quiet_exporter(), torch.no_grad():
        torch.onnx.export(
            encoder,
            (ids, mask),
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=["embedding"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "length"},
                "attention_mask": {0: "batch", 1: "length"},
                "embedding": {0: "batch"},
            },
            opset_version=OPSET,
            dynamo=False,
        )


def export_sequence_encoder(encoder: SequenceEncoder, path: Path) -> None:
    encoder.eval()
    d = encoder.cfg.dim
    x = torch.randn(2, 5, d)
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]], dtype=torch.float32)
    with _quiet_exporter(), torch.no_grad():
        torch.onnx.export(
            encoder,
            (x, mask),
            str(path),
            input_names=["item_vectors", "mask"],
            output_names=["user_vector"],
            dynamic_axes={
                "item_vectors": {0: "batch", 1: "length"},
                "mask": {0: "batch", 1: "length"},
                "user_vector": {0: "batch"},
            },
            opset_version=OPSET,
            dynamo=False,
        )


class _ItemInput(nn.Module):
    """``in_proj``: item vectors (N,D) -> the sequence encoder's item inputs (N,C)."""

    def __init__(self, encoder: SequenceEncoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, item_vectors: torch.Tensor) -> torch.Tensor:
        return self.encoder.in_proj(item_vectors)


class _Core(nn.Module):
    """Item inputs (B,T,C) + mask (B,T) -> user vector (B,D), the latest position only."""

    def __init__(self, encoder: SequenceEncoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, item_inputs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.encoder.head(self.encoder.last_state(item_inputs, mask))


def export_sequence_split(encoder: SequenceEncoder, item_input: Path, core: Path) -> None:
    """The sequence encoder as two graphs (docs/bundle.md, ``sequence_encoder.split``):
    ``item_input`` maps each item vector to its input once per catalog (and per item
    upsert), ``core`` maps a history of those inputs to the user vector, computing
    the last block at the latest position only. ``core(item_input(x))`` equals the
    whole graph of :func:`export_sequence_encoder` on ``x``."""
    encoder.eval()
    d, c = encoder.cfg.dim, encoder.cfg.d_model
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]], dtype=torch.float32)
    with _quiet_exporter(), torch.no_grad():
        torch.onnx.export(
            _ItemInput(encoder).eval(),  # the exporter restores a wrapper's mode, recursively
            (torch.randn(3, d),),
            str(item_input),
            input_names=["item_vectors"],
            output_names=["item_inputs"],
            dynamic_axes={"item_vectors": {0: "items"}, "item_inputs": {0: "items"}},
            opset_version=OPSET,
            dynamo=False,
        )
        torch.onnx.export(
            _Core(encoder).eval(),
            (torch.randn(2, 5, c), mask),
            str(core),
            input_names=["item_inputs", "mask"],
            output_names=["user_vector"],
            dynamic_axes={
                "item_inputs": {0: "batch", 1: "length"},
                "mask": {0: "batch", 1: "length"},
                "user_vector": {0: "batch"},
            },
            opset_version=OPSET,
            dynamo=False,
        )


def quantize_int8(src: Path, dst: Path) -> None:
    """Dynamic int8 weights (activations quantised at run time): same inputs/outputs.

    Per-channel weights on MatMuls only (embeddings stay fp32): measured on MiniLM
    here, mean cosine vs fp32 0.993 instead of 0.968 with the per-tensor default.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # ORT logs a pre-processing hint on the root logger
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_dynamic(
                str(src),
                str(dst),
                weight_type=QuantType.QInt8,
                per_channel=True,
                op_types_to_quantize=["MatMul"],
            )
    finally:
        root.setLevel(level)


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return (a * b).sum(1)


def onnx_text_vectors(
    sess, tok: Tokenizer, texts: Sequence[str], batch_size: int = 64
) -> np.ndarray:
    out = []
    for s in range(0, len(texts), batch_size):
        ids, mask = encode_batch(tok, texts[s : s + batch_size])
        out.append(sess.run(["embedding"], {"input_ids": ids, "attention_mask": mask})[0])
    return np.concatenate(out).astype(np.float32)


def check_text_parity(
    encoder: nn.Module, onnx_path: Path, tok: Tokenizer, texts: Sequence[str]
) -> float:
    """Min cosine torch vs ONNX over one padded batch of mixed-length texts; raises below 0.999."""
    ids, mask = encode_batch(tok, texts)
    encoder.eval()
    with torch.no_grad():
        ref = encoder(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    got = session(onnx_path).run(["embedding"], {"input_ids": ids, "attention_mask": mask})[0]
    cos = float(row_cosines(ref, got).min())
    if not cos > PARITY_MIN_COS:
        raise TrainingError(f"text encoder ONNX parity failed: min cosine {cos:.6f}")
    return cos


def check_sequence_parity(
    encoder: SequenceEncoder, onnx_path: Path, item_vectors: np.ndarray, seed: int = 0
) -> float:
    """Min cosine torch vs ONNX on left-padded mixed-length histories of real item vectors."""
    rng = np.random.default_rng(seed)
    max_len, d = encoder.cfg.max_len, item_vectors.shape[1]
    sess = session(onnx_path)
    worst = 1.0
    for length in (1, 7, max_len):  # several padded lengths, dynamic axis exercised
        b = 6
        lens = rng.integers(1, length + 1, size=b)
        lens[0] = length
        x = np.zeros((b, length, d), np.float32)
        m = np.zeros((b, length), np.float32)
        for i, n in enumerate(lens):
            x[i, length - n :] = item_vectors[rng.integers(0, len(item_vectors), size=n)]
            m[i, length - n :] = 1.0
        encoder.eval()
        with torch.no_grad():
            ref = encoder(torch.from_numpy(x), torch.from_numpy(m)).numpy()
        got = sess.run(["user_vector"], {"item_vectors": x, "mask": m})[0]
        worst = min(worst, float(row_cosines(ref, got).min()))
    if not worst > PARITY_MIN_COS:
        raise TrainingError(f"sequence encoder ONNX parity failed: min cosine {worst:.6f}")
    return worst


def check_split_parity(
    encoder: SequenceEncoder,
    item_input: Path,
    core: Path,
    item_vectors: np.ndarray,
    seed: int = 0,
) -> float:
    """Min cosine of the split graphs (inputs of every item, then the core over histories
    padded to their own length) against torch's whole encoder; raises below 0.999."""
    rng = np.random.default_rng(seed)
    max_len = encoder.cfg.max_len
    inputs = session(item_input).run(["item_inputs"], {"item_vectors": item_vectors})[0]
    run_core = session(core)
    worst = 1.0
    for length in (1, 7, max_len):
        lens = rng.integers(1, length + 1, size=6)
        lens[0] = length
        rows = [rng.integers(0, len(item_vectors), size=n) for n in lens]
        x = np.zeros((6, length, item_vectors.shape[1]), np.float32)
        p = np.zeros((6, length, inputs.shape[1]), np.float32)
        m = np.zeros((6, length), np.float32)
        for i, r in enumerate(rows):
            x[i, length - len(r) :], p[i, length - len(r) :] = item_vectors[r], inputs[r]
            m[i, length - len(r) :] = 1.0
        encoder.eval()
        with torch.no_grad():
            ref = encoder(torch.from_numpy(x), torch.from_numpy(m)).numpy()
        got = run_core.run(["user_vector"], {"item_inputs": p, "mask": m})[0]
        worst = min(worst, float(row_cosines(ref, got).min()))
    if not worst > PARITY_MIN_COS:
        raise TrainingError(f"split sequence encoder parity failed: min cosine {worst:.6f}")
    return worst


def time_call(fn: Callable[[], object], *, repeats: int = 20, warmup: int = 3) -> float:
    """Median seconds of ``fn()`` (noisy on a shared machine: compare ratios in one run)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def text_encoder_speed(sess, tok: Tokenizer, texts: Sequence[str]) -> dict[str, float]:
    """Median ms per call at batch 1 and per query at batch 32."""
    one = encode_batch(tok, texts[:1])
    many = encode_batch(tok, list(texts[:32]))

    def run(batch: tuple[np.ndarray, np.ndarray]) -> Callable[[], object]:
        feed = {"input_ids": batch[0], "attention_mask": batch[1]}
        return lambda: sess.run(["embedding"], feed)

    return {
        "batch1_ms": 1000 * time_call(run(one)),
        "batch32_ms_per_query": 1000 * time_call(run(many), repeats=10) / len(many[0]),
    }
