"""The workers end to end, through the real supervisor running the whole topology on free ports.

Each test marks its messages with a fresh run id and looks only at those, so tests share the session
pipeline. A test that kills a worker waits until it is RUNNING again.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import uuid
from collections import Counter
from typing import Any

import aiohttp
import pytest
from aiokafka.partitioner import DefaultPartitioner

from supervisor.deadline import wait_until
from tests.fixtures_workers import wait_workers_listed

pytestmark = pytest.mark.timeout(600)

PARTITIONS = 2   # topology.yaml: kafka.topic.partitions
HOLD_TIMEOUT = 60.0


@pytest.fixture
async def pipeline(pipeline: Any) -> Any:
    """The session pipeline once every worker is listed by the registry."""
    await wait_workers_listed(pipeline)
    return pipeline


@pytest.fixture
async def http() -> Any:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        yield session


def run_id() -> str:
    return uuid.uuid4().hex[:10]


def keys_spanning_partitions(prefix: str, n: int) -> list[str]:
    """n idempotency keys that land on every partition (so both messages instances get a share)."""
    partitioner = DefaultPartitioner()
    while True:
        keys = [f"{prefix}-{uuid.uuid4().hex[:8]}" for _ in range(n)]
        if {partitioner(k.encode(), list(range(PARTITIONS)), None) for k in keys} == set(range(PARTITIONS)):
            return keys


async def get_json(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as resp:
        assert resp.status == 200, f"GET {url}: {resp.status} {await resp.text()}"
        return await resp.json()


async def post(http: aiohttp.ClientSession, url: str, msg: str, key: str | None = None) -> tuple[int, Any]:
    headers = {"Idempotency-Key": key} if key else {}
    async with http.post(f"{url}/messages", json={"msg": msg}, headers=headers) as resp:
        return resp.status, await resp.json()


async def instances(pipeline: Any, service: str) -> list[dict[str, Any]]:
    return await pipeline.services(service)


async def held_by_messages(pipeline: Any, http: aiohttp.ClientSession, marker: str) -> dict[str, list[str]]:
    """What each RUNNING messages instance holds of this test's messages (texts, in its order)."""
    held = {}
    for inst in await instances(pipeline, "messages"):
        body = await get_json(http, f"{inst['address']}/messages")
        held[inst["name"]] = [m["msg"] for m in body["messages"] if marker in m["msg"]]
    return held


async def logged(pipeline: Any, http: aiohttp.ClientSession, marker: str) -> list[dict[str, Any]]:
    """This test's entries of the Hazelcast map, as one logging instance lists them (in order)."""
    inst = (await instances(pipeline, "logging"))[0]
    body = await get_json(http, f"{inst['address']}/log")
    return [m for m in body["messages"] if marker in m["msg"]]


async def wait_messages_hold(pipeline: Any, http: aiohttp.ClientSession, marker: str,
                             expected: set[str]) -> dict[str, list[str]]:
    """Wait until the messages instances together hold exactly `expected` (each once); return the split."""
    result: dict[str, list[str]] = {}

    async def complete() -> bool:
        nonlocal result
        result = await held_by_messages(pipeline, http, marker)
        together = [m for msgs in result.values() for m in msgs]
        return len(result) == 2 and Counter(together) == Counter(expected)

    try:
        await wait_until(complete, timeout=HOLD_TIMEOUT, interval=0.3, what="messages instances to hold the set")
    except TimeoutError as exc:
        raise AssertionError(f"messages instances hold {result}, expected each of {sorted(expected)} once") from exc
    return result


def received_in_log(pipeline: Any, name: str, marker: str) -> list[str]:
    """The texts an instance's log file says it received (the lab's `logging-2 received msg7` lines)."""
    lines = pipeline.paths.log(name).read_text(errors="replace").splitlines()
    return [line.split(f"{name} received ", 1)[1].split(" (")[0] for line in lines
            if f"{name} received " in line and marker in line]


