"""Load the tenant-admin YAML format into a `Model`, and dump a `Model` back to it.

Every problem (bad YAML, a wrong shape, a bad value, a conflict) is a `ValidationError` whose path is the
YAML path of the offending field, such as `tenants[0].networks[1].vlan`, so an admin can find it in the
file. Sections are applied in dependency order: nodes, links, tenants with their networks, Kubernetes
namespaces, QoS profiles, endpoints, the QoS attachments (so `applies_to` may name endpoints), and last the
NetworkPolicies (`policies`: Kubernetes `networking.k8s.io/v1` documents, checked as the API server does).
"""

from __future__ import annotations

import contextlib
import os
import reprlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from topology.errors import ValidationError
from topology.model import Encap, Endpoint, Model, Network, Node, default_datapath_id, default_port_name
from topology.namespaces import NAME_LABEL, ports_json

SECTIONS = ("nodes", "links", "tenants", "namespaces", "qos", "endpoints", "policies")


@dataclass(frozen=True)
class Shape:
    """The keys one kind of entry may carry."""

    required: tuple[str, ...]
    optional: tuple[str, ...] = ()

    @property
    def allowed(self) -> tuple[str, ...]:
        return self.required + self.optional


NODE = Shape(("name", "tunnel_ip"), ("uplink", "datapath_id"))
LINK = Shape(("a", "a_port", "b", "b_port"))
TENANT = Shape(("name",), ("networks",))
# The segment key (vni or vlan) is required too, but which one depends on encap.
NETWORK = Shape(("name", "encap", "subnet"), ("vni", "vlan", "gateway", "mtu"))
QOS = Shape(("name", "rate_kbps"), ("burst_kb", "direction", "applies_to"))  # burst_kb in kbit
ENDPOINT = Shape(("id", "network", "node"), ("ip", "mac", "port_name", "namespace", "labels", "ports"))
NAMESPACE = Shape(("name", "tenant"), ("labels",))
SEGMENT_KEY = {Encap.VLAN.value: "vlan", Encap.VXLAN.value: "vni"}

# Values end up in messages; YAML aliases can make them huge or self-referencing, so show them bounded.
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 2, 60, 60


def show(value: object) -> str:
    return _REPR.repr(value)


# --- public API ------------------------------------------------------------------------------------


def load_file(path: str | os.PathLike[str]) -> Model:
    """Load a topology file; an unreadable file is reported like any other error, with the file as path."""
    source = os.fspath(path)
    try:
        text = Path(source).read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ValidationError(source, f"not UTF-8 text ({error.reason} at byte {error.start})") from None
    except OSError as error:
        raise ValidationError(source, f"cannot read the file: {error.strerror or error}") from None
    return load_text(text, source=source)


def load_text(text: str, *, source: str = "<text>") -> Model:
    """Parse YAML text (safely: plain data only) and build a validated model from it."""
    return load_data(parse_yaml(text, source=source), source=source)


def load_data(data: object, *, source: str = "<data>") -> Model:
    """Build a model from already-parsed data (the YAML format as Python dicts and lists, or JSON)."""
    document = check_document(data, source)
    model = Model()
    for path, item in entries(document.get("nodes"), "nodes"):
        add_node(model, Entry(item, path, NODE))
    for path, item in entries(document.get("links"), "links"):
        add_link(model, Entry(item, path, LINK))
    for path, item in entries(document.get("tenants"), "tenants"):
        add_tenant(model, Entry(item, path, TENANT))
    for path, item in entries(document.get("namespaces"), "namespaces"):
        entry = Entry(item, path, NAMESPACE)
        model.add_namespace(entry.text("name"), tenant=entry.text("tenant"), labels=entry.data.get("labels"), path=path)
    attachments: list[Attachment] = []
    for path, item in entries(document.get("qos"), "qos"):
        attachments += add_qos(model, Entry(item, path, QOS))
    for path, item in entries(document.get("endpoints"), "endpoints"):
        add_endpoint(model, Entry(item, path, ENDPOINT))
    for attachment in attachments:
        attach_qos(model, attachment)
    for path, item in entries(document.get("policies"), "policies"):
        add_policy(model, item, path)
    return model


