"""Topics as the deployment asks for them: declared once, reconciled with the brokers.

A :class:`TopicSpec` says what one topic must look like. :func:`plan` compares
specs with what the brokers report and says what to do (pure, unit-tested);
:func:`reconcile` asks the brokers, creates the missing topics and brings the
configs of existing ones in line. What cannot be changed safely in place is an
error naming the topic and the way out:

- a partition count that users' state is keyed on (inputs and changelogs:
  adding partitions moves users to other partitions and orphans their state);
- a replication factor below the one asked (raising it is a partition
  reassignment, ``kafka-reassign-partitions``, not a config change).

Only the configs a spec names are managed (``cleanup.policy``,
``min.insync.replicas``, ...); other topic-level overrides an operator set
(retention, say) are kept.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError, for_code

from recstream.errors import ConfigError
from recstream.kafka_admin import client_kwargs, wait_for_leaders
from recstream.settings import KafkaSecurity

log = logging.getLogger(__name__)

__all__ = ["ObservedTopic", "TopicAction", "TopicConfigError", "TopicSpec", "plan", "reconcile"]

DYNAMIC_TOPIC_CONFIG = 1  # DescribeConfigs config_source of a topic-level override


class TopicConfigError(ConfigError):
    """An existing topic differs from its spec in a way that cannot be fixed in place."""


@dataclass(frozen=True)
class TopicSpec:
    """What one topic must look like."""

    name: str
    partitions: int
    replication_factor: int
    configs: Mapping[str, str] = field(default_factory=dict)
    # Users' state is keyed on this topic's partitioning (inputs, changelogs): an existing
    # topic with another count is an error. Other topics serve with any count.
    keyed: bool = False


@dataclass(frozen=True)
class ObservedTopic:
    """An existing topic as the brokers describe it."""

    partitions: int
    replication_factor: int  # the smallest over its partitions
    configs: Mapping[str, str]  # current value of every config (any source)
    overrides: Mapping[str, str]  # topic-level overrides only (kept when altering)


@dataclass(frozen=True)
class TopicAction:
    topic: str
    action: Literal["create", "alter", "ok"]
    # config -> (current value, wanted value), for "alter"
    changes: Mapping[str, tuple[str | None, str]] = field(default_factory=dict)

    def describe(self) -> str:
        if self.action != "alter":
            return f"{self.topic}: {self.action}"
        diff = ", ".join(f"{k} {old} -> {new}" for k, (old, new) in sorted(self.changes.items()))
        return f"{self.topic}: alter {diff}"


def plan(
    specs: Sequence[TopicSpec], observed: Mapping[str, ObservedTopic]
) -> tuple[list[TopicAction], list[str]]:
    """``(actions, problems)``: what to do per spec, and what cannot be done in place."""
    actions: list[TopicAction] = []
    problems: list[str] = []
    for spec in specs:
        have = observed.get(spec.name)
        if have is None:
            actions.append(TopicAction(spec.name, "create"))
            continue
        if spec.keyed and have.partitions != spec.partitions:
            problems.append(
                f"topic {spec.name} has {have.partitions} partitions, {spec.partitions} are "
                "asked: users' state is keyed on them, so it is not altered (deploy/README.md, "
                "'Scaling out', says how to migrate)"
            )
        if have.replication_factor < spec.replication_factor:
            problems.append(
                f"topic {spec.name} has replication factor {have.replication_factor}, "
                f"{spec.replication_factor} is asked: raise it with kafka-reassign-partitions "
                "(a config cannot change it)"
            )
        changes = {
            k: (have.configs.get(k), v) for k, v in spec.configs.items() if have.configs.get(k) != v
        }
        actions.append(TopicAction(spec.name, "alter" if changes else "ok", changes))
    return actions, problems


async def reconcile(
    bootstrap: str,
    specs: Sequence[TopicSpec],
    *,
    security: KafkaSecurity | None = None,
    apply: bool = True,
) -> list[TopicAction]:
    """Bring the brokers' topics in line with ``specs``; return what was (or, without
    ``apply``, would be) done. Raises :class:`TopicConfigError` for what cannot be."""
    admin = AIOKafkaAdminClient(**client_kwargs(bootstrap, security))
    await admin.start()
    try:
        observed = await _observe(admin, [s.name for s in specs])
        actions, problems = plan(specs, observed)
        if problems:
            raise TopicConfigError("; ".join(problems))
        if apply:
            by_name = {s.name: s for s in specs}
            await _create(admin, [by_name[a.topic] for a in actions if a.action == "create"])
            await _alter(admin, [a for a in actions if a.action == "alter"], observed)
        return actions
    finally:
        await admin.close()


async def _observe(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, ObservedTopic]:
    existing = set(await admin.list_topics())
    present = [n for n in dict.fromkeys(names) if n in existing]
    if not present:
        return {}
    described = {t["topic"]: t for t in await admin.describe_topics(present)}
    configs = await _configs(admin, present)
    out = {}
    for name in present:
        parts = described[name]["partitions"]
        current, overrides = configs[name]
        out[name] = ObservedTopic(
            partitions=len(parts),
            replication_factor=min((len(p["replicas"]) for p in parts), default=0),
            configs=current,
            overrides=overrides,
        )
    return out


async def _configs(
    admin: AIOKafkaAdminClient, names: Iterable[str]
) -> dict[str, tuple[dict[str, str], dict[str, str]]]:
    resources = [ConfigResource(ConfigResourceType.TOPIC, n) for n in names]
    out: dict[str, tuple[dict[str, str], dict[str, str]]] = {}
    for response in await admin.describe_configs(resources):
        for res in response.to_object()["resources"]:
            _raise_for(res["error_code"], res.get("error_message"), res["resource_name"])
            current: dict[str, str] = {}
            overrides: dict[str, str] = {}
            for entry in res["config_entries"]:
                # aiokafka names the field "config_names" in DescribeConfigs v1+ responses
                key = entry.get("config_names", entry.get("config_name"))
                current[key] = entry["config_value"]
                if entry.get("config_source") == DYNAMIC_TOPIC_CONFIG:
                    overrides[key] = entry["config_value"]
            out[res["resource_name"]] = (current, overrides)
    return out


async def _create(admin: AIOKafkaAdminClient, specs: list[TopicSpec]) -> None:
    if not specs:
        return
    new = [
        NewTopic(s.name, s.partitions, s.replication_factor, topic_configs=dict(s.configs))
        for s in specs
    ]
    try:
        response = await admin.create_topics(new)
    except TopicAlreadyExistsError:  # raced another creator (a second worker): fine
        response = None
    if response is not None:
        for name, code, *rest in response.topic_errors:
            if code and for_code(code) is not TopicAlreadyExistsError:
                message = rest[0] if rest and isinstance(rest[0], str) else None
                _raise_for(code, message, name)
    for s in specs:
        log.info(
            "created topic %s (%d partitions, replication %d, %s)",
            s.name, s.partitions, s.replication_factor, dict(s.configs),
        )  # fmt: skip
    await wait_for_leaders(admin, [s.name for s in specs])


async def _alter(
    admin: AIOKafkaAdminClient, actions: list[TopicAction], observed: Mapping[str, ObservedTopic]
) -> None:
    if not actions:
        return
    # AlterConfigs (the request aiokafka offers) replaces every topic-level override:
    # send the ones already set along with the changes so they are kept.
    resources = [
        ConfigResource(
            ConfigResourceType.TOPIC,
            a.topic,
            {**observed[a.topic].overrides, **{k: new for k, (_, new) in a.changes.items()}},
        )
        for a in actions
    ]
    for response in await admin.alter_configs(resources):
        for code, message, _type, name, *_ in response.resources:
            _raise_for(code, message, name)
    for a in actions:
        log.info("configured %s", a.describe())


def _raise_for(code: int, message: Any, topic: str) -> None:
    if code:
        err = for_code(code)
        raise TopicConfigError(f"topic {topic}: {err.__name__} {message or ''}".strip())
