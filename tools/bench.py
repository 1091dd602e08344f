"""Benchmark: the pipeline against its ceilings, in one run on one topology.

    python tools/bench.py [--quick] [--json] [--attach] [--rate 500] [--duration 10] [--write FILE]
    python tools/bench.py --rate-only [--rate 500] [--duration 10] [--repeat 2]   # open loop only (tuning)

By default it brings up a throw-away topology on free ports (as the tests do) and stops it after;
`--attach` measures the one running from ./topology.yaml's runtime dir instead. It prints a table
and, with --write, writes it as Markdown with the command that reproduces it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from supervisor.chaos.checker import write_stall  # noqa: E402
from supervisor.chaos.steps import ChaosContext, KillLeader, Revive  # noqa: E402
from supervisor.client import Endpoint, SupervisorClient  # noqa: E402
from supervisor.commands.frontend import find_supervisor  # noqa: E402
from supervisor.launcher import free_port_topology, launch  # noqa: E402
from supervisor.paths import RuntimePaths  # noqa: E402
from supervisor.topology import load_topology  # noqa: E402
from tools.ceilings import BareAiohttp, hazelcast_ceiling, kafka_producer_ceiling, summarize  # noqa: E402
from tools.cpu_usage import CpuMeter, describe  # noqa: E402
from tools.load import LoadRun, percentile, post_at_rate, post_batches, post_messages  # noqa: E402

LEVELS = (1, 8, 32, 128)
BATCH_SIZE = 50


def _summary(run: LoadRun) -> dict[str, float]:
    acked = run.acknowledged
    return summarize(len(acked), run.finished - run.started, [a.latency * 1000 for a in acked], len(run.failed))


async def post_level(url: str, count: int, concurrency: int) -> dict[str, float]:
    run = await post_messages(url, count, concurrency=concurrency, run_id=f"bench-{uuid.uuid4().hex[:6]}")
    return _summary(run)


async def fixed_rate(url: str, rate: float, duration: float) -> dict[str, float]:
    """Open-loop: `rate` POSTs a second for `duration` seconds; latency from when each was due."""
    run = await post_at_rate(url, rate, duration, run_id=f"bench-rate-{uuid.uuid4().hex[:6]}")
    return {"target_rate": rate, "duration_s": duration, **_summary(run)}


async def batched(url: str, count: int, concurrency: int) -> dict[str, float]:
    run = await post_batches(url, count, batch_size=BATCH_SIZE, concurrency=concurrency,
                             run_id=f"bench-batch-{uuid.uuid4().hex[:6]}")
    return {"batch_size": BATCH_SIZE, "concurrency": concurrency, **_summary(run)}


async def end_to_end(client: SupervisorClient, facade: str, samples: int) -> dict[str, float]:
    """POST one message at a time and poll every messages instance until one holds it."""
    latencies: list[float] = []
    async with aiohttp.ClientSession() as http:
        for i in range(samples):
            began = time.monotonic()
            async with http.post(f"{facade}/messages", json={"msg": f"e2e{i}"}) as resp:
                message_id = (await resp.json())["id"]
            addresses = [inst["address"] for inst in await client.instances("messages")]
            while time.monotonic() - began < 30:
                held = False
                for address in addresses:
                    async with http.get(f"{address}/messages") as resp:
                        if any(m["id"] == message_id for m in (await resp.json())["messages"]):
                            held = True
                if held:
                    latencies.append((time.monotonic() - began) * 1000)
                    break
                await asyncio.sleep(0.002)  # polling interval of the e2e probe
    return {"samples": len(latencies), "p50_ms": round(percentile(latencies, 50), 1),
            "p99_ms": round(percentile(latencies, 99), 1), "max_ms": round(max(latencies, default=0), 1)}


async def failover(client: SupervisorClient, facade: str, count: int, graceful: bool) -> dict[str, Any]:
    """Load at concurrency 32; a third of the way in, the busiest partition's leader is killed or stopped."""
    run = LoadRun(run_id=f"bench-fo-{uuid.uuid4().hex[:6]}")
    ctx = ChaosContext(client=client, run=run, say=lambda _line: None)
    sending = asyncio.create_task(post_messages(facade, count, concurrency=32, run_id=run.run_id, run=run))
    while run.acked_count() < count // 3 and not sending.done():
        await asyncio.sleep(0.01)  # polling the ack counter
    if graceful:
        leaders = await client.checked("leaders", "--json")
        target = leaders[0]["leader"]
        ctx.fault_at = time.monotonic()
        await client.checked("stop", target)
        ctx.killed.append(target)
    else:
        await KillLeader().run(ctx)
    await sending
    result = {"stall_s": round(write_stall(run.attempts, ctx.fault_at), 3), "failed": len(run.failed),
              "acknowledged": run.acked_count()}
    await Revive().run(ctx)
    return result


