"""The service registry and /config: real stand-in worker processes, a real config server."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from typing import Any

from supervisor.deadline import wait_until
from supervisor.states import State
from supervisor.registry import Registry, RegistryError, next_free_index, split_name
from tests.fixtures_front import REPO, STANDIN, InProcess, in_process  # noqa: F401 - fixture

import pytest


async def _names(env: InProcess, service: str) -> list[str]:
    status, body = await env.get_json(f"/services/{service}")
    assert status == 200, body
    return [inst["name"] for inst in body["instances"]]


def _free_port() -> int:
    from supervisor.ports import free_port

    return free_port()


def _spawn_unmanaged(env: InProcess, service: str, name: str | None = None) -> subprocess.Popen[bytes]:
    argv = [sys.executable, str(STANDIN), "--port", str(_free_port()), "--config-server", env.url, "--register", service]
    if name:
        argv += ["--name", name]
    return subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def _wait_listed(env: InProcess, service: str, name: str, what: str) -> None:
    async def listed() -> bool:
        return name in await _names(env, service)

    await wait_until(listed, timeout=20, what=what)


async def test_managed_instances_listed_while_running(in_process: InProcess) -> None:
    env = in_process
    assert await _names(env, "logging") == ["logging-1", "logging-2"]
    status, body = await env.get_json("/services")
    assert status == 200
    assert set(body["services"]) == {"logging", "messages"}
    inst = body["services"]["logging"][0]
    assert inst == {"name": "logging-1", "service": "logging", "address": env.sup.resolve("logging-1")[0].address,
                    "managed": True}

    await env.sup.stop_instance("logging-2")
    assert await _names(env, "logging") == ["logging-1"]

    await env.sup.start_instance("logging-2")
    await wait_until(lambda: env.sup.resolve("logging-2")[0].state.value == "RUNNING",
                     timeout=30, what="logging-2 RUNNING again")
    assert await _names(env, "logging") == ["logging-1", "logging-2"]


async def test_killed_instance_leaves_the_listing_until_restarted(in_process: InProcess) -> None:
    env = in_process
    async with env.sup.events.subscribe() as events:
        await env.sup.kill("logging-1")
        async for event in events:  # bounded by the test timeout
            if event.name == "logging-1" and event.to_state is State.EXITED:
                break
        # in the same loop step as the state change: no longer listed
        assert [i["name"] for i in env.sup.registry.instances_of("logging")] == ["logging-2"]

    async def listed_again() -> bool:
        return "logging-1" in await _names(env, "logging")

    await wait_until(listed_again, timeout=30, what="logging-1 registered again after restart")


async def test_unmanaged_worker_registers_heartbeats_and_deregisters(in_process: InProcess) -> None:
    env = in_process
    proc = _spawn_unmanaged(env, "logging")
    try:
        await _wait_listed(env, "logging", "logging-3", "the unmanaged worker to register")
        status, body = await env.command("status", "--json")
        row = next(r for r in body["data"]["instances"] if r["name"] == "logging-3")
        assert row["managed"] is False and row["state"] == "RUNNING" and row["kind"] == "worker"
        assert "logging-3 (unmanaged)" in body["text"]

        # still listed well past its ttl: the heartbeats keep it
        env.sup.registry.ttl = 1.0
        worker = next(w for w in env.sup.registry.unmanaged() if w.name == "logging-3")
        await wait_until(lambda: time.time() - worker.registered_at > 3 * env.sup.registry.ttl, timeout=10,
                         what="three ttls to pass")
        assert proc.poll() is None
        assert "logging-3" in await _names(env, "logging")

        proc.send_signal(signal.SIGTERM)  # graceful: DELETE /register/logging-3
        assert await asyncio.to_thread(proc.wait, 20) == 0  # it talks to this loop's server meanwhile
        assert "logging-3" not in await _names(env, "logging")
    finally:
        proc.kill()
        proc.wait()


async def test_unmanaged_worker_dropped_after_ttl_without_heartbeat(in_process: InProcess) -> None:
    env = in_process
    env.sup.registry.ttl = 1.5
    proc = _spawn_unmanaged(env, "messages", name="messages-7")
    try:
        await _wait_listed(env, "messages", "messages-7", "messages-7 to register")
        proc.kill()  # no deregistration, no more heartbeats
        proc.wait()

        async def dropped() -> bool:
            return "messages-7" not in await _names(env, "messages")

        await wait_until(dropped, timeout=10, what="messages-7 dropped after its ttl")
        async with env.http.post(f"{env.url}/heartbeat/messages-7") as resp:
            assert resp.status == 404
            assert "register again" in (await resp.json())["error"]
    finally:
        proc.kill()
        proc.wait()


async def test_register_rejects_bad_input(in_process: InProcess) -> None:
    env = in_process
    cases: list[tuple[Any, str]] = [
        ({"service": "nosuch", "address": "http://127.0.0.1:1"}, "unknown service 'nosuch'"),
        ({"service": "logging", "address": "127.0.0.1:1"}, "address must be an http URL"),
        ({"service": "logging", "address": "http://127.0.0.1:1", "name": "messages-3"}, "does not belong"),
        ({"service": "logging", "address": "http://127.0.0.1:1", "name": "bogus"}, "not an instance name"),
        ({"service": 3, "address": "http://127.0.0.1:1"}, "must be strings"),
        (["logging"], "JSON object"),
    ]
    for body, message in cases:
        async with env.http.post(f"{env.url}/register", json=body) as resp:
            assert resp.status == 400, body
            assert message in (await resp.json())["error"], body
    async with env.http.post(f"{env.url}/register", data=b"{not json") as resp:
        assert resp.status == 400
        assert "not valid JSON" in (await resp.json())["error"]
    assert await _names(env, "logging") == ["logging-1", "logging-2"]


async def test_registering_a_managed_name_changes_nothing(in_process: InProcess) -> None:
    env = in_process
    body = {"service": "logging", "address": "http://127.0.0.1:1", "name": "logging-1"}
    async with env.http.post(f"{env.url}/register", json=body) as resp:
        assert resp.status == 200
        assert (await resp.json())["name"] == "logging-1"
    status, listed = await env.get_json("/services/logging")
    assert [i["address"] for i in listed["instances"]] == [i.address for i in env.sup.resolve("logging")]
    assert env.sup.registry.unmanaged() == []


async def test_config_document(in_process: InProcess) -> None:
    env = in_process
    status, doc = await env.get_json("/config/logging-2")
    assert status == 200
    assert doc == {
        "name": "logging-2",
        "service": "logging",
        "kafka": {"bootstrap_servers": "127.0.0.1:19092,127.0.0.1:19093", "topic": "front-topic",
                  "consumer_group": "front-topic-service", "min_insync_replicas": 1},
        "hazelcast": {"cluster_name": "front-cluster",
                      "members": ["127.0.0.1:15701", "127.0.0.1:15702", "127.0.0.1:15703"],
                      "own_member": "127.0.0.1:15702", "map": "front-map"},
        "limits": {"max_message_bytes": 65536},
        "settings": {"replay": False},
    }
    _, doc4 = await env.get_json("/config/logging-4")  # (4-1) mod 3 + 1 = member 1
    assert doc4["hazelcast"]["own_member"] == "127.0.0.1:15701"
    _, by_service = await env.get_json("/config/messages")
    assert by_service["service"] == "messages" and by_service["settings"] == {"replay": True}
    for unknown in ("nosuch-1", "nosuch", "logging-0", "kafka-1"):
        status, body = await env.get_json(f"/config/{unknown}")
        assert status == 404, unknown
        assert unknown in body["error"]
    status, body = await env.get_json("/services/nosuch")
    assert status == 404 and "nosuch" in body["error"] and "logging" in body["error"]


async def test_config_for_unknown_name_raises_key_error(in_process: InProcess) -> None:
    registry = in_process.sup.registry
    with pytest.raises(KeyError):
        registry.config_for("hazelcast-1")
    with pytest.raises(RegistryError, match="unknown service 'x'"):
        registry.register("x", "http://127.0.0.1:1")


def test_split_name() -> None:
    assert split_name("logging-12") == ("logging", 12)
    for bad in ("logging", "logging-0", "-1", "logging-x"):
        with pytest.raises(ValueError):
            split_name(bad)


async def test_free_names_skip_taken_ones(in_process: InProcess) -> None:
    registry: Registry = in_process.sup.registry
    first = registry.register("logging", "http://127.0.0.1:1")["name"]
    second = registry.register("logging", "http://127.0.0.1:2")["name"]
    assert (first, second) == ("logging-3", "logging-4")
    assert registry.deregister("logging-3") and not registry.deregister("logging-3")
    assert registry.register("logging", "http://127.0.0.1:3")["name"] == "logging-3"


async def test_scale_never_takes_the_name_of_an_unmanaged_worker(in_process: InProcess) -> None:
    """An unmanaged logging-3 is running: `scale logging 4` adds logging-4 and logging-5, and both
    the hand-started worker and the new managed ones stay listed (no name is shadowed)."""
    env = in_process
    proc = _spawn_unmanaged(env, "logging")
    try:
        await _wait_listed(env, "logging", "logging-3", "the unmanaged worker to register as logging-3")
        status, reply = await env.command("scale", "logging", "4")
        assert status == 200, reply
        assert reply["data"]["instances"] == ["logging-1", "logging-2", "logging-4", "logging-5"]
        assert sorted(await _names(env, "logging")) == ["logging-1", "logging-2", "logging-3", "logging-4", "logging-5"]
        unmanaged = env.sup.registry.instances_of("logging")
        assert [i["name"] for i in unmanaged if not i["managed"]] == ["logging-3"]
        # and a second unmanaged worker skips every name in use
        assert env.sup.registry.register("logging", "http://127.0.0.1:9")["name"] == "logging-6"
        status, reply = await env.command("scale", "logging", "2")
        assert status == 200 and reply["data"]["instances"] == ["logging-1", "logging-2"]
        assert "logging-3" in await _names(env, "logging")
    finally:
        proc.kill()
        proc.wait()


def test_next_free_index() -> None:
    assert next_free_index("a", []) == 1
    assert next_free_index("a", ["a-1", "a-2", "a-4", "b-3"]) == 3
    assert next_free_index("a", ["a-3"], start=3) == 4