def add_policy(model: Model, doc: object, path: str) -> None:
    """One NetworkPolicy document; a second one of the same namespace and name is refused."""
    metadata = doc.get("metadata") if isinstance(doc, Mapping) else None
    key = f"{metadata.get('namespace')}/{metadata.get('name')}" if isinstance(metadata, Mapping) else None
    if key in model.policies:
        raise ValidationError(f"{path}.metadata.name", f"NetworkPolicy {key!r} is given twice", conflict=True)
    model.apply_policy(doc, path=path)


def dump_model(model: Model) -> dict[str, Any]:
    """The model in the file format, allocated IPs and MACs written out, so loading it gives the same model."""
    dumped = {
        "nodes": [dump_node(node) for node in model.nodes.values()],
        "links": [{"a": link.a, "a_port": link.a_port, "b": link.b, "b_port": link.b_port} for link in model.links],
        "tenants": [
            {"name": name, "networks": [dump_network(net) for net in networks.values()]}
            for name, networks in model.networks_by_tenant.items()
        ],
        "qos": [dump_qos(model, name) for name in model.qos_profiles],
        "namespaces": [
            {"name": n.name, "tenant": n.tenant, "labels": {k: v for k, v in n.labels if k != NAME_LABEL}}
            for n in model.namespaces.values()
        ],
        "endpoints": [dump_endpoint(endpoint) for endpoint in model.endpoints.values()],
        "policies": [policy.doc for policy in model.policies.values()],
    }
    return {key: value for key, value in dumped.items() if value or key not in ("namespaces", "policies")}


# --- parsing -----------------------------------------------------------------------------------------


class StrictLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a key repeated in one mapping, which PyYAML would silently overwrite."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue  # complex keys are refused by the base class; merge keys may legitimately repeat
            key = self.construct_object(key_node)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str, *, source: str) -> object:
    try:
        return yaml.load(text, Loader=StrictLoader)  # StrictLoader is a SafeLoader: plain data only
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{source}:{mark.line + 1}" if mark else source
        raise ValidationError(where, yaml_message(error, mark)) from None
    except yaml.YAMLError as error:
        raise ValidationError(source, " ".join(str(error).split())) from None
    except RecursionError:
        raise ValidationError(source, "the YAML is nested too deeply") from None
    except Exception as error:
        # PyYAML raises plain ValueError, KeyError, AttributeError... for explicit tags like `!!int abc`.
        raise ValidationError(source, f"bad YAML value: {error}") from None


def yaml_message(error: yaml.MarkedYAMLError, mark: yaml.Mark | None) -> str:
    parts = [part for part in (error.context, error.problem) if part]
    column = f" (column {mark.column + 1})" if mark else ""
    return "; ".join(parts) + column if parts else " ".join(str(error).split())


def check_document(data: object, source: str) -> Mapping[Any, Any]:
    if not isinstance(data, Mapping):
        found = "an empty document" if data is None else show(data)
        raise ValidationError(source, f"want a mapping with keys {', '.join(SECTIONS)}, got {found}")
    for key in data:
        if key not in SECTIONS:
            raise ValidationError(str(key), f"unknown top-level key {show(key)} (allowed: {', '.join(SECTIONS)})")
    return data


def entries(value: object, path: str) -> Iterator[tuple[str, object]]:
    """The items of a list-valued section, each with its path; an absent or empty section has none."""
    if value is None:
        return
    if not isinstance(value, list | tuple):
        raise ValidationError(path, f"want a list, got {show(value)}")
    for index, item in enumerate(value):
        yield f"{path}[{index}]", item


