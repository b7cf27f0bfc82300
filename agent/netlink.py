"""The agent's netlink adapter: veth pairs whose pod end is born inside the pod's network namespace.

The agent runs in the node's network namespace (where br-int lives); pods are other namespaces, given by
path (`/var/run/netns/NAME`, `/proc/PID/ns/net`). Each call opens its own rtnetlink sockets and closes
them before it returns, so calls from many threads at once share nothing but the agent's namespace fd.

How a socket gets into a pod's namespace: a socket belongs to the network namespace of the thread that
created it, and namespace membership is per thread on Linux. So the calling thread `setns`es into the pod,
opens its sockets there and goes straight back to the agent's namespace (always, in a `finally`); the
sockets keep working from the agent's namespace. No helper process is forked: pyroute2 0.9's
`IPRoute(netns=...)` forks one per socket, and its asyncio-based `IPRoute` costs ~0.5 ms per request and
keeps per-thread state, so requests are built and parsed with pyroute2's message classes and sent over a
plain rtnetlink socket instead (a request and its ack take ~0.1-0.3 ms).

The veth pair is created from the agent's namespace with the pod end's IFLA_NET_NS_FD set to the pod, so the
pod end appears in the pod with its final name: no temporary name, no move, no rename. That needs only names
(`make_pair`), so an ADD makes the pair while it asks the controller for the pod's MAC, MTU and addresses,
which `finish` sets (the pod end is up by then, without IPv6 and with no address: the pod's kernel sends
nothing on it). The host end is born down and is shut out of the node's own IP stack before it comes up: on
the userspace datapath an nftables ingress chain drops every frame the pod sends before the stack sees it
(agent/nft.py; OVS has read it by then), and no IPv6, no ARP answers and strict reverse-path filtering on it
besides, so the node neither takes nor answers anything a pod sends through it, nor sends anything of its
own there.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import ipaddress
import logging
import os
import queue
import re
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import ExitStack, closing, contextmanager, suppress
from dataclasses import dataclass

from pyroute2.ethtool.ioctl import IoctlEthtool, NoSuchDevice, NotSupportedError
from pyroute2.netlink import (
    NETLINK_EXT_ACK,
    NETLINK_ROUTE,
    NLM_F_ACK,
    NLM_F_ACK_TLVS,
    NLM_F_CAPPED,
    NLM_F_CREATE,
    NLM_F_DUMP,
    NLM_F_EXCL,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
    SOL_NETLINK,
    nlmsg,
)
from pyroute2.netlink.exceptions import NetlinkError as _KernelError
from pyroute2.netlink.rtnl import (
    RTM_DELLINK,
    RTM_DELRULE,
    RTM_GETADDR,
    RTM_GETLINK,
    RTM_GETROUTE,
    RTM_GETRULE,
    RTM_NEWADDR,
    RTM_NEWLINK,
    RTM_NEWROUTE,
    RTM_NEWRULE,
)
from pyroute2.netlink.rtnl.fibmsg import fibmsg
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import IFF_PROMISC, IFF_UP, ifinfmsg
from pyroute2.netlink.rtnl.marshal import MarshalRtnl
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from agent import hostend, nft
from cni.config import ifname_problem

log = logging.getLogger(__name__)
CLONE_NEWNET = 0x40000000
NS_GET_NSTYPE = 0xB703  # ioctl on an nsfs file: which kind of namespace it is
LOOPBACK_INDEX = 1  # `lo` is ifindex 1 in every network namespace
RT_TABLE_MAIN = 254
RT_TABLE_COMPAT = 252  # rtmsg's 8-bit table field for a table above 255 (named in RTA_TABLE)
RT_SCOPE_LINK = 253
FR_ACT_TO_TBL = 1
# An interface that does not own the pod's default route gets routing table SOURCE_TABLE_BASE + its ifindex in
# the pod, and a rule at SOURCE_RULE_PRIORITY (before the main table's 32766) sending its address's traffic there.
SOURCE_TABLE_BASE = 10000
SOURCE_TABLE_END = SOURCE_TABLE_BASE + (1 << 24)
SOURCE_RULE_PRIORITY = 10000
RTPROT_BOOT = 3
RTN_UNICAST = 1
RT_SCOPE_UNIVERSE = 0
IFA_F_NODAD = 0x02
RTEXT_FILTER_SKIP_STATS = 1 << 3
IFNAMSIZ = 16
IPV6_MIN_MTU = 1280  # below it the kernel keeps no IPv6 state (and settings) for a link (RFC 8200 section 5)
RECV_SIZE = 1 << 16  # the kernel fills a dump's datagram up to 32 KiB
NLMSG_HEADER = struct.Struct("=IHHII")  # struct nlmsghdr: length, type, flags, sequence, port id
IFINFOMSG = struct.Struct("=BxHiII")  # struct ifinfomsg: family, type, index, flags, change
NLA_HEADER = struct.Struct("=HH")  # struct nlattr: length, type
ERRNO = struct.Struct("=i")  # struct nlmsgerr's error
NLMSGERR_ATTR_MSG = 1  # linux/netlink.h enum nlmsgerr_attrs
NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED and NLA_F_NET_BYTEORDER
IFLA_ADDRESS = 1

_MAC = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}")
_Interface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_libc = ctypes.CDLL(None, use_errno=True)
_libc.setns.argtypes = (ctypes.c_int, ctypes.c_int)


class NetlinkError(Exception):
    """A netlink operation failed; the message says what and where."""


class InterfaceExists(NetlinkError):
    """The pod already has an interface with that name."""


class NetnsMissing(NetlinkError):
    """The network namespace path does not exist, or is not a network namespace."""


class HostLinkExists(NetlinkError):
    """The agent's namespace already has a link with the host end's name."""


@dataclass(frozen=True)
class PodInterface:
    netns: str  # path of the pod's network namespace
    ifname: str  # name inside the pod, e.g. eth0
    host_name: str  # host end (in the agent's namespace), which becomes the OVS port; <= 15 chars
    mac: str  # "02:00:..:..:..:.."
    address: str  # "10.1.0.5/24"
    gateway: str  # "10.1.0.1"
    mtu: int
    tx_checksum_off: bool  # userspace datapath: TX checksum offload off on the pod end (else TCP fails)
    # Userspace datapath: drop all the pod sends at the host end's netfilter ingress, after OVS's packet socket
    # read it. Never on the kernel datapath: its OVS module takes frames after that hook, so it would see none.
    host_ingress_drop: bool = False


@dataclass(frozen=True)
class Created:
    """What `Netlink.create` made beyond what it was asked: the host end's MAC, and whether the pod's default
    route is this interface's (False when the pod had one already, through an earlier interface)."""

    host_mac: str
    default_route: bool