async def test_task1_ten_messages_split_and_all_readable(pipeline: Any, http: aiohttp.ClientSession) -> None:
    marker = run_id()
    facade = await pipeline.facade_url()
    texts = [f"{marker}-msg{i}" for i in range(1, 11)]
    keys = keys_spanning_partitions(marker, 10)
    for text, key in zip(texts, keys):
        status, body = await post(http, facade, text, key)
        assert (status, body) == (201, {"id": key})

    # logging: each instance's log shows what it received; together all 10, each once (log lines are
    # written by a thread and pumped by the supervisor, so they may trail the 201 a little)
    names = [inst["name"] for inst in await instances(pipeline, "logging")]
    assert len(names) == 3

    def logged() -> dict[str, list[str]]:
        return {name: received_in_log(pipeline, name, marker) for name in names}

    def all_logged_once() -> bool:
        return Counter(t for got in logged().values() for t in got) == Counter(texts)

    try:
        await wait_until(all_logged_once, timeout=10, what="the logging instances' log lines")
    except TimeoutError as exc:
        raise AssertionError(f"logging logs show {logged()}, expected each of {texts} once") from exc

    # messages: the two instances split the 10 (both partitions are used) and together hold all 10
    split = await wait_messages_hold(pipeline, http, marker, set(texts))
    assert all(split.values()), f"one messages instance holds nothing: {split}"
    for name, msgs in split.items():
        assert msgs == [t for t in texts if t in msgs], f"{name} holds them out of order: {msgs}"
        assert set(received_in_log(pipeline, name, marker)) >= set(msgs)

    # the facade reads all 10 back from logging, in the order posted
    body = await get_json(http, f"{facade}/messages")
    assert [m for m in body["logging"] if marker in m] == texts
    async with http.get(f"{facade}/messages", headers={"Accept": "text/plain"}) as resp:
        assert resp.content_type == "text/plain"
        text = await resp.text()
        assert all(t in text for t in texts), text


async def test_same_idempotency_key_twice_is_stored_once(pipeline: Any, http: aiohttp.ClientSession) -> None:
    marker = run_id()
    facade = await pipeline.facade_url()
    first = await post(http, facade, f"{marker}-once", key=f"key-{marker}")
    second = await post(http, facade, f"{marker}-once", key=f"key-{marker}")
    assert first == second == (201, {"id": f"key-{marker}"})
    assert [e["id"] for e in await logged(pipeline, http, marker)] == [f"key-{marker}"]
    await wait_messages_hold(pipeline, http, marker, {f"{marker}-once"})


async def _limits(pipeline: Any, http: aiohttp.ClientSession) -> int:
    config = await get_json(http, f"{pipeline.config_url}/config/facade")
    return int(config["limits"]["max_message_bytes"])


async def test_bad_input_is_rejected_and_nothing_stored(pipeline: Any, http: aiohttp.ClientSession) -> None:
    marker = run_id()
    facade = await pipeline.facade_url()
    limit = await _limits(pipeline, http)
    json_type = {"Content-Type": "application/json"}
    cases: list[tuple[str, dict[str, str], bytes, int, str]] = [
        ("malformed JSON", json_type, f'{{"msg": "{marker}'.encode(), 400, "malformed JSON"),
        ("missing msg", json_type, json.dumps({"text": marker}).encode(), 400, "missing field 'msg'"),
        ("extra field", json_type, json.dumps({"msg": marker, "x": 1}).encode(), 400, "unknown field"),
        ("no msg at all", json_type, b"{}", 400, "missing field 'msg'"),
        ("empty msg", json_type, b'{"msg": ""}', 400, "empty"),
        ("number msg", json_type, b'{"msg": 7}', 400, "must be a string"),
        ("list body", json_type, json.dumps([marker]).encode(), 400, "JSON object"),
        ("oversize msg", json_type, json.dumps({"msg": marker + "x" * limit}).encode(), 413, f"limit is {limit}"),
        ("oversize body", json_type, b'{"msg": "' + b"y" * (limit * 7) + b'"}', 413, "limit"),
        ("empty text", {"Content-Type": "text/plain"}, b"  ", 400, "empty"),
        ("form", {"Content-Type": "application/x-www-form-urlencoded"}, f"msg={marker}".encode(), 415,
         "unsupported content type"),
        ("bad key", {**json_type, "Idempotency-Key": " "}, json.dumps({"msg": marker}).encode(), 400, "id is empty"),
    ]
    for what, headers, body, status, names in cases:
        async with http.post(f"{facade}/messages", data=body, headers=headers) as resp:
            reply = await resp.json()
            assert resp.status == status, f"{what}: {resp.status} {reply}"
            assert names in reply["error"], f"{what}: {reply}"
    # logging refuses a bad entry on its own too
    inst = (await instances(pipeline, "logging"))[0]
    async with http.post(f"{inst['address']}/log", json={"id": 5, "msg": marker}) as resp:
        assert resp.status == 400 and "'id' must be a string" in (await resp.json())["error"]

    # nothing was stored, and the facade keeps serving
    assert await logged(pipeline, http, marker) == []
    assert (await post(http, facade, f"{marker}-after"))[0] == 201
    await wait_messages_hold(pipeline, http, marker, {f"{marker}-after"})


