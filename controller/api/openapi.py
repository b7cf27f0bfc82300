"""The OpenAPI 3 description of the northbound API, served at /openapi.json.

A test checks that every route of `routes.ROUTES` is described here and nothing else is, and the fuzzing
test generates its requests from this document, so it cannot drift far from the code.
"""

from __future__ import annotations

from typing import Any

from topology.model import VLAN_RANGE, VNI_RANGE

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
NAME = {"type": "string", "minLength": 1, "pattern": r"^[^/\s]+$", "description": "no '/' and no whitespace"}
QOS_RATE = "kbit/s; each endpoint the profile covers gets its own meter with this rate (per endpoint, per direction)"
QOS_BURST = "kbit (kilobits, not kB): the meter's bucket; default: half a second of the rate"
QOS_DIRECTION = "egress: traffic from the pod; ingress: traffic to the pod; both (default): each with its own meter"


def _nullable(schema: Json) -> Json:
    return {**schema, "nullable": True}


def _network_create(encap: str, segment: str, bounds: tuple[int, int], *, mtu: str) -> Json:
    return _obj(
        {
            "name": NAME,
            "encap": {"type": "string", "enum": [encap]},
            segment: {"type": "integer", "minimum": bounds[0], "maximum": bounds[1]},
            "subnet": {"type": "string", "description": "IPv4 CIDR, e.g. 10.0.0.0/24"},
            "gateway": _nullable({"type": "string", "description": "default: the subnet's first host address"}),
            "mtu": _nullable({"type": "integer", "description": f"default: {mtu}"}),
        },
        required=("name", "encap", segment, "subnet"),
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
        {"name": STRING, "id": INTEGER, "networks": {"type": "array", "items": STRING}},
        required=("name", "id", "networks"),
    ),
    "TenantCreate": _obj({"name": NAME}, required=("name",)),
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
            "qos": _nullable(STRING),
        },
        required=("tenant", "name", "key", "encap", "segment", "vni", "vlan", "subnet", "gateway", "mtu", "id"),
    ),
    # One shape per encapsulation, so a generated or documented body is never half one and half the other.
    "NetworkCreate": {"oneOf": [_ref("VxlanNetworkCreate"), _ref("VlanNetworkCreate")]},
    "VxlanNetworkCreate": _network_create("vxlan", "vni", VNI_RANGE, mtu="1450"),
    "VlanNetworkCreate": _network_create("vlan", "vlan", VLAN_RANGE, mtu="1500"),
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
            "rate_kbps": {"type": "integer", "minimum": 1, "description": QOS_RATE},
            "burst_kb": {"type": "integer", "minimum": 1, "description": QOS_BURST},
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
        },
        required=("profile", "target", "kind", "meter_id"),
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
            "endpoints": {"type": "integer", "description": "admin only"},
            "switch": {**_ref("SwitchStatus"), "description": "admin only"},
        },
        required=("name", "tunnel_ip", "uplink", "datapath_id"),
    ),
    "NodeRegister": _obj(
        {
            "tunnel_ip": {"type": "string", "description": "IPv4 address VXLAN tunnels reach the node at"},
            "uplink": _nullable({"type": "string", "description": "the port carrying VLAN networks"}),
            "datapath_id": _nullable({"type": "integer", "description": "default: derived from the name"}),
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
            "a": {"type": "string", "description": "a node"},
            "a_port": {**NAME, "description": "the port of node `a`'s br-int the link plugs into"},
            "b": {"type": "string", "description": "another node"},
            "b_port": {**NAME, "description": "the port of node `b`'s br-int"},
        },
        required=("a", "a_port", "b", "b_port"),
    ),
    "Flows": _obj(
        {
            "node": STRING,
            "flows": {"type": "string", "description": "meters, groups and flows as ovs-ofctl text"},
            "counts": _obj({"flows": INTEGER, "groups": INTEGER, "meters": INTEGER}),
            "switch": _ref("SwitchStatus"),
        },
        required=("node", "flows", "counts", "switch"),
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
            "id": NAME,
            "network": {"type": "string", "description": "TENANT/NAME"},
            "node": STRING,
            "ip": _nullable({"type": "string", "description": "default: the lowest free address (IPAM)"}),
            "mac": _nullable({"type": "string", "description": "default: derived from network and IP"}),
            "port_name": _nullable({"type": "string", "maxLength": 15}),
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

PATHS: Json = {
    "/openapi.json": {"get": {**_op("this description", 200, {"type": "object"}), "security": []}},
    "/v1/tenants": {
        "get": _op("the tenants the caller may see", 200, _list("Tenant")),
        "post": _op("create a tenant (admin)", 201, _ref("Tenant"), body="TenantCreate"),
    },
    "/v1/tenants/{tenant}": {
        "get": _op("one tenant", 200, _ref("Tenant"), params=(TENANT,)),
        "delete": _op("delete a tenant without networks (admin)", 204, params=(TENANT,)),
    },
    "/v1/tenants/{tenant}/networks": {
        "get": _op("a tenant's networks", 200, _list("Network"), params=(TENANT,)),
        "post": _op("create a network", 201, _ref("Network"), body="NetworkCreate", params=(TENANT,)),
    },
    "/v1/tenants/{tenant}/networks/{network}": {
        "get": _op("one network", 200, _ref("Network"), params=(TENANT, NETWORK)),
        "delete": _op("delete a network without endpoints", 204, params=(TENANT, NETWORK)),
    },
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
            "register a node (admin; 201 when new, 200 when known)",
            201,
            _ref("Node"),
            body="NodeRegister",
            params=(NODE,),
        ),
    },
    "/v1/nodes/{node}/flows": {
        "get": _op("desired flows as ovs-ofctl text, and the switch (admin)", 200, _ref("Flows"), params=(NODE,)),
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
            "whether the endpoint's port is on its switch and its flows are installed; waits up to `wait` s",
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
}
PATHS["/v1/nodes/{node}"]["put"]["responses"]["200"] = {"description": "already known", "content": _json(_ref("Node"))}

SPEC: Json = {
    "openapi": "3.0.3",
    "info": {
        "title": "Tenet northbound API",
        "version": "1",
        "description": "Tenants, networks, QoS, nodes and endpoints of a Tenet controller. Bearer tokens: the "
        "cluster admin's see everything; a tenant's see only that tenant (other tenants' objects answer 404).",
    },
    "servers": [{"url": "/"}],
    "security": [{"bearer": []}],
    "paths": PATHS,
    "components": {
        "schemas": SCHEMAS,
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
    },
}
