"""Every chaos scenario, run against the session's real pipeline exactly as the CLI runs it.

Each scenario revives what it kills, so they share the one pipeline; the checker's verdict is the
assertion: nothing acknowledged lost or duplicated, and the scenario's own promise kept.
"""

from __future__ import annotations

import pytest

from supervisor.chaos.runner import passed, render_report, run_scenario
from supervisor.chaos.scenarios import SCENARIOS
from supervisor.client import SupervisorClient


@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_scenario(pipeline, name: str) -> None:
    lines: list[str] = []
    async with SupervisorClient(pipeline.address) as client:
        report, facts = await run_scenario(SCENARIOS[name], client, say=lines.append)
    text = render_report(name, report, facts)
    print("\n".join(lines) + "\n" + text)
    assert report.acknowledged > 0, text
    assert not report.lost and not report.lost_from_map, text
    assert not report.duplicated, text
    assert passed(report), text
