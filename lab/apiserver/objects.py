"""Create, read, update, patch and delete of stored objects, with the metadata rules of the Kubernetes API.

The server sets `uid`, `creationTimestamp`, `generation` (1 on create, +1 when anything outside metadata and
status changes) and `resourceVersion` (the etcd revision). An update naming a `resourceVersion` other than
the stored one is 409 Conflict. A delete of an object with finalizers sets `deletionTimestamp` and keeps it
until an update empties `metadata.finalizers`. With a status subresource the main resource ignores changes
to `status` and `/status` changes nothing else (https://kubernetes.io/docs/reference/using-api/api-concepts/).
A built-in kind's `check` (`validation`) runs on every create and update. A deleted Namespace is Terminating
(new objects in it are 403 Forbidden) until `sweep` empties and removes it. An object of a resource with
`stored_as` (events.k8s.io/v1 Events) is kept in the shape of that other resource (core v1 Events).
"""

from __future__ import annotations

import copy
import datetime
import re
import time
import uuid
from typing import Any

from lab.apiserver.builtin import BUILTIN, CRDS, NAMESPACES
from lab.apiserver.errors import conflict, exists, invalid, invalid_all, not_found
from lab.apiserver.http import ApiError
from lab.apiserver.resources import (
    Resource,
    apply_defaults,
    check_crd,
    from_crd,
    from_storage,
    schema_check,
    to_storage,
)
from lab.apiserver.selectors import json_patch, merge_patch, strategic_merge_patch
from lab.apiserver.store import Conflict, Entry, EtcdStore

DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
PATCH_TYPES = (
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/json-patch+json",
)
UNKNOWN_PATCH = "the body of the request was in an unknown format - accepted media types include: " + ", ".join(
    PATCH_TYPES
)


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Registry:
    """The objects of every served resource in `store`; methods raise ApiError with Kubernetes' codes."""

    def __init__(self, store: EtcdStore, *, network_policy_checks: bool = True) -> None:
        self.store = store
        self.network_policy_checks = network_policy_checks  # False: NetworkPolicies stored as sent
        self._terminating: dict[str, float] = {}  # namespace -> time.monotonic() when it is emptied

    # -- resources -------------------------------------------------------------------------------------

    def resources(self) -> list[Resource]:
        """Built-in resources, then those of every stored CRD (read anew: another server may add CRDs)."""
        crds, _ = self.store.list(self.prefix(CRDS))
        out = list(BUILTIN)
        for entry in crds:
            if entry.obj.get("metadata", {}).get("deletionTimestamp"):
                continue
            out.extend(from_crd(entry.obj))
        return out

    def find(self, group: str, version: str, plural: str) -> Resource:
        for resource in self.resources():
            if (resource.group, resource.version, resource.plural) == (group, version, plural):
                return resource
        gv = f"{group}/{version}" if group else version
        raise ApiError(404, f"the server could not find the requested resource ({plural} in {gv})")

    def prefix(self, resource: Resource, namespace: str | None = None) -> str:
        resource = resource.stored_as or resource
        base = f"{self.store.prefix}/{resource.key_group}/{resource.plural}/"
        return f"{base}{namespace}/" if namespace else base

    def key(self, resource: Resource, namespace: str | None, name: str) -> str:
        return self.prefix(resource, namespace if resource.namespaced else None) + name

    @staticmethod
    def present(entry: Entry, resource: Resource | None = None) -> dict[str, Any]:
        """The stored object with its resourceVersion, in the shape of `resource` (`from_storage`)."""
        obj = copy.deepcopy(entry.obj)
        obj.setdefault("metadata", {})["resourceVersion"] = str(entry.revision)
        return from_storage(resource, obj) if resource is not None else obj

    # -- reads ---------------------------------------------------------------------------------------

    def get(self, resource: Resource, namespace: str | None, name: str) -> dict[str, Any]:
        entry = self.store.get(self.key(resource, namespace, name))
        if entry is None:
            raise not_found(resource, name)
        return self.present(entry, resource)

    # -- writes --------------------------------------------------------------------------------------

    def _check(self, resource: Resource, namespace: str | None, obj: dict[str, Any]) -> None:
        if not resource.crd:  # a typed body may leave them out: the URL says what it is
            obj.setdefault("apiVersion", resource.group_version)
            obj.setdefault("kind", resource.kind)
        gv = obj.get("apiVersion")
        if gv != resource.group_version or obj.get("kind") != resource.kind:
            raise ApiError(
                400,
                f"the body's apiVersion/kind {gv}/{obj.get('kind')} is not {resource.group_version}/{resource.kind}",
            )
        meta = obj.get("metadata")
        if not isinstance(meta, dict):
            raise ApiError(422, "metadata: Required value", "Invalid")
        name = meta.get("name", "")
        pattern = DNS_LABEL if resource.plural == "namespaces" else DNS_SUBDOMAIN
        if not name:
            raise invalid(resource, name, "metadata.name", "Required value: name or generateName is required")
        if len(name) > 253 or not pattern.match(name):
            kind = "label" if pattern is DNS_LABEL else "subdomain"
            raise invalid(
                resource, name, "metadata.name", f'Invalid value: "{name}": must be a lowercase RFC 1123 {kind}'
            )
        if resource.namespaced:
            if meta.get("namespace", namespace) != namespace:
                raise ApiError(
                    400, "the namespace of the provided object does not match the namespace sent on the request"
                )
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        for field in ("labels", "annotations"):
            for key, value in (meta.get(field) or {}).items():
                if not isinstance(value, str):
                    raise invalid(resource, name, f"metadata.{field}.{key}", "Invalid value: must be a string")
        if resource.plural == "customresourcedefinitions":
            problem = check_crd(obj)
            if problem:
                raise invalid(resource, name, *problem.split(": ", 1))

    def _check_kind(self, resource: Resource, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        """The built-in kind's own checks (`builtin`, `validation`); they may normalise `obj` in place."""
        if resource.kind == "NetworkPolicy" and not self.network_policy_checks:
            return
        if resource.check is not None:
            errors = resource.check(obj, old)
            if errors:
                raise invalid_all(resource, obj["metadata"]["name"], errors)

    def create(
        self, resource: Resource, namespace: str | None, obj: dict[str, Any], dry_run: bool, strict: bool = False
    ) -> dict[str, Any]:
        """Store a new object (POST); 409 AlreadyExists, 404 when its namespace does not exist, 422 Invalid."""
        meta = obj.setdefault("metadata", {}) if isinstance(obj.get("metadata", {}), dict) else obj["metadata"]
        if isinstance(meta, dict) and not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        self._check(resource, namespace, obj)
        if resource.namespaced:
            home = self.store.get(self.key(NAMESPACES, None, namespace or ""))
            if home is None:
                raise ApiError(404, f'namespaces "{namespace}" not found', kind="namespaces", name=namespace)
            if home.obj["metadata"].get("deletionTimestamp"):
                raise ApiError(
                    403,
                    f'{resource.plural} "{meta["name"]}" is forbidden: unable to create new content in namespace '
                    f"{namespace} because it is being terminated",
                    "Forbidden",
                    name=meta["name"],
                    kind=resource.plural,
                )
        for field in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "managedFields"):
            meta.pop(field, None)
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=now(), generation=1)
        self._on_create(resource, obj)
        self._check_kind(resource, obj, None)
        obj = schema_check(resource, obj, strict)
        key = self.key(resource, namespace, meta["name"])
        if dry_run:
            if self.store.get(key) is not None:
                raise exists(resource, meta["name"])
            return obj
        try:
            revision = self.store.put(key, to_storage(resource, obj), expect=0)
        except Conflict:
            raise exists(resource, meta["name"]) from None
        return self.present(Entry(key, to_storage(resource, obj), revision), resource)

    @staticmethod
    def _on_create(resource: Resource, obj: dict[str, Any]) -> None:
        if resource.crd:
            if resource.status:
                obj.pop("status", None)
            apply_defaults(resource.schema, obj)
        elif resource.plural == "namespaces":
            obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
            obj["status"] = {"phase": "Active"}
        elif resource.plural == "pods":
            obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
        elif resource.plural == "customresourcedefinitions":
            names = obj["spec"]["names"]
            obj["status"] = {
                "acceptedNames": names,
                "storedVersions": [v["name"] for v in obj["spec"]["versions"] if v.get("storage")],
                "conditions": [
                    {"type": t, "status": "True", "lastTransitionTime": now(), "reason": r, "message": m}
                    for t, r, m in (
                        ("NamesAccepted", "NoConflicts", "no conflicts found"),
                        ("Established", "InitialNamesAccepted", "the initial names have been accepted"),
                    )
                ],
            }

    def update(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        obj: dict[str, Any],
        *,
        subresource: str = "",
        dry_run: bool = False,
        current: Entry | None = None,
        strict: bool = False,
    ) -> dict[str, Any]:
        """Replace the object (PUT); `obj.metadata.resourceVersion`, when set, must be the stored one."""
        key = self.key(resource, namespace, name)
        entry = current or self.store.get(key)
        if entry is None:
            raise not_found(resource, name)
        meta = obj.get("metadata")
        if not isinstance(meta, dict):
            meta = {}
        if meta.get("name", name) != name:
            raise ApiError(
                400, f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})"
            )
        wanted = meta.get("resourceVersion")
        if wanted and str(wanted) != str(entry.revision):
            raise conflict(resource, name)
        old = from_storage(resource, entry.obj)
        new = copy.deepcopy(obj)
        new.setdefault("metadata", {})["name"] = name
        self._check(resource, namespace, new)
        if subresource == "status":
            status = new.get("status")
            new = copy.deepcopy(old)
            if status is None:
                new.pop("status", None)
            else:
                new["status"] = status
        elif resource.status and subresource == "":
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            else:
                new.pop("status", None)
        for field in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds"):
            if field in old["metadata"]:
                new["metadata"][field] = old["metadata"][field]
            else:
                new["metadata"].pop(field, None)
        new["metadata"].pop("resourceVersion", None)
        new["metadata"]["generation"] = old["metadata"].get("generation", 1)
        self._check_kind(resource, new, old)
        if resource.crd:
            apply_defaults(resource.schema, new)
        new = schema_check(resource, new, strict)

        def body(o: dict[str, Any]) -> dict[str, Any]:
            return {k: v for k, v in o.items() if k not in ("metadata", "status")}

        if body(new) != body(old):
            new["metadata"]["generation"] += 1
        if dry_run:
            new["metadata"]["resourceVersion"] = str(entry.revision)
            return new
        held = resource.plural == "namespaces"  # a Terminating namespace goes when it is empty (`sweep`)
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers") and not held:
            revision = self._delete(key, entry.revision, resource, name)
            return self.present(Entry(key, to_storage(resource, new), revision), resource)
        try:
            revision = self.store.put(key, to_storage(resource, new), expect=entry.revision)
        except Conflict:
            raise conflict(resource, name) from None
        return self.present(Entry(key, to_storage(resource, new), revision), resource)

    def patch(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        content_type: str,
        patch: Any,
        *,
        subresource: str = "",
        dry_run: bool = False,
        strict: bool = False,
    ) -> dict[str, Any]:
        """Apply a merge, strategic merge (built-in kinds only) or JSON patch; retried on a lost race unless
        the patch itself names a resourceVersion (then that is a precondition)."""
        if content_type not in PATCH_TYPES:
            raise ApiError(415, UNKNOWN_PATCH)
        if content_type == "application/strategic-merge-patch+json" and resource.crd:
            raise ApiError(415, "strategic merge patch is not supported for custom resources; use a merge patch")
        for _attempt in range(10):
            entry = self.store.get(self.key(resource, namespace, name))
            if entry is None:
                raise not_found(resource, name)
            current = self.present(entry, resource)
            if content_type == "application/json-patch+json":
                new = json_patch(current, patch)
            elif not isinstance(patch, dict):
                raise ApiError(400, "a merge patch must be a JSON object")
            elif content_type == "application/merge-patch+json":
                new = merge_patch(current, patch)
            else:
                new = strategic_merge_patch(current, patch)
            pinned = isinstance(patch, dict) and (patch.get("metadata") or {}).get("resourceVersion")
            if not pinned:
                new.setdefault("metadata", {})["resourceVersion"] = str(entry.revision)
            try:
                return self.update(
                    resource,
                    namespace,
                    name,
                    new,
                    subresource=subresource,
                    dry_run=dry_run,
                    current=entry,
                    strict=strict,
                )
            except ApiError as error:
                if error.reason != "Conflict" or pinned:
                    raise
        raise conflict(resource, name)

    def delete(
        self, resource: Resource, namespace: str | None, name: str, options: dict[str, Any], dry_run: bool
    ) -> dict[str, Any]:
        """Delete (or, with finalizers, mark deleted); DeleteOptions' preconditions are honoured."""
        key = self.key(resource, namespace, name)
        entry = self.store.get(key)
        if entry is None:
            raise not_found(resource, name)
        pre = options.get("preconditions") or {}
        if pre.get("resourceVersion") and str(pre["resourceVersion"]) != str(entry.revision):
            raise conflict(resource, name)
        if pre.get("uid") and pre["uid"] != entry.obj["metadata"].get("uid"):
            raise conflict(resource, name)
        obj = copy.deepcopy(entry.obj)
        if resource.plural == "namespaces" or obj["metadata"].get("finalizers"):
            if obj["metadata"].get("deletionTimestamp"):
                return self.present(entry, resource)
            obj["metadata"]["deletionTimestamp"] = now()
            obj["metadata"]["deletionGracePeriodSeconds"] = 0
            if resource.plural == "namespaces":
                obj["status"] = {"phase": "Terminating"}
            if dry_run:
                return self.present(Entry(key, obj, entry.revision), resource)
            try:
                revision = self.store.put(key, obj, expect=entry.revision)
            except Conflict:
                raise conflict(resource, name) from None
            return self.present(Entry(key, obj, revision), resource)
        if dry_run:
            return self.present(entry, resource)
        revision = self._delete(key, entry.revision, resource, name)
        if resource.plural == "customresourcedefinitions":
            for served in from_crd(obj)[:1]:  # every version shares the storage of group and plural
                self._drop_all(self.prefix(served))
        return self.present(Entry(key, obj, revision), resource)

    def _delete(self, key: str, revision: int, resource: Resource, name: str) -> int:
        try:
            return self.store.delete(key, revision)
        except Conflict:
            raise conflict(resource, name) from None

    def sweep(self, delay: float) -> None:
        """The namespace controller's part: empty and remove every Terminating namespace (one deleted, and
        without `metadata.finalizers`) `delay` seconds after this registry first saw it terminating."""
        entries, _ = self.store.list(self.prefix(NAMESPACES))
        moment = time.monotonic()
        terminating = set()
        for entry in entries:
            meta = entry.obj["metadata"]
            if not meta.get("deletionTimestamp") or meta.get("finalizers"):
                continue
            terminating.add(meta["name"])
            if moment < self._terminating.setdefault(meta["name"], moment + delay):
                continue
            self._empty_namespace(meta["name"])
            try:
                self.store.delete(entry.key, entry.revision)
            except Conflict:
                continue  # changed meanwhile: the next sweep looks again
            terminating.discard(meta["name"])
        self._terminating = {name: due for name, due in self._terminating.items() if name in terminating}

    def _empty_namespace(self, namespace: str) -> None:
        for resource in self.resources():
            if resource.namespaced:
                self._drop_all(self.prefix(resource, namespace))

    def _drop_all(self, prefix: str) -> None:
        """Delete what is under `prefix` now, finalizers or not (the stand-in has no controllers to wait
        for); one delete event each."""
        entries, _ = self.store.list(prefix)
        for entry in entries:
            try:
                self.store.delete(entry.key, entry.revision)
            except Conflict:
                continue


__all__ = ["NAMESPACES", "Registry", "invalid", "not_found"]
