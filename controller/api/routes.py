"""The API's resources: one handler per route, and the route table the router and the OpenAPI test share.

Every change goes through a `Service` method; reads and the visibility checks before a change hold
`service.lock` (reentrant), so what a handler checked is still true when the service applies the change.
Objects of another tenant answer exactly like objects that do not exist (404, or 400 where a body refers to
one). A node token may use only `NODE_HANDLERS`, on its own node: an endpoint or node of another node
answers 403. What a tenant token may not do (admin-only operations, infrastructure fields such as an
endpoint's port name, a QoS cap the admin set) answers 403 naming what needs which token.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any
from urllib.parse import quote

from controller.api import views
from controller.api.auth import Principal
from controller.api.http import Body, HttpError, Request, Response, forbidden, not_found
from controller.api.netpol_routes import NETPOL_HANDLERS, NetpolRoutes
from controller.api.openapi import SPEC
from controller.openflow.ofctl import render_state
from controller.policy import Quota
from controller.service import Service
from topology.errors import ValidationError
from topology.model import (
    DERIVED_DATAPATH_BASE,
    Encap,
    Endpoint,
    Model,
    Network,
    QosAttachment,
    QosProfile,
    Tenant,
    default_datapath_id,
    derived_datapath_id,
)

log = logging.getLogger(__name__)
SwitchStatus = Callable[[str], dict[str, Any]]
# (node, port name, planned ofport, change sequence the switch must include, seconds to wait) -> readiness
EndpointReadiness = Callable[[str, str, int, int, float], dict[str, Any]]
# (node, seconds to wait) -> a fresh dump of the switch compared with the desired state (controller.app.verify)
SwitchVerify = Callable[[str, float], dict[str, Any]]
VERIFY_TIMEOUT = 20.0  # s: below the client's 30 s, so a slow switch is answered as such
MAX_READY_WAIT = 60.0


@dataclass(frozen=True)
class Route:
    method: str
    template: str  # "/v1/tenants/{tenant}"; a parameter is one path segment
    handler: str  # the name of an `Api` method
    auth: bool = True


ROUTES = (
    Route("GET", "/openapi.json", "openapi", auth=False),
    Route("GET", "/v1/tenants", "list_tenants"),
    Route("POST", "/v1/tenants", "create_tenant"),
    Route("GET", "/v1/tenants/{tenant}", "show_tenant"),
    Route("PUT", "/v1/tenants/{tenant}", "update_tenant"),
    Route("DELETE", "/v1/tenants/{tenant}", "delete_tenant"),
    Route("GET", "/v1/tenants/{tenant}/networks", "list_tenant_networks"),
    Route("POST", "/v1/tenants/{tenant}/networks", "create_network"),
    Route("GET", "/v1/tenants/{tenant}/networks/{network}", "show_network"),
    Route("DELETE", "/v1/tenants/{tenant}/networks/{network}", "delete_network"),
    Route("PATCH", "/v1/tenants/{tenant}/networks/{network}", "update_network"),
    Route("GET", "/v1/gateway", "show_gateway"),
    Route("GET", "/v1/networks", "list_networks"),
    Route("GET", "/v1/qos", "list_qos"),
    Route("POST", "/v1/qos", "create_qos"),
    Route("GET", "/v1/qos/{profile}", "show_qos"),
    Route("DELETE", "/v1/qos/{profile}", "delete_qos"),
    Route("POST", "/v1/qos/{profile}/attachments", "attach_qos"),
    Route("GET", "/v1/qos-attachments", "list_attachments"),
    Route("DELETE", "/v1/qos-attachments", "detach_qos"),
    Route("GET", "/v1/nodes", "list_nodes"),
    Route("GET", "/v1/nodes/{node}", "show_node"),
    Route("PUT", "/v1/nodes/{node}", "register_node"),
    Route("GET", "/v1/nodes/{node}/flows", "node_flows"),
    Route("GET", "/v1/links", "list_links"),
    Route("POST", "/v1/links", "create_link"),
    Route("GET", "/v1/endpoints", "list_endpoints"),
    Route("POST", "/v1/endpoints", "create_endpoint"),
    Route("GET", "/v1/endpoints/{endpoint}", "show_endpoint"),
    Route("DELETE", "/v1/endpoints/{endpoint}", "delete_endpoint"),
    Route("GET", "/v1/endpoints/{endpoint}/ready", "endpoint_ready"),
    Route("GET", "/v1/health", "health"),
    Route("GET", "/v1/policy", "show_policy"),
    *(Route(method, template, handler) for method, template, handler in NETPOL_HANDLERS),
)
# What a node token (the node agent's) may call; each handler limits it to its own node.
NODE_HANDLERS = frozenset(
    {
        "openapi",
        "list_nodes",
        "show_node",
        "register_node",
        "list_endpoints",
        "show_network",
        "show_gateway",
        "create_endpoint",
        "show_endpoint",
        "delete_endpoint",
        "endpoint_ready",
        "health",
    }
)

# A quoted network key in a model message, e.g. "VNI 100 is already used by network 'red/web'". Not after
# "unknown": that key is the caller's own words, and an unknown key must read like one that is hidden.
_SECONDS = re.compile(r"[0-9]+(\.[0-9]+)?")
_NETWORK_NAME = re.compile(r"""(?<!unknown )network (['"])([^'"/]+)/[^'"]*\1""")
# The model's words for an endpoint's namespace of another tenant than its network's (topology.namespaces):
# a tenant token that does not see that namespace is told it is unknown, as a missing one is.
_FOREIGN_NAMESPACE = re.compile(r"namespace '([^']+)' belongs to another tenant than the network's")


def default_switch_status(_node: str) -> dict[str, Any]:
    return {"connected": False}


def default_verify(_node: str, _wait: float) -> dict[str, Any]:
    return {"checked": False, "reason": "this controller runs without switches"}


def default_readiness(_node: str, _port: str, _ofport: int, _sequence: int, _wait: float) -> dict[str, Any]:
    return {"ready": False, "reason": "this controller runs without switches", "ofport": None}


class Api(NetpolRoutes):
    def __init__(
        self,
        service: Service,
        *,
        switch_status: SwitchStatus | None = None,
        readiness: EndpointReadiness | None = None,
        verify: SwitchVerify | None = None,
    ) -> None:
        self.service = service
        self.switch_status = switch_status or default_switch_status
        self.readiness = readiness or default_readiness
        self.verify = verify or default_verify
        self.k8s: Any = None  # controller.k8s.Kubernetes when the controller watches a cluster
        # The change sequence that created each endpoint: its flows are on the switch once the switch has it.
        self.created_at: dict[str, int] = {}

    @property
    def model(self) -> Model:
        return self.service.model  # asked each time: `Service.restore` replaces the model

    def redact(self, error: ValidationError, request: Request) -> ValidationError:
        """A model message may name another tenant's network (a VNI in use) or tell that a namespace is
        another tenant's; a tenant token must learn neither: the network is "a network of another tenant",
        the namespace reads "unknown namespace 'NAME'", word for word what a missing one gets. The admin and
        node tokens (a node's agent reads any network it may host) get the model's words."""
        if request.principal.admin or request.principal.node_only:
            return error

        def hide(match: re.Match[str]) -> str:
            return match.group(0) if request.principal.sees(match.group(2)) else "a network of another tenant"

        def unknown(match: re.Match[str]) -> str:
            found = self.model.namespaces.get(match.group(1))
            visible = found is not None and request.principal.sees(found.tenant)
            return match.group(0) if visible else f"unknown namespace {match.group(1)!r}"

        message = _FOREIGN_NAMESPACE.sub(unknown, _NETWORK_NAME.sub(hide, error.message))
        if message == error.message:
            return error
        return ValidationError(error.path, message, conflict=error.conflict)

    # --- lookups that hide other tenants ------------------------------------------------------------

    def tenant(self, request: Request, name: str) -> Tenant:
        tenant = self.model.tenants.get(name)
        if tenant is None or not request.principal.sees(name):
            raise not_found(f"unknown tenant {name!r}")
        return tenant

    def network(self, request: Request, key: str) -> Network:
        network = self.model.networks.get(key)
        if network is None or not request.principal.sees(network.tenant):
            raise not_found(f"unknown network {key!r}")
        return network

    def endpoint(self, request: Request, endpoint_id: str) -> Endpoint:
        endpoint = self.model.endpoints.get(endpoint_id)
        principal = request.principal
        if endpoint is not None and principal.node_only and not principal.manages(endpoint.node):
            raise HttpError(403, f"endpoint {endpoint_id!r} is on node {endpoint.node!r}; {own_node(principal)}")
        if endpoint is None or not (principal.sees(endpoint.tenant) or principal.manages(endpoint.node)):
            raise not_found(f"unknown endpoint {endpoint_id!r}")
        return endpoint

    def tenant_doc(self, tenant: Tenant) -> dict[str, Any]:
        doc = views.tenant_json(self.model, tenant)
        doc["quota"] = self.service.quota_of(tenant.name).json()
        doc["usage"] = self.service.usage(tenant.name).json()
        return doc

    def target_visible(self, request: Request, target: str) -> bool:
        """A QoS target: a network key or an endpoint id, of a tenant the caller may see."""
        model = self.model
        owner = model.networks[target].tenant if target in model.networks else None
        if owner is None and target in model.endpoints:
            owner = model.endpoints[target].tenant
        return owner is not None and request.principal.sees(owner)

    # --- the description -----------------------------------------------------------------------------

    def openapi(self, request: Request) -> Response:
        return Response(200, SPEC)

    # --- tenants -------------------------------------------------------------------------------------

    def list_tenants(self, request: Request) -> Response:
        with self.service.lock:
            tenants = [t for name, t in sorted(self.model.tenants.items()) if request.principal.sees(name)]
            return Response(200, [self.tenant_doc(t) for t in tenants])

    def create_tenant(self, request: Request) -> Response:
        if not request.principal.admin:
            raise forbidden("creating a tenant")
        name = Body(request.json(), "tenant", allowed={"name"}).text("name")
        with self.service.lock:
            tenant = self.service.create_tenant(name)
            return created(f"/v1/tenants/{name}", self.tenant_doc(tenant))

    def show_tenant(self, request: Request) -> Response:
        with self.service.lock:
            return Response(200, self.tenant_doc(self.tenant(request, request.params["tenant"])))

    def update_tenant(self, request: Request) -> Response:
        """The admin sets a tenant's quota: `{"quota": {"networks": N, "endpoints": M}}` (null: the default)."""
        body = Body(request.json(), "tenant", allowed={"quota"})
        with self.service.lock:
            tenant = self.tenant(request, request.params["tenant"])
            if not request.principal.admin:
                raise forbidden("setting a tenant's quota")
            self.service.set_quota(tenant.name, Quota.from_json(body.data.get("quota"), path="tenant.quota"))
            return Response(200, self.tenant_doc(tenant))

    def show_policy(self, request: Request) -> Response:
        """The tenants' segment pools and the default quota, as the admin set them."""
        policy = self.service.policy
        doc = {"vlan_pool": policy.vlan_pool.text, "vni_pool": policy.vni_pool.text, "quota": policy.quota.json()}
        return Response(200, doc)

    def delete_tenant(self, request: Request) -> Response:
        with self.service.lock:
            tenant = self.tenant(request, request.params["tenant"])
            if not request.principal.admin:
                raise forbidden("deleting a tenant")
            self.service.delete_tenant(tenant.name)
        return Response(204)

    # --- networks ------------------------------------------------------------------------------------

    def list_tenant_networks(self, request: Request) -> Response:
        with self.service.lock:
            tenant = self.tenant(request, request.params["tenant"])
            networks = sorted(self.model.networks_by_tenant[tenant.name].values(), key=lambda n: n.name)
            return Response(200, [views.network_json(self.model, n) for n in networks])

    def list_networks(self, request: Request) -> Response:
        wanted = request.query.get("tenant")
        with self.service.lock:
            networks = [
                n
                for _key, n in sorted(self.model.networks.items())
                if request.principal.sees(n.tenant) and wanted in (None, n.tenant)
            ]
            return Response(200, [views.network_json(self.model, n) for n in networks])

    def create_network(self, request: Request) -> Response:
        fields = {"name", "encap", "vni", "vlan", "subnet", "gateway", "mtu", "nat_outgoing", "node_ports"}
        body = Body(request.json(), "network", allowed=fields)
        name, encap, subnet = body.text("name"), body.text("encap"), body.text("subnet")
        segment = network_segment(body, encap)
        gateway, mtu = body.text("gateway", required=False), body.integer("mtu", required=False)
        nat_outgoing = body.boolean("nat_outgoing", required=False)
        node_ports = body.data.get("node_ports")
        with self.service.lock:
            tenant = self.tenant(request, request.params["tenant"])
            if node_ports is not None and not request.principal.admin:
                raise forbidden("network.node_ports (opening node ports to a network)")
            network = self.service.create_network(
                tenant.name,
                name,
                encap=encap,
                segment=segment,
                subnet=subnet,
                gateway=gateway,
                mtu=mtu,
                restricted=not request.principal.admin,
                nat_outgoing=nat_outgoing,
                node_ports=node_ports,
            )
            return created(f"/v1/tenants/{tenant.name}/networks/{name}", views.network_json(self.model, network))

    def show_network(self, request: Request) -> Response:
        key = f"{request.params['tenant']}/{request.params['network']}"
        with self.service.lock:
            if request.principal.node_only:  # a node's agent reads any network it may host (CNI STATUS: pool)
                network = self.model.networks.get(key)
                if network is None:
                    raise not_found(f"unknown network {key!r}")
                return Response(200, views.network_json(self.model, network))
            self.tenant(request, request.params["tenant"])
            network = self.network(request, key)
            return Response(200, views.network_json(self.model, network))

    def update_network(self, request: Request) -> Response:
        """Change what may change of a network, one field or both: `{"nat_outgoing": true|false}` (egress
        SNAT) and `{"node_ports": ["tcp/53", ...]}` (ports of its node's address opened to it, `[]` or
        `"none"` for none; the cluster admin's token only); README "Egress and the gateway port"."""
        body = Body(request.json(), "network", allowed={"nat_outgoing", "node_ports"})
        on = body.boolean("nat_outgoing", required=False)
        node_ports = body.data.get("node_ports")
        if "nat_outgoing" in body.data and on is None:  # given as null: not the same as leaving it out
            raise ValidationError("network.nat_outgoing", "want true or false, got null")
        if "node_ports" in body.data and node_ports is None:
            raise ValidationError("network.node_ports", 'want a list like ["tcp/53", "udp/53"] or "none", got null')
        if on is None and node_ports is None:
            raise ValidationError("network", "want nat_outgoing or node_ports (or both)")
        with self.service.lock:
            self.tenant(request, request.params["tenant"])
            network = self.network(request, f"{request.params['tenant']}/{request.params['network']}")
            if node_ports is not None and not request.principal.admin:
                raise forbidden("network.node_ports (changing node ports of a network)")
            network = self.service.update_network(network.key, nat_outgoing=on, node_ports=node_ports)
            return Response(200, views.network_json(self.model, network))

    def show_gateway(self, request: Request) -> Response:
        """The cluster network as nodes' gateway ports need it (null fields when none is set up). `node_ports`
        lists every network's to the admin and node tokens; a tenant's token sees its own networks' only."""
        principal = request.principal
        with self.service.lock:
            config = self.model.gateway
            cluster = self.model.networks.get(config.cluster_network) if config else None
            return Response(
                200,
                {
                    "cluster_network": config.cluster_network if config else None,
                    "cluster_subnet": str(config.cluster_subnet) if config else None,
                    "transit_subnet": str(config.transit_subnet) if config else None,
                    "gateway": str(cluster.gateway) if cluster else None,
                    "mtu": cluster.mtu if cluster else None,
                    "nat_outgoing": cluster.nat_outgoing if cluster else None,  # the host's masquerade of it
                    "node_ports": [
                        {"network": n.key, "transit_ip": str(config.transit_ip(n)), "ports": list(n.node_ports)}
                        for _key, n in sorted(self.model.networks.items())
                        if config is not None
                        and n.node_ports
                        and (principal.admin or principal.nodes or principal.sees(n.tenant))
                    ],
                },
            )

    def delete_network(self, request: Request) -> Response:
        with self.service.lock:
            self.tenant(request, request.params["tenant"])
            network = self.network(request, f"{request.params['tenant']}/{request.params['network']}")
            if not request.principal.admin:
                self.check_admin_cap(network.key, attaching=False, deleting=f"network {network.key!r}")
            self.service.delete_network(network.key)
        return Response(204)

    # --- QoS -----------------------------------------------------------------------------------------

    def visible_attachments(self, request: Request, profile: str | None = None) -> list[QosAttachment]:
        return [
            a
            for _target, a in sorted(self.model.qos_attachments.items())
            if profile in (None, a.profile) and self.target_visible(request, a.target)
        ]

    def qos_profile(self, name: str) -> QosProfile:
        profile = self.model.qos_profiles.get(name)
        if profile is None:
            raise not_found(f"unknown QoS profile {name!r}")
        return profile

    def list_qos(self, request: Request) -> Response:
        with self.service.lock:
            profiles = [p for _name, p in sorted(self.model.qos_profiles.items())]
            return Response(200, [views.qos_json(p, self.visible_attachments(request, p.name)) for p in profiles])

    def create_qos(self, request: Request) -> Response:
        if not request.principal.admin:
            raise forbidden("creating a QoS profile")
        body = Body(request.json(), "qos", allowed={"name", "rate_kbps", "burst_kb", "direction"})
        name, rate, burst = body.text("name"), body.integer("rate_kbps"), body.integer("burst_kb", required=False)
        direction = body.text("direction", required=False)
        direction = "both" if direction is None else direction  # "" is refused by the model, naming the field
        with self.service.lock:
            self.service.create_qos(name, rate_kbps=rate, burst_kb=burst, direction=direction)
            return created(f"/v1/qos/{name}", views.qos_json(self.model.qos_profiles[name], []))

    def show_qos(self, request: Request) -> Response:
        with self.service.lock:
            profile = self.qos_profile(request.params["profile"])
            return Response(200, views.qos_json(profile, self.visible_attachments(request, profile.name)))

    def delete_qos(self, request: Request) -> Response:
        if not request.principal.admin:
            raise forbidden("deleting a QoS profile")
        with self.service.lock:
            self.service.delete_qos(self.qos_profile(request.params["profile"]).name)
        return Response(204)

    def attach_qos(self, request: Request) -> Response:
        target = Body(request.json(), "qos", allowed={"target"}).text("target")
        with self.service.lock:
            profile = self.qos_profile(request.params["profile"])
            if not self.target_visible(request, target):
                raise ValidationError("qos.target", f"{target!r} is neither a network (TENANT/NAME) nor an endpoint")
            if not request.principal.admin:
                self.check_admin_cap(target, attaching=True)
            by = "admin" if request.principal.admin else "tenant"
            self.service.attach_qos(profile.name, target, attached_by=by)
            attachment = self.model.qos_attachments[target]
            return created(f"/v1/qos-attachments?target={target}", views.attachment_json(self.model, attachment))

    def list_attachments(self, request: Request) -> Response:
        with self.service.lock:
            found = self.visible_attachments(request, request.query.get("profile"))
            return Response(200, [views.attachment_json(self.model, a) for a in found])

    def detach_qos(self, request: Request) -> Response:
        target = request.query.get("target")
        if not target:
            raise HttpError(400, "want ?target=TENANT/NETWORK or ?target=ENDPOINT", field="target")
        with self.service.lock:
            if target not in self.model.qos_attachments or not self.target_visible(request, target):
                raise not_found(f"no QoS profile is attached to {target!r}")
            if not request.principal.admin:
                self.check_admin_cap(target, attaching=False)
            self.service.detach_qos(target)
        return Response(204)

    def check_admin_cap(self, target: str, *, attaching: bool, deleting: str | None = None) -> None:
        """A tenant may not replace or remove a cap the admin attached, nor escape its network's one by
        attaching an endpoint's own profile (it takes the place of its network's), nor drop it by deleting
        its target (`deleting`: what is deleted, e.g. "network 'blue/web'"). Raises HttpError 403."""
        attachment = self.model.qos_attachments.get(target)
        if attachment is not None and attachment.attached_by == "admin" and deleting is not None:
            raise HttpError(
                403,
                f"deleting {deleting}: it carries QoS profile {attachment.profile!r} the cluster admin attached; "
                "only the cluster admin may delete it",
            )
        if attachment is not None and attachment.attached_by == "admin":
            raise HttpError(
                403, f"the QoS profile on {target!r} was attached by the cluster admin; only it may change it"
            )
        endpoint = self.model.endpoints.get(target) if attaching else None
        network = self.model.qos_attachments.get(endpoint.network) if endpoint is not None else None
        if network is not None and network.attached_by == "admin":
            raise HttpError(
                403, f"network {network.target!r} has a QoS cap set by the cluster admin; only it may change it"
            )

    # --- nodes ---------------------------------------------------------------------------------------

    def node_docs(self, request: Request, names: list[str]) -> list[dict[str, Any]]:
        with self.service.lock:
            nodes = [self.model.nodes[n] for n in names if n in self.model.nodes]
            if request.principal.node_only:  # a node token sees its own node only
                nodes = [n for n in nodes if request.principal.manages(n.name)]
        # The switch status comes from the OpenFlow app: asked without holding the service lock.
        status = {n.name: self.status(n.name) for n in nodes if request.principal.manages(n.name)}
        with self.service.lock:
            return [views.node_json(self.model, n, request.principal, status.get(n.name)) for n in nodes]

    def status(self, node: str) -> dict[str, Any]:
        """The switch's state as the OpenFlow app reports it; a failing report is shown, not raised."""
        try:
            return dict(self.switch_status(node))
        except Exception as error:
            log.exception("switch status of node %r", node)
            return {"connected": False, "in_sync": None, "errors": [f"switch status unavailable: {error}"]}

    def list_nodes(self, request: Request) -> Response:
        with self.service.lock:
            names = sorted(self.model.nodes)
        return Response(200, self.node_docs(request, names))

    def show_node(self, request: Request) -> Response:
        docs = self.node_docs(request, [request.params["node"]])
        if not docs:
            raise not_found(f"unknown node {request.params['node']!r}")
        return Response(200, docs[0])

    def register_node(self, request: Request) -> Response:
        name = request.params["node"]
        if request.principal.node_only and not request.principal.manages(name):
            raise HttpError(403, f"registering node {name!r}: {own_node(request.principal)}")
        if not request.principal.manages(name):
            raise HttpError(403, "registering a node needs the node's own token or the cluster-admin token")
        allowed = {"tunnel_ip", "uplink", "datapath_id", "underlay_mtu", "uplink_mtu"}
        body = Body(request.json(), "node", allowed=allowed)
        tunnel_ip, uplink = body.text("tunnel_ip"), body.text("uplink", required=False)
        datapath_id = body.integer("datapath_id", required=False)
        mtus = {"underlay_mtu": body.integer("underlay_mtu", required=False)}
        mtus["uplink_mtu"] = body.integer("uplink_mtu", required=False)
        with self.service.lock:
            new = name not in self.model.nodes
            if datapath_id is not None and not request.principal.admin:
                refusal = foreign_datapath_id(self.model, name, tunnel_ip, datapath_id)
                if refusal is not None:
                    raise HttpError(403, f"node.datapath_id: {refusal}", field="node.datapath_id")
            self.service.register_node(name, tunnel_ip=tunnel_ip, uplink=uplink, datapath_id=datapath_id, **mtus)
        doc = self.node_docs(request, [name])[0]
        return created(f"/v1/nodes/{name}", doc) if new else Response(200, doc)

    def node_flows(self, request: Request) -> Response:
        if not request.principal.admin:
            raise forbidden("reading a node's flows")  # they are every tenant's flows
        name = request.params["node"]
        with self.service.lock:
            if name not in self.model.nodes:
                raise not_found(f"unknown node {name!r}")
            state = self.service.compiler.compile_node(name)
            groups, meters = state.groups(), state.meters()
            text = render_state(state.flows(), groups.values(), meters.values())
            counts = {"flows": state.flow_count(), "groups": len(groups), "meters": len(meters)}
        doc = {"node": name, "flows": text, "counts": counts, "switch": self.status(name)}
        if request.query.get("verify", "0") not in ("0", ""):  # the switch dumped now, without the service lock
            try:
                doc["verify"] = self.verify(name, VERIFY_TIMEOUT)
            except Exception as error:  # the switch went away or did not answer: say so, with the desired state
                log.warning("verifying the switch of node %r: %s", name, error)
                doc["verify"] = {"checked": False, "reason": str(error)}
        return Response(200, doc)

    # --- fabric links --------------------------------------------------------------------------------

    def list_links(self, request: Request) -> Response:
        if not request.principal.admin:
            raise forbidden("reading the fabric links")
        with self.service.lock:
            return Response(200, [views.link_json(self.model, link) for link in self.model.links])

    def create_link(self, request: Request) -> Response:
        if not request.principal.admin:
            raise forbidden("creating a fabric link")
        body = Body(request.json(), "link", allowed={"a", "a_port", "b", "b_port"})
        a, a_port, b, b_port = body.text("a"), body.text("a_port"), body.text("b"), body.text("b_port")
        with self.service.lock:
            link = self.service.create_link(a, a_port, b, b_port)
            return created("/v1/links", views.link_json(self.model, link))

    # --- endpoints -----------------------------------------------------------------------------------

    def list_endpoints(self, request: Request) -> Response:
        network, node = request.query.get("network"), request.query.get("node")
        with self.service.lock:
            principal = request.principal
            found = [
                e
                for _id, e in sorted(self.model.endpoints.items())
                if (principal.sees(e.tenant) or principal.manages(e.node))
                and network in (None, e.network)
                and node in (None, e.node)
            ]
            return Response(200, [views.endpoint_json(self.model, e) for e in found])

    def create_endpoint(self, request: Request) -> Response:
        fields = {"id", "network", "node", "ip", "mac", "port_name", "k8s", "namespace", "labels", "ports"}
        body = Body(request.json(), "endpoint", allowed=fields)
        endpoint_id, node = body.text("id"), body.text("node")
        if request.principal.node_only and not request.principal.manages(node):
            raise HttpError(
                403, f"creating an endpoint on node {node!r}: {own_node(request.principal)}", field="endpoint.node"
            )
        pod = self.k8s_pod(request.json().get("k8s"), request.json().get("network"), request.principal, node)
        network = pod[0] if pod is not None else body.text("network")
        ip, mac = body.text("ip", required=False), body.text("mac", required=False)
        port = body.text("port_name", required=False)
        namespace = body.text("namespace", required=False)
        attributes = {"labels": body.data.get("labels"), "ports": body.data.get("ports")}  # checked by the model
        principal = request.principal
        if port is not None and not principal.admin and not principal.node_only:
            raise HttpError(
                403,
                "endpoint.port_name: set by the node agent; it needs a node or the cluster-admin token",
                field="endpoint.port_name",
            )
        with self.service.lock:
            found = self.model.networks.get(network)
            if found is None or not (principal.sees(found.tenant) or principal.node_only):
                hint = "" if "/" in network else " (want TENANT/NAME)"
                raise ValidationError("endpoint.network", f"unknown network {network!r}{hint}")
            if pod is not None and self.k8s is not None:  # the pod's namespace, labels and named ports
                attributes = self.k8s.endpoint_attributes(network, pod[1])
                namespace = attributes.pop("namespace")
            elif namespace is None:
                namespace = k8s_namespace(self.model, request.json().get("k8s"), found.tenant)
            taken = self.model.endpoints.get(endpoint_id)
            if taken is not None and not (principal.sees(taken.tenant) or principal.manages(taken.node)):
                # Endpoint ids are one space for the whole cluster: say it is taken, never by whom.
                raise ValidationError(
                    "endpoint.id", f"endpoint id {endpoint_id!r} is taken (ids are unique cluster-wide)", conflict=True
                )
            endpoint = self.service.create_endpoint(
                endpoint_id,
                network=network,
                node=node,
                ip=ip,
                mac=mac,
                port_name=port,
                restricted=not principal.admin,
                namespace=namespace,
                **attributes,
            )
            self.created_at[endpoint.id] = self.service.sequence
            if pod is not None and self.k8s is not None:
                self.k8s.record(endpoint.id, pod[1])
            return created(f"/v1/endpoints/{endpoint.id}", views.endpoint_json(self.model, endpoint))

    def k8s_pod(self, k8s: object, network: object, principal: Principal, node: str) -> tuple[str, dict] | None:
        """For `"k8s": {"namespace": NS, "pod": NAME}` without a network (a CNI ADD in a cluster): the pod's
        network by the mapping of `controller.k8s` and the pod. Only a node's or the cluster-admin token may
        ask (403), and the pod must be scheduled on `node` (its `spec.nodeName`). Raises ValidationError or
        HttpError naming `endpoint.k8s`."""
        if k8s is None or network is not None:
            return None
        if not (principal.admin or principal.node_only):
            raise HttpError(
                403, "endpoint.k8s: a pod's network is looked up for node agents only", field="endpoint.k8s"
            )
        fields = ("namespace", "pod")
        if not isinstance(k8s, dict) or not all(isinstance(k8s.get(f), str) and k8s.get(f) for f in fields):
            raise ValidationError("endpoint.k8s", 'want {"namespace": NAMESPACE, "pod": NAME}')
        if self.k8s is None:
            raise ValidationError(
                "endpoint.k8s", "the controller does not watch Kubernetes (start it with --kubernetes or --kubeconfig)"
            )
        found = self.k8s.endpoint_network(k8s["namespace"], k8s["pod"])
        if (found[1].get("spec") or {}).get("nodeName") != node:
            raise ValidationError(
                "endpoint.k8s", f"pod {k8s['namespace']}/{k8s['pod']} is not scheduled on node {node!r}"
            )
        return found

    def show_endpoint(self, request: Request) -> Response:
        with self.service.lock:
            endpoint = self.endpoint(request, request.params["endpoint"])
            return Response(200, views.endpoint_json(self.model, endpoint))

    def delete_endpoint(self, request: Request) -> Response:
        with self.service.lock:
            endpoint_id = self.endpoint(request, request.params["endpoint"]).id
            if not (request.principal.admin or request.principal.node_only):  # the agent's DEL: the pod is gone
                self.check_admin_cap(endpoint_id, attaching=False, deleting=f"endpoint {endpoint_id!r}")
            self.service.delete_endpoint(endpoint_id)
            self.created_at.pop(endpoint_id, None)
            if self.k8s is not None:
                self.k8s.forget(endpoint_id)
        return Response(204)

    def endpoint_ready(self, request: Request) -> Response:
        """Ready once its port is on the switch with the planned number and the switch holds its flows."""
        text = request.query.get("wait", "0")
        # Plain decimal seconds only: float() would also take "1_0", "nan", "inf", "1e3" and " 5".
        if not _SECONDS.fullmatch(text):
            raise ValidationError("wait", f"want a number of seconds like 5 or 2.5, got {text!r}")
        wait = float(text)
        if not 0 <= wait <= MAX_READY_WAIT:
            raise ValidationError("wait", f"{wait:g} is outside 0..{MAX_READY_WAIT:g} seconds")
        with self.service.lock:
            endpoint = self.endpoint(request, request.params["endpoint"])
            # Unknown after a restart: then the switch must include everything up to now.
            sequence = self.created_at.get(endpoint.id, self.service.sequence)
        limited = getattr(self.readiness, "limited", None)  # ReadyWaits: tenant tokens get a share of the slots
        if limited is not None:  # a tenant token's wait counts against its endpoint's tenant's own cap
            tenant = None if request.principal.admin or request.principal.node_only else endpoint.tenant
            state = limited(endpoint.node, endpoint.port_name, endpoint.ofport, sequence, wait, tenant=tenant)
        else:
            state = self.readiness(endpoint.node, endpoint.port_name, endpoint.ofport, sequence, wait)
        return Response(200, state)

    def health(self, request: Request) -> Response:
        return Response(200, {"ok": True, "switches": self.switch_count()})

    def switch_count(self) -> int:
        with self.service.lock:
            nodes = list(self.model.nodes)
        return sum(1 for node in nodes if self.switch_status(node).get("connected"))


def k8s_namespace(model: Model, k8s: object, tenant: str) -> str | None:
    """An endpoint POSTed with a network and `"k8s": {"namespace": NS, ...}` (K8S_POD_NAMESPACE of a CNI
    ADD) is in namespace NS when the model has NS in the network's tenant; else in none."""
    name = k8s.get("namespace") if isinstance(k8s, dict) else None
    found = model.namespaces.get(name) if isinstance(name, str) else None
    return found.name if found is not None and found.tenant == tenant else None


def foreign_datapath_id(model: Model, name: str, tunnel_ip: str, datapath_id: int) -> str | None:
    """Why a node token may not register node `name` with `datapath_id`, or None.

    The switch with a node's datapath id gets the node's flows, so a node token may not pick one that
    belongs to another node: it may keep its node's id, or use the id derived from the tunnel IP it
    registers (`topology.model.derived_datapath_id`, what the agent gives its bridge; tunnel IPs are unique),
    never one derived from another tunnel IP or another node's name. Once a node is registered, any other
    change of its datapath id is the cluster admin's (the model refuses ids another node has, 409).
    """
    existing = model.nodes.get(name)
    if not 1 <= datapath_id < 2**64 or (existing is not None and datapath_id == existing.datapath_id):
        return None  # out of range: the model names the field (400)
    if isinstance(datapath_id, int) and datapath_id >> 32 == DERIVED_DATAPATH_BASE >> 32:
        try:
            own = derived_datapath_id(IPv4Address(tunnel_ip))
        except ValueError:
            return None  # the model names the bad tunnel IP
        if datapath_id != own:
            other = IPv4Address(datapath_id & 0xFFFFFFFF)
            return f"{datapath_id:#x} is the datapath id of tunnel IP {other}, not of {tunnel_ip}"
        return None
    if existing is not None:
        return (
            f"node {name!r} has datapath id {existing.datapath_id:#x}; after its first registration only the "
            "id derived from its tunnel IP or the cluster-admin token may change it"
        )
    if any(default_datapath_id(other) == datapath_id for other in model.nodes):
        return f"{datapath_id:#x} is derived from the name of another node"
    return None


def own_node(principal: Any) -> str:
    return f"the token of node(s) {', '.join(sorted(principal.nodes))} manages only its own node and its endpoints"


def created(location: str, body: dict[str, Any]) -> Response:
    # Names may hold any character but '/' and whitespace; a header value must be plain ASCII.
    return Response(201, body, {"Location": quote(location, safe="/?=")})


def network_segment(body: Body, encap: str) -> int | None:
    """`vni` for VXLAN, `vlan` for VLAN: the one the encapsulation uses, or None (the pool's lowest free)."""
    wanted, other = ("vni", "vlan") if encap == Encap.VXLAN.value else ("vlan", "vni")
    if encap not in (Encap.VXLAN.value, Encap.VLAN.value):
        raise ValidationError("network.encap", f"{encap!r} is not one of vlan, vxlan")
    if body.data.get(other) is not None:
        raise ValidationError(f"network.{other}", f"a {encap} network takes {wanted}, not {other}")
    return body.integer(wanted, required=False)
