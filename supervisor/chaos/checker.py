"""The checker: what was acknowledged against what the system holds, in the manner of Jepsen's
queue checker. Pure functions over recorded data, so it is tested without any cluster.

- acknowledged: POSTs answered 201 with an id;
- lost: acknowledged, yet held by no messages instance once the consumers caught up (`lost`), or
  missing from the Hazelcast map (`lost_from_map`); each lost id says whether it is still in the topic;
- duplicated: an id held twice by one messages instance or twice in the map listing;
- unexpected: held, but never sent; stored_unacknowledged: a POST that failed after storing (allowed);
- stall: the longest time without an acknowledgement after the fault.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from tools.load import Attempt, percentile


@dataclass
class Holdings:
    """What the system holds, read after the fault: ids per messages instance, the map, the topic."""

    messages: dict[str, list[str]]  # instance name -> ids in the order it holds them
    logging: list[str]  # ids listed by GET /log (the Hazelcast map)
    topic: Counter[str] = field(default_factory=Counter)  # id -> records in the topic


@dataclass
class Report:
    attempted: int
    acknowledged: int
    failed: int
    failures: dict[str, int]  # reason -> count
    lost: list[str]
    lost_still_in_topic: list[str]
    lost_from_map: list[str]
    duplicated: dict[str, int]  # id -> copies (within one instance, or in the map)
    unexpected: list[str]
    stored_unacknowledged: list[str]  # a failed POST whose message was stored anyway (allowed)
    stall_seconds: float
    latency_p50_ms: float
    latency_p99_ms: float
    read_by: dict[str, int]  # messages instance -> how many acknowledged ids it holds
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.lost and not self.lost_from_map and not self.duplicated

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        return data


def write_stall(attempts: list[Attempt], since: float | None) -> float:
    """Longest gap between consecutive acknowledgements from `since` on (the fault time).

    The gap from `since` to the first acknowledgement after it counts too: that is the failover.
    """
    if since is None:
        return 0.0
    acked = sorted(a.finished for a in attempts if a.acknowledged and a.finished >= since)
    if not acked:
        return 0.0
    points = [since, *acked]
    return max(b - a for a, b in zip(points, points[1:]))


def _failure_reason(attempt: Attempt) -> str:
    if attempt.status is None:
        return (attempt.error or "no answer").split(":")[0]
    return f"HTTP {attempt.status}"


def scoped(holdings: Holdings, run_id: str) -> Holdings:
    """Only this run's messages (ids `{run_id}-{i}`): a shared system also holds earlier runs'."""
    prefix = f"{run_id}-"
    mine = lambda ids: [i for i in ids if i.startswith(prefix)]  # noqa: E731
    return Holdings(
        messages={name: mine(ids) for name, ids in holdings.messages.items()},
        logging=mine(holdings.logging),
        topic=Counter({i: n for i, n in holdings.topic.items() if i.startswith(prefix)}),
    )


def check(attempts: list[Attempt], holdings: Holdings, *, fault_at: float | None = None) -> Report:
    finished = [a for a in attempts if a.finished]
    acked = [a for a in finished if a.acknowledged]
    acked_ids = {a.message_id for a in acked if a.message_id}

    held_anywhere: set[str] = set()
    duplicated: Counter[str] = Counter()
    read_by: dict[str, int] = {}
    for instance, ids in sorted(holdings.messages.items()):
        counts = Counter(ids)
        held_anywhere.update(counts)
        duplicated.update({i: c for i, c in counts.items() if c > 1})
        read_by[instance] = sum(1 for i in counts if i in acked_ids)
    map_counts = Counter(holdings.logging)
    duplicated.update({i: c for i, c in map_counts.items() if c > 1})

    lost = sorted(acked_ids - held_anywhere)
    attempted_ids = {a.message_id for a in attempts if a.message_id} | {a.key for a in attempts if a.key}
    held = held_anywhere | set(map_counts)
    unexpected = sorted(held - acked_ids - attempted_ids)
    stored_unacknowledged = sorted((held & attempted_ids) - acked_ids)
    latencies = [a.latency * 1000 for a in acked]
    return Report(
        attempted=len(attempts),
        acknowledged=len(acked),
        failed=len(finished) - len(acked),
        failures=dict(Counter(_failure_reason(a) for a in finished if not a.acknowledged)),
        lost=lost,
        lost_still_in_topic=[i for i in lost if holdings.topic.get(i)],
        lost_from_map=sorted(acked_ids - set(map_counts)),
        duplicated=dict(duplicated),
        unexpected=unexpected,
        stored_unacknowledged=stored_unacknowledged,
        stall_seconds=round(write_stall(attempts, fault_at), 3),
        latency_p50_ms=round(percentile(latencies, 50), 1),
        latency_p99_ms=round(percentile(latencies, 99), 1),
        read_by=read_by,
    )
