"""The CNI results `tenet-cni` prints, shaped for the config's cniVersion. Standard library only.

0.3.x and 0.4.0 carry ``ips[].version`` ("4" or "6"); 1.x drop it; 1.1.0 may give the interfaces' ``mtu``.
``interfaces`` lists every interface the attachment made (spec, "Success"): the host end of the veth pair
(the OVS port, no ``sandbox``), then the pod's interface; ``ips[].interface`` is the pod interface's index.
Chained after another plugin, the result is that plugin's ``prevResult`` with our interfaces, address and
route appended. The default route is listed only when this attachment installed it: the first interface
of a container gets it, later ones (``net1``...) only their subnet's route (see agent.netlink).
"""

from __future__ import annotations

import posix  # not os: see cni.plugin

from cni.config import CniError, version_key
from cni.protocol import GENERIC_FAILURE, INVALID_CONFIG

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def add_result(version: str, answer: dict[str, Any], *, ifname: str, netns: str, prev: dict[str, Any] | None) -> dict:
    """The ADD result from the agent's answer (see cni.protocol), appended to `prev` when chained."""
    interface, address, gateway = _parse_answer(answer, ifname)
    with_mtu = version_key(version) >= (1, 1, 0)
    ours: dict[str, Any] = {"name": ifname, "mac": interface["mac"], "sandbox": netns}  # the path CHECK will get
    _add_mtu(ours, interface, with_mtu)
    family = "6" if ":" in address else "4"
    prev = prev or {}
    interfaces = list(prev.get("interfaces", []))
    host = answer.get("host_interface")
    if isinstance(host, dict) and isinstance(host.get("name"), str) and isinstance(host.get("mac"), str):
        interfaces.append(_add_mtu({"name": host["name"], "mac": host["mac"]}, host, with_mtu))
    interfaces.append(ours)
    ip: dict[str, Any] = {"address": address}
    if version_key(version) < (1, 0, 0):
        ip["version"] = family
    if gateway:
        ip["gateway"] = gateway
    ip["interface"] = len(interfaces) - 1
    routes = list(prev.get("routes", []))
    if gateway and answer.get("default_route", True) is not False:
        routes.append({"dst": "::/0" if family == "6" else "0.0.0.0/0", "gw": gateway})
    result = {**prev, "cniVersion": version, "interfaces": interfaces, "ips": [*prev.get("ips", []), ip]}
    if routes:
        result["routes"] = routes
    result["dns"] = prev.get("dns", {})
    return result


def check_prev_result(prev: dict[str, Any] | None, *, ifname: str, netns: str) -> None:
    """CHECK: the runtime's cached result must list our interface in this sandbox and an address on it.

    The sandbox is compared as a namespace, not as a path: ``/var/run/netns/pod``, a bind mount of it and
    ``/proc/PID/ns/net`` of a process inside name the same namespace (same st_dev and st_ino of the nsfs file).
    """
    if prev is None:
        raise CniError(INVALID_CONFIG, "prevResult is required for CHECK: the result of the ADD it checks")
    interfaces = prev.get("interfaces", [])
    index = next(
        (
            i
            for i, item in enumerate(interfaces)
            if item.get("name") == ifname and _same_namespace(item.get("sandbox"), netns)
        ),
        None,
    )
    if index is None:
        raise CniError(INVALID_CONFIG, f"prevResult lists no interface {ifname} in {netns}")
    if not any(item.get("interface") == index for item in prev.get("ips", [])):
        raise CniError(INVALID_CONFIG, f"prevResult lists no address on {ifname}")


def _same_namespace(sandbox: object, netns: str) -> bool:
    """Whether the path `sandbox` and the path `netns` name one network namespace (or are the same text)."""
    if not isinstance(sandbox, str) or not sandbox:
        return False
    if sandbox == netns:
        return True
    try:
        first, second = posix.stat(sandbox), posix.stat(netns)
    except (OSError, ValueError):  # gone, or not a path at all: only the same text would do
        return False
    return (first.st_dev, first.st_ino) == (second.st_dev, second.st_ino)


def _add_mtu(entry: dict[str, Any], source: dict[str, Any], with_mtu: bool) -> dict[str, Any]:
    mtu = source.get("mtu")
    if with_mtu and isinstance(mtu, int) and not isinstance(mtu, bool) and mtu > 0:
        entry["mtu"] = mtu
    return entry


def _parse_answer(answer: dict[str, Any], ifname: str) -> tuple[dict[str, Any], str, str | None]:
    interface: Any = answer.get("interface")  # decoded JSON: checked below
    address: Any = answer.get("ip")
    gateway: Any = answer.get("gateway")
    problem = None
    if not isinstance(interface, dict) or not isinstance(interface.get("mac"), str):
        problem = "no interface with a mac"
    elif interface.get("name", ifname) != ifname:
        problem = f"interface {interface.get('name')!r}, not {ifname!r}"
    elif not isinstance(address, str) or address.count("/") != 1:
        problem = "no address in CIDR notation"
    elif gateway is not None and not isinstance(gateway, str):
        problem = "a gateway that is not a string"
    if problem:
        raise CniError(GENERIC_FAILURE, f"the Tenet agent answered ADD with {problem}", str(answer)[:500])
    return interface, address, gateway