class Entry:
    """One mapping of the file, checked against its shape, with typed getters that report the field's path."""

    def __init__(self, value: object, path: str, shape: Shape) -> None:
        self.path = path
        if not isinstance(value, Mapping):
            raise ValidationError(path, f"want a mapping with keys {', '.join(shape.allowed)}, got {show(value)}")
        self.data: Mapping[Any, Any] = value
        for key in value:
            if key not in shape.allowed:
                raise ValidationError(self.at(key), f"unknown key {show(key)} (allowed: {', '.join(shape.allowed)})")
        for key in shape.required:
            if key not in value:
                raise ValidationError(self.at(key), f"missing required key {key!r}")

    def at(self, key: object) -> str:
        return f"{self.path}.{key}"

    def has(self, key: str) -> bool:
        return key in self.data

    def text(self, key: str) -> str:
        value = self.data.get(key)
        if not isinstance(value, str):
            raise ValidationError(self.at(key), f"want a string, got {show(value)}")
        return value

    def integer(self, key: str) -> int:
        value = self.data.get(key)
        # bool is an int subclass, but `vni: yes` is a mistake, not VNI 1.
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValidationError(self.at(key), f"want an integer, got {show(value)}")
        return value

    def optional_text(self, key: str) -> str | None:
        return None if self.data.get(key) is None else self.text(key)

    def optional_integer(self, key: str) -> int | None:
        return None if self.data.get(key) is None else self.integer(key)


# --- sections ----------------------------------------------------------------------------------------


def add_node(model: Model, entry: Entry) -> None:
    model.add_node(
        entry.text("name"),
        tunnel_ip=entry.text("tunnel_ip"),
        uplink=entry.optional_text("uplink"),
        datapath_id=datapath_id(entry),
        path=entry.path,
    )


def datapath_id(entry: Entry) -> int | None:
    value = entry.data.get("datapath_id")
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if isinstance(value, str) and value.lower().startswith("0x"):
        with contextlib.suppress(ValueError):  # a bad hex string is reported below
            return int(value, 16)
    raise ValidationError(entry.at("datapath_id"), f"want an integer or a hex string like '0x1a', got {show(value)}")


def add_link(model: Model, entry: Entry) -> None:
    model.add_link(entry.text("a"), entry.text("a_port"), entry.text("b"), entry.text("b_port"), path=entry.path)


def add_tenant(model: Model, entry: Entry) -> None:
    name = entry.text("name")
    model.add_tenant(name, path=entry.path)
    for path, item in entries(entry.data.get("networks"), entry.at("networks")):
        add_network(model, name, Entry(item, path, NETWORK))


def add_network(model: Model, tenant: str, entry: Entry) -> None:
    name = entry.text("name")
    encap = entry.text("encap")
    if encap not in SEGMENT_KEY:
        raise ValidationError(entry.at("encap"), f"{encap!r} is not one of {', '.join(SEGMENT_KEY)}")
    segment_key = SEGMENT_KEY[encap]
    for other in SEGMENT_KEY.values():
        if other != segment_key and entry.has(other):
            raise ValidationError(entry.at(other), f"a {encap} network takes {segment_key!r}, not {other!r}")
    if not entry.has(segment_key):
        raise ValidationError(entry.at(segment_key), f"missing required key {segment_key!r} for a {encap} network")
    model.add_network(
        tenant,
        name,
        encap=encap,
        segment=entry.integer(segment_key),
        subnet=entry.text("subnet"),
        gateway=entry.optional_text("gateway"),
        mtu=entry.optional_integer("mtu"),
        path=entry.path,
    )


@dataclass(frozen=True)
class Attachment:
    """A QoS profile to attach once endpoints exist; `path` points at the target in the file."""

    path: str
    profile: str
    target: str


def add_qos(model: Model, entry: Entry) -> list[Attachment]:
    name = entry.text("name")
    targets = qos_targets(entry)
    model.add_qos(
        name,
        rate_kbps=entry.integer("rate_kbps"),
        burst_kb=entry.optional_integer("burst_kb"),
        direction=entry.optional_text("direction") or "both",
        path=entry.path,
    )
    return [Attachment(path, name, target) for path, target in targets]


