"""The OpenAPI 3 description of the northbound API, served at /openapi.json.

A test checks that every route of `routes.ROUTES` is described here and nothing else is, and the fuzzing
test generates its requests from this document, so it cannot drift far from the code.
"""

from __future__ import annotations

from typing import Any

from topology.model import VLAN_RANGE, VNI_RANGE
from topology.mtu import MAX_NETWORK_MTU, MAX_NODE_MTU, MIN_MTU, VXLAN_OVERHEAD
from topology.values import MAX_NAME_LEN, MAX_PREFIX_LEN, MAX_SUBDOMAIN_LEN

Json = dict[str, Any]


def _ref(name: str) -> Json:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(properties: Json, *, required: tuple[str, ...] = (), closed: bool = True) -> Json:
    schema: Json = {"type": "object", "properties": properties}
    if required:  # OpenAPI 3.0 (JSON Schema draft 4) wants a non-empty list or none
        schema["required"] = list(required)
    if closed:
        schema["additionalProperties"] = False
    return schema


STRING = {"type": "string"}
INTEGER = {"type": "integer"}
BOOLEAN = {"type": "boolean"}
# The rules `topology.model` checks, so generated requests that follow the schema get past the syntax.
NAME = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_NAME_LEN,
    "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
    "description": "a DNS-1123 label: lowercase letters, digits and '-', a letter or digit at each end, at most 63",
}
SUBDOMAIN = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_SUBDOMAIN_LEN,
    "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
    "description": "a DNS-1123 subdomain: DNS-1123 labels joined by '.', at most 253 characters",
}
IFNAME = {
    "type": "string",
    "minLength": 1,
    "maxLength": 15,
    "pattern": r"^[!-.0-9;-~]+$",
    "description": "a Linux interface name: at most 15 characters, printable ASCII without '/', ':' or spaces",
}
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
IPV4 = {"type": "string", "pattern": rf"^({_OCTET}\.){{3}}{_OCTET}$", "description": "IPv4, dotted decimal"}
SUBNET = {
    "type": "string",
    "pattern": rf"^({_OCTET}\.){{3}}{_OCTET}/([1-9]|[12][0-9]|30)$",
    "description": f"IPv4 CIDR like 10.1.0.0/24: no host bits set, a prefix length of at most /{MAX_PREFIX_LEN}, "
    "unicast (not in 0.0.0.0/8, 127.0.0.0/8, 224.0.0.0/4 or 240.0.0.0/4)",
}
MAC = {
    "type": "string",
    "pattern": r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$",
    "description": "unicast, like 02:00:00:00:00:0a",
}
QOS_RATE = "kbit/s; each endpoint the profile covers gets its own meter with this rate (per endpoint, per direction)"
QOS_BURST = "kbit (kilobits, not kB): the meter's bucket; default: half a second of the rate"
QOS_DIRECTION = "egress: traffic from the pod; ingress: traffic to the pod; both (default): each with its own meter"


def _nullable(schema: Json) -> Json:
    return {**schema, "nullable": True}


NAT_OUTGOING: Json = {
    "type": "boolean",
    "description": "egress beyond the cluster with SNAT through the node's gateway port; default: on "
    "for the cluster network, off for any other",
}


NODE_PORT: Json = {"type": "string", "pattern": "^(tcp|udp)/[0-9]+$", "description": "PROTOCOL/PORT, port 1..65535"}
NODE_PORTS: Json = {
    "oneOf": [{"type": "array", "items": NODE_PORT}, {"type": "string", "enum": ["none"]}],
    "description": "ports of its node's address the network's pods may reach, SNATed to its transit address "
    "(the cluster admin's token only); [] or none: none (the default)",
}


def _network_create(encap: str, segment: str, bounds: tuple[int, int], *, mtu: str, max_mtu: int) -> Json:
    return _obj(
        {
            "name": NAME,
            "encap": {"type": "string", "enum": [encap]},
            segment: _nullable(
                {
                    "type": "integer",
                    "minimum": bounds[0],
                    "maximum": bounds[1],
                    "description": "a tenant token: one of the tenants' pool (GET /v1/policy); "
                    "default: the pool's lowest free one",
                }
            ),
            "subnet": SUBNET,
            "gateway": _nullable({**IPV4, "description": "a host address of the subnet; default: its first"}),
            "mtu": _nullable(
                {
                    "type": "integer",
                    "minimum": MIN_MTU,
                    "maximum": max_mtu,
                    "description": f"bytes; default: {mtu}, the tenant's other networks' MTU if it has any; at most "
                    "what every node's underlay (VXLAN: minus 50) or uplink (VLAN) carries",
                }
            ),
            "nat_outgoing": _nullable(NAT_OUTGOING),
            "node_ports": _nullable(NODE_PORTS),
        },
        required=("name", "encap", "subnet"),
    )


