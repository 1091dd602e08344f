"""The CLI as a user runs it: `up` as a real child process, one-shot verbs, `down`, bad input."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import yaml

from supervisor.paths import RuntimePaths
from tests.conftest import Pipeline
from tests.fixtures_front import (  # noqa: F401 - up_process is a fixture
    REPO,
    UpProcess,
    cli,
    standin_topology,
    start_up,
    stop_up,
    up_process,
    write_topology,
)


async def test_one_shot_status_json(up_process: UpProcess) -> None:
    state = up_process.state()
    assert state["pid"] == up_process.proc.pid and state["url"].startswith("http://127.0.0.1:")
    assert f"config server {state['url']}" in up_process.text()

    result = cli("-t", str(up_process.topology), "status", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["config_server"] == state["url"]
    assert [i["name"] for i in data["instances"]] == ["logging-1", "logging-2", "messages-1"]
    for inst in data["instances"]:
        assert {"name", "service", "kind", "managed", "state", "pid", "address", "uptime", "restarts",
                "last_exit"} <= set(inst)
        assert inst["state"] == "RUNNING" and inst["managed"] is True

    table = cli("--runtime-dir", str(up_process.paths.root), "status")
    assert table.returncode == 0 and "NAME" in table.stdout and "messages-1" in table.stdout


async def test_one_shot_errors_and_help(up_process: UpProcess) -> None:
    where = ("-t", str(up_process.topology))
    unknown = cli(*where, "kill", "loging-1")
    assert unknown.returncode == 2
    assert "'loging-1'" in unknown.stderr and "logging-1" in unknown.stderr
    usage = cli(*where, "scale", "logging")
    assert usage.returncode == 2 and "usage:" in usage.stderr
    helped = cli("kill", "--help")
    assert helped.returncode == 0 and "TARGET" in helped.stdout
    logs = cli(*where, "logs", "logging-1", "-n", "3")
    assert logs.returncode == 0 and "standin logging-1 listening" in logs.stdout


async def test_logs_follow_until_ctrl_c(up_process: UpProcess) -> None:
    follow = subprocess.Popen([sys.executable, "-m", "supervisor", "-t", str(up_process.topology), "logs", "messages-1",
                               "-f", "-n", "1"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert follow.stdout is not None
        line = follow.stdout.readline()  # the tail line, then it keeps following
        assert "messages-1" in line
        assert follow.poll() is None
        follow.send_signal(signal.SIGINT)
        assert follow.wait(timeout=20) == 0
    finally:
        follow.kill()
        follow.wait()


async def test_second_up_is_refused_and_down_stops_everything(up_process: UpProcess) -> None:
    again = cli("up", str(up_process.topology), timeout=60)
    assert again.returncode == 1
    assert f"pid {up_process.proc.pid}" in again.stderr and "already" not in again.stdout
    assert "another supervisor" in again.stderr

    children = psutil.Process(up_process.proc.pid).children(recursive=True)
    assert len(children) == 3
    down = cli("down", str(up_process.topology), timeout=120)
    assert down.returncode == 0, down.stderr
    assert up_process.proc.wait(timeout=30) == 0
    assert not up_process.paths.state_file.exists()
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive
    assert "stopping everything" in up_process.text()
    again = cli("status", "-t", str(up_process.topology))
    assert again.returncode == 1 and "no supervisor is running" in again.stderr


async def test_sigint_stops_everything_and_exits_0(tmp_path: Path) -> None:
    up = await start_up(tmp_path)
    try:
        children = psutil.Process(up.proc.pid).children(recursive=True)
        up.proc.send_signal(signal.SIGINT)
        assert up.proc.wait(timeout=60) == 0, up.text()
        _, alive = psutil.wait_procs(children, timeout=10)
        assert not alive
    finally:
        assert not stop_up(up)


async def test_bad_topology_and_no_supervisor(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    data = standin_topology(tmp_path / "rt")
    data["kafka"]["brokers"] = "many"
    bad.write_text(yaml.safe_dump(data))
    result = cli("up", str(bad))
    assert result.returncode == 1 and "kafka.brokers" in result.stderr and "many" in result.stderr
    missing = cli("up", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 1 and "nope.yaml" in missing.stderr
    topology = write_topology(tmp_path)
    none = cli("-t", str(topology), "status")
    assert none.returncode == 1 and "no supervisor is running" in none.stderr
    down = cli("down", str(topology))
    assert down.returncode == 0 and "no supervisor is running" in down.stdout


async def test_leaders_and_status_against_the_real_pipeline(pipeline: Pipeline) -> None:
    """Real Kafka brokers: `leaders --json` names brokers kafka-<id>; `status` shows what each leads."""
    where = ("--runtime-dir", str(pipeline.paths.root))
    result = cli(*where, "leaders", "--json", timeout=120)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    brokers = {"kafka-1", "kafka-2", "kafka-3"}
    assert rows and {row["topic"] for row in rows} == {"messages"}
    assert sorted(row["partition"] for row in rows) == list(range(len(rows)))
    for row in rows:
        assert row["leader"] in brokers and set(row["replicas"]) == brokers and set(row["isr"]) == brokers

    status = cli(*where, "status", "--json", timeout=120)
    assert status.returncode == 0, status.stderr
    by_name = {inst["name"]: inst for inst in json.loads(status.stdout)["instances"]}
    assert {by_name[b]["kind"] for b in brokers} == {"kafka"}
    led = sorted(p for b in brokers for p in by_name[b]["leads"])
    assert led == sorted(f"messages/{row['partition']}" for row in rows)
    table = cli(*where, "status", timeout=120)
    assert "LEADS" in table.stdout and "messages/0" in table.stdout


async def test_busy_config_server_port_is_a_clear_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        data = standin_topology(tmp_path / "rt")
        data["config_server"]["port"] = busy.getsockname()[1]
        topology = tmp_path / "busy.yaml"
        topology.write_text(yaml.safe_dump(data))
        result = cli("up", str(topology))
    assert result.returncode == 1
    assert f"cannot listen on http://127.0.0.1:{data['config_server']['port']}" in result.stderr
    assert not RuntimePaths(tmp_path / "rt").state_file.exists()


async def test_down_after_a_sigkilled_supervisor_ends_what_it_left(tmp_path: Path) -> None:
    """The supervisor is dead (SIGKILL: supervisor.json names a gone pid) and children.json lists a
    child that still runs: `down` ends it and says so, instead of only 'no supervisor'."""
    topology = write_topology(tmp_path)
    paths = RuntimePaths(tmp_path / "runtime")
    paths.ensure()
    dead = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead.kill()
    dead.wait()
    paths.state_file.write_text(json.dumps({"pid": dead.pid, "url": "http://127.0.0.1:1", "started": "then"}))
    leftover = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
    try:
        paths.children_file.write_text(json.dumps(
            {"logging-1": {"pid": leftover.pid, "create_time": psutil.Process(leftover.pid).create_time()}}))
        down = cli("down", str(topology))
        assert down.returncode == 0, down.stderr
        assert f"the supervisor (pid {dead.pid}) is gone" in down.stdout
        assert "ended 1 leftover process(es) it had started: logging-1" in down.stdout
        assert leftover.wait(timeout=10) == -signal.SIGTERM
        assert not paths.state_file.exists() and not paths.children_file.exists()
        again = cli("down", str(topology))
        assert again.returncode == 0 and "no supervisor is running" in again.stdout
    finally:
        if leftover.poll() is None:
            leftover.kill()
            leftover.wait()


async def test_down_after_a_real_sigkilled_up_cleans_its_state(tmp_path: Path) -> None:
    up = await start_up(tmp_path)
    try:
        children = psutil.Process(up.proc.pid).children(recursive=True)
        up.proc.kill()
        up.proc.wait(timeout=10)
        _, alive = psutil.wait_procs(children, timeout=10)  # they die with it (PR_SET_PDEATHSIG)
        assert not alive
        down = cli("down", str(up.topology))
        assert down.returncode == 0, down.stderr
        assert f"the supervisor (pid {up.proc.pid}) is gone" in down.stdout
        assert "none of the processes it had started is still running" in down.stdout
        assert not up.paths.state_file.exists()
    finally:
        assert not stop_up(up)