def qos_targets(entry: Entry) -> list[tuple[str, str]]:
    value, path = entry.data.get("applies_to"), entry.at("applies_to")
    if value is None:
        return []
    if isinstance(value, str):
        return [(path, value)]
    want = "want a network key (TENANT/NAME), an endpoint id, or a list of them"
    if not isinstance(value, list | tuple):
        raise ValidationError(path, f"{want}, got {show(value)}")
    for index, target in enumerate(value):
        if not isinstance(target, str):
            raise ValidationError(f"{path}[{index}]", f"{want}, got {show(target)}")
    return [(f"{path}[{index}]", target) for index, target in enumerate(value)]


def attach_qos(model: Model, attachment: Attachment) -> None:
    # Checked here, not left to the model, so the path names the list item and a second profile for the
    # same target is an error rather than a silent replacement.
    target = attachment.target
    if target not in model.networks and target not in model.endpoints:
        raise ValidationError(attachment.path, f"{target!r} is neither a network (TENANT/NAME) nor an endpoint")
    if target in model.qos_attachments:
        other = model.qos_attachments[target].profile
        raise ValidationError(attachment.path, f"{target!r} already has QoS profile {other!r}", conflict=True)
    model.attach_qos(attachment.profile, target, path=attachment.path)


def add_endpoint(model: Model, entry: Entry) -> None:
    model.add_endpoint(
        entry.text("id"),
        network=entry.text("network"),
        node=entry.text("node"),
        ip=entry.optional_text("ip"),
        mac=endpoint_mac(entry),
        port_name=entry.optional_text("port_name"),
        namespace=entry.optional_text("namespace"),
        labels=entry.data.get("labels"),
        ports=entry.data.get("ports"),
        path=entry.path,
    )


def endpoint_mac(entry: Entry) -> str | None:
    value = entry.data.get("mac")
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1 reads an unquoted 12:34:56:78:9a:bc-like value as a base-60 number.
        raise ValidationError(entry.at("mac"), f"want a string, got the number {value}: quote MAC addresses")
    return entry.optional_text("mac")


# --- dumping -----------------------------------------------------------------------------------------


def dump_node(node: Node) -> dict[str, Any]:
    out: dict[str, Any] = {"name": node.name, "tunnel_ip": str(node.tunnel_ip)}
    if node.uplink is not None:
        out["uplink"] = node.uplink
    if node.datapath_id != default_datapath_id(node.name):
        out["datapath_id"] = f"{node.datapath_id:#x}"
    return out


def dump_network(network: Network) -> dict[str, Any]:
    return {
        "name": network.name,
        "encap": network.encap.value,
        SEGMENT_KEY[network.encap.value]: network.segment,
        "subnet": str(network.subnet),
        "gateway": str(network.gateway),
        "mtu": network.mtu,
    }


def dump_qos(model: Model, name: str) -> dict[str, Any]:
    profile = model.qos_profiles[name]
    out: dict[str, Any] = {"name": name, "rate_kbps": profile.rate_kbps, "burst_kb": profile.burst_kb}
    out["direction"] = profile.direction
    targets = [a.target for a in model.qos_attachments.values() if a.profile == name]
    if targets:
        out["applies_to"] = targets[0] if len(targets) == 1 else targets
    return out


def dump_endpoint(endpoint: Endpoint) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": endpoint.id,
        "network": endpoint.network,
        "node": endpoint.node,
        "ip": str(endpoint.ip),
        "mac": endpoint.mac_text,
    }
    if endpoint.port_name != default_port_name(endpoint.id):
        out["port_name"] = endpoint.port_name
    if endpoint.namespace is not None:
        out["namespace"] = endpoint.namespace
    if endpoint.labels:
        out["labels"] = endpoint.label_map
    if endpoint.ports:
        out["ports"] = ports_json(endpoint.ports)
    return out
