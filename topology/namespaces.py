"""Kubernetes namespaces, pod labels, named container ports and NetworkPolicies in the model.

A namespace belongs to one tenant; an endpoint may live in a namespace of its network's tenant, with labels
and named container ports; a NetworkPolicy lives in a namespace. The tenant boundary stays absolute: a
policy's selectors only ever see namespaces and endpoints of its own tenant (`topology.netpol`).

`NamespacesMixin` is part of `topology.model.Model`: each method validates completely before changing
anything and returns a `Touched` naming what changed (`namespaces`, `labels`, `policies`), so a compiler can
recompute only the policy rules a change can affect.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from topology.errors import ValidationError
from topology.labels import Labels, check_dns_label, check_port_name, parse_labels
from topology.netpol_spec import PROTOCOLS, NetworkPolicy, parse_policy

if TYPE_CHECKING:
    from topology.model import Endpoint, Touched

NAME_LABEL = "kubernetes.io/metadata.name"  # set on every namespace, as the API server does since 1.21


@dataclass(frozen=True, slots=True)
class Namespace:
    name: str
    tenant: str
    labels: Labels  # sorted pairs, NAME_LABEL included

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)


@dataclass(frozen=True, slots=True)
class ContainerPort:
    """A named container port, as a pod spec's `ports[]` (`name`, `containerPort`, `protocol`)."""

    name: str
    port: int
    protocol: str = "TCP"


def namespace_labels(name: str, labels: Mapping[str, str] | Labels) -> Labels:
    """The labels a namespace carries: those given, with NAME_LABEL set to its name."""
    merged = dict(labels)
    merged[NAME_LABEL] = name
    return tuple(sorted(merged.items()))


def parse_ports(path: str, data: object) -> tuple[ContainerPort, ...]:
    """`[{name, port, protocol}]`: names IANA_SVC_NAME and unique, ports 1..65535, protocol TCP/UDP/SCTP."""
    if data is None:
        return ()
    if not isinstance(data, list):
        raise ValidationError(path, f"want a list of {{name, port, protocol}}, got {type(data).__name__}")
    ports: list[ContainerPort] = []
    for i, item in enumerate(data):
        where = f"{path}[{i}]"
        if not isinstance(item, Mapping):
            raise ValidationError(where, "want an object with name, port and protocol")
        unknown = sorted(set(item) - {"name", "port", "protocol"})
        if unknown:
            raise ValidationError(f"{where}.{unknown[0]}", "unknown field (known: name, port, protocol)")
        name = check_port_name(f"{where}.name", item.get("name"))
        if any(p.name == name for p in ports):
            raise ValidationError(f"{where}.name", f"port name {name!r} is used twice")
        port = item.get("port")
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise ValidationError(f"{where}.port", f"want a port number in 1..65535, got {port!r}")
        protocol = item.get("protocol") or "TCP"
        if protocol not in PROTOCOLS:
            raise ValidationError(f"{where}.protocol", f"{protocol!r} is not one of TCP, UDP, SCTP")
        ports.append(ContainerPort(name, port, protocol))
    return tuple(ports)


def ports_json(ports: tuple[ContainerPort, ...]) -> list[dict[str, Any]]:
    return [{"name": p.name, "port": p.port, "protocol": p.protocol} for p in ports]


