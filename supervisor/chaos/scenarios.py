"""The named chaos scenarios: each a short list of steps plus what it promises.

A scenario's `expect` names the extra promise the checker's lost/duplicated verdict does not cover
(for example: no failed POST while a worker is killed).
"""

from __future__ import annotations

from dataclasses import dataclass

from supervisor.chaos.steps import (
    AwaitSend, ExpectFailFast, Kill, KillLeader, Revive, Send, Start, Step, Stop, WaitAcked,
    Scale, WaitCaughtUp, WaitFatal, WaitNewLeader, WaitRestarted,
)


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    steps: tuple[Step, ...]
    no_failed_posts: bool = False  # a failed POST breaks the promise (worker kills, retries)


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "lab-task-2",
            "The lab's fault check: consumers stopped, 100 messages, the partition leader killed, "
            "consumers started: nothing lost, nothing duplicated.",
            (Stop("messages"), Send(100), KillLeader(), WaitNewLeader(), Start("messages"),
             WaitCaughtUp(), Revive()),
        ),
        Scenario(
            "leader-kill-under-load",
            "2,000 messages at concurrency 32; the leader of the busiest partition SIGKILLed a third of "
            "the way in: lost 0, duplicated 0, the write stall measured.",
            (Send(2000, concurrency=32, background=True), WaitAcked(666), KillLeader(), WaitNewLeader(),
             AwaitSend(), WaitCaughtUp(), Revive()),
        ),
        Scenario(
            "two-brokers-down",
            "Two of three brokers down: POSTs fail fast with 503 (min ISR 2), also from a facade "
            "restarted meanwhile (it comes up and refuses, instead of failing to start); what was stored "
            "stays readable, posting resumes after revive.",
            (Send(50), Kill("leader"), Kill("follower"), ExpectFailFast(10, within=12.0), Stop("facade"),
             Start("facade"), ExpectFailFast(5, within=12.0), Revive(), Send(50), WaitCaughtUp()),
        ),
        Scenario(
            "hazelcast-member-kill",
            "The Hazelcast member of logging-2 killed under load: every logged message still readable.",
            (Send(1000, concurrency=16, background=True), WaitAcked(300), Kill("hazelcast-2"),
             AwaitSend(), WaitCaughtUp(), Revive()),
        ),
        Scenario(
            "logging-worker-kill",
            "logging-2 killed under load: no failed POST (the facade retries another instance with the "
            "same id), restarted and registered again, lost 0.",
            (Send(1000, concurrency=16, background=True), WaitAcked(300), Kill("logging-2"),
             AwaitSend(), WaitRestarted("logging-2"), WaitCaughtUp()),
            no_failed_posts=True,
        ),
        Scenario(
            "messages-worker-kill",
            "messages-1 killed under load: the group rebalances, the survivor consumes the rest, the "
            "restarted worker rejoins (and replays its partitions), lost 0.",
            (Send(1000, concurrency=16, background=True), WaitAcked(300), Kill("messages-1"),
             AwaitSend(), WaitRestarted("messages-1"), WaitCaughtUp()),
            no_failed_posts=True,
        ),
        Scenario(
            "crash-loop",
            "A fourth logging instance that dies at start: backoff, then FATAL after the restart limit, "
            "with its exit code and log tail in status, while the rest keeps serving.",
            (Scale("logging", 3), Send(600, concurrency=4, background=True), Scale("logging", 4, env={"PIPELINE_FAULT": "crash-at-start"}),
             WaitFatal("logging-4"), AwaitSend(), Send(100), Scale("logging", 3), WaitCaughtUp()),
            no_failed_posts=True,
        ),
    )
}
