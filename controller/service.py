"""The controller's state and its one writer: every change is validated, stored, compiled and published.

A change is first applied to the model, which validates it completely and changes nothing if it is
refused. It is then committed to the store; if the store fails, the model change is undone, so the model
never holds what the store does not. Only then is it compiled, and the per-node change sets are handed
to the publisher (the OpenFlow app), in the order the changes were made.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

from controller import records
from controller.pipeline.compile import Compiler
from controller.pipeline.state import ChangeSet
from controller.store.base import Delete, Operation, Put, Store
from topology.model import Endpoint, Link, Model, Network, Node, Tenant, Touched, touched_by

log = logging.getLogger(__name__)
Publisher = Callable[[dict[str, ChangeSet]], None]


class Service:
    def __init__(self, store: Store, *, publish: Publisher | None = None) -> None:
        self.store = store
        self.model = Model()
        self.compiler = Compiler(self.model)
        self.lock = threading.RLock()  # one change at a time; readers take it too
        self.sequence = 0  # counts published changes: a state read at sequence N includes changes 1..N
        self._publishers: list[Publisher] = [publish] if publish else []

    def subscribe(self, publish: Publisher) -> None:
        self._publishers.append(publish)

    def restore(self) -> None:
        """Load the whole model from the store and compile every node."""
        with self.lock:
            self.model = records.restore(self.store.list(records.PREFIX))
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

    # --- changes -------------------------------------------------------------------------------

    def create_tenant(self, name: str) -> Tenant:
        with self._change() as change:
            change.apply(self.model.add_tenant(name), undo=lambda: self.model.remove_tenant(name))
            tenant = self.model.tenants[name]
            change.store(Put(records.key("tenants", name), records.tenant_doc(tenant)))
            return tenant

    def delete_tenant(self, name: str) -> None:
        with self._change() as change:
            tenant = self.model.tenants.get(name)
            change.apply(self.model.remove_tenant(name), undo=lambda: self.model.add_tenant(name, tenant_id=tenant.id))
            change.store(Delete(records.key("tenants", name)))

    def create_network(
        self,
        tenant: str,
        name: str,
        *,
        encap: str,
        segment: int,
        subnet: str,
        gateway: str | None = None,
        mtu: int | None = None,
    ) -> Network:
        key = f"{tenant}/{name}"
        with self._change() as change:
            touched = self.model.add_network(
                tenant, name, encap=encap, segment=segment, subnet=subnet, gateway=gateway, mtu=mtu
            )
            change.apply(touched, undo=lambda: self.model.remove_network(key))
            network = self.model.networks[key]
            change.store(Put(records.key("networks", key), records.network_doc(network)))
            return network

    def delete_network(self, key: str) -> None:
        with self._change() as change:
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
                    self.model.attach_qos(attachment.profile, key, meter_id=attachment.meter_id)

            change.apply(self.model.remove_network(key), undo=undo)
            change.store(*operations)

    def register_node(
        self, name: str, *, tunnel_ip: str, uplink: str | None = None, datapath_id: int | None = None
    ) -> Node:
        """Add a node; registering it again with the same values changes nothing."""
        with self._change() as change:
            existing = self.model.nodes.get(name)
            if existing is not None:
                same = str(existing.tunnel_ip) == tunnel_ip and existing.uplink == uplink
                if same and datapath_id in (None, existing.datapath_id):
                    return existing
                old = records.node_doc(existing)
                change.apply(self.model.remove_node(name), undo=lambda: _restore(self.model, "nodes", old, name))
            touched = self.model.add_node(name, tunnel_ip=tunnel_ip, uplink=uplink, datapath_id=datapath_id)
            change.apply(touched, undo=lambda: self.model.remove_node(name))
            node = self.model.nodes[name]
            change.store(Put(records.key("nodes", name), records.node_doc(node)))
            return node

    def create_link(self, a: str, a_port: str, b: str, b_port: str) -> Link:
        """A fabric link between two nodes' bridges; its ports get the next planned link ofports."""
        with self._change() as change:
            touched = self.model.add_link(a, a_port, b, b_port)
            change.apply(touched, undo=lambda: self.model.remove_link(a, b, a_port=a_port, b_port=b_port))
            link = self.model.links[-1]
            change.store(Put(records.key("links", records.link_name(link)), records.link_doc(link)))
            return link

    def set_link_ports(self, node: str, states: Mapping[str, bool]) -> bool:
        """What a switch reports of its fabric link ports (port name -> up). Operational state: not stored,
        but compiled and published like any change, so floods and paths avoid a link that is down.
        Returns whether anything changed."""
        with self._change() as change:
            for port, up in sorted(states.items()):
                was = self.model.link_port_up(node, port)
                if was == up:
                    continue
                touched = self.model.set_link_port(node, port, up=up)
                change.apply(touched, undo=lambda p=port, w=was: self.model.set_link_port(node, p, up=w))
                log.info("node %s: fabric link port %s is %s", node, port, "up" if up else "down")
            return change.touched is not None

    def create_qos(self, name: str, *, rate_kbps: int, burst_kb: int | None = None, direction: str = "both") -> None:
        with self._change() as change:
            touched = self.model.add_qos(name, rate_kbps=rate_kbps, burst_kb=burst_kb, direction=direction)
            change.apply(touched, undo=lambda: self.model.remove_qos(name))
            change.store(Put(records.key("qos", name), records.qos_doc(self.model.qos_profiles[name])))

    def delete_qos(self, name: str) -> None:
        with self._change() as change:
            profile = self.model.qos_profiles.get(name)
            undo = lambda: self.model.add_qos(  # noqa: E731
                name, rate_kbps=profile.rate_kbps, burst_kb=profile.burst_kb, direction=profile.direction
            )
            change.apply(self.model.remove_qos(name), undo=undo)
            change.store(Delete(records.key("qos", name)))

    def attach_qos(self, name: str, target: str) -> None:
        with self._change() as change:
            previous = self.model.qos_attachments.get(target)
            touched = self.model.attach_qos(name, target)
            undo = (
                (lambda: self.model.attach_qos(previous.profile, target))
                if previous
                else (lambda: self.model.detach_qos(target))
            )
            change.apply(touched, undo=undo)
            doc = records.attachment_doc(self.model.qos_attachments[target])
            change.store(Put(records.key("qos-attachments", target), doc))

    def detach_qos(self, target: str) -> None:
        with self._change() as change:
            previous = self.model.qos_attachments.get(target)
            undo = lambda: self.model.attach_qos(previous.profile, target, meter_id=previous.meter_id)  # noqa: E731
            change.apply(self.model.detach_qos(target), undo=undo)
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
    ) -> Endpoint:
        """Allocate IP, MAC and ofport (IPAM) and store the endpoint, atomically."""
        with self._change() as change:
            endpoint = self.model.add_endpoint(
                endpoint_id, network=network, node=node, ip=ip, mac=mac, port_name=port_name
            )
            change.apply(touched_by(endpoint), undo=lambda: self.model.remove_endpoint(endpoint_id))
            # Fails if the key exists already: two controllers must never allocate the same endpoint.
            change.store(Put(records.key("endpoints", endpoint_id), records.endpoint_doc(endpoint)))
            return endpoint

    def delete_endpoint(self, endpoint_id: str) -> None:
        with self._change() as change:
            endpoint = self.model.endpoint(endpoint_id)
            doc = records.endpoint_doc(endpoint)
            attachment = self.model.qos_attachments.get(endpoint_id)
            operations: list[Operation] = [Delete(records.key("endpoints", endpoint_id))]
            if attachment is not None:
                operations.append(Delete(records.key("qos-attachments", endpoint_id)))

            def undo() -> None:
                _restore(self.model, "endpoints", doc, endpoint_id)
                if attachment is not None:
                    self.model.attach_qos(attachment.profile, endpoint_id, meter_id=attachment.meter_id)

            change.apply(self.model.remove_endpoint(endpoint_id), undo=undo)
            change.store(*operations)

    @contextmanager
    def _change(self) -> Iterator[_Change]:
        with self.lock:
            change = _Change()
            try:
                yield change
                if change.operations:
                    self.store.commit(change.operations)
            except BaseException:
                change.undo_all()
                raise
            if change.touched is not None:
                changes = self.compiler.update(change.touched)
                self.sequence += 1
                for publish in self._publishers:
                    publish(changes)


class _Change:
    """One change in progress: what it touched, how to undo it, what to store."""

    def __init__(self) -> None:
        self.touched: Touched | None = None
        self.operations: list[Operation] = []
        self._undo: list[Callable[[], object]] = []

    def apply(self, touched: Touched, *, undo: Callable[[], object]) -> None:
        self.touched = touched if self.touched is None else self.touched.merge(touched)
        self._undo.append(undo)

    def store(self, *operations: Operation) -> None:
        self.operations.extend(operations)

    def undo_all(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()


def _restore(model: Model, kind: str, doc: dict, name: str) -> None:
    records.restore_one(model, kind, doc, path=records.key(kind, name))
