"""The Faust app is assembled from settings without touching a broker."""

from __future__ import annotations

from pathlib import Path

import pytest

from recstream.errors import KafkaError
from recstream.settings import KafkaSecurity, Settings, TopicNames
from stream.settings import WorkerSettings


def test_create_app_wires_agent_tables_pages_and_settings(tmp_path: Path) -> None:
    from stream.app import create_app

    topics = TopicNames(user_events="ue", search_text="st")
    settings = Settings(bootstrap="h1:1,h2:2", topics=topics, state_dir=tmp_path)
    ws = WorkerSettings(store="memory://", web_port=16999, app_id="unit", partitions=6)
    app = create_app(settings, ws, loader=lambda p: None)  # type: ignore[arg-type,return-value]
    assert [str(u) for u in app.conf.broker] == ["kafka://h1:1", "kafka://h2:2"]
    assert app.conf.producer_acks == -1 and app.conf.web_port == 16999
    assert app.conf.consumer_auto_offset_reset == "earliest"
    agent = app.agents["recommend"]
    assert set(agent.channel.topics) == {"ue", "st"} and agent.concurrency == 1
    assert {t.name for t in app.tables.values()} == {"user_sequence", "user_interest", "trending"}
    assert all(t.partitions == 6 for t in app.tables.values())
    worker = app.recstream  # type: ignore[attr-defined]
    assert worker.holder.current is None and not worker.catalog.caught_up.is_set()
    assert (tmp_path / "worker").is_dir()


def test_security_settings_become_faust_credentials() -> None:
    import faust

    from stream.app import faust_credentials

    assert faust_credentials(Settings()) is None
    sasl = KafkaSecurity(
        protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512", username="u", password="p"
    )
    creds = faust_credentials(Settings(security=sasl))
    assert isinstance(creds, faust.SASLCredentials) and creds.username == "u"
    assert creds.ssl_context is not None
    with pytest.raises(KafkaError, match="USERNAME"):
        faust_credentials(Settings(security=KafkaSecurity(protocol="SASL_PLAINTEXT")))
