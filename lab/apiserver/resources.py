"""The resources served: the built-in ones, and those of every stored CustomResourceDefinition.

Discovery documents follow the shapes of the Kubernetes API (`APIVersions`, `APIGroupList`, `APIResourceList`,
https://kubernetes.io/docs/reference/using-api/api-concepts/#discovery-api); the unaggregated forms only,
kubectl falls back to them when the aggregated `apidiscovery.k8s.io/v2` form is not offered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]


@dataclass(frozen=True)
class Resource:
    """One served resource: `group` ("" for core), `version`, `plural`, `kind`, scope, and the CRD extras
    (`columns`: additionalPrinterColumns, `schema`: openAPIV3Schema of the version, `status`: whether the
    status subresource exists, `crd`: defined by a CustomResourceDefinition)."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    singular: str = ""
    short_names: tuple[str, ...] = ()
    status: bool = False
    columns: tuple[dict[str, Any], ...] = ()
    schema: dict[str, Any] = field(default_factory=dict)
    crd: bool = False

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key_group(self) -> str:
        return self.group or "core"

    def discovery(self) -> list[dict[str, Any]]:
        """The APIResource entries of this resource (and its status subresource)."""
        entry = {
            "name": self.plural,
            "singularName": self.singular or self.kind.lower(),
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": VERBS + (["deletecollection"] if not self.crd else []),
        }
        if self.short_names:
            entry["shortNames"] = list(self.short_names)
        if self.crd:
            entry["categories"] = ["all"] if self.namespaced else []
        out = [entry]
        if self.status:
            out.append(
                {
                    "name": f"{self.plural}/status",
                    "singularName": "",
                    "namespaced": self.namespaced,
                    "kind": self.kind,
                    "verbs": ["get", "patch", "update"],
                }
            )
        return out


BUILTIN = [
    Resource("", "v1", "namespaces", "Namespace", False, short_names=("ns",), status=True),
    Resource("", "v1", "nodes", "Node", False, short_names=("no",), status=True),
    Resource("", "v1", "pods", "Pod", True, short_names=("po",), status=True),
    Resource("", "v1", "services", "Service", True, short_names=("svc",), status=True),
    Resource("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", True, short_names=("netpol",)),
    Resource(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        False,
        short_names=("crd", "crds"),
        status=True,
    ),
]


def from_crd(crd: dict[str, Any]) -> list[Resource]:
    """The served versions of a CustomResourceDefinition (apiextensions.k8s.io/v1), one Resource each."""
    spec = crd.get("spec", {})
    names = spec.get("names", {})
    out = []
    for version in spec.get("versions", []):
        if not version.get("served", True):
            continue
        out.append(
            Resource(
                spec["group"],
                version["name"],
                names["plural"],
                names["kind"],
                spec.get("scope", "Namespaced") == "Namespaced",
                singular=names.get("singular", names["kind"].lower()),
                short_names=tuple(names.get("shortNames", [])),
                status="status" in (version.get("subresources") or {}),
                columns=tuple(version.get("additionalPrinterColumns", [])),
                schema=(version.get("schema") or {}).get("openAPIV3Schema", {}),
                crd=True,
            )
        )
    return out


def check_crd(crd: dict[str, Any]) -> str | None:
    """What is wrong with a CustomResourceDefinition (the first problem, naming the field), or None."""
    spec = crd.get("spec")
    if not isinstance(spec, dict):
        return "spec: Required value"
    for name in ("group", "names", "scope", "versions"):
        if not spec.get(name):
            return f"spec.{name}: Required value"
    names = spec["names"]
    for name in ("plural", "kind"):
        if not names.get(name):
            return f"spec.names.{name}: Required value"
    expected = f"{names['plural']}.{spec['group']}"
    if crd.get("metadata", {}).get("name") != expected:
        return f'metadata.name: Invalid value: must be spec.names.plural+"."+spec.group ({expected})'
    if spec["scope"] not in ("Namespaced", "Cluster"):
        return f'spec.scope: Unsupported value: "{spec["scope"]}": supported values: "Cluster", "Namespaced"'
    storage = [v for v in spec["versions"] if v.get("storage")]
    if len(storage) != 1:
        return "spec.versions: Invalid value: must have exactly one version marked as storage version"
    return None


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """Fill `default`s of an openAPIV3Schema into `value` (objects' properties only), in place; returns it.
    Source: https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#defaulting
    """
    if not isinstance(value, dict):
        return value
    for name, sub in (schema.get("properties") or {}).items():
        if name not in value and "default" in sub:
            value[name] = sub["default"]
        if name in value:
            apply_defaults(sub, value[name])
    return value


def jsonpath(obj: Any, path: str) -> Any:
    """The value at a simple JSONPath of printer columns (`.spec.a.b`, `.a[0].b`), or None."""
    current = obj
    for part in path.strip().lstrip("$").strip(".").replace("[", ".").replace("]", "").split("."):
        if not part:
            continue
        if isinstance(current, dict):
            current = current.get(part)
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return None
    return current
