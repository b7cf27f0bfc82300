"""Kubernetes labels and label selectors: syntax as the API server checks it, and matching.

Sources: Kubernetes "Labels and Selectors" and the API server's validation
(`k8s.io/apimachinery/pkg/util/validation` IsQualifiedName, IsValidLabelValue, IsDNS1123Subdomain,
IsDNS1123Label, IsValidPortName; `pkg/apis/meta/v1/validation` ValidateLabelSelector). Every error is a
`ValidationError` naming the field, e.g. `spec.podSelector.matchLabels: "a b" is not a valid label key`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from topology.errors import ValidationError

Labels = tuple[tuple[str, str], ...]  # sorted (key, value) pairs: hashable, for frozen entities

_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")  # qualified name part, label value
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


def check_dns_label(path: str, value: object) -> str:
    """An RFC 1123 label (a namespace name): at most 63 of [a-z0-9-], alphanumeric at both ends."""
    if not isinstance(value, str) or not value:
        raise ValidationError(path, f"want a non-empty string, got {value!r}")
    if len(value) > 63 or not _DNS_LABEL.match(value):
        raise ValidationError(
            path, f"{value!r} is not an RFC 1123 label (at most 63 of a-z, 0-9 and '-', alphanumeric at both ends)"
        )
    return value


def check_dns_subdomain(path: str, value: object) -> str:
    """An RFC 1123 subdomain (an object name such as a NetworkPolicy's): at most 253 characters."""
    if not isinstance(value, str) or not value:
        raise ValidationError(path, f"want a non-empty string, got {value!r}")
    if len(value) > 253 or not _DNS_SUBDOMAIN.match(value):
        raise ValidationError(
            path, f"{value!r} is not an RFC 1123 subdomain (a-z, 0-9, '-' and '.', alphanumeric at both ends)"
        )
    return value


def check_label_key(path: str, key: object) -> str:
    """A qualified name: `[prefix/]name`, name at most 63 characters, prefix a DNS subdomain."""
    if not isinstance(key, str) or not key:
        raise ValidationError(path, f"want a non-empty label key, got {key!r}")
    prefix, _, name = key.rpartition("/")
    if "/" in key and (not prefix or "/" in prefix):
        raise ValidationError(path, f"{key!r} is not a valid label key (at most one '/', after a DNS prefix)")
    if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        raise ValidationError(path, f"{key!r}: the prefix {prefix!r} is not an RFC 1123 subdomain")
    if len(name) > 63 or not _NAME.match(name):
        raise ValidationError(
            path,
            f"{key!r} is not a valid label key (name at most 63 of A-Z, a-z, 0-9, '-', '_', '.', "
            "alphanumeric at both ends)",
        )
    return key


def check_label_value(path: str, value: object) -> str:
    """A label value: empty, or at most 63 of [A-Za-z0-9-_.], alphanumeric at both ends."""
    if not isinstance(value, str):
        raise ValidationError(path, f"want a string label value, got {value!r}")
    if value and (len(value) > 63 or not _NAME.match(value)):
        raise ValidationError(
            path,
            f"{value!r} is not a valid label value (at most 63 of A-Z, a-z, 0-9, '-', '_', '.', "
            "alphanumeric at both ends)",
        )
    return value


def parse_labels(path: str, data: object) -> Labels:
    """A `{key: value}` mapping checked key by key; returned as sorted pairs. None is no labels."""
    if data is None:
        return ()
    if not isinstance(data, Mapping):
        raise ValidationError(path, f"want a mapping of label keys to values, got {type(data).__name__}")
    for key, value in data.items():
        check_label_key(f"{path}[{key!r}]" if isinstance(key, str) else path, key)
        check_label_value(f"{path}.{key}", value)
    return tuple(sorted(data.items()))


def check_port_name(path: str, name: object) -> str:
    """IANA_SVC_NAME (RFC 6335), as named container ports and NetworkPolicy ports use it: at most 15 of
    a-z, 0-9 and '-', at least one letter, no '-' at either end nor two in a row."""
    if not isinstance(name, str) or not name:
        raise ValidationError(path, f"want a port name, got {name!r}")
    problems = []
    if len(name) > 15:
        problems.append("at most 15 characters")
    if not re.fullmatch(r"[-a-z0-9]+", name):
        problems.append("only a-z, 0-9 and '-'")
    if not re.search(r"[a-z]", name):
        problems.append("at least one letter")
    if name.startswith("-") or name.endswith("-") or "--" in name:
        problems.append("no '-' at either end nor two in a row")
    if problems:
        raise ValidationError(path, f"{name!r} is not a valid port name (IANA_SVC_NAME: {'; '.join(problems)})")
    return name


@dataclass(frozen=True, slots=True)
class Requirement:
    """One `matchExpressions` entry: key, operator (In, NotIn, Exists, DoesNotExist) and values."""

    key: str
    operator: str
    values: frozenset[str]

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "In":
            return self.key in labels and labels[self.key] in self.values
        if self.operator == "NotIn":
            return self.key not in labels or labels[self.key] not in self.values
        if self.operator == "Exists":
            return self.key in labels
        return self.key not in labels  # DoesNotExist


@dataclass(frozen=True, slots=True)
class Selector:
    """A label selector: every `matchLabels` pair and every requirement must hold. Empty selects all."""

    match_labels: Labels = ()
    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.match_labels) and all(
            r.matches(labels) for r in self.requirements
        )

    @property
    def empty(self) -> bool:
        return not self.match_labels and not self.requirements


