"""NetworkPolicy semantics as a pure resolver: what one policy selects, isolates and allows.

Source: the Kubernetes documentation "Network Policies" and the API reference of NetworkPolicy:

- a policy selects the pods of its own namespace its `podSelector` matches (`{}`: all of them);
- it isolates them for ingress when `policyTypes` holds Ingress, for egress when it holds Egress (defaulted
  by `topology.netpol_spec`: Ingress always, Egress when there are egress rules);
- a rule allows traffic from (ingress) or to (egress) any of its peers on any of its ports; no peers is
  every peer, no ports every port and protocol;
- a peer's `podSelector` alone picks pods of the policy's namespace; `namespaceSelector` alone every pod of
  the namespaces it matches; both, the pods matching the one in the namespaces matching the other; `ipBlock`
  the addresses of `cidr` outside every `except`;
- a port is numeric (with `endPort` a range) or named; a named port resolves on the destination pod: the
  selected pod for ingress, the peer for egress. It matches no address outside the cluster.

Tenet's rule on top: the tenant boundary is absolute. A policy lives in a namespace of one tenant, and its
selectors see only that tenant's namespaces and endpoints; a peer in another tenant never matches (traffic
between tenants is dropped before any policy). Endpoints without a namespace are selected by no policy and
matched by no selector, only by `ipBlock` (by address) and by rules without peers.

The output is shaped for conjunctive flows: a rule is a few `Clause`s, each "local endpoint in L and peer in
P (endpoints or CIDRs) and port in Q", so a compiler emits about |L| + |P| + |Q| flows per clause.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, collapse_addresses

from topology.model import Endpoint, Model
from topology.netpol_spec import NetworkPolicy, Peer, PolicyPort, Rule

INGRESS, EGRESS = "ingress", "egress"
ANY_PORT = None  # `Clause.ports` for a rule without ports: every protocol and port


@dataclass(frozen=True, slots=True, order=True)
class PortMatch:
    """A transport match: `protocol` (TCP, UDP, SCTP) and the destination ports p with p & mask == port;
    the default (port 0, mask 0) is every port of the protocol, as a flow's wildcarded `tp_dst`."""

    protocol: str
    port: int = 0
    mask: int = 0

    @property
    def every_port(self) -> bool:
        return self.mask == 0

    def matches(self, protocol: str, port: int) -> bool:
        return protocol == self.protocol and port & self.mask == self.port


@dataclass(frozen=True, slots=True)
class Clause:
    """Traffic between a `local` endpoint (the selected side: the destination for ingress, the source for
    egress) and a peer is allowed when the peer is one of `peers` (endpoint ids), in one of `cidrs`, or
    anything at all (`any_peer`), and its protocol and destination port match one of `ports` (None: any)."""

    local: frozenset[str]
    peers: frozenset[str]
    cidrs: tuple[IPv4Network, ...]
    any_peer: bool
    ports: tuple[PortMatch, ...] | None


@dataclass(frozen=True, slots=True)
class ResolvedRule:
    policy: str  # "namespace/name"
    direction: str  # INGRESS or EGRESS
    index: int  # the rule's index in spec.ingress or spec.egress
    clauses: tuple[Clause, ...]
    peers: frozenset[str] = frozenset()  # the endpoints its selector peers match (what `resolve_delta` patches)


@dataclass(frozen=True, slots=True)
class ResolvedPolicy:
    key: str
    tenant: str
    selected: frozenset[str]  # endpoint ids
    isolates_ingress: bool
    isolates_egress: bool
    rules: tuple[ResolvedRule, ...]  # ingress rules (if it isolates ingress), then egress rules


def cidr_minus(cidr: IPv4Network, excepts: Iterable[IPv4Network]) -> list[IPv4Network]:
    """`cidr` without every address of `excepts`, as the fewest disjoint prefixes, sorted.

    >>> [str(n) for n in cidr_minus(IPv4Network("10.0.0.0/24"), [IPv4Network("10.0.0.0/25")])]
    ['10.0.0.128/25']
    """
    remaining = [cidr]
    for exclude in excepts:
        kept: list[IPv4Network] = []
        for net in remaining:
            if not net.overlaps(exclude):
                kept.append(net)
            elif exclude.supernet_of(net):
                continue
            else:  # exclude lies inside net
                kept.extend(net.address_exclude(exclude))
        remaining = kept
    return sorted(collapse_addresses(remaining))