QUOTA = _obj(
    {
        "networks": _nullable({"type": "integer", "minimum": 0, "description": "null: no limit (or the default)"}),
        "endpoints": _nullable({"type": "integer", "minimum": 0, "description": "null: no limit (or the default)"}),
    },
)


SCHEMAS: Json = {
    "Error": _obj(
        {
            "error": _obj(
                {"message": STRING, "field": _nullable(STRING)},
                required=("message", "field"),
            )
        },
        required=("error",),
    ),
    "Tenant": _obj(
        {
            "name": STRING,
            "id": INTEGER,
            "networks": {"type": "array", "items": STRING},
            "quota": {**QUOTA, "description": "the tenant's own quota where the admin set one, else the default"},
            "usage": {**QUOTA, "description": "how many networks and endpoints the tenant holds"},
        },
        required=("name", "id", "networks", "quota", "usage"),
    ),
    "TenantCreate": _obj({"name": NAME}, required=("name",)),
    "TenantUpdate": _obj(
        {"quota": {**QUOTA, "description": "null in a field: the default of the controller's settings"}},
        required=("quota",),
    ),
    "Policy": _obj(
        {
            "vlan_pool": {"type": "string", "description": "VLAN ids tenants may use, e.g. 100-199"},
            "vni_pool": {"type": "string", "description": "VNIs tenants may use, e.g. 5000-9999"},
            "quota": {**QUOTA, "description": "the default quota of a tenant without its own"},
        },
        required=("vlan_pool", "vni_pool", "quota"),
    ),
    "Network": _obj(
        {
            "tenant": STRING,
            "name": STRING,
            "key": {"type": "string", "description": "TENANT/NAME"},
            "encap": {"type": "string", "enum": ["vxlan", "vlan"]},
            "segment": {"type": "integer", "description": "the VNI or the VLAN id"},
            "vni": _nullable(INTEGER),
            "vlan": _nullable(INTEGER),
            "subnet": STRING,
            "gateway": STRING,
            "gateway_mac": STRING,
            "mtu": INTEGER,
            "id": INTEGER,
            "endpoints": INTEGER,
            "free_addresses": {"type": "integer", "description": "addresses IPAM can still hand out"},
            "qos": _nullable(STRING),
            "nat_outgoing": BOOLEAN,
            "node_ports": {"type": "array", "items": NODE_PORT},
        },
        required=("tenant", "name", "key", "encap", "segment", "vni", "vlan", "subnet", "gateway", "mtu", "id"),
    ),
    "NetworkUpdate": _obj({"nat_outgoing": NAT_OUTGOING, "node_ports": NODE_PORTS}),
    "Gateway": _obj(
        {
            "cluster_network": _nullable({"type": "string", "description": "TENANT/NAME; null: none set up"}),
            "cluster_subnet": _nullable(STRING),
            "transit_subnet": _nullable(STRING),
            "gateway": _nullable({"type": "string", "description": "the cluster network's gateway address"}),
            "mtu": _nullable({"type": "integer", "description": "the cluster network's MTU, bytes"}),
            "nat_outgoing": _nullable(
                {"type": "boolean", "description": "the cluster network's: nodes masquerade its pods to the outside"}
            ),
            "node_ports": {
                "type": "array",
                "items": _obj(
                    {"network": STRING, "transit_ip": STRING, "ports": {"type": "array", "items": NODE_PORT}},
                    required=("network", "transit_ip", "ports"),
                ),
                "description": "the networks with node ports open, their transit addresses and ports",
            },
        },
        required=("cluster_network", "cluster_subnet", "transit_subnet", "gateway", "mtu"),
    ),
    # One shape per encapsulation, so a generated or documented body is never half one and half the other.
    "NetworkCreate": {"oneOf": [_ref("VxlanNetworkCreate"), _ref("VlanNetworkCreate")]},
    "VxlanNetworkCreate": _network_create(
        "vxlan", "vni", VNI_RANGE, mtu="1450", max_mtu=MAX_NETWORK_MTU - VXLAN_OVERHEAD
    ),
    "VlanNetworkCreate": _network_create("vlan", "vlan", VLAN_RANGE, mtu="1450", max_mtu=MAX_NETWORK_MTU),
    "QosProfile": _obj(
        {
            "name": STRING,
            "rate_kbps": {**INTEGER, "description": QOS_RATE},
            "burst_kb": {**INTEGER, "description": QOS_BURST},
            "direction": {"type": "string", "enum": ["egress", "ingress", "both"], "description": QOS_DIRECTION},
            "attachments": {"type": "array", "items": STRING, "description": "targets the caller may see"},
        },
        required=("name", "rate_kbps", "burst_kb", "direction", "attachments"),
    ),
    "QosCreate": _obj(
        {
            "name": NAME,
            "rate_kbps": {"type": "integer", "minimum": 1, "maximum": 100_000_000, "description": QOS_RATE},
            "burst_kb": {"type": "integer", "minimum": 1, "maximum": 10_000_000, "description": QOS_BURST},
            "direction": {"type": "string", "enum": ["egress", "ingress", "both"], "description": QOS_DIRECTION},
        },
        required=("name", "rate_kbps"),
    ),
    "QosAttach": _obj(
        {"target": {"type": "string", "description": "a network TENANT/NAME or an endpoint id"}},
        required=("target",),
    ),
    "QosAttachment": _obj(
        {
            "profile": STRING,
            "target": STRING,
            "kind": {"type": "string", "enum": ["network", "endpoint"]},
            "meter_id": {
                **INTEGER,
                "description": "the attachment's own id; the switches' meters are per endpoint: its ofport"
                " (egress) and ofport + 65536 (ingress)",
            },
            "attached_by": {
                "type": "string",
                "enum": ["admin", "tenant"],
                "description": "a tenant may detach only what a tenant attached",
            },
        },
        required=("profile", "target", "kind", "meter_id", "attached_by"),
    ),
    "SwitchStatus": {
        "type": "object",
        "description": "what the OpenFlow app reports, at least `connected`",
        "properties": {
            "connected": {"type": "boolean"},
            "in_sync": _nullable({"type": "boolean"}),
            "errors": {"type": "array", "items": {}},
        },
        "required": ["connected"],
    },
    "Node": _obj(
        {
            "name": STRING,
            "tunnel_ip": STRING,
            "uplink": _nullable(STRING),
            "datapath_id": INTEGER,
            "underlay_mtu": {"type": "integer", "description": "bytes, of the tunnel_ip's interface (admin only)"},
            "uplink_mtu": _nullable({"type": "integer", "description": "bytes, of the uplink; null: as the underlay"}),
            "endpoints": {"type": "integer", "description": "admin and the node's own token only"},
            "switch": {**_ref("SwitchStatus"), "description": "admin and the node's own token only"},
        },
        required=("name", "tunnel_ip", "uplink", "datapath_id"),
    ),
    "NodeRegister": _obj(
        {
            "tunnel_ip": {**IPV4, "description": "unicast IPv4 address VXLAN tunnels reach the node at"},
            "uplink": _nullable(
                {**IFNAME, "description": "the port carrying VLAN networks; not tenet-*, br-int or br-phy"}
            ),
            "datapath_id": _nullable(
                {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 2**64 - 1,
                    "description": "default: derived from the name; a node token may keep its node's or use "
                    "0x7E000000000000 | its tunnel IP, other changes are the admin's",
                }
            ),
            "underlay_mtu": _nullable(
                {
                    "type": "integer",
                    "minimum": MIN_MTU,
                    "maximum": MAX_NODE_MTU,
                    "description": "bytes, of the interface holding tunnel_ip (default 1500)",
                }
            ),
            "uplink_mtu": _nullable(
                {
                    "type": "integer",
                    "minimum": MIN_MTU,
                    "maximum": MAX_NODE_MTU,
                    "description": "bytes, of the uplink (default: underlay)",
                }
            ),
        },
        required=("tunnel_ip",),
    ),
    "Link": _obj(
        {
            "a": STRING,
            "a_port": STRING,
            "a_ofport": INTEGER,
            "b": STRING,
            "b_port": STRING,
            "b_ofport": INTEGER,
            "up": {"type": "boolean", "description": "both ends' switches report the port up (or never reported)"},
        },
        required=("a", "a_port", "a_ofport", "b", "b_port", "b_ofport", "up"),
    ),
    "LinkCreate": _obj(
        {
            "a": {**SUBDOMAIN, "description": "a node"},
            "a_port": {**IFNAME, "description": "the port of node `a`'s br-int the link plugs into"},
            "b": {**SUBDOMAIN, "description": "another node"},
            "b_port": {**IFNAME, "description": "the port of node `b`'s br-int"},
        },
        required=("a", "a_port", "b", "b_port"),
    ),
    "Flows": _obj(
        {
            "node": STRING,
            "flows": {"type": "string", "description": "meters, groups and flows as ovs-ofctl text"},
            "counts": _obj({"flows": INTEGER, "groups": INTEGER, "meters": INTEGER}),
            "switch": _ref("SwitchStatus"),
            "verify": {**_ref("Verify"), "description": "with ?verify=1 only"},
        },
        required=("node", "flows", "counts", "switch"),
    ),
    "Verify": _obj(
        {
            "checked": {"type": "boolean", "description": "false: the switch could not be dumped (see reason)"},
            "reason": STRING,
            "in_sync": {"type": "boolean", "description": "the switch holds exactly the desired state"},
            "missing": {"type": "array", "items": STRING, "description": "desired, not on the switch (ovs-ofctl)"},
            "extra": {"type": "array", "items": STRING, "description": "on the switch, not desired (ovs-ofctl)"},
            "different": {"type": "array", "items": _obj({"want": STRING, "have": STRING})},
            "switch_counts": _obj({"flows": INTEGER, "groups": INTEGER, "meters": INTEGER}),
            "dump_ms": INTEGER,
        },
        required=("checked",),
    ),
    "Endpoint": _obj(
        {
            "id": STRING,
            "tenant": STRING,
            "network": STRING,
            "node": STRING,
            "ip": STRING,
            "prefix_len": INTEGER,
            "gateway": STRING,
            "mtu": INTEGER,
            "mac": STRING,
            "port_name": STRING,
            "ofport": INTEGER,
            "qos": _nullable(STRING),
        },
        required=("id", "tenant", "network", "node", "ip", "prefix_len", "gateway", "mtu", "mac", "port_name"),
    ),
    "EndpointCreate": _obj(
        {
            "id": SUBDOMAIN,
            "network": {"type": "string", "pattern": r"^[a-z0-9-]+/[a-z0-9-]+$", "description": "TENANT/NAME"},
            "node": SUBDOMAIN,
            "ip": _nullable({**IPV4, "description": "default: the lowest free address (IPAM)"}),
            "mac": _nullable({**MAC, "description": "default: derived from network and IP"}),
            "port_name": _nullable(
                {
                    **IFNAME,
                    "description": "node or admin token only (default: derived from the id); never an "
                    "infrastructure port's name (tenet-*, br-int, br-phy, the uplink, fabric link ports)",
                }
            ),
        },
        required=("id", "network", "node"),
    ),
}


