"""What a cluster knows of a lab pod beyond its network: its Kubernetes namespace, labels, named ports and
a chosen address, given the way a user's cluster gives them.

- The namespace goes with the CNI ADD, in CNI_ARGS ``K8S_POD_NAMESPACE``/``K8S_POD_NAME`` as kubelet passes
  them: the controller puts the endpoint in that namespace when its model has it in the network's tenant, so
  the lab makes the namespace first (`ensure_namespace`, `POST /v1/namespaces`) when the tenant has none of
  that name.
- The address (`--ip`) goes with the ADD too, as the CNI conventions' ``ips`` capability: the node's conflist
  declares ``"capabilities": {"ips": true}`` (cni.install), so the lab passes ``runtimeConfig.ips`` as a
  runtime does (`runtime_config`); a plugin that does not declare it gets ``IP=`` in CNI_ARGS instead. The
  controller refuses an address outside the subnet or taken, and the ADD fails naming it.
- Labels and named ports (`--label`, `--serve`) reach the endpoint after the ADD in one
  `PATCH /v1/endpoints/ID` (what an API-server watch does in a cluster), with the admin token; then the lab
  waits until the endpoint's flows are on its node (`GET /v1/endpoints/ID/ready`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from controller.client import Client, ClientError, path
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


def check_ip(ip: str | None) -> None:
    """LabError naming `--ip` unless `ip` is None or one IPv4 address (the plugin gives one per pod)."""
    from lab.cluster import LabError

    if ip is None:
        return
    try:
        ipaddress.IPv4Address(ip)
    except ValueError:
        raise LabError(f"--ip {ip!r}: want an IPv4 address") from None


def cni_args(pod: LabPod, ip: str | None, plugin: dict[str, Any]) -> str:
    """CNI_ARGS for `pod`'s ADD: kubelet's K8S_POD_NAMESPACE/K8S_POD_NAME when it has a namespace, and
    ``IP=`` when `ip` is asked of a plugin without the ``ips`` capability (`runtime_config` serves the rest)."""
    args = ["IgnoreUnknown=1"]
    if pod.namespace is not None:
        args += [f"K8S_POD_NAMESPACE={pod.namespace}", f"K8S_POD_NAME={pod.name}"]
    if ip is not None and not _has_ips_capability(plugin):
        args.append(f"IP={ip}")
    return ";".join(args)


def runtime_config(ip: str | None, plugin: dict[str, Any]) -> dict[str, Any] | None:
    """``runtimeConfig`` as libcni gives it to a plugin declaring the ``ips`` capability, or None."""
    if ip is None or not _has_ips_capability(plugin):
        return None
    return {"ips": [ip]}


def _has_ips_capability(plugin: dict[str, Any]) -> bool:
    capabilities = plugin.get("capabilities")
    return isinstance(capabilities, dict) and capabilities.get("ips") is True


def endpoint_of(client: Client, pod: LabPod) -> dict[str, Any]:
    """The endpoint the CNI ADD made for `pod` (the one of its node with its MAC); RuntimeError if none."""
    for doc in client.get("/v1/endpoints", node=pod.node):
        if doc["mac"] == pod.mac:
            return doc
    raise RuntimeError(f"pod {pod.name}: the controller has no endpoint with its MAC {pod.mac}")


def describe(lab: Lab, pod: LabPod, serve: Sequence[Served]) -> None:
    """Give `pod`'s endpoint its labels and named ports (`serve`) in one PATCH, then wait until it is ready
    on its node. Raises LabError naming the option when the controller refuses them (nothing applied)."""
    from lab.cluster import LabError

    client = lab.client
    assert pod.endpoint is not None
    body: dict[str, Any] = {}
    if pod.labels:
        body["labels"] = pod.labels
    if serve:
        body["ports"] = [s.container_port() for s in serve]
    if body:
        try:
            client.patch(path("v1", "endpoints", pod.endpoint), body)
        except ClientError as error:
            option = "--serve" if (error.field or "").startswith("endpoint.ports") else "--label"
            raise LabError(f"pod {pod.name}: {option}: {error}") from None
    state = client.get(path("v1", "endpoints", pod.endpoint, "ready"), wait=READY_WAIT_S)
    if not state.get("ready"):
        raise LabError(f"pod {pod.name}: its endpoint is not ready on {pod.node}: {state.get('reason')}")
