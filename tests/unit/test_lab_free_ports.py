"""`lab.ovs.free_ports`: the ports the lab hands its controller, API server and etcd at once are distinct."""

from __future__ import annotations

from lab.ovs import free_ports


def test_ports_asked_for_together_are_distinct() -> None:
    ports = free_ports(64)
    assert len(ports) == len(set(ports)) == 64
    assert all(1024 <= port <= 65535 for port in ports)
