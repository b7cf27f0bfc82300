"""What CNI CHECK and STATUS judge: is a pod's interface still as its attachment needs it, can ADD be served.

CHECK (CNI spec, "CHECK"): plugins chained after this one may change the pod's interface, so only what breaks
the attachment fails: the interface gone or with another MAC, down, without its address, without the default
route it installed (or, for an interface after the first, without its source route: agent/netlink.py), or
with an MTU above the network's (frames the overlay cannot carry). A lower MTU and more addresses or routes
pass. STATUS (CNI spec 1.1, "STATUS"): code 50, "cannot serve ADD", when the controller
is unreachable, the node's switch is not connected, or the network has no free address; 51 is for existing
pods losing connectivity, which none of these causes.
"""

from __future__ import annotations

import logging
from typing import Any

from agent.netlink import PodView
from cni import protocol
from cni.protocol import AgentError
from controller.client import Client, ClientError, path

log = logging.getLogger(__name__)


def pod_problem(view: PodView | None, doc: dict[str, Any], ifname: str, *, owns_default_route: bool) -> str | None:
    """What is wrong with the pod's interface `view` for the endpoint `doc` (the API's endpoint), or None.

    `owns_default_route`: whether the attachment installed the pod's default route (its first interface did).
    """
    address = f"{doc['ip']}/{doc['prefix_len']}"
    if view is None:
        return f"interface {ifname} is missing from the pod"
    if view.mac.lower() != doc["mac"].lower():
        return f"interface {ifname} has MAC {view.mac}, want {doc['mac']}"
    if not view.up:
        return f"interface {ifname} is down"
    if address not in view.addresses:
        return f"interface {ifname} lacks address {address} (has {', '.join(view.addresses) or 'none'})"
    if owns_default_route and view.gateway is None:
        return f"the pod has no default route through {ifname}, want one via {doc['gateway']}"
    if owns_default_route and view.gateway != doc["gateway"]:
        return f"the pod's default route through {ifname} is via {view.gateway}, want {doc['gateway']}"
    if not owns_default_route and view.source_gateway != doc["gateway"]:
        return (
            f"interface {ifname} lacks its source route (a rule from {doc['ip']} to a table with a default"
            f" route via {doc['gateway']}): replies from {doc['ip']} would leave through another interface"
        )
    if view.mtu > doc["mtu"]:
        return f"interface {ifname} has MTU {view.mtu}, above the network's {doc['mtu']}"
    return None


def status(client: Client, node: str, request: dict[str, Any]) -> dict[str, Any]:
    """STATUS for node `node` and the request's tenant/network (the config's default; none for a config of
    namespaces only): ``{"ok": True}``, else AgentError code 50 saying why ADD cannot be served."""
    try:
        doc = client.get(path("v1", "nodes", node))
    except ClientError as error:
        raise AgentError(protocol.NOT_READY, "the Tenet controller is not reachable", str(error)) from None
    if not (doc.get("switch") or {}).get("connected"):
        raise AgentError(protocol.NOT_READY, f"the switch of node {node} is not connected")
    tenant, network = request.get("tenant"), request.get("network")
    if not (isinstance(tenant, str) and tenant and isinstance(network, str) and network):
        return {"ok": True}  # no one network every pod needs
    try:
        doc = client.get(path("v1", "tenants", tenant, "networks", network))
    except ClientError as error:
        if error.status is None:
            raise AgentError(protocol.NOT_READY, "the Tenet controller is not reachable", str(error)) from None
        if error.status in (401, 403):  # this node's token may not read the network: ADD will tell
            log.warning("STATUS: cannot read network %s/%s to count its free addresses: %s", tenant, network, error)
            return {"ok": True}
        raise AgentError(protocol.NOT_READY, f"network {tenant}/{network}: {error}") from None
    if doc.get("free_addresses") == 0:
        raise AgentError(
            protocol.NOT_READY,
            f"no IP addresses available in network {tenant}/{network}",
            f"subnet {doc.get('subnet')}: all {doc.get('endpoints')} addresses in use",
        )
    return {"ok": True}
