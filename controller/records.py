"""The model as store records: one JSON document per object, with the ids it was given.

Ids (tenant, network, endpoint number, ofport, meter) are part of the records because cookies, group ids
and meter ids on the switches derive from them: a restored model must compile to the very same flows.
"""

from __future__ import annotations

from collections.abc import Iterable

from controller.store.base import Document, Record
from topology.gateway import GatewayConfig
from topology.ipam import int_to_mac
from topology.model import Endpoint, Link, Model, Network, Node, QosAttachment, QosProfile, Tenant
from topology.namespaces import NAME_LABEL, Namespace, ports_json

PREFIX = "/tenet/"
QUOTAS = "quotas"  # per-tenant quotas: the admin's policy, not part of the model (see controller.policy)
# The next network id from above (Model.network_id_mark): a restart does not hand out a deleted network's id.
NETWORK_ID_MARK = PREFIX + "network-id-mark/next"
# Restore order: what each kind refers to comes first.
KINDS = (
    "nodes",
    "links",
    "tenants",
    "namespaces",
    "networks",
    "qos",
    "endpoints",
    "qos-attachments",
    "networkpolicies",
)


def key(kind: str, name: str) -> str:
    return f"{PREFIX}{kind}/{name}"


def tenant_doc(tenant: Tenant) -> Document:
    return {"name": tenant.name, "id": tenant.id}


def network_doc(network: Network) -> Document:
    return {
        "tenant": network.tenant,
        "name": network.name,
        "encap": network.encap.value,
        "segment": network.segment,
        "subnet": str(network.subnet),
        "gateway": str(network.gateway),
        "mtu": network.mtu,
        "id": network.id,
        "nat_outgoing": network.nat_outgoing,
        "node_ports": list(network.node_ports),
    }


def node_doc(node: Node) -> Document:
    return {
        "name": node.name,
        "tunnel_ip": str(node.tunnel_ip),
        "uplink": node.uplink,
        "datapath_id": node.datapath_id,
        "underlay_mtu": node.underlay_mtu,
        "uplink_mtu": node.uplink_mtu,
    }


def link_doc(link: Link) -> Document:
    return {"a": link.a, "a_port": link.a_port, "b": link.b, "b_port": link.b_port}


def link_name(link: Link) -> str:
    return f"{link.a}:{link.a_port}--{link.b}:{link.b_port}"


def qos_doc(profile: QosProfile) -> Document:
    return {
        "name": profile.name,
        "rate_kbps": profile.rate_kbps,
        "burst_kb": profile.burst_kb,
        "direction": profile.direction,
    }


def attachment_doc(attachment: QosAttachment) -> Document:
    return {
        "profile": attachment.profile,
        "target": attachment.target,
        "meter_id": attachment.meter_id,
        "attached_by": attachment.attached_by,
    }


def namespace_doc(namespace: Namespace) -> Document:
    """A namespace with the labels it was given (the name label is set again on restore)."""
    labels = {k: v for k, v in namespace.labels if k != NAME_LABEL}
    return {"name": namespace.name, "tenant": namespace.tenant, "labels": labels}


def policy_doc(model: Model, policy_key: str) -> Document:
    """A NetworkPolicy as submitted, with the id its flows' cookies and conjunction ids derive from."""
    return {"id": model.policy_ids[policy_key], "policy": model.policies[policy_key].doc}


def endpoint_doc(endpoint: Endpoint) -> Document:
    """An endpoint; `namespace`, `labels` and `ports` are absent from records written before them."""
    return {
        "namespace": endpoint.namespace,
        "labels": dict(endpoint.labels),
        "ports": ports_json(endpoint.ports),
        "id": endpoint.id,
        "network": endpoint.network,
        "node": endpoint.node,
        "ip": str(endpoint.ip),
        "mac": int_to_mac(endpoint.mac),
        "port_name": endpoint.port_name,
        "ofport": endpoint.ofport,
        "num": endpoint.num,
    }


