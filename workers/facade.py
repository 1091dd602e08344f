"""The facade: POST /messages (and /messages/batch) stores through a logging instance and produces to
Kafka, both at once; GET /messages reads back from one logging and one messages instance.

201 only after both the logging store and the Kafka produce (acks=all, idempotent) succeeded; 503 with
the reason if either could not be done before its deadline. The id (Idempotency-Key or uuid4) goes to
logging and is the Kafka key, so a client retry with the same key is stored once on both paths. The two
run concurrently, so a 503 may leave the message on one path only (never acknowledged); the retry with
the same key completes it without a duplicate.

When fewer Kafka brokers answer than the topic's min.insync.replicas (BrokerWatch), no acks=all write can
succeed: new POSTs get 503 at once and waiting ones are answered 503 instead of waiting out the timeout.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass

from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from workers.broker_watch import Address, BrokerWatch, parse_bootstrap
from workers.coalescer import Coalescer
from workers.http import fail, read_body
from workers.input import InputError, batch_body_limit, body_limit, check_id, parse_batch, parse_message
from workers.runtime import Worker, WorkerContext, run_worker
from workers.service_client import Answer, NoInstanceAnswered, ServiceClient


def wants_text(accept: str) -> bool:
    """True when the client asked for text/plain rather than JSON."""
    kinds = [part.split(";")[0].strip().lower() for part in accept.split(",")]
    return "text/plain" in kinds and "application/json" not in kinds


def as_text(logging_msgs: list[str], messages_msgs: list[str]) -> str:
    """The lab's plain-text answer: what logging holds, then what messages holds."""
    return f"logging: {', '.join(logging_msgs)}\nmessages: {', '.join(messages_msgs)}\n"


@dataclass(frozen=True)
class Failure:
    status: int
    reason: str


def _forget(task: asyncio.Future[object]) -> None:
    """A produce nobody waits for any more: its records may still land; just retrieve the outcome."""
    if not task.cancelled():
        task.exception()


