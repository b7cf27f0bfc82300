"""What the agent does for each CNI verb, and how it recovers after a crash.

ADD, step by step, each step undone if a later one fails: ask the controller for an endpoint (IP, MAC,
port name and number) while the veth pair is created with the pod end born inside the pod's namespace
(its names come from the endpoint id alone); then attach the host end to br-int with `external_ids` naming
the endpoint, already waiting until the controller says the port is on the switch and the endpoint's flows
are installed, while the pod end gets its MAC, MTU, address and routes; then send a gratuitous ARP from the
pod. Only then does the plugin hear back, so a pod can talk as soon as its ADD returns. The steps run
alongside the ADD's own thread take threads of a small pool the service owns (ADD_WORKERS).

The endpoint id is derived from (container id, interface name), so DEL, CHECK and GC find everything again
from the runtime's arguments alone, with no state file. OVSDB (ports with `external_ids`) and the
controller (endpoints on this node) are the state; `recover` reconciles them after a restart: an
endpoint without a port, a port without an endpoint, or a host veth without a port is what a crash
mid-ADD or mid-DEL leaves, and is removed.

The agent removes only what it made: OVS ports whose `external_ids` say `tenet-owner=agent` and name the
endpoint, and host veths of its own naming (`host_name`, derived from the endpoint id, which it also asks
the controller to use as the port name), never one that is an OVS port it does not own. A port name taken
from the API is never deleted.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from agent import readiness
from agent.netlink import Created, HostLinkExists, InterfaceExists, Netlink, NetlinkError, NetnsMissing, PodInterface
from agent.ovsdb import Ovsdb, OvsdbError
from cni import protocol
from cni.config import ifname_problem
from cni.protocol import AgentError
from controller.client import Client, ClientError, path

log = logging.getLogger(__name__)

# external_ids on a pod's OVS interface
EXT_ENDPOINT = "tenet-endpoint"
EXT_CONTAINER = "tenet-container"
EXT_IFNAME = "tenet-ifname"
EXT_NETNS = "tenet-netns"
EXT_NETWORK = "tenet-network"
EXT_POD = "tenet-pod"
EXT_CNI_NETWORK = "tenet-cni-network"  # the CNI config's name: GC of one config leaves the others' pods
EXT_DEFAULT_ROUTE = "tenet-default-route"  # "true" if the pod's default route is this interface's (CHECK)
EXT_OWNER, OWNER = "tenet-owner", "agent"  # on every port the agent made: it removes no other
HOST_LINK_PREFIX = "tn"  # the agent names pod ports tn + 10 hex digits of the endpoint id's hash


def endpoint_id(container_id: str, ifname: str) -> str:
    """The endpoint of one container interface: stable, so every verb finds it from its arguments."""
    return "cni-" + hashlib.sha256(f"{container_id}/{ifname}".encode()).hexdigest()[:20]


def host_name(eid: str) -> str:
    """The host end's (and OVS port's) name of an endpoint the agent plumbs: tn + 10 hex digits, <= 15."""
    return HOST_LINK_PREFIX + hashlib.sha256(eid.encode()).hexdigest()[:10]


@dataclass(frozen=True)
class AgentSettings:
    node: str
    bridge: str = "br-int"
    datapath_type: str = "netdev"
    ready_timeout: float = 10.0  # how long ADD waits for the controller to install the flows


ADD_WORKERS = 16  # threads for the steps ADDs run alongside their own (veth pair, pod end, readiness wait)
READY_SLICE = 1.0  # s: the longest single readiness wait, between checks that OVS could open the port


class KeyedLocks:
    """One lock per key, dropped when nobody holds or waits for it: calls for one container are serialized."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, int]] = {}

    @contextlib.contextmanager
    def hold(self, key: str) -> Iterator[None]:
        with self._guard:
            lock, users = self._locks.get(key, (threading.Lock(), 0))
            self._locks[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._guard:
                lock, users = self._locks[key]
                if users == 1:
                    del self._locks[key]
                else:
                    self._locks[key] = (lock, users - 1)


class AgentService:
    def __init__(self, settings: AgentSettings, client: Client, ovsdb: Ovsdb, netlink: Netlink) -> None:
        self.settings = settings
        self.client = client
        self.ovsdb = ovsdb
        self.netlink = netlink
        self.locks = KeyedLocks()
        self._adding: set[str] = set()  # endpoints an ADD is building: GC and recovery keep off them
        self._adding_lock = threading.Lock()
        # An ADD's steps that need not wait for each other run here, the ADD's own thread doing the rest.
        self._pool = ThreadPoolExecutor(max_workers=ADD_WORKERS, thread_name_prefix="add-step")
        # The MTU the last endpoint of each network got (key: `_mtu_key`), and of any network (key ""): a pair
        # is made with it before the controller answers, so that its host end, by then an OVS port, needs no
        # MTU change (`Netlink._add_veth`: each costs ovs-vswitchd a reconfiguration of every port).
        self._mtus: dict[str, int] = {}

    def close(self) -> None:
        """Wait for the steps under way, then stop the threads they run on."""
        self._pool.shutdown(wait=True)

    # --- the verbs -------------------------------------------------------------------------------

    @property
    def _ingress_chains(self) -> bool:
        """Host ends have an nftables ingress chain (the userspace datapath's, `PodInterface.host_ingress_drop`)."""
        return self.settings.datapath_type == "netdev"

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        verb = request.get("verb")
        if verb == "STATUS":
            return self.status(request)
        if verb == "GC":
            return self.gc(str(request.get("cni_network") or ""), request.get("valid_attachments") or [])
        if verb not in ("ADD", "DEL", "CHECK"):
            raise AgentError(
                protocol.INVALID_ENVIRONMENT, f"CNI_COMMAND: unknown verb {verb!r}", f"want one of {protocol.VERBS}"
            )
        container_id, ifname = _text(request, "container_id", "CNI_CONTAINERID"), _text(request, "ifname", "CNI_IFNAME")
        problem = ifname_problem(ifname)
        if problem:
            raise AgentError(
                protocol.INVALID_ENVIRONMENT, f"CNI_IFNAME is not a valid Linux interface name: {problem}", repr(ifname)
            )
        with self.locks.hold(container_id):
            if verb == "ADD":
                return self.add(request, container_id, ifname)
            if verb == "DEL":
                return self.delete(container_id, ifname)
            return self.check(request, container_id, ifname)

    def add(self, request: dict[str, Any], container_id: str, ifname: str) -> dict[str, Any]:
        netns = _text(request, "netns", "CNI_NETNS")
        network = _network(request)
        eid = endpoint_id(container_id, ifname)
        with self._adding_lock:
            self._adding.add(eid)
        steps = _Steps()
        try:
            # The veth pair needs only names, not the controller's answer: it is made meanwhile.
            pair = self._pool.submit(self._make_pair, eid, netns, ifname, self._mtu_guess(network))
            retried = []

            def before_retry() -> None:  # the last attempt's leftovers go first, under the pair's name too
                retried.append(self._drop_pair(pair, eid))

            try:
                doc = self._create_endpoint(
                    eid, network, request.get("pod"), request.get("ip"), before_retry=before_retry
                )
            except BaseException:
                if not retried:
                    self._drop_pair(pair, eid)
                raise
            steps.mark("endpoint")
            self._mtus[_mtu_key(network)] = self._mtus[""] = doc["mtu"]
            try:
                defaults = self._make_pair(eid, netns, ifname, doc["mtu"]) if retried else pair.result()
                steps.mark("veth")
                created = self._plumb(doc, request, container_id, ifname, netns, defaults, steps)
            except BaseException:
                self._forget_endpoint(eid)
                raise
        finally:
            with self._adding_lock:
                self._adding.discard(eid)
        log.info("ADD %s/%s steps: %s", container_id[:12], ifname, steps)
        interface = {"name": ifname, "mac": doc["mac"], "sandbox": netns, "mtu": doc["mtu"]}
        return {
            "ok": True,
            "endpoint": eid,
            "interface": interface,
            "host_interface": {"name": doc["port_name"], "mac": created.host_mac, "mtu": doc["mtu"]},
            "ip": f"{doc['ip']}/{doc['prefix_len']}",
            "gateway": doc["gateway"],
            "default_route": created.default_route,
        }

    def _create_endpoint(
        self,
        eid: str,
        target: str | dict[str, str],
        pod: object = None,
        ip: object = None,
        before_retry: Callable[[], object] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"id": eid, "node": self.settings.node, "port_name": host_name(eid)}
        if ip:  # the address the runtime asked for (CNI `ips` capability or CNI_ARGS IP=)
            body["ip"] = ip
        if isinstance(target, dict):  # a pod: the controller picks its network (README "Kubernetes")
            body["k8s"], network = target, f"the network of pod {target['namespace']}/{target['pod']}"
        else:
            body["network"], network = target, target
            if isinstance(pod, dict) and pod.get("namespace") and pod.get("name"):  # its namespace, if the model has it
                body["k8s"] = {"namespace": str(pod["namespace"]), "pod": str(pod["name"])}
        try:
            return self.client.post("/v1/endpoints", body)
        except ClientError as error:
            if error.status != 409 or error.field != "endpoint.id":
                raise _controller_error(error, f"creating the endpoint on {network}") from None
        # A retried ADD (the runtime gave up on the last one, or this agent died in it): start from nothing.
        if before_retry is not None:
            before_retry()
        left = self._delete_endpoint(eid)
        log.info("ADD again for endpoint %s: removed what the last attempt left (%s)", eid, left)
        try:
            return self.client.post("/v1/endpoints", body)
        except ClientError as error:
            raise _controller_error(error, f"creating the endpoint on {network}") from None

    def _mtu_guess(self, network: str | dict[str, str]) -> int | None:
        """The MTU the pair of a new endpoint on `network` is made with: its network's last, else any's, else
        None (the kernel's; `_finish` sets the network's)."""
        return self._mtus.get(_mtu_key(network)) or self._mtus.get("")

    def _make_pair(self, eid: str, netns: str, ifname: str, mtu: int | None = None) -> frozenset[int]:
        """The veth pair of endpoint `eid` (`Netlink.make_pair`, with MTU `mtu` if not None): the IP versions of
        the pod's default routes."""
        port = host_name(eid)
        chains = self._ingress_chains
        try:
            try:
                return self.netlink.make_pair(netns, ifname, port, host_ingress_drop=chains, mtu=mtu)
            except HostLinkExists:  # left by an attempt that died before it could clean up: ours to remove
                if not self._remove_leftover(eid):
                    raise AgentError(
                        protocol.GENERIC_FAILURE, f"{port} exists and is an OVS port Tenet did not make"
                    ) from None
                log.info("port %s exists from an earlier attempt: removed it", port)
                return self.netlink.make_pair(netns, ifname, port, host_ingress_drop=chains, mtu=mtu)
        except NetnsMissing as error:
            raise AgentError(
                protocol.INVALID_ENVIRONMENT, f"CNI_NETNS {netns!r} is not a network namespace", str(error)
            ) from None
        except InterfaceExists as error:
            raise AgentError(
                protocol.INVALID_ENVIRONMENT, f"CNI_IFNAME {ifname!r} already exists in the pod", str(error)
            ) from None
        except NetlinkError as error:
            raise AgentError(protocol.IO_FAILURE, "could not create the pod's interface", str(error)) from None

    def _drop_pair(self, pair: Future[frozenset[int]], eid: str) -> bool:
        """Once `pair` (a `_make_pair` under way) is done, delete the veth it made; whether it made one. A
        failure to delete is logged, not raised: the caller is failing already (recovery removes the link)."""
        if pair.exception() is not None:
            return False
        try:
            self.netlink.delete(host_name(eid), ingress_chain=self._ingress_chains)
        except NetlinkError as error:
            log.warning("removing the veth of endpoint %s: %s", eid, error)
        return True

    def _plumb(
        self,
        doc: dict[str, Any],
        request: dict[str, Any],
        container_id: str,
        ifname: str,
        netns: str,
        defaults: frozenset[int],
        steps: _Steps | None = None,
    ) -> Created:
        """Finish the pod's end of the pair `_make_pair` made (addresses, routes) while its host end becomes an
        OVS port and the controller installs the endpoint's flows; undo both if a step fails. `defaults`: the
        IP versions of the pod's default routes before this interface."""
        steps = steps or _Steps()
        port = host_name(doc["id"])
        try:
            if doc["port_name"] != port:
                raise AgentError(
                    protocol.GENERIC_FAILURE, f"the controller named the port {doc['port_name']!r}, not {port!r}"
                )
            pod = PodInterface(
                netns=netns,
                ifname=ifname,
                host_name=port,
                mac=doc["mac"],
                address=f"{doc['ip']}/{doc['prefix_len']}",
                gateway=doc["gateway"],
                mtu=doc["mtu"],
                tx_checksum_off=self.settings.datapath_type == "netdev",
                host_ingress_drop=self.settings.datapath_type == "netdev",
            )
            default_route = _version(doc["gateway"]) not in defaults
            finishing = self._pool.submit(self._finish, pod, default_route)
            try:
                pod_name = request.get("pod") or {}
                external_ids = {
                    EXT_OWNER: OWNER,
                    EXT_ENDPOINT: doc["id"],
                    EXT_CONTAINER: container_id,
                    EXT_IFNAME: ifname,
                    EXT_NETNS: netns,
                    EXT_NETWORK: doc["network"],
                    EXT_CNI_NETWORK: str(request.get("cni_network") or ""),
                    EXT_DEFAULT_ROUTE: "true" if default_route else "false",
                }
                if pod_name.get("name"):
                    external_ids[EXT_POD] = f"{pod_name.get('namespace', '')}/{pod_name['name']}"
                # The readiness wait is under way while the port is added, and ovs-vswitchd applies the port
                # while the controller is asked: the wait ends once the switch has the port and the flows, and
                # ovs-vswitchd has usually finished applying it by then. A wait left behind by a failed step
                # ends by itself, at the latest when the endpoint is gone (its next check finds none).
                readiness = self._pool.submit(self._wait_ready, doc)
                applied = self.ovsdb.add_port(
                    self.settings.bridge, port, ofport=doc["ofport"], external_ids=external_ids, wait=False
                )
                steps.mark("port")
                readiness.result()
                try:
                    self.ovsdb.wait_applied(applied)
                except OvsdbError as error:
                    raise AgentError(protocol.IO_FAILURE, f"could not add port {port}", str(error)) from None
                steps.mark("ready")
            except BaseException:
                futures.wait([finishing])  # the pod's end is not removed under a step still setting it up
                raise
            created = finishing.result()
            steps.mark("pod")
        except BaseException:
            self._unplumb(port, doc["id"])
            self._remove_leftover(doc["id"])  # the veth made above, if OVS never took it
            raise
        try:  # the flows are in: peers holding an older MAC for this IP learn the new one now, not in seconds
            self.netlink.announce(netns, ifname, doc["mac"], pod.address)
        except NetlinkError as error:
            log.warning("gratuitous ARP from %s in %s: %s", ifname, netns, error)
        steps.mark("announce")
        return created

    def _finish(self, pod: PodInterface, default_route: bool) -> Created:
        """The pod's end of its pair configured (`Netlink.finish`)."""
        try:
            return self.netlink.finish(pod, default_route=default_route)
        except NetnsMissing as error:
            raise AgentError(
                protocol.INVALID_ENVIRONMENT, f"CNI_NETNS {pod.netns!r} is not a network namespace", str(error)
            ) from None
        except NetlinkError as error:
            raise AgentError(protocol.IO_FAILURE, "could not configure the pod's interface", str(error)) from None

    def _wait_ready(self, doc: dict[str, Any]) -> None:
        """Until the controller says the port is on the switch and the endpoint's flows are installed, in
        waits of at most READY_SLICE s: between them, a port OVS could not open fails the ADD at once."""
        deadline = time.monotonic() + self.settings.ready_timeout
        while True:
            wait = min(READY_SLICE, max(0.0, deadline - time.monotonic()))
            try:
                state = self.client.get(path("v1", "endpoints", doc["id"], "ready"), wait=f"{wait:.3f}")
            except ClientError as error:
                raise _controller_error(error, "waiting for the endpoint's flows") from None
            if state.get("ready") or time.monotonic() >= deadline:
                break
            try:
                problem = self.ovsdb.failure(doc["port_name"])
            except OvsdbError as error:
                raise AgentError(protocol.IO_FAILURE, "cannot read OVSDB", str(error)) from None
            if problem:
                raise AgentError(
                    protocol.IO_FAILURE,
                    f"OVS could not add port {doc['port_name']} to {self.settings.bridge}: {problem}",
                )
        if not state.get("ready"):
            raise AgentError(
                protocol.TRY_AGAIN_LATER,
                f"the endpoint's flows were not installed within {self.settings.ready_timeout:g} s",
                str(state.get("reason")),
            )

    def delete(self, container_id: str, ifname: str) -> dict[str, Any]:
        """Remove the port, the veth pair and the endpoint; whatever is already gone is fine."""
        self._delete_endpoint(endpoint_id(container_id, ifname))
        return {"ok": True}

    def _delete_endpoint(self, eid: str) -> str:
        """Remove an endpoint's port, veth and the endpoint itself; say what there was."""
        removed, unplumbed = set(), set()
        for port, ids in self._ports().items():
            if ids.get(EXT_ENDPOINT) == eid:
                if self._unplumb(port, eid):
                    unplumbed.add(port)
                removed.add(port)
                try:  # the rule of its source route, if it had one (agent/netlink.py)
                    self.netlink.forget_source_routes(ids.get(EXT_NETNS) or "")
                except NetlinkError as error:
                    log.warning("removing the source route rule of %s: %s", port, error)
        try:
            doc = self.client.get(path("v1", "endpoints", eid))
        except ClientError as error:
            if error.status == 404:
                return f"ports {sorted(removed)}" if removed else "nothing"
            raise _controller_error(error, "looking up the endpoint") from None
        # A veth not deleted with its port: an ADD that died before its port was in OVS, or a port that went
        # from OVSDB by another hand. Not asked when it is gone: ~20 ms even then (the ingress chain's batch).
        if host_name(eid) not in unplumbed:
            self._remove_leftover(eid)
        self._forget_endpoint(eid)
        return f"endpoint {eid} ({doc['ip']})"

    def check(self, request: dict[str, Any], container_id: str, ifname: str) -> dict[str, Any]:
        """CNI CHECK: fail on what breaks the attachment, allow what later chained plugins may change
        (agent.readiness): the OVS port, the pod's interface, and the endpoint's flows."""
        netns = _text(request, "netns", "CNI_NETNS")
        eid = endpoint_id(container_id, ifname)
        try:
            doc = self.client.get(path("v1", "endpoints", eid))
        except ClientError as error:
            if error.status == 404:
                raise AgentError(protocol.GENERIC_FAILURE, f"no endpoint for {ifname} of this container") from None
            raise _controller_error(error, "looking up the endpoint") from None
        port = host_name(eid)
        port_ids = self._ports().get(port, {})
        if port_ids.get(EXT_ENDPOINT) != eid:
            raise AgentError(protocol.GENERIC_FAILURE, f"the OVS port {port} is missing from {self.settings.bridge}")
        owns_default_route = port_ids.get(EXT_DEFAULT_ROUTE) != "false"  # ports made before the key: true
        view = self.netlink.inspect(netns, ifname)
        problem = readiness.pod_problem(view, doc, ifname, owns_default_route=owns_default_route)
        if problem:
            raise AgentError(protocol.GENERIC_FAILURE, problem)
        try:
            state = self.client.get(path("v1", "endpoints", eid, "ready"), wait="0")
        except ClientError as error:
            raise _controller_error(error, "asking for the endpoint's flows") from None
        if not state.get("ready"):
            raise AgentError(
                protocol.GENERIC_FAILURE, "the endpoint's flows are not installed", str(state.get("reason"))
            )
        return {"ok": True}

    def status(self, request: dict[str, Any]) -> dict[str, Any]:
        """CNI STATUS (agent.readiness.status)."""
        return readiness.status(self.client, self.settings.node, request)

    def gc(self, cni_network: str, valid: list[Any]) -> dict[str, Any]:
        """Release every attachment made through the CNI config `cni_network` that no valid attachment names,
        and every endpoint of this node an ADD never finished (it has no port)."""
        keep = set()
        for attachment in valid:
            if not isinstance(attachment, dict) or not {"containerID", "ifname"} <= attachment.keys():
                raise AgentError(
                    protocol.INVALID_CONFIG, "cni.dev/valid-attachments: want objects with containerID and ifname"
                )
            keep.add(endpoint_id(str(attachment["containerID"]), str(attachment["ifname"])))
        try:
            docs = self.client.get("/v1/endpoints", node=self.settings.node)
        except ClientError as error:
            raise _controller_error(error, "listing endpoints") from None
        ports = self._ports()
        for port, ids in ports.items():
            eid = ids.get(EXT_ENDPOINT)
            if eid is None or ids.get(EXT_CNI_NETWORK, "") != cni_network:
                continue
            if eid not in keep and not self._is_adding(eid):
                log.info("gc: releasing %s (%s)", eid, port)
                self._unplumb(port, eid)
                self._forget_endpoint(eid)
        attached = {ids.get(EXT_ENDPOINT) for ids in ports.values()}
        for doc in docs:
            eid = doc["id"]
            if eid.startswith("cni-") and eid not in attached and eid not in keep and not self._is_adding(eid):
                log.info("gc: endpoint %s (%s) has no port: releasing it", eid, doc["ip"])
                self._remove_leftover(eid)
                self._forget_endpoint(eid)
        return {"ok": True}

    # --- after a restart -------------------------------------------------------------------------

    def recover(self) -> dict[str, int]:
        """Make OVSDB, the host's links and the controller agree; count what was removed."""
        removed = {"ports": 0, "endpoints": 0, "links": 0}
        docs = {d["id"]: d for d in self.client.get("/v1/endpoints", node=self.settings.node)}
        ports = self._ports()
        attached = {ids.get(EXT_ENDPOINT) for ids in ports.values()}
        for port, ids in ports.items():
            eid = ids.get(EXT_ENDPOINT)
            if eid is not None and eid not in docs:
                log.info("recover: port %s has no endpoint %s: removing it", port, eid)
                self._unplumb(port, eid)
                removed["ports"] += 1
        for eid, doc in docs.items():
            if eid.startswith("cni-") and eid not in attached:
                log.info("recover: endpoint %s (%s) never got its port: releasing it", eid, doc["ip"])
                self._remove_leftover(eid)
                self._forget_endpoint(eid)
                removed["endpoints"] += 1
        in_use = self._port_names()  # every port of the bridge, the agent's or not
        for link in self.netlink.host_links(HOST_LINK_PREFIX):
            if link not in in_use and _is_pod_port_name(link):
                log.info("recover: host link %s belongs to no port: removing it", link)
                self.netlink.delete(link, ingress_chain=self._ingress_chains)
                removed["links"] += 1
        return removed

    # --- small steps -----------------------------------------------------------------------------

    def _ports(self) -> dict[str, dict[str, str]]:
        """The bridge's ports the agent made (marked `tenet-owner=agent`, naming an endpoint) -> external_ids."""
        return {
            name: ids for name, ids in self._all_ports().items() if ids.get(EXT_OWNER) == OWNER and EXT_ENDPOINT in ids
        }

    def _all_ports(self) -> dict[str, dict[str, str]]:
        try:
            return self.ovsdb.ports(self.settings.bridge)
        except OvsdbError as error:
            raise AgentError(protocol.IO_FAILURE, "cannot read OVSDB", str(error)) from None

    def _port_names(self) -> set[str]:
        return set(self._all_ports())

    def _unplumb(self, port: str, eid: str) -> bool:
        """Remove the OVS port the agent made for endpoint `eid`, and its veth; a port of that name that is
        not the agent's for `eid` stays, with its host link. True if this removed the port and the veth;
        False if the port was not there to remove (then its veth, if any, was not touched)."""
        owner = {EXT_OWNER: OWNER, EXT_ENDPOINT: eid}
        try:
            if self.ovsdb.del_port(self.settings.bridge, port, owned_by=owner):
                self.netlink.delete(port, ingress_chain=self._ingress_chains)
                return True
        except (OvsdbError, NetlinkError) as error:
            raise AgentError(protocol.IO_FAILURE, f"could not remove port {port}", str(error)) from None
        return False

    def _remove_leftover(self, eid: str) -> bool:
        """Remove the veth an ADD of `eid` made before OVS took it; never a host link that is an OVS port
        (someone else's under that name). Returns False if such a port is in the way."""
        port = host_name(eid)
        if port in self._port_names():
            if self._ports().get(port, {}).get(EXT_ENDPOINT) != eid:
                return False
            self._unplumb(port, eid)
            return True
        try:
            self.netlink.delete(port, ingress_chain=self._ingress_chains)
        except NetlinkError as error:
            raise AgentError(protocol.IO_FAILURE, f"could not remove link {port}", str(error)) from None
        return True

    def _forget_endpoint(self, eid: str) -> None:
        try:
            self.client.delete(path("v1", "endpoints", eid))
        except ClientError as error:
            if error.status != 404:
                raise _controller_error(error, "releasing the endpoint") from None

    def _is_adding(self, eid: str | None) -> bool:
        with self._adding_lock:
            return eid in self._adding


class _Steps:
    """How long each step of one request took, in ms, for the log: "endpoint 4, veth 3, port 12, ready 9 ms"."""

    def __init__(self) -> None:
        self._last = time.monotonic()
        self._done: list[tuple[str, float]] = []

    def mark(self, step: str) -> None:
        now = time.monotonic()
        self._done.append((step, (now - self._last) * 1000))
        self._last = now

    def __str__(self) -> str:
        return ", ".join(f"{step} {ms:.0f}" for step, ms in self._done) + " ms"


def _version(address: str) -> int:
    """4 or 6; 0 for what is no IP address (`Netlink.finish` names the field)."""
    try:
        return ipaddress.ip_address(address).version
    except ValueError:
        return 0


def _text(request: dict[str, Any], key: str, variable: str) -> str:
    value = request.get(key)
    if not isinstance(value, str) or not value:
        raise AgentError(protocol.INVALID_ENVIRONMENT, f"{variable} is missing or empty")
    return value


def _network(request: dict[str, Any]) -> str | dict[str, str]:
    """TENANT/NAME from the CNI config, or (no tenant and network, a pod in CNI_ARGS) the pod as
    {"namespace": NS, "pod": NAME}, whose network the controller picks by its Kubernetes mapping."""
    tenant, network, pod = request.get("tenant"), request.get("network"), request.get("pod")
    if not tenant and not network and isinstance(pod, dict) and pod.get("namespace") and pod.get("name"):
        return {"namespace": str(pod["namespace"]), "pod": str(pod["name"])}
    if not isinstance(tenant, str) or not tenant:
        raise AgentError(protocol.INVALID_CONFIG, "tenant: want the tenant's name")
    if not isinstance(network, str) or not network:
        raise AgentError(protocol.INVALID_CONFIG, "network: want the network's name")
    return f"{tenant}/{network}"


def _mtu_key(network: str | dict[str, str]) -> str:
    """TENANT/NAME from the CNI config, or the namespace of a pod whose network the controller picks."""
    return network if isinstance(network, str) else "k8s:" + network["namespace"]


def _is_pod_port_name(name: str) -> bool:
    digits = name[len(HOST_LINK_PREFIX) :]
    return name.startswith(HOST_LINK_PREFIX) and len(digits) == 10 and all(c in "0123456789abcdef" for c in digits)


def _controller_error(error: ClientError, doing: str) -> AgentError:
    if error.status is None:
        return AgentError(protocol.TRY_AGAIN_LATER, f"the Tenet controller is not reachable ({doing})", str(error))
    if error.status == 404 or (error.status == 400 and error.field in ("endpoint.network", "endpoint.k8s")):
        return AgentError(protocol.INVALID_CONFIG, f"{doing}: {error}", error.field or "")
    if error.status == 503:
        return AgentError(protocol.TRY_AGAIN_LATER, f"{doing}: {error}")
    return AgentError(protocol.GENERIC_FAILURE, f"{doing}: {error}", error.field or "")