def port_masks(first: int, last: int) -> list[tuple[int, int]]:
    """The port range first..last (inclusive, 0..65535) as the fewest (value, mask) pairs, in order:
    p is in the range exactly when p & mask == value for one pair.

    >>> port_masks(80, 81)
    [(80, 65534)]
    """
    if not 0 <= first <= last <= 0xFFFF:
        raise ValueError(f"port range {first}..{last} is not within 0..65535")
    pairs: list[tuple[int, int]] = []
    start = first
    while start <= last:
        size = start & -start if start else 0x10000  # the largest aligned block starting here
        while start + size - 1 > last:
            size //= 2
        pairs.append((start, 0xFFFF & ~(size - 1)))
        start += size
    return pairs


def policy_tenant(model: Model, policy: NetworkPolicy) -> str:
    return model.namespaces[policy.namespace].tenant


Spaces = Mapping[str | None, Mapping[str, Endpoint]]  # endpoints by namespace (None: without one)


def in_namespaces(model: Model, spaces: Spaces | None, names: Iterable[str]) -> Iterator[Endpoint]:
    """The endpoints of the namespaces `names`: from the index `spaces` when given, else by a full scan."""
    if spaces is not None:
        for name in names:
            yield from spaces.get(name, {}).values()
        return
    wanted = set(names)
    yield from (e for e in model.endpoints.values() if e.namespace in wanted)


def selects(policy: NetworkPolicy, endpoint: Endpoint) -> bool:
    """Whether the policy's podSelector selects the endpoint (one of its own namespace)."""
    return endpoint.namespace == policy.namespace and policy.pod_selector.matches(endpoint.label_map)


def selected_endpoints(model: Model, policy: NetworkPolicy, spaces: Spaces | None = None) -> frozenset[str]:
    """The endpoints of the policy's namespace its podSelector matches."""
    return frozenset(e.id for e in in_namespaces(model, spaces, [policy.namespace]) if selects(policy, e))


def peer_endpoints(model: Model, policy: NetworkPolicy, peer: Peer, spaces: Spaces | None = None) -> frozenset[str]:
    """The endpoints a selector peer matches, within the policy's tenant only; an ipBlock peer: none."""
    if peer.ip_block is not None:
        return frozenset()
    tenant = policy_tenant(model, policy)
    index = spaces
    if peer.namespace_selector is None:
        names = {policy.namespace}
    else:
        names = {
            n.name
            for n in model.namespaces.values()
            if n.tenant == tenant and peer.namespace_selector.matches(n.label_map)
        }
    return frozenset(
        e.id
        for e in in_namespaces(model, index, sorted(names))
        if e.tenant == tenant and (peer.pod_selector is None or peer.pod_selector.matches(e.label_map))
    )


def peer_matches_endpoint(model: Model, policy: NetworkPolicy, peer: Peer, endpoint: Endpoint) -> bool:
    """Whether a selector peer matches one endpoint (as `peer_endpoints` would include it)."""
    if peer.ip_block is not None or endpoint.namespace is None:
        return False
    tenant = policy_tenant(model, policy)
    if endpoint.tenant != tenant:
        return False
    if peer.namespace_selector is None:
        if endpoint.namespace != policy.namespace:
            return False
    else:
        space = model.namespaces[endpoint.namespace]
        if space.tenant != tenant or not peer.namespace_selector.matches(space.label_map):
            return False
    return peer.pod_selector is None or peer.pod_selector.matches(endpoint.label_map)


def may_concern(model: Model, policy: NetworkPolicy, endpoint: Endpoint) -> bool:
    """Whether the policy, resolved now, may select or name `endpoint` (conservative: True when unsure).

    It selects it, a selector peer matches it, or a rule with named ports may resolve them on it as an
    egress destination (a rule without peers or with an ipBlock). What the policy allows by address alone
    (CIDRs) does not depend on which endpoints exist.
    """
    if endpoint.tenant != policy_tenant(model, policy):
        return False
    if endpoint.namespace == policy.namespace and policy.pod_selector.matches(endpoint.label_map):
        return True
    for rule in (*policy.ingress, *policy.egress):
        named = any(isinstance(p.port, str) for p in rule.ports)
        if named and (not rule.peers or any(p.ip_block is not None for p in rule.peers)):
            return True
        if any(peer_matches_endpoint(model, policy, peer, endpoint) for peer in rule.peers):
            return True
    return False


def peer_cidrs(peer: Peer) -> list[IPv4Network]:
    """An ipBlock peer's addresses as disjoint IPv4 prefixes (an IPv6 block holds none of Tenet's)."""
    block = peer.ip_block
    if block is None or not isinstance(block.cidr, IPv4Network):
        return []
    return cidr_minus(block.cidr, [e for e in block.excepts if isinstance(e, IPv4Network)])


