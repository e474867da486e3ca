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
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from inference.bundle import Bundle, load_bundle
from inference.bundle.manifest import TOKENIZER, Manifest
from inference.encoders import SequenceEncoder, TextEncoder
from inference.errors import InferenceError
from inference.fusion import Calibration, fuse, fusion_weights
from inference.index import ItemIndex, load_index
from inference.providers import faiss_device, onnx_plan
from inference.settings import InferenceSettings
from inference.types import Request, Result, ScoredItem, Source

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
        if index is None:  # first: the largest file's bytes are dropped before the next read
            index = ItemIndex(
                load_index(bundle.read(m.index.file), m.index.kind, len(bundle.items)),
                [it.item_id for it in bundle.items],
                bundle.vectors,
                bundle.popularity,
                kind=m.index.kind,
                ef_search=s.ef_search or m.index.params.get("efSearch"),
                hnsw_m=int(m.index.params.get("M", 32)),
                ef_construction=int(m.index.params.get("efConstruction", 40)),
                device=faiss_device(s.faiss_device),
                rebuild_ratio=s.hnsw_rebuild_ratio,
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
        if sequence_encoder is None:
            se = m.sequence_encoder
            sequence_encoder = SequenceEncoder(bundle.read(se.file), plan, se.max_length, m.dim)
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
        self._calibration = self._calibrate()
        self._closed = False
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
        vec = self.text_encoder.encode([item_text(title, text)])[0]
        self.index.upsert(item_id, vec)
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
        row = self.index.row(item_id)
        return None if row is None else self.index.vectors[row].copy()

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
            self.index.upsert(item_id, served_vector(base[0], delta), pop)
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

    def maintain(self) -> bool:
        """Compact a tombstoned HNSW index when it asks for it (call off the hot path)."""
        if self.index.needs_rebuild:
            self.index.rebuild()
            return True
        return False

    def recommend(self, request: Request) -> Result:
        return self.recommend_batch([request])[0]

    def recommend_batch(self, requests: Sequence[Request]) -> list[Result]:
        if self._closed:
            raise InferenceError("recommender is closed (a newer bundle replaced it)")
        if not requests:
            return []
        t = {"encode_text": 0.0, "encode_sequence": 0.0, "search": 0.0, "fuse": 0.0}
        idx, s = self.index, self.settings
        vectors = idx.vectors

        # Rows of history / excluded items (unknown ids skipped).
        hist_rows: list[np.ndarray] = []
        hist_ids: list[list[str]] = []
        excluded: list[np.ndarray] = []
        for req in requests:
            pairs = [(r, iid) for iid in req.history if (r := idx.row(iid)) is not None]
            hist_rows.append(np.array([r for r, _ in pairs], dtype=np.int64))
            hist_ids.append([iid for _, iid in pairs])
            ex = {r for iid in req.exclude if (r := idx.row(iid)) is not None}
            excluded.append(np.fromiter(ex.union(r for r, _ in pairs), dtype=np.int64))

        t0 = time.perf_counter()
        qvecs = self._query_vectors(requests)
        t1 = time.perf_counter()
        with_hist = [i for i, rows in enumerate(hist_rows) if len(rows)]
        uvecs_arr = self.sequence_encoder.encode([hist_rows[i] for i in with_hist], vectors)
        uvecs: dict[int, np.ndarray] = dict(zip(with_hist, uvecs_arr, strict=True))
        t2 = time.perf_counter()
        t["encode_text"], t["encode_sequence"] = t1 - t0, t2 - t1

        c = s.candidates
        seq_hits = self._search(uvecs, c.sequence, requests, excluded)
        q_hits = self._search(qvecs, c.query, requests, excluded)
        pops = idx.popular(c.popular + max((len(e) for e in excluded), default=0))
        t3 = time.perf_counter()
        t["search"] = t3 - t2

        vectors, popularity = idx.vectors, idx.popularity  # may have grown by an upsert
        results = []
        for i, req in enumerate(requests):
            has_q = i in qvecs
            w = fusion_weights(len(hist_rows[i]), has_q, req.query_age_s, s.fusion)
            cands: dict[Source, np.ndarray] = {"popular": _first(pops, excluded[i], c.popular)}
            if i in seq_hits:
                cands["sequence"] = seq_hits[i]
            if i in q_hits:
                cands["query"] = q_hits[i]
            fused = fuse(
                candidates=cands,
                vectors=vectors,
                popularity=popularity,
                weights=w,
                user_vector=uvecs.get(i),
                query_vector=qvecs.get(i),
                query_text=_clean(req.query),
                history_rows=hist_rows[i],
                history_ids=hist_ids[i],
                excluded_rows=excluded[i],
                k=max(min(req.k, len(idx)), 0),
                calibration=self._calibration,
            )
            items = [
                ScoredItem(iid, f.score, f.sources, f.because)
                for f in fused
                if (iid := idx.item_id(f.row)) is not None  # deleted while we ran
            ]
            results.append(
                Result(
                    req.user_id,
                    items,
                    self.model_version,
                    qvecs.get(i),
                    {},
                    user_vector=uvecs.get(i),
                )
            )
        t["fuse"] = time.perf_counter() - t3
        for res in results:
            res.timings.update(t)
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
        if todo:
            texts = list(todo)
            for text, vec in zip(texts, self.text_encoder.encode(texts), strict=True):
                for i in todo[text]:
                    out[i] = vec
        return out

    def _search(
        self,
        vecs: dict[int, np.ndarray],
        pool: int,
        requests: Sequence[Request],
        excluded: list[np.ndarray],
    ) -> dict[int, np.ndarray]:
        """Per request, the first ``max(pool, k)`` non-excluded rows of its search.

        Every request is searched with ``k = max(pool, its k) + extra``, where
        ``extra`` is its excluded-item count rounded up to a multiple of 8 and
        capped at ``exclusion_margin`` (equal ``k`` share one FAISS call; HNSW
        work grows with ``k``, so a short history does not pay for a long one's
        margin). A request whose excluded items ate more than that is searched
        again alone with room for all of them. Both depend on the request only,
        so batching never changes its result.
        """
        margin = self.settings.candidates.exclusion_margin
        groups: dict[int, list[int]] = defaultdict(list)
        for i in vecs:
            extra = min(margin, -(-len(excluded[i]) // 8) * 8)
            groups[self._want(pool, requests[i]) + extra].append(i)
        out: dict[int, np.ndarray] = {}
        retry: list[int] = []
        for k, members in groups.items():
            batch = (
                vecs[members[0]][None]
                if len(members) == 1
                else np.stack([vecs[i] for i in members])
            )
            _, rows = self.index.search(batch, k)
            for j, i in enumerate(members):
                want = self._want(pool, requests[i])
                out[i] = _first(rows[j], excluded[i], want)
                if len(out[i]) < want and rows[j, -1] >= 0:  # short, catalog not exhausted
                    retry.append(i)
        for i in retry:
            want = self._want(pool, requests[i])
            _, rows = self.index.search(vecs[i][None], want + len(excluded[i]))
            out[i] = _first(rows[0], excluded[i], want)
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


def _first(rows: np.ndarray, excluded: np.ndarray, n: int) -> np.ndarray:
    """The first ``n`` rows that are valid (>= 0) and not excluded."""
    keep = rows >= 0
    if len(excluded):
        keep &= ~_member(rows, excluded)
    return rows[keep][:n]


def _member(rows: np.ndarray, excluded: np.ndarray) -> np.ndarray:
    """``np.isin`` without its set-up cost for the usual small arrays."""
    if len(rows) * len(excluded) <= 65_536:
        return (rows[:, None] == excluded[None, :]).any(axis=1)
    return np.isin(rows, excluded)


def _clean(text: str | None) -> str | None:
    text = (text or "").strip()
    return text or None


def load_recommender(path: Path, settings: InferenceSettings | None = None) -> OnnxRecommender:
    """Shorthand for :meth:`OnnxRecommender.load`."""
    return OnnxRecommender.load(path, settings)


def recommender_loader(settings: InferenceSettings) -> Callable[[Path], OnnxRecommender]:
    """A bundle loader serving with ``settings`` (built once, at the worker's edge)."""
    return functools.partial(OnnxRecommender.load, settings=settings)
