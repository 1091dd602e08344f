"""The messages service: one member of a Kafka consumer group; holds its partitions' messages in memory.

Offsets are committed by hand after the records are stored (at-least-once); duplicates are dropped by id.
Commits go at most every `commit_interval` seconds (and before partitions are revoked, and on stop):
each commit is a replicated write to __consumer_offsets, and committing per poll cost the brokers as
much CPU as the messages themselves under load. A crash loses at most that interval of commits, which
the next owner reads again and drops by id.

With `replay` on, the instance holds exactly the messages of the partitions assigned to it: a newly
assigned partition is read from the beginning (records below the committed offset rebuild state and
are not committed again), and a partition taken away is dropped (its new owner replays it). So a
restarted or rebalanced instance loses nothing from the service's view, and the group never holds a
message twice. Without replay, the instance keeps what it consumed and starts at the committed offset.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass

from aiohttp import web
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, KafkaError

from workers.broker_watch import BrokerWatch, parse_bootstrap
from workers.runtime import Worker, WorkerContext, preview, run_worker

MAX_BATCH = 500  # records per getmany; a full one means the consumer is behind


@dataclass(frozen=True)
class Held:
    id: str
    msg: str
    ts: int
    partition: int
    offset: int

    def sort_key(self) -> tuple[int, int, int]:
        return (self.ts, self.partition, self.offset)


class MessageStore:
    """Messages by id, with the partition each came from (so a revoked partition can be dropped)."""

    def __init__(self) -> None:
        self._by_id: dict[str, Held] = {}

    def add(self, held: Held) -> bool:
        """False if the id is already held (a redelivery or a client retry)."""
        if held.id in self._by_id:
            return False
        self._by_id[held.id] = held
        return True

    def drop_partitions(self, partitions: set[int]) -> int:
        doomed = [k for k, v in self._by_id.items() if v.partition in partitions]
        for key in doomed:
            del self._by_id[key]
        return len(doomed)

    def partitions(self) -> set[int]:
        return {v.partition for v in self._by_id.values()}

    def ordered(self) -> list[Held]:
        return sorted(self._by_id.values(), key=Held.sort_key)


def decode(record: ConsumerRecord) -> tuple[str, str]:
    """(id, msg) of a record produced by the facade; ValueError if it is not one."""
    doc = json.loads(record.value)
    if not isinstance(doc, dict) or not isinstance(doc.get("id"), str) or not isinstance(doc.get("msg"), str):
        raise ValueError(f"not a facade message: {record.value[:100]!r}")
    return doc["id"], doc["msg"]


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, service: MessagesService) -> None:
        self.service = service

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.service.joined = False    # until the rebalance assigns partitions again
        await self.service.commit_pending()
        self.service.log.info("partitions revoked: %s", sorted(tp.partition for tp in revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.service.on_assigned(assigned)


class MessagesService(Worker):
    service = "messages"

    def __init__(self, ctx: WorkerContext) -> None:
        super().__init__(ctx)
        self.replay = ctx.cfg.setting("replay", False, bool)
        self.store = MessageStore()
        self.consumer: AIOKafkaConsumer | None = None
        self.joined = False
        # per partition: offsets below this are a replay of what was already committed
        self.committed: dict[TopicPartition, int] = {}
        self.pending: dict[TopicPartition, int] = {}     # consumed, not yet committed
        self.commit_interval = ctx.cfg.setting("commit_interval", 0.2, (int, float))
        # A fetch returns as soon as a record is there (a lone message is held within milliseconds of
        # its ack), else after fetch_max_wait_ms. Under load that would mean a fetch per produce batch,
        # round trips that compete for the CPU with the facade's acks=all produces; so after a batch
        # the consumer takes the next one no sooner than batch_interval later (aiokafka fetches a
        # partition again only once its buffered records are taken); see _consume for the exceptions.
        self.fetch_min_bytes = ctx.cfg.setting("fetch_min_bytes", 1, int)
        self.fetch_max_wait_ms = ctx.cfg.setting("fetch_max_wait_ms", 500, int)
        self.batch_interval = ctx.cfg.setting("batch_interval", 0.1, (int, float))
        self._last_commit = 0.0
        # the consumer can read while any broker answers: health turns red when none does
        self.brokers = BrokerWatch(lambda: parse_bootstrap(ctx.cfg.kafka.bootstrap_servers), 1, interval=1.0)
        self.consumed = ctx.metrics.counter("messages_records_total", "records consumed", ("result",))

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/messages", self.get_messages)]

    async def start(self) -> None:
        kafka = self.ctx.cfg.kafka
        self.log.info("joining group %s on topic %s (replay %s)", kafka.consumer_group, kafka.topic,
                      "on" if self.replay else "off")
        self.consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap_servers, group_id=kafka.consumer_group,
                                         client_id=self.ctx.name, enable_auto_commit=False,
                                         auto_offset_reset="earliest",
                                         fetch_min_bytes=self.fetch_min_bytes, fetch_max_wait_ms=self.fetch_max_wait_ms)
        await self.consumer.start()
        self.consumer.subscribe([kafka.topic], listener=_Rebalance(self))
        self.ctx.spawn(self._consume(), "consume")
        await self.brokers.probe()
        self.ctx.spawn(self.brokers.run(), "kafka broker watch")

    async def stop(self) -> None:
        if self.consumer is not None:
            await self.commit_pending()
            await self.consumer.stop()

    def health(self) -> dict[str, bool]:
        return {"kafka_group": self.joined, "kafka": self.brokers.writable}

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        assert self.consumer is not None
        self.joined = True
        mine = {tp.partition for tp in assigned}
        self.log.info("partitions assigned: %s", sorted(mine))
        for tp in list(self.committed):
            if tp not in assigned:
                del self.committed[tp]
        if not self.replay:
            return
        dropped = self.store.drop_partitions(self.store.partitions() - mine)
        if dropped:
            self.log.info("dropped %d messages of partitions now owned by another instance", dropped)
        fresh = [tp for tp in assigned if tp.partition not in self.store.partitions()]
        for tp in fresh:
            self.committed[tp] = await self.consumer.committed(tp) or 0
        if fresh:
            await self.consumer.seek_to_beginning(*fresh)
            self.log.info("replaying partitions %s up to committed offsets %s",
                          sorted(tp.partition for tp in fresh), [self.committed[tp] for tp in fresh])

    async def _consume(self) -> None:
        assert self.consumer is not None
        while True:
            wait_ms = int(self.commit_interval * 1000) if self.pending else 500
            batches = await self.consumer.getmany(timeout_ms=wait_ms, max_records=MAX_BATCH)
            taken_at = time.monotonic()
            for tp, records in batches.items():
                for record in records:
                    self._take(tp, record)
                    if record.offset >= self.committed.get(tp, 0):
                        self.pending[tp] = record.offset + 1
            if self.pending and time.monotonic() - self._last_commit >= self.commit_interval:
                await self.commit_pending()
            # Pause only when records come in bunches: a single one means they arrive sparsely (each is
            # held within milliseconds), a full batch means a backlog (a replay) to catch up at once.
            taken = sum(len(records) for records in batches.values())
            if 1 < taken < MAX_BATCH:
                await asyncio.sleep(max(0.0, taken_at + self.batch_interval - time.monotonic()))  # pacing

    async def commit_pending(self) -> None:
        offsets, self.pending = self.pending, {}
        self._last_commit = time.monotonic()
        if offsets:
            await self._commit(offsets)

    def _take(self, tp: TopicPartition, record: ConsumerRecord) -> None:
        replayed = record.offset < self.committed.get(tp, 0)
        try:
            msg_id, msg = decode(record)
        except ValueError as exc:
            self.consumed.inc(result="malformed")
            self.log.warning("skipping partition %d offset %d: %s", tp.partition, record.offset, exc)
            return
        if not self.store.add(Held(msg_id, msg, record.timestamp, tp.partition, record.offset)):
            self.consumed.inc(result="duplicate")
            return
        self.consumed.inc(result="replayed" if replayed else "new")
        self.log.info("%s %s (partition %d offset %d)", "replayed" if replayed else "received", preview(msg),
                      tp.partition, record.offset)

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        assert self.consumer is not None
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:
            # a rebalance took the partition: its new owner gets the records again and drops duplicates
            self.log.warning("commit of %s failed: %s", {tp.partition: o for tp, o in offsets.items()}, exc)
            return
        for tp, offset in offsets.items():
            self.committed[tp] = max(self.committed.get(tp, 0), offset)

    async def get_messages(self, _: web.Request) -> web.Response:
        held = self.store.ordered()
        return web.json_response({"name": self.ctx.name,
                                  "messages": [{"id": h.id, "msg": h.msg, "partition": h.partition} for h in held]})


def main() -> None:
    run_worker(MessagesService)


if __name__ == "__main__":
    main()
