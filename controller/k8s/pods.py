"""Pods' endpoints (part of `controller.k8s.sync.Sync`, a mixin): the network, namespace, labels and named
ports of a pod's endpoint for a CNI ADD, its record under `/tenet/k8s/endpoints/ID`, its labels following
the pod's, and its release when the pod is gone (README "Kubernetes")."""

from __future__ import annotations

import datetime
import logging
import time
from typing import Any

from kubernetes.client.exceptions import ApiException

from controller.k8s import mapping
from controller.k8s.events import Recorder
from controller.k8s.namespaces import NamespacesSync
from controller.store.base import Delete, Put
from topology.errors import ValidationError

log = logging.getLogger(__name__)
Object = dict[str, Any]
RECORDS = "/tenet/k8s/endpoints/"
DELETING = "/tenet/k8s/deleting/"  # + network key: a Network CR deleted while its network had endpoints
REQUEST_TIMEOUT_S = 5  # seconds a pod's or a namespace's GET may take (never under the Service's lock)
READ_NAMESPACES = 64  # namespaces read by GET kept for the endpoint being made (cleared when full)


class PodsSync(NamespacesSync):
    """Pods and their endpoints: the methods `Sync` gains from this mixin."""

    events: Recorder
    core: Any | None  # a CoreV1Api for confirming a pod is gone, or None
    pods_of: dict[str, dict[str, Any]]  # endpoint id -> its record
    read_namespaces: dict[str, Object]  # namespace name -> as a GET read it (not watched yet)
    deleting: dict[str, Object]  # network key -> its Network CR, deleted while it had endpoints
    stale_networks: set[str]  # networks whose free addresses changed since their status was written

    # --- pods ------------------------------------------------------------------------------------

    def _upsert_pods(self, obj: Object, old: Object | None) -> None:
        key = f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"
        labels = obj["metadata"].get("labels") or {}
        uid = obj["metadata"].get("uid")
        for eid, record in sorted(self.pods_of.items()):
            if f"{record['namespace']}/{record['pod']}" != key:
                continue
            if uid and record.get("uid") and record["uid"] != uid:
                if obj["metadata"].get("deletionTimestamp"):
                    continue  # a pod going away is the earlier one: the record is of a later pod
                if self._made_for(record, eid, obj):
                    record["uid"] = uid  # this pod's ADD, resolved from a stale watch: the endpoint is its own
                    self.service.store.commit([Put(RECORDS + eid, record)])
                    continue
                # A pod of the same name made again (a StatefulSet's, or deleted and made while the watch
                # was away): the endpoint is the earlier pod's, and that pod is gone.
                log.info("pod %s made again (uid %s): releasing endpoint %s of uid %s", key, uid, eid, record["uid"])
                self.release(eid)
                continue
            if record.get("labels") != labels:
                record["labels"] = labels
                self.service.store.commit([Put(RECORDS + eid, record)])
            endpoint = self.service.model.endpoints.get(eid)
            if endpoint is not None and dict(endpoint.labels) != labels:
                try:
                    self.service.label_endpoint(eid, labels)
                except ValidationError as error:
                    self.events.record(obj, "Pod", "Warning", "Invalid", f"labels not applied to {eid}: {error}")

    def _made_for(self, record: dict[str, Any], eid: str, pod: Object) -> bool:
        """Whether endpoint `eid` was made by `pod`'s CNI ADD though its record names another uid: it is on
        the pod's node and was recorded after the pod was created (an earlier pod of that name was gone by
        then, so its sandbox could not be added)."""
        endpoint = self.service.model.endpoints.get(eid)
        node = (pod.get("spec") or {}).get("nodeName")
        created = pod["metadata"].get("creationTimestamp")
        if endpoint is None or endpoint.node != node or not isinstance(created, str):
            return False
        try:
            since = datetime.datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return False
        return float(record.get("made", 0.0)) >= since

    def _delete_pods(self, old: Object) -> None:
        key = f"{old['metadata']['namespace']}/{old['metadata']['name']}"
        uid = old["metadata"].get("uid")
        for eid, record in sorted(self.pods_of.items()):
            if f"{record['namespace']}/{record['pod']}" != key:
                continue
            if not uid or not record.get("uid") or record["uid"] == uid:  # not a later pod of that name's
                log.info("pod %s deleted: releasing endpoint %s", key, eid)
                self.release(eid)

    def release_unlisted(self) -> None:
        """After a list of pods: release the endpoints of pods gone without a DELETED event (a dead node
        never sent CNI DEL). A record is released only when it is older than the list (a pod made, and its
        CNI ADD handled, after the list was answered is not in it) and a GET of the pod, done outside the
        Service's lock, answers 404 or a pod of another uid; a GET that fails otherwise waits for the next
        resync."""
        informer = self.informers.get("pods")
        listed_at = informer.listed_at if informer is not None else 0.0
        with self.service.lock, self.lock:
            present = set(self.known("pods"))
            candidates = {
                eid: dict(record)
                for eid, record in sorted(self.pods_of.items())
                if f"{record['namespace']}/{record['pod']}" not in present and record.get("made", 0.0) < listed_at
            }
        for eid, record in candidates.items():
            if not self._pod_gone(record):
                continue
            with self.service.lock, self.lock:
                if self.pods_of.get(eid) != record:
                    continue  # remade or released meanwhile
                log.info("pod %s/%s is gone: releasing endpoint %s", record["namespace"], record["pod"], eid)
                self.release(eid)

    def _pod_gone(self, record: dict[str, Any]) -> bool:
        """Whether the API server says the pod of `record` is gone: 404, or a pod of that name with another
        uid. Without a client: True (the list said so). Any other failure: False (try again later)."""
        if self.core is None:
            return True
        try:
            read = self.core.read_namespaced_pod(record["pod"], record["namespace"], _request_timeout=REQUEST_TIMEOUT_S)
        except ApiException as error:
            return error.status == 404
        except Exception as error:
            log.warning("pod %s/%s: cannot confirm it is gone: %s", record["namespace"], record["pod"], error)
            return False
        uid = getattr(read.metadata, "uid", None)
        return bool(record.get("uid")) and uid != record.get("uid")

    # --- endpoints of pods -----------------------------------------------------------------------

    def pod(self, namespace: str, name: str, core: Any | None) -> Object:
        """The pod from the watch, else from the API server (a pod the watch has not delivered yet).
        Raises ValidationError("endpoint.k8s", ...) when neither has it."""
        found = self.known("pods").get(f"{namespace}/{name}")
        if found is not None and (found.get("metadata") or {}).get("deletionTimestamp"):
            found = None  # going away: a pod of that name being added is likely a later one; ask
        if found is None and core is not None:
            try:
                read = core.read_namespaced_pod(name, namespace, _request_timeout=REQUEST_TIMEOUT_S)
                found = core.api_client.sanitize_for_serialization(read)
            except Exception as error:
                raise ValidationError("endpoint.k8s", f"cannot find pod {namespace}/{name}: {_why(error)}") from None
        if found is None:
            raise ValidationError("endpoint.k8s", f"unknown pod {namespace}/{name}")
        return found

    def network_for(self, namespace: str, name: str, core: Any | None = None) -> tuple[str, Object]:
        """(network key, pod) of a pod's endpoint by `controller.k8s.mapping`; raises ValidationError. The
        pod, and its namespace when the watch has not delivered it, are read before the Service's lock is
        taken (the namespace kept for `endpoint_attributes`)."""
        pod = self.pod(namespace, name, core)
        namespace_obj = self.known("namespaces").get(namespace)
        if namespace_obj is None and core is not None:
            try:
                read = core.read_namespace(namespace, _request_timeout=REQUEST_TIMEOUT_S)
                namespace_obj = core.api_client.sanitize_for_serialization(read)
            except Exception as error:
                raise ValidationError("endpoint.k8s", f"cannot read namespace {namespace}: {_why(error)}") from None
            with self.lock:
                if len(self.read_namespaces) >= READ_NAMESPACES:
                    self.read_namespaces.clear()
                self.read_namespaces[namespace] = namespace_obj
        with self.service.lock, self.lock:
            namespace_obj = self.known("namespaces").get(namespace, namespace_obj)
            known = set(self.service.model.networks) - set(self.deleting)  # a deleted Network takes no pod
            return mapping.pod_network(pod, namespace_obj, self.networks(), self.cluster_network, known), pod

    def record(self, eid: str, pod: Object) -> None:
        """Remember that endpoint `eid` is pod `pod`'s (stored), with its uid, labels and named ports: a DELETED
        event releases only the endpoints of that uid, a pod of that name with another uid releases them."""
        meta = pod["metadata"]
        record = {
            "namespace": meta["namespace"],
            "pod": meta["name"],
            "uid": meta.get("uid"),
            "labels": meta.get("labels") or {},
            "ports": mapping.named_ports(pod),
            "made": time.time(),  # wall-clock seconds: a list asked for before it may not show the pod
        }
        with self.service.lock, self.lock:
            self.service.store.commit([Put(RECORDS + eid, record)])
            self.pods_of[eid] = record
            endpoint = self.service.model.endpoints.get(eid)
            if endpoint is not None:
                self.stale_networks.add(endpoint.network)

    def endpoint_attributes(self, network: str, pod: Object, core: Any | None = None) -> dict[str, Any]:
        """`namespace`, `labels` and `ports` (named container ports) of `Service.create_endpoint` for pod
        `pod`'s endpoint on `network`, its namespace made in the model first when the watch has not yet (from
        what `network_for` read: no request is made here, the Service's lock may be held; `core` is unused).
        Raises ValidationError("endpoint.k8s", ...) when the namespace is not the network's tenant's."""
        meta = pod["metadata"]
        name = meta["namespace"]
        with self.service.lock, self.lock:
            model = self.service.model
            if name not in model.namespaces:
                obj = self.known("namespaces").get(name) or self.read_namespaces.pop(name, None)
                self.reconcile_namespace(name, obj)
            found = model.namespaces.get(name)
            tenant = model.networks[network].tenant
            if found is None:
                raise ValidationError("endpoint.k8s", f"namespace {name!r} is not in the model yet")
            if found.tenant != tenant:
                raise ValidationError(
                    "endpoint.k8s",
                    f"namespace {name!r} is of tenant {found.tenant!r} and network {network!r} of {tenant!r}",
                )
        ports = [{"name": port, **spec} for port, spec in sorted(mapping.named_ports(pod).items())]
        return {"namespace": name, "labels": dict(meta.get("labels") or {}), "ports": ports}

    def release(self, eid: str) -> None:
        """Delete an endpoint and its pod record; an endpoint already gone just loses its record."""
        with self.service.lock, self.lock:
            endpoint = self.service.model.endpoints.get(eid)
            if endpoint is not None:
                self.service.delete_endpoint(eid)
                self.stale_networks.add(endpoint.network)
            record = self.pods_of.pop(eid, None)
            if record is not None:
                self.service.store.commit([Delete(RECORDS + eid)])
            if endpoint is not None and endpoint.namespace is not None:
                self.reconcile_namespace(endpoint.namespace)  # a deleted or moving namespace may go now
            self.retry_deletions()

    def forget(self, eid: str) -> None:
        """An endpoint deleted through the API (CNI DEL): drop its pod record."""
        with self.service.lock, self.lock:
            record = self.pods_of.pop(eid, None)
            if record is not None:
                self.service.store.commit([Delete(RECORDS + eid)])
                self.reconcile_namespace(record["namespace"])
            self.retry_deletions()

    def retry_deletions(self) -> None:
        """Delete from the model the networks of deleted Network CRs that have no endpoints left."""
        with self.service.lock, self.lock:
            model = self.service.model
            for key in sorted(self.deleting):
                if key not in model.networks:
                    del self.deleting[key]
                    self.service.store.commit([Delete(DELETING + key)])
                elif not model.endpoints_by_network.get(key):
                    log.info("Network %s: its last endpoint is gone, deleting it", key)
                    try:
                        self.service.delete_network(key)
                    except ValidationError as error:
                        log.warning("Network %s: still not deleted: %s", key, error)
                        continue
                    del self.deleting[key]
                    self.service.store.commit([Delete(DELETING + key)])
                    self.reconcile_namespaces()


def _why(error: Exception) -> str:
    """A client failure in words fit for an API answer: the status, never the API server's address, headers
    or body (the full error is logged)."""
    if isinstance(error, ApiException) and error.status:
        log.log(logging.DEBUG if error.status == 404 else logging.WARNING, "the API server answered: %s", error)
        return (
            "not found"
            if error.status == 404
            else f"the API server answered {error.status} {error.reason or ''}".strip()
        )
    log.warning("the API server cannot be reached: %s", error)
    return "the API server cannot be reached"
