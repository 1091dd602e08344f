"""Choosing a free TCP port that stays free until its server binds it.

A port from bind(0) comes from the kernel's ephemeral range, the same range outgoing connections take
their source ports from: between picking it and the server (a JVM that starts in seconds) binding
it, a client connection of our own can grab it (seen: a broker failing with "Address already in
use"). So ports are picked below that range, where no outgoing connection lands.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

_FALLBACK_EPHEMERAL_LOW = 32768
_LOWEST = 20000
_TRIES = 200


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return _FALLBACK_EPHEMERAL_LOW


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1", taken: set[int] | None = None) -> int:
    """A port nobody listens on now, outside the ephemeral range and not in `taken` (which it joins)."""
    taken = taken if taken is not None else set()
    high = _ephemeral_low() - 1
    for _ in range(_TRIES):
        port = random.randint(_LOWEST, high) if high > _LOWEST else 0
        if port and port not in taken and _bindable(host, port):
            taken.add(port)
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # last resort: the kernel's pick
        sock.bind((host, 0))
        port = int(sock.getsockname()[1])
    taken.add(port)
    return port