@dataclass(frozen=True)
class PodView:
    """What is really in the pod, for CNI CHECK."""

    ifname: str
    mac: str
    addresses: tuple[str, ...]  # "10.1.0.5/24", global scope only (no IPv6 link-local)
    gateway: str | None  # the default route's gateway through this interface (IPv4 first)
    mtu: int
    up: bool
    source_gateway: str | None = None  # the default route's gateway in the table a rule from its address picks


class Netlink:
    """Pod interfaces, seen from the namespace of the thread that makes this object (the agent's).

    Safe to call from many threads at once; each call blocks its thread (create: a few ms, delete: ~20 ms).
    Call it from threads in that namespace, as every thread of the agent is: host ends are made and looked up
    in the calling thread's namespace, and a call that enters a pod's namespace always brings the thread back.
    """

    def __init__(self) -> None:
        self._home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        self._closed = False
        self._users = 0
        self._idle = threading.Condition()

    # --- pods --------------------------------------------------------------------------------------

    def create(self, pod: PodInterface) -> Created:
        """The veth pair, configured on both ends (`make_pair`, then `finish`); everything made is removed
        again if a step fails."""
        _check(pod)
        self.make_pair(pod.netns, pod.ifname, pod.host_name, host_ingress_drop=pod.host_ingress_drop, mtu=pod.mtu)
        try:
            return self.finish(pod)
        except BaseException:
            with suppress(NetlinkError):
                self.delete(pod.host_name, ingress_chain=pod.host_ingress_drop)
            raise

    def make_pair(
        self, netns: str, ifname: str, host_name: str, *, host_ingress_drop: bool = False, mtu: int | None = None
    ) -> frozenset[int]:
        """The veth pair before its addresses are known: the pod end `ifname` born down inside `netns` (with
        a MAC of the kernel's, until `finish`), IPv6 turned off on it and set up; the host end `host_name` shut
        out of the node's stack, then up and promiscuous (`_seal_host_end`); both with MTU `mtu` (bytes) if it
        is at least IPV6_MIN_MTU, else the kernel's (`finish` sets the network's either way). Returns the IP
        versions (4, 6) of the default routes the pod has already (`finish`'s `default_route`). Nothing is
        left behind if a step fails. Raises NetnsMissing, InterfaceExists, HostLinkExists, NetlinkError.

        Why the pod end comes up here, before the host end: the pair's carrier then comes on with the host
        end's own change, a moment after its creation, and ovs-vswitchd (which reconfigures every port of its
        bridges for any link change in its namespace, `_add_veth`) handles them in fewer passes than when the
        carrier came later with `finish` (3.0 bridge reconfigurations per ADD instead of 3.9, README
        "Benchmarks"). The pod's kernel sends nothing on it meanwhile (no address, no IPv6: Tenet's networks
        are IPv4, topology/model.py), and a veth drops whatever its pod end sends while the host end is down."""
        _check_name(ifname, "ifname")
        _check_name(host_name, "host_name")
        where = f"{netns}:{ifname}"
        sized = mtu if mtu is not None and mtu >= IPV6_MIN_MTU else None
        with self._session(), _netns_fd(netns) as nsfd, ExitStack() as sockets:
            with self._inside(nsfd, netns):  # sockets opened here belong to the pod's namespace
                inside = sockets.enter_context(_Rtnl())
            host = sockets.enter_context(_Rtnl())
            self._add_veth(host, inside, ifname, host_name, nsfd, where, sized)
            try:
                with self._inside(nsfd, netns):
                    _ipv6_off(ifname, where)
                _call(inside, _up_by_name(ifname), RTM_NEWLINK, 0, f"setting {where} up")
                _seal_host_end(host, host_name, ingress_drop=host_ingress_drop)
                return frozenset(version for version in (4, 6) if _has_default_route(inside, version, netns))
            except BaseException:
                _discard(host, host_name, ingress_drop=host_ingress_drop)
                raise

    def finish(self, pod: PodInterface, *, default_route: bool | None = None) -> Created:
        """Configure the pair `make_pair` made: MTU of both ends, the pod end's MAC (the veth takes it while
        up), address and default route.

        The pod's default route goes through this interface only if the pod has none of the address's family
        yet: a container's first interface owns it, a second one (``net1``, another network or the same) gets
        only the route to its subnet. Each gets source-based routing besides: its own table (SOURCE_TABLE_BASE
        + its ifindex) with its subnet and a default route via its gateway, and `ip rule from ADDRESS lookup
        TABLE`; so what leaves from its address, replies to peers that reached it included, leaves through it,
        not through the default route's interface or another interface's subnet route (where port security
        would drop the foreign source address). `forget_source_routes` removes the rule once it is gone.
        `default_route`: whether it gets the default route, as the caller decided from `make_pair`'s answer
        (None: decided here). Removes nothing if a step fails: the caller deletes the pair. Raises
        NetnsMissing, NetlinkError.
        """
        address, gateway = _check(pod)
        where = f"{pod.netns}:{pod.ifname}"
        with self._session(), _netns_fd(pod.netns) as nsfd, ExitStack() as sockets:
            with self._inside(nsfd, pod.netns):
                inside = sockets.enter_context(_Rtnl())
                ethtool = sockets.enter_context(closing(IoctlEthtool(pod.ifname))) if pod.tx_checksum_off else None
            host = sockets.enter_context(_Rtnl())
            host_index, host_mac = _require_brief(host, pod.host_name, pod.host_name)
            _call(host, _link_message(host_index, mtu=pod.mtu), RTM_NEWLINK, 0, f"setting the MTU of {pod.host_name}")
            index = _require_brief(inside, pod.ifname, where)[0]
            exclusive = NLM_F_CREATE | NLM_F_EXCL
            up = _link_message(index, mtu=pod.mtu, mac=pod.mac.lower(), up=True)  # up already (`make_pair`)
            _call(inside, up, RTM_NEWLINK, 0, f"setting the MAC and MTU of {where}")
            _call(inside, _addr_message(index, address), RTM_NEWADDR, exclusive, f"adding {pod.address} to {where}")
            _call(inside, _up_message(LOOPBACK_INDEX), RTM_NEWLINK, 0, f"setting lo up in {pod.netns}")
            if default_route is None:
                default_route = not _has_default_route(inside, gateway.version, pod.netns)
            if default_route:
                route = _default_route_message(index, gateway)
                _call(inside, route, RTM_NEWROUTE, exclusive, f"adding the default route via {pod.gateway} in {where}")
            _add_source_route(inside, index, address, gateway, where)
            if ethtool is not None:
                _tx_checksum_off(ethtool, where)
        return Created(host_mac=host_mac, default_route=default_route)

    def announce(self, netns: str, ifname: str, mac: str, address: str) -> None:
        """Send one gratuitous ARP from the pod's interface: who has the pod's IP now, so peers that cached an
        older MAC for that IP (a pod back with the same IP and a new MAC) take the new one at once.

        A broadcast ARP reply with sender = target = the pod's IPv4 address and target MAC = sender MAC, the
        form Linux takes as gratuitous whatever its `arp_accept` (RFC 5227 section 3; net/ipv4/arp.c
        arp_is_garp). A request would be answered by the switch's ARP responder and never reach the peers.
        Sent from a packet socket opened inside the pod. IPv6 addresses are left alone. Raises NetlinkError.
        """
        ip = ipaddress.ip_interface(address).ip
        if ip.version != 4:
            return
        where = f"{netns}:{ifname}"
        with self._session(), _netns_fd(netns) as nsfd:
            with self._inside(nsfd, netns):
                sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)  # 0: send only
            try:
                sock.bind((ifname, 0))  # the name is looked up in the socket's namespace, the pod's
                sock.send(hostend.garp_frame(bytes.fromhex(mac.replace(":", "")), ip.packed))
            except OSError as error:
                raise NetlinkError(f"sending a gratuitous ARP on {where}: {error.strerror or error}") from None
            finally:
                _close_later(sock)

    def _add_veth(
        self, host: _Rtnl, inside: _Rtnl, ifname: str, host_name: str, nsfd: int, where: str, mtu: int | None
    ) -> None:
        """Host end `host_name` (down: `_seal_host_end` brings it up) in the agent's namespace, pod end
        `ifname` born down inside the pod (`finish` sets its MAC); both with MTU `mtu` if given.

        The kernel makes both ends or neither, so an existing name on either side leaves nothing behind.

        Why with its MTU (when the agent knows it already) and, later, up and promiscuous in one change: on
        the userspace datapath every change of a link in ovs-vswitchd's namespace makes it reconfigure every
        port of its bridges (a few ms of its CPU each, more with more ports). A host end set up, then given
        its MTU once the controller has answered (by then an OVS port: the dearest kind), then made
        promiscuous by OVS when it opens it, costs three such changes besides its creation and its carrier;
        this one costs one. A host end with an MTU under IPV6_MIN_MTU has no IPv6 settings to seal: `finish`
        lowers it after the seal, as the kernel then drops its IPv6 state altogether.
        """
        message = ifinfmsg()
        message["index"] = 0
        sized = [("IFLA_MTU", mtu)] if mtu else []
        peer = [("IFLA_IFNAME", ifname), ("IFLA_NET_NS_FD", nsfd), *sized]
        data = {"attrs": [("VETH_INFO_PEER", {"attrs": peer})]}
        info = {"attrs": [("IFLA_INFO_KIND", "veth"), ("IFLA_INFO_DATA", data)]}
        message["attrs"] = [("IFLA_IFNAME", host_name), *sized, ("IFLA_LINKINFO", info)]
        try:
            host.request(message, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL)
        except _KernelError as error:
            if error.code == errno.EEXIST:
                if _link(inside, ifname) is not None:
                    raise InterfaceExists(f"{where} already exists") from None
                raise HostLinkExists(f"host link {host_name} already exists") from None
            raise NetlinkError(f"creating veth {host_name} <-> {where}: {_reason(error)}") from None
        except OSError as error:
            raise NetlinkError(f"creating veth {host_name} <-> {where}: {error.strerror or error}") from None

    def delete(self, host_name: str, *, ingress_chain: bool = True) -> bool:
        """Delete the host end (the pod end goes with it); False if there was no such link. `ingress_chain`:
        its nftables ingress chain is removed too (only the userspace datapath makes one, `host_ingress_drop`).

        Takes ~20 ms whatever the caller does: the kernel waits for an RCU grace period to unregister a device.
        """
        if not _valid_name(host_name):
            return False
        with self._session(), _Rtnl() as host:
            deleted = _delete_link(host, host_name)
        if not ingress_chain:
            return deleted
        try:
            nft.forget(host_name)  # a chain outlives its device on recent kernels (dormant, it holds nothing)
        except OSError as error:  # no nf_tables here, or the kernel refused: a dormant chain at worst
            log.warning("removing the ingress chain of %s: %s", host_name, error)
        return deleted

    def forget_source_routes(self, netns: str) -> int:
        """Remove the rules `create` made for interfaces no longer in the pod (their tables went with them);
        returns how many. A missing namespace has none: 0. Raises NetlinkError."""
        removed = 0
        with self._session():
            try:
                with _netns_fd(netns) as nsfd, self._inside(nsfd, netns):
                    inside = _Rtnl()
            except NetnsMissing:
                return 0
            with inside:
                links = ifinfmsg()
                links["attrs"] = [("IFLA_EXT_MASK", RTEXT_FILTER_SKIP_STATS)]
                present = {link["index"] for link in _call(inside, links, RTM_GETLINK, NLM_F_DUMP, "listing links")}
                for rule in _source_rules(inside, netns):
                    table = _rule_table(rule)
                    if table - SOURCE_TABLE_BASE not in present:
                        gone = fibmsg()
                        gone["family"], gone["src_len"], gone["action"] = rule["family"], rule["src_len"], FR_ACT_TO_TBL
                        gone["table"] = RT_TABLE_COMPAT
                        gone["attrs"] = [("FRA_SRC", rule.get_attr("FRA_SRC")), ("FRA_TABLE", table)]
                        gone["attrs"].append(("FRA_PRIORITY", rule.get_attr("FRA_PRIORITY") or SOURCE_RULE_PRIORITY))
                        _call(inside, gone, RTM_DELRULE, 0, f"removing the rule to table {table} in {netns}")
                        removed += 1
        return removed

    def host_link_exists(self, host_name: str) -> bool:
        if not _valid_name(host_name):
            return False
        with self._session(), _Rtnl() as host:
            return _link(host, host_name) is not None

    def host_links(self, prefix: str) -> list[str]:
        """Names of the links in the agent's namespace that start with `prefix`."""
        message = ifinfmsg()
        message["attrs"] = [("IFLA_EXT_MASK", RTEXT_FILTER_SKIP_STATS)]
        with self._session(), _Rtnl() as host:
            links = _call(host, message, RTM_GETLINK, NLM_F_DUMP, "listing host links")
        names = (link.get_attr("IFLA_IFNAME") for link in links)
        return sorted(name for name in names if name and name.startswith(prefix))

    def inspect(self, netns: str, ifname: str) -> PodView | None:
        """The interface as it is in the pod; None if the namespace or the interface is missing."""
        if not _valid_name(ifname):
            return None
        with self._session():
            try:
                with _netns_fd(netns) as nsfd, self._inside(nsfd, netns):
                    inside = _Rtnl()
            except NetnsMissing:
                return None
            with inside:
                link = _link(inside, ifname)
                if link is None:
                    return None
                index = link["index"]
                addresses = _call(inside, ifaddrmsg(), RTM_GETADDR, NLM_F_DUMP, f"listing addresses in {netns}")
                routes = []
                for family in (socket.AF_INET, socket.AF_INET6):
                    query = rtmsg()
                    query["family"] = family
                    routes += _call(inside, query, RTM_GETROUTE, NLM_F_DUMP, f"listing routes in {netns}")
                rules = _source_rules(inside, netns)
        found = []
        for entry in addresses:
            if entry["index"] == index and entry["scope"] == RT_SCOPE_UNIVERSE:
                ip = entry.get_attr("IFA_LOCAL") or entry.get_attr("IFA_ADDRESS")
                found.append(f"{ip}/{entry['prefixlen']}")
        gateway = None
        for route in routes:  # IPv4 first
            table = route.get_attr("RTA_TABLE") or route["table"]
            if route["dst_len"] == 0 and table == RT_TABLE_MAIN and route.get_attr("RTA_OIF") == index:
                gateway = route.get_attr("RTA_GATEWAY")
                if gateway:
                    break
        ips = {address.split("/")[0] for address in found}
        tables = {_rule_table(r) for r in rules if r.get_attr("FRA_SRC") in ips and r["src_len"] in (32, 128)}
        source_gateway = next(
            (
                route.get_attr("RTA_GATEWAY")
                for route in routes
                if route["dst_len"] == 0
                and (route.get_attr("RTA_TABLE") or route["table"]) in tables
                and route.get_attr("RTA_OIF") == index
            ),
            None,
        )
        return PodView(
            ifname=ifname,
            mac=str(link.get_attr("IFLA_ADDRESS") or ""),
            addresses=tuple(found),
            gateway=gateway or None,
            source_gateway=source_gateway or None,
            mtu=int(link.get_attr("IFLA_MTU") or 0),
            up=bool(link["flags"] & IFF_UP),
        )

    def close(self) -> None:
        """Wait for calls in flight, then let go of the agent's namespace fd."""
        with self._idle:
            if self._closed:
                return
            self._closed = True
            self._idle.wait_for(lambda: self._users == 0)
            os.close(self._home)

    # --- plumbing ----------------------------------------------------------------------------------

    @contextmanager
    def _session(self) -> Iterator[None]:
        with self._idle:
            if self._closed:
                raise NetlinkError("the netlink adapter is closed")
            self._users += 1
        try:
            yield
        except (OSError, _KernelError) as error:  # the steps wrap what they expect; this is the rest
            raise NetlinkError(f"netlink: {error}") from error
        finally:
            with self._idle:
                self._users -= 1
                self._idle.notify_all()

    @contextmanager
    def _inside(self, nsfd: int, netns: str) -> Iterator[None]:
        """The calling thread in the pod's namespace for the block, then back in the agent's."""
        if _libc.setns(nsfd, CLONE_NEWNET) != 0:
            code = ctypes.get_errno()
            if code == errno.EINVAL:
                raise NetnsMissing(f"{netns} is not a network namespace")
            raise NetlinkError(f"entering {netns}: {os.strerror(code)}")
        try:
            yield
        finally:
            if _libc.setns(self._home, CLONE_NEWNET) != 0:  # cannot happen short of ENOMEM; never carry on inside
                code = ctypes.get_errno()
                raise SystemExit(f"tenet: could not return to the agent's network namespace: {os.strerror(code)}")