SCHEMAS["EndpointReady"] = _obj(
    {"ready": {"type": "boolean"}, "reason": _nullable(STRING), "ofport": _nullable(INTEGER)},
    required=("ready", "reason", "ofport"),
)
SCHEMAS["Health"] = _obj({"ok": {"type": "boolean"}, "switches": INTEGER}, required=("ok", "switches"))


def _json(schema: Json) -> Json:
    return {"application/json": {"schema": schema}}


def _param(name: str, where: str = "path", description: str = "") -> Json:
    param: Json = {"name": name, "in": where, "required": where == "path", "schema": STRING}
    if description:
        param["description"] = description
    return param


def _op(summary: str, ok: int, schema: Json | None = None, *, body: str | None = None, params: tuple = ()) -> Json:
    """An operation: its success answer, and errors as the one documented Error shape."""
    success: Json = {"description": "success"}
    if schema is not None:
        success["content"] = _json(schema)
    operation: Json = {
        "summary": summary,
        "parameters": list(params),
        "responses": {str(ok): success, "default": {"description": "an error", "content": _json(_ref("Error"))}},
    }
    if body is not None:
        operation["requestBody"] = {"required": True, "content": _json(_ref(body))}
    return operation


def _list(name: str) -> Json:
    return {"type": "array", "items": _ref(name)}


