"""topology.yaml -> model: defaults, every kind of bad input, and port resolution. Pure Python."""

from __future__ import annotations

import copy
import dataclasses
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml

from supervisor.topology import (
    DEFAULT_MODULES,
    RestartPolicy,
    Topology,
    TopologyError,
    load_topology,
    parse_topology,
    resolve_ports,
)

DEFAULT_FILE = Path(__file__).resolve().parent.parent / "topology.yaml"


def default_data() -> dict[str, Any]:
    """The shipped topology.yaml as plain data: the base every bad file below mutates."""
    return yaml.safe_load(DEFAULT_FILE.read_text())


def write(tmp_path: Path, data: object, name: str = "topology.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def set_key(data: dict[str, Any], dotted: str, value: object) -> dict[str, Any]:
    """A copy of `data` with `a.b.c` set to `value` (intermediate mappings created)."""
    data = copy.deepcopy(data)
    *parents, last = dotted.split(".")
    node = data
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return data


def drop_key(data: dict[str, Any], dotted: str) -> dict[str, Any]:
    data = copy.deepcopy(data)
    *parents, last = dotted.split(".")
    node = data
    for key in parents:
        node = node[key]
    del node[last]
    return data


def load_error(tmp_path: Path, data: object) -> TopologyError:
    path = write(tmp_path, data)
    with pytest.raises(TopologyError) as info:
        load_topology(path)
    assert str(path) in str(info.value), "the message names the file"
    return info.value


# ------------------------------------------------------------------------------------ good files


def test_default_topology_loads_with_expected_values() -> None:
    topo = load_topology(DEFAULT_FILE)

    assert topo.source == DEFAULT_FILE
    assert topo.runtime_dir == DEFAULT_FILE.parent / ".runtime"
    assert (topo.config_server.host, topo.config_server.port) == ("127.0.0.1", 8500)
    kafka = topo.kafka
    assert (kafka.backend, kafka.brokers, kafka.heap_mb) == ("local", 3, 384)
    assert kafka.ports == (9092, 9093, 9094)
    assert kafka.controller_ports == (9192, 9193, 9194)
    assert kafka.bootstrap() == "127.0.0.1:9092,127.0.0.1:9093,127.0.0.1:9094"
    assert (kafka.topic.name, kafka.topic.partitions) == ("messages", 2)
    assert (kafka.topic.replication_factor, kafka.topic.min_insync_replicas) == (3, 2)
    hz = topo.hazelcast
    assert (hz.backend, hz.members, hz.cluster_name, hz.map, hz.heap_mb) == (
        "local", 3, "pipeline", "messages", 256)
    assert hz.member_addresses() == ["127.0.0.1:5701", "127.0.0.1:5702", "127.0.0.1:5703"]
    assert topo.restart == RestartPolicy("always", 0.5, 10.0, 5, 60.0)
    assert topo.limits.max_message_bytes == 65536
    assert list(topo.services) == ["logging", "messages", "facade"], "file order = start order"
    logging, messages, facade = topo.services.values()
    assert (logging.instances, logging.ports) == (3, (50051, 50052, 50053))
    assert (messages.instances, messages.ports, messages.replay) == (2, (51000, 51001), True)
    assert (facade.instances, facade.ports, facade.replay) == (1, (8080,), False)
    for spec in topo.services.values():
        assert spec.module == DEFAULT_MODULES[spec.name]
        assert spec.command is None
        assert spec.host == "127.0.0.1"
        assert spec.restart == topo.restart
        assert (spec.ready_timeout, spec.stop_timeout, dict(spec.env)) == (30.0, 10.0, {})


def test_model_is_frozen_and_serialisable() -> None:
    topo = load_topology(DEFAULT_FILE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        topo.kafka.brokers = 1  # type: ignore[misc]
    assert dataclasses.asdict(topo)["services"]["facade"]["ports"] == (8080,)


def test_minimal_file_gets_defaults_with_every_port_free(tmp_path: Path) -> None:
    topo = load_topology(write(tmp_path, {"services": {"facade": None}}))

    assert topo.runtime_dir == tmp_path / ".runtime"
    assert topo.config_server.port == 0
    assert topo.kafka.ports == topo.kafka.controller_ports == (0, 0, 0)
    assert topo.hazelcast.ports == (0, 0, 0)
    assert topo.services["facade"].ports == (0,)
    assert topo.services["facade"].module == "workers.facade"
    with pytest.raises(ValueError, match="resolve_ports"):
        topo.kafka.bootstrap()


def test_runtime_dir_relative_to_the_file_and_absolute_kept(tmp_path: Path) -> None:
    sub = tmp_path / "conf"
    sub.mkdir()
    rel = load_topology(write(sub, {"runtime_dir": "../run", "services": {}}))
    assert rel.runtime_dir == tmp_path / "run"
    absolute = load_topology(write(sub, {"runtime_dir": str(tmp_path / "abs"), "services": {}}))
    assert absolute.runtime_dir == tmp_path / "abs"


def test_single_broker_gets_consistent_topic_defaults(tmp_path: Path) -> None:
    topo = parse_topology({"kafka": {"brokers": 1}, "services": {}}, base_dir=tmp_path)
    assert topo.kafka.ports == (0,)
    assert (topo.kafka.topic.replication_factor, topo.kafka.topic.min_insync_replicas) == (1, 1)


def test_service_restart_override_merges_over_top_level(tmp_path: Path) -> None:
    data = set_key(default_data(), "services.logging.restart", {"policy": "on-failure", "intensity": 2})
    topo = parse_topology(data, base_dir=tmp_path)
    assert topo.services["logging"].restart == RestartPolicy("on-failure", 0.5, 10.0, 2, 60.0)
    assert topo.services["facade"].restart == topo.restart


def test_custom_service_with_command_env_and_host(tmp_path: Path) -> None:
    data = {"services": {"echo-worker": {
        "command": ["{python}", "-m", "tests.standins.echo", "--port", "{port}", "--name={name}",
                    "--cs", "{config_server}", "--host", "{host}"],
        "host": "0.0.0.0", "env": {"ECHO_MODE": "loud"}, "ready_timeout": 5, "stop_timeout": 0.5}}}
    spec = parse_topology(data, base_dir=tmp_path).services["echo-worker"]
    assert spec.command is not None and spec.command[0] == "{python}"
    assert spec.module is None
    assert (spec.host, dict(spec.env), spec.ready_timeout, spec.stop_timeout) == (
        "0.0.0.0", {"ECHO_MODE": "loud"}, 5.0, 0.5)


def test_command_replaces_the_default_module(tmp_path: Path) -> None:
    data = set_key(default_data(), "services.facade.command", ["{python}", "-m", "other.facade"])
    spec = parse_topology(data, base_dir=tmp_path).services["facade"]
    assert (spec.module, spec.command) == (None, ("{python}", "-m", "other.facade"))


def test_custom_service_with_module(tmp_path: Path) -> None:
    spec = parse_topology({"services": {"extra": {"module": "tests.standins.sleeper"}}},
                          base_dir=tmp_path).services["extra"]
    assert (spec.module, spec.command) == ("tests.standins.sleeper", None)


def test_external_backends(tmp_path: Path) -> None:
    data = set_key(default_data(), "kafka.backend", "external")
    data = set_key(data, "kafka.bootstrap_servers", ["kafka.example:9092", "10.0.0.2:9092"])
    data = set_key(data, "hazelcast.backend", "external")
    data = set_key(data, "hazelcast.addresses", ["hz.example:5701"])
    topo = parse_topology(data, base_dir=tmp_path)
    assert topo.kafka.bootstrap() == "kafka.example:9092,10.0.0.2:9092"
    assert topo.hazelcast.member_addresses() == ["hz.example:5701"]


# ------------------------------------------------------------------------------------- bad files

BAD_FILES = [
    # (id, mutation of the default file, key path, bad value, words in the problem)
    ("negative-instances", ("set", "services.logging.instances", -1),
     "services.logging.instances", -1, "must be a positive integer"),
    ("bool-is-not-int", ("set", "kafka.brokers", True),
     "kafka.brokers", True, "not a boolean"),
    ("backend-typo", ("set", "kafka.backend", "kafak"),
     "kafka.backend", "kafak", "must be one of local, docker, external"),
    ("hazelcast-backend", ("set", "hazelcast.backend", "docker"),
     "hazelcast.backend", "docker", "must be one of local, external"),
    ("port-too-big", ("set", "services.facade.ports", [70000]),
     "services.facade.ports[0]", 70000, "0..65535"),
    ("port-as-string", ("set", "hazelcast.ports", [5701, "5702", 5703]),
     "hazelcast.ports[1]", "5702", "not a string"),
    ("too-few-ports", ("set", "services.logging.ports", [50051, 50052]),
     "services.logging.ports", [50051, 50052], "exactly 3 entries"),
    ("controller-ports-count", ("set", "kafka.controller_ports", [9192]),
     "kafka.controller_ports", [9192], "exactly 3 entries"),
    ("zero-brokers", ("set", "kafka.brokers", 0), "kafka.brokers", 0, "positive integer"),
    ("zero-members", ("set", "hazelcast.members", 0), "hazelcast.members", 0, "positive integer"),
    ("rf-above-brokers", ("set", "kafka.topic.replication_factor", 4),
     "kafka.topic.replication_factor", 4, "must be <= kafka.brokers (3)"),
    ("isr-above-rf", ("set", "kafka.topic.min_insync_replicas", 4),
     "kafka.topic.min_insync_replicas", 4, "must be <= kafka.topic.replication_factor (3)"),
    ("zero-partitions", ("set", "kafka.topic.partitions", 0),
     "kafka.topic.partitions", 0, "positive integer"),
    ("bad-topic-name", ("set", "kafka.topic.name", "my topic"),
     "kafka.topic.name", "my topic", "letters, digits"),
    ("duplicate-port", ("set", "services.facade.ports", [9093]),
     "services.facade.ports[0]", 9093, "port already used by kafka.ports[1]"),
    ("duplicate-config-port", ("set", "hazelcast.ports", [5701, 8500, 5703]),
     "hazelcast.ports[1]", 8500, "port already used by config_server.port"),
    ("external-without-servers", ("set", "kafka.backend", "external"),
     "kafka.bootstrap_servers", [], "at least one host:port"),
    ("external-without-addresses", ("set", "hazelcast.backend", "external"),
     "hazelcast.addresses", [], "at least one host:port"),
    ("servers-for-local", ("set", "kafka.bootstrap_servers", ["x:1"]),
     "kafka.bootstrap_servers", ["x:1"], "only used with backend external"),
    ("policy-typo", ("set", "restart.policy", "allways"),
     "restart.policy", "allways", "always, on-failure, never"),
    ("backoff-max-below-initial", ("set", "restart.backoff_max", 0.1),
     "restart.backoff_max", 0.1, "must be >= backoff_initial (0.5)"),
    ("service-override-breaks-merge", ("set", "services.facade.restart", {"backoff_initial": 30}),
     "services.facade.restart.backoff_initial", 30, "must be <= backoff_max (10)"),
    ("negative-period", ("set", "restart.period", -5), "restart.period", -5, "positive number"),
    ("replay-not-bool", ("set", "services.messages.replay", "yes please"),
     "services.messages.replay", "yes please", "true or false"),
    ("env-value-not-string", ("set", "services.facade.env", {"DEBUG": 1}),
     "services.facade.env.DEBUG", 1, "must be a string"),
    ("env-bad-name", ("set", "services.facade.env", {"1BAD": "x"}),
     "services.facade.env.1BAD", "1BAD", "environment variable name"),
    ("command-unknown-placeholder", ("set", "services.extra", {"command": ["{python}", "{prot}"]}),
     "services.extra.command[1]", "{prot}", "unknown placeholder {prot}"),
    ("command-not-list", ("set", "services.extra", {"command": "python -m x"}),
     "services.extra.command", "python -m x", "must be a list"),
    ("module-and-command", ("set", "services.extra", {"module": "x", "command": ["{python}"]}),
     "services.extra.command", ["{python}"], "either module or command"),
    ("bad-module", ("set", "services.facade.module", "workers/facade.py"),
     "services.facade.module", "workers/facade.py", "dotted Python module"),
    ("reserved-service-name", ("set", "services.kafka", {"module": "x"}),
     "services.kafka", "kafka", "reserved"),
    ("service-name-like-instance", ("set", "services.logging-2", {"module": "x"}),
     "services.logging-2", "logging-2", "not end in -<number>"),
    ("negative-ready-timeout", ("set", "services.facade.ready_timeout", 0),
     "services.facade.ready_timeout", 0, "positive number"),
    ("host-with-port", ("set", "config_server.host", "127.0.0.1:8500"),
     "config_server.host", "127.0.0.1:8500", "no port"),
    ("heap-float", ("set", "kafka.heap_mb", 384.5), "kafka.heap_mb", 384.5, "not a number"),
    ("oversize-limit", ("set", "limits.max_message_bytes", 2_000_000),
     "limits.max_message_bytes", 2_000_000, "1..1000000"),
    ("section-not-mapping", ("set", "kafka", [1, 2]), "kafka", [1, 2], "must be a mapping"),
    ("runtime-dir-not-string", ("set", "runtime_dir", 5), "runtime_dir", 5, "path string"),
]


@pytest.mark.parametrize(("mutation", "key_path", "value", "problem"),
                         [case[1:] for case in BAD_FILES], ids=[case[0] for case in BAD_FILES])
def test_bad_file_error_names_key_path_and_value(
        tmp_path: Path, mutation: tuple[str, str, object], key_path: str, value: object,
        problem: str) -> None:
    _, dotted, new_value = mutation
    err = load_error(tmp_path, set_key(default_data(), dotted, new_value))

    assert (err.key_path, err.value) == (key_path, value)
    assert problem in err.problem
    assert f"{key_path} = {value!r}: " in str(err)


def test_custom_service_needs_module_or_command(tmp_path: Path) -> None:
    err = load_error(tmp_path, set_key(default_data(), "services.extra", {"instances": 2}))
    assert err.key_path == "services.extra"
    assert "must give module: or command:" in str(err)


def test_services_is_required(tmp_path: Path) -> None:
    err = load_error(tmp_path, drop_key(default_data(), "services"))
    assert str(err).endswith(": services: required key missing")


def test_empty_file_is_an_error(tmp_path: Path) -> None:
    assert "file is empty" in str(load_error(tmp_path, ""))


# Every section of the schema, and a key that is not in it: each level rejects it by name.
UNKNOWN_KEY_LEVELS = ["", "config_server", "kafka", "kafka.topic", "hazelcast", "restart", "limits",
                      "services.logging", "services.facade.restart"]


@pytest.mark.parametrize("section", UNKNOWN_KEY_LEVELS, ids=lambda s: s or "top")
def test_unknown_key_rejected_at_every_level(tmp_path: Path, section: str) -> None:
    dotted = f"{section}.bogus_key" if section else "bogus_key"
    err = load_error(tmp_path, set_key(default_data(), dotted, 1))

    assert err.key_path == dotted
    assert f"{dotted}: unknown key (known: " in str(err)


def test_unknown_key_message_lists_the_known_keys(tmp_path: Path) -> None:
    err = load_error(tmp_path, set_key(default_data(), "services.logging.prots", [1, 2, 3]))
    assert str(err).endswith("services.logging.prots: unknown key (known: instances, ports, host, "
                             "module, command, restart, replay, ready_timeout, stop_timeout, env)")


@pytest.mark.parametrize(("text", "line", "words"), [
    ("services:\n  facade: {ports: [1\n", 3, "invalid YAML"),
    ("services:\n  facade: {}\n  facade: {}\n", 3, "duplicate key 'facade' (first defined on line 2)"),
    ("services:\n\tfacade: {}\n", 2, "invalid YAML"),
], ids=["unclosed-list", "duplicate-key", "tab-indent"])
def test_yaml_syntax_error_names_file_and_line(tmp_path: Path, text: str, line: int,
                                               words: str) -> None:
    err = load_error(tmp_path, text)
    assert err.line == line
    assert str(err).startswith(f"{tmp_path / 'topology.yaml'}:{line}:")
    assert words in str(err)


def test_missing_file_is_a_topology_error(tmp_path: Path) -> None:
    with pytest.raises(TopologyError, match="cannot read topology file: No such file"):
        load_topology(tmp_path / "nope.yaml")


def test_parse_topology_error_without_source_says_topology(tmp_path: Path) -> None:
    with pytest.raises(TopologyError) as info:
        parse_topology({"services": {"facade": {"instances": "3"}}}, base_dir=tmp_path)
    assert str(info.value) == ("topology: services.facade.instances = '3': "
                               "must be a positive integer, not a string")


# ---------------------------------------------------------------------------------- resolve_ports


def all_ports(topo: Topology) -> list[int]:
    ports = [topo.config_server.port, *topo.kafka.ports, *topo.kafka.controller_ports,
             *topo.hazelcast.ports]
    for spec in topo.services.values():
        ports.extend(spec.ports)
    return ports


def test_resolve_ports_gives_distinct_free_ports_and_keeps_fixed_ones(tmp_path: Path) -> None:
    data = {"kafka": {"ports": [0, 0, 0]}, "hazelcast": {"ports": [0, 0, 0]},
            "services": {"logging": {"instances": 3}, "messages": {"instances": 2},
                         "facade": {"ports": [0]}}}
    with socket.socket() as fixed_sock:  # a port we hold, so nothing else can pick it
        fixed_sock.bind(("127.0.0.1", 0))
        fixed = fixed_sock.getsockname()[1]
        data["hazelcast"]["ports"][1] = fixed
        topo = parse_topology(data, base_dir=tmp_path)
        resolved = resolve_ports(topo)

    ports = all_ports(resolved)
    assert len(ports) == 1 + 3 + 3 + 3 + 3 + 2 + 1
    assert 0 not in ports
    assert len(set(ports)) == len(ports), "every port distinct"
    assert resolved.hazelcast.ports[1] == fixed
    assert all_ports(topo).count(0) == len(ports) - 1, "the input is not modified"
    assert resolved.kafka.bootstrap().count("127.0.0.1:") == 3
    for port in ports:
        if port == fixed:
            continue
        with socket.socket() as probe:  # really free right now
            probe.bind(("127.0.0.1", port))


def test_resolve_ports_keeps_a_fully_fixed_topology() -> None:
    topo = load_topology(DEFAULT_FILE)
    assert resolve_ports(topo) == topo
