"""One tokenisation path for training, export and offline evaluation.

The bundle ships ``tokenizer.json`` (the ``tokenizers`` library) and serving
tokenises with it, so training uses the very same object: padding to the
longest text of a batch, truncation at ``max_length`` tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer


def load_tokenizer(path: Path | bytes, max_length: int) -> Tokenizer:
    """A tokenizer (a file, or its bytes) configured for batching: right padding to the
    batch's longest, truncation."""
    if isinstance(path, bytes):
        tok = Tokenizer.from_str(path.decode("utf-8"))
    else:
        tok = Tokenizer.from_file(str(path))
    tok.enable_truncation(max_length=max_length)
    tok.enable_padding(pad_id=0, pad_token="[PAD]")
    return tok


def encode_batch(tok: Tokenizer, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(input_ids, attention_mask)``, both int64 (B, T)."""
    encs = tok.encode_batch(list(texts))
    ids = np.asarray([e.ids for e in encs], dtype=np.int64)
    mask = np.asarray([e.attention_mask for e in encs], dtype=np.int64)
    return ids, mask
