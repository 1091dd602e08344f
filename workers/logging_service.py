"""The logging service: stores each message once in a Hazelcast IMap, keyed by its id.

Order: each entry is stored as JSON {"msg", "ts"} where `ts` is time.time_ns() at the first
successful put (put_if_absent keeps the first value, so a retried id keeps its original position).
GET /log sorts by (ts, id). All instances run on one machine and share its clock, so ts is the order
the messages were accepted. A cluster-wide counter (Hazelcast AtomicLong) would survive clock skew
across hosts but costs a second round trip per message and needs the CP subsystem; not worth it here.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiohttp import web
from hazelcast.asyncio import HazelcastClient
from hazelcast.errors import HazelcastError
from hazelcast.lifecycle import LifecycleState

from workers.http import fail, read_body
from workers.input import LogEntry, batch_body_limit, body_limit, parse_log_batch, parse_log_entry
from workers.runtime import Worker, WorkerContext, preview, run_worker

class LoggingService(Worker):
    service = "logging"

    def __init__(self, ctx: WorkerContext) -> None:
        super().__init__(ctx)
        self.client: HazelcastClient | None = None
        self.map: Any = None
        self.connected = False
        self.op_timeout = ctx.cfg.setting("op_timeout", 5.0, (int, float))
        self.stored = ctx.metrics.counter("logging_messages_total", "POST /log outcomes", ("result",))
        self.put_latency = ctx.metrics.histogram("logging_put_seconds", "Hazelcast put_if_absent latency")

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/log", self.post_log), web.post("/log/batch", self.post_log_batch),
                web.get("/log", self.get_log)]

    def _on_lifecycle(self, state: str) -> None:
        if state == LifecycleState.CONNECTED:
            self.connected = True
            self.log.info("connected to Hazelcast")
        elif state == LifecycleState.DISCONNECTED:
            self.connected = False
            self.log.warning("disconnected from Hazelcast (reconnecting)")
        elif state == LifecycleState.SHUTDOWN and not self.ctx.stopping:
            self.connected = False
            self.ctx.crash("the Hazelcast client shut down (cluster unreachable)")

    async def start(self) -> None:
        hz = self.ctx.cfg.hazelcast
        members = hz.members_own_first()
        self.log.info("connecting to Hazelcast %s (own member %s)", members, hz.own_member)
        self.client = await HazelcastClient.create_and_start(
            cluster_name=hz.cluster_name,
            cluster_members=members,
            # one connection, to the own member first; on loss the client moves to the next member
            smart_routing=False,
            client_name=self.ctx.name,
            lifecycle_listeners=[self._on_lifecycle],
            cluster_connect_timeout=self.ctx.cfg.setting("cluster_connect_timeout", 30.0, (int, float)),
            invocation_timeout=self.op_timeout,
        )
        self.map = await self.client.get_map(hz.map)

    async def stop(self) -> None:
        if self.client is not None:
            await self.client.shutdown()

    def health(self) -> dict[str, bool]:
        return {"hazelcast": self.connected}

    async def _put(self, entry: LogEntry) -> bool:
        """Store one entry unless its id is there already; True if it was (a retry). 503 on failure."""
        value = json.dumps({"msg": entry.msg, "ts": time.time_ns()})
        started = time.perf_counter()
        try:
            previous = await asyncio.wait_for(self.map.put_if_absent(entry.id, value), self.op_timeout)
        except (HazelcastError, asyncio.TimeoutError) as exc:
            self.stored.inc(result="error")
            self.log.warning("could not store %s: %s", entry.id, exc or type(exc).__name__)
            fail(503, f"hazelcast: {type(exc).__name__}: {exc}")
        self.put_latency.observe(time.perf_counter() - started)
        duplicate = previous is not None
        self.stored.inc(result="duplicate" if duplicate else "stored")
        self.log.info("received %s%s", preview(entry.msg), " (duplicate id, kept the first)" if duplicate else "")
        return duplicate

    async def post_log(self, request: web.Request) -> web.Response:
        limit = self.ctx.cfg.max_message_bytes
        entry = parse_log_entry(await read_body(request, body_limit(limit)), limit)
        duplicate = await self._put(entry)
        return web.json_response({"id": entry.id, "duplicate": duplicate}, status=200 if duplicate else 201)

    async def post_log_batch(self, request: web.Request) -> web.Response:
        """All entries stored (put_if_absent each, concurrently), or 503 so the facade retries them all
        elsewhere: the retry is harmless for the ones already stored (they come back as duplicates)."""
        limit = self.ctx.cfg.max_message_bytes
        entries = parse_log_batch(await read_body(request, batch_body_limit(limit)), limit)
        outcomes = await asyncio.gather(*(self._put(e) for e in entries), return_exceptions=True)
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        if errors:
            fail(503, f"{len(errors)} of {len(entries)} entries not stored: {errors[0]}")
        return web.json_response({"stored": sum(1 for o in outcomes if o is False),
                                  "duplicates": sum(1 for o in outcomes if o is True)}, status=201)

    async def get_log(self, _: web.Request) -> web.Response:
        try:
            entries = await asyncio.wait_for(self.map.entry_set(), self.op_timeout)
        except (HazelcastError, asyncio.TimeoutError) as exc:
            fail(503, f"hazelcast: {type(exc).__name__}: {exc}")
        rows = []
        for key, raw in entries:
            value = json.loads(raw)
            rows.append({"id": key, "msg": value["msg"], "ts": value["ts"]})
        rows.sort(key=lambda r: (r["ts"], r["id"]))
        return web.json_response({"name": self.ctx.name, "messages": rows})


def main() -> None:
    run_worker(LoggingService)


if __name__ == "__main__":
    main()
