"""One test per edge of the state table, each driving a real stand-in process through it."""

from __future__ import annotations

import re
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import psutil
import pytest

from supervisor.instance import Instance, InstanceError
from supervisor.states import TRANSITIONS, InvalidTransition, State, check_transition

from standins.harness import edges, make_instance

S = State
WAIT = 15.0


@pytest.fixture
async def spawn(tmp_path: Path) -> AsyncIterator[Callable[..., Instance]]:
    """make_instance, with every instance stopped (and its process gone) after the test."""
    made: list[Instance] = []

    def factory(*flags: str, **kwargs: object) -> Instance:
        inst = make_instance(tmp_path, *flags, **kwargs)  # type: ignore[arg-type]
        made.append(inst)
        return inst

    yield factory
    pids = []
    for inst in made:
        pids.append(inst.pid)
        await inst.stop()
        await inst.close()
    for pid in filter(None, pids):
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_every_edge_has_a_test() -> None:
    """Keeps this module honest: an edge added to the table needs a test_<from>_to_<to> here."""
    tests = set(dir(sys.modules[__name__]))
    for source, targets in TRANSITIONS.items():
        for target in targets:
            assert f"test_{source.value.lower()}_to_{target.value.lower()}" in tests


def test_table_rejects_an_edge_it_does_not_list() -> None:
    with pytest.raises(InvalidTransition, match=r"x: invalid transition STOPPED -> RUNNING \(from STOPPED only STARTING\)"):
        check_transition("x", S.STOPPED, S.RUNNING)
    check_transition("x", S.STARTING, S.RUNNING)


async def test_stopped_to_starting(spawn: Callable[..., Instance]) -> None:
    inst = spawn()
    assert inst.state is S.STOPPED
    await inst.start()
    assert edges(inst)[0] == (S.STOPPED, S.STARTING)
    assert inst.pid is not None and psutil.pid_exists(inst.pid)
    assert re.search(r"start: pid \d+", inst.events.recent()[0].detail)


async def test_starting_to_running(spawn: Callable[..., Instance]) -> None:
    inst = spawn()
    await inst.start()
    await inst.wait_running(WAIT)
    assert edges(inst) == [(S.STOPPED, S.STARTING), (S.STARTING, S.RUNNING)]
    assert inst.events.recent()[-1].detail.startswith("ready after")


async def test_starting_stays_starting_until_the_probe_passes(spawn: Callable[..., Instance]) -> None:
    """Spawned is not ready: a process serving /health with 503 never becomes RUNNING."""
    inst = spawn("--never-ready", ready_timeout=1.0)
    await inst.start()
    await inst.wait_state(S.EXITED, timeout=WAIT)
    assert (S.STARTING, S.RUNNING) not in edges(inst)
    assert inst.last_exit is not None and inst.last_exit.signal == "SIGKILL"
    assert "not ready within 1s" in inst.last_exit.describe()


async def test_starting_to_exited(spawn: Callable[..., Instance]) -> None:
    inst = spawn("--exit", "3")
    await inst.start()
    await inst.wait_state(S.EXITED, timeout=WAIT)
    assert edges(inst) == [(S.STOPPED, S.STARTING), (S.STARTING, S.EXITED)]
    assert inst.last_exit is not None and inst.last_exit.code == 3


async def test_starting_to_stopping(spawn: Callable[..., Instance]) -> None:
    inst = spawn("--never-ready", ready_timeout=30.0)
    await inst.start()
    await inst.stop()
    assert edges(inst) == [(S.STOPPED, S.STARTING), (S.STARTING, S.STOPPING), (S.STOPPING, S.STOPPED)]


async def test_running_to_exited(spawn: Callable[..., Instance]) -> None:
    inst = spawn()
    await inst.start()
    await inst.wait_running(WAIT)
    await inst.kill()
    await inst.wait_state(S.EXITED, timeout=WAIT)
    assert edges(inst)[-1] == (S.RUNNING, S.EXITED)
    assert inst.last_exit is not None and inst.last_exit.signal == "SIGKILL" and inst.last_exit.code == -9
    assert "exit code -9 (SIGKILL)" in inst.events.recent()[-1].detail
    assert "not restarted (policy never)" in inst.events.recent()[-1].detail


async def test_running_to_stopping(spawn: Callable[..., Instance]) -> None:
    inst = spawn()
    await inst.start()
    await inst.wait_running(WAIT)
    await inst.stop()
    assert (S.RUNNING, S.STOPPING) in edges(inst)


