"""Reading the tail of instance log files, and following them as they grow (``tail -f``)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import AsyncIterator

_BLOCK = 8192
FOLLOW_INTERVAL = 0.2


def tail_lines(path: Path, n: int) -> list[str]:
    """The last ``n`` lines of ``path`` (reading backwards in blocks; a missing file has none)."""
    if n <= 0:
        return []
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            position = f.tell()
            data = b""
            while position > 0 and data.count(b"\n") <= n:
                step = min(_BLOCK, position)
                position -= step
                f.seek(position)
                data = f.read(step) + data
    except FileNotFoundError:
        return []
    lines = data.decode(errors="replace").splitlines()
    return lines[-n:]


def _label(name: str, line: str, prefix: bool) -> str:
    return f"{name} | {line}" if prefix else line


def tail_many(paths: dict[str, Path], n: int) -> list[str]:
    """The last ``n`` lines of each file; with several files each line starts with ``<name> | ``."""
    prefix = len(paths) > 1
    return [_label(name, line, prefix) for name, path in paths.items() for line in tail_lines(path, n)]


async def follow(paths: dict[str, Path], *, lines: int) -> AsyncIterator[str]:
    """Yield the last ``lines`` of each file, then every new line as it is written.

    With several files (a service target) each line is prefixed with its instance name.
    Polls the sizes; a file that shrinks (truncated, recreated) is read again from the start.
    """
    prefix = len(paths) > 1
    offsets = {name: path.stat().st_size if path.exists() else 0 for name, path in paths.items()}
    partial = {name: b"" for name in paths}
    for line in tail_many(paths, lines):
        yield line
    while True:
        for name, path in paths.items():
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                continue
            if size < offsets[name]:
                offsets[name], partial[name] = 0, b""
            if size == offsets[name]:
                continue
            with open(path, "rb") as f:
                f.seek(offsets[name])
                chunk = f.read(size - offsets[name])
            offsets[name] += len(chunk)
            *complete, partial[name] = (partial[name] + chunk).split(b"\n")
            for raw in complete:
                yield _label(name, raw.decode(errors="replace"), prefix)
        await asyncio.sleep(FOLLOW_INTERVAL)  # polling the files for growth