_closing: queue.SimpleQueue[socket.socket] = queue.SimpleQueue()
_closer_lock = threading.Lock()
_closer: list[threading.Thread] = []


def _close_later(sock: socket.socket) -> None:
    """Close packet socket `sock` on a thread of its own, off the caller's path: the kernel's packet_release
    waits out an RCU grace period (synchronize_net), 10-20 ms measured here, which an ADD need not wait for.
    The frames it sent are gone by then; until it is closed the socket only keeps its namespace alive."""
    with _closer_lock:
        if not _closer:
            _closer.append(threading.Thread(target=_close_queued, name="packet-socket-closer", daemon=True))
            _closer[0].start()
    _closing.put(sock)


def _close_queued() -> None:
    while True:
        _closing.get().close()


class _Rtnl:
    """One rtnetlink socket, in the namespace of the thread that opens it; used by one thread, then closed."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
        try:
            self._sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)  # the kernel says why, not only errno
            self._sock.bind((0, 0))
        except BaseException:
            self._sock.close()
            raise
        self._seq = 0
        self._marshal = MarshalRtnl()

    def __enter__(self) -> _Rtnl:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()

    def request(self, message: nlmsg, kind: int, flags: int = 0) -> list[nlmsg]:
        """Send one request and collect its replies up to the ack (or a dump's end), decoded by pyroute2;
        kernel errors raise. The ack is read by `request_raw`, so a request that only changes something
        costs no decoding at all (pyroute2's was a tenth of the agent's CPU per ADD)."""
        return [decoded for reply in self.request_raw(message, kind, flags) for decoded in self._marshal.parse(reply)]

    def request_raw(self, message: nlmsg, kind: int, flags: int = 0) -> list[bytes]:
        """As `request`, but the replies come back undecoded, each a whole netlink message: for lookups whose
        reply pyroute2 would take a millisecond or more to decode in full (a link: dozens of attributes).
        A kernel error raises pyroute2's NetlinkError(errno, the kernel's extended ack message or None)."""
        self._seq += 1
        header = message["header"]
        header["type"], header["flags"] = kind, NLM_F_REQUEST | NLM_F_ACK | flags
        header["sequence_number"], header["pid"] = self._seq, 0
        message.encode()
        self._sock.send(message.data)
        replies: list[bytes] = []
        while True:
            data, offset = self._sock.recv(RECV_SIZE), 0
            while offset + NLMSG_HEADER.size <= len(data):
                length, reply_kind, _, sequence, _ = NLMSG_HEADER.unpack_from(data, offset)
                if length < NLMSG_HEADER.size:
                    break
                reply, offset = data[offset : offset + length], offset + ((length + 3) & ~3)
                if sequence != self._seq:
                    continue
                if reply_kind in (NLMSG_ERROR, NLMSG_DONE):  # NLMSG_DONE of a dump may carry an error too
                    _raise_error(reply)
                    return replies
                replies.append(reply)


def _raise_error(reply: bytes) -> None:
    """Raise the error an NLMSG_ERROR (or a dump's NLMSG_DONE) message carries, if any: a negative errno (0: an
    ack), in NLMSG_ERROR then the request's header (and, unless NLM_F_CAPPED, its payload), then, with
    NLM_F_ACK_TLVS, attributes of which NLMSGERR_ATTR_MSG is the kernel's own words (linux/netlink.h,
    struct nlmsgerr; net/netlink/af_netlink.c netlink_dump_done)."""
    if len(reply) < NLMSG_HEADER.size + ERRNO.size:
        return
    code = -ERRNO.unpack_from(reply, NLMSG_HEADER.size)[0]
    if not code:
        return
    kind, flags = NLMSG_HEADER.unpack_from(reply)[1:3]
    offset, text = NLMSG_HEADER.size + ERRNO.size, None
    if kind == NLMSG_ERROR and offset + NLMSG_HEADER.size <= len(reply):  # a dump's NLMSG_DONE echoes nothing
        echoed = NLMSG_HEADER.unpack_from(reply, offset)[0]
        offset += NLMSG_HEADER.size if flags & NLM_F_CAPPED else (echoed + 3) & ~3
    while flags & NLM_F_ACK_TLVS and offset + NLA_HEADER.size <= len(reply):
        length, attr = NLA_HEADER.unpack_from(reply, offset)
        if length < NLA_HEADER.size:
            break
        if attr & NLA_TYPE_MASK == NLMSGERR_ATTR_MSG:
            text = reply[offset + NLA_HEADER.size : offset + length].split(b"\0", 1)[0].decode(errors="replace")
            break
        offset += (length + 3) & ~3
    raise _KernelError(code, text)


# --- requests ------------------------------------------------------------------------------------------


def _call(rtnl: _Rtnl, message: nlmsg, kind: int, flags: int, doing: str) -> list[nlmsg]:
    try:
        return rtnl.request(message, kind, flags)
    except _KernelError as error:
        raise NetlinkError(f"{doing}: {_reason(error)}") from None
    except OSError as error:
        raise NetlinkError(f"{doing}: {error.strerror or error}") from None


def _link_brief(rtnl: _Rtnl, name: str) -> tuple[int, str] | None:
    """Link `name`'s index and MAC ("" if it has none), or None if there is no such link; read from the raw
    reply (struct ifinfomsg, then IFLA_ADDRESS among its attributes: linux/rtnetlink.h, linux/if_link.h)."""
    message = ifinfmsg()
    message["attrs"] = [("IFLA_IFNAME", name), ("IFLA_EXT_MASK", RTEXT_FILTER_SKIP_STATS)]
    try:
        replies = rtnl.request_raw(message, RTM_GETLINK)
    except _KernelError as error:
        if error.code == errno.ENODEV:
            return None
        raise NetlinkError(f"looking up link {name}: {_reason(error)}") from None
    if not replies:
        raise NetlinkError(f"looking up link {name}: the kernel sent no link")
    reply = replies[0]
    _, _, index, _, _ = IFINFOMSG.unpack_from(reply, NLMSG_HEADER.size)
    offset, mac = NLMSG_HEADER.size + IFINFOMSG.size, ""
    while offset + NLA_HEADER.size <= len(reply):
        length, kind = NLA_HEADER.unpack_from(reply, offset)
        if length < NLA_HEADER.size:
            break
        if kind & NLA_TYPE_MASK == IFLA_ADDRESS:
            mac = reply[offset + NLA_HEADER.size : offset + length].hex(":")
            break
        offset += (length + 3) & ~3
    return index, mac


def _link(rtnl: _Rtnl, name: str) -> nlmsg | None:
    message = ifinfmsg()
    message["attrs"] = [("IFLA_IFNAME", name), ("IFLA_EXT_MASK", RTEXT_FILTER_SKIP_STATS)]
    try:
        return rtnl.request(message, RTM_GETLINK)[0]
    except _KernelError as error:
        if error.code == errno.ENODEV:
            return None
        raise NetlinkError(f"looking up link {name}: {_reason(error)}") from None


def _require_brief(rtnl: _Rtnl, name: str, where: str) -> tuple[int, str]:
    link = _link_brief(rtnl, name)
    if link is None:
        raise NetlinkError(f"{where} vanished right after it was created")
    return link


def _delete_link(rtnl: _Rtnl, name: str) -> bool:
    message = ifinfmsg()
    message["attrs"] = [("IFLA_IFNAME", name)]
    try:
        rtnl.request(message, RTM_DELLINK)
    except _KernelError as error:
        if error.code == errno.ENODEV:
            return False
        raise NetlinkError(f"deleting host link {name}: {_reason(error)}") from None
    return True


def _has_default_route(rtnl: _Rtnl, version: int, netns: str) -> bool:
    """Whether the main table of `rtnl`'s namespace has a default route of IP `version` (4 or 6)."""
    query = rtmsg()
    query["family"] = socket.AF_INET if version == 4 else socket.AF_INET6
    for route in _call(rtnl, query, RTM_GETROUTE, NLM_F_DUMP, f"listing routes in {netns}"):
        table = route.get_attr("RTA_TABLE") or route["table"]
        if route["dst_len"] == 0 and table == RT_TABLE_MAIN and route["type"] == RTN_UNICAST:
            return True
    return False


