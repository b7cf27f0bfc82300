"""Model objects as the API's JSON documents (the shapes `openapi.py` describes)."""

from __future__ import annotations

from typing import Any

from controller.api.auth import Principal
from topology.ipam import int_to_mac
from topology.model import Encap, Endpoint, Link, Model, Network, Node, QosAttachment, QosProfile, Tenant
from topology.namespaces import ports_json

Json = dict[str, Any]


def tenant_json(model: Model, tenant: Tenant) -> Json:
    return {
        "name": tenant.name,
        "id": tenant.id,
        "networks": sorted(n.name for n in model.networks_by_tenant[tenant.name].values()),
    }


def network_json(model: Model, network: Network) -> Json:
    attachment = model.qos_attachments.get(network.key)
    return {
        "tenant": network.tenant,
        "name": network.name,
        "key": network.key,
        "encap": network.encap.value,
        "segment": network.segment,
        "vni": network.segment if network.encap is Encap.VXLAN else None,
        "vlan": network.segment if network.encap is Encap.VLAN else None,
        "subnet": str(network.subnet),
        "gateway": str(network.gateway),
        "gateway_mac": int_to_mac(network.gateway_mac),
        "mtu": network.mtu,
        "id": network.id,
        "nat_outgoing": network.nat_outgoing,
        "node_ports": list(network.node_ports),
        "endpoints": len(model.endpoints_by_network[network.key]),
        "free_addresses": model.free_addresses(network.key),
        "qos": attachment.profile if attachment else None,
    }


def endpoint_json(model: Model, endpoint: Endpoint) -> Json:
    """Everything an agent needs to plumb the port: address, prefix, gateway, MTU, port name."""
    network = model.networks[endpoint.network]
    attachment = model.qos_for(endpoint)
    return {
        "id": endpoint.id,
        "tenant": endpoint.tenant,
        "network": endpoint.network,
        "node": endpoint.node,
        "ip": str(endpoint.ip),
        "prefix_len": network.subnet.prefixlen,
        "gateway": str(network.gateway),
        "mtu": network.mtu,
        "mac": endpoint.mac_text,
        "port_name": endpoint.port_name,
        "ofport": endpoint.ofport,
        "qos": attachment.profile if attachment else None,
        "namespace": endpoint.namespace,
        "labels": endpoint.label_map,
        "ports": ports_json(endpoint.ports),
    }


def qos_json(profile: QosProfile, attachments: list[QosAttachment]) -> Json:
    return {
        "name": profile.name,
        "rate_kbps": profile.rate_kbps,
        "burst_kb": profile.burst_kb,
        "direction": profile.direction,
        "attachments": sorted(a.target for a in attachments),
    }


def attachment_json(model: Model, attachment: QosAttachment) -> Json:
    kind = "network" if attachment.target in model.networks else "endpoint"
    return {
        "profile": attachment.profile,
        "target": attachment.target,
        "kind": kind,
        "meter_id": attachment.meter_id,
        "attached_by": attachment.attached_by,
    }


def node_json(model: Model, node: Node, principal: Principal, status: Json | None) -> Json:
    """Tenants see a node's identity; its MTUs (the admin's), how many endpoints it hosts and its switch's
    state are for the admin and the node's own token."""
    doc: Json = {
        "name": node.name,
        "tunnel_ip": str(node.tunnel_ip),
        "uplink": node.uplink,
        "datapath_id": node.datapath_id,
    }
    if principal.admin:
        doc["underlay_mtu"], doc["uplink_mtu"] = node.underlay_mtu, node.uplink_mtu
    if principal.manages(node.name):  # the admin, or the node's own token
        doc["endpoints"] = len(model.endpoints_by_node[node.name])
        doc["switch"] = status
    return doc


def link_json(model: Model, link: Link) -> Json:
    """A fabric link with its planned ofports and whether the switches report it up (operational state)."""
    return {
        "a": link.a,
        "a_port": link.a_port,
        "a_ofport": model.link_ports(link.a)[link.a_port],
        "b": link.b,
        "b_port": link.b_port,
        "b_ofport": model.link_ports(link.b)[link.b_port],
        "up": model.link_up(link),
    }
