"""NetworkPolicy on br-int: conntrack, isolation and conjunctive rule flows, from `topology.netpol`.

Only a node with an isolated endpoint (one a policy selects) gets any of these flows; elsewhere the policy
tables stay empty and every packet goes on. On such a node, in egress_policy (what local pods send) and in
ingress_policy (what l2 delivers to a local port), each table recirculating into itself through conntrack:

    300   ip, -trk                            ct(zone=network, table=this table): every IP packet tracked
    200   +trk+est / +trk+rel                 go on: established and related traffic skips the rules
    150   the own node's host (features/gateway.py: `from_gateway` and the node's address, or a cluster pod to
          that address): +trk+new             mark the verdict allow, ct(commit), go on
    100   the rules' clauses                  conjunction(id, k/n), shared by every rule with the same match
    100   ip, conj_id=N (per rule clause set)   mark rule and verdict, ct(commit), go on     (cookie NETPOL_RULE)
     50   an isolated endpoint                mark the verdict deny, drop
     10   +trk+new                            ct(commit), go on: endpoints no policy isolates

A packet tracked already on this switch (by egress_policy, before a route into another network) keeps its
state at ingress_policy: it is new or established there as it was at the sender's stage.

A rule costs |local endpoints| + |peers and CIDRs| + |ports| flows (clause 1: the selected endpoint, by
tenant and source address for egress, by out_port for ingress; clause 2: the peer's address, or any IP;
clause 3, if the rule has ports: protocol and masked destination port), never their product. ARP and other
non-IP traffic never meets a rule. The zone is the network id (`fields.CT_ZONE`), so tenants and networks
never share connection state; a committed connection's replies come back `+est`.

Ids: a rule is `policy id << 9 | direction << 8 | index`, a conjunction `rule << 6 | clause set`; the
allow flows of one rule carry the cookie `NETPOL_RULE | rule`, so each rule has counters of its own.

Sections (so that a change replaces only what it touches): the node's stage (`NETPOL`: conntrack, the clause
flows matching ports or any IP), one per isolated local endpoint (`NETPOL_LOCAL | num`: its isolation and
clause-1 flows), one per peer address or prefix (`NETPOL_PEER`: clause-2 flows), one per rule (its allows).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from ipaddress import IPv4Address

from controller.pipeline.cookies import Feature, cookie, split
from controller.pipeline.fields import (
    CT_ZONE,
    EGRESS_ALLOW,
    EGRESS_DENY,
    EGRESS_RULE,
    INGRESS_ALLOW,
    INGRESS_DENY,
    INGRESS_RULE,
    OUT_PORT,
    TENANT,
)
from controller.pipeline.ir import ETH_TYPE_IP, IP_PROTO, Conjunction, Ct, Flow, Match, ct_state, match
from controller.pipeline.state import Section
from topology.errors import ValidationError
from topology.model import Endpoint, Model
from topology.netpol import EGRESS, INGRESS, Clause, PortMatch, ResolvedPolicy

NODE_COOKIE = cookie(Feature.NETPOL, 0)
FEATURES = (Feature.NETPOL, Feature.NETPOL_RULE, Feature.NETPOL_LOCAL, Feature.NETPOL_PEER)  # policy sections
P_TRACK, P_ESTABLISHED, P_CLAUSE, P_ISOLATED, P_COMMIT = 300, 200, 100, 50, 10
MAX_RULES, MAX_CLAUSE_SETS = 256, 64  # per policy and direction; per rule (named ports split a rule)
STAGES = {  # direction -> (table, next table, verdicts, rule field)
    EGRESS: ("egress_policy", "l3_gateway", EGRESS_ALLOW, EGRESS_DENY, EGRESS_RULE),
    INGRESS: ("ingress_policy", "output", INGRESS_ALLOW, INGRESS_DENY, INGRESS_RULE),
}
IP = {"eth_type": ETH_TYPE_IP}
PORT_FIELD = {"TCP": "tcp_dst", "UDP": "udp_dst", "SCTP": "sctp_dst"}


def rule_id(policy_id: int, direction: str, index: int) -> int:
    """The rule's number: policy id, direction and index. Raises ValidationError past MAX_RULES rules."""
    if index >= MAX_RULES:
        raise ValidationError("spec", f"at most {MAX_RULES} {direction} rules per NetworkPolicy are compiled")
    return policy_id << 9 | (direction == EGRESS) << 8 | index


def conj_id(rule: int, clause_set: int) -> int:
    if clause_set >= MAX_CLAUSE_SETS:
        raise ValidationError("spec", f"a rule resolves to more than {MAX_CLAUSE_SETS} sets of named ports")
    return rule << 6 | clause_set


def split_rule(rule: int) -> tuple[int, str, int]:
    """(policy id, direction, index) of a rule number."""
    return rule >> 9, EGRESS if rule >> 8 & 1 else INGRESS, rule & 0xFF


