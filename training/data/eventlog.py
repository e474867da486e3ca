"""recstream's own event log (JSON lines) -> :class:`Dataset`, so production data
trains exactly like MovieLens.

Each line is one message of ``user-events``, ``search-text`` or ``item-updates``
(schemas in :mod:`recstream.schemas`, decoded with the same strict ``decode`` the
workers use), either wrapped as ``{"topic": "<topic>", "value": {...}}`` (a topic
dump) or bare, in which case the topic follows from the fields: ``op`` ->
item-updates, ``text`` without ``item_id`` -> search-text, else user-events.

Malformed lines are a COUNTED SKIP, never silent: each is logged with its line
number and reason, counted in :class:`EventLogReport`, and if more than
``max_bad_fraction`` of the lines are bad the whole load fails with
:class:`DataError` (it is probably not an event log). Item catalog: item-updates
applied in time order (ties in file order), last upsert wins, ``delete`` removes
the item and the events on it (counted as ``deleted_item``); items seen only in
events get a row whose text is their id (counted as ``unknown_item``).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recstream.errors import DataError, SchemaError
from recstream.schemas import ItemUpdate, SearchText, UserEvent, decode
from training.data.text import item_text
from training.data.types import Catalog, Dataset, Interactions, SearchLog

__all__ = ["EventLogReport", "load_event_log"]

log = logging.getLogger(__name__)

_TOPICS: dict[str, type[UserEvent] | type[SearchText] | type[ItemUpdate]] = {
    "user-events": UserEvent,
    "search-text": SearchText,
    "item-updates": ItemUpdate,
}
_LOGGED_BAD_LINES = 10  # then only the summary


@dataclass
class EventLogReport:
    lines: int = 0
    by_topic: Counter[str] = field(default_factory=Counter)  # valid messages per topic
    skipped: Counter[str] = field(default_factory=Counter)  # malformed lines per reason
    notes: Counter[str] = field(default_factory=Counter)  # deleted_item, unknown_item

    @property
    def n_skipped(self) -> int:
        return sum(self.skipped.values())


def load_event_log(
    path: Path, *, name: str | None = None, max_bad_fraction: float = 0.05
) -> tuple[Dataset, EventLogReport]:
    """Parse ``path``; see the module docstring for the rules."""
    report = EventLogReport()
    events: list[UserEvent] = []
    searches: list[SearchText] = []
    updates: list[ItemUpdate] = []
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise DataError(f"cannot read event log {path}: {exc}") from exc
    with fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            report.lines += 1
            try:
                topic, msg = _parse_line(raw)
            except SchemaError as exc:
                report.skipped[exc.reason] += 1
                if report.n_skipped <= _LOGGED_BAD_LINES:
                    log.warning("%s:%d skipped (%s): %s", path, lineno, exc.reason, exc)
                continue
            report.by_topic[topic] += 1
            if isinstance(msg, UserEvent):
                events.append(msg)
            elif isinstance(msg, SearchText):
                searches.append(msg)
            else:
                updates.append(msg)
    if report.n_skipped:
        log.warning(
            "%s: skipped %d of %d lines %s",
            path,
            report.n_skipped,
            report.lines,
            dict(report.skipped),
        )
    if report.lines and report.n_skipped > max_bad_fraction * report.lines:
        raise DataError(
            f"{path}: {report.n_skipped} of {report.lines} lines are malformed "
            f"({dict(report.skipped)}), over the {max_bad_fraction:.0%} limit: "
            "is this a recstream event log?"
        )
    if not events:
        raise DataError(f"{path}: no valid user-events messages, nothing to train on")
    dataset = _build(name or path.stem, events, searches, updates, report)
    return dataset, report


def _parse_line(raw: bytes) -> tuple[str, Any]:
    try:
        obj = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        # decode() gives the precise reason code (invalid_utf8 / invalid_json)
        decode(UserEvent, raw)
        raise SchemaError("invalid_json", str(exc)) from exc
    if not isinstance(obj, dict):
        raise SchemaError("schema", "a line must be a JSON object")
    if "topic" in obj and "value" in obj:
        topic = obj["topic"]
        if topic not in _TOPICS:
            raise SchemaError("unknown_topic", f"topic {topic!r} is not an input topic")
        raw = json.dumps(obj["value"]).encode()
    elif "op" in obj:
        topic = "item-updates"
    elif "text" in obj and "item_id" not in obj:
        topic = "search-text"
    else:
        topic = "user-events"
    return topic, decode(_TOPICS[topic], raw)


def _build(
    name: str,
    events: list[UserEvent],
    searches: list[SearchText],
    updates: list[ItemUpdate],
    report: EventLogReport,
) -> Dataset:
    # Catalog state after all updates, applied in time order (stable: ties keep file order).
    live: dict[str, ItemUpdate] = {}
    deleted: set[str] = set()
    for upd in sorted(updates, key=lambda u: u.ts):
        if upd.op == "delete":
            live.pop(upd.item_id, None)
            deleted.add(upd.item_id)
        else:
            live[upd.item_id] = upd
            deleted.discard(upd.item_id)
    # Rows in order of first appearance (updates, then events), for determinism.
    order: dict[str, None] = {}
    for item_id in [u.item_id for u in updates] + [e.item_id for e in events]:
        if item_id not in deleted:
            order.setdefault(item_id)
    ids, titles, texts, attrs = [], [], [], []
    for item_id in order:
        current = live.get(item_id)
        if current is None:
            report.notes["unknown_item"] += 1
        title, text, attributes = _item_fields(item_id, current)
        ids.append(item_id)
        titles.append(title)
        texts.append(text)
        attrs.append(attributes)
    catalog = Catalog(ids, titles, texts, attrs)

    users: dict[str, int] = {}
    u_col, i_col, t_col = [], [], []
    for ev in events:
        row = catalog.rows.get(ev.item_id)
        if row is None:
            report.notes["deleted_item"] += 1
            continue
        u_col.append(users.setdefault(ev.user_id, len(users)))
        i_col.append(row)
        t_col.append(ev.ts)
    s_user = [users.setdefault(s.user_id, len(users)) for s in searches]
    if report.notes:
        log.info("%s: %s", name, dict(report.notes))
    return Dataset(
        name=name,
        catalog=catalog,
        interactions=Interactions(
            user=np.asarray(u_col, np.int32),
            item=np.asarray(i_col, np.int32),
            ts=np.asarray(t_col, np.float64),
            user_ids=list(users),
        ),
        search=SearchLog(
            user=np.asarray(s_user, np.int32),
            text=[s.text for s in searches],
            ts=np.asarray([s.ts for s in searches], np.float64),
        ),
    )


def _item_fields(item_id: str, upd: ItemUpdate | None) -> tuple[str, str, dict[str, Any]]:
    if upd is None:
        return item_id, item_id, {}
    attributes = dict(upd.attributes or {})
    year = attributes.get("year")
    year = int(year) if isinstance(year, int | float) and not isinstance(year, bool) else None
    genres = attributes.get("genres")
    if isinstance(genres, str):
        genres = [g.strip() for g in genres.replace("|", ",").split(",") if g.strip()]
    elif not isinstance(genres, list):
        genres = []
    genres = [str(g) for g in genres]
    attributes.update(year=year, genres=genres)
    title = upd.title or item_id
    return title, item_text(title, year, genres, upd.text), attributes
