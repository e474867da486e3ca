"""Delivery accounting: what was sent against what came out (recommendations, DLQ).

Valid inputs are matched to answers by ``event_id`` = ``trigger_event_id``;
invalid inputs to DLQ records by (topic, partition, offset), which the
producer learned when the broker acknowledged them. Pure functions over what
the caller consumed, so unit tests feed it lists and integration tests and
``bench/soak.py`` feed it real topics.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

Offset = tuple[str, int, int]  # topic, partition, offset


@dataclass(frozen=True)
class Report:
    sent: int  # valid events sent
    answered: int  # of them, with at least one recommendation
    duplicated: int  # recommendations beyond the first for one event (at-least-once replays)
    lost: list[str]  # valid event ids with no recommendation (must be empty)
    bad_sent: int  # invalid messages sent
    dead_lettered: int  # of them, with a DLQ record
    missing_dlq: list[Offset]  # invalid messages with no DLQ record (must be empty)
    wrong_reason: list[tuple[Offset, str, str]]  # (where, expected, got)
    dlq_duplicated: int  # DLQ records beyond the first for one input
    unexpected: list[str] = field(default_factory=list)  # answers or DLQ records for nothing sent
    reasons: dict[str, int] = field(default_factory=dict)  # DLQ reasons seen

    @property
    def ok(self) -> bool:
        return not (self.lost or self.missing_dlq or self.wrong_reason or self.unexpected)

    def summary(self) -> str:
        return (
            f"sent {self.sent} valid: answered {self.answered}, lost {len(self.lost)}, "
            f"duplicate answers {self.duplicated}; sent {self.bad_sent} invalid: "
            f"dead-lettered {self.dead_lettered}, missing {len(self.missing_dlq)}, "
            f"wrong reason {len(self.wrong_reason)}, duplicate DLQ {self.dlq_duplicated}; "
            f"unexpected {len(self.unexpected)}; reasons {dict(sorted(self.reasons.items()))}"
        )


def _field(record: Any, name: str) -> Any:
    if isinstance(record, Mapping):
        return record[name]
    if isinstance(record, bytes | str):
        return json.loads(record)[name]
    return getattr(record, name)


def account(
    sent_ids: Iterable[str],
    recommendations: Iterable[Any],
    *,
    bad_sent: Mapping[Offset, str | None] | None = None,
    dlq: Iterable[Any] = (),
) -> Report:
    """Reconcile inputs and outputs.

    ``recommendations`` and ``dlq`` items may be pydantic models, dicts or raw JSON
    values. ``bad_sent`` maps each invalid message's (topic, partition, offset) to
    its expected reason (None: any reason will do).
    """
    ids = list(dict.fromkeys(sent_ids))
    wanted = set(ids)
    answers = Counter(str(_field(r, "trigger_event_id")) for r in recommendations)
    bad = dict(bad_sent or {})
    got_dlq: Counter[Offset] = Counter()
    reasons: Counter[str] = Counter()
    wrong: list[tuple[Offset, str, str]] = []
    unexpected = [f"answer:{e}" for e in answers if e not in wanted]
    for rec in dlq:
        topic, partition = str(_field(rec, "topic")), int(_field(rec, "partition"))
        where = (topic, partition, int(_field(rec, "offset")))
        reason = str(_field(rec, "reason"))
        reasons[reason] += 1
        got_dlq[where] += 1
        if where not in bad:
            unexpected.append(f"dlq:{where}:{reason}")
        elif got_dlq[where] == 1 and bad[where] is not None and bad[where] != reason:
            wrong.append((where, str(bad[where]), reason))
    return Report(
        sent=len(ids),
        answered=sum(1 for e in ids if answers[e]),
        duplicated=sum(n - 1 for e, n in answers.items() if e in wanted and n > 1),
        lost=[e for e in ids if not answers[e]],
        bad_sent=len(bad),
        dead_lettered=sum(1 for w in bad if got_dlq[w]),
        missing_dlq=[w for w in bad if not got_dlq[w]],
        wrong_reason=wrong,
        dlq_duplicated=sum(n - 1 for w, n in got_dlq.items() if w in bad and n > 1),
        unexpected=unexpected,
        reasons=dict(reasons),
    )


def reference_sequences(events: Iterable[Any], window: int) -> dict[str, list[tuple[str, float]]]:
    """Each user's expected ``user_sequence`` from the input topic: the last ``window``
    (item_id, ts) of its valid events, in log order (one user = one partition)."""
    seqs: dict[str, list[tuple[str, float]]] = {}
    for e in events:
        seq = seqs.setdefault(str(_field(e, "user_id")), [])
        seq.append((str(_field(e, "item_id")), float(_field(e, "ts"))))
        del seq[:-window]
    return seqs
