"""Shallow validation of the built-in kinds: the basics kube-apiserver refuses, worded as it words them.

Each check takes the new object and the stored one (None on create) and returns (field, message) pairs; the
registry answers 422 Invalid with all of them. What is checked, by kind (source: kube-apiserver's
validation, k8s.io/kubernetes pkg/apis/{apps,core,rbac}/validation):
- Deployment, DaemonSet: `spec.selector` present and not empty, matched by `spec.template.metadata.labels`,
  and immutable; `spec.template.spec.containers` not empty, each with a DNS-label `name` (unique) and an
  `image`; `restartPolicy` Always; `spec.replicas` >= 0; the strategy type (Deployment: Recreate or
  RollingUpdate, no `rollingUpdate` with Recreate; DaemonSet: OnDelete or RollingUpdate);
- ClusterRole, Role: every rule has `verbs`, and either `apiGroups` and `resources` or (ClusterRole only)
  `nonResourceURLs`;
- ClusterRoleBinding, RoleBinding: `roleRef` with apiGroup rbac.authorization.k8s.io, a kind it may bind
  (ClusterRole; or Role for a RoleBinding) and a name, immutable; subjects of kind User, Group (apiGroup
  rbac.authorization.k8s.io) or ServiceAccount (apiGroup "", with a namespace in a ClusterRoleBinding);
- ConfigMap, Secret: keys of `data`/`binaryData` (`stringData`) are config keys, in one map only; with
  `immutable: true` the data cannot change; a Secret's `data` values are base64, its `type` (default Opaque)
  is immutable and `stringData` is merged into `data` on write, as kube-apiserver does;
- Event (core v1 and events.k8s.io/v1): an event with an `eventTime` (all of events.k8s.io/v1) names its
  reporting controller and instance, action and reason, has type Normal or Warning and, when it is about a
  cluster-scoped object, lives in namespace default or kube-system; an old-style core event's
  `involvedObject.namespace` is the event's own;
- NetworkPolicy (networking.k8s.io/v1): all of it, by Tenet's own validator (topology/netpol_spec.py, written
  after pkg/apis/networking/validation: ports 1..65535, `endPort` only with a numeric `port` and not below
  it, protocols, named ports, peers, ipBlocks and their `except`s, `policyTypes`; unknown fields refused);
  the first error is the 422's cause, its field path as kube-apiserver names it
  (`spec.ingress[0].ports[0].endPort`); and `spec.policyTypes` is defaulted when stored as kube-apiserver's
  SetDefaults_NetworkPolicySpec does: Ingress always, Egress too when `spec.egress` has rules.
Left out: everything else of those types (pod spec fields beyond containers' names and images, volumes,
probes, resources and quantities, securityContext, affinity, RBAC escalation checks, ...), and any
defaulting of built-in kinds but a Secret's `type` and a NetworkPolicy's `policyTypes` (Deployments keep no
default `replicas`, `strategy` or pod defaults).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from lab.apiserver.resources import Check
from topology.errors import ValidationError
from topology.netpol_spec import parse_policy

Errors = list[tuple[str, str]]
Obj = dict[str, Any]
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
RBAC = "rbac.authorization.k8s.io"
QUALIFIED_NAME = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)


def _show(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _unsupported(value: Any, supported: tuple[str, ...]) -> str:
    return f"Unsupported value: {_show(value)}: supported values: " + ", ".join(f'"{s}"' for s in supported)


def selector_matches(selector: Obj, labels: dict[str, str]) -> bool:
    """Whether a metav1.LabelSelector (`matchLabels`, `matchExpressions` with In, NotIn, Exists,
    DoesNotExist) selects `labels`."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, op, values = expression.get("key"), expression.get("operator"), expression.get("values") or []
        present = key in labels
        if (
            (op == "In" and labels.get(key) not in values)
            or (op == "NotIn" and present and labels[key] in values)
            or (op == "Exists" and not present)
            or (op == "DoesNotExist" and present)
        ):
            return False
    return True