async def _post_all(http: aiohttp.ClientSession, facade: str, texts: list[str], keys: list[str],
                    concurrency: int) -> list[tuple[int, Any]]:
    gate = asyncio.Semaphore(concurrency)

    async def one(text: str, key: str) -> tuple[int, Any]:
        async with gate:
            return await post(http, facade, text, key)

    return await asyncio.gather(*(one(t, k) for t, k in zip(texts, keys)))


async def test_logging_worker_killed_mid_run_no_post_fails(pipeline: Any, http: aiohttp.ClientSession) -> None:
    marker = run_id()
    facade = await pipeline.facade_url()
    n = 200
    texts = [f"{marker}-r{i}" for i in range(n)]
    keys = [f"{marker}-k{i}" for i in range(n)]
    sending = asyncio.ensure_future(_post_all(http, facade, texts, keys, concurrency=2))
    await wait_until(lambda: len(received_in_log(pipeline, "logging-2", marker)) >= 3, timeout=60,
                     what="logging-2 to take part in the run")
    reply = await pipeline.command("kill", "logging-2")
    assert reply["ok"], reply
    assert not sending.done(), "the run ended before logging-2 was killed: nothing was tested"
    results = await sending
    assert [status for status, _ in results] == [201] * n, [r for r in results if r[0] != 201]

    entries = await logged(pipeline, http, marker)
    assert sorted(e["id"] for e in entries) == sorted(keys)       # each once: no loss, no duplicate
    await wait_messages_hold(pipeline, http, marker, set(texts))
    await pipeline.wait_state("logging-2", "RUNNING", timeout=90)
    await wait_until(lambda: _listed(pipeline, "logging", "logging-2"), timeout=30, what="logging-2 listed again")


async def test_hung_logging_worker_is_failed_over(pipeline: Any, http: aiohttp.ClientSession) -> None:
    """SIGSTOP keeps logging-3 listed (its process lives) but silent: the facade must time out on it
    and store through another instance with the same id."""
    marker = run_id()
    facade = await pipeline.facade_url()
    # Concurrent POSTs share a store call (the facade's store linger), and each call picks a random
    # instance: 40 POSTs two at a time make 20-40 calls, so missing logging-3 has odds below (2/3)^20.
    n = 40
    texts = [f"{marker}-h{i}" for i in range(n)]
    keys = [f"{marker}-hk{i}" for i in range(n)]
    pid = (await pipeline.status())["logging-3"]["pid"]
    failovers_before = await _failovers(http, facade)
    os.kill(pid, signal.SIGSTOP)
    try:
        results = await _post_all(http, facade, texts, keys, concurrency=2)
        failovers = await _failovers(http, facade) - failovers_before
    finally:
        os.kill(pid, signal.SIGCONT)
    assert [status for status, _ in results] == [201] * n, [r for r in results if r[0] != 201]
    assert failovers > 0, "no POST was routed to the hung instance: nothing was tested"
    entries = await logged(pipeline, http, marker)
    assert sorted(e["id"] for e in entries) == sorted(keys)
    await wait_messages_hold(pipeline, http, marker, set(texts))


