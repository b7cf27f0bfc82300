"""The resources served: `Resource` (the built-in ones are listed in `builtin`), those of every stored
CustomResourceDefinition, and the schema checks and defaults of custom resources.

Discovery documents follow the shapes of the Kubernetes API (`APIVersions`, `APIGroupList`, `APIResourceList`,
https://kubernetes.io/docs/reference/using-api/api-concepts/#discovery-api); the unaggregated forms only,
kubectl falls back to them when the aggregated `apidiscovery.k8s.io/v2` form is not offered.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lab.apiserver.http import ApiError

PRINTER_TYPES = ("integer", "number", "string", "boolean", "date")
VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]
# What a built-in kind's check answers for a new object and the stored one (None on create): (field, message)
# pairs, each message as kube-apiserver words it ("Required value", "Unsupported value: ...", ...).
Check = Callable[[dict[str, Any], dict[str, Any] | None], list[tuple[str, str]]]


@dataclass(frozen=True)
class Resource:
    """One served resource: `group` ("" for core), `version`, `plural`, `kind`, scope, `status`: whether the
    status subresource exists, `columns`: its Table columns (a CRD's additionalPrinterColumns; a built-in
    column may compute its cell with a `value` callable instead of a `jsonPath`), `categories` (as
    `kubectl get all` uses them), `check`: the shallow validation of a built-in kind (see `builtin`),
    `scale`: whether the `scale` subresource exists (module `scale`), `stored_as`: another resource whose
    storage this one shares (events.k8s.io/v1 Events are core v1 Events), with `renames` of top-level
    fields (this version's name, the stored one's), and the CRD extras (`schema`: openAPIV3Schema of the
    version, `crd`: defined by a CustomResourceDefinition)."""

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
    categories: tuple[str, ...] = ()
    check: Check | None = field(default=None, compare=False)
    stored_as: Resource | None = field(default=None, compare=False)
    scale: bool = False
    renames: tuple[tuple[str, str], ...] = ()

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key_group(self) -> str:
        return self.group or "core"

    @property
    def qualified_kind(self) -> str:
        """`Kind.group` as kube-apiserver names the kind in errors (`Deployment.apps`), `Kind` for core."""
        return f"{self.kind}.{self.group}" if self.group else self.kind

    def discovery(self) -> list[dict[str, Any]]:
        """The APIResource entries of this resource (and its status subresource)."""
        entry = {
            "name": self.plural,
            "singularName": self.singular or self.kind.lower(),
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": VERBS,
        }
        if self.short_names:
            entry["shortNames"] = list(self.short_names)
        if self.categories:
            entry["categories"] = list(self.categories)
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
        if self.scale:
            out.append(
                {
                    "name": f"{self.plural}/scale",
                    "singularName": "",
                    "namespaced": self.namespaced,
                    "group": "autoscaling",
                    "version": "v1",
                    "kind": "Scale",
                    "verbs": ["get", "patch", "update"],
                }
            )
        return out


def to_storage(resource: Resource, obj: dict[str, Any]) -> dict[str, Any]:
    """`obj` of `resource` in the shape its storage holds (a copy with fields renamed, when `stored_as`)."""
    if resource.stored_as is None:
        return obj
    names = dict(resource.renames)
    out = {names.get(key, key): value for key, value in obj.items()}
    out.update(apiVersion=resource.stored_as.group_version, kind=resource.stored_as.kind)
    return out


def from_storage(resource: Resource, obj: dict[str, Any]) -> dict[str, Any]:
    """A stored object in the shape of `resource` (the inverse of `to_storage`)."""
    if resource.stored_as is None:
        return obj
    names = {stored: mine for mine, stored in resource.renames}
    out = {names.get(key, key): value for key, value in obj.items()}
    out.update(apiVersion=resource.group_version, kind=resource.kind)
    return out


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
                categories=tuple(names.get("categories", [])),
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
    for n, version in enumerate(spec["versions"]):
        where = f"spec.versions[{n}]"
        if not version.get("name"):
            return f"{where}.name: Required value"
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        if not isinstance(schema, dict):
            return f"{where}.schema.openAPIV3Schema: Required value: schemas are required"
        if schema.get("type") != "object":
            return f'{where}.schema.openAPIV3Schema.type: Unsupported value: "{schema.get("type")}": must be object'
        for c, column in enumerate(version.get("additionalPrinterColumns") or []):
            if column.get("type") not in PRINTER_TYPES or not column.get("name") or not column.get("jsonPath"):
                return (
                    f"{where}.additionalPrinterColumns[{c}]: Invalid value: needs name, jsonPath and a type "
                    f"of {', '.join(PRINTER_TYPES)}"
                )
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


_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}


def _type_name(value: Any) -> str:
    for name in ("boolean", "integer", "number", "string", "array", "object"):
        if isinstance(value, _TYPES[name]):
            return name
    return "null"


def validate(schema: dict[str, Any], value: Any, path: str, errors: list[tuple[str, str]], unknown: list[str]) -> Any:
    """Check `value` against a structural openAPIV3Schema as kube-apiserver does for custom resources: type,
    enum, required, minimum/maximum, min/maxLength, min/maxItems, pattern; collect (field, message) errors and
    the paths of fields the schema does not know, and return `value` with those fields pruned.
    Source: https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#validation
    """
    if value is None or not schema:
        return value
    kind = schema.get("type")
    int_or_string = schema.get("x-kubernetes-int-or-string")
    allowed = (int, str) if int_or_string else _TYPES.get(kind or "", (object,))
    if not isinstance(value, allowed) or (isinstance(value, bool) and kind in ("integer", "number")):
        actual = _type_name(value)
        errors.append((path, f'Invalid value: "{actual}": {path} in body must be of type {kind}: "{actual}"'))
        return value
    if "enum" in schema and value not in schema["enum"]:
        supported = ", ".join(json.dumps(v) for v in schema["enum"])
        errors.append((path, f"Unsupported value: {json.dumps(value)}: supported values: {supported}"))
    for bound, test, words in (
        ("minimum", lambda v, b: v >= b, "greater than or equal to"),
        ("maximum", lambda v, b: v <= b, "less than or equal to"),
    ):
        if bound in schema and isinstance(value, int | float) and not test(value, schema[bound]):
            errors.append((path, f"Invalid value: {value}: {path} in body should be {words} {schema[bound]}"))
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", len(value)):
            errors.append((path, f'Invalid value: "{value}": {path} in body has a length out of bounds'))
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append((path, f"Invalid value: \"{value}\": {path} in body should match '{schema['pattern']}'"))
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", len(value)):
            errors.append((path, f"Invalid value: {len(value)}: {path} in body has a number of items out of bounds"))
        return [
            validate(schema.get("items") or {}, item, f"{path}[{n}]", errors, unknown) for n, item in enumerate(value)
        ]
    if isinstance(value, dict):
        for name in schema.get("required", []):
            if name not in value:
                errors.append((f"{path}.{name}".lstrip("."), "Required value"))
        properties = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        keep = schema.get("x-kubernetes-preserve-unknown-fields") or extra is True
        out = {}
        for name, item in value.items():
            where = f"{path}.{name}".lstrip(".")
            if not path and name == "metadata":  # ObjectMeta is never pruned, whatever the schema says of it
                out[name] = item
            elif name in properties:
                out[name] = validate(properties[name], item, where, errors, unknown)
            elif isinstance(extra, dict):
                out[name] = validate(extra, item, where, errors, unknown)
            elif keep or (not path and name in ("apiVersion", "kind", "metadata")):
                out[name] = item
            else:
                unknown.append(where)
        return out
    return value


def schema_check(resource: Resource, obj: dict[str, Any], strict: bool) -> dict[str, Any]:
    """A custom resource checked against its version's schema: 422 on invalid values; unknown fields
    are 400 with fieldValidation=Strict, else pruned (returned without them)."""
    if not resource.crd or not resource.schema:
        return obj
    errors: list[tuple[str, str]] = []
    unknown: list[str] = []
    pruned = validate(resource.schema, obj, "", errors, unknown)
    name = obj.get("metadata", {}).get("name", "")
    if unknown and strict:
        fields = ", ".join(f'unknown field "{path}"' for path in unknown)
        raise ApiError(
            400,
            f'{resource.kind} in version "{resource.version}" cannot be handled as a {resource.kind}: '
            f"strict decoding error: {fields}",
        )
    if errors:
        what = f"{resource.kind}.{resource.group}"
        listed = [f"{field}: {message}" for field, message in errors]
        text = listed[0] if len(listed) == 1 else "[" + ", ".join(listed) + "]"
        raise ApiError(
            422,
            f'{what} "{name}" is invalid: {text}',
            "Invalid",
            name=name,
            group=resource.group,
            kind=resource.kind,
            causes=[{"reason": "FieldValueInvalid", "message": m, "field": f} for f, m in errors],
        )
    return pruned
