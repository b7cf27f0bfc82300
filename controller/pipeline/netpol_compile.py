"""NetworkPolicy flows kept per rule and per endpoint: a change recompiles only the rules it affects, on the
nodes holding their endpoints, and only the flows those rules change there.

The flows are those of `features/netpol.py`, in sections small enough to replace one by one: the node's
stage (conntrack, and the port and any-IP clause flows), one section per local endpoint (its isolation and
its clause-1 flows: `NETPOL_LOCAL | num`), one per peer address or prefix (its clause-2 flows:
`NETPOL_PEER`), one per rule (its allow flows: `NETPOL_RULE | rule`). A clause flow carries the
conjunctions of every rule using its match, so each node counts which rules use which match.

What a change affects (`PolicyCompiler.update`):
- a changed policy: its own rules (resolved again) and the isolation of the endpoints it selects;
- a pod added, removed, moved or relabelled: the policies naming it before (`mentions`) or able to name it
  now (those of its namespace, and those with namespaceSelector peers or egress named ports in its tenant),
  patched for that pod alone (`topology.netpol.resolve_delta`), and its own isolation;
- a namespace relabelled: the policies with namespaceSelector peers in its tenant, for its pods.
A rule's clause whose peers, locals or addresses did not change keeps every flow; one peer more is one
clause flow more on each node holding the rule's selected endpoints. Ids: rules and conjunctions derive from
the policy id (`model.policy_ids`), which a policy keeps while it lives, so nothing else renumbers.

Every index here is dropped with its object (policy, endpoint, namespace, node): `cache_sizes` counts them.
"""

from __future__ import annotations

from ipaddress import IPv4Network

from controller.pipeline.cookies import Feature, cookie, split
from controller.pipeline.features.netpol import (
    IP,
    NODE_COOKIE,
    P_CLAUSE,
    P_ISOLATED,
    STAGES,
    allow_flow,
    conj_id,
    flow_order,
    local_match,
    peer_cookie,
    port_match,
    rule_id,
    stage_flows,
)
from controller.pipeline.ir import Conjunction, Flow, Match, match
from controller.pipeline.state import Section
from topology.model import Endpoint, Model, Touched
from topology.netpol import EGRESS, INGRESS, Clause, ResolvedPolicy, ResolvedRule, resolve, resolve_delta
from topology.netpol_spec import NetworkPolicy

Key = tuple[str, Match]  # (table, match): one clause flow
ANY = ("any IP",)  # the peer key of a clause set without peers


class _Clause:
    """One clause set of one rule: its peer and port matches, and its local endpoints' matches by node."""

    __slots__ = ("clause", "nodes", "peers", "ports")

    def __init__(self, clause: Clause) -> None:
        self.clause = clause
        self.peers: dict[object, tuple[int, Match]] = {}  # endpoint id, CIDR or ANY -> (section cookie, match)
        self.ports: tuple[Match, ...] = ()
        self.nodes: dict[str, dict[str, Match]] = {}  # node -> local endpoint id -> clause-1 match


class _Node:
    """One node's policy flows: clause flows with the conjunctions on them, isolation, rules present."""

    __slots__ = ("dirty", "entries", "isolation", "owners", "rules", "sections")

    def __init__(self) -> None:
        self.entries: dict[Key, tuple[int, dict[Conjunction, None]]] = {}  # clause flow -> (cookie, conjunctions)
        self.sections: dict[int, set[Key]] = {}  # section cookie -> its clause flows
        self.isolation: dict[str, dict[Key, Flow]] = {}  # local endpoint id -> its isolation flows
        self.owners: dict[int, str] = {}  # NETPOL_LOCAL cookie -> the isolated endpoint it is of
        self.rules: dict[int, set[int]] = {}  # rule -> its conjunction ids with flows here
        self.dirty: set[int] = set()

    def add(self, key: Key, section: int, conjunction: Conjunction) -> None:
        entry = self.entries.get(key)
        if entry is None:
            entry = self.entries[key] = (section, {})
            self.sections.setdefault(section, set()).add(key)
        entry[1][conjunction] = None
        self.dirty.add(entry[0])

    def remove(self, key: Key, conjunction: Conjunction) -> None:
        section, conjunctions = self.entries[key]
        del conjunctions[conjunction]
        if not conjunctions:
            del self.entries[key]
            keys = self.sections[section]
            keys.discard(key)
            if not keys:
                del self.sections[section]
        self.dirty.add(section)

    def empty(self) -> bool:
        return not (self.entries or self.isolation or self.rules)


