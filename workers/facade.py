"""The facade: POST /messages stores through a logging instance, then produces to Kafka; GET /messages
reads back from one logging and one messages instance.

201 only after both the logging store and the Kafka produce (acks=all, idempotent) succeeded; 503 with
the reason if either could not be done before its deadline. The id (Idempotency-Key or uuid4) goes to
logging and is the Kafka key, so a client retry with the same key is stored once on both paths.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid

from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from workers.http import fail, read_body
from workers.input import InputError, body_limit, check_id, parse_message
from workers.runtime import Worker, WorkerContext, run_worker
from workers.service_client import Answer, NoInstanceAnswered, ServiceClient


def wants_text(accept: str) -> bool:
    """True when the client asked for text/plain rather than JSON."""
    kinds = [part.split(";")[0].strip().lower() for part in accept.split(",")]
    return "text/plain" in kinds and "application/json" not in kinds


def as_text(logging_msgs: list[str], messages_msgs: list[str]) -> str:
    """The lab's plain-text answer: what logging holds, then what messages holds."""
    return f"logging: {', '.join(logging_msgs)}\nmessages: {', '.join(messages_msgs)}\n"


class Facade(Worker):
    service = "facade"

    def __init__(self, ctx: WorkerContext) -> None:
        super().__init__(ctx)
        cfg = ctx.cfg
        self.store_timeout = cfg.setting("store_timeout", 10.0, (int, float))
        self.produce_timeout = cfg.setting("produce_timeout", 10.0, (int, float))
        attempt = cfg.setting("attempt_timeout", 3.0, (int, float))
        failovers = ctx.metrics.counter("facade_failovers_total", "calls retried on another instance", ("service",))
        self.logging = ServiceClient("logging", ctx.config_server, ctx.http, failovers=failovers,
                                     attempt_timeout=attempt)
        self.messages = ServiceClient("messages", ctx.config_server, ctx.http, failovers=failovers,
                                      attempt_timeout=attempt)
        self.producer: AIOKafkaProducer | None = None
        self.posts = ctx.metrics.counter("facade_posts_total", "POST /messages outcomes", ("result",))
        self.step_latency = ctx.metrics.histogram("facade_step_seconds", "latency of each step of a POST",
                                                  ("step",))

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/messages", self.post_message), web.get("/messages", self.get_messages)]

    async def start(self) -> None:
        kafka = self.ctx.cfg.kafka
        self.log.info("connecting to Kafka %s (topic %s)", kafka.bootstrap_servers, kafka.topic)
        self.producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers, client_id=self.ctx.name,
                                         acks="all", enable_idempotence=True)
        await self.producer.start()

    async def stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()

    def health(self) -> dict[str, bool]:
        return {"kafka": self.producer is not None and bool(self.producer.client.cluster.brokers())}

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
        await self._store(msg_id, msg)
        await self._produce(msg_id, msg)
        self.posts.inc(result="ok")
        return web.json_response({"id": msg_id}, status=201)

    async def _store(self, msg_id: str, msg: str) -> None:
        started = time.perf_counter()
        try:
            answer = await self.logging.request("POST", "/log", json={"id": msg_id, "msg": msg},
                                                timeout=self.store_timeout)
        except NoInstanceAnswered as exc:
            self.posts.inc(result="logging_unavailable")
            fail(503, f"not stored: {exc}", id=msg_id)
        if answer.status not in (200, 201):
            self.posts.inc(result="logging_rejected")
            fail(502, f"{answer.instance} refused the message: HTTP {answer.status}: {answer.body}", id=msg_id)
        self.step_latency.observe(time.perf_counter() - started, step="logging")

    async def _produce(self, msg_id: str, msg: str) -> None:
        assert self.producer is not None
        started = time.perf_counter()
        value = json.dumps({"id": msg_id, "msg": msg}).encode()
        try:
            await asyncio.wait_for(
                self.producer.send_and_wait(self.ctx.cfg.kafka.topic, key=msg_id.encode(), value=value),
                self.produce_timeout)
        except (KafkaError, asyncio.TimeoutError) as exc:
            # The record may still land later (idempotent producer): a client retry with the same
            # Idempotency-Key is deduplicated by logging (put_if_absent) and messages (by id).
            self.posts.inc(result="kafka_unavailable")
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            fail(503, f"stored in logging but not acknowledged by Kafka within {self.produce_timeout}s "
                      f"({reason}); retry with the same Idempotency-Key", id=msg_id)
        self.step_latency.observe(time.perf_counter() - started, step="kafka")

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


def main() -> None:
    run_worker(Facade)


if __name__ == "__main__":
    main()
