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
  now (those of its namespace, those with egress named ports in its tenant, and those whose namespaceSelector
  peers may match its namespace, found by the namespace's labels: `_may_name`), patched for that pod alone
  (`topology.netpol.resolve_delta`, which hands back a policy it leaves alone as it was), and its own
  isolation;
- a namespace relabelled: the policies with namespaceSelector peers in its tenant, for its pods.
A rule's clause whose peers, locals or addresses did not change keeps every flow; one peer more is one
clause flow more on each node holding the rule's selected endpoints. Ids: rules and conjunctions derive from
the policy id (`model.policy_ids`), which a policy keeps while it lives, so nothing else renumbers.

Every index here is dropped with its object (policy, endpoint, namespace, node): `cache_sizes` counts them.
"""

from __future__ import annotations

from ipaddress import IPv4Network

from controller.pipeline.cookies import Feature, cookie
from controller.pipeline.features.netpol import (
    IP,
    NODE_COOKIE,
    P_ISOLATED,
    STAGES,
    conj_id,
    local_match,
    peer_cookie,
    port_match,
    rule_id,
)
from controller.pipeline.ir import Flow, Match, match
from controller.pipeline.netpol_state import (
    ANY,
    ByNamespaceLabels,
    ClauseSet,
    Key,
    PolicyNode,
    drop,
    named,
    names,
    names_any,
    other_peers,
    rule_names,
    same_shape,
)
from controller.pipeline.state import Section
from topology.model import Endpoint, Model, Touched
from topology.netpol import EGRESS, INGRESS, Clause, ResolvedPolicy, ResolvedRule, resolve, resolve_delta


class PolicyCompiler:
    """Every node's NetworkPolicy sections, kept current: `compile_all()`, then `update(touched)` per change."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.resolved: dict[str, ResolvedPolicy] = {}  # policy key -> as compiled
        self.ids: dict[str, int] = {}  # policy key -> the id it was compiled with
        self.rules: dict[int, dict[int, ClauseSet]] = {}  # rule -> conjunction id -> clause set
        self.nodes: dict[str, PolicyNode] = {}
        self.reached: set[str] = set()  # nodes this change may have made dirty: `_sections` looks at these only
        self.homes: dict[str, Endpoint] = {}  # endpoint id -> the object compiled (its node, address, port)
        self.spaces: dict[str | None, dict[str, Endpoint]] = {}  # namespace -> its endpoints
        self.mentions: dict[str, set[str]] = {}  # endpoint id -> keys of policies selecting or naming it
        self.own: dict[str, set[str]] = {}  # namespace -> keys of its policies
        self.wide: dict[str, set[str]] = {}  # tenant -> keys of policies that may name any of its endpoints
        self.by_labels = ByNamespaceLabels()  # the same, by what a namespace needs for them to name its pods
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
                candidates |= self._may_name(endpoint)
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
        self._isolate(sorted(isolation | (objects & self.isolated_by.keys())))
        return self._sections()

    # --- indexes -------------------------------------------------------------------------------

    def _may_name(self, endpoint: Endpoint) -> set[str]:
        """The policies that may select or name the endpoint as the model is now, besides those naming it
        already: its namespace's, and those whose namespaceSelector peers may match its namespace."""
        found = self.by_labels.lookup(self.model, endpoint)
        if endpoint.namespace is not None:
            found |= self.own.get(endpoint.namespace, set())
        return found

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
        # A policy that comes to select its first pod, or loses its last, may name endpoints no change touched
        # (the destinations of an egress rule's named ports resolve only for selected pods): all of them.
        first_or_last = old is not None and new is not None and bool(old.selected) != bool(new.selected)
        if changed is None or first_or_last:
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
            self.by_labels.drop(key)
            del self.resolved[key], self.ids[key]
        if new is not None and policy is not None:
            self.resolved[key] = new
            self.ids[key] = self.model.policy_ids[key]
            self.own.setdefault(policy.namespace, set()).add(key)
            if names_any(policy):
                self.wide.setdefault(new.tenant, set()).add(key)
            self.by_labels.add(key, new.tenant, policy)
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

    def _fill(self, number: int, conj: int, direction: str, clause: Clause) -> ClauseSet:
        state = ClauseSet(conj, clause)
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

    def _clear(self, number: int, conj: int, direction: str, state: ClauseSet) -> None:
        if state.peers:
            for node, local in state.nodes.items():
                self._entries(node, conj, direction, state, local, state.peers, state.ports, add=False)
                self._present(node, number, conj, False)

    def _patch(
        self, number: int, conj: int, direction: str, state: ClauseSet, clause: Clause, objects: set[str]
    ) -> None:
        """The clause set keeps its number of clauses (ports or none): the endpoints, CIDRs and ports that
        changed are taken off and put on, on the nodes concerned; every other flow stays as it is."""
        old = state.clause
        # An any-IP clause set (no peers, or an ipBlock of 0.0.0.0/0 beside them) has no endpoint peers nor
        # CIDRs, whatever endpoints its peers name: its one peer key is ANY (`_fill`).
        old_keys = frozenset() if old.any_peer else old.peers
        new_keys = frozenset() if clause.any_peer else clause.peers
        gone_peers: set[object] = set((old_keys - new_keys) | (objects & old_keys))
        new_peers: set[object] = set((new_keys - old_keys) | (objects & new_keys))
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
            out, into = leaving.get(node, {}), arriving.get(node, {})
            after = before  # only its peers or ports change here: its locals stay
            if out or into:
                after = {e: m for e, m in before.items() if e not in out}
                after.update(into)
            was, now = bool(before) and was_any, bool(after) and now_any
            if was and now:
                if out or removed or gone_ports:
                    self._entries(node, conj, direction, state, out, removed, gone_ports, add=False)
                if into or added or new_ports:
                    self._entries(node, conj, direction, state, into, added, new_ports, add=True)
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
        state: ClauseSet,
        local: dict[str, Match],
        peers: dict[object, tuple[int, Match]],
        ports: tuple[Match, ...],
        *,
        add: bool,
    ) -> None:
        """Add (or remove) one clause set's conjunctions for these locals, peers and ports on one node."""
        node = self._node(name)
        table = STAGES[direction][0]
        # the locals as they are now when added, as compiled before this change (`homes`) when removed
        step, endpoints = (node.add, self.model.endpoints) if add else (node.remove, self.homes)
        if local:
            first = state.conjunctions[0]
            for endpoint_id, m in local.items():
                step((table, m), cookie(Feature.NETPOL_LOCAL, endpoints[endpoint_id].num), first)
        if peers:
            second = state.conjunctions[1]
            for section, m in peers.values():
                step((table, m), section, second)
        if ports:
            third = state.conjunctions[2]
            for m in ports:
                step((table, m), NODE_COOKIE, third)

    def _node(self, name: str) -> PolicyNode:
        self.reached.add(name)
        node = self.nodes.get(name)
        if node is None:
            node = self.nodes[name] = PolicyNode()
        return node

    def _present(self, name: str, number: int, conj: int, present: bool) -> None:
        """The rule's allow flow for this clause set is on the node while it has both locals and peers."""
        node = self._node(name)
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

    def _isolate(self, endpoint_ids: list[str]) -> None:
        """Endpoints' isolation flows, from the policies selecting them now (on their nodes of now). Every
        changed one is taken off before any is put on: a port or address freed may be taken in one change."""
        wanted: dict[str, tuple[str, int, dict[Key, Flow]] | None] = {}
        for endpoint_id in endpoint_ids:
            endpoint = self.model.endpoints.get(endpoint_id)
            flows = self._isolation_flows(endpoint) if endpoint is not None else {}
            want = (endpoint.node, endpoint.num, flows) if endpoint is not None and flows else None
            previous = self.isolated_by.get(endpoint_id)
            same = previous is not None and want is not None and previous == want[:2]
            if same and previous is not None and self.nodes[previous[0]].isolation[endpoint_id] == flows:
                continue  # the very same flows
            wanted[endpoint_id] = want
        for endpoint_id in wanted:
            previous = self.isolated_by.pop(endpoint_id, None)
            if previous is not None:
                node = self._node(previous[0])
                c = cookie(Feature.NETPOL_LOCAL, previous[1])
                del node.isolation[endpoint_id], node.owners[c]
                node.dirty.add(c)
                if not node.isolation:
                    node.dirty.add(NODE_COOKIE)  # no isolated endpoint left: the stage goes
        for endpoint_id, want in wanted.items():
            if want is not None:
                name, num, flows = want
                node = self._node(name)
                if not node.isolation:
                    node.dirty.add(NODE_COOKIE)
                c = cookie(Feature.NETPOL_LOCAL, num)
                node.isolation[endpoint_id], node.owners[c] = flows, endpoint_id
                node.dirty.add(c)
                self.isolated_by[endpoint_id] = (name, num)

    def _isolation_flows(self, endpoint: Endpoint) -> dict[Key, Flow]:
        mentions = self.mentions.get(endpoint.id, ())
        selecting = [self.resolved[k] for k in mentions if endpoint.id in self.resolved[k].selected]
        c = cookie(Feature.NETPOL_LOCAL, endpoint.num)
        flows: dict[Key, Flow] = {}
        for direction in (INGRESS, EGRESS):
            if any(getattr(r, f"isolates_{direction}") for r in selecting):
                table, deny = STAGES[direction][0], STAGES[direction][3]
                m = local_match(self.model, direction, endpoint)
                flows[(table, m)] = Flow(table, P_ISOLATED, m, (deny.set(),), cookie=c)
        return flows

    def _sections(self) -> dict[str, dict[int, Section | None]]:
        result: dict[str, dict[int, Section | None]] = {}
        reached, self.reached = self.reached, set()
        for name in sorted(name for name in reached if name in self.nodes and self.nodes[name].dirty):
            node = self.nodes[name]
            slots: dict[int, Section | None] = {}
            for c in sorted(node.dirty):
                slots[c] = node.section(c)
            node.dirty.clear()
            result[name] = slots
            if node.empty():
                del self.nodes[name]
        return result

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
            "policy_namespace_labels": self.by_labels.size(),
            "isolated": len(self.isolated_by),
        }
