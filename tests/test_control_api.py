"""The control API: token, the one reply shape, usage errors, event and log streams."""

from __future__ import annotations

import asyncio
import json
import stat

import aiohttp
import psutil

from supervisor.deadline import wait_until
from supervisor.states import State
from tests.fixtures_front import InProcess, in_process  # noqa: F401 - fixture

REPLY_KEYS = {"ok", "text", "data", "error"}


async def test_token_file_is_private(in_process: InProcess) -> None:
    mode = stat.S_IMODE(in_process.sup.paths.token.stat().st_mode)
    assert mode == 0o600
    assert in_process.sup.paths.token.read_text() == in_process.server.token
    assert len(in_process.server.token) >= 32


async def test_control_routes_need_the_token(in_process: InProcess) -> None:
    env = in_process
    wrong = {"Authorization": "Bearer " + "x" * len(env.server.token)}
    for headers, message in (({}, "missing token"), (wrong, "wrong token"),
                             ({"Authorization": f"Basic {env.server.token}"}, "missing token")):
        for method, path in (("POST", "/control/command"), ("GET", "/control/events"), ("GET", "/control/logs/logging-1")):
            async with env.http.request(method, f"{env.url}{path}", json={"argv": ["down"]}, headers=headers) as resp:
                assert resp.status == 401, (path, headers)
                assert message in (await resp.json())["error"]
    # nothing ran: the stand-ins are still up
    assert all(inst.state is State.RUNNING for inst in env.sup.instances())


async def test_status_json_shape(in_process: InProcess) -> None:
    status, reply = await in_process.command("status", "--json")
    assert status == 200 and set(reply) == REPLY_KEYS and reply["ok"] and reply["error"] is None
    data = reply["data"]
    assert data["config_server"] == in_process.url
    assert [row["name"] for row in data["instances"]] == ["logging-1", "logging-2", "messages-1"]
    row = data["instances"][0]
    assert {"name", "service", "kind", "managed", "state", "pid", "address", "uptime", "restarts",
            "last_exit"} <= set(row)
    assert row["service"] == "logging" and row["kind"] == "worker" and row["managed"] is True
    assert row["state"] == "RUNNING" and isinstance(row["pid"], int) and row["uptime"] >= 0
    assert row["restarts"] == 0 and row["last_exit"] is None
    assert "logging-1" in reply["text"] and "RUNNING" in reply["text"]


async def test_unknown_target_is_a_400_naming_it(in_process: InProcess) -> None:
    for verb in ("kill", "stop", "start", "restart", "revive", "logs"):
        status, reply = await in_process.command(verb, "loging-9")
        assert status == 400, verb
        assert set(reply) == REPLY_KEYS and reply["ok"] is False
        assert "'loging-9'" in reply["error"] and "logging-1" in reply["error"], reply
    status, reply = await in_process.command("scale", "nosuch", "2")
    assert status == 400 and "'nosuch'" in reply["error"] and "logging" in reply["error"]


async def test_usage_errors_are_400_with_usage(in_process: InProcess) -> None:
    cases = [
        (["kill"], "usage: kill"),
        (["scale", "logging", "many"], "invalid int value"),
        (["status", "--bogus"], "unrecognized arguments: --bogus"),
        (["frobnicate"], "unknown command 'frobnicate'"),
        ([], "no command given"),
        (["scale", "logging", "-1"], "between 0 and"),
    ]
    for argv, message in cases:
        status, reply = await in_process.command(*argv)
        assert status == 400, argv
        assert reply["ok"] is False and message in reply["error"], (argv, reply)
    for body in ({"argv": "status"}, {"argv": [1, 2]}, ["status"]):
        async with in_process.http.post(f"{in_process.url}/control/command", json=body,
                                        headers=in_process.auth) as resp:
            assert resp.status == 400
            assert set(await resp.json()) == REPLY_KEYS
    async with in_process.http.post(f"{in_process.url}/control/command", data=b"{",
                                    headers=in_process.auth) as resp:
        assert resp.status == 400 and "not valid JSON" in (await resp.json())["error"]


async def test_help(in_process: InProcess) -> None:
    status, reply = await in_process.command("help")
    assert status == 200 and "scale" in reply["text"] and "leaders" in reply["text"]
    status, reply = await in_process.command("help", "logs")
    assert status == 200 and "usage: logs" in reply["text"] and "--follow" in reply["text"]
    status, reply = await in_process.command("kill", "--help")
    assert status == 200 and "usage: kill" in reply["text"]


async def test_kill_then_worker_comes_back_and_status_shows_last_exit(in_process: InProcess) -> None:
    env = in_process
    old_pid = env.sup.resolve("logging-2")[0].pid
    status, reply = await env.command("kill", "logging-2")
    assert status == 200 and reply["ok"] and reply["data"] == {"instances": ["logging-2"]}

    async def back() -> bool:
        _, rows = await env.command("status", "--json")
        row = next(r for r in rows["data"]["instances"] if r["name"] == "logging-2")
        return row["state"] == "RUNNING" and row["pid"] != old_pid and row["restarts"] == 1

    await wait_until(back, timeout=30, what="logging-2 restarted")
    _, rows = await env.command("status", "--json")
    row = next(r for r in rows["data"]["instances"] if r["name"] == "logging-2")
    assert row["last_exit"]["signal"] == "SIGKILL"
    assert "SIGKILL" in rows["text"]


async def test_stop_and_start_a_service(in_process: InProcess) -> None:
    status, reply = await in_process.command("stop", "logging")
    assert status == 200 and reply["data"] == {"instances": ["logging-1", "logging-2"]}
    assert [i.state for i in in_process.sup.resolve("logging")] == [State.STOPPED, State.STOPPED]
    status, reply = await in_process.command("start", "logging")
    assert status == 200
    await wait_until(lambda: all(i.state is State.RUNNING for i in in_process.sup.resolve("logging")),
                     timeout=30, what="logging RUNNING again")


