"""A supervised instance: one worker, Kafka broker or Hazelcast member as an actor.

Every state change goes through `Instance._change_state`, which checks the transition table and
publishes an Event. Slow things (readiness probe, waiting for the exit, the TERM -> KILL stop, the
backoff delay) run as owned tasks that report back through the mailbox with the generation
(spawn number) they belong to, so a late report about an older process is ignored.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


from supervisor.actor import Actor, Backoff, Policy, RestartIntensity
from supervisor.events import EventBus
from supervisor.probes import Probe
from supervisor.process import OsProcess, ProcessSpec
from supervisor.states import PROCESS_STATES, State, check_transition

log = logging.getLogger("supervisor.instance")

PROBE_INTERVAL = 0.1
LOG_TAIL_LINES = 20
KINDS = ("kafka", "hazelcast", "worker")


class InstanceError(Exception):
    """A command on an instance did not do what was asked (see the two kinds below)."""


class WrongState(InstanceError):
    """A command that makes no sense in the instance's current state (kill a stopped one): the
    caller's mistake, a usage error (HTTP 400)."""


class StartFailed(InstanceError):
    """A start, restart or revive that did not reach RUNNING: a failure of the instance, not of
    the caller (HTTP 500). The message says how the attempt ended."""


@dataclass(frozen=True)
class ExitInfo:
    code: int | None  # the raw return code (negative: killed by that signal); None: never ran
    signal: str | None
    at: float
    log_tail: list[str]
    reason: str = ""  # why it ended, when the supervisor knows better than the code ("not ready ...")

    @classmethod
    def from_returncode(cls, code: int | None, log_tail: list[str], reason: str = "") -> ExitInfo:
        sig = None
        if code is not None and code < 0:
            try:
                sig = signal.Signals(-code).name
            except ValueError:
                sig = f"signal {-code}"
        return cls(code, sig, time.time(), log_tail, reason)

    def describe(self) -> str:
        text = "never started" if self.code is None else f"exit code {self.code}"
        if self.signal:
            text += f" ({self.signal})"
        return f"{self.reason}: {text}" if self.reason else text

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "signal": self.signal, "at": self.at, "log_tail": self.log_tail,
                "reason": self.reason, "text": self.describe()}


@dataclass(frozen=True)
class RestartRules:
    """The restart policy of one instance, as data (built from the topology's RestartPolicy)."""

    policy: Policy
    backoff_initial: float
    backoff_max: float
    intensity: int
    period: float

    @classmethod
    def from_topology(cls, rp: Any) -> RestartRules:
        return cls(Policy(rp.policy), rp.backoff_initial, rp.backoff_max, rp.intensity, rp.period)


@dataclass(frozen=True)
class InstanceSpec:
    name: str
    service: str
    kind: str  # "kafka" | "hazelcast" | "worker"
    process: ProcessSpec
    probe: Probe
    ready_timeout: float
    restart: RestartRules
    address: str | None = None
    port: int | None = None
    managed: bool = True
    extra_env: Mapping[str, str] = field(default_factory=dict)  # given by `scale --env`, beyond the topology's

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"{self.name}: kind must be one of {KINDS}, not {self.kind!r}")


# -- mailbox messages ----------------------------------------------------------------------------
@dataclass(frozen=True)
class _Start:
    revive: bool = False


@dataclass(frozen=True)
class _Stop:
    pass


@dataclass(frozen=True)
class _Kill:
    pass


@dataclass(frozen=True)
class _Exited:
    gen: int
    code: int | None
    tail: list[str]


@dataclass(frozen=True)
class _Ready:
    gen: int


@dataclass(frozen=True)
class _NotReady:
    gen: int
    last_error: str


@dataclass(frozen=True)
class _BackoffDone:
    gen: int


