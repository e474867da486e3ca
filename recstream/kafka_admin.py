"""Small Kafka client helpers shared by the CLI, the worker and the tests.

Everything here uses aiokafka (the same client the worker uses), configured
from :class:`recstream.settings.Settings` so SASL/TLS apply everywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Iterable, Iterator
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError as AIOKafkaError
from aiokafka.errors import TopicAlreadyExistsError

from recstream.errors import KafkaError
from recstream.settings import KafkaSecurity

log = logging.getLogger(__name__)


def client_kwargs(bootstrap: str, security: KafkaSecurity | None = None) -> dict[str, Any]:
    """aiokafka keyword arguments for a bootstrap address and security settings."""
    sec = security or KafkaSecurity()
    kwargs: dict[str, Any] = {"bootstrap_servers": bootstrap, "security_protocol": sec.protocol}
    if sec.protocol in ("SSL", "SASL_SSL"):
        kwargs["ssl_context"] = ssl.create_default_context(
            cafile=str(sec.ssl_cafile) if sec.ssl_cafile else None
        )
    if sec.protocol.startswith("SASL"):
        if not (sec.sasl_mechanism and sec.username and sec.password):
            raise KafkaError(
                f"security.protocol={sec.protocol} needs RECSTREAM_SECURITY__SASL_MECHANISM, "
                "RECSTREAM_SECURITY__USERNAME and RECSTREAM_SECURITY__PASSWORD"
            )
        kwargs.update(
            sasl_mechanism=sec.sasl_mechanism,
            sasl_plain_username=sec.username,
            sasl_plain_password=sec.password.get_secret_value(),
        )
    return kwargs


async def wait_for_broker(
    bootstrap: str,
    *,
    timeout_s: float = 60.0,
    security: KafkaSecurity | None = None,
    alive: Any = None,
    expect_brokers: int = 1,
    quiet: bool = True,
) -> int:
    """Wait until a broker answers a metadata request listing at least ``expect_brokers``
    brokers; return how many it lists.

    ``alive`` (optional callable) is polled between attempts so a broker process
    that died is reported at once instead of after the timeout. ``quiet`` hides
    the client's connection errors ("connection refused" is expected while a
    broker boots); a client of running brokers keeps them, since they say why
    (a refused password, say).
    """
    deadline = time.monotonic() + timeout_s
    if not quiet:
        return await _poll_metadata(bootstrap, deadline, security, alive, expect_brokers)
    with _quiet("aiokafka"):
        return await _poll_metadata(bootstrap, deadline, security, alive, expect_brokers)


async def _poll_metadata(
    bootstrap: str,
    deadline: float,
    security: KafkaSecurity | None,
    alive: Any,
    expect_brokers: int,
) -> int:
    last: object = None
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            raise KafkaError("the broker process exited while starting")
        admin = AIOKafkaAdminClient(**client_kwargs(bootstrap, security), request_timeout_ms=3000)
        try:
            await admin.start()
            cluster = await admin.describe_cluster()
            if len(cluster["brokers"]) >= expect_brokers:
                return len(cluster["brokers"])
            last = f"{len(cluster['brokers'])} of {expect_brokers} brokers"
        except (TimeoutError, AIOKafkaError, OSError) as exc:
            last = exc
        finally:
            await admin.close()
        await asyncio.sleep(0.25)
    raise KafkaError(f"no metadata response from {bootstrap} in time: {last!r}")


async def wait_for_leaders(
    admin: AIOKafkaAdminClient, topics: list[str], timeout_s: float = 30.0
) -> None:
    """New partitions answer NotLeaderForPartition until the controller elects leaders."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        described = await admin.describe_topics(topics)
        if all(
            t["error_code"] == 0
            and t["partitions"]
            and all(p["leader"] >= 0 for p in t["partitions"])
            for t in described
        ):
            return
        await asyncio.sleep(0.1)
    raise KafkaError(f"topics {topics} have no partition leaders after {timeout_s:.0f}s")


@contextlib.contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    logger = logging.getLogger(logger_name)
    old = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(old)


async def ensure_topics(
    bootstrap: str,
    names: Iterable[str],
    *,
    partitions: int = 1,
    replication: int = 1,
    config: dict[str, str] | None = None,
    security: KafkaSecurity | None = None,
) -> list[str]:
    """Create the topics that do not exist yet; return the ones created."""
    admin = AIOKafkaAdminClient(**client_kwargs(bootstrap, security))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [n for n in dict.fromkeys(names) if n not in existing]
        if wanted:
            new = [NewTopic(n, partitions, replication, topic_configs=config or {}) for n in wanted]
            with contextlib.suppress(TopicAlreadyExistsError):  # raced another creator: fine
                await admin.create_topics(new)
            log.info("created topics %s (%d partitions)", wanted, partitions)
            await wait_for_leaders(admin, wanted)
        return wanted
    finally:
        await admin.close()
