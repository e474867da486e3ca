"""Every topic a worker touches has a spec, with the replication policy the settings ask for.

The list in ``stream.topics`` is what ``recstream topics`` and each worker apply;
here it is checked against the Faust app itself, so a new table (or input) that is
not declared fails here instead of being created by Faust with its defaults.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from recstream.settings import Settings, TopicNames, TopicPolicy
from recstream.topics import ObservedTopic, TopicSpec, plan
from stream.settings import WorkerSettings
from stream.topics import leader_topic, worker_topics


@pytest.fixture
def built(tmp_path: Path):
    from stream.app import create_app

    policy = TopicPolicy(replication_factor=3, min_insync_replicas=2)
    settings = Settings(
        topics=TopicNames(user_events="ue"), topic_policy=policy, state_dir=tmp_path
    )
    ws = WorkerSettings(store="memory://", app_id="unit", partitions=6)
    app = create_app(settings, ws, loader=lambda p: None)  # type: ignore[arg-type,return-value]
    return app, {s.name: s for s in worker_topics(settings, ws)}


def test_every_topic_the_app_uses_has_a_spec(built) -> None:
    app, specs = built
    used = {t.changelog_topic.get_topic_name() for t in app.tables.values()}
    for agent in app.agents.values():  # recommend, and learning's agents
        used |= set(agent.channel.topics)
    names = app.recstream.settings.topics  # type: ignore[attr-defined]
    used |= {names.recommendations, names.dlq, names.item_updates, leader_topic("unit")}
    assert used == set(specs)


def test_specs_carry_the_policy_and_the_right_cleanup(built) -> None:
    app, specs = built
    assert {s.replication_factor for s in specs.values()} == {3}
    assert {s.configs["min.insync.replicas"] for s in specs.values()} == {"2"}
    changelogs = {t.changelog_topic.get_topic_name() for t in app.tables.values()}
    compacted = {n for n, s in specs.items() if s.configs["cleanup.policy"] == "compact"}
    assert compacted == changelogs | {"item-updates"}
    # State is keyed on these partitions: the inputs, item-feedback (the learned table's
    # input, co-partitioned with it) and the changelogs.
    keyed = changelogs | {"ue", "search-text", "item-feedback"}
    assert {n for n, s in specs.items() if s.keyed} == keyed
    assert all(specs[n].partitions == 6 for n in changelogs | {"ue", "search-text"})
    # A delete on the catalog outlives compaction, like any other record.
    assert int(specs["item-updates"].configs["delete.retention.ms"]) == 2**63 - 1


def test_faust_would_create_changelogs_as_the_specs_say(built) -> None:
    # Should Faust declare a changelog itself (it does when the topic is missing).
    app, specs = built
    assert app.conf.topic_replication_factor == 3
    for table in app.tables.values():
        topic = table.changelog_topic
        assert topic.config["min.insync.replicas"] == "2" and topic.compacting
        assert topic.partitions == specs[topic.get_topic_name()].partitions


def test_policy_refuses_more_insync_replicas_than_replicas() -> None:
    with pytest.raises(ValidationError, match="no write could ever succeed"):
        TopicPolicy(replication_factor=2, min_insync_replicas=3)


def _seen(partitions: int = 4, rf: int = 3, **configs: str) -> ObservedTopic:
    current = {"cleanup.policy": "delete", "min.insync.replicas": "1", **configs}
    return ObservedTopic(partitions, rf, current, overrides={"retention.ms": "5"})


def test_plan_creates_missing_and_aligns_configs() -> None:
    want = TopicSpec("t", 4, 3, {"cleanup.policy": "compact", "min.insync.replicas": "2"})
    (create,), problems = plan([want], {})
    assert create.action == "create" and not problems
    (alter,), problems = plan([want], {"t": _seen()})
    assert alter.action == "alter" and not problems
    assert alter.changes == {"cleanup.policy": ("delete", "compact"),
                             "min.insync.replicas": ("1", "2")}  # fmt: skip
    same = _seen(**{"cleanup.policy": "compact", "min.insync.replicas": "2"})
    (ok,), _ = plan([want], {"t": same})
    assert ok.action == "ok"


def test_plan_refuses_what_cannot_change_in_place() -> None:
    keyed = TopicSpec("in", 4, 3, {}, keyed=True)
    free = TopicSpec("out", 4, 3, {})
    _, problems = plan([keyed, free], {"in": _seen(partitions=6), "out": _seen(partitions=6)})
    assert len(problems) == 1 and "topic in has 6 partitions, 4 are asked" in problems[0]
    _, problems = plan([free], {"out": _seen(rf=1)})
    assert "replication factor 1, 3 is asked" in problems[0]
    _, problems = plan([free], {"out": _seen(rf=5)})
    assert not problems  # more replicas than asked harm nothing
