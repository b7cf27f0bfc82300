"""How Kubernetes objects map onto Tenet's model; pure functions over the objects as dicts.

- A `Network` (tenet.io/v1alpha1, cluster-scoped) is the Tenet network `SPEC.TENANT/METADATA.NAME`: the
  CR's name is unique in the cluster, so it is the network's name in its tenant.
- A namespace joins the Network whose `spec.namespaces` names it or whose `spec.namespaceSelector` matches its
  labels (Kube-OVN's `Subnet.spec.namespaces` model); when several do, the first by name. Any other
  namespace is on the cluster network (the `cluster_network` setting, default `default/pods`).
- A pod's annotation `tenet.io/network` (a Network's name, or TENANT/NAME) picks another network of the
  same tenant.
- A Node's tunnel IP is its annotation `tenet.io/tunnel-ip`, else its first InternalIP.
"""

from __future__ import annotations

from typing import Any

from topology.errors import ValidationError

Object = dict[str, Any]
NETWORK_ANNOTATION = "tenet.io/network"
TUNNEL_IP_ANNOTATION = "tenet.io/tunnel-ip"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"  # set on every namespace by kube-apiserver (1.21+)


def network_key(network: Object) -> str:
    """The Tenet key TENANT/NAME of a Network CR."""
    return f"{network['spec']['tenant']}/{network['metadata']['name']}"


def network_args(network: Object) -> dict[str, Any]:
    """The keyword arguments of `Service.create_network` for a Network CR's spec (checked by the model)."""
    spec = network.get("spec") or {}
    encap = spec.get("encap")
    return {
        "encap": encap,
        "segment": spec.get("vni") if encap == "vxlan" else spec.get("vlan"),
        "subnet": spec.get("subnet"),
        "gateway": spec.get("gateway"),
        "mtu": spec.get("mtu"),
    }


def selector_matches(selector: Object, labels: dict[str, str]) -> bool:
    """A standard LabelSelector (matchLabels and matchExpressions In, NotIn, Exists, DoesNotExist) against
    labels; an empty selector matches everything (metav1.LabelSelector semantics)."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def namespace_labels(namespace: str, obj: Object | None) -> dict[str, str]:
    """A namespace's labels, with `kubernetes.io/metadata.name` as kube-apiserver sets it."""
    labels = dict(((obj or {}).get("metadata") or {}).get("labels") or {})
    labels.setdefault(NAMESPACE_NAME_LABEL, namespace)
    return labels


def namespace_network(namespace: str, labels: dict[str, str], networks: list[Object]) -> Object | None:
    """The Network CR a namespace's pods join, or None (then the cluster network)."""
    for network in sorted(networks, key=lambda n: n["metadata"]["name"]):
        spec = network.get("spec") or {}
        if namespace in (spec.get("namespaces") or []):
            return network
        selector = spec.get("namespaceSelector")
        if selector is not None and selector_matches(selector, labels):
            return network
    return None


def pod_network(
    pod: Object, namespace_obj: Object | None, networks: list[Object], cluster_network: str, known: set[str]
) -> str:
    """The Tenet network key of a pod's endpoint, by the rules of the module docstring.

    `networks`: the Network CRs applied to the model; `known`: the model's network keys. Raises
    ValidationError("endpoint.k8s", ...) naming the namespace and what is missing."""
    meta = pod.get("metadata") or {}
    namespace = meta.get("namespace", "")
    labels = namespace_labels(namespace, namespace_obj)
    chosen = namespace_network(namespace, labels, networks)
    if chosen is not None:
        base = network_key(chosen)
    elif cluster_network in known:
        base = cluster_network
    else:
        raise ValidationError(
            "endpoint.k8s",
            f"namespace {namespace!r} is in no Network's namespaces or namespaceSelector, and the cluster "
            f"network {cluster_network!r} (setting cluster_network) does not exist",
        )
    wanted = (meta.get("annotations") or {}).get(NETWORK_ANNOTATION)
    if not wanted:
        return base
    tenant = base.split("/", 1)[0]
    named = {n["metadata"]["name"]: network_key(n) for n in networks}
    key = wanted if "/" in wanted else named.get(wanted, f"{tenant}/{wanted}")
    if key.split("/", 1)[0] != tenant:
        raise ValidationError(
            f"pod.metadata.annotations[{NETWORK_ANNOTATION}]",
            f"{wanted!r} is not a network of tenant {tenant!r}, the tenant of namespace {namespace!r}",
        )
    if key not in known:
        raise ValidationError(f"pod.metadata.annotations[{NETWORK_ANNOTATION}]", f"unknown network {key!r}")
    return key


def node_tunnel_ip(node: Object) -> str | None:
    """A Node's tunnel IP: annotation `tenet.io/tunnel-ip`, else its first InternalIP, else None."""
    annotation = ((node.get("metadata") or {}).get("annotations") or {}).get(TUNNEL_IP_ANNOTATION)
    if annotation:
        return str(annotation)
    for address in (node.get("status") or {}).get("addresses") or []:
        if address.get("type") == "InternalIP":
            return str(address.get("address"))
    return None


def named_ports(pod: Object) -> dict[str, dict[str, Any]]:
    """A pod's named container ports: name -> {"port": N, "protocol": "TCP"|"UDP"|"SCTP"}."""
    ports: dict[str, dict[str, Any]] = {}
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name"):
                ports[port["name"]] = {"port": port["containerPort"], "protocol": port.get("protocol", "TCP")}
    return ports