def all_records(model: Model) -> list[tuple[str, Document]]:
    """Every object of the model as (key, document): what a store holding this model contains."""
    records = [(key("nodes", n.name), node_doc(n)) for n in model.nodes.values()]
    records += [(key("links", link_name(link)), link_doc(link)) for link in model.links]
    records += [(key("tenants", t.name), tenant_doc(t)) for t in model.tenants.values()]
    records += [(key("namespaces", n.name), namespace_doc(n)) for n in model.namespaces.values()]
    records += [(key("networks", n.key), network_doc(n)) for n in model.networks.values()]
    records += [(key("qos", q.name), qos_doc(q)) for q in model.qos_profiles.values()]
    records += [(key("endpoints", e.id), endpoint_doc(e)) for e in model.endpoints.values()]
    records += [(key("qos-attachments", a.target), attachment_doc(a)) for a in model.qos_attachments.values()]
    records += [(key("networkpolicies", p.key), policy_doc(model, p.key)) for p in model.policies.values()]
    if model.network_id_mark > 1:  # a network was made once
        records.append((NETWORK_ID_MARK, network_id_mark_doc(model)))
    return records


def restore(records: Iterable[Record], *, gateway: GatewayConfig | None = None) -> Model:
    """Rebuild a model from its records, each object with the ids it had, under the gateway settings."""
    by_kind: dict[str, list[Record]] = {kind: [] for kind in KINDS}
    records = list(records)
    for record in records:
        kind = record.key[len(PREFIX) :].split("/", 1)[0]
        if kind in by_kind:
            by_kind[kind].append(record)
    model = Model()
    if gateway is not None:
        model.configure_gateway(gateway)
    for kind in KINDS:
        # In the order they were written; ids are explicit, so the order cannot change what they get.
        for record in sorted(by_kind[kind], key=lambda r: r.mod_revision):
            restore_one(model, kind, record.value, path=record.key)
    for record in records:
        if record.key == NETWORK_ID_MARK:
            model.raise_network_id_mark(int(record.value["next"]))
    return model


def network_id_mark_doc(model: Model) -> Document:
    return {"next": model.network_id_mark}


def restore_one(model: Model, kind: str, doc: Document, *, path: str) -> None:
    if kind == "nodes":
        model.add_node(
            doc["name"],
            tunnel_ip=doc["tunnel_ip"],
            uplink=doc["uplink"],
            datapath_id=doc["datapath_id"],
            underlay_mtu=doc.get("underlay_mtu"),  # absent in records written before nodes reported MTUs
            uplink_mtu=doc.get("uplink_mtu"),
            path=path,
        )
    elif kind == "links":
        model.add_link(doc["a"], doc["a_port"], doc["b"], doc["b_port"], path=path)
    elif kind == "tenants":
        model.add_tenant(doc["name"], tenant_id=doc["id"], path=path)
    elif kind == "networks":
        model.add_network(
            doc["tenant"],
            doc["name"],
            encap=doc["encap"],
            segment=doc["segment"],
            subnet=doc["subnet"],
            gateway=doc["gateway"],
            mtu=doc["mtu"],
            network_id=doc["id"],
            nat_outgoing=doc.get("nat_outgoing"),  # absent before networks had it: the default
            node_ports=doc.get("node_ports"),  # the same
            path=path,
        )
    elif kind == "qos":
        direction = doc.get("direction", "egress")  # stored before profiles had a direction: they metered egress
        model.add_qos(doc["name"], rate_kbps=doc["rate_kbps"], burst_kb=doc["burst_kb"], direction=direction, path=path)
    elif kind == "endpoints":
        model.add_endpoint(
            doc["id"],
            network=doc["network"],
            node=doc["node"],
            ip=doc["ip"],
            mac=doc["mac"],
            port_name=doc["port_name"],
            ofport=doc["ofport"],
            num=doc["num"],
            namespace=doc.get("namespace"),
            labels=doc.get("labels"),
            ports=doc.get("ports"),
            path=path,
        )
    elif kind == "namespaces":
        model.add_namespace(doc["name"], tenant=doc["tenant"], labels=doc.get("labels"), path=path)
    elif kind == "networkpolicies":  # the document as submitted; its key names the namespace
        namespace = path[len(PREFIX) :].split("/")[1]
        model.apply_policy(doc["policy"], namespace=namespace, policy_id=doc["id"], path=path)
    elif kind == "qos-attachments":
        by = doc.get("attached_by", "admin")  # records written before attachments had an owner: the admin's
        model.attach_qos(doc["profile"], doc["target"], meter_id=doc["meter_id"], attached_by=by, path=path)
