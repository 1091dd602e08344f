"""Supervision as a whole: restart policy over real processes, start/stop order, chaos kill and
revive, and no orphans when the supervisor dies. Kafka and Hazelcast are `external` here (nothing
started): the workers are stand-ins (tests/standins/worker.py)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from supervisor.actor import Actor, ActorDead, Backoff, Policy, RestartIntensity
from supervisor.app import Supervisor, SupervisorError, UnknownTarget, reap_leftovers
from supervisor.deadline import wait_until
from supervisor.events import EventBus
from supervisor.instance import InstanceError, StartFailed
from supervisor.paths import RuntimePaths
from supervisor.states import State

from standins.harness import WORKER, edges, free_port, make_instance, make_topology, standin_service, topology_data

S = State
WAIT = 20.0
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
async def supervisors() -> AsyncIterator[Callable[..., Supervisor]]:
    """Build Supervisors over stand-in topologies; each is stopped after the test, children gone."""
    made: list[Supervisor] = []

    def build(tmp_path: Path, services: dict[str, dict[str, Any]], **restart: Any) -> Supervisor:
        topology = make_topology(tmp_path, services, **restart)
        sup = Supervisor(topology, RuntimePaths(topology.runtime_dir))
        made.append(sup)
        return sup

    yield build
    for sup in made:
        pids = [inst.pid for inst in sup.instances() if inst.pid]
        await sup.stop()
        _, alive = psutil.wait_procs([psutil.Process(p) for p in pids if psutil.pid_exists(p)], timeout=5)
        assert not alive, f"children outlived stop(): {alive}"


# -- policy as data ---------------------------------------------------------------------------------
def test_backoff_doubles_up_to_the_maximum_and_resets() -> None:
    backoff = Backoff(0.5, 3.0)
    assert [backoff.next() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    backoff.reset()
    assert backoff.next() == 0.5


def test_intensity_allows_n_restarts_per_period_then_refuses() -> None:
    limit = RestartIntensity(intensity=2, period=10.0)
    assert limit.allow(now=0.0) and limit.allow(now=1.0)
    assert not limit.allow(now=2.0)
    assert limit.allow(now=10.5)  # the first one left the window


def test_policy_on_failure_restarts_only_after_a_failure() -> None:
    assert Policy.ON_FAILURE.wants_restart(3) and Policy.ON_FAILURE.wants_restart(-9)
    assert not Policy.ON_FAILURE.wants_restart(0)
    assert Policy.ALWAYS.wants_restart(0) and not Policy.NEVER.wants_restart(1)


# -- actor -------------------------------------------------------------------------------------------
class _Echo(Actor):
    def __init__(self) -> None:
        super().__init__("echo")
        self.crashes: list[str] = []

    async def handle(self, message: object) -> object:
        if message == "boom":
            raise ValueError("boom")
        return message

    def on_crash(self, what: str, exc: BaseException) -> None:
        self.crashes.append(f"{what}: {exc}")


async def test_actor_ask_returns_or_raises_and_a_crashed_task_is_noticed() -> None:
    actor = _Echo()
    actor.start_actor()
    assert await actor.ask("hi") == "hi"
    with pytest.raises(ValueError, match="boom"):
        await actor.ask("boom")  # the asker gets it; the actor lives on
    assert await actor.ask("still here") == "still here"

    async def dies() -> None:
        raise RuntimeError("owned task died")

    actor.own(dies(), "helper")
    await wait_until(lambda: actor.crashes == ["helper: owned task died"], timeout=5, what="crash noticed")
    actor.tell("boom")  # a told message that raises kills the mailbox loop: noticed, not a hang
    await wait_until(lambda: not actor.alive, timeout=5, what="mailbox loop crash")
    assert actor.crashes[-1] == "mailbox loop: boom"
    with pytest.raises(ActorDead):
        await actor.ask("anyone?")
    await actor.close()


# -- events -----------------------------------------------------------------------------------------
async def test_event_bus_ring_stream_and_a_slow_subscriber_never_blocks() -> None:
    bus = EventBus(ring_size=5)
    bus.emit("a-1", "a", None, S.STOPPED, "first")
    sub = bus.subscribe(replay=1)
    slow = bus.subscribe()
    for i in range(2000):  # nobody reads `slow`: publish must not block or fail
        bus.emit("a-1", "a", S.STOPPED, S.STARTING, str(i))
    assert len(bus.recent()) == 5 and bus.recent(2)[-1].detail == "1999"
    assert (await anext(sub)).detail == "first"
    assert (await anext(sub)).detail == "0"
    assert slow.dropped > 0
    assert bus.recent(1)[0].to_json() == {"ts": bus.recent(1)[0].ts, "name": "a-1", "service": "a",
                                          "from": "STOPPED", "to": "STARTING", "detail": "1999"}
    sub.close()
    slow.close()


# -- restart policy over real processes -------------------------------------------------------------
async def test_crash_loop_backs_off_longer_each_time_then_goes_fatal(tmp_path: Path) -> None:
    inst = make_instance(tmp_path, "--exit", "3", policy="always", backoff=(0.2, 0.8), intensity=3)
    try:
        await inst.start()
        await inst.wait_state(S.FATAL, timeout=WAIT)
    finally:
        await inst.stop()
        await inst.close()
    events = [e for e in inst.events.recent() if e.name == inst.name]
    delays = [e.detail for e in events if e.to_state is S.BACKOFF]
    assert delays == ["restart in 0.2s", "restart in 0.4s", "restart in 0.8s"]
    # The respawns really waited (at least) that long, so the gaps grow.
    gaps = [b.ts - a.ts for a, b in zip(events, events[1:]) if a.to_state is S.BACKOFF and b.to_state is S.STARTING]
    assert len(gaps) == 3 and all(gap >= want - 0.01 for gap, want in zip(gaps, (0.2, 0.4, 0.8)))
    fatal = [e for e in events if e.to_state is S.FATAL]
    assert len(fatal) == 1 and "gave up: more than 3 restarts within 60s" in fatal[0].detail
    assert inst.restarts == 3
    assert inst.last_exit is not None and inst.last_exit.code == 3 and inst.last_exit.signal is None
    assert any("configured to exit with 3" in line for line in inst.last_exit.log_tail)


async def test_on_failure_does_not_restart_a_clean_exit(tmp_path: Path) -> None:
    inst = make_instance(tmp_path, "--exit", "0", policy="on-failure")
    await inst.start()
    await inst.wait_state(S.EXITED, timeout=WAIT)
    assert "not restarted (policy on-failure)" in inst.events.recent()[-1].detail
    await inst.close()


async def test_stop_escalates_term_to_kill_for_a_process_that_ignores_term(tmp_path: Path) -> None:
    inst = make_instance(tmp_path, "--ignore-term", stop_timeout=0.5)
    await inst.start()
    await inst.wait_running(WAIT)
    began = time.monotonic()
    await inst.stop()
    took = time.monotonic() - began
    await inst.close()
    assert inst.state is S.STOPPED
    assert inst.last_exit is not None and inst.last_exit.signal == "SIGKILL"
    assert 0.5 <= took < 5.0
    assert "SIGTERM ignored" in (tmp_path / "logs" / "standin-1.log").read_text()


async def test_chaos_kill_of_a_broker_keeps_it_down_until_revive(tmp_path: Path) -> None:
    inst = make_instance(tmp_path, name="kafka-2", kind="kafka", policy="always")
    try:
        await inst.start()
        await inst.wait_running(WAIT)
        await inst.kill()
        await inst.wait_state(S.EXITED, timeout=WAIT)
        # The policy decision is taken in the same turn as EXITED: nothing is scheduled.
        assert inst.held_down and inst._timer is None
        assert inst.events.recent()[-1].detail == "killed on request: exit code -9 (SIGKILL); stays down until revive"
        await inst.revive()
        await inst.wait_running(WAIT)
        assert edges(inst)[-2:] == [(S.EXITED, S.STARTING), (S.STARTING, S.RUNNING)]
    finally:
        await inst.stop()
        await inst.close()


# -- the Supervisor ------------------------------------------------------------------------------------
async def test_services_start_in_topology_order_and_stop_in_reverse(
    tmp_path: Path, supervisors: Callable[..., Supervisor]
) -> None:
    sup = supervisors(tmp_path, {"alpha": standin_service(instances=2), "beta": standin_service(),
                                 "gamma": standin_service(instances=2)})
    await sup.start()
    assert [i.name for i in sup.instances()] == ["alpha-1", "alpha-2", "beta-1", "gamma-1", "gamma-2"]
    assert all(i.state is S.RUNNING for i in sup.instances())
    children = json.loads(sup.paths.children_file.read_text())
    assert {n: c["pid"] for n, c in children.items()} == {i.name: i.pid for i in sup.instances()}
    await sup.stop()
    events = sup.events.recent()

    def index(service: str, to: State, pick: Callable[[list[int]], int]) -> int:
        return pick([k for k, e in enumerate(events) if e.service == service and e.to_state is to])

    # every instance of a service RUNNING before the next service's first spawn ...
    assert index("alpha", S.RUNNING, max) < index("beta", S.STARTING, min)
    assert index("beta", S.RUNNING, max) < index("gamma", S.STARTING, min)
    # ... and every instance of a later service STOPPED before an earlier one is asked to stop.
    assert index("gamma", S.STOPPED, max) < index("beta", S.STOPPING, min)
    assert index("beta", S.STOPPED, max) < index("alpha", S.STOPPING, min)
    assert all(i.state is S.STOPPED for i in sup.instances())
    assert json.loads(sup.paths.children_file.read_text()) == {}


async def test_worker_gets_the_contract_command_line(tmp_path: Path, supervisors: Callable[..., Supervisor]) -> None:
    sup = supervisors(tmp_path, {"alpha": standin_service()})
    await sup.start()
    inst = sup.resolve("alpha")[0]
    argv = psutil.Process(inst.pid).cmdline()
    assert argv == [sys.executable, str(WORKER), "--port", str(inst.port), "--name", "alpha-1"]
    assert inst.address == f"http://127.0.0.1:{inst.port}"


async def test_a_killed_worker_is_restarted_and_running_again(
    tmp_path: Path, supervisors: Callable[..., Supervisor]
) -> None:
    sup = supervisors(tmp_path, {"alpha": standin_service(instances=2)})
    await sup.start()
    victim = sup.resolve("alpha-2")[0]
    old_pid = victim.pid
    await sup.kill("alpha-2")
    await wait_until(lambda: victim.restarts == 1 and victim.state is S.RUNNING, timeout=WAIT,
                     what="alpha-2 restarted and RUNNING")
    assert victim.pid != old_pid and old_pid is not None and not psutil.pid_exists(old_pid)
    assert victim.last_exit is not None and victim.last_exit.signal == "SIGKILL"
    assert sup.resolve("alpha-1")[0].restarts == 0
    assert [e.to_state for e in sup.events.recent() if e.name == "alpha-2"][-4:] == [
        S.EXITED, S.BACKOFF, S.STARTING, S.RUNNING]


async def test_start_fails_naming_the_crash_looping_service(
    tmp_path: Path, supervisors: Callable[..., Supervisor]
) -> None:
    sup = supervisors(tmp_path, {"good": standin_service(), "bad": standin_service("--exit", "3")}, intensity=2)
    with pytest.raises(SupervisorError) as failure:
        await sup.start()
    text = str(failure.value)
    assert "bad-1 did not become RUNNING (FATAL; last exit: exit code 3)" in text
    assert "bad-1: fatal: configured to exit with 3" in text  # the log tail
    assert all(i.state is S.STOPPED for i in sup.instances())  # what did start was stopped again


async def test_scale_up_on_free_ports_and_down_from_the_highest(
    tmp_path: Path, supervisors: Callable[..., Supervisor]
) -> None:
    sup = supervisors(tmp_path, {"alpha": standin_service()})
    await sup.start()
    await sup.scale("alpha", 3)
    grown = sup.resolve("alpha")
    assert [i.name for i in grown] == ["alpha-1", "alpha-2", "alpha-3"]
    assert all(i.state is S.RUNNING for i in grown) and len({i.port for i in grown}) == 3
    third = grown[2]
    await sup.scale("alpha", 1)
    assert [i.name for i in sup.instances()] == ["alpha-1"] and third.state is S.STOPPED
    with pytest.raises(ValueError, match="must be >= 0"):
        await sup.scale("alpha", -1)


async def test_unknown_target_names_what_is_known(tmp_path: Path, supervisors: Callable[..., Supervisor]) -> None:
    sup = supervisors(tmp_path, {"alpha": standin_service()})
    await sup.start()
    with pytest.raises(UnknownTarget, match=r"unknown target 'nope'; known: alpha-1, alpha"):
        sup.resolve("nope")
    with pytest.raises(UnknownTarget):
        await sup.kill("alpha-7")


# -- no orphans ---------------------------------------------------------------------------------------
def _spawn_standin(port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, str(WORKER), "--port", str(port)], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def test_children_die_with_a_sigkilled_supervisor(tmp_path: Path) -> None:
    topo = tmp_path / "topology.yaml"
    topo.write_text(yaml.safe_dump(topology_data(tmp_path / "runtime", {"alpha": standin_service(instances=2)})))
    out = tmp_path / "supervisor.out"
    with open(out, "wb") as sink:
        proc = subprocess.Popen([sys.executable, str(REPO / "tests/standins/run_supervisor.py"), str(topo)],
                                cwd=REPO, stdout=sink, stderr=subprocess.STDOUT)
    try:
        await wait_until(lambda: "UP" in out.read_text().splitlines() or proc.poll() is not None,
                         timeout=WAIT, what="supervisor up")
        assert proc.poll() is None, out.read_text()
        children = json.loads((tmp_path / "runtime" / "children.json").read_text())
        procs = [psutil.Process(c["pid"]) for c in children.values()]
        assert len(procs) == 2 and all(p.is_running() for p in procs)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        _, alive = await asyncio.to_thread(psutil.wait_procs, procs, 10)
        assert not alive, f"orphans: {alive}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_next_run_reaps_what_children_json_lists_and_nothing_else(
    tmp_path: Path, supervisors: Callable[..., Supervisor]
) -> None:
    leftover = _spawn_standin(free_port())
    bystander = _spawn_standin(free_port())  # listed with the wrong create time: a reused pid
    try:
        sup = supervisors(tmp_path, {"alpha": standin_service()})
        sup.paths.ensure()
        sup.paths.children_file.write_text(json.dumps({
            "alpha-1": {"pid": leftover.pid, "create_time": psutil.Process(leftover.pid).create_time()},
            "alpha-2": {"pid": bystander.pid, "create_time": psutil.Process(bystander.pid).create_time() - 100},
        }))
        await sup.start()
        assert leftover.wait(timeout=10) == 0  # it got SIGTERM and exited cleanly
        assert bystander.poll() is None
        assert set(json.loads(sup.paths.children_file.read_text())) == {"alpha-1"}
    finally:
        for p in (leftover, bystander):
            if p.poll() is None:
                p.kill()
                p.wait()


def test_reap_leftovers_without_a_file_does_nothing(tmp_path: Path) -> None:
    assert reap_leftovers(RuntimePaths(tmp_path)) == []


async def test_start_restart_and_revive_commands_return_once_running(
    tmp_path: Path, supervisors: Callable[..., Supervisor]
) -> None:
    sup = supervisors(tmp_path, {"alpha": standin_service()})
    await sup.start()
    await sup.restart_instance("alpha-1")
    inst = sup.resolve("alpha-1")[0]
    assert inst.state is S.RUNNING and inst.restarts == 1
    await sup.stop_instance("alpha-1")
    assert inst.state is S.STOPPED
    await sup.start_instance("alpha-1")
    assert inst.state is S.RUNNING


async def test_a_start_command_on_a_crashing_worker_says_how_it_ended(tmp_path: Path) -> None:
    inst = make_instance(tmp_path, "--exit", "3", policy="never")
    try:
        await inst.start()
        with pytest.raises(InstanceError, match=r"did not become RUNNING \(now EXITED; last exit: exit code 3\)"):
            await inst.wait_started()
    finally:
        await inst.close()


async def test_a_failed_start_is_a_500_and_a_wrong_state_a_400(
    tmp_path: Path, supervisors: Callable[..., Supervisor]
) -> None:
    """StartFailed (the instance's failure) vs WrongState (the caller's mistake), as the API maps them."""
    from supervisor.commands import run_command

    crash_file = tmp_path / "crash"
    sup = supervisors(tmp_path, {"alpha": standin_service("--crash-file", str(crash_file))})
    await sup.start()
    already = await run_command(sup, ["start", "alpha-1"])
    assert not already.ok and already.http_status == 400 and "alpha-1 is already RUNNING" in already.error
    await sup.stop_instance("alpha-1")
    crash_file.touch()  # from now on it exits with 3 at once
    with pytest.raises(StartFailed, match=r"alpha-1 did not become RUNNING"):
        await sup.start_instance("alpha-1")
    await sup.stop_instance("alpha-1")
    failed = await run_command(sup, ["start", "alpha-1"])
    assert not failed.ok and failed.http_status == 500, failed
    assert "did not become RUNNING" in failed.error and "exit code 3" in failed.error
    await sup.stop_instance("alpha-1")
    stopped = await run_command(sup, ["kill", "alpha-1"])
    assert stopped.http_status == 400 and "alpha-1 is not running (STOPPED)" in stopped.error


async def test_all_or_nothing_raises_the_first_failure_and_cancels_the_rest() -> None:
    """How Kafka and Hazelcast start together: one failing cancels the other."""
    from supervisor.app import all_or_nothing

    cancelled = asyncio.Event()
    finished: list[str] = []

    async def slow() -> None:
        try:
            await asyncio.Event().wait()  # until cancelled
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def quick() -> None:
        finished.append("quick")

    async def fails() -> None:
        await asyncio.sleep(0)
        raise RuntimeError("hazelcast broke")

    with pytest.raises(RuntimeError, match="hazelcast broke"):
        await asyncio.wait_for(all_or_nothing([slow(), quick(), fails()]), timeout=10)
    assert cancelled.is_set() and finished == ["quick"]
    await all_or_nothing([quick(), quick()])
    assert finished == ["quick"] * 3
