"""The live item catalog: item id ↔ row, vectors, popularity, and a FAISS index.

Deletion strategy depends on the index kind (docs/bundle.md ``index.kind``):

* ``flat`` (exact ``IndexIDMap2(IndexFlatIP)``) on CPU: ``remove_ids`` / ``add_with_ids``;
  an upserted existing item keeps its row. ``remove_ids`` compacts the flat
  array, O(N·D) per delete.
* ``ivf`` (``IndexIVFScalarQuantizer``, 8-bit codes, inverted lists over ``nlist``
  centroids, ``nprobe`` lists scanned per query): handled like ``flat``
  (``remove_ids`` scans the lists, O(N) per delete). Its hits are ranked by the
  8-bit codes' scores; fusion scores every candidate with the exact vectors.
* ``hnsw`` (``IndexHNSWFlat``, graph nodes cannot be removed): a deleted or
  replaced row becomes a tombstone, filtered *inside* the search with an
  ``IDSelectorNot`` so every search still returns ``k`` live hits. When
  tombstones exceed ``rebuild_ratio`` of the rows, :attr:`needs_rebuild` turns
  true and :meth:`rebuild` compacts (build aside from a snapshot, replay the
  mutations made meanwhile, swap).
* A GPU flat index (faiss GPU build with a GPU) is also tombstoned; there the
  filter is an over-fetch by the tombstone count (GPU search takes no selector).
  Untested here: no GPU on the development machines.

:meth:`ItemIndex.set_vector` replaces a live item's vector where FAISS stores it
(the flat codes, or the HNSW storage row; HNSW links stay those of the old vector),
O(D) plus, for flat, an O(N) id-map scan once after each structural change: what
online learning (``inference.online``) uses, up to once per click, where an upsert
would cost O(N·D) (flat) or a tombstone (HNSW). Other kinds fall back to upsert.

Upserts append to FAISS's own arrays (flat codes, HNSW graph), which grow like
``std::vector``: the first append after a bulk load copies the whole index (~100 ms
at 100k × 384). :func:`reserve_index` grows that capacity ahead, in chunks of at most
``_RESERVE_MAX_ROWS`` rows, when the catalog is loaded and whenever it fills, so the
copy happens at load time and then once per chunk of upserts, not on the first one.

Thread-safety: one lock serialises searches and mutations (the stream calls
from its event-loop thread and rebuilds in another; benches and tests may use
threads). Rows are never reused for another item id, and a row's id only ever
changes to ``None``, so rows returned by a search stay meaningful after the lock
is released, until a rebuild renumbers them (see :meth:`ItemIndex.rebuild`'s
``swap_lock``). A
deleted item is never returned by a search that starts after :meth:`delete`
returns.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from inference.errors import BundleManifestError

log = logging.getLogger(__name__)

_GPU_MAX_K = 2048  # faiss GPU k limit
# Upsert headroom reserved in FAISS's arrays: 25 % of the catalog, at most this many rows
# (the reserved part is resident memory: std::vector zero-fills what it grows into).
_RESERVE_MAX_ROWS = 50_000


@dataclass
class _Journal:
    # (op, item id, vector, popularity or scale factor, has text, sequence input or None)
    ops: list[tuple[str, str, np.ndarray | None, float, bool, np.ndarray | None]]


class _State:
    """Index + row arrays; mutated only under :class:`ItemIndex`'s lock."""

    def __init__(
        self,
        index: Any,
        ids: list[str | None],
        vectors: np.ndarray,
        popularity: np.ndarray,
        tombstone: bool,
        has_text: np.ndarray | None = None,
        inputs: np.ndarray | None = None,
    ) -> None:
        n, dim = vectors.shape
        self.index = index
        self.is_hnsw = _is_hnsw(index)
        self.is_ivf = _is_ivf(index)
        self.tombstone = tombstone
        self.ids = list(ids)
        self.rows = {iid: r for r, iid in enumerate(ids) if iid is not None}
        self.n = n
        cap = max(16, int(n * 1.25) + 16)
        self.vec = np.zeros((cap, dim), dtype=np.float32)
        self.vec[:n] = vectors
        self.pop = np.zeros(cap, dtype=np.float32)
        self.pop[:n] = popularity
        self.live = np.zeros(cap, dtype=bool)
        self.live[:n] = [iid is not None for iid in ids]
        # False: the item's text is no evidence for a text match (inference.text_evidence)
        self.text = np.ones(cap, dtype=bool)
        if has_text is not None:
            self.text[:n] = has_text
        # the sequence encoder's per-item inputs, row-aligned with ``vec`` (split encoders)
        self.inp: np.ndarray | None = None
        if inputs is not None:
            self.inp = np.zeros((cap, inputs.shape[1]), dtype=np.float32)
            self.inp[:n] = inputs
        self.dead: set[int] = {r for r, iid in enumerate(ids) if iid is None}
        self.selector: Any = None  # (IDSelectorBatch, IDSelectorNot) kept alive together
        # efSearch → SearchParametersHNSW (uses `selector`), or nprobe → SearchParametersIVF
        self.params: dict[int, Any] = {}
        # rows by popularity; sorted here, not lazily, so no request pays for it (90 ms at 1M)
        self.pop_order: np.ndarray | None = np.argsort(-self.pop[:n], kind="stable")
        self.killed = len(self.dead)  # rows ever deleted/replaced (bounds the popular scan)
        self.reserved = reserve_index(index, _with_headroom(n))
        self.positions: np.ndarray | None = None  # flat: row -> position in FAISS's arrays

    def _grow(self) -> None:
        cap = self.vec.shape[0] * 2
        for name in ("vec", "pop", "live", "text", "inp"):
            old = getattr(self, name)
            if old is None:
                continue
            new = np.zeros((cap, *old.shape[1:]), dtype=old.dtype)
            new[: self.n] = old[: self.n]
            setattr(self, name, new)  # readers holding the old array keep valid data

    def _append(
        self,
        item_id: str,
        vector: np.ndarray,
        popularity: float,
        has_text: bool,
        inp: np.ndarray | None,
    ) -> int:
        if self.n == self.vec.shape[0]:
            self._grow()
        if self.n >= self.reserved:
            self.reserved = reserve_index(self.index, _with_headroom(self.n))
        row = self.n
        self.vec[row], self.pop[row], self.live[row] = vector, popularity, True
        self.text[row] = has_text
        if self.inp is not None:
            self.inp[row] = inp
        self.ids.append(item_id)
        self.rows[item_id] = row
        self.n += 1
        return row

    def upsert(
        self,
        item_id: str,
        vector: np.ndarray,
        popularity: float | None,
        has_text: bool | None = None,
        inp: np.ndarray | None = None,
    ) -> int:
        if (self.inp is None) != (inp is None):
            raise RuntimeError("an item's sequence input must come with its vector")  # a bug
        row = self.rows.get(item_id)
        if popularity is None:  # keep a replaced item's prior; a new item starts at 0
            popularity = float(self.pop[row]) if row is not None else 0.0
        if has_text is None:  # keep a replaced item's text flag; a new item has text
            has_text = bool(self.text[row]) if row is not None else True
        vec = vector.reshape(1, -1)
        self.positions = None  # FAISS's arrays move (remove_ids compacts, add appends)
        if row is not None and not self.tombstone:
            self.index.remove_ids(np.array([row], dtype=np.int64))
            self.index.add_with_ids(vec, np.array([row], dtype=np.int64))
            self.vec[row], self.pop[row], self.text[row] = vector, popularity, has_text
            if self.inp is not None:
                self.inp[row] = inp
        else:
            if row is not None:
                self._kill(row)
            new = self._append(item_id, vector, popularity, has_text, inp)
            if self.is_hnsw:
                self.index.add(vec)  # HNSW labels are insertion order = row
                if self.index.ntotal != self.n:
                    raise RuntimeError("HNSW labels drifted from catalog rows")  # a bug, not input
            else:
                self.index.add_with_ids(vec, np.array([new], dtype=np.int64))
            row = new
        if popularity > 0:
            self.pop_order = None
        return row

    def _kill(self, row: int) -> None:
        iid = self.ids[row]
        self.ids[row] = None
        self.live[row] = False
        self.killed += 1
        if iid is not None and self.rows.get(iid) == row:
            del self.rows[iid]
        if self.tombstone:
            self.dead.add(row)
            self.selector = None
            self.params.clear()
        else:
            self.index.remove_ids(np.array([row], dtype=np.int64))
            self.positions = None

    def set_vector(
        self, row: int, vector: np.ndarray, popularity: float | None, inp: np.ndarray | None
    ) -> bool:
        """Overwrite live ``row``'s vector (and its sequence input) where FAISS keeps it;
        False: not possible here (another index kind or device), nothing changed."""
        if (self.inp is None) != (inp is None):
            raise RuntimeError("an item's sequence input must come with its vector")  # a bug
        stored = self._stored_vectors()
        if stored is None:
            return False
        pos = row if self.is_hnsw else self._position(row)
        if pos < 0:
            return False
        stored[pos] = vector
        self.vec[row] = vector
        if self.inp is not None:
            self.inp[row] = inp
        if popularity is not None:
            self.pop[row] = popularity
            self.pop_order = None
        return True

    def _stored_vectors(self) -> np.ndarray | None:
        """(ntotal, D) writable view of the raw vectors FAISS searches, or None."""
        import faiss

        if self.is_hnsw:  # labels are rows: storage position = row
            storage = faiss.downcast_index(self.index.storage)
        elif isinstance(self.index, faiss.IndexIDMap2):
            storage = faiss.downcast_index(self.index.index)
        else:
            return None  # e.g. a GPU index
        if not isinstance(storage, faiss.IndexFlat):
            return None
        if storage.metric_type != faiss.METRIC_INNER_PRODUCT:
            return None  # the stored vectors are not the raw ones
        d, n = storage.d, storage.ntotal
        return faiss.rev_swig_ptr(storage.get_xb(), n * d).reshape(n, d)

    def _position(self, row: int) -> int:
        import faiss

        if self.positions is None:
            ids = faiss.vector_to_array(self.index.id_map)
            self.positions = np.full(self.n, -1, dtype=np.int64)
            self.positions[ids] = np.arange(len(ids), dtype=np.int64)
        return int(self.positions[row]) if row < len(self.positions) else -1

    def delete(self, item_id: str) -> bool:
        row = self.rows.get(item_id)
        if row is None:
            return False
        self._kill(row)
        return True

    def search_params(self, ef_search: int | None, n_probe: int | None = None) -> Any:
        """HNSW search parameters with the tombstone filter (cached until the next delete),
        IVF ones with ``n_probe``, None for an exact index."""
        import faiss

        if self.is_ivf:
            nprobe = n_probe or self.index.nprobe
            if nprobe not in self.params:
                ivf = faiss.SearchParametersIVF()
                ivf.nprobe = nprobe
                self.params[nprobe] = ivf
            return self.params[nprobe]
        if not self.is_hnsw:
            return None
        ef = ef_search or self.index.hnsw.efSearch
        params = self.params.get(ef)
        if params is not None:
            return params
        if self.dead and self.selector is None:
            batch = faiss.IDSelectorBatch(np.fromiter(self.dead, dtype=np.int64))
            self.selector = (batch, faiss.IDSelectorNot(batch))
        params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]  # missing in stubs
        params.efSearch = ef
        if self.dead:
            params.sel = self.selector[1]
        self.params[ef] = params
        return params


