"""The concrete :class:`inference.types.Recommender` over a bundle.

One call of :meth:`OnnxRecommender.recommend_batch` makes at most one ONNX call
per encoder and a few FAISS searches per source for the batch (one per distinct
search depth, which grows with the excluded-item count in steps of 8 up to
``candidates.exclusion_margin``; plus a search of its own for a request whose
excluded items fill more than that margin of its hits). A
request's candidates never depend on the other requests in its batch, so a batch
returns the same items as one-request calls.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
import time
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from inference.batch_fusion import BatchFused, fuse_batch
from inference.bundle import Bundle, load_bundle
from inference.bundle.manifest import TOKENIZER, Manifest
from inference.encoders import SequenceEncoder, TextEncoder
from inference.errors import InferenceError
from inference.fusion import _SOURCES, Calibration, fusion_weights
from inference.index import ItemIndex, load_index
from inference.providers import faiss_device, onnx_plan
from inference.settings import InferenceSettings
from inference.text_evidence import has_usable_text, usable_text_mask
from inference.types import Request, Result, ScoredItem

if TYPE_CHECKING:
    from inference.online import LearnedItem, PopularityScale

log = logging.getLogger(__name__)


def item_text(title: str, text: str | None) -> str:
    """The text an item is encoded from: its text, prefixed by the title if it lacks it."""
    title, text = (title or "").strip(), (text or "").strip()
    if not text:
        return title
    return text if title.lower() in text.lower() else f"{title}. {text}"


class OnnxRecommender:
    """Serves one bundle: ONNX encoders, a live :class:`ItemIndex`, fusion.

    Built from a verified :class:`Bundle` (each file's bytes hashed as read, then
    built into a session, a tokenizer or the FAISS index); the bundle is not kept,
    so its bytes are freed once construction ends (see :mod:`inference.bundle.load`).
    ``settings`` are built by the caller (the worker or CLI, from the environment);
    None serves the documented defaults without reading the environment.
    """

    def __init__(
        self,
        bundle: Bundle,
        settings: InferenceSettings | None = None,
        *,
        text_encoder: TextEncoder | None = None,
        sequence_encoder: SequenceEncoder | None = None,
        index: ItemIndex | None = None,
    ) -> None:
        s = settings if settings is not None else InferenceSettings.defaults()
        m = bundle.manifest
        # the bundle's tuned prior applies unless these settings name their own
        fusion = s.fusion.for_bundle(m.fusion.popularity_weight_warm)
        s = self.settings = s if fusion is s.fusion else s.model_copy(update={"fusion": fusion})
        self.manifest = m
        self.path = bundle.path
        self.pin_threads()
        plan = onnx_plan(s.provider, s.threads)
        if sequence_encoder is None:
            se = m.sequence_encoder
            if se.split is not None and s.sequence_split:
                sequence_encoder = SequenceEncoder(
                    bundle.read(se.split.core_file),
                    plan,
                    se.max_length,
                    m.dim,
                    item_input=bundle.read(se.split.item_input_file),
                )
            else:
                sequence_encoder = SequenceEncoder(bundle.read(se.file), plan, se.max_length, m.dim)
        # a split sequence encoder's per-item inputs live beside the vectors in the index
        project = sequence_encoder.item_inputs if sequence_encoder.split else None
        if index is None:  # the largest file: its bytes are dropped before the next read
            index = ItemIndex(
                load_index(bundle.read(m.index.file), m.index.kind, len(bundle.items)),
                [it.item_id for it in bundle.items],
                bundle.vectors,
                bundle.popularity,
                kind=m.index.kind,
                ef_search=served_ef_search(s, m.index.params.get("efSearch")),
                hnsw_m=int(m.index.params.get("M", 32)),
                ef_construction=int(m.index.params.get("efConstruction", 40)),
                n_probe=s.n_probe or m.index.params.get("nprobe"),
                device=faiss_device(s.faiss_device),
                rebuild_ratio=s.hnsw_rebuild_ratio,
                has_text=usable_text_mask(
                    (it.text for it in bundle.items), (it.item_id for it in bundle.items)
                ),
                project=project,
            )
        elif sequence_encoder.split and not index.has_sequence_inputs:
            raise InferenceError(
                "the index given was built without the split sequence encoder's item inputs "
                "(ItemIndex(..., project=encoder.item_inputs))"
            )
        if text_encoder is None:
            te = m.text_encoder
            name = te.int8_file if s.prefer_int8 and te.int8_file else te.file
            text_encoder = TextEncoder(
                bundle.read(name),
                bundle.read(TOKENIZER),
                plan,
                s.text_max_length or te.max_length,
                model_path=bundle.file(name),
            )
        self.text_encoder = text_encoder
        self.sequence_encoder = sequence_encoder
        self.index = index
        self._titles = {it.item_id: it.title for it in bundle.items}
        # Online learning (inference.online): an item is served from a base (vector,
        # popularity, trained) plus what the stream taught it. The base of an item
        # published through item-updates is its text vector (popularity 0, untrained); a
        # bundle item's is what it was loaded with, captured before it first learns.
        self._base: dict[str, tuple[np.ndarray, float, bool]] = {}
        self._untrained = frozenset(
            it.item_id for it, p in zip(bundle.items, bundle.popularity, strict=True) if p <= 0
        )
        # the bundle prior's scale (manifest ``popularity``); None: popularity stays static
        self.popularity_scale = _popularity_scale(bundle.manifest)
        self._pop_unit = 1.0  # index popularity = served popularity / this
        # recent query vectors by text (a bounded LRU; None when the setting is 0)
        self._query_cache: OrderedDict[str, np.ndarray] | None = (
            OrderedDict() if s.query_cache_size else None
        )
        self._calibration = self._calibrate()
        self._closed = False
        # Held while rows are in use (a batch, a row-then-vector read): an index
        # rebuild in another thread (maintain) renumbers rows only under it.
        self._rows = threading.RLock()
        bundle.files.verify_rest()  # files not served (the other text encoder): checked alike

    @classmethod
    def load(cls, path: Path, settings: InferenceSettings | None = None) -> OnnxRecommender:
        """Verify and load the bundle at ``path`` (a ``<bundle_dir>/<version>`` directory)."""
        return cls(load_bundle(path), settings)

    # -- the Recommender protocol -----------------------------------------------------
    @property
    def model_version(self) -> str:
        return self.manifest.version

    @property
    def created_ts(self) -> float:
        return self.manifest.created_ts

    @property
    def dim(self) -> int:
        return self.manifest.dim

    @property
    def n_items(self) -> int:
        """Items searchable now (for the ``recstream_index_items`` gauge)."""
        return len(self.index)

    @property
    def truncated_texts(self) -> int:
        """Texts cut to the text encoder's max_length since load."""
        return self.text_encoder.truncated

    def title(self, item_id: str) -> str | None:
        return self._titles.get(item_id)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        return self.text_encoder.encode(list(texts))

    def upsert_item(
        self, item_id: str, title: str, text: str | None = None, attributes: dict | None = None
    ) -> None:
        full = item_text(title, text)
        vec = self.text_encoder.encode([full])[0]
        with self._rows:
            self.index.upsert(item_id, vec, has_text=has_usable_text(full, item_id))
            self._titles[item_id] = title
            row = self.index.row(item_id)
            pop = 0.0 if row is None else float(self.index.popularity[row]) * self._pop_unit
        self._base[item_id] = (vec, pop, False)  # its text is all it is trained on

    def delete_item(self, item_id: str) -> None:
        self.index.delete(item_id)
        self._titles.pop(item_id, None)
        self._base.pop(item_id, None)

    # -- online item learning (inference.online) ----------------------------------------
    def item_vector(self, item_id: str) -> np.ndarray | None:
        """(D,) the vector ``item_id`` is served with now (None: not in the index)."""
        with self._rows:
            row = self.index.row(item_id)
            return None if row is None else self.index.vectors[row].copy()

    def user_vector(self, history: Sequence[str]) -> np.ndarray | None:
        """(D,) the user vector :meth:`recommend_batch` computes for ``history`` now
        (``Result.user_vector``), without ranking; None if no history item is live."""
        rows = [r for iid in history if (r := self.index.row(iid)) is not None]
        if not rows:
            return None
        table = self.index.sequence_inputs  # the vectors, or a split encoder's item inputs
        vec = self.sequence_encoder.encode([np.array(rows, np.int64)], table)
        return np.asarray(vec[0])

    def base_vector(self, item_id: str) -> tuple[np.ndarray, bool] | None:
        """(base vector, trained) of a live item, or None if it is not in the index.

        The base is what learning starts from: the text vector of an item published
        through ``item-updates`` (trained False), else the vector the bundle gave it,
        trained when the item had training interactions (the bundle's popularity
        prior counts exactly those, so it is > 0 for them and 0 for the rest).
        """
        base = self._learning_base(item_id)
        return None if base is None else (base[0], base[2])

    def _learning_base(self, item_id: str) -> tuple[np.ndarray, float, bool] | None:
        """(vector, popularity in served units, trained) the item learns from."""
        with self._rows:
            row = self.index.row(item_id)
            if row is None:
                return None
            base = self._base.get(item_id)
            if base is None:  # nothing learned yet: the index holds it
                pop = float(self.index.popularity[row]) * self._pop_unit
                base = (self.index.vectors[row].copy(), pop, item_id not in self._untrained)
                self._base[item_id] = base
            return base

    def apply_learned(self, learned: Mapping[str, LearnedItem | None]) -> int:
        """Serve each item as its learned state says (None: as the bundle/catalog gave it).

        Its vector becomes ``normalize(base + delta)`` and, with online popularity on
        and a bundle that records its prior's scale, its popularity the prior plus
        its decayed stream clicks (:func:`inference.online.served_popularity`).
        Items not in the index (deleted, not published yet) are skipped, as is a
        delta of the wrong shape. Returns how many items were updated.
        """
        from inference.online import served_popularity, served_vector

        s = self.settings.online
        scale = self.popularity_scale if s.popularity else None
        done = 0
        pops: dict[str, float] = {}
        for item_id, state in learned.items():
            base = self._learning_base(item_id)
            if base is None:
                continue
            delta = None if state is None else state.delta
            if delta is not None and np.shape(delta) != (self.dim,):
                log.warning("ignoring learned delta of shape %s for %s", np.shape(delta), item_id)
                continue
            pop = None
            if scale is not None:
                value = served_popularity(base[1], state, scale, s.popularity_half_life_s)
                pop = pops[item_id] = value / self._pop_unit
            if self.index.set_vector(item_id, served_vector(base[0], delta), pop):
                done += 1
        if pops:
            top = max(pops.values())
            if top > _POP_RESCALE_AT:  # keep float32 popularity finite: a common factor
                factor = 2.0 ** -math.ceil(math.log2(top))
                self._pop_unit /= factor
                self.index.scale_popularity(factor)
            if self._calibration is not None:  # the popularity scale moved (O(N))
                self._calibration = self._calibration.with_popularity(self.index.popularity)
        return done

    def set_popularity(self, scores: dict[str, float]) -> int:
        """Replace the popularity prior (values in [0, 1]) of the given items; returns hits."""
        hits = self.index.set_popularity(scores)
        if self._calibration is not None:  # the popularity scale moved (O(N), no vector work)
            self._calibration = self._calibration.with_popularity(self.index.popularity)
        return hits

    def _calibrate(self) -> Calibration | None:
        """Catalog statistics for ``normalize="zscore"`` fusion (None: raw scores)."""
        if self.settings.fusion.normalize != "zscore" or len(self.index) == 0:
            return None
        return Calibration.of(self.index.vectors, self.index.popularity)

    def pin_threads(self) -> None:
        """Give the calling thread this recommender's FAISS thread count.

        ``omp_set_num_threads`` is per calling thread: a bundle loaded in an
        executor thread does not set it for the event-loop thread that searches.
        Left at the OpenMP default (all cores), a search of a 200-item index took
        ~7 ms here under CPU contention instead of microseconds.
        """
        import faiss

        faiss.omp_set_num_threads(self.settings.faiss_threads)
        limit_blas_threads(self.settings.blas_threads)  # process-wide: any thread may call

    def warm_up(self, batch_sizes: Sequence[int] = (1, 32)) -> float:
        """Throwaway batches of each shape the first real requests could have: every
        history length bucket of the sequence encoder, short and long texts, at each of
        ``batch_sizes``. The first call of an ONNX session at a new shape allocates
        (tens of ms here); FAISS, numpy and the first code paths pay their own first
        time. Nothing is kept: the query cache is emptied after."""
        t0 = time.perf_counter()
        n = len(self.index)
        ids = [iid for r in range(min(n, 4096)) if (iid := self.index.item_id(r)) is not None]
        if not ids:
            return 0.0
        enc = self.sequence_encoder
        lengths = sorted({enc.bucket(n) for n in range(1, enc.max_length + 1)})
        texts = ["warm up", "warming up the text encoder with a longer query " * 4]
        for b in batch_sizes:
            for length in lengths:
                hist = [ids[(i * 7919) % len(ids)] for i in range(length)]
                self.recommend_batch([Request(f"warm-{i}", history=hist) for i in range(b)])
            for text in texts:
                reqs = [Request(f"warm-{i}", query=f"{text} {i}") for i in range(b)]
                self.recommend_batch(reqs)
            both = [Request(f"warm-{i}", history=ids[:5], query=f"warm {i}") for i in range(b)]
            self.recommend_batch(both)
        if self._query_cache is not None:
            self._query_cache.clear()
        return time.perf_counter() - t0

    def maintain(self) -> bool:
        """Compact a tombstoned HNSW index when it asks for it.

        Meant for a thread other than the one serving (a rebuild of a large HNSW
        index takes seconds): batches keep being served from the old index while
        the new one builds, and the swap waits for the batch in progress.
        """
        if not self.index.needs_rebuild:
            return False
        self.pin_threads()  # the build's OpenMP threads, in this thread
        self.index.rebuild(swap_lock=self._rows)
        return True

    def recommend(self, request: Request) -> Result:
        return self.recommend_batch([request])[0]

    def recommend_batch(self, requests: Sequence[Request]) -> list[Result]:
        with self._rows:  # rows stay numbered as they are until the batch is done
            return self._recommend_batch(requests)

    def _recommend_batch(self, requests: Sequence[Request]) -> list[Result]:
        if self._closed:
            raise InferenceError("recommender is closed (a newer bundle replaced it)")
        if not requests:
            return []
        t = {"encode_text": 0.0, "encode_sequence": 0.0, "search": 0.0, "fuse": 0.0}
        idx, s = self.index, self.settings
        c = s.candidates
        b = len(requests)
        batch = _Rows.of(requests, idx)

        t0 = time.perf_counter()
        qvecs = self._query_vectors(requests)
        t1 = time.perf_counter()
        with_hist = [i for i, rows in enumerate(batch.history) if len(rows)]
        user = np.zeros((b, self.dim), dtype=np.float32)  # (B, D)
        if with_hist:
            user[with_hist] = self.sequence_encoder.encode(
                [batch.history[i] for i in with_hist], idx.sequence_inputs
            )
        query = np.zeros((b, self.dim), dtype=np.float32)  # (B, D)
        for i, v in qvecs.items():
            query[i] = v
        t2 = time.perf_counter()
        t["encode_text"], t["encode_sequence"] = t1 - t0, t2 - t1

        seq_rows = self._search(user, with_hist, c.sequence, requests, batch)  # (B, Ws)
        # an item without usable text is never a query candidate (inference.text_evidence)
        q_rows = self._search(query, list(qvecs), c.query, requests, batch, text_only=True)
        pop_rows = batch.first(idx.popular(c.popular + int(batch.n_excluded.max())), c.popular)
        t3 = time.perf_counter()
        t["search"] = t3 - t2

        has_query = np.zeros(b, dtype=bool)
        has_query[list(qvecs)] = True
        ws = [
            fusion_weights(len(h), bool(q), req.query_age_s, s.fusion)
            for h, q, req in zip(batch.history, has_query, requests, strict=True)
        ]
        weights = np.array(
            [(w.sequence, w.query, w.popularity) for w in ws], dtype=np.float32
        )  # (B, 3)
        parts = (seq_rows, q_rows, pop_rows)
        fused = fuse_batch(
            rows=np.concatenate(parts, axis=1),
            bits=np.concatenate(
                [np.full(p.shape, 1 << bit, dtype=np.int8) for bit, p in enumerate(parts)], axis=1
            ),
            vectors=idx.vectors,  # may have grown by an upsert since the search
            popularity=idx.popularity,
            weights=weights,
            user_vectors=user,
            has_user=np.array([len(h) > 0 for h in batch.history]),
            query_vectors=query,
            has_query=has_query,
            history_rows=batch.padded_history(),
            k=np.array([max(min(req.k, len(idx)), 0) for req in requests], dtype=np.int64),
            calibration=self._calibration,
            text_evidence=idx.has_text,
        )
        results = self._results(requests, fused, batch, qvecs, user)
        t["fuse"] = time.perf_counter() - t3
        for res in results:
            res.timings.update(t)
        return results

    def _results(
        self,
        requests: Sequence[Request],
        fused: BatchFused,
        batch: _Rows,
        qvecs: dict[int, np.ndarray],
        user: np.ndarray,
    ) -> list[Result]:
        """One :class:`Result` per request from the batch's fused arrays."""
        item_id = self.index.item_id
        rows, scores, bits = fused.rows.tolist(), fused.scores.tolist(), fused.bits.tolist()
        nearest, query_wins = fused.nearest.tolist(), fused.query_wins.tolist()
        results = []
        for i, req in enumerate(requests):
            text = _clean(req.query)
            ids = batch.history_ids[i]
            items = []
            for j in range(int(fused.counts[i])):
                iid = item_id(rows[i][j])
                if iid is None:  # deleted while we ran
                    continue
                found = _SOURCES[bits[i][j]]
                because: str | None = None
                if found != ("popular",):  # a popular-only pick has no personal reason
                    if text and "query" in found and query_wins[i][j]:
                        because = text
                    elif nearest[i][j] >= 0:
                        because = ids[nearest[i][j]]
                    elif text and "query" in found:
                        because = text
                items.append(ScoredItem(iid, scores[i][j], found, because))
            results.append(
                Result(
                    req.user_id,
                    items,
                    self.model_version,
                    qvecs.get(i),
                    {},
                    user_vector=user[i] if len(batch.history[i]) else None,
                )
            )
        return results

    # -- helpers ----------------------------------------------------------------------
    def _query_vectors(self, requests: Sequence[Request]) -> dict[int, np.ndarray]:
        """Cached vectors where valid; the rest encoded in one call (duplicates once)."""
        out: dict[int, np.ndarray] = {}
        todo: dict[str, list[int]] = defaultdict(list)
        for i, req in enumerate(requests):
            v = req.query_vector
            if v is not None:
                v = np.asarray(v, dtype=np.float32).reshape(-1)
                if v.shape == (self.dim,) and np.all(np.isfinite(v)):
                    out[i] = v
                    continue
                log.warning("ignoring query_vector of shape %s for user %s", v.shape, req.user_id)
            text = _clean(req.query)
            if text:
                todo[text].append(i)
        cache = self._query_cache
        if cache is not None:
            for text in [t for t in todo if t in cache]:
                cache.move_to_end(text)
                for i in todo.pop(text):
                    out[i] = cache[text]
        if todo:
            texts = list(todo)
            for text, vec in zip(texts, self.text_encoder.encode(texts), strict=True):
                for i in todo[text]:
                    out[i] = vec
                if cache is not None:
                    cache[text] = vec
            while cache is not None and len(cache) > self.settings.query_cache_size:
                cache.popitem(last=False)
        return out

    def _search(
        self,
        vecs: np.ndarray,
        members: list[int],
        pool: int,
        requests: Sequence[Request],
        batch: _Rows,
        *,
        text_only: bool = False,
    ) -> np.ndarray:
        """Per member request, the first ``max(pool, k)`` non-excluded rows of its search:
        (B, W) int64, ``-1`` padded (rows of non-members are all padding). With
        ``text_only``, rows whose text is no evidence for a text match are left out like
        excluded ones (``ItemIndex.has_text``).

        A request's search depth is ``max(pool, its k) + extra``, ``extra`` being its
        excluded-item count rounded up to a multiple of 8 and capped at
        ``exclusion_margin``; a request whose excluded items ate more than that is
        searched again alone with room for all of them. The batch shares one FAISS
        call at the deepest depth, whose first hits are each shallower search's:
        exact for a flat index, and for HNSW because every regular search explores
        with the same efSearch (``ItemIndex.search_depth``, at least the deepest
        regular depth). A request deeper than that (k above the pool) is searched
        with its own depth, as before. Either way a request's candidates never
        depend on the other requests in its batch.
        """
        b = len(requests)
        if not members or (text_only and not self.index.has_text.any()):
            # no item's text is evidence for a text match: the source proposes nothing
            # (searching would retry every request over the whole catalog for nothing)
            return np.full((b, 0), -1, dtype=np.int64)
        margin = self.settings.candidates.exclusion_margin
        mem = np.asarray(members, dtype=np.int64)
        want = np.array([self._want(pool, requests[i]) for i in members], dtype=np.int64)
        extra = np.minimum(margin, -(-batch.n_excluded[mem] // 8) * 8)
        depth = want + extra
        out = np.full((b, int(want.max())), -1, dtype=np.int64)
        shared = self.index.search_depth
        groups = (
            [np.arange(len(mem))]
            if shared is None
            else [np.flatnonzero(depth <= shared)]
            + [np.flatnonzero(depth == d) for d in np.unique(depth[depth > shared])]
        )
        retry: list[int] = []
        for g in groups:
            if len(g) == 0:
                continue
            _, rows = self.index.search(vecs[mem[g]], int(depth[g].max()))  # (m, k)
            d = np.minimum(depth[g], rows.shape[1])  # each member's own depth
            inside = (rows >= 0) & (np.arange(rows.shape[1])[None, :] < d[:, None])
            keep = inside & ~batch.excluded(mem[g], rows)
            if text_only:  # flags read after the search: they cover every row it returned
                keep &= self.index.has_text[np.where(rows >= 0, rows, 0)]
            rank = np.cumsum(keep, axis=1)
            take = keep & (rank <= want[g, None])
            r, j = np.nonzero(take)
            out[mem[g][r], rank[r, j] - 1] = rows[r, j]
            last = rows[np.arange(len(g)), d - 1]
            short = (take.sum(1) < want[g]) & (last >= 0)  # catalog not exhausted
            retry += mem[g][short].tolist()
        # a retry makes room for the rows the source may not propose too (few: items
        # without usable text)
        barred = int((~self.index.has_text).sum()) if text_only and retry else 0
        for i in retry:
            n = self._want(pool, requests[i])
            _, rows = self.index.search(vecs[i][None], n + int(batch.n_excluded[i]) + barred)
            ok = (rows[0] >= 0) & ~batch.excluded(np.array([i]), rows)[0]
            if text_only:
                ok &= self.index.has_text[np.where(rows[0] >= 0, rows[0], 0)]
            kept = rows[0][ok][:n]
            out[i] = -1
            out[i, : len(kept)] = kept
        return out

    def _want(self, pool: int, req: Request) -> int:
        """Candidates wanted from one source: the pool, or k if larger (capped by the catalog)."""
        return max(1, min(max(pool, req.k), len(self.index)))

    def close(self) -> None:
        """Release the ONNX sessions (the worker calls it once a newer model serves)."""
        self._closed = True
        self.text_encoder.close()
        self.sequence_encoder.close()

    def __repr__(self) -> str:
        return f"OnnxRecommender(version={self.model_version!r}, items={self.n_items})"


_POP_RESCALE_AT = 1e30  # float32 holds up to ~3e38


def _popularity_scale(manifest: Manifest) -> PopularityScale | None:
    from inference.online import PopularityScale

    entry = manifest.popularity
    if entry is None or entry.clicks_at_max <= 0:
        return None
    return PopularityScale(entry.clicks_at_max, entry.as_of)


class _Rows:
    """A batch's item ids as catalog rows: each request's history (oldest first) and
    excluded rows (its history and ``exclude``), unknown ids skipped."""

    def __init__(
        self, history: list[np.ndarray], history_ids: list[list[str]], excluded: list[np.ndarray]
    ) -> None:
        self.history = history
        self.history_ids = history_ids
        self.n_excluded = np.array([len(e) for e in excluded], dtype=np.int64)  # (B,)
        # (request, row) pairs as one sorted int64 key each: the whole batch's exclusion
        # test is one np.isin, not one per request
        self._keys = np.sort(
            np.concatenate([(i << 32) | e for i, e in enumerate(excluded)])
            if excluded
            else np.zeros(0, dtype=np.int64)
        )

    @classmethod
    def of(cls, requests: Sequence[Request], index: ItemIndex) -> _Rows:
        history, history_ids, excluded = [], [], []
        for req in requests:
            ids = [iid for iid in req.history]
            rows = index.rows_of(ids)
            pairs = [(r, iid) for r, iid in zip(rows, ids, strict=True) if r is not None]
            h = np.array([r for r, _ in pairs], dtype=np.int64)
            history.append(h)
            history_ids.append([iid for _, iid in pairs])
            ex = {r for r in index.rows_of(req.exclude) if r is not None}
            ex.update(h.tolist())
            excluded.append(np.fromiter(ex, dtype=np.int64, count=len(ex)))
        return cls(history, history_ids, excluded)

    def excluded(self, requests: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """(m, k) bool: ``rows[j]`` holds rows excluded for request ``requests[j]``."""
        if len(self._keys) == 0:
            return np.zeros(rows.shape, dtype=bool)
        keys = (requests[:, None] << 32) | np.maximum(rows, 0)
        pos = np.minimum(np.searchsorted(self._keys, keys), len(self._keys) - 1)
        return (self._keys[pos] == keys) & (rows >= 0)

    def first(self, rows: np.ndarray, n: int) -> np.ndarray:
        """(B, n): per request the first ``n`` of ``rows`` (K,) it does not exclude."""
        b = len(self.history)
        out = np.full((b, n), -1, dtype=np.int64)
        if n == 0 or len(rows) == 0:
            return out
        every = np.broadcast_to(rows, (b, len(rows)))
        keep = (every >= 0) & ~self.excluded(np.arange(b), every)
        rank = np.cumsum(keep, axis=1)
        r, j = np.nonzero(keep & (rank <= n))
        out[r, rank[r, j] - 1] = every[r, j]
        return out

    def padded_history(self) -> np.ndarray:
        """(B, H) history rows, ``-1`` padded at the end."""
        h = max((len(x) for x in self.history), default=0)
        out = np.full((len(self.history), h), -1, dtype=np.int64)
        for i, x in enumerate(self.history):
            out[i, : len(x)] = x
        return out


def _clean(text: str | None) -> str | None:
    text = (text or "").strip()
    return text or None


def limit_blas_threads(threads: int) -> None:
    """Cap every loaded BLAS (numpy's, FAISS's) at ``threads`` threads, process-wide."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads, user_api="blas")


def served_ef_search(settings: InferenceSettings, manifest_ef: int | None) -> int:
    """HNSW efSearch: the setting, else the manifest's, raised to the deepest regular
    search (``max(pool) + exclusion_margin``) so that every regular search explores
    alike whatever its k and one FAISS call serves a whole batch. FAISS would explore
    with ``max(efSearch, k)`` anyway; raising the floor only adds recall."""
    c = settings.candidates
    return max(
        settings.ef_search or manifest_ef or 64, max(c.sequence, c.query) + c.exclusion_margin
    )


def load_recommender(path: Path, settings: InferenceSettings | None = None) -> OnnxRecommender:
    """Shorthand for :meth:`OnnxRecommender.load`."""
    return OnnxRecommender.load(path, settings)


def recommender_loader(settings: InferenceSettings) -> Callable[[Path], OnnxRecommender]:
    """A bundle loader serving with ``settings`` (built once, at the worker's edge)."""
    return functools.partial(OnnxRecommender.load, settings=settings)