def numeric_matches(ports: Iterable[PolicyPort]) -> set[PortMatch]:
    """The rule's ports that need no pod to resolve: whole protocols, single ports and ranges."""
    found: set[PortMatch] = set()
    for port in ports:
        if port.port is None:
            found.add(PortMatch(port.protocol))
        elif isinstance(port.port, int):
            last = port.end_port if port.end_port is not None else port.port
            found.update(PortMatch(port.protocol, value, mask) for value, mask in port_masks(port.port, last))
    return found


def named_matches(ports: Iterable[PolicyPort], endpoint: Endpoint) -> set[PortMatch]:
    """The rule's named ports as they resolve on `endpoint`: a container port of that name and protocol."""
    found: set[PortMatch] = set()
    for port in ports:
        if isinstance(port.port, str):
            for container in endpoint.ports:
                if container.name == port.port and container.protocol == port.protocol:
                    found.add(PortMatch(port.protocol, container.port, 0xFFFF))
    return found


def in_cidrs(ip: IPv4Address, cidrs: Iterable[IPv4Network]) -> bool:
    return any(ip in cidr for cidr in cidrs)


def resolve_rule(
    model: Model,
    policy: NetworkPolicy,
    direction: str,
    index: int,
    rule: Rule,
    *,
    selected: frozenset[str] | None = None,
    peers: frozenset[str] | None = None,
    spaces: Spaces | None = None,
) -> ResolvedRule:
    """One rule's clauses against the model as it is now. `selected` (the policy's selected endpoints) and
    `peers` (what the rule's selector peers match) are computed when not given; `spaces` indexes endpoints
    by namespace. An egress rule with named ports scans every endpoint of the tenant (its destinations)."""
    if selected is None:
        selected = selected_endpoints(model, policy, spaces)
    tenant = policy_tenant(model, policy)
    any_peer = not rule.peers
    if peers is None:
        peers = frozenset().union(*(peer_endpoints(model, policy, p, spaces) for p in rule.peers))
    cidrs = tuple(sorted(collapse_addresses(c for p in rule.peers for c in peer_cidrs(p))))
    if cidrs and cidrs[0].prefixlen == 0:  # 0.0.0.0/0 (collapsed, it is the only one): every address, any peer
        any_peer, cidrs = True, ()
    named = any(isinstance(p.port, str) for p in rule.ports)
    numeric = sorted(numeric_matches(rule.ports))
    if not rule.ports:
        clauses = [Clause(selected, peers, cidrs, any_peer, ANY_PORT)]
    elif not named:
        clauses = [Clause(selected, peers, cidrs, any_peer, tuple(numeric))]
    elif direction == INGRESS:  # named ports resolve on the selected (destination) endpoint
        groups: dict[tuple[PortMatch, ...], set[str]] = {}
        for endpoint_id in selected:
            found = tuple(sorted(set(numeric) | named_matches(rule.ports, model.endpoints[endpoint_id])))
            groups.setdefault(found, set()).add(endpoint_id)
        clauses = [Clause(frozenset(g), peers, cidrs, any_peer, ports) for ports, g in sorted(groups.items()) if ports]
    else:  # egress: named ports resolve on the peer, which must then be an endpoint of the tenant
        destinations = {
            e.id
            for e in model.endpoints.values()
            if e.tenant == tenant and (any_peer or e.id in peers or in_cidrs(e.ip, cidrs))
        }
        groups = {}
        for endpoint_id in destinations:
            found = tuple(sorted(named_matches(rule.ports, model.endpoints[endpoint_id]) - set(numeric)))
            if found:
                groups.setdefault(found, set()).add(endpoint_id)
        clauses = [Clause(selected, peers, cidrs, any_peer, tuple(numeric))] if numeric else []
        clauses += [Clause(selected, frozenset(g), (), False, ports) for ports, g in sorted(groups.items())]
    return ResolvedRule(policy.key, direction, index, tuple(c for c in clauses if c.local), peers)


def _spec_rules(policy: NetworkPolicy) -> list[tuple[str, int, Rule]]:
    """(direction, index, rule) of the rules `resolve` keeps: those of the directions the policy isolates."""
    found = [(INGRESS, i, r) for i, r in enumerate(policy.ingress)] if policy.isolates_ingress else []
    return found + ([(EGRESS, i, r) for i, r in enumerate(policy.egress)] if policy.isolates_egress else [])