TENANT, NETWORK, PROFILE = _param("tenant"), _param("network"), _param("profile")
NODE, ENDPOINT = _param("node"), _param("endpoint")
NEW_NODE = {**NODE, "schema": SUBDOMAIN}

PATHS: Json = {
    "/openapi.json": {"get": {**_op("this description", 200, {"type": "object"}), "security": []}},
    "/v1/tenants": {
        "get": _op("the tenants the caller may see", 200, _list("Tenant")),
        "post": _op("create a tenant (admin)", 201, _ref("Tenant"), body="TenantCreate"),
    },
    "/v1/tenants/{tenant}": {
        "get": _op("one tenant", 200, _ref("Tenant"), params=(TENANT,)),
        "put": _op("set the tenant's quota (admin)", 200, _ref("Tenant"), body="TenantUpdate", params=(TENANT,)),
        "delete": _op("delete a tenant without networks (admin)", 204, params=(TENANT,)),
    },
    "/v1/tenants/{tenant}/networks": {
        "get": _op("a tenant's networks", 200, _list("Network"), params=(TENANT,)),
        "post": _op("create a network", 201, _ref("Network"), body="NetworkCreate", params=(TENANT,)),
    },
    "/v1/tenants/{tenant}/networks/{network}": {
        "get": _op("one network", 200, _ref("Network"), params=(TENANT, NETWORK)),
        "delete": _op("delete a network without endpoints", 204, params=(TENANT, NETWORK)),
        "patch": _op(
            "turn egress SNAT on or off", 200, _ref("Network"), body="NetworkUpdate", params=(TENANT, NETWORK)
        ),
    },
    "/v1/gateway": {"get": _op("the cluster network, as nodes' gateway ports need it", 200, _ref("Gateway"))},
    "/v1/networks": {
        "get": _op(
            "every network the caller may see",
            200,
            _list("Network"),
            params=(_param("tenant", "query", "only this tenant's"),),
        ),
    },
    "/v1/qos": {
        "get": _op("QoS profiles", 200, _list("QosProfile")),
        "post": _op("create a QoS profile (admin)", 201, _ref("QosProfile"), body="QosCreate"),
    },
    "/v1/qos/{profile}": {
        "get": _op("one QoS profile", 200, _ref("QosProfile"), params=(PROFILE,)),
        "delete": _op("delete a QoS profile attached nowhere (admin)", 204, params=(PROFILE,)),
    },
    "/v1/qos/{profile}/attachments": {
        "post": _op(
            "meter a network or an endpoint with the profile",
            201,
            _ref("QosAttachment"),
            body="QosAttach",
            params=(PROFILE,),
        ),
    },
    "/v1/qos-attachments": {
        "get": _op(
            "QoS attachments the caller may see",
            200,
            _list("QosAttachment"),
            params=(_param("profile", "query", "only this profile's"),),
        ),
        "delete": _op(
            "detach QoS from a target",
            204,
            params=({**_param("target", "query", "TENANT/NETWORK or ENDPOINT"), "required": True},),
        ),
    },
    "/v1/nodes": {"get": _op("nodes", 200, _list("Node"))},
    "/v1/nodes/{node}": {
        "get": _op("one node", 200, _ref("Node"), params=(NODE,)),
        "put": _op(
            "register or update a node (its own node token or admin; 201 when new, 200 when known)",
            201,
            _ref("Node"),
            body="NodeRegister",
            params=(NEW_NODE,),
        ),
    },
    "/v1/nodes/{node}/flows": {
        "get": _op(
            "desired flows as ovs-ofctl text, and the switch (admin); with verify=1 the switch is dumped now and "
            "compared with them",
            200,
            _ref("Flows"),
            params=(NODE, _param("verify", "query", "1: dump the switch now and list the differences")),
        ),
    },
    "/v1/links": {
        "get": _op("fabric links between nodes' bridges, with their state (admin)", 200, _list("Link")),
        "post": _op(
            "add a fabric link; its ports get the next planned link ofports on each node (admin)",
            201,
            _ref("Link"),
            body="LinkCreate",
        ),
    },
    "/v1/endpoints": {
        "get": _op(
            "endpoints the caller may see",
            200,
            _list("Endpoint"),
            params=(_param("network", "query", "only this network's"), _param("node", "query", "only this node's")),
        ),
        "post": _op("create an endpoint, allocating IP and MAC", 201, _ref("Endpoint"), body="EndpointCreate"),
    },
    "/v1/endpoints/{endpoint}": {
        "get": _op("one endpoint", 200, _ref("Endpoint"), params=(ENDPOINT,)),
        "delete": _op("delete an endpoint", 204, params=(ENDPOINT,)),
    },
    "/v1/endpoints/{endpoint}/ready": {
        "get": _op(
            "whether the endpoint's port is on its switch and its flows are installed; waits up to `wait` s "
            "(503 with Retry-After when as many waits as the controller serves at once, as tenant tokens may "
            "hold together, or as one tenant may hold are in progress)",
            200,
            _ref("EndpointReady"),
            params=(
                ENDPOINT,
                {
                    "name": "wait",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "number", "minimum": 0, "maximum": 60},
                    "description": "seconds to wait for readiness before answering (default 0)",
                },
            ),
        ),
    },
    "/v1/health": {"get": _op("the controller answers (any valid token)", 200, _ref("Health"))},
    "/v1/policy": {"get": _op("the tenants' segment pools and the default quota", 200, _ref("Policy"))},
}
PATHS["/v1/nodes/{node}"]["put"]["responses"]["200"] = {"description": "already known", "content": _json(_ref("Node"))}

