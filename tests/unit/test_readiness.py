"""CHECK's verdict on a pod's interface: what later chained plugins may change passes, what breaks fails."""

from __future__ import annotations

from dataclasses import replace

import pytest

from agent.netlink import PodView
from agent.readiness import pod_problem

DOC = {"ip": "10.1.0.5", "prefix_len": 24, "mac": "02:00:0a:01:00:05", "gateway": "10.1.0.1", "mtu": 1450}
GOOD = PodView("eth0", "02:00:0A:01:00:05", ("10.1.0.5/24",), "10.1.0.1", 1450, True)


@pytest.mark.parametrize(
    "view",
    [
        GOOD,
        replace(GOOD, mtu=1400),  # a later plugin lowered it
        replace(GOOD, addresses=("192.0.2.7/32", "10.1.0.5/24")),  # and added an address
    ],
)
def test_changes_that_keep_the_attachment_working_pass(view: PodView) -> None:
    assert pod_problem(view, DOC, "eth0", owns_default_route=True) is None


@pytest.mark.parametrize(
    ("view", "complaint"),
    [
        (None, "missing from the pod"),
        (replace(GOOD, mac="02:00:0a:01:00:06"), "has MAC"),
        (replace(GOOD, up=False), "is down"),
        (replace(GOOD, addresses=("10.1.0.6/24",)), "lacks address 10.1.0.5/24"),
        (replace(GOOD, gateway=None), "the pod has no default route through eth0, want one via 10.1.0.1"),
        (replace(GOOD, gateway="10.1.0.9"), "default route through eth0 is via 10.1.0.9, want 10.1.0.1"),
        (replace(GOOD, mtu=1500), "MTU 1500, above the network's 1450"),
    ],
)
def test_changes_that_break_it_fail(view: PodView | None, complaint: str) -> None:
    assert complaint in (pod_problem(view, DOC, "eth0", owns_default_route=True) or "")


def test_a_second_interface_needs_its_source_route_not_the_default_route() -> None:
    second = replace(GOOD, gateway=None, source_gateway="10.1.0.1")
    assert pod_problem(second, DOC, "net1", owns_default_route=False) is None
    problem = pod_problem(replace(second, source_gateway=None), DOC, "net1", owns_default_route=False) or ""
    assert "net1 lacks its source route" in problem and "from 10.1.0.5" in problem
