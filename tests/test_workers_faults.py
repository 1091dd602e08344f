"""Fault injection, the broker watch behind the facade's fail-fast 503, and batch input parsing.

Real processes and real sockets: the "brokers" of the watch are listening and closed TCP ports.
"""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import pytest
from aiohttp import web

from supervisor.deadline import wait_until
from tests.test_workers_runtime import WorkerProcess, closed_port
from workers.broker_watch import BrokerWatch, parse_bootstrap
from workers.config import parse_config
from workers.input import MAX_BATCH, InputError, parse_batch, parse_log_batch
from workers.runtime import EXIT_BAD_FAULT, EXIT_FAULT

pytestmark = pytest.mark.timeout(120)


async def counting_config_server() -> tuple[web.AppRunner, str, list[str]]:
    """A config server that records every request (and answers 404): proves a worker never asked."""
    seen: list[str] = []

    async def anything(request: web.Request) -> web.Response:
        seen.append(f"{request.method} {request.path}")
        return web.json_response({"error": "nothing here"}, status=404)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", anything)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}", seen


@pytest.mark.parametrize("module", ["logging_service", "messages_service", "facade"])
async def test_crash_at_start_exits_3_before_serving(module: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_FAULT", "crash-at-start")
    runner, url, seen = await counting_config_server()
    try:
        async with WorkerProcess(module, "--name", "w-7", "--config-server", url) as worker:
            code = await worker.wait(timeout=60)
    finally:
        await runner.cleanup()
    assert code == EXIT_FAULT == 3, worker.text()
    assert "w-7: fault injected: crash-at-start" in worker.text()
    assert seen == [], f"the worker went on after the fault: {seen}"


async def test_unknown_fault_is_named_and_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_FAULT", "crash-later")
    async with WorkerProcess("logging_service", "--name", "w-8", "--config-server", "http://127.0.0.1:1") as worker:
        code = await worker.wait(timeout=60)
    assert code == EXIT_BAD_FAULT, worker.text()
    assert "PIPELINE_FAULT='crash-later' is not a known fault (known: crash-at-start)" in worker.text()


def listener() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock


async def test_broker_watch_counts_brokers_that_accept_connections() -> None:
    up = listener()
    later = listener()
    later_port = later.getsockname()[1]
    later.close()                                   # "down" until something listens there again
    addresses = [("127.0.0.1", up.getsockname()[1]), ("127.0.0.1", later_port), ("127.0.0.1", closed_port())]
    watch = BrokerWatch(lambda: addresses, min_live=2, interval=0.05)
    assert watch.writable, "before the first probe the watch trusts the producer's start"
    runner = asyncio.ensure_future(watch.run())
    try:
        await asyncio.wait_for(watch.wait_unwritable(), 5)
        assert not watch.writable and watch.live == [addresses[0]]
        assert watch.describe() == ("only 1 of 3 Kafka brokers reachable; an acks=all write needs "
                                    "min.insync.replicas=2")
        revived = socket.socket()
        revived.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        revived.bind(("127.0.0.1", later_port))
        revived.listen(16)
        await wait_until(lambda: watch.writable, timeout=5, what="the watch to see the second broker")
        assert len(watch.live) == 2
        up.close()
        await asyncio.wait_for(watch.wait_unwritable(), 5)
        revived.close()
    finally:
        runner.cancel()
        up.close()


def test_bootstrap_list_is_parsed_and_bad_entries_named() -> None:
    assert parse_bootstrap("127.0.0.1:9092, localhost:9093") == [("127.0.0.1", 9092), ("localhost", 9093)]
    with pytest.raises(ValueError, match="bad Kafka bootstrap address 'nohost'"):
        parse_bootstrap("127.0.0.1:9092,nohost")


def test_min_insync_replicas_comes_from_the_config_or_defaults_to_2() -> None:
    doc: dict[str, Any] = {"name": "facade-1", "service": "facade",
                           "kafka": {"bootstrap_servers": "h:1", "topic": "t", "consumer_group": "g"},
                           "hazelcast": {"cluster_name": "c", "members": ["h:2"], "map": "m"},
                           "limits": {"max_message_bytes": 10}}
    assert parse_config(doc).kafka.min_insync_replicas == 2
    doc["kafka"]["min_insync_replicas"] = 3
    assert parse_config(doc).kafka.min_insync_replicas == 3
    doc["kafka"]["min_insync_replicas"] = "two"
    with pytest.raises(ValueError, match="kafka.min_insync_replicas has bad value 'two'"):
        parse_config(doc)


def _batch(items: object) -> bytes:
    return json.dumps({"messages": items}).encode()


def test_batch_items_are_judged_one_by_one() -> None:
    items = parse_batch(_batch([{"msg": "a"}, {"msg": "b", "id": "k1"}, {"msg": ""}, {"msg": "c", "id": "k1"},
                                "text", {"msg": "d", "x": 1}, {"msg": "x" * 11}]), 10)
    assert [(i.id, i.msg) for i in items[:2]] == [(None, "a"), ("k1", "b")]
    errors = [(i.error.status, i.error.message) if i.error else None for i in items]
    assert errors[:2] == [None, None]
    assert errors[2] == (400, "field 'messages[2].msg' is empty")
    assert errors[3] == (400, "messages[3].id 'k1' repeats an earlier id of this batch")
    assert errors[4] == (400, 'messages[4] must be an object {"msg": ..., "id": optional}')
    assert errors[5] == (400, "messages[5]: unknown field(s): 'x'")
    assert errors[6] is not None and errors[6][0] == 413


@pytest.mark.parametrize(("body", "status", "names"), [
    (b"[]", 400, "JSON object"),
    (json.dumps({"msgs": []}).encode(), 400, "unknown field(s): 'msgs'"),
    (json.dumps({}).encode(), 400, "missing field 'messages'"),
    (_batch([]), 400, "'messages' is empty"),
    (_batch("a"), 400, "must be a list"),
    (_batch([{"msg": "a"}] * (MAX_BATCH + 1)), 413, f"the limit is {MAX_BATCH}"),
])
def test_bad_batch_envelope_is_refused_whole(body: bytes, status: int, names: str) -> None:
    with pytest.raises(InputError) as err:
        parse_batch(body, 10)
    assert err.value.status == status and names in err.value.message


def test_log_batch_refuses_all_when_one_entry_is_bad() -> None:
    good = {"id": "a", "msg": "x"}
    assert [e.id for e in parse_log_batch(json.dumps({"entries": [good, {**good, "id": "b"}]}).encode(), 10)] == \
        ["a", "b"]
    with pytest.raises(InputError, match=r"missing field 'entries\[1\].id'"):
        parse_log_batch(json.dumps({"entries": [good, {"msg": "x"}]}).encode(), 10)
    with pytest.raises(InputError, match="non-empty list"):
        parse_log_batch(json.dumps({"entries": []}).encode(), 10)


async def test_coalescer_sends_a_lone_item_at_once_and_groups_under_load() -> None:
    from workers.coalescer import Coalescer

    calls: list[list[int]] = []
    gate = asyncio.Event()

    async def flush(items: list[int]) -> list[int]:
        calls.append(items)
        if items == [99]:
            raise RuntimeError("downstream refused")
        await gate.wait()
        return [i * 10 for i in items]

    coalescer: Coalescer[int, int] = Coalescer(flush, max_items=3, max_in_flight=1)
    first = asyncio.ensure_future(coalescer.submit(0))
    await wait_until(lambda: calls == [[0]], timeout=2, what="the lone item to go out at once")
    rest = [asyncio.ensure_future(coalescer.submit(i)) for i in range(1, 6)]
    await asyncio.sleep(0)     # let them queue behind the flush in flight
    gate.set()
    assert await first == 0 and await asyncio.gather(*rest) == [10, 20, 30, 40, 50]
    assert calls == [[0], [1, 2, 3], [4, 5]], calls
    with pytest.raises(RuntimeError, match="downstream refused"):
        await coalescer.submit(99)


async def test_coalescer_linger_groups_items_that_arrive_within_it() -> None:
    from workers.coalescer import Coalescer

    calls: list[tuple[float, list[int]]] = []
    loop = asyncio.get_running_loop()

    async def flush(items: list[int]) -> list[int]:
        calls.append((loop.time(), items))
        return items

    coalescer: Coalescer[int, int] = Coalescer(flush, max_items=4, linger=0.2)
    started = loop.time()
    first = [asyncio.ensure_future(coalescer.submit(i)) for i in range(3)]
    await asyncio.sleep(0)
    assert calls == [], "items must wait for the linger, not go out one by one"
    assert await asyncio.gather(*first) == [0, 1, 2]
    assert [items for _, items in calls] == [[0, 1, 2]]
    assert calls[0][0] - started >= 0.19, "the group went out before the linger was over"
    # max_items queued: out at once, without waiting for the linger
    calls.clear()
    started = loop.time()
    assert await asyncio.gather(*(coalescer.submit(i) for i in range(4))) == [0, 1, 2, 3]
    assert [items for _, items in calls] == [[0, 1, 2, 3]] and calls[0][0] - started < 0.1