# Kubernetes namespaces, pod labels and named ports, NetworkPolicies (controller/api/netpol_routes.py).
LABELS = {
    "type": "object",
    "additionalProperties": STRING,
    "description": "Kubernetes labels: qualified-name keys, values of at most 63 characters",
}
CONTAINER_PORT = _obj(
    {
        "name": {"type": "string", "description": "IANA_SVC_NAME: at most 15 of a-z, 0-9, '-'"},
        "port": {"type": "integer", "minimum": 1, "maximum": 65535},
        "protocol": {"type": "string", "enum": ["TCP", "UDP", "SCTP"], "description": "default TCP"},
    },
    required=("name", "port"),
)
SCHEMAS["Endpoint"]["properties"].update(
    {
        "namespace": _nullable({"type": "string", "description": "its Kubernetes namespace, if any"}),
        "labels": LABELS,
        "ports": {"type": "array", "items": CONTAINER_PORT, "description": "named container ports"},
    }
)
SCHEMAS["EndpointCreate"]["properties"].update(
    {
        "namespace": _nullable({"type": "string", "description": "a namespace of the network's tenant"}),
        "labels": _nullable(LABELS),
        "ports": _nullable({"type": "array", "items": CONTAINER_PORT, "description": "named container ports"}),
    }
)
SCHEMAS["Namespace"] = _obj(
    {
        "name": STRING,
        "tenant": STRING,
        "labels": {**LABELS, "description": "kubernetes.io/metadata.name is always the namespace's name"},
        "endpoints": INTEGER,
        "networkpolicies": {"type": "array", "items": STRING},
    },
    required=("name", "tenant", "labels", "endpoints", "networkpolicies"),
)
SCHEMAS["NamespaceCreate"] = _obj(
    {
        "name": {"type": "string", "description": "an RFC 1123 label"},
        "tenant": {"type": "string", "description": "a tenant the caller may see"},
        "labels": _nullable(LABELS),
    },
    required=("name", "tenant"),
)
SCHEMAS["Labels"] = _obj({"labels": LABELS}, required=("labels",))
SCHEMAS["NetworkPolicy"] = {
    "type": "object",
    "description": "a Kubernetes NetworkPolicy (networking.k8s.io/v1), validated as the Kubernetes API server "
    "validates it and kept as submitted; errors name the field (spec.ingress[0].ports[1].endPort)",
    "properties": {
        "apiVersion": {"type": "string", "enum": ["networking.k8s.io/v1"]},
        "kind": {"type": "string", "enum": ["NetworkPolicy"]},
        "metadata": {"type": "object", "properties": {"name": STRING, "namespace": STRING}},
        "spec": {"type": "object", "properties": {"podSelector": {"type": "object"}}},
    },
    "required": ["apiVersion", "kind", "metadata"],
}
SCHEMAS["NetworkPolicyBatch"] = _obj(
    {
        "items": {"type": "array", "minItems": 1, "items": _ref("NetworkPolicy")},
        "namespace": {"type": "string", "description": "fills or must equal each document's metadata.namespace"},
    },
    required=("items",),
)
SCHEMAS["NetworkPolicyResults"] = _obj(
    {
        "items": {
            "type": "array",
            "items": _obj(
                {
                    "namespace": STRING,
                    "name": STRING,
                    "result": {"type": "string", "enum": ["created", "configured", "unchanged"]},
                },
                required=("namespace", "name", "result"),
            ),
        }
    },
    required=("items",),
)
NAMESPACE, POLICY_NAME = _param("namespace"), _param("name")
WATCHED = "; with Kubernetes watched, admin only (403 for tenant tokens: namespaces come from Kubernetes)"
PATHS.update(
    {
        "/v1/namespaces": {
            "get": _op(
                "the namespaces the caller may see",
                200,
                _list("Namespace"),
                params=(_param("tenant", "query", "only this tenant's"),),
            ),
            "post": _op(
                "create a namespace of a tenant" + WATCHED,
                201,
                _ref("Namespace"),
                body="NamespaceCreate",
            ),
        },
        "/v1/namespaces/{namespace}": {
            "get": _op("one namespace", 200, _ref("Namespace"), params=(NAMESPACE,)),
            "patch": _op(
                "replace the namespace's labels" + WATCHED,
                200,
                _ref("Namespace"),
                body="Labels",
                params=(NAMESPACE,),
            ),
            "delete": _op(
                "delete a namespace without endpoints or NetworkPolicies" + WATCHED,
                204,
                params=(NAMESPACE,),
            ),
        },
        "/v1/networkpolicies": {
            "post": _op(
                "create or replace several NetworkPolicies in one change, all or nothing; an error names the "
                "document (document 2: metadata.namespace: unknown namespace 'x') and nothing is applied",
                200,
                _ref("NetworkPolicyResults"),
                body="NetworkPolicyBatch",
            ),
        },
        "/v1/namespaces/{namespace}/networkpolicies": {
            "get": _op(
                "the namespace's NetworkPolicies, as submitted", 200, _list("NetworkPolicy"), params=(NAMESPACE,)
            ),
        },
        "/v1/namespaces/{namespace}/networkpolicies/{name}": {
            "get": _op("one NetworkPolicy, as submitted", 200, _ref("NetworkPolicy"), params=(NAMESPACE, POLICY_NAME)),
            "put": _op(
                "create (201) or replace (200) a NetworkPolicy",
                201,
                _ref("NetworkPolicy"),
                body="NetworkPolicy",
                params=(NAMESPACE, POLICY_NAME),
            ),
            "delete": _op("delete a NetworkPolicy", 204, params=(NAMESPACE, POLICY_NAME)),
        },
    }
)
PATHS["/v1/namespaces/{namespace}/networkpolicies/{name}"]["put"]["responses"]["200"] = {
    "description": "replaced",
    "content": _json(_ref("NetworkPolicy")),
}
SCHEMAS["EndpointUpdate"] = {
    **_obj(
        {"labels": LABELS, "ports": {"type": "array", "items": CONTAINER_PORT, "description": "named container ports"}}
    ),
    "description": "labels, ports or both (at least one); each replaces what the endpoint had, all or nothing",
}
PATHS["/v1/endpoints/{endpoint}"]["patch"] = _op(
    "replace the endpoint's labels and/or named container ports (admin or its tenant)",
    200,
    _ref("Endpoint"),
    body="EndpointUpdate",
    params=(ENDPOINT,),
)

SPEC: Json = {
    "openapi": "3.0.3",
    "info": {
        "title": "Tenet northbound API",
        "version": "1",
        "description": "Tenants, networks, QoS, nodes, endpoints, namespaces and NetworkPolicies of a Tenet "
        "controller. Bearer tokens: the "
        "cluster admin's see everything; a tenant's see only that tenant (other tenants' objects answer 404); a "
        "node's (the node agent's) register that node and manage the endpoints on it, nothing else (403).",
    },
    "servers": [{"url": "/"}],
    "security": [{"bearer": []}],
    "paths": PATHS,
    "components": {
        "schemas": SCHEMAS,
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
    },
}
