"""The JVM runtime without starting a cluster: finding java/mvn, the jar cache, the broker settings and
docker-compose.yml agreeing with the local backend. (The clusters themselves: test_kafka_cluster.py,
test_hazelcast_cluster.py.)
"""

from __future__ import annotations

import base64
import os
import stat
import time
from pathlib import Path

import pytest
import yaml

from supervisor import hazelcast, kafka, runtime
from supervisor.paths import RuntimePaths
from supervisor.runtime import RuntimeSetupError
from supervisor.topology import load_topology

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("output", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15\nOpenJDK Runtime Environment', 17),
        ('java version "1.8.0_392"', 8),
        ('openjdk version "25" 2025-09-16', 25),
    ],
)
def test_java_major_version(output: str, major: int) -> None:
    assert runtime.java_major_version(output) == major


def test_java_home_without_java_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))
    with pytest.raises(RuntimeSetupError, match=rf"java not found \(in JAVA_HOME={tmp_path}\).*openjdk-17"):
        runtime.find_java()


def test_old_java_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    java = tmp_path / "bin" / "java"
    java.parent.mkdir()
    java.write_text('#!/bin/sh\necho \'openjdk version "11.0.2" 2019-01-15\' >&2\n')
    java.chmod(java.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))
    with pytest.raises(RuntimeSetupError, match="is Java 11, need 17"):
        runtime.find_java()


def test_real_java_is_found() -> None:
    java = runtime.find_java()
    assert os.access(java, os.X_OK)


def test_missing_mvn_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAVEN_HOME", str(tmp_path))
    with pytest.raises(RuntimeSetupError, match="mvn not found.*apt-get install maven"):
        runtime.find_mvn()


def test_jar_cache_dir_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_JAR_CACHE", str(tmp_path / "jars"))
    assert runtime.jar_cache_dir() == tmp_path / "jars"
    monkeypatch.delenv("PIPELINE_JAR_CACHE")
    assert runtime.jar_cache_dir() == Path.home() / ".cache" / "replicated-pipeline" / "jars"


def test_ensure_jars_fetches_once_and_redoes_an_interrupted_fetch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_JAR_CACHE", str(tmp_path))
    lines: list[str] = []
    jars = runtime.ensure_jars(lines.append)
    assert any("fetching Kafka 4.1.1" in line for line in lines)
    assert (tmp_path / "kafka-4.1.1" / "kafka_2.13-4.1.1.jar").is_file()
    assert (tmp_path / "kafka-4.1.1" / "log4j-slf4j-impl-2.24.3.jar").is_file()
    assert (tmp_path / "hazelcast-5.6.0" / "hazelcast-5.6.0.jar").is_file()
    assert jars.kafka_classpath == str(tmp_path / "kafka-4.1.1" / "*")

    lines.clear()
    began = time.monotonic()
    assert runtime.ensure_jars(lines.append) == jars
    assert lines == [] and time.monotonic() - began < 1.0

    (tmp_path / "hazelcast-5.6.0" / runtime.MARKER).unlink()  # as if killed mid-fetch
    (tmp_path / "hazelcast-5.6.0" / "half-written.jar").write_text("")
    runtime.ensure_jars(lines.append)
    assert [line for line in lines if line.startswith("fetching")] == [
        f"fetching Hazelcast 5.6.0 jars with Maven into {tmp_path / 'hazelcast-5.6.0'} (first use only) ..."
    ]
    assert not (tmp_path / "hazelcast-5.6.0" / "half-written.jar").exists()


def test_broker_properties_bind_loopback_with_static_voters(tmp_path: Path) -> None:
    spec = load_topology(REPO / "topology.yaml").kafka
    props = kafka.broker_properties(spec, 2, tmp_path)
    assert props["node.id"] == "2"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:9093,CONTROLLER://127.0.0.1:9193"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:9192,2@127.0.0.1:9193,3@127.0.0.1:9194"
    assert props["min.insync.replicas"] == "2" and props["unclean.leader.election.enable"] == "false"
    text = kafka.render_properties(props)
    assert f"log.dirs={tmp_path}\n" in text


def test_cluster_id_is_kafka_shaped_and_kept(tmp_path: Path) -> None:
    paths = RuntimePaths(tmp_path)
    first = kafka.load_cluster_id(paths)
    assert len(base64.urlsafe_b64decode(first + "==")) == 16 and not first.startswith("-")
    assert kafka.load_cluster_id(paths) == first


def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_compose_parses_and_has_every_service() -> None:
    services = compose()["services"]
    assert set(services) == {"kafka-1", "kafka-2", "kafka-3", "kafka-init",
                             "hazelcast-1", "hazelcast-2", "hazelcast-3", "kafka-ui"}
    assert all(services[f"kafka-{i}"]["image"] == "apache/kafka:4.1.1" for i in (1, 2, 3))
    assert all(services[f"hazelcast-{i}"]["image"] == "hazelcast/hazelcast:5.6.0" for i in (1, 2, 3))


def test_compose_brokers_match_the_local_backend(tmp_path: Path) -> None:
    """Every cluster-wide setting of the local brokers has the same value in the containers."""
    topology = load_topology(REPO / "topology.yaml")
    local = kafka.broker_properties(topology.kafka, 1, tmp_path)
    per_node = {"node.id", "listeners", "advertised.listeners", "controller.quorum.voters", "log.dirs",
                "listener.security.protocol.map", "inter.broker.listener.name"}
    tuning = {k for k in local if k.startswith(("num.", "background.", "log.cleaner.", "share."))}
    cluster_wide = {k: v for k, v in local.items() if k not in per_node | tuning}
    services = compose()["services"]
    for i, port in enumerate(topology.kafka.ports, start=1):
        env = services[f"kafka-{i}"]["environment"]
        container = {key[len("KAFKA_"):].lower().replace("_", "."): str(value)
                     for key, value in env.items() if key.startswith("KAFKA_")}
        assert {k: container.get(k) for k in cluster_wide} == cluster_wide
        assert f"PLAINTEXT_HOST://127.0.0.1:{port}" in env["KAFKA_ADVERTISED_LISTENERS"]
        assert services[f"kafka-{i}"]["ports"] == [f"127.0.0.1:{port}:{port}"]
    assert len(base64.urlsafe_b64decode(services["kafka-1"]["environment"]["CLUSTER_ID"] + "==")) == 16

    topic = topology.kafka.topic
    script = services["kafka-init"]["command"][0]
    for part in (f"--topic {topic.name}", f"--partitions {topic.partitions}",
                 f"--replication-factor {topic.replication_factor}",
                 f"min.insync.replicas={topic.min_insync_replicas}", "unclean.leader.election.enable=false"):
        assert part in script


def test_compose_members_use_hazelcast_xml_like_the_local_backend() -> None:
    spec = load_topology(REPO / "topology.yaml").hazelcast
    services = compose()["services"]
    for name, port in zip(hazelcast.member_names(spec), spec.ports):
        member = services[name]
        opts = member["environment"]["JAVA_OPTS"].split()
        assert member["network_mode"] == "host"
        assert "./hazelcast.xml:/opt/hazelcast/config_ext/hazelcast.xml:ro" in member["volumes"]
        assert f"-Dpipeline.port={port}" in opts
        assert f"-Dpipeline.cluster.name={spec.cluster_name}" in opts
        assert f"-Dpipeline.members={','.join(spec.member_addresses())}" in opts
        assert f"-Xmx{spec.heap_mb}m" in opts
