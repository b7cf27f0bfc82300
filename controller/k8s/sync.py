"""Kubernetes objects into the model, through the same `Service` the HTTP API uses (its one writer).

Decisions (README "Kubernetes"):
- a Network CR's tenant is made on first use; a Tenant CR is needed only for a quota (`spec.quota`), and
  deleting it deletes the tenant once it has no networks;
- the network is `SPEC.TENANT/METADATA.NAME`; its spec cannot change in place (the model has no update):
  a changed spec deletes and recreates it while it has no endpoints, else the change is refused in status;
- Network status: `segment`, `freeAddresses` and conditions `Ready` (False with reason `Invalid` and the
  model's message when the model refuses the spec) and `QosApplied` when `spec.qos` is set;
- a Node registers (or moves) the model node of that name with its tunnel IP; deleting it releases the
  endpoints on it (the model node stays: its switch may still be connected);
- a pod's endpoint is made in its namespace with its labels and named container ports, in the change that
  makes it; a pod's labels changed relabel its endpoints (`Service.label_endpoint`);
- pods' endpoints are recorded under `/tenet/k8s/endpoints/ID` (namespace, pod, uid, labels, named ports,
  when made): a deleted pod has the endpoints of its uid released, a pod of that name with another uid the
  earlier pod's (`controller.k8s.pods`); one missing from a relist (a dead node never sent CNI DEL) has its
  endpoints released once a GET confirms it is gone;
- a Network deleted while it has endpoints stays in the model, taking no new pod, until its last endpoint
  is released (Warning Event `DeletionPending`);
- Namespaces and NetworkPolicies: `controller.k8s.namespaces`. What the model refuses is logged and recorded
  as a Kubernetes Event on the object (`controller.k8s.events`); no refusal ends a watch.
"""

from __future__ import annotations

import datetime
import logging
import threading
from typing import TYPE_CHECKING, Any

from controller.k8s import mapping
from controller.k8s.events import Recorder
from controller.k8s.namespaces import SwitchSequence
from controller.k8s.pods import DELETING, RECORDS, PodsSync
from controller.policy import Quota
from controller.store.base import Delete, Put
from topology.errors import ValidationError

if TYPE_CHECKING:
    from controller.k8s.informer import Informer
    from controller.service import Service

log = logging.getLogger(__name__)
Object = dict[str, Any]
GROUP, VERSION = "tenet.io", "v1alpha1"
KINDS = {
    "tenants": "Tenant",
    "qosprofiles": "QosProfile",
    "networks": "Network",
    "nodes": "Node",
    "namespaces": "Namespace",
    "pods": "Pod",
    "networkpolicies": "NetworkPolicy",
}
REQUEST_TIMEOUT_S = 5  # seconds a status write may take (off the Service's lock, in `write_statuses`)
MAX_STATUSES = 1024  # Networks with a status waiting to be written (beyond: the oldest is dropped)