def _discard(host: _Rtnl, name: str, *, ingress_drop: bool) -> None:
    """Delete host end `name` (the pod end goes with it), then its ingress chain, after a failed step. Raises
    nothing: the caller is failing already. A link that cannot be deleted keeps its chain, which still shields
    the node from it; recovery removes both (`AgentService.recover`)."""
    with suppress(NetlinkError):
        _delete_link(host, name)
        if ingress_drop:  # only then was a chain made
            with suppress(OSError):  # nft.NftError, or a netlink socket that could not be had
                nft.forget(name)


def _link_message(index: int, *, mtu: int, mac: str | None = None, up: bool = False) -> nlmsg:
    message = ifinfmsg()
    message["index"] = index
    message["attrs"] = [("IFLA_MTU", mtu)] + ([("IFLA_ADDRESS", mac)] if mac else [])
    if up:
        message["flags"] = message["change"] = IFF_UP
    return message


def _up_message(index: int, *, also: int = 0) -> nlmsg:
    """Link `index` up, with the flags `also` (IFF_*) set in the same change."""
    message = ifinfmsg()
    message["index"] = index
    message["flags"] = message["change"] = IFF_UP | also
    return message


def _up_by_name(name: str) -> nlmsg:
    """Link `name` (of the socket's namespace) up: the kernel finds a link by IFLA_IFNAME when the index is 0."""
    message = ifinfmsg()
    message["index"] = 0
    message["attrs"] = [("IFLA_IFNAME", name)]
    message["flags"] = message["change"] = IFF_UP
    return message