async def rate_only(address: Endpoint, rate: float, duration: float, repeat: int) -> list[dict[str, float]]:
    """The open-loop run alone, `repeat` times, after a short warm-up at 60% of the rate (connections,
    JIT, metadata)."""
    async with SupervisorClient(address) as client:
        facade = (await client.instances("facade"))[0]["address"]
        await fixed_rate(facade, rate * 0.6, 3.0)
        runs = []
        for _ in range(repeat):
            run, cpu = await metered_fixed_rate(client, facade, rate, duration)
            runs.append({**run, "cpu_percent": cpu})
            print(f"  {rate:g} msg/s: p50 {run['p50_ms']} ms, p99 {run['p99_ms']} ms; CPU (% of one core): "
                  f"{describe(cpu)}", file=sys.stderr)
        return runs


async def metered_fixed_rate(client: SupervisorClient, facade: str, rate: float,
                             duration: float) -> tuple[dict[str, float], dict[str, float]]:
    """The open-loop run, with the CPU each part of the pipeline (and the load generator) used meanwhile."""
    meter = await CpuMeter.of_pipeline(client)
    meter.start()
    run = await fixed_rate(facade, rate, duration)
    return run, meter.stop()


async def step_buckets(address: Endpoint) -> list[str]:
    """The facade's per-step latency histogram (logging store, Kafka produce): where a POST waits."""
    async with SupervisorClient(address) as client, aiohttp.ClientSession() as http:
        facade = (await client.instances("facade"))[0]["address"]
        async with http.get(f"{facade}/metrics") as resp:
            text = await resp.text()
    return [line for line in text.splitlines() if line.startswith("facade_step_seconds")]


