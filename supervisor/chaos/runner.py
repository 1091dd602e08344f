"""Running a scenario against a running topology and rendering the checker's report."""

from __future__ import annotations

import time
import uuid
from typing import Any, Callable

from supervisor.chaos.checker import Report, check, scoped
from supervisor.chaos.observe import read_holdings
from supervisor.chaos.scenarios import Scenario
from supervisor.chaos.steps import ChaosContext
from supervisor.client import SupervisorClient
from tools.load import LoadRun


async def run_scenario(
    scenario: Scenario, client: SupervisorClient, say: Callable[[str], None] = print
) -> tuple[Report, dict[str, Any]]:
    """Run every step, then read what the system holds and judge it. Returns (report, facts)."""
    run_id = f"{scenario.name}-{uuid.uuid4().hex[:8]}"
    ctx = ChaosContext(client=client, run=LoadRun(run_id=run_id), say=say)
    say(f"chaos {scenario.name} (run {run_id}): {scenario.summary}")
    began = time.monotonic()
    try:
        for number, step in enumerate(scenario.steps, 1):
            say(f"[{time.monotonic() - began:6.1f}s] {number}. {step.describe()}")
            await step.run(ctx)
    finally:
        if ctx.background is not None:
            await ctx.background
    holdings = scoped(await read_holdings(client), run_id)
    report = check(ctx.run.attempts, holdings, fault_at=ctx.fault_at)
    if scenario.no_failed_posts and report.failed:
        report.notes.append(f"{report.failed} POSTs failed where none may")
    if ctx.facts.get("fail_fast_violated"):
        report.notes.append("POSTs with two brokers down did not all fail fast with 503")
    return report, ctx.facts


def passed(report: Report) -> bool:
    return report.ok and not report.notes


def render_report(name: str, report: Report, facts: dict[str, Any]) -> str:
    def short(ids: list[str]) -> str:
        return ", ".join(ids[:10]) + (f" ... (+{len(ids) - 10})" if len(ids) > 10 else "")

    lines = [
        f"result of {name}: {'PASS' if passed(report) else 'FAIL'}",
        f"  acknowledged  {report.acknowledged} of {report.attempted} POSTs",
        f"  failed POSTs  {report.failed} {report.failures or ''}".rstrip(),
        f"  lost          {len(report.lost)}" + (f" ({short(report.lost)}; still in the topic: "
                                                  f"{len(report.lost_still_in_topic)})" if report.lost else ""),
        f"  lost from map {len(report.lost_from_map)}" + (f" ({short(report.lost_from_map)})" if report.lost_from_map else ""),
        f"  duplicated    {len(report.duplicated)}" + (f" ({short(sorted(report.duplicated))})" if report.duplicated else ""),
        f"  unexpected    {len(report.unexpected)} (held, never sent); stored though the POST failed: "
        f"{len(report.stored_unacknowledged)}",
        f"  write stall   {report.stall_seconds:.2f}s after the fault",
        f"  latency       p50 {report.latency_p50_ms:.1f} ms, p99 {report.latency_p99_ms:.1f} ms",
        "  read by       " + (", ".join(f"{k}: {v}" for k, v in report.read_by.items()) or "-"),
    ]
    facts = {k: v for k, v in facts.items() if k != "injected_at"}
    for key in ("partition", "old_leader", "new_leader", "election_seconds", "fail_fast_statuses", "fail_fast_slowest",
                "fatal_after_s", "fatal_restarts", "fatal_exit"):
        if key in facts:
            lines.append(f"  {key.replace('_', ' '):13} {facts[key]}")
    lines += [f"  NOTE: {note}" for note in report.notes]
    return "\n".join(lines)
