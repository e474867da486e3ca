"""``recstream tail``: recommendations as they are emitted, readable, with titles."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

from inference.bundle.pointer import resolve_bundle
from recstream.errors import BundleError
from recstream.schemas import Recommendation
from recstream.settings import Settings

log = logging.getLogger(__name__)


class Titles:
    """item_id → title, from a bundle's ``items.jsonl`` (ids shown when unknown)."""

    def __init__(self, titles: dict[str, str] | None = None) -> None:
        self.titles = titles or {}

    @classmethod
    def from_bundle(cls, source: Path) -> Titles:
        try:
            path = resolve_bundle(Path(source))
        except (BundleError, OSError) as exc:
            log.warning("no titles: %s", exc)
            return cls()
        if path is None or not (path / "items.jsonl").is_file():
            log.warning("no bundle with items.jsonl under %s: showing item ids", source)
            return cls()
        titles = {}
        with open(path / "items.jsonl") as fh:
            for line in fh:
                if line.strip():
                    row = json.loads(line)
                    titles[str(row["item_id"])] = str(row.get("title") or row["item_id"])
        return cls(titles)

    def __call__(self, item_id: str) -> str:
        return self.titles.get(item_id, item_id)

    def add(self, item_id: str, title: str) -> None:
        self.titles[item_id] = title


def format_rec(rec: Recommendation, titles: Titles, received_ts: float, top: int = 5) -> str:
    """One block of text per recommendation (rich markup)."""
    latency_ms = (received_ts - rec.event_ts) * 1000.0
    head = (
        f"[bold]{rec.user_id}[/bold] after {rec.trigger} [dim]{rec.trigger_event_id}[/dim] "
        f"[cyan]{latency_ms:.1f} ms[/cyan] [dim]model {rec.model_version}[/dim]"
    )
    lines = [head]
    for n, item in enumerate(rec.items[:top], 1):
        why = ""
        if item.because:
            because = titles(item.because) if item.because in titles.titles else item.because
            why = f" [dim]because {because!r}[/dim]"
        lines.append(
            f"  {n}. {titles(item.item_id)} [dim]({item.score:.3f}, {'+'.join(item.sources)})"
            f"[/dim]{why}"
        )
    if not rec.items:
        lines.append("  (no items)")
    return "\n".join(lines)


async def follow(
    settings: Settings,
    titles: Titles,
    *,
    from_beginning: bool = False,
    limit: int | None = None,
    on_rec: Callable[[Recommendation, float], None] | None = None,
    show: Callable[[Recommendation], bool] = lambda rec: True,
) -> int:
    """Consume ``recommendations`` (no consumer group) and print them; return the count."""
    from aiokafka import AIOKafkaConsumer
    from rich.console import Console

    console = Console()
    from recstream.kafka_admin import client_kwargs

    consumer = AIOKafkaConsumer(
        settings.topics.recommendations,
        **client_kwargs(settings.bootstrap, settings.security),
        group_id=None,
        auto_offset_reset="earliest" if from_beginning else "latest",
        fetch_max_wait_ms=100,
    )
    await consumer.start()
    seen = 0
    try:
        async for msg in consumer:
            received = time.time()
            try:
                rec = Recommendation.model_validate_json(msg.value or b"")
            except ValueError as exc:
                console.print(f"[red]unreadable recommendation at offset {msg.offset}: {exc}")
                continue
            seen += 1
            if on_rec is not None:
                on_rec(rec, received)
            if show(rec):
                console.print(format_rec(rec, titles, received))
            if limit is not None and seen >= limit:
                break
    finally:
        await consumer.stop()
    return seen
