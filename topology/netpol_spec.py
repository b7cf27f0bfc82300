"""A Kubernetes NetworkPolicy (`networking.k8s.io/v1`) read and validated as the API server validates it.

Source: `pkg/apis/networking/validation/validation.go` in kubernetes/kubernetes (ValidateNetworkPolicySpec,
ValidateNetworkPolicyPort, ValidateNetworkPolicyPeer, ValidateIPBlock) and the API reference of
NetworkPolicy. Ports are 1..65535; `endPort` only with a numeric `port` and not below it; protocols TCP,
UDP, SCTP (default TCP); a named port follows IANA_SVC_NAME; a peer has a podSelector, a namespaceSelector,
both, or an ipBlock alone; an `except` is a strict subset of its `cidr`; `policyTypes` holds at most
Ingress and Egress. Fields the API does not know are refused (as `kubectl apply`'s strict field validation
does). Every error names the field: `spec.ingress[0].ports[1].endPort: must not be below port`.

The document is kept exactly as submitted (`NetworkPolicy.doc`); the typed fields are what resolves.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Any

from topology.errors import ValidationError
from topology.labels import (
    Selector,
    check_dns_label,
    check_dns_subdomain,
    check_port_name,
    parse_labels,
    parse_selector,
)

API_VERSION = "networking.k8s.io/v1"
KIND = "NetworkPolicy"
PROTOCOLS = ("TCP", "UDP", "SCTP")
POLICY_TYPES = ("Ingress", "Egress")
Cidr = IPv4Network | IPv6Network


@dataclass(frozen=True, slots=True)
class PolicyPort:
    """One `ports` entry: `port` None is every port of the protocol; a str is a named container port."""

    protocol: str = "TCP"
    port: int | str | None = None
    end_port: int | None = None


@dataclass(frozen=True, slots=True)
class IpBlock:
    cidr: Cidr
    excepts: tuple[Cidr, ...] = ()


@dataclass(frozen=True, slots=True)
class Peer:
    """A `from`/`to` entry. With `ip_block` the selectors are None; a selector None is absent, not empty."""

    pod_selector: Selector | None = None
    namespace_selector: Selector | None = None
    ip_block: IpBlock | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    """An ingress or egress rule: no peers is every peer, no ports every port and protocol."""

    peers: tuple[Peer, ...] = ()
    ports: tuple[PolicyPort, ...] = ()


@dataclass(frozen=True, slots=True)
class NetworkPolicy:
    namespace: str
    name: str
    pod_selector: Selector
    ingress: tuple[Rule, ...]
    egress: tuple[Rule, ...]
    policy_types: tuple[str, ...]  # effective: as given, else Ingress and, with egress rules, Egress
    doc: dict[str, Any] = field(compare=False, hash=False, repr=False)  # as submitted

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def isolates_ingress(self) -> bool:
        return "Ingress" in self.policy_types

    @property
    def isolates_egress(self) -> bool:
        return "Egress" in self.policy_types


def parse_policy(doc: object, *, namespace: str | None = None, path: str = "") -> NetworkPolicy:
    """Validate one NetworkPolicy document; `namespace` (from a URL or a flag) fills or must equal
    `metadata.namespace`. Raises ValidationError naming the field (`path` prefixes it, e.g. `policies[2]`)."""

    def at(name: str) -> str:
        return f"{path}.{name}" if path else name

    if not isinstance(doc, Mapping):
        raise ValidationError(path, f"want a NetworkPolicy object, got {type(doc).__name__}")
    _known(path, doc, {"apiVersion", "kind", "metadata", "spec", "status"})
    if doc.get("apiVersion") != API_VERSION:
        raise ValidationError(at("apiVersion"), f"want {API_VERSION!r}, got {doc.get('apiVersion')!r}")
    if doc.get("kind") != KIND:
        raise ValidationError(at("kind"), f"want {KIND!r}, got {doc.get('kind')!r}")
    metadata = doc.get("metadata")
    if not isinstance(metadata, Mapping):
        raise ValidationError(at("metadata"), "is required (an object with at least a name)")
    name = check_dns_subdomain(at("metadata.name"), metadata.get("name"))
    given = metadata.get("namespace")
    if given is not None:
        check_dns_label(at("metadata.namespace"), given)
        if namespace is not None and given != namespace:
            raise ValidationError(at("metadata.namespace"), f"{given!r} does not match the namespace {namespace!r}")
    namespace = namespace if namespace is not None else given
    if namespace is None:
        raise ValidationError(at("metadata.namespace"), "is required (or give the namespace separately)")
    check_dns_label(at("metadata.namespace"), namespace)
    parse_labels(at("metadata.labels"), metadata.get("labels"))
    spec = doc.get("spec") if doc.get("spec") is not None else {}
    if not isinstance(spec, Mapping):
        raise ValidationError(at("spec"), f"want an object, got {type(spec).__name__}")
    _known(at("spec"), spec, {"podSelector", "policyTypes", "ingress", "egress"})
    selector = parse_selector(at("spec.podSelector"), spec.get("podSelector"))
    ingress = tuple(_rule(at(f"spec.ingress[{i}]"), r, "from") for i, r in enumerate(_list(at("spec.ingress"), spec)))
    egress = tuple(_rule(at(f"spec.egress[{i}]"), r, "to") for i, r in enumerate(_list(at("spec.egress"), spec)))
    types = _list(at("spec.policyTypes"), spec)
    if len(types) > len(POLICY_TYPES):
        raise ValidationError(at("spec.policyTypes"), "may not specify more than two policyTypes")
    for i, kind in enumerate(types):
        if kind not in POLICY_TYPES:
            raise ValidationError(at(f"spec.policyTypes[{i}]"), f"{kind!r} is not one of Ingress, Egress")
    if not types:  # the API server's defaulting (SetDefaults_NetworkPolicySpec)
        types = ["Ingress", "Egress"] if egress else ["Ingress"]
    effective = tuple(t for t in POLICY_TYPES if t in types)
    kept = copy.deepcopy(dict(doc))
    kept.setdefault("metadata", {})["namespace"] = namespace
    return NetworkPolicy(namespace, name, selector, ingress, egress, effective, kept)


def _known(path: str, data: Mapping[str, Any], known: set[str]) -> None:
    unknown = sorted(str(k) or '""' for k in set(data) - known)  # an empty key is named too
    if unknown:
        where = f"{path}.{unknown[0]}" if path else unknown[0]
        raise ValidationError(where, f"unknown field (known: {', '.join(sorted(known))})")


def _list(path: str, data: Mapping[str, Any]) -> list[Any]:
    value = data.get(path.rsplit(".", 1)[-1])
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValidationError(path, f"want a list, got {type(value).__name__}")
    return value


def _rule(path: str, data: object, peers_field: str) -> Rule:
    if data is None:
        return Rule()
    if not isinstance(data, Mapping):
        raise ValidationError(path, f"want an object with {peers_field} and ports")
    _known(path, data, {peers_field, "ports"})
    peers = tuple(_peer(f"{path}.{peers_field}[{i}]", p) for i, p in enumerate(_list(f"{path}.{peers_field}", data)))
    ports = tuple(_port(f"{path}.ports[{i}]", p) for i, p in enumerate(_list(f"{path}.ports", data)))
    return Rule(peers, ports)


def _peer(path: str, data: object) -> Peer:
    if not isinstance(data, Mapping):
        raise ValidationError(path, "want an object with podSelector, namespaceSelector or ipBlock")
    _known(path, data, {"podSelector", "namespaceSelector", "ipBlock"})
    present = [k for k in ("podSelector", "namespaceSelector", "ipBlock") if data.get(k) is not None]
    if not present:
        raise ValidationError(path, "must specify a peer (podSelector, namespaceSelector or ipBlock)")
    if "ipBlock" in present and len(present) > 1:
        raise ValidationError(path, "may not specify both ipBlock and another peer")
    if "ipBlock" in present:
        return Peer(ip_block=_ip_block(f"{path}.ipBlock", data["ipBlock"]))
    pods = parse_selector(f"{path}.podSelector", data["podSelector"]) if "podSelector" in present else None
    spaces = data.get("namespaceSelector")
    namespaces = parse_selector(f"{path}.namespaceSelector", spaces) if spaces is not None else None
    return Peer(pod_selector=pods, namespace_selector=namespaces)


def _cidr(path: str, text: object) -> Cidr:
    if not isinstance(text, str) or not text:
        raise ValidationError(path, "is required (a CIDR such as 10.0.0.0/16)")
    if "/" not in text:
        raise ValidationError(path, f"{text!r} is not a valid CIDR (want ADDRESS/PREFIX)")
    try:
        return ip_network(text, strict=False)
    except ValueError as error:
        raise ValidationError(path, f"{text!r} is not a valid CIDR ({error})") from None


def _ip_block(path: str, data: object) -> IpBlock:
    if not isinstance(data, Mapping):
        raise ValidationError(path, "want an object with cidr and except")
    _known(path, data, {"cidr", "except"})
    cidr = _cidr(f"{path}.cidr", data.get("cidr"))
    excepts = []
    for i, text in enumerate(_list(f"{path}.except", data)):
        exclude = _cidr(f"{path}.except[{i}]", text)
        strict = (
            exclude.version == cidr.version and exclude.network_address in cidr and exclude.prefixlen > cidr.prefixlen
        )
        if not strict:
            raise ValidationError(f"{path}.except[{i}]", f"{text!r} must be a strict subset of `cidr` {str(cidr)!r}")
        excepts.append(exclude)
    return IpBlock(cidr, tuple(excepts))


def _port_number(path: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(path, f"want an integer port or a port name, got {value!r}")
    if not 1 <= value <= 65535:
        raise ValidationError(path, f"{value} must be between 1 and 65535, inclusive")
    return value


def _port(path: str, data: object) -> PolicyPort:
    if not isinstance(data, Mapping):
        raise ValidationError(path, "want an object with protocol, port and endPort")
    _known(path, data, {"protocol", "port", "endPort"})
    protocol = data.get("protocol") if data.get("protocol") is not None else "TCP"
    if protocol not in PROTOCOLS:
        raise ValidationError(f"{path}.protocol", f"{protocol!r} is not one of TCP, UDP, SCTP")
    port, end = data.get("port"), data.get("endPort")
    if port is None:
        if end is not None:
            raise ValidationError(f"{path}.endPort", "may not be specified when `port` is not specified")
        return PolicyPort(protocol)
    if isinstance(port, str):
        if end is not None:
            raise ValidationError(f"{path}.endPort", "may not be specified when `port` is non-numeric")
        return PolicyPort(protocol, check_port_name(f"{path}.port", port))
    number = _port_number(f"{path}.port", port)
    if end is None:
        return PolicyPort(protocol, number)
    end_number = _port_number(f"{path}.endPort", end)
    if end_number < number:
        raise ValidationError(f"{path}.endPort", "must not be below port")
    return PolicyPort(protocol, number, end_number)
