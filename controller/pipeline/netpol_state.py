"""What `netpol_compile.PolicyCompiler` keeps: each rule's clause sets with the matches they put on each
node, and each node's clause flows with the conjunctions on them, its isolation flows and its rules' allow
flows, from which its policy sections are built again when they changed."""

from __future__ import annotations

from functools import cache
from operator import attrgetter, itemgetter

from controller.pipeline.cookies import FEATURE_SHIFT, OBJECT_MASK, Feature
from controller.pipeline.features.netpol import (
    NODE_COOKIE,
    P_CLAUSE,
    allow_flow,
    flow_order,
    stage_flows,
)
from controller.pipeline.ir import Conjunction, Flow, Match
from controller.pipeline.state import Section
from topology.labels import Selector
from topology.model import Endpoint, Model
from topology.netpol import EGRESS, INGRESS, Clause, ResolvedPolicy, ResolvedRule
from topology.netpol_spec import NetworkPolicy

Key = tuple[str, Match]  # (table, match): one clause flow
ANY = ("any IP",)  # the peer key of a clause set without peers
MANY = 16  # conjunctions on a clause flow from which its Flow is kept between builds of its section


class ClauseSet:
    """One clause set of one rule: its peer and port matches, and its local endpoints' matches by node."""

    __slots__ = ("clause", "conjunctions", "nodes", "peers", "ports")

    def __init__(self, conj: int, clause: Clause) -> None:
        self.clause = clause
        # its flows' conjunctions (clause 1: locals, 2: peers, 3: ports), made once: a patch keeps their count
        n = 3 if clause.ports is not None else 2
        self.conjunctions = tuple(Conjunction(conj, k, n) for k in range(1, n + 1))
        self.peers: dict[object, tuple[int, Match]] = {}  # endpoint id, CIDR or ANY -> (section cookie, match)
        self.ports: tuple[Match, ...] = ()
        self.nodes: dict[str, dict[str, Match]] = {}  # node -> local endpoint id -> clause-1 match


