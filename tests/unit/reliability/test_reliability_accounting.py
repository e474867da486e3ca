"""The accounting harness counts answered, duplicated, lost and dead-lettered correctly."""

from __future__ import annotations

import json

from tests.integration.reliability.accounting import account, reference_sequences


def rec(event_id: str) -> dict:
    return {"trigger_event_id": event_id, "user_id": "u"}


def test_answers_duplicates_and_losses() -> None:
    r = account(["a", "b", "c", "a"], [rec("a"), rec("a"), rec("b"), json.dumps(rec("b"))])
    assert (r.sent, r.answered, r.duplicated, r.lost) == (3, 2, 2, ["c"])
    assert not r.ok and "lost 1" in r.summary()


def test_dead_letters_matched_by_offset_and_reason() -> None:
    bad = {("t", 0, 5): "schema", ("t", 1, 9): None, ("t", 2, 1): "too_large"}
    dlq = [
        {"topic": "t", "partition": 0, "offset": 5, "reason": "schema"},
        {"topic": "t", "partition": 0, "offset": 5, "reason": "schema"},  # a replay
        {"topic": "t", "partition": 1, "offset": 9, "reason": "invalid_json"},
        {"topic": "t", "partition": 3, "offset": 0, "reason": "schema"},  # never sent
    ]
    r = account(["x"], [rec("x"), rec("ghost")], bad_sent=bad, dlq=dlq)
    assert (r.bad_sent, r.dead_lettered, r.dlq_duplicated) == (3, 2, 1)
    assert r.missing_dlq == [("t", 2, 1)]
    assert r.wrong_reason == []
    assert sorted(r.unexpected) == ["answer:ghost", "dlq:('t', 3, 0):schema"]
    assert r.reasons == {"schema": 3, "invalid_json": 1}


def test_wrong_reason_is_reported() -> None:
    dlq = [{"topic": "t", "partition": 0, "offset": 1, "reason": "too_large"}]
    r = account([], [], bad_sent={("t", 0, 1): "schema"}, dlq=dlq)
    assert r.wrong_reason == [(("t", 0, 1), "schema", "too_large")] and not r.ok


def test_everything_accounted_for_is_ok() -> None:
    dlq = [{"topic": "t", "partition": 0, "offset": 1, "reason": "schema"}]
    r = account(["a"], [rec("a")], bad_sent={("t", 0, 1): "schema"}, dlq=dlq)
    assert r.ok and r.answered == 1 and r.dead_lettered == 1


def test_reference_sequences_keep_the_last_window_in_log_order() -> None:
    events = [{"user_id": f"u{i % 2}", "item_id": f"i{i}", "ts": float(i)} for i in range(7)]
    assert reference_sequences(events, window=2) == {
        "u0": [("i4", 4.0), ("i6", 6.0)],
        "u1": [("i3", 3.0), ("i5", 5.0)],
    }
