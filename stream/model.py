"""Which model serves, and hot reload.

Mechanism (the worker's ``bundle`` setting):

- a **version directory** (it holds ``manifest.json``): that bundle is served,
  nothing is reloaded;
- a **bundles root** (default ``<state_dir>/bundles``): the worker serves the
  version named in ``<root>/CURRENT`` (one line, a directory name) if that file
  exists, otherwise the sealed bundle with the newest ``created_at``. Every
  ``reload_interval_s`` it resolves again; when the answer changes it loads the
  new bundle *aside* in a thread (hashes verified by the loader), checks it
  answers one request with its own version, re-applies the catalog changes the
  live model received (:class:`stream.catalog.ItemOverlay`), and then swaps one
  reference on the event-loop thread.

The agent reads :attr:`ModelHolder.current` once at the start of each batch,
and the swap happens on the same thread between two batches, so every batch
is answered by exactly one model and names its version. Consumer offsets are
untouched by a swap: no event is dropped or processed twice because of it.
Promote a version atomically with ``echo VERSION > CURRENT.tmp && mv CURRENT.tmp
CURRENT`` (or just seal a newer bundle into the root). A bundle that fails to
load or verify is logged, counted (``recstream_model_reloads_total{result="failed"}``)
and skipped until the pointer changes again; the old model keeps serving.
After each swap the old model is released and the heap frozen
(:func:`recstream.heap.freeze_heap`), so garbage collections stop walking the
model's objects mid-batch.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from pathlib import Path

from inference.bundle import MANIFEST, find_latest
from inference.types import Recommender, Request
from recstream.errors import BundleError, ConfigError
from recstream.heap import freeze_heap
from stream.catalog import ItemOverlay
from stream.metrics import WorkerMetrics

log = logging.getLogger(__name__)

POINTER = "CURRENT"

Loader = Callable[[Path], Recommender]


def resolve_bundle(source: Path) -> Path | None:
    """The version directory ``source`` designates now (None if there is none yet)."""
    if (source / MANIFEST).is_file():
        return source
    pointer = source / POINTER
    if pointer.is_file():
        name = pointer.read_text().strip()
        target = source / name
        if not name or not (target / MANIFEST).is_file():
            raise BundleError(f"{pointer} names {name!r}, which is not a sealed bundle in {source}")
        return target
    return find_latest(source) if source.is_dir() else None


def bundle_created_ts(path: Path) -> float:
    """``created_at`` of a bundle as epoch seconds (0 if unreadable)."""
    from datetime import datetime

    try:
        text = json.loads((path / MANIFEST).read_text())["created_at"]
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
    except (OSError, ValueError, KeyError):
        return 0.0


def default_loader(path: Path) -> Recommender:
    """Load a bundle with the serving core (hashes are verified before anything loads)."""
    from inference import load_recommender

    return load_recommender(path)


def import_loader(spec: str) -> Loader:
    """Resolve a ``"module:function"`` loader setting."""
    import importlib

    module, _, name = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"loader {spec!r} not importable ({exc}); use 'module:function'") from exc
    if not callable(fn):
        raise ConfigError(f"loader {spec!r} is not callable")
    return fn


def _pin_faiss_threads(recommender: Recommender) -> None:
    """Apply the serving core's FAISS thread count to *this* thread.

    ``omp_set_num_threads`` is per calling thread: the bundle is loaded in an
    executor thread, so its setting does not reach the event-loop thread that
    searches. Left at the OpenMP default (all cores), a search of a 200-item
    index took ~7 ms here under CPU contention instead of microseconds.
    """
    threads = getattr(getattr(recommender, "settings", None), "faiss_threads", None)
    if threads is None:
        return
    try:
        import faiss
    except ImportError:
        return
    faiss.omp_set_num_threads(int(threads))


class ModelHolder:
    """Owns the serving :class:`Recommender` and replaces it when the bundle pointer moves."""

    def __init__(
        self,
        source: Path,
        *,
        loader: Loader,
        metrics: WorkerMetrics,
        overlay: ItemOverlay,
    ) -> None:
        self.source = source
        self.loader = loader
        self.metrics = metrics
        self.overlay = overlay
        self.current: Recommender | None = None
        self.path: Path | None = None
        self.created_ts = 0.0
        self.loaded = asyncio.Event()
        self._failed: Path | None = None  # don't retry a broken bundle every poll
        self._lock = asyncio.Lock()

    @property
    def version(self) -> str | None:
        return None if self.current is None else self.current.model_version

    def install(self, recommender: Recommender, path: Path | None = None) -> None:
        """Serve ``recommender`` from now on (loop thread; between batches by construction)."""
        _pin_faiss_threads(recommender)
        old = self.version
        self.current = recommender
        self.path = path
        self.created_ts = bundle_created_ts(path) if path else 0.0
        self.metrics.set_model(recommender.model_version)
        self.loaded.set()
        log.info("serving model %s (was %s)", recommender.model_version, old)

    async def maybe_reload(self) -> bool:
        """Resolve the pointer; load, verify and swap if it moved. True if swapped."""
        async with self._lock:
            try:
                target = resolve_bundle(self.source)
            except (BundleError, OSError) as exc:
                log.error("cannot resolve bundle from %s: %s", self.source, exc)
                return False
            if target is None:
                if self.current is None:
                    log.warning("no bundle under %s yet; waiting", self.source)
                return False
            if target == self.path or target == self._failed:
                return False
            loop = asyncio.get_running_loop()
            try:
                new, replayed_upto = await loop.run_in_executor(None, self._prepare, target)
            except Exception as exc:
                self._failed = target
                self.metrics.model_reloads.labels(result="failed").inc()
                log.error(
                    "bundle %s failed to load/verify, keeping %s: %s", target, self.version, exc
                )
                return False
            # Catalog changes that arrived while loading: apply them here, on the
            # loop thread, then swap; nothing can interleave between the two.
            created = bundle_created_ts(target)
            self.overlay.replay(new, created, after=replayed_upto)
            old = self.current
            self.install(new, target)
            close = getattr(old, "close", None)
            if callable(close):  # nothing uses it any more: this runs between batches
                close()
            del old, close
            freeze_heap(f"serving {self.version}")
            self.metrics.index_items.set(self.overlay.index_size(new))
            self.metrics.model_reloads.labels(result="ok").inc()
            return True

    def _prepare(self, target: Path) -> tuple[Recommender, int]:
        """Load + verify aside (worker thread): nobody else sees ``new`` yet."""
        manifest_version = json.loads((target / MANIFEST).read_text())["version"]
        new = self.loader(target)
        if new.model_version != manifest_version:
            raise BundleError(
                f"{target}: loaded model says {new.model_version!r}, manifest {manifest_version!r}"
            )
        check = new.recommend_batch([Request(user_id="__reload_check__", query="check", k=1)])
        if len(check) != 1 or check[0].model_version != manifest_version:
            raise BundleError(f"{target}: smoke request did not answer with its version")
        upto = self.overlay.replay(new, bundle_created_ts(target))
        return new, upto
