"""Turning rich renderables into the plain text of a reply (the same text on every front end)."""

from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table

_WIDTH = 120


def to_text(renderable: object, width: int = _WIDTH) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, color_system=None, force_terminal=False, highlight=False)
    console.print(renderable)
    return "\n".join(line.rstrip() for line in buffer.getvalue().rstrip().splitlines())


def table(*columns: str, title: str | None = None) -> Table:
    result = Table(title=title, box=None, header_style="bold", pad_edge=False)
    for column in columns:
        result.add_column(column, overflow="fold")
    return result


def duration(seconds: float | None) -> str:
    """``3s``, ``4m05s``, ``2h03m``; ``-`` when unknown."""
    if seconds is None or seconds < 0:
        return "-"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
