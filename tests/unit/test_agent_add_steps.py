"""ADD's overlapping steps (agent/service.py): whichever of them fails, and in whatever order they finish,
the ADD fails with that step's error and leaves no veth, OVS port or endpoint behind.

The switch, the kernel and the controller are stand-ins that keep what they hold in sets, so each
interleaving can be forced (tests/functional/test_cni.py runs ADD against the real ones).
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from agent.netlink import Created, NetlinkError, PodInterface
from agent.service import AgentService, AgentSettings, endpoint_id, host_name
from cni import protocol
from cni.protocol import AgentError
from controller.client import ClientError

CONTAINER, IFNAME, NETNS = "c0ffee", "eth0", "/var/run/netns/pod0"
EID = endpoint_id(CONTAINER, IFNAME)
WAIT = 5.0  # s: the longest a stand-in waits for the step it is ordered after


class Controller:
    def __init__(self) -> None:
        self.endpoints: set[str] = set()
        self.refuse_post: ClientError | None = None
        self.post_after: threading.Event | None = None  # answer the POST only once this is set
        self.ready = True
        self.answered = threading.Event()  # the POST has been answered or refused

    def post(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        if self.post_after is not None:
            assert self.post_after.wait(WAIT)
        if self.refuse_post is not None:
            threading.Timer(0.1, self.answered.set).start()  # just after the ADD's thread heard it
            raise self.refuse_post
        self.endpoints.add(body["id"])
        doc = {"id": body["id"], "port_name": body["port_name"], "network": "blue/web", "ofport": 1000}
        return {
            **doc,
            "mac": "02:00:0a:01:00:05",
            "ip": "10.1.0.5",
            "prefix_len": 24,
            "gateway": "10.1.0.1",
            "mtu": 1450,
        }

    def get(self, url: str, **query: str) -> Any:
        if url.endswith("/ready"):
            return {"ready": self.ready, "reason": "not yet"}
        if EID in self.endpoints:
            return {"id": EID, "ip": "10.1.0.5"}
        raise ClientError("no such endpoint", status=404)

    def delete(self, url: str) -> None:
        self.endpoints.discard(EID)


class Switch:
    def __init__(self) -> None:
        self.ports: dict[str, dict[str, str]] = {}
        self.removed_meanwhile = False

    def add_port(self, bridge: str, name: str, *, ofport: int, external_ids: dict[str, str], wait: bool) -> int:
        self.ports[name] = external_ids
        return 1

    def wait_applied(self, next_cfg: int | None) -> None:
        pass

    def del_port(self, bridge: str, name: str, *, owned_by: dict[str, str] | None = None) -> bool:
        if self.removed_meanwhile:  # gone between the agent's read and its transaction: nothing to remove
            self.ports.pop(name, None)
            return False
        return self.ports.pop(name, None) is not None

    def ports_of(self) -> dict[str, dict[str, str]]:
        return dict(self.ports)

    def failure(self, name: str) -> str | None:
        return None


class Kernel:
    def __init__(self) -> None:
        self.links: set[str] = set()
        self.pair_made = threading.Event()
        self.fail_pair: NetlinkError | None = None
        self.fail_finish: NetlinkError | None = None
        self.finish_started = threading.Event()
        self.finish_after: threading.Event | None = None  # finish only once this is set
        self.finished = threading.Event()
        self.pair_after: threading.Event | None = None  # make the pair only once this is set
        self.pair_mtus: list[int | None] = []  # the MTU each pair was made with
        self.deleted: list[str] = []  # the host ends asked to be deleted (each ~20 ms on a real kernel)

    def make_pair(
        self, netns: str, ifname: str, host: str, *, host_ingress_drop: bool = False, mtu: int | None = None
    ) -> frozenset[int]:
        self.pair_mtus.append(mtu)
        if self.pair_after is not None:
            assert self.pair_after.wait(WAIT)
        if self.fail_pair is not None:
            raise self.fail_pair
        self.links.add(host)
        self.pair_made.set()
        return frozenset()

    def finish(self, pod: PodInterface, *, default_route: bool | None = None) -> Created:
        self.finish_started.set()
        try:
            if self.finish_after is not None:
                assert self.finish_after.wait(WAIT)
            assert pod.host_name in self.links, "the pair went while its pod end was being set up"
            if self.fail_finish is not None:
                raise self.fail_finish
            return Created(host_mac="02:00:00:00:00:01", default_route=bool(default_route))
        finally:
            self.finished.set()

    def delete(self, host: str, *, ingress_chain: bool = True) -> bool:
        self.deleted.append(host)
        found = host in self.links
        self.links.discard(host)
        return found

    def announce(self, netns: str, ifname: str, mac: str, address: str) -> None:
        pass

    def forget_source_routes(self, netns: str) -> int:
        return 0


@pytest.fixture
def parts() -> Any:
    controller, switch, kernel = Controller(), Switch(), Kernel()
    ovsdb: Any = type("Ovsdb", (), {})()
    for name in ("add_port", "wait_applied", "del_port", "failure"):
        setattr(ovsdb, name, getattr(switch, name))
    ovsdb.ports = lambda bridge: switch.ports_of()
    service = AgentService(AgentSettings(node="n1", ready_timeout=0.2), controller, ovsdb, kernel)  # type: ignore[arg-type]
    yield service, controller, switch, kernel
    service.close()


def add(service: AgentService) -> dict[str, Any]:
    request = {"verb": "ADD", "container_id": CONTAINER, "ifname": IFNAME, "netns": NETNS}
    return service.handle({**request, "tenant": "blue", "network": "web"})


def nothing_left(controller: Controller, switch: Switch, kernel: Kernel) -> bool:
    return not controller.endpoints and not switch.ports and not kernel.links


def test_add_makes_everything_and_returns_the_pods_interface(parts: Any) -> None:
    service, controller, switch, kernel = parts
    result = add(service)
    assert result["ip"] == "10.1.0.5/24" and result["default_route"] is True
    assert controller.endpoints == {EID} and set(switch.ports) == {host_name(EID)} == kernel.links
    assert switch.ports[host_name(EID)]["tenet-default-route"] == "true"


def test_post_refused_after_the_pair_was_made_removes_the_pair(parts: Any) -> None:
    service, controller, switch, kernel = parts
    controller.post_after = kernel.pair_made
    controller.refuse_post = ClientError("network blue/web: no such network", status=404)
    with pytest.raises(AgentError) as refused:
        add(service)
    assert refused.value.code == protocol.INVALID_CONFIG and "no such network" in refused.value.msg
    assert nothing_left(controller, switch, kernel)


def test_post_refused_before_the_pair_was_made_removes_the_pair_once_made(parts: Any) -> None:
    service, controller, switch, kernel = parts
    kernel.pair_after = controller.answered
    controller.refuse_post = ClientError("endpoint.network: no such network", status=400, field="endpoint.network")
    with pytest.raises(AgentError) as refused:
        add(service)
    assert refused.value.code == protocol.INVALID_CONFIG
    assert kernel.pair_made.is_set()
    assert nothing_left(controller, switch, kernel)


def test_unreachable_controller_says_try_again_and_removes_the_pair(parts: Any) -> None:
    service, controller, switch, kernel = parts
    controller.post_after = kernel.pair_made
    controller.refuse_post = ClientError("connection refused")
    with pytest.raises(AgentError) as refused:
        add(service)
    assert refused.value.code == protocol.TRY_AGAIN_LATER
    assert nothing_left(controller, switch, kernel)


def test_a_pair_that_cannot_be_made_releases_the_endpoint(parts: Any) -> None:
    service, controller, switch, kernel = parts
    kernel.fail_pair = NetlinkError("creating veth: Operation not permitted")
    with pytest.raises(AgentError) as failed:
        add(service)
    assert failed.value.code == protocol.IO_FAILURE and "Operation not permitted" in failed.value.details
    assert nothing_left(controller, switch, kernel)


def test_a_pod_end_that_cannot_be_set_up_removes_port_pair_and_endpoint(parts: Any) -> None:
    service, controller, switch, kernel = parts
    kernel.fail_finish = NetlinkError("adding 10.1.0.5/24: File exists")
    with pytest.raises(AgentError) as failed:
        add(service)
    assert failed.value.code == protocol.IO_FAILURE and "File exists" in failed.value.details
    assert nothing_left(controller, switch, kernel)


def test_flows_never_ready_waits_for_the_pod_end_then_removes_everything(parts: Any) -> None:
    """The readiness wait gives up while the pod end is still being set up: that step ends before the pair
    is deleted under it (Kernel.finish asserts it), and the ADD reports the readiness timeout."""
    service, controller, switch, kernel = parts
    controller.ready = False
    kernel.finish_after = threading.Event()
    release = threading.Timer(0.5, kernel.finish_after.set)
    release.start()
    try:
        with pytest.raises(AgentError) as failed:
            add(service)
    finally:
        release.cancel()
    assert failed.value.code == protocol.TRY_AGAIN_LATER, failed.value
    assert kernel.finished.is_set()
    assert nothing_left(controller, switch, kernel)


def test_a_pair_is_made_with_the_mtu_its_network_had_last(parts: Any) -> None:
    """Unknown at the first ADD (the kernel's, then the answer's); the network's from then on, and a network
    not seen yet takes the last one seen. `finish` sets the network's MTU all the same."""
    service, _, _, kernel = parts
    add(service)
    request = {"verb": "ADD", "container_id": "other", "ifname": IFNAME, "netns": NETNS}
    service.handle({**request, "tenant": "blue", "network": "web"})
    service.handle({**request, "container_id": "third", "tenant": "blue", "network": "db"})
    assert kernel.pair_mtus == [None, 1450, 1450]