def stage_flows(direction: str) -> list[Flow]:
    """The flows every node with an isolated endpoint has for one direction, whatever the rules."""
    rules, onward, *_ = STAGES[direction]
    untracked = match(**IP, ct_state=ct_state(trk=False))
    return [
        Flow(rules, P_TRACK, untracked, (Ct(zone=CT_ZONE, table=rules),), cookie=NODE_COOKIE),
        Flow(rules, P_ESTABLISHED, match(**IP, ct_state=ct_state(trk=True, est=True)), goto=onward, cookie=NODE_COOKIE),
        Flow(rules, P_ESTABLISHED, match(**IP, ct_state=ct_state(trk=True, rel=True)), goto=onward, cookie=NODE_COOKIE),
        Flow(
            rules,
            P_COMMIT,
            match(**IP, ct_state=ct_state(trk=True, new=True)),
            (Ct(commit=True, zone=CT_ZONE, table=onward),),
            cookie=NODE_COOKIE,
        ),
    ]


def local_match(model: Model, direction: str, endpoint: Endpoint) -> Match:
    """Clause 1 and isolation: the local endpoint, as the sender (tenant and source address; port security
    vouches for it) or as the receiver (the port l2 chose)."""
    if direction == EGRESS:
        return match(**IP, **TENANT.match(model.tenants[endpoint.tenant].id), ipv4_src=int(endpoint.ip))
    return match(**IP, **OUT_PORT.match(endpoint.ofport))


def port_match(port: PortMatch) -> Match:
    """Clause 3: protocol and (masked) destination port; every port of the protocol when the mask is 0."""
    fields: dict[str, int | tuple[int, int]] = {**IP, "ip_proto": IP_PROTO[port.protocol.lower()]}
    if not port.every_port:
        name = PORT_FIELD[port.protocol]
        fields[name] = port.port if port.mask == 0xFFFF else (port.port, port.mask)
    return match(**fields)


def allow_flow(direction: str, conj: int, rule: int) -> Flow:
    """What a completed conjunction does: mark the rule and the verdict, commit the connection, go on."""
    rules, onward, allow, _deny, field = STAGES[direction]
    actions = (field.set(conj), allow.set(), Ct(commit=True, zone=CT_ZONE, table=onward))
    # OVS wants `ip` in the match of a flow whose actions use conntrack.
    return Flow(rules, P_CLAUSE, match(**IP, conj_id=conj), actions, cookie=cookie(Feature.NETPOL_RULE, rule))


def peer_cookie(address: IPv4Address, prefixlen: int) -> int:
    """The section of the clause flows matching one peer address (prefixlen 32) or prefix."""
    return cookie(Feature.NETPOL_PEER, int(address) << 6 | prefixlen)


def flow_order(flow: Flow) -> tuple:
    """The order of flows within a policy section: by table, priority (highest first) and match."""
    return (flow.table, -flow.priority, match_key(flow.match))


def node_sections(
    model: Model,
    resolved: Iterable[ResolvedPolicy],
    policy_ids: Mapping[str, int],
    node: str,
    *,
    memo: dict | None = None,
) -> dict[int, Section]:
    """One node's NetworkPolicy sections, built from scratch: the node's stage (conntrack; the clause flows
    on ports or any IP), one per local isolated endpoint (`NETPOL_LOCAL`: isolation, clause 1), one per peer
    address or prefix (`NETPOL_PEER`: clause 2) and one per rule with flows here (its allow flows). Empty
    when no local endpoint is isolated. `controller.pipeline.netpol_compile` keeps the same sections current.

    `memo`: a dict shared by the calls for several nodes of one model state (never across changes), so a
    clause's peer and port matches are built once for all of them."""
    memo = {} if memo is None else memo
    local = model.endpoints_by_node.get(node, {})
    isolated: dict[str, set[str]] = {INGRESS: set(), EGRESS: set()}
    clauses: dict[tuple[str, Match], tuple[int, set[Conjunction]]] = {}
    rules: dict[int, list[Flow]] = {}
    for policy in resolved:
        here = policy.selected & local.keys()
        if not here:
            continue
        for direction in (INGRESS, EGRESS):
            if getattr(policy, f"isolates_{direction}"):
                isolated[direction] |= here
        for rule in policy.rules:
            number = rule_id(policy_ids[policy.key], rule.direction, rule.index)
            for index, clause in enumerate(rule.clauses):
                mine = sorted(clause.local & local.keys())
                peers = memo.get((rule.direction, clause))
                if peers is None:
                    peers = memo[(rule.direction, clause)] = peer_matches(model, rule.direction, clause)
                if not mine or not peers:
                    continue
                conj = conj_id(number, index)
                here_matches = [
                    (cookie(Feature.NETPOL_LOCAL, local[e].num), local_match(model, rule.direction, local[e]))
                    for e in mine
                ]
                sets = [here_matches, peers]
                if clause.ports is not None:
                    ports = memo.get(clause.ports)
                    if ports is None:
                        ports = memo[clause.ports] = [(NODE_COOKIE, port_match(p)) for p in clause.ports]
                    sets.append(ports)
                table = STAGES[rule.direction][0]
                for k, matches in enumerate(sets, start=1):
                    for section, m in matches:
                        clauses.setdefault((table, m), (section, set()))[1].add(Conjunction(conj, k, len(sets)))
                rules.setdefault(number, []).append(allow_flow(rule.direction, conj, number))
    if not isolated[INGRESS] and not isolated[EGRESS]:
        return {}
    flows: dict[int, list[Flow]] = {NODE_COOKIE: [*stage_flows(EGRESS), *stage_flows(INGRESS)]}
    for direction, endpoints in isolated.items():
        rules_table, deny = STAGES[direction][0], STAGES[direction][3]
        for endpoint_id in endpoints:
            c = cookie(Feature.NETPOL_LOCAL, local[endpoint_id].num)
            m = local_match(model, direction, local[endpoint_id])
            flows.setdefault(c, []).append(Flow(rules_table, P_ISOLATED, m, (deny.set(),), cookie=c))
    for (table, m), (c, conjunctions) in clauses.items():
        ordered = tuple(sorted(conjunctions, key=lambda j: (j.conj_id, j.clause)))
        flows.setdefault(c, []).append(Flow(table, P_CLAUSE, m, ordered, cookie=c))
    for number, allow in rules.items():
        flows[cookie(Feature.NETPOL_RULE, number)] = allow
    return {c: Section(c, tuple(sorted(found, key=flow_order))) for c, found in sorted(flows.items())}


