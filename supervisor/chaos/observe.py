"""Reading what the running system holds, from outside, as a user would check it.

Every messages instance's GET /messages, one logging instance's GET /log (the Hazelcast map), the
topic itself read from the beginning, and the consumer group's lag per partition.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer, TopicPartition

from supervisor.chaos.checker import Holdings
from supervisor.client import SupervisorClient
from supervisor.kafka import describe_partitions


def ids_of(payload: Any) -> list[str]:
    """The message ids in a worker's listing, in order (a list of {id, msg}, or it under a key)."""
    if isinstance(payload, dict):
        for key in ("messages", "log", "items"):
            if key in payload:
                return ids_of(payload[key])
        raise ValueError(f"no message list in {sorted(payload)}")
    return [item["id"] for item in payload if isinstance(item, dict) and "id" in item]


async def _get_json(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url, headers={"Accept": "application/json"}) as resp:
        resp.raise_for_status()
        return await resp.json()


async def read_holdings(client: SupervisorClient, *, with_topic: bool = True) -> Holdings:
    messages: dict[str, list[str]] = {}
    for inst in await client.instances("messages"):
        messages[inst["name"]] = ids_of(await _get_json(client.http, f"{inst['address']}/messages"))
    logging_ids: list[str] = []
    for inst in await client.instances("logging"):
        try:
            logging_ids = ids_of(await _get_json(client.http, f"{inst['address']}/log"))
            break
        except (aiohttp.ClientError, ValueError):
            continue  # another instance answers for the same map
    topic: Counter[str] = Counter()
    if with_topic:
        kafka = (await client.worker_config("messages"))["kafka"]
        topic = await read_topic_ids(kafka["bootstrap_servers"], kafka["topic"])
    return Holdings(messages=messages, logging=logging_ids, topic=topic)


def _record_id(key: bytes | None, value: bytes | None) -> str | None:
    if key:
        return key.decode("utf-8", errors="replace")
    try:
        return json.loads(value or b"")["id"]
    except (ValueError, KeyError, TypeError):
        return None


async def _partitions(bootstrap: str, topic: str) -> list[TopicPartition]:
    return [TopicPartition(topic, p.partition) for p in await describe_partitions(bootstrap, topic)]


async def read_topic_ids(bootstrap: str, topic: str, timeout: float = 30.0) -> Counter[str]:
    """Every record's id in the topic, from the beginning to the current end (no consumer group)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        partitions = await _partitions(bootstrap, topic)
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        ids: Counter[str] = Counter()

        async def behind() -> bool:
            return any([await consumer.position(tp) < end[tp] for tp in partitions])

        async def drain() -> None:
            while await behind():
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    for record in records:
                        record_id = _record_id(record.key, record.value)
                        if record_id:
                            ids[record_id] += 1

        await asyncio.wait_for(drain(), timeout=timeout)
        return ids
    finally:
        await consumer.stop()


async def group_lag(bootstrap: str, topic: str, group: str) -> dict[int, int]:
    """Unconsumed records per partition for the consumer group (end offset minus committed)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=group)
    await consumer.start()
    try:
        partitions = await _partitions(bootstrap, topic)
        committed = {tp: await consumer.committed(tp) or 0 for tp in partitions}
        end = await consumer.end_offsets(partitions)  # after the commits: consumers may be moving
        return {tp.partition: max(0, end[tp] - committed[tp]) for tp in partitions}
    finally:
        await consumer.stop()