async def measure(address: Endpoint, quick: bool, rate: float, duration: float) -> dict[str, Any]:
    count = 400 if quick else 3000
    results: dict[str, Any] = {"quick": quick, "levels": {}, "cores": os.cpu_count() or 1,
                               "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                                          f"Python {platform.python_version()}"}
    async with SupervisorClient(address) as client:
        facade = (await client.instances("facade"))[0]["address"]
        config = await client.worker_config("logging-1")
        kafka, hz = config["kafka"], config["hazelcast"]
        results["end_to_end"] = await end_to_end(client, facade, 20 if quick else 100)
        async with BareAiohttp() as bare:
            for level in LEVELS:
                n = min(count, 300) if level == 1 else count
                row = {
                    "pipeline": await post_level(facade, n, level),
                    "bare_aiohttp": await post_level(bare.url, n, level),
                    "kafka_producer": await kafka_producer_ceiling(kafka["bootstrap_servers"], kafka["topic"], n, level),
                    "hazelcast_put": await hazelcast_ceiling(hz["members"], hz["cluster_name"], n, level),
                }
                results["levels"][level] = row
                print(f"  concurrency {level}: pipeline {row['pipeline']['rate']}/s", file=sys.stderr)
            results["fixed_rate"], results["fixed_rate_cpu"] = await metered_fixed_rate(client, facade, rate, duration)
            results["fixed_rate_bare"] = await fixed_rate(bare.url, rate, duration)
            print(f"  {rate:g} msg/s open loop: p99 {results['fixed_rate']['p99_ms']} ms", file=sys.stderr)
        results["batch"] = await batched(facade, count * 2, 8)
        results["failover_sigkill"] = await failover(client, facade, count, graceful=False)
        results["failover_graceful"] = await failover(client, facade, count, graceful=True)
    return results


def render(results: dict[str, Any], command: str) -> str:
    lines = [f"Command: `{command}` ({results['machine']}, {'quick' if results['quick'] else 'full'} run)", "",
             "| concurrency | pipeline msg/s | p50 ms | p99 ms | p99.9 ms | errors | bare aiohttp msg/s | "
             "raw Kafka msg/s | raw Hazelcast ops/s | pipeline/aiohttp | pipeline/Kafka | pipeline/Hazelcast |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for level, row in results["levels"].items():
        p, b, k, h = row["pipeline"], row["bare_aiohttp"], row["kafka_producer"], row["hazelcast_put"]

        def ratio(x: dict[str, float]) -> str:
            return f"{p['rate'] / x['rate']:.2f}" if x["rate"] else "-"

        lines.append(f"| {level} | {p['rate']} | {p['p50_ms']} | {p['p99_ms']} | {p['p999_ms']} | {p['errors']} | "
                     f"{b['rate']} | {k['rate']} | {h['rate']} | {ratio(b)} | {ratio(k)} | {ratio(h)} |")
    e2e = results["end_to_end"]
    lines += ["", f"End to end (POST until a messages instance holds it, {e2e['samples']} sequential samples): "
              f"p50 {e2e['p50_ms']} ms, p99 {e2e['p99_ms']} ms, max {e2e['max_ms']} ms."]
    fr, frb, bt = results["fixed_rate"], results["fixed_rate_bare"], results["batch"]
    lines += [f"Fixed rate, open loop {fr['target_rate']:g} msg/s for {fr['duration_s']:g} s (latency from when "
              f"each POST was due): pipeline {fr['rate']} msg/s acknowledged, p50 {fr['p50_ms']} ms, "
              f"p99 {fr['p99_ms']} ms, p99.9 {fr['p999_ms']} ms, errors {fr['errors']}; bare aiohttp at the same "
              f"rate: p50 {frb['p50_ms']} ms, p99 {frb['p99_ms']} ms.",
              f"CPU during that run, % of one core ({results['cores']} cores = {results['cores'] * 100}): "
              f"{describe(results['fixed_rate_cpu'])}.",
              f"Batches (POST /messages/batch, {bt['batch_size']} messages each, {bt['concurrency']} at a time): "
              f"{bt['rate']} msg/s acknowledged, batch p50 {bt['p50_ms']} ms, p99 {bt['p99_ms']} ms, "
              f"errors {bt['errors']}."]
    for key, label in (("failover_sigkill", "leader SIGKILLed"), ("failover_graceful", "leader stopped gracefully")):
        f = results[key]
        lines.append(f"Write stall, {label} under load at concurrency 32: {f['stall_s']} s, failed POSTs "
                     f"{f['failed']}, acknowledged {f['acknowledged']}.")
    return "\n".join(lines)


NOTES_MARKER = "<!-- notes: kept by tools/bench.py --write -->"


def write_report(path: Path, table: str) -> None:
    """The table replaces the file's top; hand-written notes below NOTES_MARKER survive a re-run."""
    old = path.read_text() if path.exists() else ""
    notes = old[old.index(NOTES_MARKER):] if NOTES_MARKER in old else NOTES_MARKER + "\n"
    path.write_text(f"# Benchmarks\n\n{table}\n\n{notes}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a short run (fewer messages per level)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--attach", action="store_true", help="measure the running topology instead of a fresh one")
    parser.add_argument("-t", "--topology", default="topology.yaml", help="topology file (with --attach)")
    parser.add_argument("--write", metavar="FILE", help="also write the table as Markdown to FILE")
    parser.add_argument("--rate", type=float, default=500.0, help="msg/s of the open-loop run (default 500)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of the open-loop run (default 10)")
    parser.add_argument("--rate-only", action="store_true", help="only the open-loop run (prints it as JSON)")
    parser.add_argument("--repeat", type=int, default=2, help="open-loop runs with --rate-only (default 2)")
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.duration <= 0:
        parser.error(f"--rate and --duration must be positive, got {args.rate:g} and {args.duration:g}")
    if args.repeat < 1:
        parser.error(f"--repeat must be at least 1, got {args.repeat}")
    command = "python tools/bench.py" + (" --quick" if args.quick else "")

    def run(address: Endpoint) -> dict[str, Any]:
        if args.rate_only:
            runs = asyncio.run(rate_only(address, args.rate, args.duration, args.repeat))
            return {"runs": runs, "facade_steps": asyncio.run(step_buckets(address))}
        return asyncio.run(measure(address, args.quick, args.rate, args.duration))

    if args.attach:
        results = run(find_supervisor(RuntimePaths(load_topology(args.topology).runtime_dir)))
    else:
        with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
            print("bringing up a throw-away topology on free ports ...", file=sys.stderr)
            pipeline = launch(free_port_topology(Path(tmp) / "runtime"), Path(tmp))
            try:
                results = run(pipeline.address)
            finally:
                pipeline.stop()
    if args.rate_only:
        print(json.dumps(results))
        return 0
    table = render(results, command)
    print(json.dumps(results, indent=2) if args.json else table)
    if args.write:
        write_report(Path(args.write), table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
