"""`topology.yaml` -> frozen dataclasses, with errors that name the key path and the bad value.

The default `topology.yaml` is the schema by example: every key in it is valid, any other key is
rejected (at every level). The full reference with types and defaults is `docs/topology.md`.

Only `services` is required; every other top-level section may be omitted (or left empty) and
gets the defaults below, so a minimal file is::

    services:
      facade: {}

Defaults worth knowing:

- `runtime_dir: .runtime`, relative paths resolve against the topology file's directory.
- Every omitted port is 0 ("any free port"), `config_server.port` included, so a minimal file
  never collides with a running default pipeline; `resolve_ports()` picks real ports. (Workers
  started by hand look for the config server on 8500, which the default topology.yaml sets.)
- `kafka.topic.replication_factor` defaults to `min(3, brokers)` and `min_insync_replicas` to
  `min(2, replication_factor)`, so `brokers: 1` alone is a valid single-broker topology.
- `services.<name>.restart` is a partial override merged over the top-level `restart`.
- `logging`, `messages`, `facade` default to the modules in `DEFAULT_MODULES`; any other service
  must give `module:` or `command:` (not both).

The dataclasses hold plain dicts and tuples (so `dataclasses.asdict()` works); treat them as
read-only. To build a topology in code (tests), pass a dict to `parse_topology()`.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from supervisor.ports import free_port

KAFKA_BACKENDS = ("local", "docker", "external")
HAZELCAST_BACKENDS = ("local", "external")
RESTART_POLICIES = ("always", "on-failure", "never")
DEFAULT_MODULES: Mapping[str, str] = {
    "logging": "workers.logging_service",
    "messages": "workers.messages_service",
    "facade": "workers.facade",
}
COMMAND_FIELDS = ("python", "name", "port", "host", "config_server")
# Infrastructure instances are named kafka-<i> / hazelcast-<i>: a service may not shadow them.
RESERVED_SERVICE_NAMES = ("kafka", "hazelcast")
# Kafka's default message.max.bytes is 1048588 including batch overhead: stay safely below it.
MAX_MESSAGE_BYTES_LIMIT = 1_000_000

_SERVICE_NAME = re.compile(r"[a-z][a-z0-9_]*(?:-[a-z][a-z0-9_]*)*")  # no "-<digits>" segment
_MODULE_NAME = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")


class TopologyError(Exception):
    """A bad topology: `key_path` (e.g. `services.logging.ports[1]`), the bad `value`, the `problem`.

    `source` is the file name shown in the message; `line`/`column` are set for YAML syntax errors.
    `show_value` is False when there is no meaningful value to print (missing or unknown key).
    """

    def __init__(self, key_path: str, value: object, problem: str, *, show_value: bool = True,
                 source: str | None = None, line: int | None = None,
                 column: int | None = None) -> None:
        super().__init__(key_path, value, problem)
        self.key_path = key_path
        self.value = value
        self.problem = problem
        self.show_value = show_value
        self.source = source
        self.line = line
        self.column = column

    def __str__(self) -> str:
        where = self.source or "topology"
        if self.line is not None:
            where = f"{where}:{self.line}"
            if self.column is not None:
                where = f"{where}:{self.column}"
        if not self.key_path:
            return f"{where}: {self.problem}"
        if self.show_value:
            return f"{where}: {self.key_path} = {self.value!r}: {self.problem}"
        return f"{where}: {self.key_path}: {self.problem}"


# ---------------------------------------------------------------------------------------- model


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    min_insync_replicas: int


@dataclass(frozen=True)
class KafkaSpec:
    backend: str  # "local" | "docker" | "external"
    brokers: int
    ports: tuple[int, ...]
    controller_ports: tuple[int, ...]
    heap_mb: int
    bootstrap_servers: tuple[str, ...]
    topic: TopicSpec

    def bootstrap(self) -> str:
        """The bootstrap servers string clients use."""
        if self.backend == "external":
            return ",".join(self.bootstrap_servers)
        _require_resolved("kafka.ports", self.ports)
        return ",".join(f"127.0.0.1:{port}" for port in self.ports)


@dataclass(frozen=True)
class HazelcastSpec:
    backend: str  # "local" | "external"
    members: int
    ports: tuple[int, ...]
    cluster_name: str
    map: str
    heap_mb: int
    addresses: tuple[str, ...]

    def member_addresses(self) -> list[str]:
        """`host:port` of every member, in member order."""
        if self.backend == "external":
            return list(self.addresses)
        _require_resolved("hazelcast.ports", self.ports)
        return [f"127.0.0.1:{port}" for port in self.ports]


@dataclass(frozen=True)
class RestartPolicy:
    policy: str  # "always" | "on-failure" | "never"
    backoff_initial: float
    backoff_max: float
    intensity: int
    period: float


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    instances: int
    ports: tuple[int, ...]
    host: str
    module: str | None
    command: tuple[str, ...] | None  # argv with {python} {name} {port} {host} {config_server}
    restart: RestartPolicy
    replay: bool
    ready_timeout: float
    stop_timeout: float
    env: Mapping[str, str]


@dataclass(frozen=True)
class ConfigServerSpec:
    host: str
    port: int


@dataclass(frozen=True)
class Limits:
    max_message_bytes: int


@dataclass(frozen=True)
class Topology:
    source: Path | None
    runtime_dir: Path
    config_server: ConfigServerSpec
    kafka: KafkaSpec
    hazelcast: HazelcastSpec
    restart: RestartPolicy
    limits: Limits
    services: Mapping[str, ServiceSpec]  # in file order: start order


def _require_resolved(what: str, ports: tuple[int, ...]) -> None:
    if 0 in ports:
        raise ValueError(f"{what} still contain 0 (any free port): call resolve_ports() first")


DEFAULT_RESTART = RestartPolicy(policy="always", backoff_initial=0.5, backoff_max=10.0,
                                intensity=5, period=60.0)

# ------------------------------------------------------------------------------ value checkers


def _kind(value: object) -> str:
    """How a YAML user would call the type of `value`."""
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _wrong_type(path: str, value: object, expected: str) -> TopologyError:
    return TopologyError(path, value, f"{expected}, not {_kind(value)}")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _section(value: object, path: str, known: tuple[str, ...]) -> dict[str, object]:
    """A mapping with only `known` keys; an empty value (`kafka:`) means all defaults."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _wrong_type(path or "(top level)", value, "must be a mapping")
    for key, item in value.items():
        if not isinstance(key, str):
            raise TopologyError(_join(path, str(key)), key, "keys must be strings")
        if key not in known:
            raise TopologyError(_join(path, key), item,
                                f"unknown key (known: {', '.join(known)})", show_value=False)
    return value


