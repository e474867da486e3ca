"""ONNX encoders: text → vector and item-vector sequence → user vector.

Contract (docs/bundle.md): outputs are float32, L2-normalised, in item space.
A session is created once and is safe to call from several threads
(onnxruntime's ``run`` is thread-safe); the truncation counter is lock-protected.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inference.errors import InferenceError
from inference.providers import OnnxPlan, session_options

log = logging.getLogger(__name__)


def open_session(model: Path | bytes, plan: OnnxPlan) -> Any:
    """An ONNX Runtime session over a file, or over bytes already read (and verified)."""
    import onnxruntime as ort

    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(
        source, sess_options=session_options(plan), providers=list(plan.providers)
    )


def _run(session: Any, output: str, feeds: dict[str, np.ndarray]) -> np.ndarray:
    if session is None:
        raise InferenceError("encoder is closed (its bundle was replaced): lease the current one")
    return np.asarray(session.run([output], feeds)[0], dtype=np.float32)


def _normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


class TextEncoder:
    """Tokenizer + ONNX text tower; one ONNX call per :meth:`encode` batch.

    Text longer than ``max_length`` tokens is truncated (special tokens kept by
    the tokenizer's own truncation) and counted in :attr:`truncated`. The model
    and the tokenizer are files, or their bytes (a bundle's verified reads), in
    which case ``model_path`` names where they came from.
    """

    def __init__(
        self,
        model: Path | bytes,
        tokenizer: Path | bytes,
        plan: OnnxPlan,
        max_length: int,
        *,
        model_path: Path | None = None,
    ) -> None:
        from tokenizers import Tokenizer

        self.max_length = max_length
        if not isinstance(model, bytes):
            model_path = Path(model)
        elif model_path is None:
            raise ValueError("model_path must name where the model bytes came from")
        self.model_path: Path = model_path
        self._session = open_session(model, plan)
        self._inputs = {i.name for i in self._session.get_inputs()}
        self._output = self._session.get_outputs()[0].name
        if isinstance(tokenizer, bytes):
            self._tok = Tokenizer.from_str(tokenizer.decode("utf-8"))
        else:
            self._tok = Tokenizer.from_file(str(tokenizer))
        self._tok.enable_truncation(max_length=max_length)
        pad_id = self._pad_id()
        self._tok.enable_padding(pad_id=pad_id, pad_token=self._tok.id_to_token(pad_id) or "[PAD]")
        self._lock = threading.Lock()
        self.truncated = 0  # texts cut to max_length since start
        self.encoded = 0  # texts encoded since start
        self.dim = int(self._session.get_outputs()[0].shape[-1])

    def _pad_id(self) -> int:
        padding = self._tok.padding
        if padding:
            return int(padding["pad_id"])
        for tok in ("[PAD]", "<pad>", "<PAD>"):
            tid = self._tok.token_to_id(tok)
            if tid is not None:
                return tid
        return 0

    def tokenize(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, int]:
        """(ids (B,T) int64, mask (B,T) int64, number truncated)."""
        encs = self._tok.encode_batch(list(texts))
        ids = np.asarray([e.ids for e in encs], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in encs], dtype=np.int64)
        return ids, mask, sum(1 for e in encs if e.overflowing)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(B, D) float32 L2-normalised; empty input gives (0, D)."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        ids, mask, cut = self.tokenize(texts)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        out = _run(
            self._session, self._output, {k: v for k, v in feeds.items() if k in self._inputs}
        )
        with self._lock:
            self.truncated += cut
            self.encoded += len(texts)
        if cut:
            log.debug("%d of %d texts truncated to %d tokens", cut, len(texts), self.max_length)
        return _normalise(out)

    def close(self) -> None:
        self._session = None


class SequenceEncoder:
    """ONNX sequence tower over item vectors (left-padded, most recent last)."""

    def __init__(self, model: Path | bytes, plan: OnnxPlan, max_length: int, dim: int) -> None:
        self._session = open_session(model, plan)
        self._output = self._session.get_outputs()[0].name
        self.max_length = max_length
        self.dim = dim

    def pack(
        self, histories: Sequence[np.ndarray], vectors: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Row-id histories (oldest first) → (B,L,D) vectors and (B,L) mask, left-padded to L.

        Always padded to the manifest's ``max_length`` so a user's vector does not
        depend on the other users in the batch.
        """
        b, length = len(histories), self.max_length
        seq = np.zeros((b, length, self.dim), dtype=np.float32)  # (B, L, D)
        mask = np.zeros((b, length), dtype=np.float32)  # (B, L)
        for i, rows in enumerate(histories):
            rows = np.asarray(rows, dtype=np.int64)[-length:]
            if len(rows):
                seq[i, length - len(rows) :] = vectors[rows]
                mask[i, length - len(rows) :] = 1.0
        return seq, mask

    def encode(self, histories: Sequence[np.ndarray], vectors: np.ndarray) -> np.ndarray:
        """(B, D) float32 L2-normalised user vectors; every history must be non-empty."""
        if not histories:
            return np.zeros((0, self.dim), dtype=np.float32)
        seq, mask = self.pack(histories, vectors)
        out = _run(self._session, self._output, {"item_vectors": seq, "mask": mask})
        return _normalise(out)

    def close(self) -> None:
        self._session = None
