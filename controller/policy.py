"""What the cluster admin allows tenants: segment pools, per-tenant quotas, and infrastructure port names.

    policy = Policy(vlan_pool=SegmentPool.parse("100-199"), vni_pool=SegmentPool.parse("5000-9999"),
                    quota=Quota(networks=10, endpoints=500))

A tenant token may only pick a VLAN id the fabric trunks for tenants and a VNI in the tenants' range, or omit
it and get the lowest free one; the admin token may use any valid segment. Quotas limit how many networks
and endpoints a tenant may hold when created by a tenant or node token; `None` is no limit.

Names of infrastructure ports are reserved on every node: `br-int`, `br-phy`, every name starting with
`tenet-` (the tunnel port `tenet-tun`, the gateway port `tenet-gw0`), the node's uplink and its fabric
link ports. An endpoint's port may never take one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from topology.errors import ValidationError
from topology.model import RESERVED_NAMES, RESERVED_PREFIX, VLAN_RANGE, VNI_RANGE, Model


@dataclass(frozen=True)
class SegmentPool:
    """Inclusive ranges of segment ids (VLAN ids or VNIs), e.g. "100-199,300"."""

    ranges: tuple[tuple[int, int], ...]
    text: str = field(default="", compare=False)

    @classmethod
    def parse(cls, text: str, *, what: str, bounds: tuple[int, int]) -> SegmentPool:
        """Parse "LOW-HIGH[,LOW-HIGH|,ID]..."; raises ValidationError naming `what` on a bad or out-of-bounds part."""
        ranges = []
        for part in (p.strip() for p in text.split(",")):
            low_text, _, high_text = part.partition("-")
            try:
                low = int(low_text)
                high = int(high_text) if high_text else low
            except ValueError:
                raise ValidationError(what, f"{part!r} is not a range LOW-HIGH or a single id") from None
            if not bounds[0] <= low <= high <= bounds[1]:
                raise ValidationError(what, f"{part!r} is not a range within {bounds[0]}..{bounds[1]}")
            ranges.append((low, high))
        return cls(tuple(sorted(ranges)), text=",".join(f"{a}-{b}" if a != b else str(a) for a, b in sorted(ranges)))

    def __contains__(self, value: object) -> bool:
        return isinstance(value, int) and any(low <= value <= high for low, high in self.ranges)

    def __iter__(self) -> Iterator[int]:
        for low, high in self.ranges:
            yield from range(low, high + 1)

    def lowest_free(self, used: Iterable[int]) -> int | None:
        taken = set(used)
        return next((value for value in self if value not in taken), None)


FULL_VLAN = SegmentPool(((VLAN_RANGE[0], VLAN_RANGE[1]),), text=f"{VLAN_RANGE[0]}-{VLAN_RANGE[1]}")
FULL_VNI = SegmentPool(((VNI_RANGE[0], VNI_RANGE[1]),), text=f"{VNI_RANGE[0]}-{VNI_RANGE[1]}")


@dataclass(frozen=True)
class Quota:
    """How many networks and endpoints a tenant may hold; None: no limit."""

    networks: int | None = None
    endpoints: int | None = None

    def json(self) -> dict[str, int | None]:
        return {"networks": self.networks, "endpoints": self.endpoints}

    @classmethod
    def from_json(cls, data: object, *, path: str) -> Quota:
        """`{"networks": N, "endpoints": M}`, each a non-negative integer or null; raises ValidationError."""
        if not isinstance(data, dict):
            raise ValidationError(path, "want an object {networks, endpoints}")
        unknown = sorted(set(data) - {"networks", "endpoints"})
        if unknown:
            raise ValidationError(f"{path}.{unknown[0]}", "unknown field (known: endpoints, networks)")
        values = {}
        for name in ("networks", "endpoints"):
            value = data.get(name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise ValidationError(f"{path}.{name}", f"want a non-negative integer or null, got {value!r}")
            values[name] = value
        return cls(**values)


@dataclass(frozen=True)
class Policy:
    vlan_pool: SegmentPool = FULL_VLAN
    vni_pool: SegmentPool = FULL_VNI
    quota: Quota = Quota()  # the default of every tenant without its own

    def pool(self, encap: str) -> SegmentPool:
        return self.vlan_pool if encap == "vlan" else self.vni_pool


def reserved_port(model: Model, node: str, name: str) -> str | None:
    """Why `name` may not be an endpoint's port on `node` (an infrastructure port's name), or None."""
    if name.startswith(RESERVED_PREFIX):
        return f"names starting with {RESERVED_PREFIX!r} are reserved for infrastructure ports"
    if name in RESERVED_NAMES:
        return f"{name!r} is an infrastructure bridge"
    found = model.nodes.get(node)
    if found is not None and name == found.uplink:
        return f"{name!r} is the uplink of node {node!r}"
    if found is not None and name in model.link_ports(node):
        return f"{name!r} is a fabric link port of node {node!r}"
    return None
