"""The built-in kinds served, one entry each: group, version, plural, kind, scope, short names, status
subresource, categories, `Table` columns (a short version of kube-apiserver's printers) and shallow checks
(`validation`). Adding a kind is adding an entry; nothing else in the package names a built-in kind but the
create-time status of Namespaces and Pods (`objects`) and the pod field selectors (`selectors`).

Discovery names, short names and scopes follow kube-apiserver 1.36 (`kubectl api-resources` of a real
cluster). Events are served in both groups from one storage, as kube-apiserver does: an events.k8s.io/v1
Event is stored as the core v1 Event it converts to (`EVENT_RENAMES`), so `kubectl get events` lists the
events a controller records through events.k8s.io/v1, and either group reads and watches both.
"""

from __future__ import annotations

from typing import Any

from lab.apiserver import validation
from lab.apiserver.resources import Resource

Column = dict[str, Any]
AGE: Column = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
CREATED: Column = {"name": "Created At", "type": "string", "jsonPath": ".metadata.creationTimestamp"}  # not an age


def _count(*fields: str) -> Any:
    return lambda obj: sum(len(obj.get(field) or {}) for field in fields)


def _ready(obj: dict[str, Any]) -> str:
    status, spec = obj.get("status") or {}, obj.get("spec") or {}
    return f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 1)}"


def _role(obj: dict[str, Any]) -> str:
    ref = obj.get("roleRef") or {}
    return f"{ref.get('kind', '')}/{ref.get('name', '')}"


def _subjects(kind: str) -> Any:
    def names(obj: dict[str, Any]) -> str:
        found = [
            f"{s.get('namespace')}/{s.get('name')}" if kind == "ServiceAccount" else str(s.get("name"))
            for s in obj.get("subjects") or []
            if s.get("kind") == kind
        ]
        return ", ".join(found)

    return names


def _object(regarding: str) -> Any:
    def name(obj: dict[str, Any]) -> str:
        about = obj.get(regarding) or {}
        return f"{str(about.get('kind', '')).lower()}/{about.get('name', '')}"

    return name


def _last_seen(obj: dict[str, Any]) -> Any:
    for field in ("lastTimestamp", "deprecatedLastTimestamp", "eventTime", "firstTimestamp"):
        if obj.get(field):
            return str(obj[field])[:19] + "Z"
    return obj.get("metadata", {}).get("creationTimestamp")