class Instance(Actor):
    def __init__(
        self,
        spec: InstanceSpec,
        events: EventBus,
        *,
        on_output: Callable[[str, str], None] | None = None,
        on_change: Callable[[Instance], None] | None = None,
    ) -> None:
        super().__init__(spec.name)
        self.spec = spec
        self.events = events
        self._on_output = on_output
        self._on_change = on_change
        self.state = State.STOPPED
        self.pid: int | None = None
        self.started_at: float | None = None
        self.running_since: float | None = None
        self.restarts = 0
        self.last_exit: ExitInfo | None = None
        self.held_down = False  # chaos-killed broker/member: no restart until revive
        self._gen = 0
        self._proc: OsProcess | None = None
        self._probe_task: asyncio.Task[Any] | None = None
        self._timer: asyncio.Task[Any] | None = None
        self._stopping_reason = ""
        self._kill_reason = ""
        self._backoff = Backoff(spec.restart.backoff_initial, spec.restart.backoff_max)
        self._intensity = RestartIntensity(spec.restart.intensity, spec.restart.period)
        self._state_waiters: list[asyncio.Future[None]] = []

    # -- read-only view ----------------------------------------------------------------------
    @property
    def service(self) -> str:
        return self.spec.service

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def managed(self) -> bool:
        return self.spec.managed

    @property
    def address(self) -> str | None:
        return self.spec.address

    @property
    def port(self) -> int | None:
        return self.spec.port

    @property
    def extra_env(self) -> dict[str, str]:
        return dict(self.spec.extra_env)

    def view(self) -> dict[str, Any]:
        return {
            "name": self.name, "service": self.service, "kind": self.kind, "managed": self.managed,
            "state": self.state.value, "pid": self.pid, "address": self.address,
            "started_at": self.started_at, "restarts": self.restarts,
            "last_exit": self.last_exit.to_json() if self.last_exit else None,
            **({"env": self.extra_env} if self.extra_env else {}),
        }

    # -- commands (public) -------------------------------------------------------------------
    async def start(self) -> None:
        """Spawn now (from STOPPED, EXITED, FATAL or BACKOFF); returns once STARTING."""
        self.start_actor()
        await self.ask(_Start())

    async def revive(self) -> None:
        """Bring back a chaos-killed (or otherwise down) instance."""
        self.start_actor()
        await self.ask(_Start(revive=True))

    async def stop(self) -> None:
        """Graceful stop: TERM, KILL after stop_timeout; returns once STOPPED. Never restarts."""
        if not self.alive:
            return
        done: asyncio.Future[None] = await self.ask(_Stop())
        await done

    async def kill(self) -> None:
        """SIGKILL, as a crash would: workers follow their restart policy, brokers and members
        stay down until `revive`. Returns once the signal is sent."""
        await self.ask(_Kill())

    async def restart(self) -> None:
        await self.stop()
        await self.start()
        self.restarts += 1

    async def wait_state(self, *states: State, timeout: float) -> State:
        """Wait until the state is one of `states`; TimeoutError naming them otherwise."""
        deadline = time.monotonic() + timeout
        while self.state not in states:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                wanted = "/".join(s.value for s in states)
                raise TimeoutError(f"{self.name}: not {wanted} within {timeout:g}s (is {self.state.value})")
            waiter = asyncio.get_running_loop().create_future()
            self._state_waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, remaining)
            except asyncio.TimeoutError:
                pass
            finally:
                if waiter in self._state_waiters:
                    self._state_waiters.remove(waiter)
        return self.state

    async def wait_running(self, timeout: float) -> None:
        """Wait for RUNNING, riding through restarts; fail fast once it gave up (FATAL, STOPPED,
        or EXITED with no restart coming), naming the last exit and its log tail."""
        # EXITED is only ever seen here when it is final: the policy moves on to BACKOFF/FATAL
        # in the same mailbox turn, before any waiter runs.
        state = await self.wait_state(State.RUNNING, State.FATAL, State.STOPPED, State.EXITED, timeout=timeout)
        if state is State.RUNNING:
            return
        tail = "\n".join(self.last_exit.log_tail) if self.last_exit else ""
        why = self.last_exit.describe() if self.last_exit else "no exit recorded"
        raise StartFailed(f"{self.name} did not become RUNNING ({state.value}; last exit: {why})"
                            + (f"\n--- log tail ---\n{tail}" if tail else ""))

    async def wait_started(self) -> None:
        """After start/revive/restart: wait out this one attempt (STARTING ends within ready_timeout);
        return if it is RUNNING, else say how it ended (a restart may still follow per policy)."""
        others = [s for s in State if s is not State.STARTING]
        state = await self.wait_state(*others, timeout=self.spec.ready_timeout + 5)
        if state is not State.RUNNING:
            why = self.last_exit.describe() if self.last_exit else "no exit recorded"
            raise StartFailed(f"{self.name} did not become RUNNING (now {state.value}; last exit: {why})")

    # -- the one state-change path -----------------------------------------------------------
    def _change_state(self, to: State, detail: str = "", *, force: bool = False) -> None:
        before = self.state
        if not force:
            check_transition(self.name, before, to)
        self.state = to
        self.events.emit(self.name, self.service, before, to, detail)
        for waiter in self._state_waiters:
            if not waiter.done():
                waiter.set_result(None)
        if self._on_change is not None:
            self._on_change(self)

    # -- message handling --------------------------------------------------------------------
    async def handle(self, message: object) -> Any:
        match message:
            case _Start(revive=revive):
                return await self._handle_start(revive)
            case _Stop():
                return self._handle_stop()
            case _Kill():
                return self._handle_kill()
            case _Exited(gen=gen, code=code, tail=tail) if gen == self._gen:
                return self._handle_exit(code, tail)
            case _Ready(gen=gen) if gen == self._gen and self.state is State.STARTING:
                self.running_since = time.monotonic()
                took = time.time() - (self.started_at or time.time())
                return self._change_state(State.RUNNING, f"ready after {took:.1f}s")
            case _NotReady(gen=gen, last_error=err) if gen == self._gen and self.state is State.STARTING:
                self._kill_reason = f"not ready within {self.spec.ready_timeout:g}s" + (f" ({err})" if err else "")
                assert self._proc is not None
                self._proc.send_signal(signal.SIGKILL)
                return None
            case _BackoffDone(gen=gen) if gen == self._gen and self.state is State.BACKOFF:
                self._timer = None
                self.restarts += 1
                return await self._spawn(f"restart #{self.restarts}")
            case _Exited() | _Ready() | _NotReady() | _BackoffDone():
                return None  # about an older process, or overtaken by a command
        raise TypeError(f"{self.name}: unknown message {message!r}")

    async def _handle_start(self, revive: bool) -> None:
        if self.state in PROCESS_STATES:
            raise WrongState(f"{self.name} is already {self.state.value}")
        if self.state is State.FATAL or revive:
            self._intensity.reset()
            self._backoff.reset()
        self.held_down = False
        self._cancel_timer()
        await self._spawn("revive" if revive else "start")

    def _handle_stop(self) -> asyncio.Future[None]:
        done = asyncio.get_running_loop().create_future()
        if self.state in (State.STARTING, State.RUNNING):
            self._cancel_probe()
            self._change_state(State.STOPPING, f"SIGTERM, SIGKILL after {self.spec.process.stop_timeout:g}s")
            assert self._proc is not None
            self.own(self._proc.stop(), "stop")
        elif self.state in (State.BACKOFF, State.EXITED, State.FATAL):
            self._cancel_timer()
            self._change_state(State.STOPPED, "stopped while down")
        if self.state is State.STOPPED:
            done.set_result(None)
        else:  # STOPPING: resolved by the exit
            self.own(self._resolve_when_stopped(done), "stop waiter")
        return done

    async def _resolve_when_stopped(self, done: asyncio.Future[None]) -> None:
        await self.wait_state(State.STOPPED, timeout=self.spec.process.stop_timeout + 30)
        if not done.done():
            done.set_result(None)

    def _handle_kill(self) -> None:
        if self.state not in PROCESS_STATES or self._proc is None:
            raise WrongState(f"{self.name} is not running ({self.state.value})")
        if self.kind != "worker":
            self.held_down = True
        self._kill_reason = "killed on request"
        self._proc.send_signal(signal.SIGKILL)

    def _handle_exit(self, code: int | None, tail: list[str]) -> None:
        self._cancel_probe()
        reason, self._kill_reason = self._kill_reason, ""
        self.last_exit = ExitInfo.from_returncode(code, tail, reason)
        self._proc = None
        self.pid = None
        ran_for = time.monotonic() - self.running_since if self.running_since is not None else 0.0
        self.running_since = None
        if self.state is State.STOPPING:
            self._change_state(State.STOPPED, self.last_exit.describe())
            return
        if self.held_down:
            self._change_state(State.EXITED, f"{self.last_exit.describe()}; stays down until revive")
            return
        if not self.spec.restart.policy.wants_restart(code):
            self._change_state(State.EXITED, f"{self.last_exit.describe()}; not restarted "
                               f"(policy {self.spec.restart.policy.value})")
            return
        self._change_state(State.EXITED, self.last_exit.describe())
        if ran_for >= self.spec.restart.backoff_max:  # it was healthy for a while: start afresh
            self._backoff.reset()
        if not self._intensity.allow():
            self._change_state(State.FATAL, f"gave up: {self._intensity.describe()}; "
                               f"last {self.last_exit.describe()}")
            return
        delay = self._backoff.next()
        self._change_state(State.BACKOFF, f"restart in {delay:g}s")
        self._timer = self.own(self._backoff_timer(self._gen, delay), "backoff timer")

    # -- helpers -----------------------------------------------------------------------------
    async def _spawn(self, why: str) -> None:
        self._gen += 1
        gen = self._gen
        on_line = self._on_output if self.kind == "worker" else None
        proc = OsProcess(self.spec.process, on_line=on_line)
        try:
            await proc.start()
        except OSError as exc:
            self._change_state(State.STARTING, why)
            self._kill_reason = f"could not start {self.spec.process.argv[0]!r}: {exc}"
            self._handle_exit(None, [])
            return
        self._proc = proc
        self.pid = proc.pid
        self.started_at = time.time()
        self._change_state(State.STARTING, f"{why}: pid {proc.pid}")
        self.own(self._watch_exit(gen, proc), "exit watcher")
        self._probe_task = self.own(self._probe(gen), "readiness probe")

    async def _watch_exit(self, gen: int, proc: OsProcess) -> None:
        code = await proc.wait()
        self.tell(_Exited(gen, code, proc.tail(LOG_TAIL_LINES)))

    async def _probe(self, gen: int) -> None:
        deadline = time.monotonic() + self.spec.ready_timeout
        last_error = ""
        while True:
            try:
                if await self.spec.probe():
                    self.tell(_Ready(gen))
                    return
            except Exception as exc:  # noqa: BLE001 - not up yet; the last error goes in the detail
                last_error = f"{type(exc).__name__}: {exc}".rstrip(": ")
            if time.monotonic() >= deadline:
                self.tell(_NotReady(gen, last_error))
                return
            await asyncio.sleep(PROBE_INTERVAL)

    async def _backoff_timer(self, gen: int, delay: float) -> None:
        await asyncio.sleep(delay)
        self.tell(_BackoffDone(gen))

    def _cancel_probe(self) -> None:
        if self._probe_task is not None:
            self._probe_task.cancel()
            self._probe_task = None

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def on_crash(self, what: str, exc: BaseException) -> None:
        """A supervisor bug in this instance: kill its process and show it as FATAL, never hang."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGKILL)
        self._change_state(State.FATAL, f"supervisor error in {what}: {exc!r}", force=True)