async def _failovers(http: aiohttp.ClientSession, facade: str) -> float:
    async with http.get(f"{facade}/metrics") as resp:
        text = await resp.text()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith('facade_failovers_total{service="logging"}'))


async def _listed(pipeline: Any, service: str, name: str) -> bool:
    return name in {i["name"] for i in await instances(pipeline, service)}


async def test_messages_worker_killed_rebuilds_its_partitions(pipeline: Any, http: aiohttp.ClientSession) -> None:
    marker = run_id()
    facade = await pipeline.facade_url()
    texts = [f"{marker}-m{i}" for i in range(10)]
    for text, key in zip(texts, keys_spanning_partitions(marker, 10)):
        assert (await post(http, facade, text, key))[0] == 201
    before = await wait_messages_hold(pipeline, http, marker, set(texts))

    assert (await pipeline.command("kill", "messages-1"))["ok"]
    await pipeline.wait_state("messages-1", "RUNNING", timeout=90)
    await wait_until(lambda: _listed(pipeline, "messages", "messages-1"), timeout=30, what="messages-1 listed")
    after = await wait_messages_hold(pipeline, http, marker, set(texts))   # replay: nothing lost, none twice
    assert after["messages-1"], f"messages-1 rebuilt nothing (before the kill: {before}, after: {after})"


async def test_every_worker_reports_health_and_metrics(pipeline: Any, http: aiohttp.ClientSession) -> None:
    for service, dependency in (("logging", "hazelcast"), ("messages", "kafka_group"), ("facade", "kafka")):
        for inst in await instances(pipeline, service):
            health = await get_json(http, f"{inst['address']}/health")
            assert health["status"] == "ok" and health["checks"][dependency] is True, health
            async with http.get(f"{inst['address']}/metrics") as resp:
                text = await resp.text()
                assert resp.status == 200 and "# TYPE http_requests_total counter" in text


async def test_batch_gives_each_message_its_own_result_and_keeps_every_promise(
        pipeline: Any, http: aiohttp.ClientSession) -> None:
    marker = run_id()
    facade = await pipeline.facade_url()
    keys = keys_spanning_partitions(marker, 6)
    texts = [f"{marker}-b{i}" for i in range(6)]
    status, _ = await post(http, facade, texts[0], keys[0])          # already posted: a retry in the batch
    assert status == 201
    batch = [{"id": k, "msg": t} for k, t in zip(keys, texts)] + [{"msg": ""}, {"msg": f"{marker}-fresh"}]
    async with http.post(f"{facade}/messages/batch", json={"messages": batch}) as resp:
        body = await resp.json()
        assert resp.status == 207, body
    results = body["results"]
    assert [r["status"] for r in results] == [201] * 6 + [400, 201], results
    assert [r["id"] for r in results[:6]] == keys and results[7]["id"], results
    assert "messages[6].msg" in results[6]["error"]
    assert (body["accepted"], body["failed"]) == (7, 1)

    # the same batch again (a client retry): every id stored once on both paths
    async with http.post(f"{facade}/messages/batch", json={"messages": batch[:6]}) as resp:
        assert resp.status == 201 and (await resp.json())["accepted"] == 6
    expected = set(texts) | {f"{marker}-fresh"}
    held = await wait_messages_hold(pipeline, http, marker, expected)
    assert sorted(t for msgs in held.values() for t in msgs) == sorted(expected), held
    logged = [m for m in (await get_json(http, f"{facade}/messages"))["logging"] if marker in m]
    assert sorted(logged) == sorted(expected), logged


async def test_bad_batch_envelope_is_400_and_nothing_stored(pipeline: Any, http: aiohttp.ClientSession) -> None:
    marker = run_id()
    facade = await pipeline.facade_url()
    async with http.post(f"{facade}/messages/batch", json={"msgs": [{"msg": marker}]}) as resp:
        assert resp.status == 400 and "unknown field(s): 'msgs'" in (await resp.json())["error"]
    logged = [m for m in (await get_json(http, f"{facade}/messages"))["logging"] if marker in m]
    assert logged == []
