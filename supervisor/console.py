"""The interactive console: a prompt_toolkit prompt over the command layer.

It runs the same commands as the CLI, either in the supervisor process (the console of ``up``)
or through the control API (``python -m supervisor console``). Output of the workers and the
supervisor is printed above the prompt (``patch_stdout``). Ctrl-C stops a running command
(``logs -f``, ``events -f``); ``quit`` or Ctrl-D leaves: inside ``up`` that stops everything.
"""

from __future__ import annotations

import asyncio
import shlex
from pathlib import Path
from typing import Callable, Iterable

from prompt_toolkit import PromptSession
from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.history import FileHistory
from prompt_toolkit.patch_stdout import patch_stdout

from supervisor.commands import VERBS
from supervisor.commands.frontend import Runner, execute_line

QUIT_WORDS = frozenset({"quit", "exit"})
_NO_TARGET_VERBS = frozenset({"status", "leaders", "events", "down"})


class _Completer(Completer):
    """Verbs for the first word, then instance and service names (``help`` completes verbs)."""

    def __init__(self, names: Callable[[], list[str]]) -> None:
        self._names = names

    def get_completions(self, document: Document, complete_event: CompleteEvent) -> Iterable[Completion]:
        words = document.text_before_cursor.split()
        current = "" if document.text_before_cursor.endswith(" ") else (words.pop() if words else "")
        if not words:
            candidates: list[str] = [*VERBS, *sorted(QUIT_WORDS)]
        elif words[0] == "help":
            candidates = list(VERBS)
        elif words[0] in _NO_TARGET_VERBS:
            candidates = []
        else:
            candidates = self._names()
        for candidate in candidates:
            if candidate.startswith(current):
                yield Completion(candidate, start_position=-len(current))


class Console:
    def __init__(self, runner: Runner, *, history_file: Path, inside_up: bool) -> None:
        self.runner = runner
        self.inside_up = inside_up
        self._names: list[str] = []
        self._current: asyncio.Task[int] | None = None
        self._session: PromptSession[str] = PromptSession(
            history=FileHistory(str(history_file)),
            completer=_Completer(lambda: self._names),
            complete_while_typing=False,
        )

    def banner(self) -> str:
        leave = "`quit` or Ctrl-D stops everything" if self.inside_up else "`quit` or Ctrl-D detaches"
        return f"console: `help` lists the commands, Tab completes, Ctrl-C stops a running command; {leave}."

    def interrupt(self) -> bool:
        """Cancel the running command (e.g. ``logs -f``); False if none was running."""
        if self._current is not None and not self._current.done():
            self._current.cancel()
            return True
        return False

    async def run(self) -> None:
        """Read and run commands until quit, Ctrl-D, or ``down``."""
        with patch_stdout(raw=True):
            print(self.banner())
            while True:
                try:
                    self._names = await self.runner.names()
                except Exception:  # noqa: BLE001 - completion is a convenience, never a failure
                    self._names = []
                try:
                    # handle_sigint=False: prompt_toolkit would replace the supervisor's SIGINT
                    # handler and then remove it (Ctrl-C at the prompt is a key press anyway)
                    line = await self._session.prompt_async("pipeline> ", handle_sigint=False)
                except KeyboardInterrupt:
                    continue
                except EOFError:
                    return
                try:
                    argv = shlex.split(line)
                except ValueError as exc:
                    print(f"error: {exc}")
                    continue
                if not argv:
                    continue
                if argv[0] in QUIT_WORDS:
                    return
                await self._run_one(argv)
                if argv[0] == "down":
                    return

    async def _run_one(self, argv: list[str]) -> None:
        self._current = asyncio.create_task(execute_line(self.runner, argv, print))
        try:
            await self._current
        except asyncio.CancelledError:
            if asyncio.current_task().cancelling():  # type: ignore[union-attr]
                raise  # the console itself is being cancelled, not just the command
            print("(stopped)")
        finally:
            self._current = None