def _addr_message(index: int, address: _Interface) -> nlmsg:
    message = ifaddrmsg()
    message["index"] = index
    message["prefixlen"] = address.network.prefixlen
    ip = str(address.ip)
    if address.version == 4:
        message["family"] = socket.AF_INET
        message["attrs"] = [("IFA_LOCAL", ip), ("IFA_ADDRESS", ip)]
    else:
        message["family"] = socket.AF_INET6
        message["flags"] = IFA_F_NODAD  # usable at once, not after duplicate address detection
        message["attrs"] = [("IFA_ADDRESS", ip)]
    return message


def _default_route_message(index: int, gateway: _Address, table: int = RT_TABLE_MAIN) -> nlmsg:
    message = rtmsg()
    message["family"] = socket.AF_INET if gateway.version == 4 else socket.AF_INET6
    message["dst_len"] = 0
    message["table"] = table if table < 256 else RT_TABLE_COMPAT
    message["proto"] = RTPROT_BOOT
    message["scope"] = RT_SCOPE_UNIVERSE
    message["type"] = RTN_UNICAST
    message["attrs"] = [("RTA_GATEWAY", str(gateway)), ("RTA_OIF", index), ("RTA_TABLE", table)]
    return message


def _add_source_route(rtnl: _Rtnl, index: int, address: _Interface, gateway: _Address, where: str) -> None:
    """Table SOURCE_TABLE_BASE + `index`: the interface's subnet and a default route via `gateway`; and the rule
    `from ADDRESS lookup TABLE` (see `Netlink.create`). A rule left identical by an earlier interface is kept."""
    table = SOURCE_TABLE_BASE + index
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    subnet = rtmsg()
    subnet["family"], subnet["dst_len"], subnet["table"] = family, address.network.prefixlen, RT_TABLE_COMPAT
    subnet["proto"], subnet["scope"], subnet["type"] = RTPROT_BOOT, RT_SCOPE_LINK, RTN_UNICAST
    subnet["attrs"] = [("RTA_DST", str(address.network.network_address)), ("RTA_OIF", index), ("RTA_TABLE", table)]
    exclusive = NLM_F_CREATE | NLM_F_EXCL
    _call(rtnl, subnet, RTM_NEWROUTE, exclusive, f"adding the route to {address.network} in table {table} in {where}")
    route = _default_route_message(index, gateway, table)
    _call(rtnl, route, RTM_NEWROUTE, exclusive, f"adding the default route via {gateway} to table {table} in {where}")
    rule = fibmsg()
    rule["family"], rule["src_len"], rule["action"] = family, address.max_prefixlen, FR_ACT_TO_TBL
    rule["table"] = RT_TABLE_COMPAT
    rule["attrs"] = [("FRA_SRC", str(address.ip)), ("FRA_TABLE", table), ("FRA_PRIORITY", SOURCE_RULE_PRIORITY)]
    try:
        rtnl.request(rule, RTM_NEWRULE, exclusive)
    except _KernelError as error:
        if error.code != errno.EEXIST:
            raise NetlinkError(f"adding rule from {address.ip} lookup {table} in {where}: {_reason(error)}") from None