class PolicyNode:
    """One node's policy flows: clause flows with the conjunctions on them, isolation, rules present."""

    __slots__ = ("built", "dirty", "entries", "isolation", "owners", "rules", "sections")

    def __init__(self) -> None:
        # clause flow -> (section cookie -> uses, conjunction -> uses): an endpoint peer and a /32 CIDR of the
        # same address are one flow; within one change a local endpoint's match may pass to another one (an
        # address or port freed and taken) before the first is taken off, so the section is counted too.
        self.entries: dict[Key, tuple[dict[int, int], dict[Conjunction, int]]] = {}
        self.sections: dict[int, set[Key]] = {}  # section cookie -> its clause flows
        self.isolation: dict[str, dict[Key, Flow]] = {}  # local endpoint id -> its isolation flows
        self.owners: dict[int, str] = {}  # NETPOL_LOCAL cookie -> the isolated endpoint it is of
        self.rules: dict[int, set[int]] = {}  # rule -> its conjunction ids with flows here
        self.dirty: set[int] = set()
        # (clause flow, section cookie) -> (its `flow_order`, its Flow) as last built, for the flows carrying
        # `MANY` conjunctions or more (a port's flow may carry a clause of every rule on the node), while its
        # sections and conjunctions stay: a section built again sorts and hashes those only when they changed
        self.built: dict[tuple[Key, int], tuple[tuple, Flow]] = {}

    def add(self, key: Key, section: int, conjunction: Conjunction) -> None:
        entry = self.entries.get(key)
        if entry is None:
            entry = self.entries[key] = ({}, {})
        cookies, conjunctions = entry
        uses = conjunctions.get(conjunction, 0)  # a conjunction hashes its fields each time: once here
        if section not in cookies:
            self.sections.setdefault(section, set()).add(key)
        elif uses:  # one use more of a conjunction already there: the flows stay
            cookies[section] += 1
            conjunctions[conjunction] = uses + 1
            self.dirty.add(section)
            return
        self.forget(key, cookies)
        cookies[section] = cookies.get(section, 0) + 1
        conjunctions[conjunction] = uses + 1
        self.dirty.add(section)

    def remove(self, key: Key, section: int, conjunction: Conjunction) -> None:
        cookies, conjunctions = self.entries[key]
        count, uses = cookies[section], conjunctions[conjunction]
        if count == 1 or uses == 1:
            self.forget(key, cookies)
        if count == 1:
            del cookies[section]
            keys = self.sections[section]
            keys.discard(key)
            if not keys:
                del self.sections[section]
        else:
            cookies[section] = count - 1
        if uses == 1:
            del conjunctions[conjunction]
            if not conjunctions:
                del self.entries[key]
        else:
            conjunctions[conjunction] = uses - 1
        self.dirty.add(section)

    def forget(self, key: Key, cookies: dict[int, int]) -> None:
        """Drop the flows built for `key`: its sections or conjunctions are about to change."""
        if self.built:
            for c in cookies:
                self.built.pop((key, c), None)

    def empty(self) -> bool:
        return not (self.entries or self.isolation or self.rules)

    def section(self, c: int) -> Section | None:
        """The section `c` as it is now (None: nothing left in it), its flows in `flow_order`."""
        owner = self.owners.get(c)
        keys = self.sections.get(c, ())
        if len(keys) == 1 and c >> FEATURE_SHIFT & 0xFF == Feature.NETPOL_PEER:
            # one clause flow, the section a change rebuilds most (a peer's, on each node): nothing to sort
            for key in keys:
                used = self.entries[key][1]
                if len(used) < MANY:
                    return Section(c, (Flow(key[0], P_CLAUSE, key[1], conjunctions(used), cookie=c),))
                return Section(c, (self.clause_flow(key, c)[1],))
        flows: list[tuple[tuple, Flow]] = []  # (flow_order, flow)
        if c == NODE_COOKIE and self.isolation:
            flows += stages()
        if owner is not None:
            flows += [(flow_order(f), f) for f in self.isolation[owner].values()]
        flows += [self.clause_flow(key, c) for key in keys]
        number = c & OBJECT_MASK
        if c >> FEATURE_SHIFT & 0xFF == Feature.NETPOL_RULE and number in self.rules:
            direction = EGRESS if number >> 8 & 1 else INGRESS
            allow = [allow_flow(direction, conj, number) for conj in sorted(self.rules[number])]
            flows += [(flow_order(f), f) for f in allow]
        if not flows or (c == NODE_COOKIE and not self.isolation):
            return None
        if len(flows) > 1:
            flows.sort(key=itemgetter(0))
        return Section(c, tuple(f for _order, f in flows))

    def clause_flow(self, key: Key, c: int) -> tuple[tuple, Flow]:
        """The clause flow `key` of section `c` with its `flow_order`, as kept (`built`) or built now."""
        flow = self.built.get((key, c))
        if flow is None:
            used = self.entries[key][1]
            new = Flow(key[0], P_CLAUSE, key[1], conjunctions(used), cookie=c)
            flow = (flow_order(new), new)
            if len(used) >= MANY:
                self.built[(key, c)] = flow
        return flow


@cache
def stages() -> tuple[tuple[tuple, Flow], ...]:
    """The stage flows of a node with an isolated endpoint with their `flow_order` (immutable: built once,
    shared by every node)."""
    return tuple((flow_order(f), f) for f in (*stage_flows(EGRESS), *stage_flows(INGRESS)))


conjunction_order = attrgetter("conj_id", "clause")  # (id, clause) of a Conjunction, without a Python call


def conjunctions(used: dict[Conjunction, int]) -> tuple[Conjunction, ...]:
    """A clause flow's conjunctions in their order (by id, then clause)."""
    return tuple(used) if len(used) == 1 else tuple(sorted(used, key=conjunction_order))


def names_any(policy: NetworkPolicy) -> bool:
    """Whether the policy may name an endpoint of any namespace of its tenant (or of none): a namespaceSelector
    peer, or an egress rule with named ports and no peers or an ipBlock (they resolve on every destination)."""
    for rule in (*policy.ingress, *policy.egress):
        if any(p.namespace_selector is not None for p in rule.peers):
            return True
    for rule in policy.egress:
        named = any(isinstance(p.port, str) for p in rule.ports)
        if named and (not rule.peers or any(p.ip_block is not None for p in rule.peers)):
            return True
    return False


NamespaceKey = tuple[str, str | None]  # a namespace label (key, value) a selector needs; value None: any value


def selector_needs(selector: Selector) -> list[NamespaceKey] | None:
    """Labels one of which a namespace must carry for the selector to match it: a `matchLabels` pair, the
    pairs of an `In` requirement, or the key of an `Exists` one; None when no label is needed (empty,
    `NotIn` or `DoesNotExist` only)."""
    if selector.match_labels:
        return [selector.match_labels[0]]
    for requirement in selector.requirements:
        if requirement.operator == "In":
            return [(requirement.key, value) for value in sorted(requirement.values)]
    for requirement in selector.requirements:
        if requirement.operator == "Exists":
            return [(requirement.key, None)]
    return None


