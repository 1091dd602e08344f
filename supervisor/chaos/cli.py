"""`python -m supervisor chaos SCENARIO`: run a scenario against the running topology."""

from __future__ import annotations

import argparse
import json
import sys

from supervisor.chaos.runner import passed, render_report, run_scenario
from supervisor.chaos.scenarios import SCENARIOS
from supervisor.client import SupervisorClient
from supervisor.commands.frontend import find_supervisor
from supervisor.paths import RuntimePaths


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scenario", choices=sorted(SCENARIOS), metavar="SCENARIO",
                        help="one of: " + ", ".join(sorted(SCENARIOS)))
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def describe_scenarios() -> str:
    return "\n".join(f"  {s.name:24} {s.summary}" for s in SCENARIOS.values())


async def run(paths: RuntimePaths, args: argparse.Namespace) -> int:
    """Exit code: 0 when nothing acknowledged was lost or duplicated and the scenario's promise held."""
    scenario_name, as_json = args.scenario, args.json
    say = (lambda line: print(line, file=sys.stderr)) if as_json else print
    async with SupervisorClient(find_supervisor(paths)) as client:
        report, facts = await run_scenario(SCENARIOS[scenario_name], client, say=say)
    if as_json:
        print(json.dumps({"scenario": scenario_name, "passed": passed(report), **report.to_json(), "facts": facts},
                         indent=2, default=str))
    else:
        print(render_report(scenario_name, report, facts))
    return 0 if passed(report) else 1
