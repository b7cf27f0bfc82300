"""The Service's changes to Kubernetes namespaces, endpoint labels and NetworkPolicies.

Part of `controller.service.Service` (a mixin): each change is validated in the model, compiled, stored and
published like every other, all or nothing. Namespaces are stored under `/tenet/namespaces/NAME`,
NetworkPolicies as submitted under `/tenet/networkpolicies/NAMESPACE/NAME`; an endpoint's labels and named
ports live in its own record.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from controller import records
from controller.store.base import Delete, Put
from topology.errors import ValidationError
from topology.namespaces import Namespace, ports_json
from topology.netpol_spec import NetworkPolicy

if TYPE_CHECKING:
    from controller.service import Service


class DocumentError(ValidationError):
    """A ValidationError in document `number` (1-based) of a batch: the field stays the document's own
    (`metadata.namespace`), the message names the document (`document 2: metadata.namespace: ...`)."""

    def __init__(self, number: int, error: ValidationError) -> None:
        super().__init__(error.path, error.message, conflict=error.conflict)
        self.document = number
        self.args = (f"document {number}: {error}",)


class NetpolChanges:
    """Namespaces, labels and NetworkPolicies: the methods `Service` gains from this mixin."""

    def create_namespace(
        self: Service, name: str, *, tenant: str, labels: Mapping[str, str] | None = None
    ) -> Namespace:
        """A namespace of `tenant`; raises ValidationError naming the field (409 when the name is taken)."""
        with self._change(f"creating namespace {name!r}") as change:
            change.apply(
                self.model.add_namespace(name, tenant=tenant, labels=labels),
                undo=lambda: self.model.remove_namespace(name),
            )
            namespace = self.model.namespaces[name]
            change.store(Put(records.key("namespaces", name), records.namespace_doc(namespace)))
            return namespace

    def delete_namespace(self: Service, name: str) -> None:
        """Delete a namespace without endpoints and NetworkPolicies (ValidationError, 409, otherwise)."""
        with self._change(f"deleting namespace {name!r}") as change:
            old = self.model.namespace(name)
            doc = records.namespace_doc(old)
            change.apply(
                self.model.remove_namespace(name),
                undo=lambda: self.model.add_namespace(name, tenant=old.tenant, labels=doc["labels"]),
            )
            change.store(Delete(records.key("namespaces", name)))

    def label_namespace(self: Service, name: str, labels: Mapping[str, str] | None) -> Namespace:
        """Replace a namespace's labels (`kubernetes.io/metadata.name` stays its name)."""
        with self._change(f"labelling namespace {name!r}") as change:
            old = records.namespace_doc(self.model.namespace(name))
            change.apply(
                self.model.set_namespace_labels(name, labels),
                undo=lambda: self.model.set_namespace_labels(name, old["labels"]),
            )
            namespace = self.model.namespaces[name]
            change.store(Put(records.key("namespaces", name), records.namespace_doc(namespace)))
            return namespace

    def label_endpoint(self: Service, endpoint_id: str, labels: Mapping[str, str] | None) -> Any:
        """Replace an endpoint's labels; returns the endpoint."""
        return self.update_endpoint(endpoint_id, labels=labels)

    def update_endpoint(
        self: Service, endpoint_id: str, *, labels: Mapping[str, str] | None = None, ports: object = None
    ) -> Any:
        """Replace an endpoint's `labels` and/or its named container `ports` (`[{name, port, protocol}]`, as
        at creation); None leaves that one as it is. All or nothing: a ValidationError names the field
        (`endpoint.labels`, `endpoint.ports[0].port`) and changes neither. Returns the endpoint."""
        with self._change(f"updating endpoint {endpoint_id!r}") as change:
            before = self.model.endpoint(endpoint_id)
            old_labels, old_ports = dict(before.labels), ports_json(before.ports)
            if labels is not None:
                change.apply(
                    self.model.set_endpoint_labels(endpoint_id, labels),
                    undo=lambda: self.model.set_endpoint_labels(endpoint_id, old_labels),
                )
            if ports is not None:
                change.apply(
                    self.model.set_endpoint_ports(endpoint_id, ports),
                    undo=lambda: self.model.set_endpoint_ports(endpoint_id, old_ports),
                )
            endpoint = self.model.endpoints[endpoint_id]
            change.store(Put(records.key("endpoints", endpoint_id), records.endpoint_doc(endpoint)))
            return endpoint

    def apply_policy(self: Service, doc: object, *, namespace: str | None = None) -> tuple[NetworkPolicy, bool]:
        """Create or replace a NetworkPolicy from its document (validated as the Kubernetes API server does,
        `topology.netpol_spec`). Returns the policy and whether it was created (not replaced)."""
        with self._change("applying a NetworkPolicy") as change:
            probe = self.model.policies.copy()
            policy, touched = self.model.apply_policy(doc, namespace=namespace)
            previous = probe.get(policy.key)

            def undo() -> None:
                if previous is None:
                    self.model.remove_policy(policy.key)
                else:
                    self.model.apply_policy(previous.doc, namespace=previous.namespace)

            change.apply(touched, undo=undo)
            change.store(Put(records.key("networkpolicies", policy.key), records.policy_doc(self.model, policy.key)))
            return policy, previous is None

    def apply_policies(
        self: Service, docs: list[object], *, namespace: str | None = None
    ) -> list[tuple[NetworkPolicy, str]]:
        """Create or replace several NetworkPolicies in ONE change, all or nothing: every document is validated
        and applied to the model, the result compiled once, all stored and published together; any failure
        leaves the model, the compiled state and the store as they were. `namespace` fills or must equal each
        document's `metadata.namespace` (as `apply_policy`). Returns, in order, each policy and what happened
        to it, as kubectl says: "created", "configured" or "unchanged". Raises DocumentError (a
        ValidationError naming the 1-based document and the field) for the first bad document."""
        results: list[tuple[NetworkPolicy, str]] = []
        with self._change(f"applying {len(docs)} NetworkPolicies") as change:
            for number, doc in enumerate(docs, start=1):
                try:
                    probe = self.model.policies.copy()
                    policy, touched = self.model.apply_policy(doc, namespace=namespace)
                except DocumentError:
                    raise
                except ValidationError as error:
                    raise DocumentError(number, error) from None
                previous = probe.get(policy.key)

                def undo(policy: NetworkPolicy = policy, previous: NetworkPolicy | None = previous) -> None:
                    if previous is None:
                        self.model.remove_policy(policy.key)
                    else:
                        self.model.apply_policy(previous.doc, namespace=previous.namespace)

                change.apply(touched, undo=undo)
                result = "created" if previous is None else "configured" if touched.policies else "unchanged"
                results.append((policy, result))
            keys = dict.fromkeys(policy.key for policy, _ in results)  # a policy given twice is stored once
            change.store(*(Put(records.key("networkpolicies", k), records.policy_doc(self.model, k)) for k in keys))
        return results

    def delete_policy(self: Service, key: str) -> None:
        """Delete the NetworkPolicy "namespace/name" (ValidationError if there is none)."""
        with self._change(f"deleting NetworkPolicy {key!r}") as change:
            old = self.model.policies.get(key)
            old_id = self.model.policy_ids.get(key)
            touched = self.model.remove_policy(key)  # raises ValidationError when there is none
            assert old is not None
            change.apply(
                touched,
                undo=lambda: self.model.apply_policy(old.doc, namespace=old.namespace, policy_id=old_id),
            )
            change.store(Delete(records.key("networkpolicies", key)))