async def test_scale_up_and_down(in_process: InProcess) -> None:
    status, reply = await in_process.command("scale", "messages", "2")
    assert status == 200 and reply["data"]["instances"] == ["messages-1", "messages-2"], reply
    _, listed = await in_process.get_json("/services/messages")
    assert [i["name"] for i in listed["instances"]] == ["messages-1", "messages-2"]
    status, reply = await in_process.command("scale", "messages", "1")
    assert status == 200 and reply["data"]["instances"] == ["messages-1"]


async def test_events_stream_replays_then_follows(in_process: InProcess) -> None:
    env = in_process
    async with env.http.get(f"{env.url}/control/events", headers=env.auth) as resp:
        assert resp.status == 200 and resp.content_type == "application/x-ndjson"
        first = json.loads(await resp.content.readline())  # the ring comes first
        assert set(first) == {"ts", "name", "service", "from", "to", "detail"}
        assert first["to"] == "STARTING"
        await env.command("kill", "messages-1")

        async def saw_kill() -> bool:
            event = json.loads(await asyncio.wait_for(resp.content.readline(), 30))
            return event["name"] == "messages-1" and event["to"] == "EXITED"

        await wait_until(saw_kill, timeout=30, interval=0, what="the EXITED event on the stream")
    _, reply = await env.command("events", "-n", "3")
    assert len(reply["data"]) == 3 and "messages-1" in reply["text"]


async def test_logs_tail_and_follow(in_process: InProcess) -> None:
    env = in_process
    status, reply = await env.command("logs", "logging-1", "-n", "5")
    assert status == 200 and "standin logging-1 listening" in reply["text"]
    status, reply = await env.command("logs", "logging", "-n", "5")
    assert "logging-1 | " in reply["text"] and "logging-2 | " in reply["text"]

    async with env.http.get(f"{env.url}/control/logs/messages-1", params={"lines": "2"}, headers=env.auth) as resp:
        assert resp.status == 200
        assert len((await resp.text()).splitlines()) == 2

    url = f"{env.url}/control/logs/messages-1"
    async with env.http.get(url, params={"lines": "0", "follow": "1"}, headers=env.auth,
                            timeout=aiohttp.ClientTimeout(total=60)) as resp:
        assert resp.status == 200
        await env.command("restart", "messages-1")  # writes new lines into its log

        async def saw_restart() -> bool:
            line = (await asyncio.wait_for(resp.content.readline(), 30)).decode()
            return "standin messages-1 listening" in line

        await wait_until(saw_restart, timeout=30, interval=0, what="the restarted worker's line in the follow stream")

    for params, message in (({"lines": "x"}, "integer"), ({"lines": "-1"}, "between")):
        status, body = await env.get_json("/control/logs/logging-1", params=params, headers=env.auth)
        assert status == 400 and message in body["error"]
    status, body = await env.get_json("/control/logs/nope", headers=env.auth)
    assert status == 400 and "'nope'" in body["error"]


async def test_unknown_routes_answer_json(in_process: InProcess) -> None:
    status, body = await in_process.get_json("/nope")
    assert status == 404 and "error" in body
    async with in_process.http.put(f"{in_process.url}/services") as resp:
        assert resp.status == 405 and "error" in await resp.json()


async def test_scale_env_goes_to_the_new_instances_only(in_process: InProcess) -> None:
    env = in_process
    status, reply = await env.command("scale", "messages", "2", "--env", "PIPELINE_MARK=a=b", "--env", "OTHER=")
    assert status == 200, reply
    assert "messages-2 with PIPELINE_MARK=a=b OTHER=" in reply["text"]
    new, old = env.sup.resolve("messages-2")[0], env.sup.resolve("messages-1")[0]
    assert psutil.Process(new.pid).environ().get("PIPELINE_MARK") == "a=b"
    assert "PIPELINE_MARK" not in psutil.Process(old.pid).environ()
    await env.command("restart", "messages-2")  # a respawn keeps the instance's env
    assert psutil.Process(new.pid).environ().get("PIPELINE_MARK") == "a=b"

    # a fault injected through --env: the new instance crash-loops to FATAL, the scale is a failure
    status, reply = await env.command("scale", "logging", "3", "--env", "PIPELINE_FAULT=crash-at-start")
    assert status == 500 and "logging-3 did not become RUNNING (FATAL" in reply["error"], reply
    _, rows = await env.command("status", "--json")
    by_name = {row["name"]: row for row in rows["data"]["instances"]}
    assert by_name["logging-3"]["env"] == {"PIPELINE_FAULT": "crash-at-start"}
    assert by_name["logging-3"]["state"] == "FATAL" and by_name["logging-3"]["last_exit"]["code"] == 3
    assert by_name["messages-2"]["env"] == {"PIPELINE_MARK": "a=b", "OTHER": ""}
    assert "env" not in by_name["logging-1"] and "env" not in by_name["messages-1"]
    assert "logging-3 runs with extra env: PIPELINE_FAULT=crash-at-start" in rows["text"]
    assert [i.state for i in env.sup.resolve("logging")][:2] == [State.RUNNING, State.RUNNING]

    for argv, message in ((["scale", "logging", "4", "--env", "NOEQUALS"], "'NOEQUALS'"),
                          (["scale", "logging", "4", "--env", "1X=2"], "'1X=2'"),
                          (["scale", "logging", "2", "--env", "A=1"], "new instances only")):
        status, reply = await env.command(*argv)
        assert status == 400 and message in reply["error"], (argv, reply)
    assert len(env.sup.resolve("logging")) == 3  # nothing changed