def resolve(model: Model, policy: NetworkPolicy, spaces: Spaces | None = None) -> ResolvedPolicy:
    """The policy against the model as it is now: selected endpoints, isolation, and every rule's clauses.

    Rules of a direction the policy does not isolate are left out: they allow nothing the absence of
    isolation does not already allow. `spaces`: endpoints by namespace, so only those in play are read.
    """
    selected = selected_endpoints(model, policy, spaces)
    rules = tuple(
        resolve_rule(model, policy, d, i, r, selected=selected, spaces=spaces) for d, i, r in _spec_rules(policy)
    )
    return ResolvedPolicy(
        policy.key, policy_tenant(model, policy), selected, policy.isolates_ingress, policy.isolates_egress, rules
    )


def resolve_delta(
    model: Model, policy: NetworkPolicy, old: ResolvedPolicy, changed: Iterable[str], spaces: Spaces | None = None
) -> ResolvedPolicy:
    """`resolve(model, policy)` when only the endpoints `changed` (ids: added, removed, relabelled, moved, or
    of a relabelled namespace) differ from the model `old` was resolved against, for the same policy.
    Returns `old` itself when the changed endpoints are neither selected nor named, before or after.

    Costs what the changed endpoints' memberships and the rebuilt clauses cost, not a scan of the model;
    an egress rule with named ports is resolved again in full (its destinations are every endpoint)."""
    changed = set(changed)
    present = [model.endpoints[e] for e in changed if e in model.endpoints]
    now = {e.id for e in present if selects(policy, e)}
    selected = old.selected
    if any((e in selected) != (e in now) for e in changed):
        selected = (selected - changed) | now
    rules = []
    for (direction, index, rule), before in zip(_spec_rules(policy), old.rules, strict=True):
        named = any(isinstance(p.port, str) for p in rule.ports)
        if direction == EGRESS and named:
            rules.append(resolve_rule(model, policy, direction, index, rule, selected=selected, spaces=spaces))
            continue
        matched = {e.id for e in present if any(peer_matches_endpoint(model, policy, p, e) for p in rule.peers)}
        peers = before.peers
        if any((e in peers) != (e in matched) for e in changed):
            peers = (peers - changed) | matched
        if selected is old.selected and peers is before.peers and not any(e in selected or e in peers for e in changed):
            rules.append(before)
        elif not named and before.clauses:  # one clause, whose addresses and ports no endpoint changes
            first = before.clauses[0]
            clauses = (Clause(selected, peers, first.cidrs, first.any_peer, first.ports),) if selected else ()
            rules.append(ResolvedRule(policy.key, direction, index, clauses, peers))
        else:
            rules.append(resolve_rule(model, policy, direction, index, rule, selected=selected, peers=peers))
    if selected is old.selected and not changed & selected and all(map(operator.is_, rules, old.rules)):
        return old  # nothing it selects or names changed: the very same object, so callers skip it
    return ResolvedPolicy(old.key, old.tenant, selected, policy.isolates_ingress, policy.isolates_egress, tuple(rules))


def clause_allows(
    model: Model, clause: Clause, local: str, peer: Endpoint | IPv4Address, protocol: str, port: int
) -> bool:
    """Whether one clause allows this connection; `peer` an endpoint of the tenant or an outside address."""
    if local not in clause.local:
        return False
    ip = peer.ip if isinstance(peer, Endpoint) else peer
    matched = clause.any_peer or in_cidrs(ip, clause.cidrs)
    matched = matched or (isinstance(peer, Endpoint) and peer.id in clause.peers)
    if not matched:
        return False
    return clause.ports is None or any(m.matches(protocol, port) for m in clause.ports)


def allowed(model: Model, src: str, dst: str, protocol: str, port: int) -> bool:
    """Whether a new connection from endpoint `src` to endpoint `dst` (protocol TCP/UDP/SCTP, destination
    port) is allowed by the model's policies: never across tenants; to itself always; otherwise the
    destination's ingress and the source's egress must each be unisolated or allowed by some rule."""
    source, target = model.endpoints[src], model.endpoints[dst]
    if source.tenant != target.tenant:
        return False
    if src == dst:
        return True
    resolved = [resolve(model, p) for p in model.policies.values()]
    verdicts = []
    for direction, local, peer in ((INGRESS, dst, source), (EGRESS, src, target)):
        isolating = [r for r in resolved if local in r.selected and getattr(r, f"isolates_{direction}")]
        clauses = [c for r in isolating for rule in r.rules if rule.direction == direction for c in rule.clauses]
        verdicts.append(not isolating or any(clause_allows(model, c, local, peer, protocol, port) for c in clauses))
    return all(verdicts)