class Sync(PodsSync):
    """The handler of every informer (`controller.k8s.informer.Handler`). `custom`: a CustomObjectsApi
    for status write-back (None: no write-back); `events`: where Events go (default: logged only);
    `switch_sequence`: node -> the last change its switch holds (None: NetworkPolicies are never reported
    realized); `core`: a CoreV1Api that confirms a pod is gone before its endpoint is released (None: a
    pod missing from a list is taken as gone); `informers` is filled by `controller.k8s.cluster`."""

    def __init__(
        self,
        service: Service,
        custom: Any | None,
        *,
        cluster_network: str = "default/pods",
        events: Recorder | None = None,
        switch_sequence: SwitchSequence | None = None,
        core: Any | None = None,
    ) -> None:
        self.service = service
        self.custom = custom
        self.core = core
        self.cluster_network = cluster_network
        self.events = events if events is not None else Recorder(None)
        self.switch_sequence = switch_sequence
        self.informers: dict[str, Informer] = {}
        self.lock = threading.RLock()
        self.refused_moves: dict[str, str] = {}
        self.realizing: dict[str, tuple[Object, int]] = {}
        self.held: dict[str, Object] = {}  # NetworkPolicies whose namespace is not (yet) in their tenant
        self.stale_networks: set[str] = set()  # networks whose free addresses changed since their status
        self.pods_of: dict[str, dict[str, Any]] = {}  # endpoint id -> its record
        self.deleting: dict[str, Object] = {}  # network key -> its Network CR, deleted while it had endpoints
        self.read_namespaces: dict[str, Object] = {}  # namespace -> as a GET read it for a CNI ADD
        self.statuses: dict[str, dict[str, Any]] = {}  # Network name -> the status to write (latest wins)
        self.statuses_lock = threading.Lock()  # guards `statuses` only: never held with a request under way
        for record in service.store.list(RECORDS):
            self.pods_of[record.key[len(RECORDS) :]] = dict(record.value)
        for record in service.store.list(DELETING):
            self.deleting[record.key[len(DELETING) :]] = dict(record.value)

    # --- what the informers know -----------------------------------------------------------------

    def known(self, kind: str) -> dict[str, Object]:
        informer = self.informers.get(kind)
        return informer.known if informer is not None else {}

    def networks(self) -> list[Object]:
        """The Network CRs whose network is in the model (and not waiting to be deleted)."""
        model = self.service.model
        return [
            n
            for n in self.known("networks").values()
            if mapping.network_key(n) in model.networks and mapping.network_key(n) not in self.deleting
        ]

    # --- the handler -----------------------------------------------------------------------------

    def upsert(self, kind: str, obj: Object, old: Object | None) -> bool:
        """Apply a new or changed object; False when the model refused it (the informer retries it)."""
        with self.service.lock, self.lock:
            method = getattr(self, f"_upsert_{kind}", None)
            return method is None or self._refusable(method, kind, obj, obj, old)

    def delete(self, kind: str, old: Object) -> None:
        with self.service.lock, self.lock:
            method = getattr(self, f"_delete_{kind}", None)
            if method is not None:
                self._refusable(method, kind, old, old)

    def _refusable(self, method: Any, kind: str, obj: Object, *args: Any) -> bool:
        """Run a handler; what the Service refuses (ValidationError) is logged and recorded as a Warning
        Event on the object, and the watch goes on. False when refused (by an error or the handler's False)."""
        try:
            return method(*args) is not False
        except ValidationError as error:
            self.events.record(obj, KINDS.get(kind, kind), "Warning", "Invalid", f"not applied to the model: {error}")
            return False

    def synced(self, kind: str) -> None:
        if kind == "pods":
            self.release_unlisted()
        with self.service.lock, self.lock:
            if kind == "networks":
                self.retry_deletions()
                for network in list(self.known("networks").values()):
                    self._write_status(network)
            if kind == "networkpolicies":
                self.drop_unlisted_policies()
            if kind in ("networks", "namespaces", "networkpolicies"):
                self.reconcile_namespaces()

    # --- tenants and QoS profiles ----------------------------------------------------------------

    def _ensure_tenant(self, name: str) -> None:
        if name not in self.service.model.tenants:
            self.service.create_tenant(name)

    def _upsert_tenants(self, obj: Object, old: Object | None) -> None:
        name = obj["metadata"]["name"]
        self._ensure_tenant(name)
        quota = (obj.get("spec") or {}).get("quota") or {}
        wanted = Quota(quota.get("networks"), quota.get("endpoints"))
        if self.service.quotas.get(name) != wanted:
            self.service.set_quota(name, wanted)

    def _delete_tenants(self, old: Object) -> None:
        name = old["metadata"]["name"]
        if name in self.service.model.tenants and not self.service.model.networks_by_tenant.get(name):
            self.service.delete_tenant(name)

    def _upsert_qosprofiles(self, obj: Object, old: Object | None) -> None:
        name, spec = obj["metadata"]["name"], obj.get("spec") or {}
        wanted = {
            "rate_kbps": spec.get("rateKbps"),
            "burst_kb": spec.get("burstKb"),
            "direction": spec.get("direction", "egress"),
        }
        model = self.service.model
        profile = model.qos_profiles.get(name)
        if profile is not None:
            same = profile.rate_kbps == wanted["rate_kbps"] and profile.direction == wanted["direction"]
            if same and wanted["burst_kb"] in (None, profile.burst_kb):
                return
            self._delete_qosprofiles(obj)
        try:
            self.service.create_qos(name, **wanted)
        except ValidationError as error:
            self.events.record(obj, "QosProfile", "Warning", "Invalid", f"not applied to the model: {error}")
            return
        for network in self.known("networks").values():
            if (network.get("spec") or {}).get("qos") == name:
                self._upsert_networks(network, network)

    def _delete_qosprofiles(self, old: Object) -> None:
        name = old["metadata"]["name"]
        model = self.service.model
        for target, attachment in sorted(model.qos_attachments.items()):
            if attachment.profile == name:
                self.service.detach_qos(target)
        if name in model.qos_profiles:
            self.service.delete_qos(name)

    # --- networks --------------------------------------------------------------------------------

    def _upsert_networks(self, obj: Object, old: Object | None) -> bool:
        key = mapping.network_key(obj)
        model = self.service.model
        if self.deleting.pop(key, None) is not None:  # made again: it stays
            self.service.store.commit([Delete(DELETING + key)])
        if old is not None and mapping.network_key(old) != key and mapping.network_key(old) in model.networks:
            self._delete_networks(old)
        args = mapping.network_args(obj)
        error: ValidationError | None = None
        try:
            existing = model.networks.get(key)
            if existing is not None and not _same(existing, args):
                if model.endpoints_by_network.get(key):
                    raise ValidationError("spec", "a network with endpoints cannot change; delete its pods first")
                self.service.delete_network(key)
                existing = None
            if existing is None:
                self._ensure_tenant(obj["spec"]["tenant"])
                self.service.create_network(obj["spec"]["tenant"], obj["metadata"]["name"], **args)
            self._attach(key, (obj.get("spec") or {}).get("qos"))
        except ValidationError as refused:
            self.events.record(obj, "Network", "Warning", "Invalid", f"not applied to the model: {refused}")
            error = refused
        self._write_status(obj, error)
        self.reconcile_namespaces()  # its namespaces or namespaceSelector may map namespaces elsewhere
        return error is None

    def _attach(self, key: str, profile: str | None) -> None:
        model = self.service.model
        current = model.qos_attachments.get(key)
        if profile is None:
            if current is not None:
                self.service.detach_qos(key)
        elif profile in model.qos_profiles and (current is None or current.profile != profile):
            self.service.attach_qos(profile, key)

    def _delete_networks(self, old: Object) -> None:
        key = mapping.network_key(old)
        if key in self.service.model.networks:
            try:
                self.service.delete_network(key)
            except ValidationError as error:
                # Deleted once its last endpoint is released (`retry_deletions`); meanwhile no new pod joins it.
                self.deleting[key] = old
                self.service.store.commit([Put(DELETING + key, old)])  # a restarted controller still deletes it
                count = len(self.service.model.endpoints_by_network.get(key) or ())
                log.warning("Network %s deleted in Kubernetes, kept in the model: %s", key, error)
                self.events.record(
                    old,
                    "Network",
                    "Warning",
                    "DeletionPending",
                    f"network {key} has {count} endpoint(s): it leaves the model when the last is released; "
                    "no new pod joins it",
                )
        self.reconcile_namespaces()

    def _write_status(self, obj: Object, error: ValidationError | None = None) -> None:
        if self.custom is None:
            return
        key, name = mapping.network_key(obj), obj["metadata"]["name"]
        model = self.service.model
        network = model.networks.get(key)
        status: dict[str, Any] = {}
        conditions = []
        if error is None and network is not None:
            status["segment"] = network.segment
            status["freeAddresses"] = model.free_addresses(key)
            conditions.append(("Ready", "True", "Applied", f"network {key} is in the model"))
        else:
            message = str(error) if error is not None else f"network {key} is not in the model"
            conditions.append(("Ready", "False", "Invalid", message))
        profile = (obj.get("spec") or {}).get("qos")
        if profile is not None and network is not None:
            attached = model.qos_attachments.get(key)
            if attached is not None and attached.profile == profile:
                conditions.append(("QosApplied", "True", "Attached", f"QosProfile {profile} caps every endpoint"))
            else:
                conditions.append(("QosApplied", "False", "QosProfileNotFound", f"no QosProfile {profile}"))
        current = obj.get("status") or {}
        before = {c["type"]: c for c in current.get("conditions") or []}
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        status["conditions"] = [
            {
                "type": kind,
                "status": state,
                "reason": reason,
                "message": message,
                "observedGeneration": obj["metadata"].get("generation", 1),
                "lastTransitionTime": (
                    before[kind]["lastTransitionTime"]
                    if kind in before and before[kind].get("status") == state
                    else now
                ),
            }
            for kind, state, reason, message in conditions
        ]
        if all(current.get(field) == status.get(field) for field in ("segment", "freeAddresses", "conditions")):
            with self.statuses_lock:
                self.statuses.pop(name, None)  # one waiting is older than what the API server has
            return
        body = {"status": {"segment": None, "freeAddresses": None, **status}}
        with self.statuses_lock:  # written by `write_statuses`, off the Service's lock
            self.statuses.pop(name, None)
            if len(self.statuses) >= MAX_STATUSES:
                dropped = next(iter(self.statuses))
                log.warning("too many Network statuses waiting: the status of %s is not written", dropped)
                del self.statuses[dropped]
            self.statuses[name] = body

    def write_statuses(self) -> None:
        """Write the Network statuses waiting (the latest of each Network); call it without the Service's
        lock (each write may take `REQUEST_TIMEOUT_S` seconds). A failed write is logged; the next change or
        resync writes it again."""
        with self.statuses_lock:
            waiting, self.statuses = self.statuses, {}
        if self.custom is None:
            return
        for name, body in waiting.items():
            try:
                self.custom.patch_cluster_custom_object_status(
                    GROUP, VERSION, "networks", name, body, _request_timeout=REQUEST_TIMEOUT_S
                )
            except Exception as failed:
                log.warning("writing the status of Network %s failed: %s", name, failed)

    # --- nodes -----------------------------------------------------------------------------------

    def _upsert_nodes(self, obj: Object, old: Object | None) -> None:
        name, tunnel_ip = obj["metadata"]["name"], mapping.node_tunnel_ip(obj)
        if tunnel_ip is None:
            log.warning("Node %s has no InternalIP and no annotation %s", name, mapping.TUNNEL_IP_ANNOTATION)
            return
        node = self.service.model.nodes.get(name)
        if node is None:
            self.service.register_node(name, tunnel_ip=tunnel_ip)
        elif str(node.tunnel_ip) != tunnel_ip:  # keep what the node's agent registered besides
            self.service.register_node(
                name,
                tunnel_ip=tunnel_ip,
                uplink=node.uplink,
                datapath_id=node.datapath_id,
                underlay_mtu=node.underlay_mtu,
                uplink_mtu=node.uplink_mtu,
            )

    def _delete_nodes(self, old: Object) -> None:
        name = old["metadata"]["name"]
        for eid, endpoint in sorted(self.service.model.endpoints.items()):
            if endpoint.node == name:
                log.info("Node %s deleted: releasing endpoint %s", name, eid)
                self.release(eid)

    def refresh_statuses(self) -> None:
        """Write the status of the Networks whose free addresses changed (endpoints made or released)."""
        with self.service.lock, self.lock:
            stale, self.stale_networks = self.stale_networks, set()
            for network in list(self.known("networks").values()):
                if mapping.network_key(network) in stale:
                    self._write_status(network)


def _same(network: Any, args: dict[str, Any]) -> bool:
    """Whether a model network already is what a Network spec asks (unset fields: whatever it got)."""
    if network.encap.value != args["encap"] or str(network.subnet) != args["subnet"]:
        return False
    if args["segment"] is not None and network.segment != args["segment"]:
        return False
    if args["gateway"] is not None and str(network.gateway) != args["gateway"]:
        return False
    return args["mtu"] is None or network.mtu == args["mtu"]
