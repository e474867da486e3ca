"""A worker that starts on a backlog answers all of it, however long its model takes.

Records fetched before the model is ready wait in Faust's buffers, and Faust clears
those on every rebalance and after table recovery; they must be fetched again, also
when the group has committed nothing yet (``stream.consumer``). The kill -9 test in
tests/integration/reliability exercises the restart case under load.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

pytestmark = pytest.mark.integration

BACKLOG = 400


async def test_backlog_fetched_while_the_model_loads_is_all_answered(
    workers, make_client, tiny_bundle_root
) -> None:
    async with make_client() as c:
        for n in range(BACKLOG):  # no consumer yet: no group, no committed offset
            user = f"u{n % 37}"
            if n % 5 == 0:
                await c.query(f"q{n}", user, "funny space robots")
            else:
                await c.click(f"c{n}", user, f"i{n % 200}")
        ids = [f"q{n}" if n % 5 == 0 else f"c{n}" for n in range(BACKLOG)]

        worker = workers.start(
            tiny_bundle_root,
            app_id=f"it-backlog-{uuid.uuid4().hex[:8]}",
            extra={
                "RECSTREAM_WORKER_LOADER": "tests.integration.stream.loaders:slow",
                "RECSTREAM_TEST_LOAD_DELAY_S": "4",  # assignment and fetch happen meanwhile
            },
        )
        await asyncio.to_thread(worker.wait_ready, 120)
        await c.wait_recs(ids, timeout=60)
        answered = {r.trigger_event_id for _, _, r, _ in c.recs}
    assert answered == set(ids)