def peer_matches(model: Model, direction: str, clause: Clause) -> list[tuple[int, Match]]:
    """Clause 2: the peer's address (its endpoints' and CIDRs'), or any IP for a rule without peers, each
    with the section it goes in."""
    if clause.any_peer:
        return [(NODE_COOKIE, match(**IP))]
    name = "ipv4_dst" if direction == EGRESS else "ipv4_src"
    found = []
    for e in sorted(clause.peers):
        ip = model.endpoints[e].ip
        found.append((peer_cookie(ip, 32), match(**IP, **{name: int(ip)})))
    for cidr in clause.cidrs:
        exact = cidr.prefixlen == 32
        value = int(cidr.network_address) if exact else (int(cidr.network_address), int(cidr.netmask))
        found.append((peer_cookie(cidr.network_address, cidr.prefixlen), match(**IP, **{name: value})))
    return found


def match_key(m: Match) -> tuple[tuple[str, int, int], ...]:
    """A match as a sort key (an exact field has mask None, which does not compare with a number)."""
    return tuple((name, value, -1 if mask is None else mask) for name, value, mask in m)


def explain(model: Model, hops: Iterable[tuple[str, Flow | None]]) -> list[str]:
    """Which policy rule allowed a traced packet, or which isolation dropped it: one line per decision, from
    the (node, flow) pairs it took, e.g. `ingress: allowed by x/allow-from-y rule 0`."""
    by_id = {number: key for key, number in model.policy_ids.items()}
    lines = []
    for node, flow in hops:
        if flow is None:
            continue
        _round, feature, number = split(flow.cookie)
        if feature is Feature.NETPOL_RULE:
            policy_id, direction, index = split_rule(number)
            lines.append(f"{direction}: allowed by {by_id.get(policy_id, f'policy #{policy_id}')} rule {index}")
        elif feature is Feature.NETPOL_LOCAL and flow.priority == P_ISOLATED:
            direction = EGRESS if flow.table == "egress_policy" else INGRESS
            lines.append(f"{direction}: dropped: {_isolated_by(model, node, direction, flow)}")
    return lines


def _isolated_by(model: Model, node: str, direction: str, flow: Flow) -> str:
    from topology.netpol import selected_endpoints

    fields = {name: value for name, value, _mask in flow.match}
    tenant_ids = {t.id: t.name for t in model.tenants.values()}
    endpoint = next(
        (
            e
            for e in model.endpoints_by_node.get(node, {}).values()
            if (
                direction == EGRESS
                and fields.get("ipv4_src") == int(e.ip)
                and tenant_ids.get(fields.get(TENANT.register, 0) & TENANT.mask) == e.tenant
            )
            or (direction == INGRESS and fields.get(OUT_PORT.register) == e.ofport)
        ),
        None,
    )
    if endpoint is None:
        return "isolated, and no rule allows it"
    policies = sorted(
        p.key
        for p in model.policies.values()
        if endpoint.id in selected_endpoints(model, p) and getattr(p, f"isolates_{direction}")
    )
    return f"{endpoint.id} is isolated for {direction} by {', '.join(policies)} and none of their rules allows it"