class PolicyCompiler:
    """Every node's NetworkPolicy sections, kept current: `compile_all()`, then `update(touched)` per change."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.resolved: dict[str, ResolvedPolicy] = {}  # policy key -> as compiled
        self.ids: dict[str, int] = {}  # policy key -> the id it was compiled with
        self.rules: dict[int, dict[int, _Clause]] = {}  # rule -> conjunction id -> clause set
        self.nodes: dict[str, _Node] = {}
        self.homes: dict[str, Endpoint] = {}  # endpoint id -> the object compiled (its node, address, port)
        self.spaces: dict[str | None, dict[str, Endpoint]] = {}  # namespace -> its endpoints
        self.mentions: dict[str, set[str]] = {}  # endpoint id -> keys of policies selecting or naming it
        self.own: dict[str, set[str]] = {}  # namespace -> keys of its policies
        self.wide: dict[str, set[str]] = {}  # tenant -> keys of policies that may name any of its endpoints
        self.isolated_by: dict[str, tuple[str, int]] = {}  # isolated endpoint id -> (node, num) compiled

    # --- entry points --------------------------------------------------------------------------

    def compile_all(self) -> dict[str, dict[int, Section | None]]:
        """Every node's policy sections from scratch (the indexes are rebuilt)."""
        self.__init__(self.model)  # type: ignore[misc]
        touched = Touched(policies=set(self.model.policies), endpoints=set(self.model.endpoints))
        return self.update(touched)

    def update(self, touched: Touched) -> dict[str, dict[int, Section | None]]:
        """The policy sections `touched` changes, by node (None: remove the section)."""
        model = self.model
        objects = set(touched.endpoints)  # added, removed or replaced: their matches are built again
        members = objects | touched.labels
        for endpoint_id in members:
            self._reindex_endpoint(endpoint_id)
        changed = set(members)
        candidates: set[str] = set()
        for name in touched.namespaces:
            space = model.namespaces.get(name)
            if space is not None:
                changed |= self.spaces.get(name, {}).keys()
                candidates |= self.wide.get(space.tenant, set())
        for endpoint_id in members:
            candidates |= self.mentions.get(endpoint_id, set())
            endpoint = model.endpoints.get(endpoint_id)
            if endpoint is not None:
                candidates |= self.wide.get(endpoint.tenant, set())
                if endpoint.namespace is not None:
                    candidates |= self.own.get(endpoint.namespace, set())
        policies = set(touched.policies)
        isolation: set[str] = set()
        plans: list[tuple[str, ResolvedPolicy | None, ResolvedPolicy | None]] = []
        for key in sorted(candidates | policies):
            old, policy = self.resolved.get(key), model.policies.get(key)
            if policy is None:
                new = None
            elif key in policies or old is None:
                new = resolve(model, policy, self.spaces)
            else:
                new = resolve_delta(model, policy, old, changed, self.spaces)
            if old is new:
                continue
            plans.append((key, old, new))
        # A policy id freed in this change may be another policy's now: every retired rule goes first.
        for key, old, new in plans:
            if old is not None and (new is None or model.policy_ids[key] != self.ids[key]):
                self._rules(self.ids[key], old, None, objects)
        for key, old, new in plans:
            renumbered = old is None or new is None or model.policy_ids[key] != self.ids[key]
            if new is not None:
                self._rules(model.policy_ids[key], None if renumbered else old, new, objects)
            isolation |= self._remember(key, old, new, changed if not renumbered and key not in policies else None)
        for endpoint_id in members:
            endpoint = model.endpoints.get(endpoint_id)
            if endpoint is None:
                self.homes.pop(endpoint_id, None)
            else:
                self.homes[endpoint_id] = endpoint
        for endpoint_id in sorted(isolation | (objects & self.isolated_by.keys())):
            self._isolate(endpoint_id)
        return self._sections()

    # --- indexes -------------------------------------------------------------------------------

    def _reindex_endpoint(self, endpoint_id: str) -> None:
        """The endpoint in the namespace index as it is now (the index holds the current objects)."""
        old = self.homes.get(endpoint_id)
        if old is not None:
            space = self.spaces[old.namespace]
            del space[endpoint_id]
            if not space:
                del self.spaces[old.namespace]
        endpoint = self.model.endpoints.get(endpoint_id)
        if endpoint is not None:
            self.spaces.setdefault(endpoint.namespace, {})[endpoint_id] = endpoint

    def _remember(
        self, key: str, old: ResolvedPolicy | None, new: ResolvedPolicy | None, changed: set[str] | None
    ) -> set[str]:
        """Keep the indexes of one policy; return the endpoints whose isolation may have changed.
        `changed`: only these endpoints can be named differently (None: any)."""
        policy = self.model.policies.get(key)
        if changed is None:
            before, after = names(old), names(new)
            for endpoint_id in before - after:
                drop(self.mentions, endpoint_id, key)
            for endpoint_id in after - before:
                self.mentions.setdefault(endpoint_id, set()).add(key)
        else:
            for endpoint_id in changed:
                if new is not None and named(new, endpoint_id):
                    self.mentions.setdefault(endpoint_id, set()).add(key)
                else:
                    drop(self.mentions, endpoint_id, key)
        if old is not None:
            namespace, tenant = key.split("/", 1)[0], old.tenant
            drop(self.own, namespace, key)
            drop(self.wide, tenant, key)
            del self.resolved[key], self.ids[key]
        if new is not None and policy is not None:
            self.resolved[key] = new
            self.ids[key] = self.model.policy_ids[key]
            self.own.setdefault(policy.namespace, set()).add(key)
            if names_any(policy):
                self.wide.setdefault(new.tenant, set()).add(key)
        if old is None or new is None or changed is None or old.isolates_ingress != new.isolates_ingress:
            return set(old.selected if old else ()) | set(new.selected if new else ())
        if old.isolates_egress != new.isolates_egress:
            return set(old.selected | new.selected)
        return set(old.selected ^ new.selected) | (changed & (old.selected | new.selected))

    # --- rules ---------------------------------------------------------------------------------

    def _rules(self, policy_id: int, old: ResolvedPolicy | None, new: ResolvedPolicy | None, objects: set[str]) -> None:
        before = {rule_id(policy_id, r.direction, r.index): r for r in old.rules} if old else {}
        after = {rule_id(policy_id, r.direction, r.index): r for r in new.rules} if new else {}
        for number in sorted(before.keys() | after.keys()):
            rule_before, rule_after = before.get(number), after.get(number)
            if rule_before is rule_after and not any(rule_names(rule_after, e) for e in objects):
                continue
            self._rule(number, rule_before, rule_after, objects)

    def _rule(self, number: int, before: ResolvedRule | None, after: ResolvedRule | None, objects: set[str]) -> None:
        direction = (after or before).direction  # type: ignore[union-attr]
        clauses = self.rules.setdefault(number, {})
        new = {conj_id(number, i): c for i, c in enumerate(after.clauses)} if after else {}
        for conj in sorted(clauses.keys() | new.keys()):
            state, clause = clauses.get(conj), new.get(conj)
            if state is not None and clause is not None and same_shape(state.clause, clause):
                self._patch(number, conj, direction, state, clause, objects)
                continue
            if state is not None:
                self._clear(number, conj, direction, state)
                del clauses[conj]
            if clause is not None:
                clauses[conj] = self._fill(number, conj, direction, clause)
        if not clauses:
            del self.rules[number]

    def _peer(self, direction: str, key: object) -> tuple[int, Match]:
        name = "ipv4_dst" if direction == EGRESS else "ipv4_src"
        if key == ANY:
            return NODE_COOKIE, match(**IP)
        if isinstance(key, IPv4Network):
            exact = key.prefixlen == 32
            value = int(key.network_address) if exact else (int(key.network_address), int(key.netmask))
            return peer_cookie(key.network_address, key.prefixlen), match(**IP, **{name: value})
        ip = self.model.endpoints[str(key)].ip
        return peer_cookie(ip, 32), match(**IP, **{name: int(ip)})

    def _fill(self, number: int, conj: int, direction: str, clause: Clause) -> _Clause:
        state = _Clause(clause)
        keys: list[object] = [ANY] if clause.any_peer else [*sorted(clause.peers), *clause.cidrs]
        state.peers = {k: self._peer(direction, k) for k in keys}
        state.ports = tuple(port_match(p) for p in clause.ports) if clause.ports is not None else ()
        for endpoint_id in clause.local:
            endpoint = self.model.endpoints[endpoint_id]
            state.nodes.setdefault(endpoint.node, {})[endpoint_id] = local_match(self.model, direction, endpoint)
        if state.peers:
            for node, local in state.nodes.items():
                self._entries(node, conj, direction, state, local, state.peers, state.ports, add=True)
                self._present(node, number, conj, True)
        return state

    def _clear(self, number: int, conj: int, direction: str, state: _Clause) -> None:
        if state.peers:
            for node, local in state.nodes.items():
                self._entries(node, conj, direction, state, local, state.peers, state.ports, add=False)
                self._present(node, number, conj, False)

    def _patch(self, number: int, conj: int, direction: str, state: _Clause, clause: Clause, objects: set[str]) -> None:
        """The clause set keeps its number of clauses (ports or none): the endpoints, CIDRs and ports that
        changed are taken off and put on, on the nodes concerned; every other flow stays as it is."""
        old = state.clause
        # Without peers a clause set has no endpoint peers nor CIDRs: its one peer key is ANY.
        gone_peers: set[object] = set((old.peers - clause.peers) | (objects & old.peers))
        new_peers: set[object] = set((clause.peers - old.peers) | (objects & clause.peers))
        if old.any_peer != clause.any_peer or old.cidrs != clause.cidrs:
            before_other, after_other = other_peers(old), other_peers(clause)
            gone_peers.update(k for k in before_other if k not in after_other)
            new_peers.update(k for k in after_other if k not in before_other)
        removed: dict[object, tuple[int, Match]] = {k: state.peers.pop(k) for k in gone_peers if k in state.peers}
        added: dict[object, tuple[int, Match]] = {k: self._peer(direction, k) for k in sorted(new_peers, key=str)}
        ports = tuple(port_match(p) for p in clause.ports) if clause.ports is not None else ()
        gone_ports = tuple(m for m in state.ports if m not in ports)
        new_ports = tuple(m for m in ports if m not in state.ports)
        gone_local = (old.local - clause.local) | (objects & old.local)
        new_local = (clause.local - old.local) | (objects & clause.local)
        was_any, now_any = bool(state.peers or removed), bool(state.peers or added)
        arriving: dict[str, dict[str, Match]] = {}
        for endpoint_id in new_local:
            endpoint = self.model.endpoints[endpoint_id]
            arriving.setdefault(endpoint.node, {})[endpoint_id] = local_match(self.model, direction, endpoint)
        leaving: dict[str, dict[str, Match]] = {}
        for endpoint_id in gone_local:
            node = self.homes[endpoint_id].node
            leaving.setdefault(node, {})[endpoint_id] = state.nodes[node][endpoint_id]
        nodes = set(arriving) | set(leaving)
        if removed or added or gone_ports or new_ports:
            nodes |= state.nodes.keys()
        for node in sorted(nodes):
            before = state.nodes.get(node, {})
            after = {e: m for e, m in before.items() if e not in leaving.get(node, {})}
            after.update(arriving.get(node, {}))
            was, now = bool(before) and was_any, bool(after) and now_any
            if was and now:
                self._entries(node, conj, direction, state, leaving.get(node, {}), removed, gone_ports, add=False)
                self._entries(node, conj, direction, state, arriving.get(node, {}), added, new_ports, add=True)
            elif was:
                everything = {**state.peers, **removed}
                self._entries(node, conj, direction, state, before, everything, state.ports, add=False)
            elif now:
                everything = {**state.peers, **added}
                self._entries(node, conj, direction, state, after, everything, ports, add=True)
            if was != now:
                self._present(node, number, conj, now)
            if after:
                state.nodes[node] = after
            else:
                state.nodes.pop(node, None)
        state.peers.update(added)
        state.ports = ports
        state.clause = clause

    def _entries(
        self,
        name: str,
        conj: int,
        direction: str,
        state: _Clause,
        local: dict[str, Match],
        peers: dict[object, tuple[int, Match]],
        ports: tuple[Match, ...],
        *,
        add: bool,
    ) -> None:
        """Add (or remove) one clause set's conjunctions for these locals, peers and ports on one node."""
        node = self.nodes.setdefault(name, _Node())
        table = STAGES[direction][0]
        n = 3 if state.clause.ports is not None else 2
        if add:
            for endpoint_id, m in local.items():
                section = cookie(Feature.NETPOL_LOCAL, self.model.endpoints[endpoint_id].num)
                node.add((table, m), section, Conjunction(conj, 1, n))
            for section, m in peers.values():
                node.add((table, m), section, Conjunction(conj, 2, n))
            for m in ports:
                node.add((table, m), NODE_COOKIE, Conjunction(conj, 3, n))
        else:
            for m in local.values():
                node.remove((table, m), Conjunction(conj, 1, n))
            for _section, m in peers.values():
                node.remove((table, m), Conjunction(conj, 2, n))
            for m in ports:
                node.remove((table, m), Conjunction(conj, 3, n))

    def _present(self, name: str, number: int, conj: int, present: bool) -> None:
        """The rule's allow flow for this clause set is on the node while it has both locals and peers."""
        node = self.nodes.setdefault(name, _Node())
        conjs = node.rules.get(number, set())
        if (conj in conjs) == present:
            return
        if present:
            node.rules[number] = conjs
            conjs.add(conj)
        else:
            conjs.discard(conj)
            if not conjs:
                del node.rules[number]
        node.dirty.add(cookie(Feature.NETPOL_RULE, number))

    # --- isolation and sections ----------------------------------------------------------------

    def _isolate(self, endpoint_id: str) -> None:
        """An endpoint's isolation flows, from the policies selecting it now (on its node of now)."""
        endpoint = self.model.endpoints.get(endpoint_id)
        flows: dict[Key, Flow] = {}
        if endpoint is not None:
            mentions = self.mentions.get(endpoint_id, ())
            selecting = [self.resolved[k] for k in mentions if endpoint_id in self.resolved[k].selected]
            c = cookie(Feature.NETPOL_LOCAL, endpoint.num)
            for direction in (INGRESS, EGRESS):
                if any(getattr(r, f"isolates_{direction}") for r in selecting):
                    table, deny = STAGES[direction][0], STAGES[direction][3]
                    m = local_match(self.model, direction, endpoint)
                    flows[(table, m)] = Flow(table, P_ISOLATED, m, (deny.set(),), cookie=c)
        previous = self.isolated_by.get(endpoint_id)
        if previous is not None:
            node = self.nodes[previous[0]]
            same = endpoint is not None and previous == (endpoint.node, endpoint.num)
            if same and node.isolation[endpoint_id] == flows:
                return  # the very same flows
            del node.isolation[endpoint_id], self.isolated_by[endpoint_id]
            del node.owners[cookie(Feature.NETPOL_LOCAL, previous[1])]
            node.dirty.add(cookie(Feature.NETPOL_LOCAL, previous[1]))
            if not node.isolation:
                node.dirty.add(NODE_COOKIE)  # no isolated endpoint left: the stage goes
        if endpoint is not None and flows:
            node = self.nodes.setdefault(endpoint.node, _Node())
            if not node.isolation:
                node.dirty.add(NODE_COOKIE)
            node.isolation[endpoint_id] = flows
            node.owners[cookie(Feature.NETPOL_LOCAL, endpoint.num)] = endpoint_id
            node.dirty.add(cookie(Feature.NETPOL_LOCAL, endpoint.num))
            self.isolated_by[endpoint_id] = (endpoint.node, endpoint.num)

    def _sections(self) -> dict[str, dict[int, Section | None]]:
        result: dict[str, dict[int, Section | None]] = {}
        for name in sorted(self.nodes):
            node = self.nodes[name]
            if not node.dirty:
                continue
            slots: dict[int, Section | None] = {}
            for c in sorted(node.dirty):
                slots[c] = self._build(node, c, node.owners.get(c))
            node.dirty.clear()
            result[name] = slots
            if node.empty():
                del self.nodes[name]
        return result

    def _build(self, node: _Node, c: int, owner: str | None) -> Section | None:
        flows: list[Flow] = []
        if c == NODE_COOKIE and node.isolation:
            flows += [*stage_flows(EGRESS), *stage_flows(INGRESS)]
        if owner is not None:
            flows += node.isolation[owner].values()
        for key in node.sections.get(c, ()):
            conjunctions = tuple(sorted(node.entries[key][1], key=lambda j: (j.conj_id, j.clause)))
            flows.append(Flow(key[0], P_CLAUSE, key[1], conjunctions, cookie=c))
        _round, feature, number = split(c)
        if feature is Feature.NETPOL_RULE and number in node.rules:
            direction = EGRESS if number >> 8 & 1 else INGRESS
            flows += [allow_flow(direction, conj, number) for conj in sorted(node.rules[number])]
        if not flows or (c == NODE_COOKIE and not node.isolation):
            return None
        return Section(c, tuple(sorted(flows, key=flow_order)))

    def cache_sizes(self) -> dict[str, int]:
        """Entries held per index: policies, rules and their clause sets, nodes' clause flows, endpoints."""
        return {
            "policies": len(self.resolved) + len(self.ids),
            "policy_rules": sum(len(c) for c in self.rules.values()),
            "policy_nodes": len(self.nodes),
            "policy_clause_flows": sum(len(n.entries) for n in self.nodes.values()),
            "policy_homes": len(self.homes),
            "policy_spaces": sum(len(s) for s in self.spaces.values()),
            "policy_mentions": sum(len(s) for s in self.mentions.values()),
            "policy_namespaces": sum(len(s) for s in self.own.values()) + sum(len(s) for s in self.wide.values()),
            "isolated": len(self.isolated_by),
        }


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