def namespace_keys(policy: NetworkPolicy) -> list[NamespaceKey] | None:
    """Where the policy goes in the index of policies by namespace label: it can name an endpoint outside
    its own namespace only when that endpoint's namespace carries one of these labels. None: it may name an
    endpoint of any namespace (`names_any`, with a namespaceSelector `selector_needs` finds nothing in)."""
    found: list[NamespaceKey] = []
    for rule in policy.egress:
        named = any(isinstance(p.port, str) for p in rule.ports)
        if named and (not rule.peers or any(p.ip_block is not None for p in rule.peers)):
            return None
    for rule in (*policy.ingress, *policy.egress):
        for peer in rule.peers:
            if peer.namespace_selector is not None:
                needs = selector_needs(peer.namespace_selector)
                if needs is None:
                    return None
                found += needs
    return found


class ByNamespaceLabels:
    """NetworkPolicies by the namespace labels their namespaceSelector peers need (`namespace_keys`), so
    that a pod's change finds the policies that may name it without trying every policy of its tenant."""

    __slots__ = ("anywhere", "needs", "placed")

    def __init__(self) -> None:
        self.anywhere: dict[str, set[str]] = {}  # tenant -> keys of policies that may name any namespace's pods
        self.needs: dict[tuple[str, str, str | None], set[str]] = {}  # (tenant, label key, value) -> keys
        self.placed: dict[str, tuple[str, list[tuple[str, str, str | None]] | None]] = {}  # key -> where

    def add(self, key: str, tenant: str, policy: NetworkPolicy) -> None:
        needs = namespace_keys(policy)
        self.placed[key] = (tenant, None if needs is None else [(tenant, k, v) for k, v in needs])
        if needs is None:
            self.anywhere.setdefault(tenant, set()).add(key)
        for k, v in needs or ():
            self.needs.setdefault((tenant, k, v), set()).add(key)

    def drop(self, key: str) -> None:
        tenant, placed = self.placed.pop(key)
        if placed is None:
            drop(self.anywhere, tenant, key)
        for need in placed or ():
            drop(self.needs, need, key)

    def lookup(self, model: Model, endpoint: Endpoint) -> set[str]:
        """The policies of the endpoint's tenant whose namespaceSelector peers may match its namespace now (by
        its labels), and those that may name a pod of any namespace; a new set."""
        found = set(self.anywhere.get(endpoint.tenant, ()))
        space = model.namespaces.get(endpoint.namespace) if endpoint.namespace is not None else None
        for key, value in space.labels if space is not None else ():
            found |= self.needs.get((endpoint.tenant, key, value), set())
            found |= self.needs.get((endpoint.tenant, key, None), set())
        return found

    def size(self) -> int:
        return len(self.placed) + sum(len(s) for s in self.anywhere.values()) + sum(len(s) for s in self.needs.values())


def same_shape(a: Clause, b: Clause) -> bool:
    """Whether clause set b can be patched from a: both with ports, or both without (so as many clauses)."""
    return (a.ports is None) == (b.ports is None)


def other_peers(clause: Clause) -> list[object]:
    """The peer keys of a clause set that are no endpoint: any IP, or its CIDRs."""
    return [ANY] if clause.any_peer else list(clause.cidrs)


def rule_names(rule: ResolvedRule | None, endpoint_id: str) -> bool:
    """Whether the rule names the endpoint: as a peer, or as a local endpoint of a clause set."""
    if rule is None:
        return False
    return endpoint_id in rule.peers or any(endpoint_id in c.local or endpoint_id in c.peers for c in rule.clauses)


def names_of_rule(rule: ResolvedRule | None) -> set[str]:
    if rule is None:
        return set()
    return set(rule.peers).union(*(c.local | c.peers for c in rule.clauses))


def names(resolved: ResolvedPolicy | None) -> set[str]:
    """Every endpoint a resolved policy selects or names."""
    if resolved is None:
        return set()
    return set(resolved.selected).union(*(names_of_rule(r) for r in resolved.rules))


def named(resolved: ResolvedPolicy, endpoint_id: str) -> bool:
    if endpoint_id in resolved.selected:
        return True
    return any(rule_names(r, endpoint_id) for r in resolved.rules)


def drop(index: dict, key: object, value: str) -> None:
    found = index.get(key)
    if found is not None:
        found.discard(value)
        if not found:
            del index[key]
