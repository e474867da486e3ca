"""Which model serves, and hot reload: one :class:`ModelHolder` per bundle pointer.

The worker's ``bundle`` setting is a **version directory** (that bundle is served,
nothing reloads) or a **bundles root** (default ``<state_dir>/bundles``), followed
through a pointer (``CURRENT``, else the newest sealed bundle; the rules, confinement
included, are :mod:`inference.bundle.pointer`'s). Every ``reload_interval_s`` the
holder resolves the pointer again; when the answer changes it loads the new bundle
*aside* in a thread with its loader (the serving core verifies every file as it
reads it; the manifest is read once), checks it answers one request with its own
version, warms it up (throwaway batches of every shape, so the first real requests do
not pay first-run allocations), re-applies the catalog changes the live model received
(:class:`stream.overlay.ItemOverlay`), and then swaps one reference on the
event-loop thread. Holders are plain objects, one per pointer: serving a second
bundle (a canary) is a second holder, and ``stream.rollout`` coordinates the two
(at most two bundles held, a promoted bundle handed over rather than loaded again).

The agent reads :attr:`ModelHolder.current` once at the start of each batch, and
the swap happens on the same thread between two batches, so every batch is
answered by exactly one model and names its version; the old model is closed at
the swap (nothing uses it any more). Consumer offsets are untouched by a swap: no
event is dropped or processed twice because of it. A bundle that fails to resolve,
load or verify is logged, counted (``recstream_model_reloads_total{result="failed"}``)
and skipped until the pointer changes again; the old model keeps serving, and
:attr:`ModelHolder.problem` says why (``/readyz``). After
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
from stream.memory import resident_bytes, trim
from stream.metrics import WorkerMetrics
from stream.overlay import ItemOverlay

log = logging.getLogger(__name__)

Loader = Callable[[Path], Recommender]


class Unresolvable(Exception):
    """The pointer could not be followed (the holder keeps what it serves)."""


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
        bucket: str = "control",
        fallback_newest: bool = True,
    ) -> None:
        self.source = source
        self.pointer = pointer
        self.bucket = bucket  # the label of this holder's model in the metrics
        # Without the pointer file: the newest sealed bundle (True), or nothing (a canary).
        self.fallback_newest = fallback_newest
        self.loader = loader
        self.metrics = metrics
        self.overlay = overlay
        self.current: Recommender | None = None
        self.path: Path | None = None
        self.memory: int | None = None  # resident bytes the model added when it loaded
        self.loaded = asyncio.Event()
        self.problem: str | None = None  # why the pointer's bundle does not serve (None: fine)
        self._failed: Path | None = None  # don't retry a broken bundle every poll
        self._lock = asyncio.Lock()

    @property
    def version(self) -> str | None:
        return None if self.current is None else self.current.model_version

    @property
    def created_ts(self) -> float:
        """The serving bundle's ``created_at`` (0.0 before one is loaded)."""
        return 0.0 if self.current is None else self.current.created_ts

    def install(
        self, recommender: Recommender, path: Path | None = None, memory: int | None = None
    ) -> None:
        """Serve ``recommender`` from now on (loop thread; between batches by construction)."""
        recommender.pin_threads()
        old = self.version
        self.current = recommender
        self.path = path
        self.memory = memory
        self.problem = None
        self.metrics.set_model(recommender.model_version, self.bucket)
        self.metrics.set_memory(self.bucket, memory)
        self.loaded.set()
        log.info("serving model %s for %s (was %s)", recommender.model_version, self.bucket, old)

    def resolve(self) -> Path | None:
        """The version directory the pointer names now (None: none); raises
        :class:`Unresolvable` (logged, and kept in :attr:`problem`)."""
        try:
            return resolve_bundle(self.source, self.pointer, fallback_newest=self.fallback_newest)
        except (BundleError, OSError) as exc:
            self.problem = f"cannot resolve {self.pointer} in {self.source}: {exc}"
            log.error("%s; keeping %s", self.problem, self.version)
            raise Unresolvable(self.problem) from exc

    def wants(self, target: Path | None) -> bool:
        """True if ``target`` should be loaded: new, and not the bundle that failed last."""
        return target is not None and target != self.path and target != self._failed

    async def maybe_reload(self) -> bool:
        """Resolve the pointer; load, verify and swap if it moved. True if swapped.

        A pointer that disappears (only without ``fallback_newest``: the canary's)
        releases the model it served.
        """
        try:
            target = self.resolve()
        except Unresolvable:
            return False
        if target is None:
            if self.fallback_newest:  # a control with no bundle at all keeps what it has
                if self.current is None:
                    log.warning("no bundle under %s yet; waiting", self.source)
            elif self.current is not None:
                self.release(f"no {self.pointer} pointer in {self.source}")
            else:
                self.problem = f"no {self.pointer} pointer in {self.source}"
            return False
        if not self.wants(target):
            return False
        return await self.load(target)

    async def load(self, target: Path) -> bool:
        """Load and verify ``target`` aside (a thread), then swap it in. True if swapped."""
        async with self._lock:
            if not self.wants(target):  # another caller loaded it meanwhile
                return False
            if self.current is None:
                self.problem = f"loading {target.name}"
            loop = asyncio.get_running_loop()
            try:
                new, replayed_upto, memory = await loop.run_in_executor(None, self._prepare, target)
            except Exception as exc:
                self._failed = target
                self.metrics.model_reloads.labels(result="failed").inc()
                self.problem = f"bundle {target.name} failed to load/verify: {exc}"
                log.error("%s; %s keeps %s", self.problem, self.bucket, self.version)
                return False
            # Catalog changes that arrived while loading: apply them here, on the
            # loop thread, then swap; nothing can interleave between the two.
            self.overlay.replay(new, new.created_ts, after=replayed_upto)
            self._swap(new, target, memory)
            self.metrics.model_reloads.labels(result="ok").inc()
            return True

    def adopt(self, other: ModelHolder) -> None:
        """Serve what ``other`` serves, which gives it up (a promoted canary: nothing
        is loaded again, and it already has every catalog change)."""
        new, path = other.current, other.path
        if new is None:
            raise ValueError(f"{other.pointer} holds no model to hand over")
        memory = other.memory
        other.current, other.path, other.memory = None, None, None
        other.metrics.set_model(None, other.bucket)
        self._swap(new, path, memory)
        log.info("%s serves %s, handed over by %s", self.bucket, new.model_version, other.bucket)

    def release(self, reason: str) -> None:
        """Stop serving (between batches); the model is closed. ``reason`` goes to /readyz."""
        old, self.current, self.path, self.memory = self.current, None, None, None
        self.problem = reason
        self.metrics.set_model(None, self.bucket)
        if old is not None:
            log.warning("%s released %s: %s", self.bucket, old.model_version, reason)
            old.close()
            del old
            freeze_heap(f"{self.bucket} released")

    def _swap(self, new: Recommender, path: Path | None, memory: int | None) -> None:
        old = self.current
        self.install(new, path, memory)
        if old is not None:  # nothing uses it any more: this runs between batches
            old.close()
        del old
        freeze_heap(f"serving {self.version}")
        if self.bucket == "control":
            self.metrics.index_items.set(new.n_items)

    def _prepare(self, target: Path) -> tuple[Recommender, int, int]:
        """Load + verify aside (worker thread): nobody else sees ``new`` yet."""
        trim()
        before = resident_bytes()
        new = self.loader(target)
        check = new.recommend_batch([Request(user_id="__reload_check__", query="check", k=1)])
        if len(check) != 1 or check[0].model_version != new.model_version:
            raise BundleError(f"{target}: smoke request did not answer with its version")
        # warm before serving: the first real batches of a fresh model paid its first-run
        # allocations (the worker says ready only once a model is installed)
        log.info("model %s warmed up in %.2f s", new.model_version, new.warm_up())
        upto = self.overlay.replay(new, new.created_ts)
        return new, upto, max(0, resident_bytes() - before)