def _integer(value: object, path: str, *, minimum: int = 1, maximum: int | None = None) -> int:
    if minimum == 1 and maximum is None:
        expected = "must be a positive integer"
    elif maximum is None:
        expected = f"must be an integer >= {minimum}"
    else:
        expected = f"must be an integer in {minimum}..{maximum}"
    if isinstance(value, bool) or not isinstance(value, int):
        raise _wrong_type(path, value, expected)
    if value < minimum or (maximum is not None and value > maximum):
        raise TopologyError(path, value, expected)
    return value


def _port(value: object, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _wrong_type(path, value, "must be a port number 0..65535")
    if not 0 <= value <= 65535:
        raise TopologyError(path, value, "must be a port number 0..65535 (0 = any free port)")
    return value


def _number(value: object, path: str, *, positive: bool) -> float:
    expected = "must be a positive number" if positive else "must be a number >= 0"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _wrong_type(path, value, f"{expected} (seconds)")
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise TopologyError(path, value, f"{expected} (seconds)")
    return float(value)


def _boolean(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise _wrong_type(path, value, "must be true or false")
    return value


def _text(value: object, path: str, *, pattern: re.Pattern[str] | None = None,
          rule: str = "") -> str:
    """A non-empty string without whitespace, optionally matching `pattern` (described by `rule`)."""
    if not isinstance(value, str):
        raise _wrong_type(path, value, "must be a string")
    if not value or value != value.strip():
        raise TopologyError(path, value, "must be a non-empty string without surrounding spaces")
    if pattern is not None and not pattern.fullmatch(value):
        raise TopologyError(path, value, rule)
    return value


def _host(value: object, path: str) -> str:
    host = _text(value, path)
    if any(ch.isspace() for ch in host) or "/" in host or ":" in host.strip("[]"):
        raise TopologyError(path, value, "must be a bare host name or IPv4 address (no scheme, no port)")
    return host


def _choice(value: object, path: str, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise TopologyError(path, value, f"must be one of {', '.join(choices)}")
    return value


def _list(value: object, path: str) -> list[object]:
    if not isinstance(value, list):
        raise _wrong_type(path, value, "must be a list")
    return value


def _ports(value: object, path: str, count: int, count_key: str) -> tuple[int, ...]:
    """Exactly `count` ports; omitted means all 0 (any free port)."""
    if value is None:
        return (0,) * count
    items = _list(value, path)
    if len(items) != count:
        raise TopologyError(path, value, f"must have exactly {count} entries ({count_key} is {count})")
    return tuple(_port(item, f"{path}[{i}]") for i, item in enumerate(items))


def _address(value: object, path: str) -> str:
    """`host:port` of something outside this machine's control (external backends)."""
    text = _text(value, path)
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise TopologyError(path, value, "must be host:port with a port 1..65535")
    return text


def _addresses(value: object, path: str, *, backend: str) -> tuple[str, ...]:
    items = _list(value, path) if value is not None else []
    if backend == "external" and not items:
        raise TopologyError(path, value if value is not None else [],
                            "must list at least one host:port for backend external")
    if backend != "external" and items:
        raise TopologyError(path, value, f"only used with backend external (backend is {backend!r})")
    return tuple(_address(item, f"{path}[{i}]") for i, item in enumerate(items))


# ------------------------------------------------------------------------------ section parsers


def _parse_config_server(raw: object) -> ConfigServerSpec:
    data = _section(raw, "config_server", ("host", "port"))
    return ConfigServerSpec(host=_host(data.get("host", "127.0.0.1"), "config_server.host"),
                            port=_port(data.get("port", 0), "config_server.port"))


def _parse_topic(raw: object, *, brokers: int, backend: str) -> TopicSpec:
    path = "kafka.topic"
    data = _section(raw, path, ("name", "partitions", "replication_factor", "min_insync_replicas"))
    name = _text(data.get("name", "messages"), f"{path}.name", pattern=_TOPIC_NAME,
                 rule="must be 1..249 characters of letters, digits, '.', '_' or '-'")
    if name in (".", ".."):
        raise TopologyError(f"{path}.name", name, "is not a legal Kafka topic name")
    partitions = _integer(data.get("partitions", 2), f"{path}.partitions")
    rf = _integer(data.get("replication_factor", min(3, brokers)), f"{path}.replication_factor")
    if backend != "external" and rf > brokers:
        raise TopologyError(f"{path}.replication_factor", rf,
                            f"must be <= kafka.brokers ({brokers}) for backend {backend}")
    isr = _integer(data.get("min_insync_replicas", min(2, rf)), f"{path}.min_insync_replicas")
    if isr > rf:
        raise TopologyError(f"{path}.min_insync_replicas", isr,
                            f"must be <= kafka.topic.replication_factor ({rf})")
    return TopicSpec(name=name, partitions=partitions, replication_factor=rf, min_insync_replicas=isr)


def _parse_kafka(raw: object) -> KafkaSpec:
    data = _section(raw, "kafka", ("backend", "brokers", "ports", "controller_ports", "heap_mb",
                                   "bootstrap_servers", "topic"))
    backend = _choice(data.get("backend", "local"), "kafka.backend", KAFKA_BACKENDS)
    brokers = _integer(data.get("brokers", 3), "kafka.brokers")
    return KafkaSpec(
        backend=backend,
        brokers=brokers,
        ports=_ports(data.get("ports"), "kafka.ports", brokers, "kafka.brokers"),
        controller_ports=_ports(data.get("controller_ports"), "kafka.controller_ports", brokers,
                                "kafka.brokers"),
        heap_mb=_integer(data.get("heap_mb", 384), "kafka.heap_mb"),
        bootstrap_servers=_addresses(data.get("bootstrap_servers"), "kafka.bootstrap_servers",
                                     backend=backend),
        topic=_parse_topic(data.get("topic"), brokers=brokers, backend=backend),
    )


def _parse_hazelcast(raw: object) -> HazelcastSpec:
    data = _section(raw, "hazelcast", ("backend", "members", "ports", "cluster_name", "map",
                                       "heap_mb", "addresses"))
    backend = _choice(data.get("backend", "local"), "hazelcast.backend", HAZELCAST_BACKENDS)
    members = _integer(data.get("members", 3), "hazelcast.members")
    return HazelcastSpec(
        backend=backend,
        members=members,
        ports=_ports(data.get("ports"), "hazelcast.ports", members, "hazelcast.members"),
        cluster_name=_text(data.get("cluster_name", "pipeline"), "hazelcast.cluster_name"),
        map=_text(data.get("map", "messages"), "hazelcast.map"),
        heap_mb=_integer(data.get("heap_mb", 256), "hazelcast.heap_mb"),
        addresses=_addresses(data.get("addresses"), "hazelcast.addresses", backend=backend),
    )


_RESTART_KEYS = ("policy", "backoff_initial", "backoff_max", "intensity", "period")


def _parse_restart(raw: object, path: str, base: RestartPolicy) -> RestartPolicy:
    """The keys given in `raw` over `base`; the merged result must still be consistent."""
    data = _section(raw, path, _RESTART_KEYS)
    policy = RestartPolicy(
        policy=_choice(data.get("policy", base.policy), f"{path}.policy", RESTART_POLICIES),
        backoff_initial=_number(data.get("backoff_initial", base.backoff_initial),
                                f"{path}.backoff_initial", positive=False),
        backoff_max=_number(data.get("backoff_max", base.backoff_max), f"{path}.backoff_max",
                            positive=False),
        intensity=_integer(data.get("intensity", base.intensity), f"{path}.intensity", minimum=0),
        period=_number(data.get("period", base.period), f"{path}.period", positive=True),
    )
    if policy.backoff_max < policy.backoff_initial:
        # Blame the key the user wrote in this section, so a service override points at itself.
        if "backoff_max" in data:
            raise TopologyError(f"{path}.backoff_max", data["backoff_max"],
                                f"must be >= backoff_initial ({policy.backoff_initial:g})")
        raise TopologyError(f"{path}.backoff_initial", data.get("backoff_initial"),
                            f"must be <= backoff_max ({policy.backoff_max:g})")
    return policy


def _parse_limits(raw: object) -> Limits:
    data = _section(raw, "limits", ("max_message_bytes",))
    return Limits(max_message_bytes=_integer(data.get("max_message_bytes", 65536),
                                             "limits.max_message_bytes",
                                             maximum=MAX_MESSAGE_BYTES_LIMIT))


def _parse_command(value: object, path: str) -> tuple[str, ...]:
    items = _list(value, path)
    if not items:
        raise TopologyError(path, value, "must not be empty")
    argv: list[str] = []
    for i, item in enumerate(items):
        item_path = f"{path}[{i}]"
        if not isinstance(item, str):
            raise _wrong_type(item_path, item, "must be a string (quote it)")
        try:
            fields = {name for _, name, _, _ in string.Formatter().parse(item) if name is not None}
        except ValueError as exc:
            raise TopologyError(item_path, item, f"bad placeholder: {exc}") from None
        unknown = sorted(fields - set(COMMAND_FIELDS))
        if unknown:
            raise TopologyError(item_path, item, f"unknown placeholder {{{unknown[0]}}} (known: "
                                + ", ".join(f"{{{f}}}" for f in COMMAND_FIELDS) + ")")
        argv.append(item)
    if not argv[0]:
        raise TopologyError(f"{path}[0]", argv[0], "the program must not be empty")
    return tuple(argv)


def _parse_env(value: object, path: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _wrong_type(path, value, "must be a mapping of NAME: 'value'")
    env: dict[str, str] = {}
    for key, item in value.items():
        item_path = _join(path, str(key))
        if not isinstance(key, str) or not _ENV_NAME.fullmatch(key):
            raise TopologyError(item_path, key, "must be an environment variable name "
                                "(letters, digits, _; not starting with a digit)")
        if not isinstance(item, str):
            raise _wrong_type(item_path, item, "must be a string (quote it)")
        env[key] = item
    return env


_SERVICE_KEYS = ("instances", "ports", "host", "module", "command", "restart", "replay",
                 "ready_timeout", "stop_timeout", "env")


def _parse_service(name: object, raw: object, restart: RestartPolicy) -> ServiceSpec:
    path = f"services.{name}"
    if not isinstance(name, str) or not _SERVICE_NAME.fullmatch(name):
        raise TopologyError(path, name, "service name must be lowercase letters, digits, '_' and "
                            "'-', start with a letter, and not end in -<number>")
    if name in RESERVED_SERVICE_NAMES:
        raise TopologyError(path, name, "is reserved for the infrastructure instances")
    data = _section(raw, path, _SERVICE_KEYS)
    instances = _integer(data.get("instances", 1), f"{path}.instances")
    module = data.get("module")
    command = data.get("command")
    if module is not None and command is not None:
        raise TopologyError(f"{path}.command", command, "give either module or command, not both")
    if command is not None:
        argv: tuple[str, ...] | None = _parse_command(command, f"{path}.command")
        module_name = None
    else:
        argv = None
        if module is None:
            module = DEFAULT_MODULES.get(name)
            if module is None:
                raise TopologyError(path, None, "must give module: or command: (only "
                                    f"{', '.join(DEFAULT_MODULES)} have a default)", show_value=False)
        module_name = _text(module, f"{path}.module", pattern=_MODULE_NAME,
                            rule="must be a dotted Python module name, e.g. workers.facade")
    return ServiceSpec(
        name=name,
        instances=instances,
        ports=_ports(data.get("ports"), f"{path}.ports", instances, f"{path}.instances"),
        host=_host(data.get("host", "127.0.0.1"), f"{path}.host"),
        module=module_name,
        command=argv,
        restart=_parse_restart(data.get("restart"), f"{path}.restart", restart),
        replay=_boolean(data.get("replay", False), f"{path}.replay"),
        ready_timeout=_number(data.get("ready_timeout", 30), f"{path}.ready_timeout", positive=True),
        stop_timeout=_number(data.get("stop_timeout", 10), f"{path}.stop_timeout", positive=True),
        env=_parse_env(data.get("env"), f"{path}.env"),
    )


def _parse_services(raw: object, restart: RestartPolicy) -> dict[str, ServiceSpec]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise _wrong_type("services", raw, "must be a mapping of service name to settings")
    return {name: _parse_service(name, spec, restart) for name, spec in raw.items()}


def _parse_runtime_dir(value: object, base_dir: Path) -> Path:
    if not isinstance(value, str) or not value.strip():
        raise _wrong_type("runtime_dir", value, "must be a non-empty path string")
    path = Path(value).expanduser()
    return (path if path.is_absolute() else base_dir / path).resolve()


def _port_slots(topology: Topology) -> Iterator[tuple[str, int]]:
    """(key path, port) of every port in the topology, in file order."""
    yield "config_server.port", topology.config_server.port
    for i, port in enumerate(topology.kafka.ports):
        yield f"kafka.ports[{i}]", port
    for i, port in enumerate(topology.kafka.controller_ports):
        yield f"kafka.controller_ports[{i}]", port
    for i, port in enumerate(topology.hazelcast.ports):
        yield f"hazelcast.ports[{i}]", port
    for name, service in topology.services.items():
        for i, port in enumerate(service.ports):
            yield f"services.{name}.ports[{i}]", port


def _check_distinct_ports(topology: Topology) -> None:
    first_use: dict[int, str] = {}
    for path, port in _port_slots(topology):
        if port == 0:
            continue
        if port in first_use:
            raise TopologyError(path, port, f"port already used by {first_use[port]}")
        first_use[port] = path


_TOP_KEYS = ("runtime_dir", "config_server", "kafka", "hazelcast", "restart", "limits", "services")


def _build(data: object, base_dir: Path, source: Path | None) -> Topology:
    if data is None:
        raise TopologyError("", None, "the file is empty (at least `services:` is required)")
    top = _section(data, "", _TOP_KEYS)
    if "services" not in top:
        raise TopologyError("services", None, "required key missing", show_value=False)
    restart = _parse_restart(top.get("restart"), "restart", DEFAULT_RESTART)
    topology = Topology(
        source=source,
        runtime_dir=_parse_runtime_dir(top.get("runtime_dir", ".runtime"), base_dir),
        config_server=_parse_config_server(top.get("config_server")),
        kafka=_parse_kafka(top.get("kafka")),
        hazelcast=_parse_hazelcast(top.get("hazelcast")),
        restart=restart,
        limits=_parse_limits(top.get("limits")),
        services=_parse_services(top["services"], restart),
    )
    _check_distinct_ports(topology)
    return topology


# --------------------------------------------------------------------------------- public API


def parse_topology(data: object, *, base_dir: Path, source: Path | None = None) -> Topology:
    """Validate already-loaded YAML data; relative `runtime_dir` resolves against `base_dir`."""
    try:
        return _build(data, Path(base_dir), source)
    except TopologyError as exc:
        exc.source = str(source) if source is not None else "topology"
        raise


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys instead of silently keeping the last one."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[object, object]:
    loader.flatten_mapping(node)
    seen: dict[object, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            first = seen.get(key)
        except TypeError:
            continue  # unhashable key: construct_mapping below reports it with its position
        if first is not None:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark,
                f"duplicate key {key!r} (first defined on line {first})", key_node.start_mark)
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_topology(path: str | Path) -> Topology:
    """Read and validate a topology file; every error is a `TopologyError` naming the file."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise TopologyError("", None, f"cannot read topology file: {reason}", source=str(path)) from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise TopologyError("", None, f"invalid YAML: {exc.problem or exc.context}",
                            source=str(path), line=mark.line + 1 if mark else None,
                            column=mark.column + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        raise TopologyError("", None, f"invalid YAML: {exc}", source=str(path)) from None
    try:
        return _build(data, file.resolve().parent, file.absolute())
    except TopologyError as exc:
        exc.source = str(path)
        raise


def resolve_ports(topology: Topology) -> Topology:
    """A copy where every 0 port is a distinct free port on 127.0.0.1 (see supervisor.ports).

    The picks are distinct from each other and from the topology's fixed ports. Another process may
    still take one before it is used, but not an outgoing connection: they are below the ephemeral range.
    """
    taken = {port for _, port in _port_slots(topology) if port}

    def fill(ports: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(port or free_port(taken=taken) for port in ports)

    return replace(
        topology,
        config_server=replace(topology.config_server,
                              port=topology.config_server.port or free_port(taken=taken)),
        kafka=replace(topology.kafka, ports=fill(topology.kafka.ports),
                      controller_ports=fill(topology.kafka.controller_ports)),
        hazelcast=replace(topology.hazelcast, ports=fill(topology.hazelcast.ports)),
        services={name: replace(spec, ports=fill(spec.ports))
                  for name, spec in topology.services.items()},
    )
