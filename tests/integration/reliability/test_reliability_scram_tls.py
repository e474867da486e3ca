"""Clients configured only through RECSTREAM_SECURITY__* reach a SCRAM-SHA-512 + TLS broker
with the right secret, are refused with a wrong one, and no password reaches a log."""

from __future__ import annotations

import asyncio
import logging
import uuid

import pytest
from aiokafka.errors import KafkaError as AIOKafkaError

from recstream.kafka_admin import ensure_topics, wait_for_broker
from recstream.settings import Settings
from tests.conftest import unique_topics
from tests.integration.reliability.conftest import SecureKafka
from tests.integration.reliability.kafkaio import produce_all, read_topic

pytestmark = pytest.mark.integration


def env_settings(monkeypatch: pytest.MonkeyPatch, secure: SecureKafka, password: str) -> Settings:
    for key, value in {
        "RECSTREAM_BOOTSTRAP": secure.bootstrap,
        "RECSTREAM_SECURITY__PROTOCOL": "SASL_SSL",
        "RECSTREAM_SECURITY__SASL_MECHANISM": "SCRAM-SHA-512",
        "RECSTREAM_SECURITY__USERNAME": secure.user,
        "RECSTREAM_SECURITY__PASSWORD": password,
        "RECSTREAM_SECURITY__SSL_CAFILE": str(secure.scram.tls.ca_pem),
    }.items():
        monkeypatch.setenv(key, value)
    return Settings()


def test_scram_tls_right_secret_works_wrong_is_refused_and_nothing_logs_it(
    secure_kafka: SecureKafka, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # everything aiokafka and recstream say
    right = secure_kafka.scram.users[secure_kafka.user].get_secret_value()
    wrong = right[::-1] + "x"
    topic = f"secure-{uuid.uuid4().hex[:8]}"

    good = env_settings(monkeypatch, secure_kafka, right)
    assert right not in repr(good) and right not in str(good.model_dump())
    asyncio.run(ensure_topics(good.bootstrap, [topic], partitions=2, security=good.security))
    sent = [(f"u{i}".encode(), f"v{i}".encode()) for i in range(50)]
    assert asyncio.run(produce_all(good.bootstrap, topic, sent, good.security)) == 50
    got = asyncio.run(read_topic(good.bootstrap, topic, security=good.security, timeout_s=30))
    assert sorted(r.value for r in got) == sorted(v for _, v in sent)

    bad = env_settings(monkeypatch, secure_kafka, wrong)
    with pytest.raises(AIOKafkaError):
        asyncio.run(produce_all(bad.bootstrap, topic, [(b"u", b"intruder")], bad.security))
    from recstream.errors import KafkaError

    with pytest.raises(KafkaError):  # a wrong secret never gets metadata either
        asyncio.run(wait_for_broker(bad.bootstrap, timeout_s=5, security=bad.security))
    with pytest.raises(KafkaError):  # nor does a client that skips TLS and SASL
        asyncio.run(wait_for_broker(bad.bootstrap, timeout_s=5))
    got = asyncio.run(read_topic(good.bootstrap, topic, security=good.security, timeout_s=30))
    assert b"intruder" not in {r.value for r in got}, "the refused client wrote nothing"

    broker_pw = secure_kafka.scram.users["broker"].get_secret_value()
    logs = [p for p in (secure_kafka.broker.home / "logs").iterdir() if p.is_file()]
    assert logs and any(p.stat().st_size for p in logs)
    broker_text = "\n".join(p.read_text(errors="replace") for p in logs)
    assert "Failed authentication" in broker_text or "SaslAuthenticat" in broker_text
    for secret in (right, wrong, broker_pw, secure_kafka.scram.tls.store_password):
        assert secret not in broker_text, "a secret in the broker's logs"
        assert secret not in caplog.text, "a secret in the client's logs"


def security_env(secure: SecureKafka, password: str) -> dict[str, str]:
    return {
        "RECSTREAM_SECURITY__PROTOCOL": "SASL_SSL",
        "RECSTREAM_SECURITY__SASL_MECHANISM": "SCRAM-SHA-512",
        "RECSTREAM_SECURITY__USERNAME": secure.user,
        "RECSTREAM_SECURITY__PASSWORD": password,
        "RECSTREAM_SECURITY__SSL_CAFILE": str(secure.scram.tls.ca_pem),
    }


async def test_worker_over_scram_tls_answers_with_the_right_secret_only(
    secure_kafka: SecureKafka, rel_bundle, rel_tmp
) -> None:
    pytest.importorskip("tools.process", reason="needs the stream worker")
    from tests.integration.reliability.faults import WorkerPool, drain, run_traffic

    right = secure_kafka.scram.users[secure_kafka.user].get_secret_value()
    wrong = right[::-1] + "x"
    topics = unique_topics()
    sec = secure_kafka.scram.client_security(secure_kafka.user)
    settings = Settings(bootstrap=secure_kafka.bootstrap, topics=topics, security=sec,
                        state_dir=rel_tmp / "state")  # fmt: skip
    await ensure_topics(settings.bootstrap, topics.model_dump().values(), partitions=4,
                        security=sec)  # fmt: skip
    app_id = f"rel-sec-{uuid.uuid4().hex[:8]}"
    pool = WorkerPool(settings, rel_bundle, rel_tmp, app_id)
    try:
        # worker_env carries no security: the worker gets it from the environment only.
        refused = pool.start(security_env(secure_kafka, wrong))
        await asyncio.sleep(20)
        state = refused.readiness()
        assert not (state and state.get("ready")), f"ready with a wrong password: {state}"
        pool.stop_all()

        worker = pool.start(security_env(secure_kafka, right))
        await asyncio.to_thread(worker.wait_ready, 180)
        traffic = await run_traffic(settings, rate=100, seconds=3)
        recs, _ = await drain(settings, traffic, timeout_s=60)
        answered = {r["trigger_event_id"] for r in recs}
        assert set(traffic.events) <= answered and len(traffic.events) >= 250
    finally:
        pool.stop_all()
    texts = [p.log_file.read_text(errors="replace") for p in pool.procs]
    assert "Authentication failed" in texts[0] or "SaslAuthentication" in texts[0], texts[0][-2000:]
    for text in texts:
        assert right not in text and wrong not in text, "a password in a worker log"
