"""The CNI results `tenet-cni` prints, shaped for the config's cniVersion. Standard library only.

0.3.x and 0.4.0 carry ``ips[].version`` ("4" or "6"); 1.x drop it; 1.1.0 may give the interface's ``mtu``.
Chained after another plugin, the result is that plugin's ``prevResult`` with our interface, address and route
appended, and the address's ``interface`` index pointing at our entry.
"""

from __future__ import annotations

from cni.config import CniError, version_key
from cni.protocol import GENERIC_FAILURE

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def add_result(version: str, answer: dict[str, Any], *, ifname: str, netns: str, prev: dict[str, Any] | None) -> dict:
    """The ADD result from the agent's answer (see cni.protocol), appended to `prev` when chained."""
    interface, address, gateway = _parse_answer(answer, ifname)
    ours: dict[str, Any] = {"name": ifname, "mac": interface["mac"], "sandbox": netns}  # the path CHECK will get
    mtu = interface.get("mtu")
    if version_key(version) >= (1, 1, 0) and isinstance(mtu, int) and not isinstance(mtu, bool) and mtu > 0:
        ours["mtu"] = mtu
    family = "6" if ":" in address else "4"
    prev = prev or {}
    interfaces = [*prev.get("interfaces", []), ours]
    ip: dict[str, Any] = {"address": address}
    if version_key(version) < (1, 0, 0):
        ip["version"] = family
    if gateway:
        ip["gateway"] = gateway
    ip["interface"] = len(interfaces) - 1
    routes = list(prev.get("routes", []))
    if gateway:
        routes.append({"dst": "::/0" if family == "6" else "0.0.0.0/0", "gw": gateway})
    result = {**prev, "cniVersion": version, "interfaces": interfaces, "ips": [*prev.get("ips", []), ip]}
    if routes:
        result["routes"] = routes
    result["dns"] = prev.get("dns", {})
    return result


def check_prev_result(prev: dict[str, Any] | None, *, ifname: str, netns: str) -> None:
    """CHECK: the runtime's cached result must list our interface in this sandbox and an address on it."""
    if prev is None:
        raise CniError(GENERIC_FAILURE, "CHECK needs prevResult: the result of the ADD it checks")
    interfaces = prev.get("interfaces", [])
    index = next(
        (i for i, item in enumerate(interfaces) if item.get("name") == ifname and item.get("sandbox") == netns), None
    )
    if index is None:
        raise CniError(GENERIC_FAILURE, f"prevResult lists no interface {ifname} in {netns}")
    if not any(item.get("interface") == index for item in prev.get("ips", [])):
        raise CniError(GENERIC_FAILURE, f"prevResult lists no address on {ifname}")


def _parse_answer(answer: dict[str, Any], ifname: str) -> tuple[dict[str, Any], str, str | None]:
    interface, address, gateway = answer.get("interface"), answer.get("ip"), answer.get("gateway")
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
