"""Loaders: RecBole atomic files and recstream event logs produce the same Dataset shape."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from recstream.errors import DataError
from training.data import load_dataset
from training.data.atomic import load_atomic
from training.data.eventlog import load_event_log
from training.data.text import display_title, item_text
from training.split import leave_one_out

INTER = [  # user, item, rating, ts  (file order; u1 has a tie at t=20)
    ("u1", "10", 4, 10),
    ("u2", "20", 3, 5),
    ("u1", "30", 5, 20),
    ("u1", "20", 2, 20),
    ("u2", "30", 1, 6),
    ("u2", "40", 1, 7),
]


def _write_atomic(d: Path, crlf: bool = False) -> Path:
    nl = "\r\n" if crlf else "\n"
    d.mkdir()
    rows = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    rows += [f"{u}\t{i}\t{r}\t{t}" for u, i, r, t in INTER]
    (d / f"{d.name}.inter").write_text(nl.join(rows) + nl, newline="")
    items = [
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq",
        "10\tUsual Suspects, The\t1995\tCrime Thriller",
        "20\tToy Story\t1995\tAnimation Children's Comedy",
        "30\tOdd Film\t\tunknown",
    ]  # item 40 is missing on purpose
    (d / f"{d.name}.item").write_text(nl.join(items) + nl, newline="")
    return d


@pytest.mark.parametrize("crlf", [False, True])
def test_atomic_files(tmp_path: Path, crlf: bool, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        ds = load_atomic(_write_atomic(tmp_path / "tiny", crlf))
    cat, inter = ds.catalog, ds.interactions
    assert ds.name == "tiny"
    assert cat.item_ids == ["10", "20", "30", "40"]
    assert cat.titles[0] == "The Usual Suspects"
    assert cat.texts[0] == "The Usual Suspects (1995). Crime, Thriller."
    assert cat.attributes[1] == {"year": 1995, "genres": ["Animation", "Children's", "Comedy"]}
    assert cat.attributes[2] == {"year": None, "genres": []}  # "unknown" is not a genre
    assert cat.texts[3] == "40" and "only in .inter" in caplog.text
    assert inter.user_ids == ["u1", "u2"]
    assert inter.user.tolist() == [0, 1, 0, 0, 1, 1]  # file order kept
    assert [cat.item_ids[i] for i in inter.item] == [r[1] for r in INTER]
    assert inter.ts.dtype == np.float64 and inter.user.dtype == np.int32
    assert load_dataset(str(tmp_path / "tiny")).interactions.ts.tolist() == inter.ts.tolist()


def test_atomic_errors(tmp_path: Path) -> None:
    d = tmp_path / "bad"
    d.mkdir()
    (d / "bad.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\nu\ti\n")
    with pytest.raises(DataError, match=r"bad\.inter:2: 2 fields"):
        load_atomic(d)
    with pytest.raises(DataError, match=r"no nope\.inter"):
        load_atomic(d, "nope")
    with pytest.raises(DataError, match="unknown dataset"):
        load_dataset(str(tmp_path / "does-not-exist"))


def test_text_helpers() -> None:
    assert (
        display_title("Confessional, The (Le Confessionnal)")
        == "The Confessional (Le Confessionnal)"
    )
    assert display_title("Seven (Se7en)") == "Seven (Se7en)"
    assert item_text("Heat", None, [], "A heist film.") == "Heat. A heist film."


def _event(u: str, i: str, ts: float, n: int) -> dict:
    return {"event_id": f"e{n}", "user_id": u, "item_id": i, "type": "click", "ts": ts}


def _log_lines() -> list[str]:
    lines = [
        json.dumps({"topic": "item-updates", "value": {
            "item_id": "10", "op": "upsert", "title": "Heat", "ts": 1.0,
            "attributes": {"year": 1995, "genres": ["Action", "Crime"]}, "text": "A heist."}}),
        json.dumps({"item_id": "20", "op": "upsert", "title": "Old", "ts": 1.0}),
        json.dumps({"item_id": "20", "op": "upsert", "title": "Toy Story", "ts": 2.0,
                    "attributes": {"genres": "Animation|Comedy"}}),
        json.dumps({"item_id": "99", "op": "upsert", "title": "Gone", "ts": 1.0}),
        json.dumps({"item_id": "99", "op": "delete", "ts": 3.0}),
        json.dumps({"event_id": "s1", "user_id": "u3", "text": "90s action", "ts": 4.0}),
    ]  # fmt: skip
    lines += [json.dumps(_event(u, i, t, n)) for n, (u, i, _r, t) in enumerate(INTER)]
    lines += [json.dumps(_event("u2", "99", 8.0, 100))]  # on a deleted item
    return lines


def test_event_log_trains_like_atomic(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "prod.jsonl"
    lines = _log_lines()
    lines.insert(3, '{"event_id": "x", "user_id": "u9", "item_id": 5, "type": "click", "ts": 1}')
    lines.insert(5, "this is not json")
    path.write_text("\n".join(lines) + "\n\n")
    with caplog.at_level(logging.WARNING):
        ds, report = load_event_log(path, max_bad_fraction=0.2)
    # malformed lines: counted and logged with their line number, never silent
    assert report.skipped == {"schema": 1, "invalid_json": 1}
    assert "prod.jsonl:4 skipped (schema)" in caplog.text
    assert "prod.jsonl:6 skipped (invalid_json)" in caplog.text
    assert report.notes == {"deleted_item": 1, "unknown_item": 2}  # 30, 40 only in events
    cat = ds.catalog
    assert cat.item_ids == ["10", "20", "30", "40"]  # 99 deleted
    assert cat.titles[1] == "Toy Story"  # last upsert wins
    assert cat.attributes[1]["genres"] == ["Animation", "Comedy"]
    assert cat.texts[0] == "Heat (1995). Action, Crime. A heist."
    assert ds.search is not None and ds.search.text == ["90s action"]
    assert ds.interactions.user_ids[ds.search.user[0]] == "u3"
    # same interactions as the atomic files -> the same split
    atomic = load_atomic(_write_atomic(tmp_path / "tiny"))
    a, b = leave_one_out(atomic.interactions), leave_one_out(ds.interactions)
    assert [atomic.catalog.item_ids[i] for i in a.test.targets] == [
        cat.item_ids[i] for i in b.test.targets
    ]
    assert [cat.item_ids[i] for i in b.test.targets] == ["20", "40"]  # u1 tie: file order


def test_event_log_mostly_garbage_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.jsonl"
    path.write_text("\n".join(["{}", "[1]", "nope", json.dumps(_event("u", "i", 1.0, 0))]))
    with pytest.raises(DataError, match="3 of 4 lines are malformed"):
        load_event_log(path)
    only_search = tmp_path / "s.jsonl"
    only_search.write_text(json.dumps({"event_id": "s", "user_id": "u", "text": "x", "ts": 1}))
    with pytest.raises(DataError, match="no valid user-events"):
        load_dataset(str(only_search))