class Facade(Worker):
    service = "facade"

    def __init__(self, ctx: WorkerContext) -> None:
        super().__init__(ctx)
        cfg = ctx.cfg
        self.store_timeout = cfg.setting("store_timeout", 10.0, (int, float))
        self.produce_timeout = cfg.setting("produce_timeout", 10.0, (int, float))
        self.linger_ms = cfg.setting("linger_ms", 20, int)
        attempt = cfg.setting("attempt_timeout", 3.0, (int, float))
        failovers = ctx.metrics.counter("facade_failovers_total", "calls retried on another instance", ("service",))
        self.logging = ServiceClient("logging", ctx.config_server, ctx.http, failovers=failovers,
                                     attempt_timeout=attempt)
        self.messages = ServiceClient("messages", ctx.config_server, ctx.http, failovers=failovers,
                                      attempt_timeout=attempt)
        # Concurrent single POSTs share /log/batch calls. A store waits up to store_linger_ms for
        # others, half the Kafka linger: the produce it runs alongside waits longer, so a POST's
        # latency does not grow, and at 500 msg/s the facade and logging handle ~5x fewer requests.
        self.stores: Coalescer[tuple[str, str], Failure | None] = Coalescer(
            self._store_group, max_in_flight=cfg.setting("store_max_in_flight", 4, int),
            linger=cfg.setting("store_linger_ms", self.linger_ms / 2, (int, float)) / 1000)
        self.producer: AIOKafkaProducer | None = None
        self.producer_start: asyncio.Future[None] | None = None
        self.bootstrap = parse_bootstrap(cfg.kafka.bootstrap_servers)
        self.brokers = BrokerWatch(self._broker_addresses, cfg.kafka.min_insync_replicas)
        self.posts = ctx.metrics.counter("facade_posts_total", "messages posted, by outcome", ("result",))
        self.step_latency = ctx.metrics.histogram("facade_step_seconds", "latency of each step of a POST",
                                                  ("step",))

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/messages", self.post_message), web.post("/messages/batch", self.post_batch),
                web.get("/messages", self.get_messages)]

    def _broker_addresses(self) -> list[Address]:
        known = list(self.bootstrap)
        if self.producer is not None:
            known += [(b.host, b.port) for b in self.producer.client.cluster.brokers()]
        return known

    async def start(self) -> None:
        kafka = self.ctx.cfg.kafka
        self.log.info("connecting to Kafka %s (topic %s, min.insync.replicas %d)", kafka.bootstrap_servers,
                      kafka.topic, kafka.min_insync_replicas)
        # linger: concurrent POSTs share a produce request (fewer round trips and syscalls under load).
        # 20 ms: at 500 msg/s the 2 cores are saturated and the brokers' per-request CPU sets the tail;
        # a lone POST pays up to 10 ms more than at 10 ms
        self.producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers, client_id=self.ctx.name,
                                         acks="all", enable_idempotence=True, linger_ms=self.linger_ms)
        await self.brokers.probe()
        self.ctx.spawn(self.brokers.run(), "kafka broker watch")
        # An idempotent producer starts only once it has a producer id, which takes a controller quorum
        # (2 of the 3 KRaft nodes). Started while two brokers are down, the facade must not hang in
        # start (the supervisor would restart it in a loop): it serves, answers POSTs 503 with the
        # reason, and the producer finishes starting in the background when the brokers return.
        self.producer_start = asyncio.ensure_future(self.producer.start())
        if self.brokers.writable or not self.brokers.live:
            await self.producer_start  # no broker at all: fail the start (exit 1, the supervisor retries)
        else:
            self.producer_start.add_done_callback(self._producer_start_done)

    @property
    def producer_started(self) -> bool:
        task = self.producer_start
        return task is not None and task.done() and not task.cancelled() and task.exception() is None

    def _producer_start_done(self, task: asyncio.Future[None]) -> None:
        """A producer that failed to start in the background crashes the worker (restart policy)."""
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            self.ctx.crash(f"the Kafka producer did not start: {type(exc).__name__}: {exc}")

    async def stop(self) -> None:
        if self.producer_start is not None and not self.producer_start.done():
            self.producer_start.cancel()
            await asyncio.wait([self.producer_start])
        if self.producer is not None:
            await self.producer.stop()

    def health(self) -> dict[str, bool]:
        return {"kafka": self.producer_started and self.brokers.writable}

    # Too few brokers for acks=all: the facade answers every POST 503 with the reason at once, and GETs
    # still work. Started in that state (a restart while two brokers are down) it is up, not failing.
    ready_despite = frozenset({"kafka"})

    def _refuse_if_unwritable(self, msg_id: str | None = None) -> None:
        if not self.brokers.writable or not self.producer_started:
            self.posts.inc(result="kafka_unavailable")
            extra = {"id": msg_id} if msg_id else {}
            why = self.brokers.describe() if not self.brokers.writable else "the Kafka producer is still starting"
            fail(503, f"not accepted: {why}", **extra)

    async def post_message(self, request: web.Request) -> web.Response:
        limit = self.ctx.cfg.max_message_bytes
        try:
            key = request.headers.get("Idempotency-Key")
            msg_id = check_id(key) if key is not None else str(uuid.uuid4())
            body = await read_body(request, body_limit(limit))
            msg = parse_message(request.content_type, request.charset, body, limit)
        except InputError:
            self.posts.inc(result="rejected")
            raise
        self._refuse_if_unwritable(msg_id)
        failure = (await self._accept([(msg_id, msg)]))[0]
        if failure is not None:
            fail(failure.status, failure.reason, id=msg_id)
        return web.json_response({"id": msg_id}, status=201)

    async def post_batch(self, request: web.Request) -> web.Response:
        """Many messages, each with its own id and result; 201 when all were accepted, else 207."""
        try:
            items = parse_batch(await read_body(request, batch_body_limit(self.ctx.cfg.max_message_bytes)),
                                self.ctx.cfg.max_message_bytes)
        except InputError:
            self.posts.inc(result="rejected")
            raise
        self._refuse_if_unwritable()
        results: list[dict[str, object]] = []
        good: list[tuple[str, str]] = []
        for item in items:
            if item.error is not None:
                self.posts.inc(result="rejected")
                results.append({"id": item.id, "status": item.error.status, "error": item.error.message})
            else:
                assert item.msg is not None
                good.append((item.id or str(uuid.uuid4()), item.msg))
                results.append({"id": good[-1][0], "status": 201})
        outcomes = iter(await self._accept(good)) if good else iter(())
        for result in results:
            if result["status"] == 201:
                failure = next(outcomes)
                if failure is not None:
                    result.update(status=failure.status, error=failure.reason)
        accepted = sum(1 for r in results if r["status"] == 201)
        return web.json_response({"accepted": accepted, "failed": len(results) - accepted, "results": results},
                                 status=201 if accepted == len(results) else 207)

    async def _accept(self, messages: list[tuple[str, str]]) -> list[Failure | None]:
        """Store in logging and produce to Kafka at the same time; per message, None or why it failed."""
        storing = self.stores.submit(messages[0]) if len(messages) == 1 else self._store(messages)
        stored, produced = await asyncio.gather(storing, self._produce(messages))
        outcomes: list[Failure | None] = []
        for kafka_error in produced:
            if stored is None and kafka_error is None:
                self.posts.inc(result="ok")
                outcomes.append(None)
            elif stored is not None:
                self.posts.inc(result="logging_unavailable")
                also = f"; Kafka: {kafka_error}" if kafka_error else ""
                outcomes.append(Failure(stored.status, f"{stored.reason}{also}; retry with the same Idempotency-Key"))
            else:
                self.posts.inc(result="kafka_unavailable")
                outcomes.append(Failure(503, f"not acknowledged by Kafka ({kafka_error}); "
                                             "retry with the same Idempotency-Key"))
        return outcomes

    async def _store_group(self, messages: list[tuple[str, str]]) -> list[Failure | None]:
        return [await self._store(messages)] * len(messages)

    async def _store(self, messages: list[tuple[str, str]]) -> Failure | None:
        """One call to a logging instance (failed over to another with the same ids), for all messages."""
        started = time.perf_counter()
        entries = [{"id": msg_id, "msg": msg} for msg_id, msg in messages]
        path, body = ("/log", entries[0]) if len(entries) == 1 else ("/log/batch", {"entries": entries})
        try:
            answer = await self.logging.request("POST", path, json=body, timeout=self.store_timeout)
        except NoInstanceAnswered as exc:
            return Failure(503, f"not stored: {exc}")
        if answer.status not in (200, 201):
            return Failure(502, f"{answer.instance} refused the message: HTTP {answer.status}: {answer.body}")
        self.step_latency.observe(time.perf_counter() - started, step="logging")
        return None

    async def _send_all(self, messages: list[tuple[str, str]]) -> list[object]:
        assert self.producer is not None
        topic = self.ctx.cfg.kafka.topic
        acks = [await self.producer.send(topic, key=msg_id.encode(),
                                         value=json.dumps({"id": msg_id, "msg": msg}).encode())
                for msg_id, msg in messages]
        return await asyncio.gather(*acks, return_exceptions=True)

    async def _produce(self, messages: list[tuple[str, str]]) -> list[str | None]:
        """Per message None (acknowledged by acks=all) or the reason it was not, within produce_timeout.

        Gives up early when the broker watch sees too few brokers. A record given up on may still land
        later (idempotent producer): the client's retry with the same id is deduplicated downstream.
        """
        started = time.perf_counter()
        sending = asyncio.ensure_future(self._send_all(messages))
        lost = asyncio.ensure_future(self.brokers.wait_unwritable())
        done, _ = await asyncio.wait({sending, lost}, timeout=self.produce_timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
        lost.cancel()
        if sending not in done:
            sending.add_done_callback(_forget)
            reason = self.brokers.describe() if lost in done else f"no ack within {self.produce_timeout}s"
            return [reason] * len(messages)
        try:
            results = sending.result()
        except KafkaError as exc:
            return [_describe(exc)] * len(messages)
        self.step_latency.observe(time.perf_counter() - started, step="kafka")
        return [_describe(r) if isinstance(r, BaseException) else None for r in results]

    async def get_messages(self, request: web.Request) -> web.Response:
        logged, held = await asyncio.gather(
            self.logging.request("GET", "/log", timeout=self.store_timeout),
            self.messages.request("GET", "/messages", timeout=self.store_timeout), return_exceptions=True)
        errors = [str(r) for r in (logged, held) if isinstance(r, BaseException)]
        if errors:
            fail(503, "; ".join(errors))
        assert isinstance(logged, Answer) and isinstance(held, Answer)
        logging_msgs = [m["msg"] for m in logged.body["messages"]]
        messages_msgs = [m["msg"] for m in held.body["messages"]]
        if wants_text(request.headers.get("Accept", "")):
            return web.Response(text=as_text(logging_msgs, messages_msgs))
        return web.json_response({"logging": logging_msgs, "messages": messages_msgs,
                                  "from": {"logging": logged.instance, "messages": held.instance}})


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def main() -> None:
    run_worker(Facade)


if __name__ == "__main__":
    main()
