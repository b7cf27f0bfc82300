"""What a cluster knows of a lab pod beyond its network: its Kubernetes namespace, labels and named ports.

In a cluster the kubelet's CNI ADD makes the endpoint and the pod's metadata reaches the controller from the
API server. The lab has no API server (unless it runs one), so after the ADD it describes the pod itself,
through the controller's API with the admin token: it creates the namespace if the pod's tenant has none
of that name (`POST /v1/namespaces`, labels from the lab config's `namespaces:` when it names it there),
then replaces the endpoint the ADD made with one of the same id, node, port, MAC and address (or the address
asked with `--ip`) that also carries `namespace`, `labels` and `ports` (`DELETE`, then `POST /v1/endpoints`;
an endpoint's namespace and ports are fixed at creation). The pod's veth and OVS port stay as they are: if
the controller planned another OpenFlow port number, the port gets it (`ofport_request`); with another
address, the pod's interface takes it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from controller.client import Client, ClientError, path
from lab.ovs import sh
from lab.servers import Served

if TYPE_CHECKING:
    from lab.cluster import Lab, LabPod

READY_WAIT_S = "20"


def ensure_namespace(client: Client, name: str, tenant: str) -> dict[str, Any]:
    """The namespace `name`, made for `tenant` when it does not exist; LabError when another tenant's."""
    from lab.cluster import LabError

    try:
        found = client.get(path("v1", "namespaces", name))
    except ClientError as error:
        if error.status != 404:
            raise
        found = client.post("/v1/namespaces", {"name": name, "tenant": tenant})
    if found["tenant"] != tenant:
        raise LabError(f"--namespace {name}: it belongs to tenant {found['tenant']}, the pod's network to {tenant}")
    return found


def endpoint_of(client: Client, pod: LabPod) -> dict[str, Any]:
    """The endpoint the CNI ADD made for `pod` (the one of its node with its MAC); RuntimeError if none."""
    for doc in client.get("/v1/endpoints", node=pod.node):
        if doc["mac"] == pod.mac:
            return doc
    raise RuntimeError(f"pod {pod.name}: the controller has no endpoint with its MAC {pod.mac}")


def describe(lab: Lab, pod: LabPod, serve: Sequence[Served], ip: str | None) -> None:
    """Give `pod`'s endpoint its namespace, labels, named ports (`serve`) and address (`ip`, or the one it
    has). Raises RuntimeError (LabError) naming the option when the controller refuses them; the endpoint
    is then put back as the ADD made it."""
    from lab.cluster import LabError

    client = lab.client
    tenant = pod.network.split("/", 1)[0]
    if ip is not None:
        try:
            ipaddress.IPv4Address(ip)
        except ValueError:
            raise LabError(f"--ip {ip!r}: want an IPv4 address") from None
    if pod.namespace is not None:
        ensure_namespace(client, pod.namespace, tenant)
    doc = endpoint_of(client, pod)
    kept = {key: doc[key] for key in ("id", "network", "node", "ip", "mac", "port_name")}
    body: dict[str, Any] = {**kept, "ip": ip or doc["ip"]}
    if pod.namespace is not None:
        body["namespace"] = pod.namespace
    if pod.labels:
        body["labels"] = pod.labels
    if serve:
        body["ports"] = [s.container_port() for s in serve]
    client.delete(path("v1", "endpoints", doc["id"]))
    try:
        new = client.post("/v1/endpoints", body)
    except ClientError as error:
        client.post("/v1/endpoints", kept)
        option = {"endpoint.ip": "--ip", "endpoint.namespace": "--namespace"}.get(error.field or "", "--label")
        raise LabError(f"pod {pod.name}: {option}: {error}") from None
    if new["ofport"] != doc["ofport"]:
        lab.node(pod.node).vsctl("set", "Interface", doc["port_name"], f"ofport_request={new['ofport']}")
    if new["ip"] != doc["ip"]:
        readdress(pod.netns, doc["ip"], new["ip"], doc["prefix_len"], doc["gateway"])
        pod.ip = new["ip"]
    pod.endpoint = new["id"]
    lab.save()
    state = client.get(path("v1", "endpoints", new["id"], "ready"), wait=READY_WAIT_S)
    if not state.get("ready"):
        raise LabError(f"pod {pod.name}: its endpoint is not ready on {pod.node}: {state.get('reason')}")


def readdress(netns: str, old: str, new: str, prefix: int, gateway: str, interface: str = "eth0") -> None:
    """Move `interface` in `netns` from address `old` to `new` (same prefix), keeping its default route."""
    run = ("ip", "netns", "exec", netns)
    sh(*run, "sysctl", "-qw", f"net.ipv4.conf.{interface}.promote_secondaries=1")
    sh(*run, "ip", "addr", "add", f"{new}/{prefix}", "dev", interface)
    sh(*run, "ip", "addr", "del", f"{old}/{prefix}", "dev", interface)
    if "default" not in sh(*run, "ip", "route", "show", "default"):
        sh(*run, "ip", "route", "add", "default", "via", gateway, "dev", interface)