def parse_selector(path: str, data: object) -> Selector:
    """A `metav1.LabelSelector` document (`matchLabels`, `matchExpressions`), validated as the API server
    does: In and NotIn want values, Exists and DoesNotExist none. Raises ValidationError naming the field."""
    if data is None:
        return Selector()
    if not isinstance(data, Mapping):
        raise ValidationError(path, f"want a label selector object, got {type(data).__name__}")
    unknown = sorted(str(k) or '""' for k in set(data) - {"matchLabels", "matchExpressions"})
    if unknown:
        raise ValidationError(f"{path}.{unknown[0]}", "unknown field (known: matchExpressions, matchLabels)")
    match_labels = parse_labels(f"{path}.matchLabels", data.get("matchLabels"))
    expressions = data.get("matchExpressions") or []
    if not isinstance(expressions, list):
        raise ValidationError(f"{path}.matchExpressions", "want a list of requirements")
    requirements = tuple(_requirement(f"{path}.matchExpressions[{i}]", e) for i, e in enumerate(expressions))
    return Selector(match_labels, requirements)


def _requirement(path: str, data: Any) -> Requirement:
    if not isinstance(data, Mapping):
        raise ValidationError(path, "want an object with key, operator and values")
    unknown = sorted(str(k) or '""' for k in set(data) - {"key", "operator", "values"})
    if unknown:
        raise ValidationError(f"{path}.{unknown[0]}", "unknown field (known: key, operator, values)")
    key = check_label_key(f"{path}.key", data.get("key"))
    operator = data.get("operator")
    if operator not in OPERATORS:
        raise ValidationError(
            f"{path}.operator", f"{operator!r} is not a valid selector operator ({', '.join(OPERATORS)})"
        )
    values = data.get("values") or []
    if not isinstance(values, list):
        raise ValidationError(f"{path}.values", "want a list of strings")
    if operator in ("In", "NotIn") and not values:
        raise ValidationError(f"{path}.values", f"must be specified when `operator` is {operator!r}")
    if operator in ("Exists", "DoesNotExist") and values:
        raise ValidationError(f"{path}.values", f"may not be specified when `operator` is {operator!r}")
    for i, value in enumerate(values):
        check_label_value(f"{path}.values[{i}]", value)
    return Requirement(key, operator, frozenset(values))
