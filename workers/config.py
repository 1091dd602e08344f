"""The worker's view of GET /config/{name}: a typed, validated document.

Every problem names the key path, so a supervisor/worker mismatch shows up as one clear line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class ConfigError(ValueError):
    """The config document from the config server is not what the worker needs."""


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap_servers: str
    topic: str
    consumer_group: str
    min_insync_replicas: int = 2   # the topic's; assumed 2 when the config server does not say


@dataclass(frozen=True)
class HazelcastSettings:
    cluster_name: str
    members: tuple[str, ...]
    own_member: str | None
    map: str

    def members_own_first(self) -> list[str]:
        """Own member first, then the others: the client connects there first and fails over."""
        rest = [m for m in self.members if m != self.own_member]
        return ([self.own_member] if self.own_member else []) + rest


@dataclass(frozen=True)
class WorkerConfig:
    name: str
    service: str
    kafka: KafkaSettings
    hazelcast: HazelcastSettings
    max_message_bytes: int
    settings: Mapping[str, Any] = field(default_factory=dict)

    def setting(self, key: str, default: Any, kind: type | tuple[type, ...]) -> Any:
        """An optional per-service setting with a type check (bool is not a number here)."""
        value = self.settings.get(key, default)
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            raise ConfigError(f"settings.{key}: expected {'/'.join(k.__name__ for k in kinds)}, got {value!r}")
        return value


def _get(doc: Mapping[str, Any], path: str, kind: type | tuple[type, ...]) -> Any:
    node: Any = doc
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise ConfigError(f"config: missing key {path!r}")
        node = node[part]
    if not isinstance(node, kind) or (isinstance(node, bool) and kind is int):
        raise ConfigError(f"config: {path} has bad value {node!r}")
    return node


def parse_config(doc: object) -> WorkerConfig:
    """Turn the JSON document of GET /config/{name} into a WorkerConfig, or raise ConfigError."""
    if not isinstance(doc, Mapping):
        raise ConfigError(f"config: expected a JSON object, got {type(doc).__name__}")
    members = _get(doc, "hazelcast.members", list)
    if not members or not all(isinstance(m, str) and m for m in members):
        raise ConfigError(f"config: hazelcast.members has bad value {members!r}")
    own = doc["hazelcast"].get("own_member")
    if own is not None and not isinstance(own, str):
        raise ConfigError(f"config: hazelcast.own_member has bad value {own!r}")
    max_bytes = _get(doc, "limits.max_message_bytes", int)
    if max_bytes <= 0:
        raise ConfigError(f"config: limits.max_message_bytes has bad value {max_bytes!r}")
    kafka = doc.get("kafka")
    min_isr = kafka.get("min_insync_replicas", 2) if isinstance(kafka, Mapping) else 2
    if not isinstance(min_isr, int) or isinstance(min_isr, bool) or min_isr < 1:
        raise ConfigError(f"config: kafka.min_insync_replicas has bad value {min_isr!r}")
    settings = doc.get("settings") or {}
    if not isinstance(settings, Mapping):
        raise ConfigError(f"config: settings has bad value {settings!r}")
    return WorkerConfig(
        name=_get(doc, "name", str),
        service=_get(doc, "service", str),
        kafka=KafkaSettings(
            bootstrap_servers=_get(doc, "kafka.bootstrap_servers", str),
            topic=_get(doc, "kafka.topic", str),
            consumer_group=_get(doc, "kafka.consumer_group", str),
            min_insync_replicas=min_isr,
        ),
        hazelcast=HazelcastSettings(
            cluster_name=_get(doc, "hazelcast.cluster_name", str),
            members=tuple(members),
            own_member=own,
            map=_get(doc, "hazelcast.map", str),
        ),
        max_message_bytes=max_bytes,
        settings=dict(settings),
    )
