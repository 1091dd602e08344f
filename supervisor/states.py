"""Instance states and the transitions allowed between them (stdlib only).

The picture follows supervisord: a process is STARTING from spawn until its readiness probe passes,
then RUNNING. An exit that nobody asked for lands in EXITED; the restart policy then moves it to
BACKOFF (a respawn is scheduled), to FATAL (past the restart intensity: no more respawns), or leaves
it in EXITED (policy says no restart, or a chaos kill keeps it down until revived). A requested stop
goes through STOPPING to STOPPED and never restarts.
"""

from __future__ import annotations

from enum import Enum


class State(str, Enum):
    STOPPED = "STOPPED"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    BACKOFF = "BACKOFF"
    STOPPING = "STOPPING"
    EXITED = "EXITED"
    FATAL = "FATAL"

    def __str__(self) -> str:
        return self.value


TRANSITIONS: dict[State, frozenset[State]] = {
    # spawned (start, revive)
    State.STOPPED: frozenset({State.STARTING}),
    # probe passed; died or not ready in time; stop requested while starting
    State.STARTING: frozenset({State.RUNNING, State.EXITED, State.STOPPING}),
    # died; stop requested
    State.RUNNING: frozenset({State.EXITED, State.STOPPING}),
    # process gone (TERM honoured or KILL after the stop timeout)
    State.STOPPING: frozenset({State.STOPPED}),
    # policy decides: respawn later, give up, respawn now (manual start/revive), or forget it (stop)
    State.EXITED: frozenset({State.BACKOFF, State.FATAL, State.STARTING, State.STOPPED}),
    # the backoff delay elapsed; stop requested while waiting
    State.BACKOFF: frozenset({State.STARTING, State.STOPPED}),
    # only a person brings a FATAL instance back (start/restart/revive) or acknowledges it (stop)
    State.FATAL: frozenset({State.STARTING, State.STOPPED}),
}

# States in which the instance has (or may have) a live OS process.
PROCESS_STATES: frozenset[State] = frozenset({State.STARTING, State.RUNNING, State.STOPPING})


class InvalidTransition(Exception):
    """A state change the table does not allow; always a bug in the supervisor, never user input."""

    def __init__(self, name: str, from_state: State, to_state: State) -> None:
        allowed = ", ".join(sorted(s.value for s in TRANSITIONS[from_state])) or "nothing"
        super().__init__(
            f"{name}: invalid transition {from_state.value} -> {to_state.value} "
            f"(from {from_state.value} only {allowed})"
        )
        self.name = name
        self.from_state = from_state
        self.to_state = to_state


def check_transition(name: str, from_state: State, to_state: State) -> None:
    """Raise InvalidTransition unless the table allows from_state -> to_state."""
    if to_state not in TRANSITIONS[from_state]:
        raise InvalidTransition(name, from_state, to_state)