def _node_status(obj: dict[str, Any]) -> str:
    ready = [c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"]
    state = "Ready" if ready and ready[0].get("status") == "True" else "NotReady" if ready else "Unknown"
    return state + (",SchedulingDisabled" if (obj.get("spec") or {}).get("unschedulable") else "")


def _node_roles(obj: dict[str, Any]) -> str:
    prefix = "node-role.kubernetes.io/"
    roles = sorted(k[len(prefix) :] for k in obj.get("metadata", {}).get("labels") or {} if k.startswith(prefix))
    return ",".join(roles) or "<none>"


def _node_address(kind: str) -> Any:
    def address(obj: dict[str, Any]) -> str:
        found = [a.get("address") for a in (obj.get("status") or {}).get("addresses") or [] if a.get("type") == kind]
        return str(found[0]) if found else "<none>"

    return address


def _images(obj: dict[str, Any]) -> str:
    containers = ((obj.get("spec") or {}).get("template") or {}).get("spec", {}).get("containers") or []
    return ",".join(str(c.get("image", "")) for c in containers)


def _status(name: str, field: str) -> Column:
    """An integer of `status` (0 while the field is unset, as Go's zero values print)."""
    return {"name": name, "type": "integer", "value": lambda obj: (obj.get("status") or {}).get(field, 0)}


def _event_columns(regarding: str, message: str) -> tuple[Column, ...]:
    return (
        {"name": "Last Seen", "type": "date", "value": _last_seen},
        {"name": "Type", "type": "string", "jsonPath": ".type"},
        {"name": "Reason", "type": "string", "jsonPath": ".reason"},
        {"name": "Object", "type": "string", "value": _object(regarding)},
        {"name": "Message", "type": "string", "jsonPath": f".{message}"},
        {"name": "Name", "type": "string", "format": "name", "priority": 1, "jsonPath": ".metadata.name"},
    )


POD_COLUMNS: tuple[Column, ...] = (
    {"name": "Status", "type": "string", "jsonPath": ".status.phase"},
    AGE,
    {"name": "IP", "type": "string", "jsonPath": ".status.podIP", "priority": 1},
    {"name": "Node", "type": "string", "jsonPath": ".spec.nodeName", "priority": 1},
)
WORKLOAD_WIDE: tuple[Column, ...] = (
    {"name": "Containers", "type": "string", "priority": 1,
     "value": lambda o: ",".join(str(c.get("name")) for c in o["spec"]["template"]["spec"].get("containers", []))},
    {"name": "Images", "type": "string", "priority": 1, "value": _images},
    {"name": "Selector", "type": "string", "priority": 1, "jsonPath": ".spec.selector.matchLabels"},
)  # fmt: skip
APPS, RBAC = "apps", "rbac.authorization.k8s.io"
EVENTS = Resource("", "v1", "events", "Event", True, short_names=("ev",), check=validation.event("v1"),
                  columns=_event_columns("involvedObject", "message"))  # fmt: skip
# events.k8s.io/v1 fields and the core v1 ones they are stored as (k8s.io/kubernetes pkg/apis/events/v1).
EVENT_RENAMES = (
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
)

BUILTIN: list[Resource] = [
    Resource("", "v1", "namespaces", "Namespace", False, short_names=("ns",), status=True,
             columns=({"name": "Status", "type": "string", "jsonPath": ".status.phase"}, AGE)),
    Resource("", "v1", "nodes", "Node", False, short_names=("no",), status=True,
             columns=({"name": "Status", "type": "string", "value": _node_status},
                      {"name": "Roles", "type": "string", "value": _node_roles}, AGE,
                      {"name": "Version", "type": "string", "jsonPath": ".status.nodeInfo.kubeletVersion"},
                      {"name": "Internal-IP", "type": "string", "priority": 1, "value": _node_address("InternalIP")},
                      {"name": "External-IP", "type": "string", "priority": 1,
                       "value": _node_address("ExternalIP")})),
    Resource("", "v1", "pods", "Pod", True, short_names=("po",), status=True, categories=("all",),
             columns=POD_COLUMNS),
    Resource("", "v1", "services", "Service", True, short_names=("svc",), status=True, categories=("all",),
             columns=({"name": "Type", "type": "string", "jsonPath": ".spec.type"},
                      {"name": "Cluster-IP", "type": "string", "jsonPath": ".spec.clusterIP"}, AGE)),
    Resource("", "v1", "configmaps", "ConfigMap", True, short_names=("cm",), check=validation.config_map,
             columns=({"name": "Data", "type": "integer", "value": _count("data", "binaryData")}, AGE)),
    Resource("", "v1", "secrets", "Secret", True, check=validation.secret,
             columns=({"name": "Type", "type": "string", "jsonPath": ".type"},
                      {"name": "Data", "type": "integer", "value": _count("data")}, AGE)),
    Resource("", "v1", "serviceaccounts", "ServiceAccount", True, short_names=("sa",),
             columns=({"name": "Secrets", "type": "integer", "value": lambda o: len(o.get("secrets") or [])}, AGE)),
    Resource("", "v1", "resourcequotas", "ResourceQuota", True, short_names=("quota",), status=True),
    EVENTS,
    Resource("events.k8s.io", "v1", "events", "Event", True, short_names=("ev",), stored_as=EVENTS,
             renames=EVENT_RENAMES, check=validation.event("events.k8s.io/v1"),
             columns=_event_columns("regarding", "note")),
    Resource(APPS, "v1", "deployments", "Deployment", True, short_names=("deploy",), status=True, scale=True,
             categories=("all",), check=validation.workload("strategy", ("Recreate", "RollingUpdate")),
             columns=({"name": "Ready", "type": "string", "value": _ready},
                      _status("Up-to-date", "updatedReplicas"), _status("Available", "availableReplicas"),
                      AGE, *WORKLOAD_WIDE)),
    Resource(APPS, "v1", "daemonsets", "DaemonSet", True, short_names=("ds",), status=True,
             categories=("all",), check=validation.workload("updateStrategy", ("OnDelete", "RollingUpdate")),
             columns=(_status("Desired", "desiredNumberScheduled"), _status("Current", "currentNumberScheduled"),
                      _status("Ready", "numberReady"), _status("Up-to-date", "updatedNumberScheduled"),
                      _status("Available", "numberAvailable"),
                      {"name": "Node Selector", "type": "string", "jsonPath": ".spec.template.spec.nodeSelector"},
                      AGE, *WORKLOAD_WIDE)),
    Resource(RBAC, "v1", "clusterroles", "ClusterRole", False, check=validation.role(cluster=True),
             columns=(CREATED,)),
    Resource(RBAC, "v1", "clusterrolebindings", "ClusterRoleBinding", False, check=validation.binding(cluster=True),
             columns=({"name": "Role", "type": "string", "value": _role}, AGE,
                      {"name": "Users", "type": "string", "priority": 1, "value": _subjects("User")},
                      {"name": "Groups", "type": "string", "priority": 1, "value": _subjects("Group")},
                      {"name": "ServiceAccounts", "type": "string", "priority": 1,
                       "value": _subjects("ServiceAccount")})),
    Resource(RBAC, "v1", "roles", "Role", True, check=validation.role(cluster=False), columns=(CREATED,)),
    Resource(RBAC, "v1", "rolebindings", "RoleBinding", True, check=validation.binding(cluster=False),
             columns=({"name": "Role", "type": "string", "value": _role}, AGE,
                      {"name": "Users", "type": "string", "priority": 1, "value": _subjects("User")},
                      {"name": "Groups", "type": "string", "priority": 1, "value": _subjects("Group")},
                      {"name": "ServiceAccounts", "type": "string", "priority": 1,
                       "value": _subjects("ServiceAccount")})),
    Resource("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", True, short_names=("netpol",),
             check=validation.network_policy,
             columns=({"name": "Pod-Selector", "type": "string", "jsonPath": ".spec.podSelector.matchLabels"}, AGE)),
    Resource("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", False,
             short_names=("crd", "crds"), status=True, columns=(CREATED,)),
]  # fmt: skip


def builtin(plural: str, group: str = "") -> Resource:
    """The built-in resource of `plural` in `group` ("" for core); KeyError when there is none."""
    for resource in BUILTIN:
        if (resource.plural, resource.group) == (plural, group):
            return resource
    raise KeyError(f"{plural}.{group}" if group else plural)


NAMESPACES = builtin("namespaces")
CRDS = builtin("customresourcedefinitions", "apiextensions.k8s.io")
