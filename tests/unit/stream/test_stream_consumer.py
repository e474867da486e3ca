"""AtLeastOnceConsumer: never commit past an input record the agent did not ack."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from faust.types import TP
from intervaltree import IntervalTree

from stream.consumer import AtLeastOnceConsumer, RecordsSkipped, install

UE = TP("user-events", 0)


class FakeThread:
    def __init__(self, committed: dict[TP, int | None], earliest: int = 0) -> None:
        self.committed = committed
        self.earliest = earliest
        self.to_beginning: list[TP] = []

    async def seek_to_committed(self) -> dict[TP, int | None]:
        return self.committed

    async def seek_to_beginning(self, *tps: TP) -> None:
        self.to_beginning.extend(tps)

    async def earliest_offsets(self, *tps: TP) -> dict[TP, int]:
        return dict.fromkeys(tps, self.earliest)


def consumer(
    committed: dict[TP, int | None] | None = None, changelogs: set[str] | None = None
) -> tuple[Any, FakeThread]:
    """The consumer's offset logic without Faust's service machinery."""
    c: Any = object.__new__(AtLeastOnceConsumer)
    thread = FakeThread(committed or {})
    c._thread = thread
    c.app = SimpleNamespace(tables=SimpleNamespace(changelog_topics=changelogs or set()))
    c._floor = {}
    c._read_offset = {}  # Faust's fetch loop: last offset it delivered, per tp
    c._expected = {}
    c._rewound = {}
    c._acked = defaultdict(list)
    c._acked_index = defaultdict(set)
    c._gap = defaultdict(IntervalTree)
    c._committed_offset = defaultdict(lambda: None)
    c.crashed_with = []

    async def crash(exc: BaseException) -> None:
        c.crashed_with.append(exc)

    c.crash = crash
    return c, thread


def ack(c: Any, tp: TP, *offsets: int) -> None:
    for o in offsets:
        c._acked[tp].append(o)
        c._acked_index[tp].add(o)


def test_only_uncommitted_input_partitions_are_sought_to_the_beginning() -> None:
    committed = {
        TP("user-events", 0): 120,  # aiokafka already sought it
        TP("user-events", 1): None,  # nothing committed: aiokafka did not seek
        TP("search-text", 2): 0,  # committed 0: aiokafka does not seek either
        TP("app-user_sequence-changelog", 1): None,  # recovery positions changelogs
    }
    c, thread = consumer(committed, {"app-user_sequence-changelog"})
    result = asyncio.run(c.seek_to_committed())
    assert result == committed  # Faust's view of committed offsets is unchanged
    assert sorted(thread.to_beginning) == [TP("search-text", 2), TP("user-events", 1)]
    assert c._floor == {TP("search-text", 2): 0, TP("user-events", 1): 0}


def test_commits_the_consecutive_acked_run() -> None:
    c, _ = consumer()
    c._committed_offset[UE] = 10
    ack(c, UE, 12, 10, 11, 15)
    assert c._new_offset(UE) == 13
    assert c._acked[UE] == [15]


def test_no_commit_past_unacked_records_when_nothing_is_committed_yet() -> None:
    # Faust skipped its head check here (committed None): records 0..140 dropped by
    # a rebalance, 141.. acked, and it committed 142, losing 0..140.
    c, _ = consumer()
    ack(c, UE, *range(141, 200))
    assert c._new_offset(UE) is None
    ack(c, UE, *range(0, 141))
    assert c._new_offset(UE) == 200


def test_head_check_uses_the_partitions_beginning_after_retention() -> None:
    c, _ = consumer({UE: None})
    c._thread.earliest = 5000  # older records deleted by retention
    asyncio.run(c.seek_to_committed())
    ack(c, UE, 5000, 5001)
    assert c._new_offset(UE) == 5002


def test_one_offset_hole_is_a_transaction_marker_and_is_committed_through() -> None:
    c, _ = consumer()
    c._committed_offset[UE] = 10
    asyncio.run(c._add_gap(UE, 12, 13))  # offset 12 never delivered: a marker
    ack(c, UE, 10, 11, 13, 14)
    assert c._new_offset(UE) == 15
    assert c.crashed_with == []


def test_a_wider_jump_stops_the_worker_instead_of_committing_through_it() -> None:
    c, _ = consumer()
    c._committed_offset[UE] = 49
    ack(c, UE, *range(49, 323))
    with pytest.raises(RecordsSkipped, match=r"323\.\.817"):
        asyncio.run(c._add_gap(UE, 323, 818))
    assert isinstance(c.crashed_with[0], RecordsSkipped)
    ack(c, UE, *range(818, 900))
    assert c._new_offset(UE) == 323  # the acked run before the hole, never beyond
    assert c._new_offset(UE) is None


def test_install_makes_the_worker_app_build_this_consumer(tmp_path: Path) -> None:
    from recstream.settings import Settings
    from stream.app import create_app
    from stream.settings import WorkerSettings

    settings = Settings(state_dir=tmp_path)
    app = create_app(settings, WorkerSettings(store="memory://"), loader=lambda p: None)  # type: ignore[arg-type,return-value]
    # The consumer itself is built lazily by the worker from this class.
    assert issubclass(app.transport.Consumer, AtLeastOnceConsumer)
    assert app.transport.Consumer.skip_hooks == (app.recstream.count_skipped,)  # type: ignore[attr-defined]
    install(app)  # idempotent
    assert issubclass(app.transport.Consumer, AtLeastOnceConsumer)


def test_a_hole_in_fetched_records_rewinds_the_partition_and_keeps_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import faust.transport.consumer as faust_consumer

    fetched = [
        *range(0, 90),
        *range(99, 106),  # 90..98 dropped by Faust: the hole
        *range(106, 110),  # still in the same fetch: discarded until the rewind lands
        *range(90, 120),  # after the seek back
    ]

    async def getmany(self: Any, timeout: float) -> Any:
        for o in fetched:
            yield UE, SimpleNamespace(offset=o)

    monkeypatch.setattr(faust_consumer.Consumer, "getmany", getmany)
    c, _ = consumer({UE: 0})
    seeks: list[tuple[TP, int]] = []

    async def seek(tp: TP, offset: int) -> None:
        seeks.append((tp, offset))

    c.seek = seek

    async def run() -> list[int]:
        await c.seek_to_committed()  # assignment: expect offset 0 (committed 0 = start)
        return [m.offset async for _, m in c.getmany(1.0)]

    assert asyncio.run(run()) == list(range(0, 120))
    assert seeks == [(UE, 90)]


def test_one_offset_holes_and_seeks_back_pass_through(monkeypatch: pytest.MonkeyPatch) -> None:
    import faust.transport.consumer as faust_consumer

    fetched = [10, 11, 13, 14, 12, 13, 14, 15]  # a marker at 12 is not a hole; then a re-read

    async def getmany(self: Any, timeout: float) -> Any:
        for o in fetched:
            yield UE, SimpleNamespace(offset=o)

    monkeypatch.setattr(faust_consumer.Consumer, "getmany", getmany)
    c, _ = consumer({UE: 10})

    async def run() -> list[int]:
        await c.seek_to_committed()
        return [m.offset async for _, m in c.getmany(1.0)]

    assert asyncio.run(run()) == fetched


def test_committed_position_is_the_commit_or_the_partitions_beginning() -> None:
    c, _ = consumer()
    c._committed_offset[UE] = 120
    c._floor[TP("user-events", 1)] = 5000  # retention deleted the older records
    assert c.committed_position(UE) == 120
    assert c.committed_position(TP("user-events", 1)) == 5000
    assert c.committed_position(TP("user-events", 2)) == 0


def test_a_jump_below_the_committed_position_is_not_a_hole() -> None:
    # A rebalance sought the partition to its commit (96) while Faust's fetch loop still
    # held 77 as its last read offset: 78..95 were processed and committed already.
    c, _ = consumer()
    c._committed_offset[UE] = 96
    asyncio.run(c._add_gap(UE, 78, 96))
    assert c.crashed_with == []
    assert not c._gap[UE]
    ack(c, UE, 96, 97)
    assert c._new_offset(UE) == 98


def test_a_hole_above_the_committed_position_still_stops_the_worker() -> None:
    c, _ = consumer()
    c._committed_offset[UE] = 80
    with pytest.raises(RecordsSkipped, match=r"80\.\.95"):
        asyncio.run(c._add_gap(UE, 78, 96))


def test_a_jump_from_the_fetch_loops_read_offset_is_rewound_before_delivery(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Seen in CI: this generator had no hole of its own, but Faust's fetch loop held 31
    # as its last read offset (a rebalance raced it) and would have flagged 32..53.
    import faust.transport.consumer as faust_consumer

    fetched = [54, 55, *range(32, 60)]

    async def getmany(self: Any, timeout: float) -> Any:
        for o in fetched:
            yield UE, SimpleNamespace(offset=o)

    monkeypatch.setattr(faust_consumer.Consumer, "getmany", getmany)
    c, _ = consumer()
    c._committed_offset[UE] = 20
    c._expected[UE] = 54
    c._read_offset[UE] = 31
    seeks: list[tuple[TP, int]] = []

    async def seek(tp: TP, offset: int) -> None:
        seeks.append((tp, offset))
        c._read_offset[tp] = offset

    c.seek = seek

    async def run() -> list[int]:
        delivered = []
        async for tp, m in c.getmany(1.0):  # as Faust's fetch loop does
            delivered.append(m.offset)
            c._read_offset[tp] = m.offset
        return delivered

    assert asyncio.run(run()) == list(range(32, 60))
    assert seeks == [(UE, 32)]


def test_worker_that_stopped_on_skipped_records_restarts_itself_in_place(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import os
    import sys

    import faust

    from stream import cli, consumer

    class StoppedWorker:
        def __init__(self, app: object, loglevel: str) -> None: ...

        def execute_from_commandline(self) -> None:
            raise SystemExit(1)  # what mode's Worker does after a crash

    execs: list[tuple[str, list[str]]] = []
    monkeypatch.setattr(faust, "Worker", StoppedWorker)
    monkeypatch.setattr(os, "execv", lambda path, argv: execs.append((path, argv)))
    monkeypatch.setattr(consumer, "_skipped", [])
    monkeypatch.setenv("RECSTREAM_WORKER_SELF_RESTARTS", "0")  # restored afterwards

    with pytest.raises(SystemExit):  # another crash: no restart
        cli.run_worker(object())
    assert execs == []

    consumer._skipped.append(RecordsSkipped("x"))
    with pytest.raises(SystemExit):
        cli.run_worker(object())
    assert execs == [(sys.executable, [sys.executable, *sys.orig_argv[1:]])]
    assert os.environ["RECSTREAM_WORKER_SELF_RESTARTS"] == "1"

    monkeypatch.setenv("RECSTREAM_WORKER_SELF_RESTARTS", str(cli.MAX_SELF_RESTARTS))
    with pytest.raises(SystemExit):  # a restart loop ends: the supervisor takes over
        cli.run_worker(object())
    assert len(execs) == 1


def fetching(monkeypatch: pytest.MonkeyPatch, offsets: list[int]) -> None:
    import faust.transport.consumer as faust_consumer

    async def getmany(self: Any, timeout: float) -> Any:
        for o in offsets:
            yield UE, SimpleNamespace(offset=o)

    monkeypatch.setattr(faust_consumer.Consumer, "getmany", getmany)


def recording(c: Any) -> tuple[list[tuple[TP, int]], list[tuple[TP, int, int]]]:
    seeks: list[tuple[TP, int]] = []
    skips: list[tuple[TP, int, int]] = []

    async def seek(tp: TP, offset: int) -> None:
        seeks.append((tp, offset))

    c.seek = seek
    c.skip_hooks = (lambda tp, first, resume: skips.append((tp, first, resume)),)
    return seeks, skips


def test_committed_offset_deleted_meanwhile_resumes_at_the_earliest_record(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Stopped at 50; DeleteRecords (or retention) removed 50..79 before the restart:
    # aiokafka resets to 80. Waiting for 50 would drop every record from 80 on forever.
    fetching(monkeypatch, list(range(80, 100)))
    c, thread = consumer({UE: 50})
    thread.earliest = 80
    seeks, skips = recording(c)

    async def run() -> list[int]:
        await c.seek_to_committed()
        return [m.offset async for _, m in c.getmany(1.0)]

    assert asyncio.run(run()) == list(range(80, 100))
    assert seeks == [] and skips == [(UE, 50, 80)]
    assert c.committed_position(UE) == 80
    asyncio.run(c._add_gap(UE, 51, 80))  # Faust's loop sees 50 -> 80: not a hole any more
    assert c.crashed_with == []
    ack(c, UE, *range(80, 100))
    assert c._new_offset(UE) == 100  # commits go on past the skipped range


def test_a_rewind_landing_beyond_its_target_accepts_the_first_record_that_exists(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 12..14 compacted away: the seek back to 12 lands on 15 (offsets went back).
    fetching(monkeypatch, [10, 11, 15, 16, 17, 15, 16, 17, 18])
    c, _ = consumer({UE: 10})
    seeks, skips = recording(c)

    async def run() -> list[int]:
        await c.seek_to_committed()
        return [m.offset async for _, m in c.getmany(1.0)]

    assert asyncio.run(run()) == [10, 11, 15, 16, 17, 18]
    assert seeks == [(UE, 12)] and skips == [(UE, 12, 15)]


def test_a_rewind_that_waits_too_long_asks_where_the_partition_begins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Retention moved the start past the rewind's target while it waited: no record it
    # waits for will come; the new start is sought and delivered from there.
    import faust.transport.consumer as faust_consumer

    import stream.consumer as sc

    c, thread = consumer({UE: 10})

    async def getmany(self: Any, timeout: float) -> Any:
        for o in [10, 11, 40, 41, 42, 43, 30, 31]:
            if o == 41:
                thread.earliest = 30  # deleted while the rewind to 12 waits
            yield UE, SimpleNamespace(offset=o)

    monkeypatch.setattr(faust_consumer.Consumer, "getmany", getmany)
    seeks, skips = recording(c)
    monkeypatch.setattr(sc, "RECHECK_S", -1.0)

    async def run() -> list[int]:
        await c.seek_to_committed()
        return [m.offset async for _, m in c.getmany(1.0)]

    assert asyncio.run(run()) == [10, 11, 30, 31]
    # 42 and 43 still came before the seek to 30 landed: each recheck seeks it again
    assert seeks == [(UE, 12), (UE, 30), (UE, 30), (UE, 30)] and skips == [(UE, 12, 30)]


def test_a_rewind_whose_seek_was_lost_seeks_again(monkeypatch: pytest.MonkeyPatch) -> None:
    # The seek back to 12 never took effect (lost to a rebalance): only records after the
    # hole keep coming; after RECHECK_S the rewind seeks again and 12.. are delivered.
    import stream.consumer as sc

    fetching(monkeypatch, [10, 11, 14, 15, 16, 12, 13, 14, 15])
    c, _ = consumer({UE: 10})
    seeks, skips = recording(c)
    monkeypatch.setattr(sc, "RECHECK_S", -1.0)

    async def run() -> list[int]:
        await c.seek_to_committed()
        return [m.offset async for _, m in c.getmany(1.0)]

    assert asyncio.run(run()) == [10, 11, 12, 13, 14, 15]
    assert seeks == [(UE, 12), (UE, 12), (UE, 12)] and skips == []
