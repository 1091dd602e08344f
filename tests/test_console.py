"""The console driven through a real pseudo-terminal: inside `up` (local) and `console` (remote)."""

from __future__ import annotations

import asyncio
import fcntl
import os
import re
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import psutil

from supervisor.paths import RuntimePaths
from supervisor.topology import load_topology
from tests.fixtures_front import REPO, UpProcess, up_process, write_topology  # noqa: F401 - fixture

PROMPT = "pipeline>"  # the trailing space is drawn as a cursor move
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>78]|\r")


def _take_terminal() -> None:
    """In the child: a new session whose controlling terminal is the pty (so Ctrl-C is SIGINT)."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class PtyProcess:
    """A child on a pseudo-terminal; `expect` reads its screen output (escape codes stripped)."""

    def __init__(self, argv: list[str]) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
        env = {**os.environ, "TERM": "xterm", "NO_COLOR": "1", "PROMPT_TOOLKIT_NO_CPR": "1", "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(argv, cwd=REPO, stdin=slave, stdout=slave, stderr=slave, env=env,
                                     preexec_fn=_take_terminal, close_fds=True)
        os.close(slave)
        os.set_blocking(master, False)
        self.master = master
        self.seen = ""  # everything read so far
        self._pos = 0  # `expect` searches after the previous match

    def _read(self) -> None:
        try:
            while chunk := os.read(self.master, 65536):
                self.seen += _ANSI.sub("", chunk.decode(errors="replace"))
        except (BlockingIOError, OSError):
            pass

    async def expect(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self._read()
            found = self.seen.find(text, self._pos)
            if found >= 0:
                self._pos = found + len(text)
                return
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError(f"{text!r} not seen within {timeout}s; screen after last match:\n"
                                     f"{self.seen[self._pos:][-3000:]}")
            await asyncio.sleep(0.05)  # polling the terminal output, with the deadline above

    def send(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    async def wait_exit(self, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            self._read()  # keep draining so the child never blocks on a full pty
            assert time.monotonic() < deadline, f"still running after {timeout}s:\n{self.seen[-2000:]}"
            await asyncio.sleep(0.05)  # polling for the exit, with the deadline above
        return self.proc.returncode

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        os.close(self.master)


async def test_console_inside_up(tmp_path: Path) -> None:
    topology = write_topology(tmp_path)
    paths = RuntimePaths(load_topology(topology).runtime_dir)
    term = PtyProcess([sys.executable, "-m", "supervisor", "up", str(topology)])
    try:
        await term.expect("ready in", timeout=60)
        await term.expect("`quit` or Ctrl-D stops everything")
        await term.expect(PROMPT)
        children = psutil.Process(term.proc.pid).children(recursive=True)
        assert len(children) == 3

        term.send("status\r")
        await term.expect("messages-1")
        await term.expect(PROMPT)

        term.send("help kill\r")
        await term.expect("usage: kill")
        await term.expect(PROMPT)

        term.send("kill loging-1\r")
        await term.expect("unknown target 'loging-1'")
        await term.expect(PROMPT)

        term.send("stat\t")  # completion of the verb (the only one starting so)
        await term.expect("status")
        term.send(" --json\r")
        await term.expect('"config_server"')
        await term.expect(PROMPT)

        term.send("logs messages-1 -f -n 5\r")
        await term.expect("standin messages-1 listening")
        term.send("\x03")  # Ctrl-C ends the follow, not the supervisor
        await term.expect("(stopped)")
        await term.expect(PROMPT)
        assert term.proc.poll() is None

        term.send("quit\r")
        assert await term.wait_exit() == 0
        await term.expect("stopping everything")
        _, alive = psutil.wait_procs(children, timeout=10)
        assert not alive
        assert not paths.state_file.exists()
        assert "status" in paths.history_file.read_text()
    finally:
        term.close()


async def test_remote_console_attaches_and_detaches(up_process: UpProcess) -> None:
    term = PtyProcess([sys.executable, "-m", "supervisor", "console", "-t", str(up_process.topology)])
    try:
        await term.expect("`quit` or Ctrl-D detaches")
        await term.expect(PROMPT)
        term.send("status\r")
        await term.expect("logging-2")
        await term.expect(PROMPT)
        term.send("restart log\t")  # completion of a target name from the running supervisor
        await term.expect("logging")
        term.send("-1\r")
        await term.expect("logging-1: restarted")
        await term.expect(PROMPT)
        term.send("\x04")  # Ctrl-D detaches; the supervisor keeps running
        assert await term.wait_exit() == 0
        assert up_process.proc.poll() is None
    finally:
        term.close()


async def test_down_from_the_remote_console_stops_the_supervisor(up_process: UpProcess) -> None:
    term = PtyProcess([sys.executable, "-m", "supervisor", "console", "--runtime-dir", str(up_process.paths.root)])
    try:
        await term.expect(PROMPT)
        term.send("down\r")
        await term.expect("stopping the supervisor")
        assert await term.wait_exit() == 0
        assert await asyncio.to_thread(up_process.proc.wait, 60) == 0
    finally:
        term.close()
