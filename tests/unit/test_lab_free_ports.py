"""`lab.ovs.free_ports`: the ports the lab hands its controller, API server and etcd are distinct and free."""

from __future__ import annotations

import socket

from lab.ovs import free_ports


def test_ports_asked_for_together_are_distinct_and_free() -> None:
    ports = free_ports(64)
    assert len(ports) == len(set(ports)) == 64
    held = []
    try:
        for port in ports:  # each can be listened on once the call has returned
            listener = socket.socket()
            held.append(listener)
            listener.bind(("0.0.0.0", port))
            listener.listen()
    finally:
        for listener in held:
            listener.close()