def delete(service: AgentService) -> dict[str, Any]:
    return service.handle({"verb": "DEL", "container_id": CONTAINER, "ifname": IFNAME, "netns": NETNS})


def test_del_removes_the_port_and_its_veth_once(parts: Any) -> None:
    service, controller, switch, kernel = parts
    add(service)
    kernel.deleted.clear()
    assert delete(service) == {"ok": True}
    assert nothing_left(controller, switch, kernel)
    assert kernel.deleted == [host_name(EID)]  # not again as a leftover: that costs its ingress chain's removal


def test_del_of_an_add_that_died_before_its_port_removes_its_veth(parts: Any) -> None:
    service, controller, switch, kernel = parts
    add(service)
    switch.ports.clear()  # as if the agent died between the pair and the OVS port
    kernel.deleted.clear()
    assert delete(service) == {"ok": True}
    assert nothing_left(controller, switch, kernel)
    assert kernel.deleted == [host_name(EID)]


def test_del_of_a_port_gone_before_its_transaction_still_removes_its_veth(parts: Any) -> None:
    """E.g. a batched transaction that ovsdb-server committed while its wait for ovs-vswitchd failed: the step
    is committed again on its own and finds no port."""
    service, controller, switch, kernel = parts
    add(service)
    switch.removed_meanwhile = True
    kernel.deleted.clear()
    assert delete(service) == {"ok": True}
    assert nothing_left(controller, switch, kernel)
    assert kernel.deleted == [host_name(EID)]
