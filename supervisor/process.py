"""One OS process: spawn it in its own process group, pump its output, stop it (TERM, then KILL).

Every child is started with PR_SET_PDEATHSIG=SIGKILL, so it dies with the supervisor even when the
supervisor itself is SIGKILLed; its own process group lets a stop reach the whole tree.
"""

from __future__ import annotations

import asyncio
import collections
import ctypes
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, TextIO

_PR_SET_PDEATHSIG = 1
_LINE_LIMIT = 1 << 20
_CHUNK = 1 << 16
_TAIL_LINES = 200


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    argv: list[str]
    cwd: Path | None = None
    env: Mapping[str, str] | None = None  # added on top of os.environ
    log_path: Path | None = None  # stdout and stderr are appended here
    stop_timeout: float = 10.0  # SIGTERM, then SIGKILL after this many seconds


def _die_with_parent() -> None:
    """Runs in the child between fork and exec (Linux only; elsewhere the children.json reaper covers)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


async def _spawn(argv: list[str], *, cwd: Path | None, env: Mapping[str, str], **kwargs: int) -> asyncio.subprocess.Process:
    """Start argv in its own process group, output piped, dying with the supervisor."""
    return await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=cwd,
        env=dict(env),
        start_new_session=True,
        preexec_fn=_die_with_parent,
        **kwargs,
    )


def describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "still running"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


class OsProcess:
    """One spawned process. Not restartable: supervision makes a new OsProcess per start."""

    def __init__(self, spec: ProcessSpec, on_line: Callable[[str, str], None] | None = None) -> None:
        self.spec = spec
        self._on_line = on_line
        self._proc: asyncio.subprocess.Process | None = None
        self._pump: asyncio.Task[None] | None = None
        self._tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
        self._log: TextIO | None = None
        self.started_at: float | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode if self._proc else None

    async def start(self) -> None:
        if self._proc is not None:
            raise RuntimeError(f"{self.spec.name}: already started")
        env = dict(os.environ)
        env.update(self.spec.env or {})
        env.setdefault("PYTHONUNBUFFERED", "1")
        if self.spec.log_path is not None:
            self.spec.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.spec.log_path, "a", encoding="utf-8", buffering=1)
        self._proc = await _spawn(self.spec.argv, cwd=self.spec.cwd, env=env, limit=_LINE_LIMIT)
        self.started_at = time.time()
        self._write_marker(f"started pid {self._proc.pid}: {' '.join(self.spec.argv)}")
        self._pump = asyncio.create_task(self._pump_output(), name=f"pump-{self.spec.name}")

    async def wait(self) -> int:
        assert self._proc is not None, "not started"
        code = await self._proc.wait()
        if self._pump is not None:
            # The pipe closes when the last holder exits; a stray grandchild must not hang us.
            try:
                await asyncio.wait_for(asyncio.shield(self._pump), timeout=2.0)
            except asyncio.TimeoutError:
                self._pump.cancel()
        self._close_log(f"exited: {describe_exit(code)}")
        return code

    def send_signal(self, sig: int) -> None:
        """Signal the whole process group; a no-op if it is already gone."""
        if self._proc is None:
            return
        try:
            os.killpg(self._proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    async def stop(self, timeout: float | None = None) -> int:
        """SIGTERM the group, wait up to `timeout` (spec.stop_timeout), then SIGKILL it."""
        assert self._proc is not None, "not started"
        timeout = self.spec.stop_timeout if timeout is None else timeout
        if self._proc.returncode is None:
            self.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(self._proc.wait()), timeout=timeout)
            except asyncio.TimeoutError:
                self._write_marker(f"did not stop within {timeout:g}s of SIGTERM: SIGKILL")
        # Also reaps grandchildren left in the group after the leader exited.
        self.send_signal(signal.SIGKILL)
        return await self.wait()

    def tail(self, n: int = 20) -> list[str]:
        return list(self._tail)[-n:]

    async def _pump_output(self) -> None:
        """Copy the child's output to its log file, the tail and the line listener.

        Reads whatever is buffered (not line by line) and appends it with one write: a busy worker
        logs a line per message, and a read plus a write per line cost the supervisor several % of a
        core at 500 msg/s."""
        assert self._proc is not None and self._proc.stdout is not None
        stream = self._proc.stdout
        partial = b""
        while True:
            chunk = await stream.read(_CHUNK)
            if not chunk:
                if partial:
                    self._take_lines([partial])
                return
            *complete, partial = (partial + chunk).split(b"\n")
            if len(partial) >= _LINE_LIMIT:  # a runaway line: cut it rather than buffer it all
                complete.append(partial)
                partial = b""
            if complete:
                self._take_lines(complete)

    def _take_lines(self, raw_lines: list[bytes]) -> None:
        lines = [raw.decode("utf-8", errors="replace").rstrip("\r") for raw in raw_lines]
        self._tail.extend(lines)
        if self._log is not None:
            self._log.write("\n".join(lines) + "\n")
        if self._on_line is not None:
            for line in lines:
                self._on_line(self.spec.name, line)

    def _write_marker(self, text: str) -> None:
        if self._log is not None:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            self._log.write(f"=== {stamp} {self.spec.name} {text}\n")

    def _close_log(self, text: str) -> None:
        if self._log is not None and not self._log.closed:
            self._write_marker(text)
            self._log.close()


async def run_once(
    argv: list[str],
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> tuple[int, str]:
    """Run a short tool to completion (for example Kafka's StorageTool); returns (code, output)."""
    proc = await _spawn(argv, cwd=cwd, env={**os.environ, **(env or {})})
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=timeout)
    except (asyncio.TimeoutError, asyncio.CancelledError) as exc:
        # Timed out, or the caller gave up (a failed start cancels its siblings): end the tool too.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        await asyncio.shield(proc.wait())
        if isinstance(exc, asyncio.CancelledError):
            raise
        raise TimeoutError(f"{argv[0]} did not finish within {timeout:g}s") from None
    return proc.returncode if proc.returncode is not None else -1, out.decode("utf-8", errors="replace")
