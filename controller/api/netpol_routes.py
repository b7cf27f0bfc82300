"""The API's Kubernetes resources: namespaces, endpoint labels and named ports, and NetworkPolicies.

Part of `controller.api.routes.Api` (a mixin). A tenant token sees and changes only its own tenant's
namespaces and their NetworkPolicies; another tenant's answer 404, exactly like ones that do not exist. A
NetworkPolicy is PUT as its Kubernetes document (`networking.k8s.io/v1`) and answered as it was submitted.
When the controller watches Kubernetes, namespaces are Kubernetes' (`controller.k8s.namespaces`): only the
cluster admin's token may create, relabel or delete them through the API (`kubernetes_namespaces`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from controller.api.http import Body, HttpError, Request, Response, not_found
from controller.api.views import endpoint_json
from controller.service_netpol import DocumentError
from topology.errors import ValidationError
from topology.namespaces import Namespace
from topology.netpol_spec import NetworkPolicy, parse_policy

if TYPE_CHECKING:
    from controller.api.routes import Api

NETPOL_HANDLERS = (
    ("GET", "/v1/namespaces", "list_namespaces"),
    ("POST", "/v1/namespaces", "create_namespace"),
    ("GET", "/v1/namespaces/{namespace}", "show_namespace"),
    ("PATCH", "/v1/namespaces/{namespace}", "label_namespace"),
    ("DELETE", "/v1/namespaces/{namespace}", "delete_namespace"),
    ("POST", "/v1/networkpolicies", "apply_policies"),
    ("GET", "/v1/namespaces/{namespace}/networkpolicies", "list_policies"),
    ("GET", "/v1/namespaces/{namespace}/networkpolicies/{name}", "show_policy_doc"),
    ("PUT", "/v1/namespaces/{namespace}/networkpolicies/{name}", "apply_policy"),
    ("DELETE", "/v1/namespaces/{namespace}/networkpolicies/{name}", "delete_policy"),
    ("PATCH", "/v1/endpoints/{endpoint}", "label_endpoint"),
)


def namespace_json(api: Api, namespace: Namespace) -> dict[str, Any]:
    return {
        "name": namespace.name,
        "tenant": namespace.tenant,
        "labels": namespace.label_map,
        "endpoints": sum(1 for e in api.model.endpoints.values() if e.namespace == namespace.name),
        "networkpolicies": [p.name for p in api.model.policies_in(namespace.name)],
    }


def labels_of(request: Request, path: str) -> dict[str, str]:
    """The `labels` of a `{"labels": {...}}` body (checked by the model, naming `path.labels`)."""
    body = Body(request.json(), path, allowed={"labels"})
    labels = body.data.get("labels")
    if labels is None:
        raise ValidationError(f"{path}.labels", "is required (an object of label keys to values; {} for none)")
    return labels


def kubernetes_namespaces(api: Api, request: Request, doing: str) -> None:
    """With the watchers on (`api.k8s`), namespaces are Kubernetes': the controller makes each one, in the
    tenant of the Network CR that maps it (else the cluster network's), and moves or deletes it as
    Kubernetes says. A tenant token may then read namespaces but not create, relabel or delete them: 403,
    whatever the name (so the answer tells nothing of other tenants); the cluster admin still may."""
    if api.k8s is None or request.principal.admin:
        return
    raise HttpError(
        403,
        f"{doing}: this controller watches Kubernetes, where namespaces come from (each one in the tenant of "
        "the Network that maps it); a tenant token may not create, relabel or delete them, the cluster-admin "
        "token may",
    )


class NetpolRoutes:
    """Handlers of NETPOL_HANDLERS."""

    def namespace(self: Api, request: Request, name: str) -> Namespace:
        found = self.model.namespaces.get(name)
        if found is None or not request.principal.sees(found.tenant):
            raise not_found(f"unknown namespace {name!r}")
        return found

    def policy(self: Api, request: Request) -> NetworkPolicy:
        namespace = self.namespace(request, request.params["namespace"])
        key = f"{namespace.name}/{request.params['name']}"
        found = self.model.policies.get(key)
        if found is None:
            raise not_found(f"unknown NetworkPolicy {key!r}")
        return found

    def list_namespaces(self: Api, request: Request) -> Response:
        wanted = request.query.get("tenant")
        with self.service.lock:
            found = [
                n
                for _name, n in sorted(self.model.namespaces.items())
                if request.principal.sees(n.tenant) and wanted in (None, n.tenant)
            ]
            return Response(200, [namespace_json(self, n) for n in found])

    def create_namespace(self: Api, request: Request) -> Response:
        kubernetes_namespaces(self, request, "creating a namespace")
        body = Body(request.json(), "namespace", allowed={"name", "tenant", "labels"})
        name, tenant = body.text("name"), body.text("tenant")
        labels = body.data.get("labels")
        with self.service.lock:
            if not request.principal.sees(tenant):  # another tenant's: as if it did not exist
                raise ValidationError("namespace.tenant", f"unknown tenant {tenant!r}")
            namespace = self.service.create_namespace(name, tenant=tenant, labels=labels)
            return Response(201, namespace_json(self, namespace), {"Location": f"/v1/namespaces/{name}"})

    def show_namespace(self: Api, request: Request) -> Response:
        with self.service.lock:
            return Response(200, namespace_json(self, self.namespace(request, request.params["namespace"])))

    def label_namespace(self: Api, request: Request) -> Response:
        """Replace the namespace's labels: `{"labels": {...}}`."""
        kubernetes_namespaces(self, request, "labelling a namespace")
        labels = labels_of(request, "namespace")
        with self.service.lock:
            name = self.namespace(request, request.params["namespace"]).name
            return Response(200, namespace_json(self, self.service.label_namespace(name, labels)))

    def delete_namespace(self: Api, request: Request) -> Response:
        kubernetes_namespaces(self, request, "deleting a namespace")
        with self.service.lock:
            self.service.delete_namespace(self.namespace(request, request.params["namespace"]).name)
        return Response(204)

    def list_policies(self: Api, request: Request) -> Response:
        with self.service.lock:
            namespace = self.namespace(request, request.params["namespace"])
            return Response(200, [p.doc for p in self.model.policies_in(namespace.name)])

    def show_policy_doc(self: Api, request: Request) -> Response:
        with self.service.lock:
            return Response(200, self.policy(request).doc)

    def apply_policy(self: Api, request: Request) -> Response:
        """Create or replace the NetworkPolicy: the body is its Kubernetes document (201 new, 200 replaced)."""
        doc = request.json()
        name = request.params["name"]
        metadata = doc.get("metadata")
        if isinstance(metadata, dict) and metadata.get("name") not in (None, name):
            raise ValidationError(
                "metadata.name", f"{metadata.get('name')!r} does not match the name {name!r} in the URL"
            )
        if isinstance(metadata, dict) and metadata.get("name") is None:
            doc = {**doc, "metadata": {**metadata, "name": name}}
        with self.service.lock:
            namespace = self.namespace(request, request.params["namespace"])
            policy, created = self.service.apply_policy(doc, namespace=namespace.name)
            location = f"/v1/namespaces/{namespace.name}/networkpolicies/{policy.name}"
            return Response(201 if created else 200, policy.doc, {"Location": location})

    def apply_policies(self: Api, request: Request) -> Response:
        """Create or replace several NetworkPolicies at once, all or nothing: `{"items": [doc, ...],
        "namespace": NS}` (`namespace`, optional, fills or must equal each document's metadata.namespace, as
        `kubectl apply -n` does). Every document is checked, its namespace must be one the caller sees (else
        404 "unknown namespace", as for one policy), then all are applied in one change. Answers 200 `{"items":
        [{"namespace", "name", "result": "created" | "configured" | "unchanged"}]}`, in order. An error names
        the document: `document 2: metadata.namespace: unknown namespace 'x'`, field `metadata.namespace`."""
        body = Body(request.json(), "networkpolicies", allowed={"items", "namespace"})
        items, namespace = body.data.get("items"), body.text("namespace", required=False)
        if not isinstance(items, list) or not items:
            raise ValidationError("networkpolicies.items", "is required (a non-empty list of NetworkPolicy documents)")
        with self.service.lock:
            for number, doc in enumerate(items, start=1):
                try:
                    policy = parse_policy(doc, namespace=namespace)
                except ValidationError as error:
                    raise DocumentError(number, error) from None
                found = self.model.namespaces.get(policy.namespace)
                if found is None or not request.principal.sees(found.tenant):
                    raise HttpError(
                        404,
                        f"document {number}: metadata.namespace: unknown namespace {policy.namespace!r}",
                        field="metadata.namespace",
                    )
            applied = self.service.apply_policies(items, namespace=namespace)
            answer = [{"namespace": p.namespace, "name": p.name, "result": result} for p, result in applied]
            return Response(200, {"items": answer})

    def delete_policy(self: Api, request: Request) -> Response:
        with self.service.lock:
            self.service.delete_policy(self.policy(request).key)
        return Response(204)

    def label_endpoint(self: Api, request: Request) -> Response:
        """Replace an endpoint's labels and/or named container ports: `{"labels": {...}, "ports": [{name, port,
        protocol}]}`, at least one; all or nothing (the admin or the endpoint's tenant)."""
        body = Body(request.json(), "endpoint", allowed={"labels", "ports"})
        labels, ports = body.data.get("labels"), body.data.get("ports")
        if labels is None and ports is None:
            raise ValidationError(
                "endpoint.labels", "labels or ports is required (labels: an object, {} for none; ports: a list)"
            )
        with self.service.lock:
            endpoint = self.endpoint(request, request.params["endpoint"])
            if request.principal.node_only:
                raise HttpError(403, "an endpoint's labels and ports are set by its tenant or the cluster admin")
            updated = self.service.update_endpoint(endpoint.id, labels=labels, ports=ports)
            return Response(200, endpoint_json(self.model, updated))
