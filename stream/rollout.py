"""The worker's two bundles: ``control`` (the ``CURRENT`` pointer) and ``canary`` (``CANDIDATE``).

Each is a :class:`~stream.model.ModelHolder`, hot-reloaded and verified as one
bundle always was; :mod:`stream.buckets` says which users the canary serves.
The canary serves only when all of this holds, otherwise everyone is in
``control`` and :meth:`Rollout.state` (``/readyz``) and the log say why:

- the bundle setting is a bundles root (a fixed version directory has no canary),
- ``canary_share`` > 0 and a ``CANDIDATE`` pointer exists,
- it names a bundle other than the control's, which loaded, verified and
  answered its smoke request (a failure is counted in
  ``recstream_model_reloads_total{result="failed"}`` and not retried until the
  pointer moves).

**At most two bundles**, loads included: before one holder loads a bundle aside
while both serve, the canary gives its bundle up (its users are served by the
control meanwhile). When ``CURRENT`` comes to name the bundle the canary serves
(``recstream bundles promote``), the control takes that very model over: no load,
no third copy, every catalog change already applied. Reloads run one at a time on
the event loop, between batches, so every batch sees one consistent pair.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from inference.bundle.manifest import MANIFEST
from inference.bundle.pointer import CANDIDATE, CURRENT
from stream.buckets import CANARY, CONTROL, Buckets, Canary
from stream.metrics import WorkerMetrics
from stream.model import Loader, ModelHolder, Unresolvable
from stream.overlay import ItemOverlay

log = logging.getLogger(__name__)

__all__ = ["Rollout"]


class Rollout:
    """Both holders, the bucket assignment, and the rules that keep them to two bundles."""

    def __init__(
        self,
        source: Path,
        *,
        loader: Loader,
        metrics: WorkerMetrics,
        overlay: ItemOverlay,
        buckets: Buckets,
    ) -> None:
        self.source = source
        self.buckets = buckets
        common: dict[str, Any] = {"loader": loader, "metrics": metrics, "overlay": overlay}
        self.control = ModelHolder(source, pointer=CURRENT, bucket=CONTROL, **common)
        self.canary = ModelHolder(
            source, pointer=CANDIDATE, bucket=CANARY, fallback_newest=False, **common
        )
        self._lock = asyncio.Lock()

    @property
    def holders(self) -> tuple[ModelHolder, ModelHolder]:
        return self.control, self.canary

    def canary_for_batch(self) -> Canary | None:
        """The canary to apply to the next batch (None: everyone in control)."""
        rec = self.canary.current
        if rec is None or self.control.current is None:
            return None
        return Canary(rec, self.buckets)

    async def maybe_reload(self) -> None:
        """Follow both pointers (one step each, control first)."""
        async with self._lock:
            await self._control_step()
            await self._canary_step()

    async def _control_step(self) -> None:
        control, canary = self.control, self.canary
        try:
            target = control.resolve()
        except Unresolvable:
            return
        if target is None:
            if control.current is None:
                log.warning("no bundle under %s yet; waiting", self.source)
            return
        if not control.wants(target):
            return
        if target == canary.path:  # promoted: hand the canary's model over
            control.adopt(canary)
            canary.problem = f"promoted: {CURRENT} names {target.name}, the canary's bundle"
            return
        if control.current is not None and canary.current is not None:
            canary.release(
                f"gave its bundle up while the control loads {target.name} "
                "(a worker holds at most two bundles)"
            )
        await control.load(target)

    async def _canary_step(self) -> None:
        control, canary = self.control, self.canary
        reason = self._no_canary_reason()
        if reason is not None:
            self._no_canary(reason)
            return
        try:
            target = canary.resolve()
        except Unresolvable:
            return
        if target is None:
            self._no_canary(f"no {CANDIDATE} pointer in {self.source}")
            return
        if target == control.path:
            self._no_canary(f"{CANDIDATE} names {target.name}, which the control serves")
            return
        if not canary.wants(target):
            return
        if control.current is None:
            canary.problem = "waiting for the control bundle to load first"
            return
        if canary.current is not None:
            canary.release(f"{CANDIDATE} moved to {target.name}")
        await canary.load(target)

    def _no_canary_reason(self) -> str | None:
        if (self.source / MANIFEST).is_file():
            return f"the worker serves a fixed bundle directory ({self.source}): no canary"
        if self.buckets.canary_share <= 0.0:
            return "canary_share is 0"
        return None

    def _no_canary(self, reason: str) -> None:
        if self.canary.current is not None:
            self.canary.release(reason)
        else:
            self.canary.problem = reason

    def state(self) -> dict[str, Any]:
        """What each bucket serves and, where it is not what the pointer asks, why."""
        serving = self.canary.current is not None and self.control.current is not None
        return {
            CONTROL: {
                "pointer": CURRENT,
                "model_version": self.control.version,
                "problem": self.control.problem,
            },
            CANARY: {
                "pointer": CANDIDATE,
                "model_version": self.canary.version,
                "serving": serving,
                "share": self.buckets.canary_share if serving else 0.0,
                "configured_share": self.buckets.canary_share,
                "reason": None if serving else self.canary.problem,
            },
        }
