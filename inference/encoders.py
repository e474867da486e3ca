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


# What one more ONNX call costs, in padded token positions. On int8 MiniLM at batch 32
# (texts of 3-8 words, 5-11 tokens), per query: one call 3.00 ms, groups at a cost of
# 32 / 16 / 8 / 4 / 2 positions 2.57 / 2.53 / 2.46 / 2.49 / 2.57 ms (CPU time, load 16).
_CALL_COST_TOKENS = 8.0


def length_groups(lengths: np.ndarray) -> list[np.ndarray]:
    """Texts (by index) grouped into runs of similar token length, cheapest first.

    A batch is padded to its longest text, so mixing 4- and 12-token texts pays for
    12 positions each. Sorted by length, the cut points are chosen (dynamic
    programming, O(B²)) to minimise the padded positions plus
    :data:`_CALL_COST_TOKENS` per group.
    """
    order = np.argsort(lengths, kind="stable")
    srt = lengths[order].astype(float)
    n = len(srt)
    best = np.full(n + 1, np.inf)  # best[j]: cost of the first j sorted texts
    best[0] = 0.0
    cut = np.zeros(n + 1, dtype=np.int64)
    for j in range(1, n + 1):
        # a last group of texts i..j-1 is padded to srt[j-1]
        costs = best[:j] + (j - np.arange(j)) * srt[j - 1] + _CALL_COST_TOKENS
        i = int(np.argmin(costs))
        best[j], cut[j] = costs[i], i
    groups = []
    j = n
    while j > 0:
        groups.append(order[cut[j] : j])
        j = int(cut[j])
    return groups[::-1]


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

    def encode(self, texts: Sequence[str], *, group: bool = True) -> np.ndarray:
        """(B, D) float32 L2-normalised; empty input gives (0, D).

        The batch is cut into runs of similar token length (:func:`length_groups`), one
        ONNX call each, so short texts are not padded to the longest one's length
        (``group=False``: one call for all, as before issue 24). A dynamic-int8 graph
        quantises each call's activations with one scale, so its vectors depend on the
        texts they are encoded with (cosine 0.98-1.0 to the same text alone, measured on
        MiniLM): grouping changes a vector only as much as any other batch would."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        ids, mask, cut = self.tokenize(texts)
        lengths = mask.sum(axis=1)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        groups = length_groups(lengths) if group else [np.arange(len(texts))]
        for group_rows in groups:
            width = int(lengths[group_rows].max())
            feeds = {
                "input_ids": ids[group_rows, :width],
                "attention_mask": mask[group_rows, :width],
            }
            if "token_type_ids" in self._inputs:
                feeds["token_type_ids"] = np.zeros_like(feeds["input_ids"])
            out[group_rows] = _run(
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
    """ONNX sequence tower over a history of items (left-padded, most recent last).

    Two forms (docs/bundle.md): one graph over item vectors (B,L,D), or a split pair,
    ``item_input`` (N,D) -> (N,C) run once per item by the catalog (:meth:`item_inputs`)
    and ``core`` over the histories' item inputs (B,L,C). :meth:`encode` reads its
    rows from ``table``: item inputs for a split encoder, item vectors otherwise.

    A graph whose length axis is dynamic is fed each history padded only to its
    length's bucket (8, 16, 32, ... up to ``max_length``), one call per bucket in the
    batch: the padding is masked, so a user's vector is the same (to float rounding)
    whatever the bucket, and it depends on that user's history alone.
    """

    def __init__(
        self,
        model: Path | bytes,
        plan: OnnxPlan,
        max_length: int,
        dim: int,
        *,
        item_input: Path | bytes | None = None,
    ) -> None:
        self._session = open_session(model, plan)
        self._output = self._session.get_outputs()[0].name
        first = self._session.get_inputs()[0]
        self._input = first.name  # "item_vectors", or "item_inputs" for a split core
        length = first.shape[1] if len(first.shape) > 1 else None
        self._fixed_length = length if isinstance(length, int) else None
        self._item_input = None if item_input is None else open_session(item_input, plan)
        self.max_length = max_length
        self.dim = dim

    @property
    def split(self) -> bool:
        """True when histories are read as precomputed item inputs (:meth:`item_inputs`)."""
        return self._item_input is not None

    def item_inputs(self, vectors: np.ndarray, chunk: int = 8192) -> np.ndarray:
        """(N, C) float32 inputs of items with vectors (N, D): a split encoder's per-item
        work, done once per item rather than once per request."""
        if self._item_input is None:
            raise InferenceError("this sequence encoder reads item vectors, not item inputs")
        vectors = np.asarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        out = [
            np.asarray(
                self._item_input.run(None, {"item_vectors": vectors[i : i + chunk]})[0],
                dtype=np.float32,
            )
            for i in range(0, max(len(vectors), 1), chunk)
        ]
        return np.concatenate(out) if len(vectors) else out[0][:0]

    def bucket(self, n: int) -> int:
        """The padded length of a history of ``n`` items."""
        if self._fixed_length is not None:
            return self._fixed_length
        size = 8
        while size < n:
            size *= 2
        return min(size, self.max_length)

    def pack(
        self, histories: Sequence[np.ndarray], table: np.ndarray, length: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Row-id histories (oldest first) → (B,L,W) rows of ``table`` and (B,L) mask,
        left-padded to ``length`` (default: the manifest's ``max_length``)."""
        b, length = len(histories), length or self.max_length
        seq = np.zeros((b, length, table.shape[1]), dtype=np.float32)  # (B, L, W)
        mask = np.zeros((b, length), dtype=np.float32)  # (B, L)
        for i, rows in enumerate(histories):
            rows = np.asarray(rows, dtype=np.int64)[-length:]
            if len(rows):
                seq[i, length - len(rows) :] = table[rows]
                mask[i, length - len(rows) :] = 1.0
        return seq, mask

    def encode(self, histories: Sequence[np.ndarray], table: np.ndarray) -> np.ndarray:
        """(B, D) float32 L2-normalised user vectors; every history must be non-empty.

        ``table`` (N, W): item inputs for a split encoder, else item vectors, by row."""
        if not histories:
            return np.zeros((0, self.dim), dtype=np.float32)
        lengths = [self.bucket(min(len(h), self.max_length)) for h in histories]
        out = np.empty((len(histories), self.dim), dtype=np.float32)
        for length in sorted(set(lengths)):
            members = [i for i, n in enumerate(lengths) if n == length]
            seq, mask = self.pack([histories[i] for i in members], table, length)
            out[members] = _run(self._session, self._output, {self._input: seq, "mask": mask})
        return _normalise(out)

    def close(self) -> None:
        self._session = None
        self._item_input = None