def _source_rules(rtnl: _Rtnl, netns: str) -> list[nlmsg]:
    """The namespace's rules that pick a table of `_add_source_route` (IPv4 and IPv6)."""
    rules = []
    for family in (socket.AF_INET, socket.AF_INET6):
        query = fibmsg()
        query["family"] = family
        rules += _call(rtnl, query, RTM_GETRULE, NLM_F_DUMP, f"listing rules in {netns}")
    return [rule for rule in rules if SOURCE_TABLE_BASE <= _rule_table(rule) < SOURCE_TABLE_END]


def _rule_table(rule: nlmsg) -> int:
    return int(rule.get_attr("FRA_TABLE") or rule["table"])


def _seal_host_end(host: _Rtnl, name: str, *, ingress_drop: bool) -> None:
    """Shut the node's own IP stack out of the host end `name` (agent/hostend.py) while it is down, then set
    it up and promiscuous in one change (what OVS would make it when it opens the port: it then changes
    nothing, and ovs-vswitchd has one link change less to reconfigure for)."""
    try:
        hostend.isolate(name, ingress_drop=ingress_drop)
    except hostend.HostEndError as error:
        raise NetlinkError(str(error)) from None
    index = _require_brief(host, name, f"host link {name}")[0]
    _call(host, _up_message(index, also=IFF_PROMISC), RTM_NEWLINK, 0, f"setting host link {name} up")