async def test_stopping_to_stopped(spawn: Callable[..., Instance]) -> None:
    inst = spawn()
    await inst.start()
    await inst.wait_running(WAIT)
    pid = inst.pid
    await inst.stop()
    assert edges(inst)[-1] == (S.STOPPING, S.STOPPED)
    assert inst.state is S.STOPPED and inst.pid is None
    assert inst.last_exit is not None and inst.last_exit.code == 0  # TERM honoured: clean exit
    assert pid is not None and not psutil.pid_exists(pid)


async def test_exited_to_backoff(spawn: Callable[..., Instance]) -> None:
    inst = spawn("--exit", "3", policy="always", backoff=(5.0, 5.0))
    await inst.start()
    await inst.wait_state(S.BACKOFF, timeout=WAIT)
    assert edges(inst)[-2:] == [(S.STARTING, S.EXITED), (S.EXITED, S.BACKOFF)]
    assert inst.events.recent()[-1].detail == "restart in 5s"


async def test_exited_to_fatal(spawn: Callable[..., Instance]) -> None:
    inst = spawn("--exit", "3", policy="always", intensity=1, backoff=(0.01, 0.01))
    await inst.start()
    await inst.wait_state(S.FATAL, timeout=WAIT)
    assert edges(inst)[-2:] == [(S.STARTING, S.EXITED), (S.EXITED, S.FATAL)]
    assert inst.restarts == 1
    assert "gave up: more than 1 restarts within 60s; last exit code 3" in inst.events.recent()[-1].detail


async def test_exited_to_starting(spawn: Callable[..., Instance]) -> None:
    inst = spawn()
    await inst.start()
    await inst.wait_running(WAIT)
    await inst.kill()
    await inst.wait_state(S.EXITED, timeout=WAIT)
    await inst.start()
    assert edges(inst)[-1] == (S.EXITED, S.STARTING)
    await inst.wait_running(WAIT)


async def test_exited_to_stopped(spawn: Callable[..., Instance]) -> None:
    inst = spawn("--exit", "0")
    await inst.start()
    await inst.wait_state(S.EXITED, timeout=WAIT)
    await inst.stop()
    assert edges(inst)[-1] == (S.EXITED, S.STOPPED)


async def test_backoff_to_starting(spawn: Callable[..., Instance]) -> None:
    inst = spawn("--exit", "3", policy="always", backoff=(0.05, 0.05), intensity=5)
    await inst.start()
    await inst.wait_state(S.BACKOFF, timeout=WAIT)
    await inst.wait_state(S.STARTING, timeout=WAIT)
    assert (S.BACKOFF, S.STARTING) in edges(inst)
    assert inst.restarts >= 1


async def test_backoff_to_stopped(spawn: Callable[..., Instance]) -> None:
    inst = spawn("--exit", "3", policy="always", backoff=(30.0, 30.0))
    await inst.start()
    await inst.wait_state(S.BACKOFF, timeout=WAIT)
    await inst.stop()
    assert edges(inst)[-1] == (S.BACKOFF, S.STOPPED)
    assert inst.restarts == 0  # the pending respawn was cancelled


async def test_fatal_to_starting(spawn: Callable[..., Instance], tmp_path: Path) -> None:
    crash = tmp_path / "crash"
    crash.touch()
    inst = spawn("--crash-file", str(crash), policy="always", intensity=1, backoff=(0.01, 0.01))
    await inst.start()
    await inst.wait_state(S.FATAL, timeout=WAIT)
    crash.unlink()  # "fixed the bug": a person starts it again
    await inst.start()
    assert edges(inst)[-1] == (S.FATAL, S.STARTING)
    await inst.wait_running(WAIT)


async def test_fatal_to_stopped(spawn: Callable[..., Instance]) -> None:
    inst = spawn("--exit", "3", policy="always", intensity=1, backoff=(0.01, 0.01))
    await inst.start()
    await inst.wait_state(S.FATAL, timeout=WAIT)
    await inst.stop()
    assert edges(inst)[-1] == (S.FATAL, S.STOPPED)


async def test_commands_that_make_no_sense_say_why(spawn: Callable[..., Instance]) -> None:
    inst = spawn()
    inst.start_actor()
    with pytest.raises(InstanceError, match=r"standin-1 is not running \(STOPPED\)"):
        await inst.kill()
    await inst.start()
    with pytest.raises(InstanceError, match=r"standin-1 is already STARTING|standin-1 is already RUNNING"):
        await inst.start()
