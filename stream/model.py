"""Which model serves, and hot reload: one :class:`ModelHolder` per bundle pointer.

The worker's ``bundle`` setting is a **version directory** (that bundle is served,
nothing reloads) or a **bundles root** (default ``<state_dir>/bundles``), followed
through a pointer (``CURRENT``, else the newest sealed bundle; the rules, confinement
included, are :mod:`inference.bundle.pointer`'s). Every ``reload_interval_s`` the
holder resolves the pointer again; when the answer changes it loads the new bundle
*aside* in a thread with its loader (the serving core verifies every file as it
reads it; the manifest is read once), checks it answers one request with its own
version, re-applies the catalog changes the live model received
(:class:`stream.overlay.ItemOverlay`), and then swaps one reference on the
event-loop thread. Holders are plain objects, one per pointer: serving a second
bundle (a canary) is a second holder.

The agent reads :attr:`ModelHolder.current` once at the start of each batch, and
the swap happens on the same thread between two batches, so every batch is
answered by exactly one model and names its version; the old model is closed at
the swap (nothing uses it any more). Consumer offsets are untouched by a swap: no
event is dropped or processed twice because of it. A bundle that fails to resolve,
load or verify is logged, counted (``recstream_model_reloads_total{result="failed"}``)
and skipped until the pointer changes again; the old model keeps serving. After
each swap the heap is frozen (:func:`recstream.heap.freeze_heap`), so garbage
collections stop walking the model's objects mid-batch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from inference.bundle.pointer import CURRENT, resolve_bundle
from inference.types import Recommender, Request
from recstream.errors import BundleError
from recstream.heap import freeze_heap
from stream.metrics import WorkerMetrics
from stream.overlay import ItemOverlay

log = logging.getLogger(__name__)

Loader = Callable[[Path], Recommender]


class ModelHolder:
    """Owns the serving :class:`Recommender` of one bundle pointer and swaps it when it moves."""

    def __init__(
        self,
        source: Path,
        *,
        loader: Loader,
        metrics: WorkerMetrics,
        overlay: ItemOverlay,
        pointer: str = CURRENT,
    ) -> None:
        self.source = source
        self.pointer = pointer
        self.loader = loader
        self.metrics = metrics
        self.overlay = overlay
        self.current: Recommender | None = None
        self.path: Path | None = None
        self.loaded = asyncio.Event()
        self._failed: Path | None = None  # don't retry a broken bundle every poll
        self._lock = asyncio.Lock()

    @property
    def version(self) -> str | None:
        return None if self.current is None else self.current.model_version

    @property
    def created_ts(self) -> float:
        """The serving bundle's ``created_at`` (0.0 before one is loaded)."""
        return 0.0 if self.current is None else self.current.created_ts

    def install(self, recommender: Recommender, path: Path | None = None) -> None:
        """Serve ``recommender`` from now on (loop thread; between batches by construction)."""
        recommender.pin_threads()
        old = self.version
        self.current = recommender
        self.path = path
        self.metrics.set_model(recommender.model_version)
        self.loaded.set()
        log.info("serving model %s (was %s)", recommender.model_version, old)

    async def maybe_reload(self) -> bool:
        """Resolve the pointer; load, verify and swap if it moved. True if swapped."""
        async with self._lock:
            try:
                target = resolve_bundle(self.source, self.pointer)
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
            self.overlay.replay(new, new.created_ts, after=replayed_upto)
            old = self.current
            self.install(new, target)
            if old is not None:  # nothing uses it any more: this runs between batches
                old.close()
            del old
            freeze_heap(f"serving {self.version}")
            self.metrics.index_items.set(new.n_items)
            self.metrics.model_reloads.labels(result="ok").inc()
            return True

    def _prepare(self, target: Path) -> tuple[Recommender, int]:
        """Load + verify aside (worker thread): nobody else sees ``new`` yet."""
        new = self.loader(target)
        check = new.recommend_batch([Request(user_id="__reload_check__", query="check", k=1)])
        if len(check) != 1 or check[0].model_version != new.model_version:
            raise BundleError(f"{target}: smoke request did not answer with its version")
        upto = self.overlay.replay(new, new.created_ts)
        return new, upto