def _immutable(errors: Errors, new: Obj, old: Obj | None, field: str, message: str = "field is immutable") -> None:
    if old is None:
        return
    a, b = _at(new, field), _at(old, field)
    if a != b:
        errors.append((field, f"Invalid value: {_show(a)}: {message}"))


def _at(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = obj.get(part) if isinstance(obj, dict) else None
    return obj


def _pod_template(errors: Errors, template: Any, where: str, restart: tuple[str, ...]) -> None:
    spec = template.get("spec") if isinstance(template, dict) else None
    if not isinstance(spec, dict):
        errors.append((f"{where}.spec", "Required value"))
        return
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers:
        errors.append((f"{where}.spec.containers", "Required value"))
    names: set[str] = set()
    for group in ("initContainers", "containers"):
        for n, container in enumerate(spec.get(group) or []):
            at = f"{where}.spec.{group}[{n}]"
            name = container.get("name") if isinstance(container, dict) else None
            if not name:
                errors.append((f"{at}.name", "Required value"))
            elif not DNS_LABEL.match(name) or len(name) > 63:
                errors.append((f"{at}.name", f"Invalid value: {_show(name)}: a lowercase RFC 1123 label must "
                               "consist of lower case alphanumeric characters or '-'"))  # fmt: skip
            elif name in names:
                errors.append((f"{at}.name", f"Duplicate value: {_show(name)}"))
            names.add(name or "")
            if isinstance(container, dict) and not container.get("image"):
                errors.append((f"{at}.image", "Required value"))
    policy = spec.get("restartPolicy")
    if policy is not None and policy not in restart:
        errors.append((f"{where}.spec.restartPolicy", _unsupported(policy, restart)))


def workload(strategy_field: str, strategies: tuple[str, ...]) -> Check:
    """The check of a Deployment (`strategy`) or DaemonSet (`updateStrategy`): selector, template, strategy."""

    def check(new: Obj, old: Obj | None) -> Errors:
        errors: Errors = []
        spec = new.get("spec")
        if not isinstance(spec, dict):
            return [("spec", "Required value")]
        selector = spec.get("selector")
        template: Obj = spec["template"] if isinstance(spec.get("template"), dict) else {}
        labels = (template.get("metadata") or {}).get("labels") or {}
        if not isinstance(selector, dict):
            errors.append(("spec.selector", "Required value"))
        elif not selector.get("matchLabels") and not selector.get("matchExpressions"):
            errors.append(("spec.selector", f"Invalid value: {_show(selector)}: empty selector is invalid"))
        elif not selector_matches(selector, labels):
            errors.append(
                ("spec.template.metadata.labels", f"Invalid value: {_show(labels)}: `selector` does not match "
                 "template `labels`")
            )  # fmt: skip
        _immutable(errors, new, old, "spec.selector")
        if not spec.get("template"):
            errors.append(("spec.template", "Required value"))
        else:
            _pod_template(errors, template, "spec.template", ("Always",))
        replicas = spec.get("replicas")
        if replicas is not None and (not isinstance(replicas, int) or replicas < 0):
            errors.append(("spec.replicas", f"Invalid value: {_show(replicas)}: must be greater than or equal to 0"))
        strategy = spec.get(strategy_field) or {}
        kind = strategy.get("type")
        if kind is not None and kind not in strategies:
            errors.append((f"spec.{strategy_field}.type", _unsupported(kind, strategies)))
        if kind in ("Recreate", "OnDelete") and strategy.get("rollingUpdate") is not None:
            errors.append(
                (f"spec.{strategy_field}.rollingUpdate", f"Forbidden: may not be specified when strategy `type` "
                 f"is '{kind}'")
            )  # fmt: skip
        return errors

    return check


def role(cluster: bool) -> Check:
    """The check of a ClusterRole (`cluster`) or Role: every rule's verbs and what it applies to."""

    def check(new: Obj, old: Obj | None) -> Errors:
        errors: Errors = []
        rules = new.get("rules") or []
        if not isinstance(rules, list):
            return [("rules", f"Invalid value: {_show(rules)}: must be a list")]
        for n, rule in enumerate(rules):
            at = f"rules[{n}]"
            if not isinstance(rule, dict):
                errors.append((at, "Invalid value: must be an object"))
                continue
            if not rule.get("verbs"):
                errors.append((f"{at}.verbs", "Required value: verbs must contain at least one value"))
            urls = rule.get("nonResourceURLs")
            if urls and not cluster:
                errors.append(
                    (f"{at}.nonResourceURLs", f"Invalid value: {_show(urls)}: namespaced rules cannot apply to "
                     "non-resource URLs")
                )  # fmt: skip
            if urls:
                if rule.get("apiGroups") or rule.get("resources"):
                    errors.append((f"{at}.nonResourceURLs", "Invalid value: rules cannot apply to both regular "
                                   "resources and non-resource URLs"))  # fmt: skip
                continue
            if not rule.get("apiGroups"):
                errors.append((f"{at}.apiGroups", "Required value: resource rules must supply at least one api group"))
            if not rule.get("resources"):
                errors.append((f"{at}.resources", "Required value: resource rules must supply at least one resource"))
        return errors

    return check


def binding(cluster: bool) -> Check:
    """The check of a ClusterRoleBinding (`cluster`) or RoleBinding: roleRef (immutable) and subjects."""
    kinds = ("ClusterRole",) if cluster else ("Role", "ClusterRole")

    def check(new: Obj, old: Obj | None) -> Errors:
        errors: Errors = []
        ref = new.get("roleRef")
        if not isinstance(ref, dict):
            errors.append(("roleRef", "Required value"))
        else:
            if ref.get("apiGroup") != RBAC:
                errors.append(("roleRef.apiGroup", _unsupported(ref.get("apiGroup", ""), (RBAC,))))
            if ref.get("kind") not in kinds:
                errors.append(("roleRef.kind", _unsupported(ref.get("kind", ""), kinds)))
            if not ref.get("name"):
                errors.append(("roleRef.name", "Required value"))
        _immutable(errors, new, old, "roleRef", "cannot change roleRef")
        for n, subject in enumerate(new.get("subjects") or []):
            at = f"subjects[{n}]"
            kind = subject.get("kind")
            if not subject.get("name"):
                errors.append((f"{at}.name", "Required value"))
            if kind == "ServiceAccount":
                if subject.get("apiGroup", ""):
                    errors.append((f"{at}.apiGroup", _unsupported(subject["apiGroup"], ("",))))
                if cluster and not subject.get("namespace"):
                    errors.append((f"{at}.namespace", "Required value"))
            elif kind in ("User", "Group"):
                if subject.get("apiGroup") != RBAC:
                    errors.append((f"{at}.apiGroup", _unsupported(subject.get("apiGroup", ""), (RBAC,))))
            else:
                errors.append((f"{at}.kind", _unsupported(kind or "", ("ServiceAccount", "User", "Group"))))
        return errors

    return check


def _data_keys(errors: Errors, new: Obj, maps: tuple[str, ...]) -> None:
    seen: set[str] = set()
    for field in maps:
        values = new.get(field) or {}
        if not isinstance(values, dict):
            errors.append((field, f"Invalid value: {_show(values)}: must be a map of strings"))
            continue
        for key, value in values.items():
            if not CONFIG_KEY.match(key) or len(key) > 253 or key in (".", ".."):
                errors.append(
                    (f"{field}[{key}]", f"Invalid value: {_show(key)}: a valid config key must consist of "
                     "alphanumeric characters, '-', '_' or '.'")
                )  # fmt: skip
            if not isinstance(value, str):
                errors.append((f"{field}[{key}]", f"Invalid value: {_show(value)}: must be a string"))
            if key in seen and field != "stringData":
                errors.append((f"{field}[{key}]", f"Invalid value: {_show(key)}: duplicate of key present in data"))
            seen.add(key)


def config_map(new: Obj, old: Obj | None) -> Errors:
    """ConfigMap: its keys; `immutable: true` freezes data, binaryData and itself."""
    errors: Errors = []
    _data_keys(errors, new, ("data", "binaryData"))
    for field in ("binaryData",):
        for key, value in (new.get(field) or {}).items():
            if isinstance(value, str) and not _base64(value):
                errors.append((f"{field}[{key}]", "Invalid value: illegal base64 data"))
    _frozen(errors, new, old, ("data", "binaryData"))
    return errors


def _base64(value: str) -> bool:
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def _frozen(errors: Errors, new: Obj, old: Obj | None, fields: tuple[str, ...]) -> None:
    if old is None or not old.get("immutable"):
        return
    if not new.get("immutable"):
        errors.append(("immutable", "Forbidden: field is immutable when `immutable` is set"))
    for field in fields:
        if (new.get(field) or {}) != (old.get(field) or {}):
            errors.append((field, "Forbidden: field is immutable when `immutable` is set"))


def secret(new: Obj, old: Obj | None) -> Errors:
    """Secret: keys and base64 values; `stringData` merged into `data` (in place); `type` defaulted to
    Opaque and immutable; `immutable: true` freezes data."""
    errors: Errors = []
    _data_keys(errors, new, ("data", "stringData"))
    if errors:
        return errors
    data = dict(new.get("data") or {})
    for key, value in data.items():
        if not _base64(value):
            errors.append((f"data[{key}]", "Invalid value: illegal base64 data"))
    for key, value in (new.pop("stringData", None) or {}).items():
        data[key] = base64.b64encode(value.encode()).decode()
    if data:
        new["data"] = data
    new.setdefault("type", "Opaque")
    if old is not None and new["type"] != old.get("type", "Opaque"):
        errors.append(("type", f"Invalid value: {_show(new['type'])}: field is immutable"))
    _frozen(errors, new, old, ("data",))
    return errors


def event(api: str) -> Check:
    """The check of a core v1 Event (`api` "v1") or an events.k8s.io/v1 one ("events.k8s.io/v1")."""
    regarding = "involvedObject" if api == "v1" else "regarding"
    controller = "reportingComponent" if api == "v1" else "reportingController"

    def check(new: Obj, old: Obj | None) -> Errors:
        errors: Errors = []
        namespace = new.get("metadata", {}).get("namespace", "")
        about = new.get(regarding) or {}
        if not new.get("eventTime"):
            if api != "v1":
                return [("eventTime", "Required value")]
            if about.get("namespace", "") not in ("", namespace) or (
                not about.get("namespace") and namespace not in ("", "default")
            ):
                errors.append(
                    (f"{regarding}.namespace", f"Invalid value: {_show(about.get('namespace', ''))}: does not match "
                     "event.namespace")
                )  # fmt: skip
            return errors
        if not about.get("namespace") and namespace not in ("default", "kube-system"):
            errors.append(
                (f"{regarding}.namespace", f"Invalid value: {_show('')}: does not match event.namespace (an event "
                 "about a cluster-scoped object goes in default or kube-system)")
            )  # fmt: skip
        reporter = new.get(controller, "")
        if not reporter:
            errors.append((controller, "Required value"))
        elif not QUALIFIED_NAME.match(reporter):
            errors.append((controller, f"Invalid value: {_show(reporter)}: must be a qualified name"))
        for field in ("reportingInstance", "action", "reason"):
            if not new.get(field):
                errors.append((field, "Required value"))
        if api != "v1" and new.get("type") not in ("Normal", "Warning"):
            errors.append(("type", f"Invalid value: {_show(new.get('type', ''))}: has invalid value"))
        return errors

    return check


def network_policy(new: Obj, old: Obj | None) -> Errors:
    """The check of a networking.k8s.io/v1 NetworkPolicy: `topology.netpol_spec.parse_policy`, whose error
    names the field; when valid, `spec.policyTypes` is defaulted in `new` (Ingress, and Egress when there are
    egress rules: SetDefaults_NetworkPolicySpec, k8s.io/kubernetes pkg/apis/networking/v1/defaults.go)."""
    try:
        policy = parse_policy(new)
    except ValidationError as error:
        return [(error.path or "spec", f"Invalid value: {error.message}")]
    spec = new.get("spec")
    if not isinstance(spec, dict):
        spec = new["spec"] = {}
    spec.setdefault("podSelector", {})
    if not spec.get("policyTypes"):
        spec["policyTypes"] = list(policy.policy_types)
    return []
