"""Free ports are picked below the ephemeral range, so our own outgoing connections cannot take them."""

import socket

from supervisor.ports import _ephemeral_low, free_port


def test_free_ports_are_bindable_distinct_and_below_the_ephemeral_range() -> None:
    taken: set[int] = set()
    ports = [free_port(taken=taken) for _ in range(50)]
    assert len(set(ports)) == 50 and set(ports) == taken
    assert all(20000 <= p < _ephemeral_low() for p in ports)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", ports[0]))


def test_a_port_in_use_or_taken_is_skipped(monkeypatch) -> None:
    busy = socket.socket()
    busy.bind(("127.0.0.1", free_port()))
    busy.listen()
    in_use = busy.getsockname()[1]
    reserved = free_port()
    other = free_port(taken={in_use, reserved})
    offers = iter([in_use, reserved, other])
    monkeypatch.setattr("supervisor.ports.random.randint", lambda low, high: next(offers))
    try:
        assert free_port(taken={reserved}) == other
    finally:
        busy.close()