class NamespacesMixin:
    """Namespaces, endpoint labels and NetworkPolicies of `topology.model.Model`."""

    namespaces: dict[str, Namespace]
    policies: dict[str, NetworkPolicy]  # by "namespace/name"
    endpoints: dict[str, Endpoint]

    def check_endpoint_namespace(self, path: str, tenant: str, namespace: str | None) -> None:
        """An endpoint's namespace must exist and belong to its network's tenant."""
        if namespace is None:
            return
        found = self.namespaces.get(namespace)
        if found is None:
            raise ValidationError(path, f"unknown namespace {namespace!r}")
        if found.tenant != tenant:
            raise ValidationError(path, f"namespace {namespace!r} belongs to another tenant than the network's")

    def tenant_has_namespaces(self, tenant: str) -> bool:
        return any(n.tenant == tenant for n in self.namespaces.values())

    def add_namespace(
        self, name: str, *, tenant: str, labels: Mapping[str, str] | None = None, path: str = "namespace"
    ) -> Touched:
        from topology.model import Touched

        check_dns_label(path + ".name", name)
        if tenant not in self.tenants:  # type: ignore[attr-defined]
            raise ValidationError(path + ".tenant", f"unknown tenant {tenant!r}")
        if name in self.namespaces:
            raise ValidationError(path + ".name", f"namespace {name!r} already exists", conflict=True)
        given = parse_labels(path + ".labels", labels)
        self.namespaces[name] = Namespace(name, tenant, namespace_labels(name, given))
        return self._bump(Touched(namespaces={name}))  # type: ignore[attr-defined]

    def remove_namespace(self, name: str, *, path: str = "namespace") -> Touched:
        from topology.model import Touched

        self.namespace(name, path=path)
        endpoints = sorted(e.id for e in self.endpoints.values() if e.namespace == name)
        if endpoints:
            raise ValidationError(
                path, f"{name!r} still has {len(endpoints)} endpoint(s): delete them first", conflict=True
            )
        policies = sorted(p.name for p in self.policies.values() if p.namespace == name)
        if policies:
            raise ValidationError(
                path, f"{name!r} still has NetworkPolicies ({', '.join(policies)}): delete them first", conflict=True
            )
        del self.namespaces[name]
        return self._bump(Touched(namespaces={name}))  # type: ignore[attr-defined]

    def namespace(self, name: str, *, path: str = "namespace") -> Namespace:
        try:
            return self.namespaces[name]
        except KeyError:
            raise ValidationError(path, f"unknown namespace {name!r}") from None

    def set_namespace_labels(self, name: str, labels: Mapping[str, str] | None, *, path: str = "namespace") -> Touched:
        """Replace a namespace's labels (NAME_LABEL is kept as the API server keeps it)."""
        from topology.model import Touched

        old = self.namespace(name, path=path)
        new = namespace_labels(name, parse_labels(path + ".labels", labels))
        if new == old.labels:
            return self._bump(Touched())  # type: ignore[attr-defined]
        self.namespaces[name] = Namespace(name, old.tenant, new)
        return self._bump(Touched(namespaces={name}))  # type: ignore[attr-defined]

    def set_endpoint_labels(
        self, endpoint_id: str, labels: Mapping[str, str] | None, *, path: str = "endpoint"
    ) -> Touched:
        """Replace an endpoint's labels; Touched.labels names it when they changed."""
        from dataclasses import replace

        from topology.model import Touched

        endpoint = self.endpoint(endpoint_id, path=path)  # type: ignore[attr-defined]
        new = parse_labels(path + ".labels", labels)
        if new == endpoint.labels:
            return self._bump(Touched())  # type: ignore[attr-defined]
        self._replace_endpoint(replace(endpoint, labels=new))  # type: ignore[attr-defined]
        return self._bump(Touched(labels={endpoint_id}))  # type: ignore[attr-defined]

    def set_endpoint_ports(self, endpoint_id: str, ports: object, *, path: str = "endpoint") -> Touched:
        """Replace an endpoint's named container ports (`[{name, port, protocol}]`, checked by `parse_ports`,
        ValidationError naming `path.ports[i]...`); Touched.labels names it when they changed, since the
        NetworkPolicies that may resolve a named port on it are the ones to re-resolve."""
        from dataclasses import replace

        from topology.model import Touched

        endpoint = self.endpoint(endpoint_id, path=path)  # type: ignore[attr-defined]
        new = parse_ports(path + ".ports", ports)
        if new == endpoint.ports:
            return self._bump(Touched())  # type: ignore[attr-defined]
        self._replace_endpoint(replace(endpoint, ports=new))  # type: ignore[attr-defined]
        return self._bump(Touched(labels={endpoint_id}))  # type: ignore[attr-defined]

    def apply_policy(
        self, doc: object, *, namespace: str | None = None, policy_id: int | None = None, path: str = ""
    ) -> tuple[NetworkPolicy, Touched]:
        """Create or replace a NetworkPolicy (validated by `topology.netpol_spec.parse_policy`); its namespace
        must exist. A new policy gets the lowest free id (`policy_id`: the one it had, when restoring), a
        replaced one keeps its own. Returns the policy and what changed (Touched.policies: "namespace/name")."""
        from topology.model import Touched, take_or_claim

        policy = parse_policy(doc, namespace=namespace, path=path)
        self.namespace(policy.namespace, path=f"{path}.metadata.namespace" if path else "metadata.namespace")
        previous = self.policies.get(policy.key)
        if previous is None:
            self.policy_ids[policy.key] = take_or_claim(self._policy_id_pool, policy_id, path or "networkpolicy")  # type: ignore[attr-defined]
        self.policies[policy.key] = policy
        changed = previous is None or previous != policy
        return policy, self._bump(Touched(policies={policy.key} if changed else set()))  # type: ignore[attr-defined]

    def remove_policy(self, key: str, *, path: str = "networkpolicy") -> Touched:
        from topology.model import Touched

        if key not in self.policies:
            raise ValidationError(path, f"unknown NetworkPolicy {key!r}")
        del self.policies[key]
        self._policy_id_pool.give_back(self.policy_ids.pop(key))  # type: ignore[attr-defined]
        return self._bump(Touched(policies={key}))  # type: ignore[attr-defined]

    def policies_in(self, namespace: str) -> list[NetworkPolicy]:
        return [p for _key, p in sorted(self.policies.items()) if p.namespace == namespace]
