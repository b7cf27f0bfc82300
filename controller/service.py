"""The controller's state and its one writer: every change is validated, stored, compiled and published.

A change is first applied to the model, which validates it completely and changes nothing if it is
refused. It is then compiled, and only then committed to the store. All or nothing: if the compile or the
store fails, the model change is undone and the compiler recompiled from the model as it was, so model,
compiler, store and switches never hold what the others do not. Only a change that is compiled and stored
has its per-node change sets handed to the publisher (the OpenFlow app), in the order the changes were made.

The admin's policy (`controller.policy`) is enforced here for callers marked `restricted` (tenant and node
tokens): segments from the tenants' pools, per-tenant quotas. Quotas are stored under `/tenet/quotas/`.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace

from controller import records
from controller.pipeline.compile import Compiler
from controller.pipeline.state import ChangeSet
from controller.policy import RESERVED_NAMES, RESERVED_PREFIX, Policy, Quota, reserved_port
from controller.service_netpol import NetpolChanges
from controller.store.base import Delete, Operation, Put, Store
from topology.errors import ValidationError
from topology.gateway import GatewayConfig, ct_zones
from topology.model import (
    DEFAULT_UNDERLAY_MTU,
    Encap,
    Endpoint,
    Link,
    Model,
    Network,
    Node,
    Tenant,
    Touched,
    touched_by,
)
from topology.mtu import check_node

log = logging.getLogger(__name__)
Publisher = Callable[[dict[str, ChangeSet]], None]


class ChangeFailed(RuntimeError):
    """A valid change could not be compiled; it was rolled back everywhere. The message names the change."""

    def __init__(self, what: str, error: BaseException) -> None:
        super().__init__(
            f"{what} failed while compiling the flows ({type(error).__name__}: {error}); nothing was changed"
        )
        self.what = what


class Service(NetpolChanges):
    def __init__(
        self,
        store: Store,
        *,
        publish: Publisher | None = None,
        policy: Policy | None = None,
        gateway: GatewayConfig | None = None,
    ) -> None:
        self.store = store
        self.gateway = gateway  # the cluster network settings (topology.gateway), applied on restore
        self.policy = policy or Policy()
        self.quotas: dict[str, Quota] = {}  # tenant -> the admin's quota for it, where it has its own
        self.model = Model()
        if gateway is not None:
            self.model.configure_gateway(gateway)
        self.compiler = Compiler(self.model)
        self.lock = threading.RLock()  # one change at a time; readers take it too
        self.sequence = 0  # counts published changes: a state read at sequence N includes changes 1..N
        self._publishers: list[Publisher] = [publish] if publish else []

    def subscribe(self, publish: Publisher) -> None:
        self._publishers.append(publish)

    def restore(self) -> None:
        """Load the whole model from the store and compile every node."""
        with self.lock:
            self.model = records.restore(self.store.list(records.PREFIX), gateway=self.gateway)
            quotas = self.store.list(records.key(records.QUOTAS, ""))
            self.quotas = {r.value["tenant"]: Quota(r.value["networks"], r.value["endpoints"]) for r in quotas}
            self.compiler = Compiler(self.model)
            self.compiler.compile_all()
            log.info(
                "restored %d nodes, %d tenants, %d networks, %d endpoints at store revision %d",
                len(self.model.nodes),
                len(self.model.tenants),
                len(self.model.networks),
                len(self.model.endpoints),
                self.store.revision(),
            )

    # --- policy --------------------------------------------------------------------------------

    def quota_of(self, tenant: str) -> Quota:
        """The tenant's quota: its own where the admin set one, else the default of the settings."""
        own, default = self.quotas.get(tenant, Quota()), self.policy.quota
        return Quota(
            own.networks if own.networks is not None else default.networks,
            own.endpoints if own.endpoints is not None else default.endpoints,
        )

    def usage(self, tenant: str) -> Quota:
        """How many networks and endpoints the tenant holds now."""
        networks = self.model.networks_by_tenant.get(tenant, {})
        return Quota(len(networks), sum(len(self.model.endpoints_by_network[key]) for key in networks))

    def set_quota(self, tenant: str, quota: Quota) -> None:
        """The admin's quota for one tenant (None in a field: the settings' default); stored, not compiled."""
        with self._change(f"setting the quota of tenant {tenant!r}") as change:
            if tenant not in self.model.tenants:
                raise ValidationError("tenant", f"unknown tenant {tenant!r}")
            previous = self.quotas.get(tenant)
            self.quotas[tenant] = quota
            change.undo(lambda: self.quotas.pop(tenant) if previous is None else self.quotas.update({tenant: previous}))
            change.store(Put(records.key(records.QUOTAS, tenant), {"tenant": tenant, **quota.json()}))

    def _check_quota(self, tenant: str, kind: str) -> None:
        limit = getattr(self.quota_of(tenant), kind)
        used = getattr(self.usage(tenant), kind)
        if limit is not None and used >= limit:
            raise ValidationError(
                f"quota.{kind}",
                f"tenant {tenant!r} is at its quota of {limit} {kind} (the admin sets it)",
                conflict=True,
            )

    def _segment(self, encap: str, segment: int | None, *, restricted: bool) -> int:
        """The segment a network gets: the one asked for (a restricted caller's from the pool), else the
        lowest free one of the pool. Invalid encaps and ranges are left to the model to report."""
        if encap not in (Encap.VLAN.value, Encap.VXLAN.value):
            return segment if segment is not None else 0  # the model reports the encap before the segment
        pool, field = self.policy.pool(encap), "vlan" if encap == Encap.VLAN.value else "vni"
        if segment is not None:
            if restricted and segment not in pool:
                raise ValidationError(
                    f"network.{field}", f"{field.upper()} {segment} is outside the tenants' pool {pool.text}"
                )
            return segment
        used = (n.segment for n in self.model.networks.values() if n.encap.value == encap)
        free = pool.lowest_free(used)
        if free is None:
            raise ValidationError(
                f"network.{field}", f"no free {field.upper()} left in the pool {pool.text}", conflict=True
            )
        return free

    # --- changes -------------------------------------------------------------------------------

    def create_tenant(self, name: str) -> Tenant:
        with self._change(f"creating tenant {name!r}") as change:
            change.apply(self.model.add_tenant(name), undo=lambda: self.model.remove_tenant(name))
            tenant = self.model.tenants[name]
            change.store(Put(records.key("tenants", name), records.tenant_doc(tenant)))
            return tenant

    def delete_tenant(self, name: str) -> None:
        with self._change(f"deleting tenant {name!r}") as change:
            tenant = self.model.tenants.get(name)
            touched = self.model.remove_tenant(name)  # raises when there is no such tenant
            assert tenant is not None
            change.apply(touched, undo=lambda: self.model.add_tenant(name, tenant_id=tenant.id))
            change.store(Delete(records.key("tenants", name)))
            quota = self.quotas.pop(name, None)
            if quota is not None:  # a tenant made again later starts from the default
                change.undo(lambda: self.quotas.update({name: quota}))
                change.store(Delete(records.key(records.QUOTAS, name)))

    def create_network(
        self,
        tenant: str,
        name: str,
        *,
        encap: str,
        segment: int | None,
        subnet: str,
        gateway: str | None = None,
        mtu: int | None = None,
        restricted: bool = False,
        nat_outgoing: bool | None = None,
        node_ports: list[str] | None = None,
    ) -> Network:
        """A network; `segment` None: the lowest free one of the pool. `restricted` (a tenant's token): the
        segment must be from the pool and the tenant within its network quota (ValidationError otherwise)."""
        key = f"{tenant}/{name}"
        with self._change(f"creating network {key!r}") as change:
            segment = self._segment(encap, segment, restricted=restricted)
            if restricted and tenant in self.model.tenants:
                self._check_quota(tenant, "networks")
            touched = self.model.add_network(
                tenant,
                name,
                encap=encap,
                segment=segment,
                subnet=subnet,
                gateway=gateway,
                mtu=mtu,
                nat_outgoing=nat_outgoing,
                node_ports=node_ports,
            )
            change.apply(touched, undo=lambda: self.model.remove_network(key))
            network = self.model.networks[key]
            change.store(Put(records.key("networks", key), records.network_doc(network)))
            change.store(Put(records.NETWORK_ID_MARK, records.network_id_mark_doc(self.model)))
            return network

    def set_nat_outgoing(self, key: str, on: bool) -> Network:
        """Turn a network's egress SNAT on or off (ValidationError naming `network.nat_outgoing` if it cannot)."""
        with self._change(f"setting nat_outgoing of network {key!r}") as change:
            before = self.model.network(key).nat_outgoing
            change.apply(self.model.set_nat_outgoing(key, on), undo=lambda: self.model.set_nat_outgoing(key, before))
            network = self.model.networks[key]
            change.store(Put(records.key("networks", key), records.network_doc(network)))
            return network

    def update_network(self, key: str, *, nat_outgoing: bool | None = None, node_ports: object = None) -> Network:
        """Change a network's `nat_outgoing` and/or `node_ports` (None: unchanged), all or nothing;
        ValidationError naming `network.nat_outgoing` or `network.node_ports` if either cannot be set."""
        with self._change(f"changing network {key!r}") as change:
            before = self.model.network(key)
            if nat_outgoing is not None:
                change.apply(
                    self.model.set_nat_outgoing(key, nat_outgoing),
                    undo=lambda: self.model.set_nat_outgoing(key, before.nat_outgoing),
                )
            if node_ports is not None:
                change.apply(
                    self.model.set_node_ports(key, node_ports),
                    undo=lambda: self.model.set_node_ports(key, list(before.node_ports)),
                )
            network = self.model.networks[key]
            change.store(Put(records.key("networks", key), records.network_doc(network)))
            return network

    def ensure_cluster_network(self, *, encap: str = "vxlan") -> Network | None:
        """Create the cluster network (and its tenant) named by the gateway settings if missing; None
        without settings. Its segment is the lowest free of the pool; ValidationError if it cannot be made."""
        if self.gateway is None:
            return None
        key = self.gateway.cluster_network
        with self.lock:
            if key in self.model.networks:
                return self.model.networks[key]
            tenant, name = key.split("/", 1)
            if tenant not in self.model.tenants:
                self.create_tenant(tenant)
            subnet = str(self.gateway.cluster_subnet)
            return self.create_network(tenant, name, encap=encap, segment=None, subnet=subnet)

    def delete_network(self, key: str) -> None:
        with self._change(f"deleting network {key!r}") as change:
            network = self.model.network(key)
            doc = records.network_doc(network)
            # The model drops the network's QoS attachment with it; so must the store, or restore fails.
            attachment = self.model.qos_attachments.get(key)
            operations: list[Operation] = [Delete(records.key("networks", key))]
            if attachment is not None:
                operations.append(Delete(records.key("qos-attachments", key)))

            def undo() -> None:
                _restore(self.model, "networks", doc, key)
                if attachment is not None:
                    self.model.attach_qos(
                        attachment.profile, key, meter_id=attachment.meter_id, attached_by=attachment.attached_by
                    )

            change.apply(self.model.remove_network(key), undo=undo)
            change.store(*operations)
            # Its conntrack state must not outlive it (a later network may get the id): flushed on every switch.
            change.ct_flush_zones += ct_zones(network)

    def register_node(
        self,
        name: str,
        *,
        tunnel_ip: str,
        uplink: str | None = None,
        datapath_id: int | None = None,
        underlay_mtu: int | None = None,
        uplink_mtu: int | None = None,
    ) -> Node:
        """Add a node; registering it again with the same values changes nothing, with others (a new tunnel
        IP, uplink or datapath id) updates it in place, endpoints and links kept, and recompiles what names
        it (the other nodes' tunnel flows). MTUs in bytes; a node too small for an existing network is refused
        (`topology.mtu`), and a known node then stays as it was. The uplink may not be an infrastructure name
        (`tenet-*`, bridges)."""
        with self._change(f"registering node {name!r}") as change:
            if uplink is not None and (uplink.startswith(RESERVED_PREFIX) or uplink in RESERVED_NAMES):
                raise ValidationError("node.uplink", f"{uplink!r} is a reserved infrastructure name, not an uplink")
            existing = self.model.nodes.get(name)
            if existing is not None:
                same = str(existing.tunnel_ip) == tunnel_ip and existing.uplink == uplink
                # Compared as the rules see them (topology.mtu); 0 is a value (refused below), not "absent".
                underlay = DEFAULT_UNDERLAY_MTU if underlay_mtu is None else underlay_mtu
                same = same and existing.underlay_mtu == underlay
                uplink_now = existing.uplink_mtu or existing.underlay_mtu
                same = same and uplink_now == (underlay if uplink_mtu is None else uplink_mtu)
                if same and datapath_id in (None, existing.datapath_id):
                    return existing
                # An MTU too small is the news, before any other reason a node with endpoints cannot change.
                check_node("node", underlay, uplink_mtu, self.model.networks.values())
                touched = self.model.update_node(
                    name,
                    tunnel_ip=tunnel_ip,
                    uplink=uplink,
                    datapath_id=existing.datapath_id if datapath_id is None else datapath_id,
                    underlay_mtu=underlay_mtu,
                    uplink_mtu=uplink_mtu,
                )
                # The node as it was, put back as such: an undo must not be refused by today's validation.
                change.apply(touched, undo=lambda: self.model.replace_node(existing))
            else:
                touched = self.model.add_node(
                    name,
                    tunnel_ip=tunnel_ip,
                    uplink=uplink,
                    datapath_id=datapath_id,
                    underlay_mtu=underlay_mtu,
                    uplink_mtu=uplink_mtu,
                )
                change.apply(touched, undo=lambda: self.model.remove_node(name))
            node = self.model.nodes[name]
            change.store(Put(records.key("nodes", name), records.node_doc(node)))
            return node

    def create_link(self, a: str, a_port: str, b: str, b_port: str) -> Link:
        """A fabric link between two nodes' bridges; its ports get the next planned link ofports."""
        with self._change(f"adding the link {a}:{a_port} -- {b}:{b_port}") as change:
            touched = self.model.add_link(a, a_port, b, b_port)
            change.apply(touched, undo=lambda: self.model.remove_link(a, b, a_port=a_port, b_port=b_port))
            link = self.model.links[-1]
            change.store(Put(records.key("links", records.link_name(link)), records.link_doc(link)))
            return link

    def set_link_ports(self, node: str, states: Mapping[str, bool]) -> bool:
        """What a switch reports of its fabric link ports (port name -> up). Operational state: not stored,
        but compiled and published like any change, so floods and paths avoid a link that is down.
        Returns whether anything changed."""
        with self._change(f"setting the link ports of node {node!r}") as change:
            for port, up in sorted(states.items()):
                was = self.model.link_port_up(node, port)
                if was == up:
                    continue
                touched = self.model.set_link_port(node, port, up=up)
                change.apply(touched, undo=functools.partial(self.model.set_link_port, node, port, up=was))
                log.info("node %s: fabric link port %s is %s", node, port, "up" if up else "down")
            return change.touched is not None

    def create_qos(self, name: str, *, rate_kbps: int, burst_kb: int | None = None, direction: str = "both") -> None:
        with self._change(f"creating QoS profile {name!r}") as change:
            touched = self.model.add_qos(name, rate_kbps=rate_kbps, burst_kb=burst_kb, direction=direction)
            change.apply(touched, undo=lambda: self.model.remove_qos(name))
            change.store(Put(records.key("qos", name), records.qos_doc(self.model.qos_profiles[name])))

    def delete_qos(self, name: str) -> None:
        with self._change(f"deleting QoS profile {name!r}") as change:
            profile = self.model.qos_profiles.get(name)
            touched = self.model.remove_qos(name)  # raises when there is no such profile
            assert profile is not None
            undo = lambda: self.model.add_qos(  # noqa: E731
                name, rate_kbps=profile.rate_kbps, burst_kb=profile.burst_kb, direction=profile.direction
            )
            change.apply(touched, undo=undo)
            change.store(Delete(records.key("qos", name)))

    def attach_qos(self, name: str, target: str, *, attached_by: str = "admin") -> None:
        """Attach a profile; `attached_by` ("admin" or "tenant") decides who may detach it again."""
        with self._change(f"attaching QoS profile {name!r} to {target!r}") as change:
            previous = self.model.qos_attachments.get(target)
            touched = self.model.attach_qos(name, target, attached_by=attached_by)
            undo = (
                (lambda: self.model.attach_qos(previous.profile, target, attached_by=previous.attached_by))
                if previous
                else (lambda: self.model.detach_qos(target))
            )
            change.apply(touched, undo=undo)
            doc = records.attachment_doc(self.model.qos_attachments[target])
            change.store(Put(records.key("qos-attachments", target), doc))

    def detach_qos(self, target: str) -> None:
        with self._change(f"detaching the QoS profile of {target!r}") as change:
            previous = self.model.qos_attachments.get(target)
            touched = self.model.detach_qos(target)  # raises when nothing is attached
            assert previous is not None
            undo = lambda: self.model.attach_qos(  # noqa: E731
                previous.profile, target, meter_id=previous.meter_id, attached_by=previous.attached_by
            )
            change.apply(touched, undo=undo)
            change.store(Delete(records.key("qos-attachments", target)))

    def create_endpoint(
        self,
        endpoint_id: str,
        *,
        network: str,
        node: str,
        ip: str | None = None,
        mac: str | None = None,
        port_name: str | None = None,
        restricted: bool = False,
        namespace: str | None = None,
        labels: Mapping[str, str] | None = None,
        ports: list[dict] | None = None,
    ) -> Endpoint:
        """Allocate IP, MAC and ofport (IPAM) and store the endpoint, atomically. `port_name` may not be an
        infrastructure port's (`controller.policy.reserved_port`); `restricted` (tenant and node tokens):
        within the tenant's endpoint quota. `namespace` (of the network's tenant), `labels` and `ports` (named
        container ports) are the Kubernetes pod's. Raises ValidationError naming the field."""
        with self._change(f"creating endpoint {endpoint_id!r}") as change:
            if port_name is not None:
                reason = reserved_port(self.model, node, port_name)
                if reason is not None:
                    raise ValidationError("endpoint.port_name", reason)
            if restricted and network in self.model.networks:
                self._check_quota(self.model.networks[network].tenant, "endpoints")
            endpoint = self.model.add_endpoint(
                endpoint_id,
                network=network,
                node=node,
                ip=ip,
                mac=mac,
                port_name=port_name,
                namespace=namespace,
                labels=dict(labels) if labels is not None else None,
                ports=ports,
            )
            change.apply(touched_by(endpoint), undo=lambda: self.model.remove_endpoint(endpoint_id))
            # Fails if the key exists already: two controllers must never allocate the same endpoint.
            change.store(Put(records.key("endpoints", endpoint_id), records.endpoint_doc(endpoint)))
            return endpoint

    def delete_endpoint(self, endpoint_id: str) -> None:
        with self._change(f"deleting endpoint {endpoint_id!r}") as change:
            endpoint = self.model.endpoint(endpoint_id)
            doc = records.endpoint_doc(endpoint)
            attachment = self.model.qos_attachments.get(endpoint_id)
            operations: list[Operation] = [Delete(records.key("endpoints", endpoint_id))]
            if attachment is not None:
                operations.append(Delete(records.key("qos-attachments", endpoint_id)))

            def undo() -> None:
                _restore(self.model, "endpoints", doc, endpoint_id)
                if attachment is not None:
                    self.model.attach_qos(
                        attachment.profile,
                        endpoint_id,
                        meter_id=attachment.meter_id,
                        attached_by=attachment.attached_by,
                    )

            change.apply(self.model.remove_endpoint(endpoint_id), undo=undo)
            change.store(*operations)

    @contextmanager
    def _change(self, what: str) -> Iterator[_Change]:
        """One change, all or nothing: validated in the model, compiled, stored, then published.

        `what` names the change in the error a failed compile raises (ChangeFailed; a ValidationError from
        the compile is the input's fault and passes unchanged). Nothing is published unless all succeeded.
        """
        with self.lock:
            change = _Change()
            try:
                yield change
            except BaseException:
                if not change.undo_all():  # an undo step failed: the compiler is rebuilt from the model
                    self.compiler.compile_all()
                raise
            changes: dict[str, ChangeSet] = {}
            compiled = False
            try:
                if change.touched is not None:
                    compiled = True  # from here the compiler may hold part of the change
                    changes = self.compiler.update(change.touched)
            except BaseException as error:
                self._roll_back(change, what)
                if isinstance(error, ValidationError) or not isinstance(error, Exception):
                    raise
                log.exception("%s: the compile failed; rolled back", what)
                raise ChangeFailed(what, error) from error
            try:
                if change.operations:
                    self.store.commit(change.operations)
            except BaseException:
                self._roll_back(change, what, recompile=compiled)
                raise
            if change.touched is not None:
                if change.ct_flush_zones:
                    flush = list(change.ct_flush_zones)
                    changes = {
                        node: replace(changes.get(node) or ChangeSet(), ct_flush_zones=flush)
                        for node in self.model.nodes
                    }
                self.sequence += 1
                for publish in self._publishers:
                    publish(changes)

    def _roll_back(self, change: _Change, what: str, *, recompile: bool = True) -> None:
        """Undo the model change and bring the compiler back to the model as it was (a full compile)."""
        if not change.undo_all():
            recompile = True
        if recompile:
            self.compiler.compile_all()
            log.warning("%s rolled back: model and compiled state are as before", what)


class _Change:
    """One change in progress: what it touched, how to undo it, what to store."""

    def __init__(self) -> None:
        self.touched: Touched | None = None
        self.operations: list[Operation] = []
        self.ct_flush_zones: list[int] = []  # conntrack zones every switch flushes after the flow changes
        self._undo: list[Callable[[], object]] = []

    def apply(self, touched: Touched, *, undo: Callable[[], object]) -> None:
        self.touched = touched if self.touched is None else self.touched.merge(touched)
        self._undo.append(undo)

    def undo(self, undo: Callable[[], object]) -> None:
        """A step that changed no model state (the service's own), undone like the others."""
        self._undo.append(undo)

    def store(self, *operations: Operation) -> None:
        self.operations.extend(operations)

    def undo_all(self) -> bool:
        """Run every undo step, last first; one that raises is logged and the others still run.
        Returns whether all succeeded."""
        ok = True
        for undo in reversed(self._undo):
            try:
                undo()
            except Exception:
                log.exception("undoing a step of a failed change failed; the other steps are undone")
                ok = False
        self._undo.clear()
        return ok


def _restore(model: Model, kind: str, doc: dict, name: str) -> None:
    records.restore_one(model, kind, doc, path=records.key(kind, name))