def _is_hnsw(index: Any) -> bool:
    import faiss

    return isinstance(index, faiss.IndexHNSW)


def _is_ivf(index: Any) -> bool:
    import faiss

    return isinstance(index, faiss.IndexIVF)


class ItemIndex:
    """Thread-safe catalog + FAISS index; see the module docstring for the rules."""

    def __init__(
        self,
        index: Any,
        item_ids: list[str],
        vectors: np.ndarray,
        popularity: np.ndarray,
        *,
        kind: Literal["flat", "hnsw", "ivf"],
        ef_search: int | None = None,
        n_probe: int | None = None,
        hnsw_m: int = 32,
        ef_construction: int = 40,
        device: Literal["cpu", "gpu"] = "cpu",
        rebuild_ratio: float = 0.2,
        has_text: np.ndarray | None = None,
        project: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        """``has_text`` (N,) bool: which items' text is evidence for a text match
        (:mod:`inference.text_evidence`); None: every item's."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if index.ntotal != len(item_ids) or vectors.shape[0] != len(item_ids):
            raise BundleManifestError(
                f"index.faiss holds {index.ntotal} vectors but the catalog has {len(item_ids)} "
                "items: the bundle is inconsistent; rebuild it"
            )
        self.kind = kind
        self.dim = vectors.shape[1]
        self.ef_search = ef_search
        self.n_probe = n_probe  # IVF lists scanned per query (None: the index's own)
        self.hnsw_m = hnsw_m
        self.ef_construction = ef_construction
        self.device = device
        self.rebuild_ratio = rebuild_ratio
        self._on_gpu = device == "gpu" and kind == "flat"  # faiss has no GPU HNSW: stays on CPU
        if self._on_gpu:
            index = _to_gpu(index)
        tombstone = kind == "hnsw" or self._on_gpu
        self._lock = threading.Lock()
        if has_text is not None and np.shape(has_text) != (len(item_ids),):
            raise BundleManifestError(
                f"{np.shape(has_text)} text flags for a catalog of {len(item_ids)} items"
            )
        # A split sequence encoder's per-item input follows the item's vector: computed
        # for the whole catalog here and again whenever an upsert sets a vector.
        self._project = project
        inputs = None if project is None else project(vectors)
        self._state = _State(
            index, list(item_ids), vectors, popularity, tombstone, has_text, inputs
        )
        self._journal: _Journal | None = None

    # -- reads -------------------------------------------------------------------------
    def __len__(self) -> int:
        """Live (searchable) items."""
        return len(self._state.rows)

    @property
    def vectors(self) -> np.ndarray:
        """(rows, D) vectors by row (deleted rows included; check :meth:`item_id`)."""
        st = self._state
        return st.vec[: st.n]

    @property
    def has_sequence_inputs(self) -> bool:
        """True when rows carry a split sequence encoder's item inputs (``project``)."""
        return self._state.inp is not None

    @property
    def sequence_inputs(self) -> np.ndarray:
        """(rows, W) what a sequence encoder reads per history item: the split encoder's
        precomputed item inputs when the index has a ``project``, else the vectors."""
        st = self._state
        return st.vec[: st.n] if st.inp is None else st.inp[: st.n]

    @property
    def popularity(self) -> np.ndarray:
        st = self._state
        return st.pop[: st.n]

    @property
    def has_text(self) -> np.ndarray:
        """(rows,) bool by row: False where the item's text is no evidence for a text match
        (the query source must not propose it; fusion gives it no query term)."""
        st = self._state
        return st.text[: st.n]

    def row(self, item_id: str) -> int | None:
        return self._state.rows.get(item_id)

    def rows_of(self, item_ids: Iterable[str]) -> list[int | None]:
        """:meth:`row` of each id, in order (one dict lookup each, no Python call)."""
        return list(map(self._state.rows.get, item_ids))

    @property
    def search_depth(self) -> int | None:
        """The k up to which every search explores the same way, so a shallower search's
        hits are the first hits of a deeper one: HNSW's efSearch (FAISS explores
        ``max(efSearch, k)``); None for an exact index, where that holds for every k."""
        st = self._state
        if not st.is_hnsw:
            return None
        return int(self.ef_search or st.index.hnsw.efSearch)

    def item_id(self, row: int) -> str | None:
        """The item at ``row``, or None when it was deleted or replaced."""
        ids = self._state.ids
        return ids[row] if 0 <= row < len(ids) else None

    @property
    def needs_rebuild(self) -> bool:
        st = self._state
        return st.tombstone and len(st.dead) > self.rebuild_ratio * max(st.n, 1)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` live rows per query: (scores (B,k) float32, rows (B,k) int64, -1 = none)."""
        q = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        with self._lock:
            st = self._state
            k = max(1, min(k, st.n))  # never more hits than rows (a huge k is bad input)
            if self._on_gpu and st.dead:
                fetch = min(k + len(st.dead), _GPU_MAX_K, st.n)
                scores, rows = st.index.search(q, max(fetch, 1))
            else:
                params = st.search_params(self.ef_search, self.n_probe)
                scores, rows = st.index.search(q, k, params=params)
            live = st.live
        rows = np.asarray(rows, dtype=np.int64)
        ok = rows >= 0
        ok[ok] = live[rows[ok]]
        return _compact(scores, rows, ok, k)

    def popular(self, n: int) -> np.ndarray:
        """The ``n`` most popular live rows, most popular first (ties: lower row first)."""
        if n <= 0:
            return np.zeros(0, dtype=np.int64)
        with self._lock:
            st = self._state
            if st.pop_order is None:
                st.pop_order = np.argsort(-st.pop[: st.n], kind="stable")
            # Only a prefix can hold the answer: at most `killed` rows in it are dead.
            head = st.pop_order[: n + st.killed]
            return head[st.live[head]][:n].astype(np.int64)

    # -- writes ------------------------------------------------------------------------
    def upsert(
        self,
        item_id: str,
        vector: np.ndarray,
        popularity: float | None = None,
        *,
        has_text: bool | None = None,
    ) -> int:
        """Add or replace ``item_id``; searchable when this returns. Returns its row.

        ``popularity`` None keeps a replaced item's prior (a new item gets 0);
        ``has_text`` None keeps a replaced item's text flag (a new item has text).
        """
        vec = np.ascontiguousarray(vector, dtype=np.float32).reshape(self.dim)
        inp = None if self._project is None else self._project(vec[None])[0]
        with self._lock:
            st = self._state
            row = st.upsert(item_id, vec, popularity, has_text, inp)
            if self._journal is not None:
                op = ("upsert", item_id, vec, float(st.pop[row]), bool(st.text[row]), inp)
                self._journal.ops.append(op)
        return row

    def set_vector(self, item_id: str, vector: np.ndarray, popularity: float | None = None) -> bool:
        """Serve live ``item_id`` with ``vector`` (and ``popularity``, None: unchanged),
        in place: O(D) where the index kind allows (module docstring), else an upsert.
        Searchable when this returns. False if the item is not live."""
        vec = np.ascontiguousarray(vector, dtype=np.float32).reshape(self.dim)
        inp = None if self._project is None else self._project(vec[None])[0]
        with self._lock:
            st = self._state
            row = st.rows.get(item_id)
            if row is None:
                return False
            if not st.set_vector(row, vec, popularity, inp):
                row = st.upsert(item_id, vec, popularity, None, inp)  # keeps its text flag
            if self._journal is not None:  # a rebuild in progress replays it as an upsert
                op = ("upsert", item_id, vec, float(st.pop[row]), bool(st.text[row]), inp)
                self._journal.ops.append(op)
        return True

    def delete(self, item_id: str) -> bool:
        """Remove ``item_id`` (never returned by later searches). False if unknown."""
        with self._lock:
            found = self._state.delete(item_id)
            if found and self._journal is not None:
                self._journal.ops.append(("delete", item_id, None, 0.0, True, None))
        return found

    def set_popularity(self, scores: dict[str, float]) -> int:
        """Replace the popularity prior of the given items (e.g. the stream's trending counts)."""
        with self._lock:
            st = self._state
            hit = 0
            for iid, value in scores.items():
                row = st.rows.get(iid)
                if row is not None:
                    st.pop[row] = value
                    hit += 1
            st.pop_order = None
        return hit

    def scale_popularity(self, factor: float) -> None:
        """Multiply every item's popularity by ``factor`` > 0 (order unchanged)."""
        if not factor > 0:
            raise ValueError(f"factor must be > 0, got {factor}")
        with self._lock:
            st = self._state
            st.pop[: st.n] *= np.float32(factor)
            if self._journal is not None:
                self._journal.ops.append(("scale", "", None, float(factor), True, None))

    def rebuild(self, swap_lock: AbstractContextManager[Any] | None = None) -> None:
        """Compact a tombstoned index: build aside from a snapshot, replay mutations, swap.

        Searches and mutations continue while the new index builds (call it from
        another thread: the build is the long part); only the snapshot and the
        final swap take the lock. Rows are renumbered at the swap, so a caller that
        holds rows across several calls (a batch: search, then vectors and ids by
        row) passes ``swap_lock``, which it holds for as long as it uses rows; the
        swap happens only while ``swap_lock`` is held here too.
        """
        with self._lock:
            st = self._state
            if not st.tombstone or self._journal is not None:
                return
            rows = np.flatnonzero(st.live[: st.n])
            ids = [st.ids[r] for r in rows]
            vecs = st.vec[rows].copy()
            pops = st.pop[rows].copy()
            text = st.text[rows].copy()
            inps = None if st.inp is None else st.inp[rows].copy()
            self._journal = _Journal([])
        try:
            index = self._build(vecs)
            new = _State(index, list(ids), vecs, pops, tombstone=True, has_text=text, inputs=inps)
            with swap_lock or nullcontext(), self._lock:
                for op, iid, vec, pop, has_text, inp in self._journal.ops:
                    if op == "scale":
                        new.pop[: new.n] *= np.float32(pop)
                    elif vec is not None:  # upsert
                        new.upsert(iid, vec, pop, has_text, inp)
                    else:
                        new.delete(iid)
                self._state = new
                log.info(
                    "rebuilt %s index: %d rows (%d replayed)",
                    self.kind,
                    new.n,
                    len(self._journal.ops),
                )
        finally:
            self._journal = None

    def _build(self, vecs: np.ndarray) -> Any:
        import faiss

        if self.kind == "hnsw":
            hnsw = faiss.IndexHNSWFlat(self.dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            hnsw.hnsw.efConstruction = self.ef_construction
            hnsw.hnsw.efSearch = self.ef_search or 64
            hnsw.add(vecs)
            return hnsw
        flat = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
        flat.add_with_ids(vecs, np.arange(len(vecs), dtype=np.int64))
        return _to_gpu(flat) if self._on_gpu else flat


def _with_headroom(rows: int) -> int:
    """``rows`` plus the upsert headroom to reserve beyond them."""
    return rows + min(rows // 4 + 16, _RESERVE_MAX_ROWS)


def reserve_index(index: Any, rows: int) -> int:
    """Grow the capacity of ``index``'s growable arrays to ``rows`` vectors; returns ``rows``.

    ``std::vector`` keeps its capacity when shrunk, so each array is resized up
    and back (its contents unchanged). Arrays FAISS does not own (a memory-mapped
    index) and index types not listed here are left alone: their first append
    pays the copy, as before.
    """
    import faiss

    n = int(index.ntotal)
    if rows <= n:
        return rows
    if isinstance(index, faiss.IndexHNSW):
        # SWIG attributes the faiss stubs do not declare
        storage: Any = faiss.downcast_index(index.storage)
        hnsw: Any = index.hnsw
        per_row = hnsw.neighbors.size() / max(n, 1)
        _reserve(getattr(storage, "codes", None), rows * storage.code_size)
        _reserve(hnsw.levels, rows)
        _reserve(hnsw.offsets, rows + 1)
        _reserve(hnsw.neighbors, int(rows * per_row) + 64)
    elif isinstance(index, faiss.IndexIDMap2):
        flat: Any = faiss.downcast_index(index.index)
        _reserve(getattr(flat, "codes", None), rows * flat.code_size)
        _reserve(index.id_map, rows)
    return rows


def _reserve(vec: Any, size: int) -> None:
    if vec is None or not hasattr(vec, "resize") or getattr(vec, "is_owned", True) is False:
        return
    cur = int(vec.size())
    if size > cur:
        vec.resize(size)
        vec.resize(cur)


def _compact(
    scores: np.ndarray, rows: np.ndarray, ok: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Keep the first ``k`` valid hits per query, pad with -1."""
    if rows.shape[1] >= k and ok.all():
        return scores[:, :k].astype(np.float32, copy=False), rows[:, :k]
    b = rows.shape[0]
    out_s = np.full((b, k), -np.inf, dtype=np.float32)
    out_r = np.full((b, k), -1, dtype=np.int64)
    for i in range(b):
        keep = np.flatnonzero(ok[i])[:k]
        out_s[i, : len(keep)] = scores[i, keep]
        out_r[i, : len(keep)] = rows[i, keep]
    return out_s, out_r


def _to_gpu(index: Any) -> Any:
    import faiss

    res = faiss.StandardGpuResources()
    gpu = faiss.index_cpu_to_gpu(res, 0, index)
    setattr(gpu, "_recstream_res", res)  # noqa: B010  # resources must outlive the index
    return gpu


def load_index(source: str | bytes, kind: Literal["flat", "hnsw", "ivf"], n: int) -> Any:
    """Read ``index.faiss`` (a path, or its verified bytes) and check it matches
    docs/bundle.md (kind, ids = rows). From bytes, FAISS builds its own copy."""
    import faiss

    if isinstance(source, bytes):
        index = faiss.deserialize_index(np.frombuffer(source, dtype=np.uint8))
    else:
        index = faiss.read_index(source)
    if kind == "hnsw" and not isinstance(index, faiss.IndexHNSW):
        raise BundleManifestError(f"manifest says hnsw but index.faiss is {type(index).__name__}")
    if kind == "ivf" and not isinstance(index, faiss.IndexIVF):
        raise BundleManifestError(f"manifest says ivf but index.faiss is {type(index).__name__}")
    if kind == "flat":
        if not isinstance(index, faiss.IndexIDMap2):
            raise BundleManifestError(
                f"manifest says flat but index.faiss is {type(index).__name__}, "
                "expected IndexIDMap2(IndexFlatIP)"
            )
        ids = faiss.vector_to_array(index.id_map)
        if not np.array_equal(ids, np.arange(n)):
            raise BundleManifestError("index.faiss ids are not the row numbers 0..N-1")
    return index