def _ipv6_off(ifname: str, where: str) -> None:
    """Turn IPv6 off on the pod's interface `ifname` (still down): pods are IPv4 only and the switch carries
    no IPv6 between them, so the link-local address, its DAD, router solicitations and MLD reports the pod's
    kernel would send are only upcalls and datapath flows for ovs-vswitchd to make and revalidate. Written
    through /proc/sys/net, which follows the calling thread's namespace: call it inside the pod's. A kernel
    without IPv6 has nothing to turn off. Raises NetlinkError."""
    setting = f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6"
    try:
        with open(setting, "w") as file:
            file.write("1")
    except FileNotFoundError:
        if os.path.exists("/proc/sys/net/ipv6"):
            raise NetlinkError(f"{where} vanished right after it was created (no {setting})") from None
    except OSError as error:
        raise NetlinkError(f"turning IPv6 off on {where}: {error.strerror or error}") from None


def _tx_checksum_off(ethtool: IoctlEthtool, where: str) -> None:
    """What `ethtool -K IFNAME tx off` does, as one SIOCETHTOOL ioctl on a socket in the pod's namespace."""
    try:
        ethtool.set_offload_flag("tx-checksumming", 0)
    except (NotSupportedError, NoSuchDevice, OSError) as error:
        raise NetlinkError(f"turning TX checksum offload off on {where}: {error}") from None


