"""The steps a chaos scenario is made of. Each is a small declarative dataclass with one `run`.

Steps talk to the running topology only through its control API and its public HTTP endpoints,
the way a user would, so a scenario runs the same from the CLI and from a test.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from supervisor.chaos.observe import group_lag, read_holdings
from supervisor.client import SupervisorClient
from supervisor.deadline import wait_until
from tools.load import LoadRun, post_messages


@dataclass
class ChaosContext:
    """What the steps of one run share: the client, the load record, the fault time, notes."""

    client: SupervisorClient
    run: LoadRun
    say: Callable[[str], None]
    fault_at: float | None = None
    killed: list[str] = field(default_factory=list)
    background: asyncio.Task[LoadRun] | None = None
    next_index: int = 1
    facts: dict[str, Any] = field(default_factory=dict)  # figures a scenario reports beyond the checker

    async def state_of(self, name: str) -> dict[str, Any]:
        data = await self.client.checked("status", "--json")
        return next(i for i in data["instances"] if i["name"] == name)

    async def wait_states(self, target: str, state: str, timeout: float) -> None:
        async def reached() -> bool:
            data = await self.client.checked("status", "--json")
            chosen = [i for i in data["instances"] if i["name"] == target or i["service"] == target]
            return bool(chosen) and all(i["state"] == state for i in chosen)

        await wait_until(reached, timeout=timeout, interval=0.25, what=f"{target} to be {state}")

    async def partitions(self) -> list[dict[str, Any]]:
        return await self.client.checked("leaders", "--json")


class Step:
    def describe(self) -> str:
        raise NotImplementedError

    async def run(self, ctx: ChaosContext) -> None:
        raise NotImplementedError


@dataclass
class Stop(Step):
    target: str

    def describe(self) -> str:
        return f"stop {self.target}"

    async def run(self, ctx: ChaosContext) -> None:
        await ctx.client.checked("stop", self.target)
        await ctx.wait_states(self.target, "STOPPED", timeout=60)


@dataclass
class Start(Step):
    target: str

    def describe(self) -> str:
        return f"start {self.target}"

    async def run(self, ctx: ChaosContext) -> None:
        await ctx.client.checked("start", self.target)
        await ctx.wait_states(self.target, "RUNNING", timeout=90)


@dataclass
class Send(Step):
    """POST `count` messages through the facade; in the background when `background`."""

    count: int
    concurrency: int = 8
    background: bool = False

    def describe(self) -> str:
        mode = " in the background" if self.background else ""
        return f"send {self.count} messages at concurrency {self.concurrency}{mode}"

    async def run(self, ctx: ChaosContext) -> None:
        facades = await ctx.client.instances("facade")
        if not facades:
            raise RuntimeError("no facade instance is registered")
        start, ctx.next_index = ctx.next_index, ctx.next_index + self.count
        sending = post_messages(
            facades[0]["address"], self.count, concurrency=self.concurrency, prefix="msg",
            run_id=ctx.run.run_id, start_index=start, run=ctx.run,
        )
        if self.background:
            ctx.background = asyncio.create_task(sending, name="chaos-send")
            return
        before = ctx.run.acked_count()
        await sending
        ctx.say(f"  {ctx.run.acked_count() - before} of {self.count} acknowledged")


@dataclass
class WaitAcked(Step):
    count: int

    def describe(self) -> str:
        return f"wait for {self.count} acknowledgements"

    async def run(self, ctx: ChaosContext) -> None:
        await wait_until(lambda: ctx.run.acked_count() >= self.count, timeout=120, interval=0.02,
                         what=f"{self.count} acknowledged messages")


@dataclass
class AwaitSend(Step):
    def describe(self) -> str:
        return "wait for the background sending to finish"

    async def run(self, ctx: ChaosContext) -> None:
        if ctx.background is not None:
            await ctx.background
            ctx.background = None


@dataclass
class KillLeader(Step):
    """SIGKILL the leader broker of the partition holding the most unconsumed messages."""

    def describe(self) -> str:
        return "kill the leader of the partition with the most unconsumed messages"

    async def run(self, ctx: ChaosContext) -> None:
        config = await ctx.client.worker_config("messages")
        kafka = config["kafka"]
        lag = await group_lag(kafka["bootstrap_servers"], kafka["topic"], kafka["consumer_group"])
        partitions = {p["partition"]: p for p in await ctx.partitions()}
        busiest = max(partitions, key=lambda p: (lag.get(p, 0), -p))
        leader = partitions[busiest]["leader"]
        tie = sum(1 for v in lag.values() if v == lag.get(busiest, 0)) > 1
        why = "the partitions tie, so the lowest is taken" if tie else f"partition {busiest} holds the most"
        ctx.say(f"  unconsumed per partition: {dict(sorted(lag.items()))}; {why}: killing its leader {leader} "
                f"puts the most unconsumed messages at risk")
        ctx.facts.update(partition=busiest, old_leader=leader, unconsumed=lag)
        await _kill(ctx, leader)


@dataclass
class Kill(Step):
    """SIGKILL a named instance, or `leader` / `follower` of the busiest partition."""

    target: str

    def describe(self) -> str:
        return f"kill {self.target}"

    async def run(self, ctx: ChaosContext) -> None:
        target = self.target
        if target in ("leader", "follower"):
            partition = (await ctx.partitions())[0]
            others = [r for r in partition["isr"] if r != partition["leader"] and r not in ctx.killed]
            target = partition["leader"] if target == "leader" else others[0]
        await _kill(ctx, target)


async def _kill(ctx: ChaosContext, target: str) -> None:
    await ctx.client.checked("kill", target)
    if ctx.fault_at is None:
        ctx.fault_at = time.monotonic()
    ctx.killed.append(target)
    ctx.say(f"  killed {target} (SIGKILL)")


@dataclass
class WaitNewLeader(Step):
    def describe(self) -> str:
        return "wait for a new leader of that partition"

    async def run(self, ctx: ChaosContext) -> None:
        partition, old = ctx.facts["partition"], ctx.facts["old_leader"]
        began = time.monotonic()

        async def elected() -> bool:
            current = next(p for p in await ctx.partitions() if p["partition"] == partition)
            ctx.facts["new_leader"] = current["leader"]
            ctx.facts["isr_after"] = current["isr"]
            return current["leader"] not in (None, old)

        await wait_until(elected, timeout=60, interval=0.2, what=f"a new leader of partition {partition}")
        ctx.facts["election_seconds"] = round(time.monotonic() - began, 2)
        ctx.say(f"  partition {partition}: leader {old} -> {ctx.facts['new_leader']} "
                f"(ISR {ctx.facts['isr_after']}), seen after {ctx.facts['election_seconds']}s")


@dataclass
class Revive(Step):
    """Revive every killed broker or member and wait until replication is whole again."""

    def describe(self) -> str:
        return "revive what was killed"

    async def run(self, ctx: ChaosContext) -> None:
        for target in ctx.killed:
            if target.startswith(("kafka-", "hazelcast-")):
                await ctx.client.checked("revive", target)
                await ctx.wait_states(target, "RUNNING", timeout=120)
        ctx.killed.clear()

        async def replicated() -> bool:
            return all(p["leader"] is not None and sorted(p["isr"]) == sorted(p["replicas"])
                       for p in await ctx.partitions())

        await wait_until(replicated, timeout=120, interval=0.5, what="every partition's ISR to be full")
        ctx.say("  revived; every partition's ISR is full again")


@dataclass
class WaitRestarted(Step):
    """Wait until the supervisor has restarted a killed worker and registered it again."""

    target: str

    def describe(self) -> str:
        return f"wait until {self.target} is restarted and registered"

    async def run(self, ctx: ChaosContext) -> None:
        await ctx.wait_states(self.target, "RUNNING", timeout=90)
        service = self.target.rsplit("-", 1)[0]

        async def registered() -> bool:
            return any(i["name"] == self.target for i in await ctx.client.instances(service))

        await wait_until(registered, timeout=30, interval=0.2, what=f"{self.target} to be registered")
        state = await ctx.state_of(self.target)
        ctx.say(f"  {self.target} RUNNING again (restarts: {state.get('restarts')}) and registered")


@dataclass
class ExpectFailFast(Step):
    """POST `count` messages that must each fail (503) within `within` seconds."""

    count: int
    within: float

    def describe(self) -> str:
        return f"send {self.count} messages that must fail with 503 within {self.within:g}s each"

    async def run(self, ctx: ChaosContext) -> None:
        first = len(ctx.run.attempts)
        await Send(self.count, concurrency=4).run(ctx)
        tried = ctx.run.attempts[first:]
        slowest = max(a.latency for a in tried)
        statuses = sorted({a.status for a in tried}, key=str)
        # a scenario may expect fail-fast more than once: the facts cover all of them
        ctx.facts.update(
            fail_fast_statuses=sorted(set(ctx.facts.get("fail_fast_statuses", [])) | set(statuses), key=str),
            fail_fast_slowest=max(round(slowest, 2), ctx.facts.get("fail_fast_slowest", 0.0)),
            fail_fast_acknowledged=ctx.facts.get("fail_fast_acknowledged", 0) + sum(a.acknowledged for a in tried))
        ctx.say(f"  statuses {statuses}, slowest answer {slowest:.2f}s")
        if any(a.acknowledged for a in tried) or any(a.status != 503 for a in tried) or slowest > self.within:
            ctx.facts["fail_fast_violated"] = True


@dataclass
class WaitCaughtUp(Step):
    """Wait until the messages instances together hold every acknowledged message (or time out)."""

    timeout: float = 90.0

    def describe(self) -> str:
        return "wait until the consumers hold every acknowledged message"

    async def run(self, ctx: ChaosContext) -> None:
        wanted = {a.message_id for a in ctx.run.acknowledged}

        async def caught_up() -> bool:
            holdings = await read_holdings(ctx.client, with_topic=False)
            held = {i for ids in holdings.messages.values() for i in ids}
            return wanted <= held

        try:
            await wait_until(caught_up, timeout=self.timeout, interval=0.5, what="the consumers to catch up")
        except TimeoutError:
            ctx.say(f"  consumers did not catch up within {self.timeout:g}s: the checker will say what is missing")


@dataclass
class Scale(Step):
    """Scale a service to `count` instances; `env` goes to the new instances only (fault injection)."""

    service: str
    count: int
    env: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        extra = "".join(f" with {k}={v}" for k, v in self.env.items())
        return f"scale {self.service} to {self.count}{extra}"

    async def run(self, ctx: ChaosContext) -> None:
        argv = ["scale", self.service, str(self.count)]
        for key, value in self.env.items():
            argv += ["--env", f"{key}={value}"]
        if not self.env:
            await ctx.client.checked(*argv)
            return
        # With a fault injected the new instance is meant to fail: the verb says so, and that is the point.
        ctx.facts["injected_at"] = time.monotonic()  # not a write fault: the stall clock stays off
        reply = await ctx.client.command(*argv)
        first_line = (reply.get("error") or reply.get("text") or "").splitlines()[:1]
        ctx.say(f"  scale answered: {'ok' if reply.get('ok') else 'failed'}: {' '.join(first_line)}")


@dataclass
class WaitFatal(Step):
    """Wait until the supervisor gives up on a crash-looping instance, and show what status says."""

    target: str
    timeout: float = 120.0

    def describe(self) -> str:
        return f"wait until {self.target} is FATAL (restart limit reached)"

    async def run(self, ctx: ChaosContext) -> None:
        began = ctx.facts.get("injected_at", time.monotonic())
        await ctx.wait_states(self.target, "FATAL", timeout=self.timeout)
        state = await ctx.state_of(self.target)
        last_exit = state.get("last_exit") or {}
        ctx.facts.update(fatal_after_s=round(time.monotonic() - began, 1), fatal_restarts=state.get("restarts"),
                         fatal_exit=last_exit.get("description") or last_exit.get("code"))
        tail = (last_exit.get("log_tail") or [])[-2:]
        ctx.say(f"  {self.target} FATAL {ctx.facts['fatal_after_s']}s after the fault, {state.get('restarts')} restarts; "
                f"last exit: {ctx.facts['fatal_exit']}; log tail: {tail}")
