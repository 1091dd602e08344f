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


def test_a_port_in_use_is_not_picked() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        in_use = busy.getsockname()[1]
        assert in_use not in {free_port() for _ in range(100)}