# --- namespaces and checks -----------------------------------------------------------------------------


@contextmanager
def _netns_fd(netns: str) -> Iterator[int]:
    """An fd of the network namespace at `netns`; NetnsMissing if there is none."""
    try:
        fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        raise NetnsMissing(f"{netns} does not exist") from None
    except OSError as error:
        raise NetlinkError(f"opening {netns}: {error.strerror}") from None
    try:
        try:
            kind = fcntl.ioctl(fd, NS_GET_NSTYPE)
        except OSError:
            kind = None  # not a namespace file at all (ENOTTY)
        if kind != CLONE_NEWNET:
            raise NetnsMissing(f"{netns} is not a network namespace")
        yield fd
    finally:
        os.close(fd)


def _valid_name(name: str) -> bool:
    return isinstance(name, str) and ifname_problem(name) is None


def _check_name(name: str, what: str) -> None:
    problem = ifname_problem(name) if isinstance(name, str) else "not a string"
    if problem:
        raise NetlinkError(f"{what} {name!r}: not a valid interface name: {problem}")


def _check(pod: PodInterface) -> tuple[_Interface, _Address]:
    """Everything about `pod` that can be wrong before the kernel is asked anything."""
    _check_name(pod.ifname, "ifname")
    _check_name(pod.host_name, "host_name")
    if not _MAC.fullmatch(pod.mac or "") or int(pod.mac[:2], 16) & 1:
        raise NetlinkError(f"mac {pod.mac!r}: want a unicast MAC like 02:00:0a:01:00:05")
    if not isinstance(pod.mtu, int) or not 68 <= pod.mtu <= 65535:
        raise NetlinkError(f"mtu {pod.mtu!r}: want 68..65535")
    try:
        address = ipaddress.ip_interface(pod.address)
        gateway = ipaddress.ip_address(pod.gateway)
    except ValueError as error:
        raise NetlinkError(f"{pod.netns}:{pod.ifname}: {error}") from None
    if "/" not in pod.address:
        raise NetlinkError(f"address {pod.address!r}: want ADDRESS/PREFIX")
    if gateway.version != address.version:
        raise NetlinkError(f"gateway {pod.gateway} and address {pod.address} are of different IP versions")
    if address.version != 4:  # `make_pair` turns IPv6 off on the pod end
        raise NetlinkError(f"address {pod.address}: pods are IPv4 only (topology/model.py)")
    return address, gateway


def _reason(error: _KernelError) -> str:
    text = os.strerror(error.code)
    detail = error.args[1] if len(error.args) > 1 else None
    if detail and detail != text:
        text = f"{text} ({detail})"
    return text
