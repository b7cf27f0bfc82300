"""Kubernetes Namespaces and NetworkPolicies into the model (part of `controller.k8s.sync.Sync`, a mixin).

Rules (README "Kubernetes"):
- with the watchers on, the API server is the truth for namespaces and NetworkPolicies: each Kubernetes
  Namespace is the model namespace of that name, with its labels (`kubernetes.io/metadata.name` included);
  its tenant is the tenant of the network its pods join (`controller.k8s.mapping.namespace_network`, else the
  cluster network's). A namespace no network maps is not made (nor its policies applied) until one does;
- namespaces are reconciled only once the Networks and the Namespaces have been listed, so a restart never
  moves or deletes them on a partial view (a CNI ADD may make its pod's namespace once the Networks are);
- a namespace whose tenant changes (a Network's `namespaces`/`namespaceSelector`, or its labels, changed) is
  deleted and made again under the new tenant, its NetworkPolicies removed first and applied again after,
  while it has no endpoints; with endpoints it stays in its old tenant (an Event `TenantChangeRefused` on the
  Namespace says so) and moves once its last endpoint is gone. Pods never straddle two tenants;
- a deleted Namespace is removed from the model once its endpoints and NetworkPolicies are gone (their
  own deletions come through their watches); a namespace or NetworkPolicy the model holds and a relist
  does not list is removed then too (one made through the HTTP API included);
- a NetworkPolicy is applied as the API server serves it (`Service.apply_policy`); one the model refuses is
  not applied (a replaced one keeps its last accepted version) and gets a Warning Event `Invalid` naming the
  field; the watch goes on;
- a NetworkPolicy is applied only to a model namespace in the tenant Kubernetes maps its Namespace to: one
  in another tenant (made through the HTTP API, or whose move waits for its endpoints) never gets another
  tenant's policies. Such a policy is held (`held`), with a Warning Event `TenantMismatch`, and applied when
  the namespace is in that tenant; one whose Namespace is not watched yet waits the same way, silently;
- a NetworkPolicy is realized when every node holding a pod it selects has a connected switch that holds
  the change that applied it (the readiness rule of an endpoint, `GET /v1/endpoints/ID/ready`): the
  controller then records a Normal Event `Realized` on it, once per applied version.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from controller.k8s import mapping
from topology.errors import ValidationError
from topology.netpol import selected_endpoints

if TYPE_CHECKING:
    import threading

    from controller.k8s.events import Recorder
    from controller.k8s.informer import Informer
    from controller.service import Service

log = logging.getLogger(__name__)
Object = dict[str, Any]
# node -> the last change (`Service.sequence`) its switch holds, or None when it has no switch in sync
SwitchSequence = Callable[[str], int | None]


class NamespacesSync:
    """Namespaces, NetworkPolicies and their realization: the methods `Sync` gains from this mixin."""

    service: Service
    cluster_network: str
    events: Recorder
    informers: dict[str, Informer]
    lock: threading.RLock
    switch_sequence: SwitchSequence | None
    refused_moves: dict[str, str]  # namespace -> the tenant it could not move to (its Event is recorded)
    realizing: dict[str, tuple[Object, int]]  # "ns/name" -> (the NetworkPolicy, the sequence that applied it)
    held: dict[str, Object]  # "ns/name" -> a NetworkPolicy not applied: its namespace is not its tenant's (yet)

    def known(self, kind: str) -> dict[str, Object]:
        raise NotImplementedError  # Sync's

    def networks(self) -> list[Object]:
        raise NotImplementedError  # Sync's

    # --- namespaces ------------------------------------------------------------------------------

    def listed(self, *kinds: str) -> bool:
        """Whether the informers of `kinds` have listed once (an absent informer counts as listed)."""
        return all(self.informers[k].relists > 0 for k in kinds if k in self.informers)

    def namespace_tenant(self, name: str, obj: Object) -> str | None:
        """The tenant of the network namespace `name`'s pods join, or None when no network maps it."""
        chosen = mapping.namespace_network(name, mapping.namespace_labels(name, obj), self.networks())
        if chosen is not None:
            return str(chosen["spec"]["tenant"])
        cluster = self.service.model.networks.get(self.cluster_network)
        return cluster.tenant if cluster is not None else None

    def reconcile_namespaces(self) -> None:
        """Bring every model namespace to its Kubernetes Namespace (see the module docstring)."""
        if not self.listed("networks", "namespaces"):
            return
        for name in sorted(set(self.known("namespaces")) | set(self.service.model.namespaces)):
            self.reconcile_namespace(name)

    def reconcile_namespace(self, name: str, obj: Object | None = None) -> None:
        """One namespace; `obj` the Namespace when the watch has not delivered it yet. Logs and records an
        Event for what the model refuses; never raises ValidationError."""
        if not self.listed("networks") or (obj is None and not self.listed("namespaces")):
            return
        obj = obj if obj is not None else self.known("namespaces").get(name)
        try:
            self._reconcile_namespace(name, obj)
        except ValidationError as error:
            if obj is None:
                log.warning("namespace %s: %s", name, error)
            else:
                self.events.record(obj, "Namespace", "Warning", "Invalid", f"not applied to the model: {error}")
        for key, doc in sorted(self.held.items()):  # applied if the namespace is their tenant's now, else
            if key.split("/", 1)[0] == name:  # held again, with their Event once it is known not to be
                self.apply_networkpolicy(doc)

    def _reconcile_namespace(self, name: str, obj: Object | None) -> None:
        model = self.service.model
        current = model.namespaces.get(name)
        tenant = self.namespace_tenant(name, obj) if obj is not None else None
        if obj is None:  # deleted: once its endpoints and NetworkPolicies are gone
            if current is not None and not self._holds_anything(name):
                self.service.delete_namespace(name)
            return
        if tenant is None:
            log.info("namespace %s: no network maps it (nor a cluster network %s)", name, self.cluster_network)
            return
        labels = mapping.namespace_labels(name, obj)
        if current is not None and current.tenant != tenant:
            if any(e.namespace == name for e in model.endpoints.values()):
                if self.refused_moves.get(name) != tenant:
                    self.refused_moves[name] = tenant
                    message = (
                        f"its network is now of tenant {tenant!r}, but it has endpoints in tenant "
                        f"{current.tenant!r}: it moves once they are gone"
                    )
                    self.events.record(obj, "Namespace", "Warning", "TenantChangeRefused", message)
                if current.label_map != labels:
                    self.service.label_namespace(name, labels)
                return
            log.info("namespace %s moves from tenant %s to %s", name, current.tenant, tenant)
            for policy in model.policies_in(name):
                self.service.delete_policy(policy.key)
            self.service.delete_namespace(name)
            current = None
        self.refused_moves.pop(name, None)
        if current is None:
            self.service.create_namespace(name, tenant=tenant, labels=labels)
            for key, doc in sorted(self.known("networkpolicies").items()):
                if key.split("/", 1)[0] == name:
                    self.apply_networkpolicy(doc)
        elif current.label_map != labels:
            self.service.label_namespace(name, labels)

    def _holds_anything(self, name: str) -> bool:
        model = self.service.model
        return bool(model.policies_in(name)) or any(e.namespace == name for e in model.endpoints.values())

    def _upsert_namespaces(self, obj: Object, old: Object | None) -> None:
        self.reconcile_namespace(obj["metadata"]["name"])  # labels, and the tenant they map it to

    def _delete_namespaces(self, old: Object) -> None:
        self.reconcile_namespace(old["metadata"]["name"])

    # --- NetworkPolicies -------------------------------------------------------------------------

    def policy_tenant_mismatch(self, name: str) -> tuple[str, bool] | None:
        """Why NetworkPolicies of Kubernetes namespace `name` may not be applied to the model namespace of
        that name now, and whether that is worth a Warning Event; None when they may. They may when the
        model namespace is in the tenant Kubernetes maps the Namespace to (`namespace_tenant`). While the
        Networks and Namespaces are not listed, or the Namespace is not watched yet, that is not known: they
        wait (no Event). Without a Namespace watch at all nothing is compared."""
        current = self.service.model.namespaces.get(name)
        if current is None or "namespaces" not in self.informers:
            return None
        obj = self.known("namespaces").get(name)
        if obj is None or not self.listed("networks", "namespaces"):
            return f"namespace {name} is not watched yet", False
        wanted = self.namespace_tenant(name, obj)
        if current.tenant == wanted:
            return None
        where = f"tenant {wanted!r}" if wanted is not None else "a tenant (no Network maps it)"
        return (
            f"namespace {name} is not in {where} in Tenet, as its Network maps it; applied once it is "
            "(a namespace moves once it has no endpoints)",
            True,
        )

    def apply_networkpolicy(self, obj: Object) -> None:
        """Apply a NetworkPolicy as served; one the model refuses gets a Warning Event, one whose namespace is
        not its tenant's (yet) is held (see module docstring)."""
        key = f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"
        namespace = obj["metadata"]["namespace"]
        self.held.pop(key, None)
        if namespace not in self.service.model.namespaces:
            log.info("NetworkPolicy %s waits for its namespace in the model", key)
            return
        mismatch = self.policy_tenant_mismatch(namespace)
        if mismatch is not None:
            why, warn = mismatch
            self.held[key] = obj
            if warn:  # logged by the recorder too
                self.events.record(obj, "NetworkPolicy", "Warning", "TenantMismatch", f"not applied: {why}")
            else:
                log.info("NetworkPolicy %s waits: %s", key, why)
            return
        doc = {k: obj[k] for k in ("apiVersion", "kind", "metadata", "spec") if k in obj}
        doc.setdefault("apiVersion", "networking.k8s.io/v1")
        doc.setdefault("kind", "NetworkPolicy")
        previous = self.service.model.policies.get(key)
        try:
            policy, _created = self.service.apply_policy(doc, namespace=namespace)
        except ValidationError as error:
            kept = " (its last accepted version stays applied)" if previous is not None else ""
            self.events.record(obj, "NetworkPolicy", "Warning", "Invalid", f"not applied{kept}: {error}")
            return
        if previous is None or previous != policy:  # a new version to realize (not a metadata-only change)
            self.realizing[key] = (obj, self.service.sequence)

    def _upsert_networkpolicies(self, obj: Object, old: Object | None) -> None:
        if self.listed("networks", "namespaces") and obj["metadata"]["namespace"] not in self.service.model.namespaces:
            self.reconcile_namespace(obj["metadata"]["namespace"])  # applies its policies when it makes it
            return
        self.apply_networkpolicy(obj)

    def _delete_networkpolicies(self, old: Object) -> None:
        key = f"{old['metadata']['namespace']}/{old['metadata']['name']}"
        self.realizing.pop(key, None)
        self.held.pop(key, None)
        if key in self.service.model.policies:
            self.service.delete_policy(key)
        self.reconcile_namespace(old["metadata"]["namespace"])  # a deleted namespace may go now

    def drop_unlisted_policies(self) -> None:
        """After a NetworkPolicy relist: remove the model's policies the API server does not have."""
        listed = set(self.known("networkpolicies"))
        for key in sorted(set(self.held) - listed):
            del self.held[key]
        for key in sorted(set(self.service.model.policies) - listed):
            log.info("NetworkPolicy %s is not in the cluster: removing it", key)
            self.realizing.pop(key, None)
            self.service.delete_policy(key)

    # --- realization -----------------------------------------------------------------------------

    def check_realized(self) -> list[str]:
        """Record `Realized` for each applied NetworkPolicy every switch it needs now holds; returns their keys.
        Nothing without a `switch_sequence` (no switches to ask)."""
        if self.switch_sequence is None:
            return []
        done = []
        with self.service.lock, self.lock:
            model = self.service.model
            for key, (obj, sequence) in sorted(self.realizing.items()):
                policy = model.policies.get(key)
                if policy is None:
                    del self.realizing[key]
                    continue
                nodes = sorted({model.endpoints[e].node for e in selected_endpoints(model, policy)})
                if any((self.switch_sequence(node) or -1) < sequence for node in nodes):
                    continue
                del self.realizing[key]
                done.append(key)
                where = f"the switches of nodes {', '.join(nodes)}" if nodes else "no switch (it selects no pod yet)"
                generation = obj["metadata"].get("generation")
                version = f" (generation {generation})" if generation is not None else ""
                self.events.record(obj, "NetworkPolicy", "Normal", "Realized", f"installed on {where}{version}")
        return done
