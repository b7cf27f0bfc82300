"""Every node's desired br-int state, kept current: a model change becomes per-node change sets.

The sections themselves come from `sections.SectionBuilder`. A change recomputes only the sections of the
objects it touched, on the nodes that hold them; nodes that receive the very same replacement (every
node that only routes into a network) share one computed change set.
"""

from __future__ import annotations

import gc
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager

from controller.pipeline.cookies import Feature, cookie
from controller.pipeline.features import netpol
from controller.pipeline.netpol_compile import PolicyCompiler
from controller.pipeline.sections import SectionBuilder
from controller.pipeline.state import ChangeSet, NodeState, Section, diff, diff_into, diff_sections
from topology.model import Encap, Model, Touched
from topology.netpol import resolve

Slots = dict[int, "Section | None"]  # section cookie -> its new content, None: remove it
Replacements = dict[str, list[Slots]]  # node -> what to replace there
PairMemo = dict[tuple[int, int], "tuple[Section | None, Section | None, ChangeSet]"]

NETWORK_FEATURES = (Feature.SEGMENT, Feature.L2, Feature.L2_LOCAL, Feature.ARP, Feature.GATEWAY, Feature.ROUTES)
EMPTY_CHANGES = ChangeSet()


class Compiler:
    """Keeps every node's desired state and updates it from model changes.

    Call `update(touched)` after each model change, with the `Touched` the model returned.
    """

    def __init__(self, model: Model) -> None:
        self.model = model
        self.states: dict[str, NodeState] = {}
        self.views = SectionBuilder(model)
        self._network_nodes: dict[str, set[str]] = {}  # network key -> nodes holding any of its sections
        self._network_ids: dict[str, int] = {}
        self._tenant_audience: dict[str, frozenset[str]] = {}
        self._ports: dict[str, tuple[str, int]] = {}  # endpoint id -> (node, port section cookie)
        self._meters: dict[str, set[int]] = {}  # node -> meter section cookies there
        self.policies = PolicyCompiler(model)  # NetworkPolicy sections, per rule and endpoint
        self._gateway_inputs: tuple = ()  # what the nodes' gateway sections were built from

    # --- full compile --------------------------------------------------------------------------

    def compile_all(self) -> dict[str, NodeState]:
        """Compile every node from scratch (caches from earlier calls are dropped)."""
        with gc_paused():
            return self._compile_all()

    def _compile_all(self) -> dict[str, NodeState]:
        self._reset()
        states: dict[str, NodeState] = {name: self._node_base(name) for name in self.model.nodes}
        for key, network in self.model.networks.items():
            nodes = self.views.audience(network)
            self._network_nodes[key] = nodes
            self._network_ids[key] = network.id
            for name in nodes:
                states[name].sections.update(self.views.network_sections(network, name))
        for tenant, counter in self.model.tenant_nodes.items():
            if counter:  # only tenants with endpoints are remembered (see _expand_tenants)
                self._tenant_audience[tenant] = frozenset(counter)
        for name, slots in self.policies.compile_all().items():
            states[name].sections.update({c: section for c, section in slots.items() if section is not None})
        self._gateway_inputs = self._gateway_signature()
        self.states = states
        return states

    def compile_node(self, name: str) -> NodeState:
        """One node's desired state, compiling only what that node needs if nothing was compiled yet."""
        if name not in self.states:
            state = self._node_base(name)
            for network in self.views.relevant_networks(name):
                state.sections.update(self.views.network_sections(network, name))
            resolved = [resolve(self.model, policy) for policy in self.model.policies.values()]
            state.sections.update(netpol.node_sections(self.model, resolved, self.model.policy_ids, name))
            return state
        return self.states[name]

    def _reset(self) -> None:
        self.views = SectionBuilder(self.model)
        self._network_nodes.clear()
        self._network_ids.clear()
        self._tenant_audience.clear()
        self._ports.clear()
        self._meters.clear()
        self.policies = PolicyCompiler(self.model)

    def _node_base(self, name: str) -> NodeState:
        state = self.views.node_base(name)
        for endpoint in self.model.endpoints_by_node[name].values():
            self._ports[endpoint.id] = (name, cookie(Feature.PORT, endpoint.num))
        self._meters[name] = {c for c, section in state.sections.items() if section.meters}
        return state

    # --- incremental ---------------------------------------------------------------------------

    def update(self, touched: Touched) -> dict[str, ChangeSet]:
        """Recompute what `touched` affects; return the change set of every node that changed."""
        if touched.everything or not self.states:
            old = self.states
            new = self.compile_all()
            changes = {name: diff(state, old.get(name, NodeState())) for name, state in new.items()}
            changes.update({name: diff(NodeState(), state) for name, state in old.items() if name not in new})
            return {name: cs for name, cs in changes.items() if cs}
        replacements: Replacements = {}
        for endpoint_id in touched.endpoints:
            self.views.forget_endpoint(endpoint_id)
        networks = set(touched.networks)
        if touched.fabric:
            # Only VLAN networks ride the fabric links: their carriers, floods and next hops change.
            self.views.refresh_fabric()
            networks.update(key for key, network in self.model.networks.items() if network.encap is Encap.VLAN)
        keys = sorted(self._expand_tenants(networks))
        # Ids and numbers are reused: a network or endpoint deleted in this change may leave its id (and so
        # its cookies) to one made in the same change. Every old cookie is cleared before any is filled again.
        retired = {key: self._retire_network(key, replacements) for key in keys}
        for key in keys:
            self._replace_network(key, *retired[key], replacements)
        if networks:
            self._replace_gateways(replacements)
        meter_nodes = set(touched.nodes)
        endpoints = sorted(touched.endpoints)
        for endpoint_id in endpoints:
            self._retire_port(endpoint_id, replacements, meter_nodes)
        for endpoint_id in endpoints:
            self._replace_port(endpoint_id, replacements, meter_nodes)
        for name in meter_nodes:
            self._replace_meters(name, replacements)
        own = self._replace_netpol(touched, replacements)
        return self._apply(replacements, own)

    def _replace_netpol(self, touched: Touched, replacements: Replacements) -> set[int]:
        """The NetworkPolicy sections the change affects (`netpol_compile.PolicyCompiler.update`); returns
        the ids of their slots, one per node and sections of that node alone (`_apply` diffs them directly)."""
        own: set[int] = set()
        if not (touched.policies or touched.namespaces or touched.labels or touched.endpoints):
            return own
        for name, slots in self.policies.update(touched).items():
            if name in self.model.nodes:
                replacements.setdefault(name, []).append(slots)
                own.add(id(slots))
        return own

    def _expand_tenants(self, keys: Iterable[str]) -> set[str]:
        """Networks to recompute: the touched ones, plus all of a tenant's whose set of nodes changed."""
        result = set(keys)
        for key in list(result):
            tenant = key.split("/", 1)[0]
            nodes = frozenset(self.model.tenant_nodes.get(tenant, ()))
            if nodes != self._tenant_audience.get(tenant, frozenset()):
                if nodes:
                    self._tenant_audience[tenant] = nodes
                else:
                    del self._tenant_audience[tenant]  # no endpoint left: nothing remembered of the tenant
                result.update(self.model.networks_by_tenant.get(tenant, ()))
        return result

    def _retire_network(self, key: str, replacements: Replacements) -> tuple[int | None, set[str]]:
        """Forget what was built for the network; if it is gone or has another id now, remove its old
        sections from every node that held them. Returns the old id (None if retired) and nodes."""
        self.views.forget(key)
        network = self.model.networks.get(key)
        old_id = self._network_ids.pop(key, None)
        old_nodes = self._network_nodes.pop(key, set())
        if old_id is not None and (network is None or network.id != old_id):
            cleared: Slots = {cookie(f, old_id): None for f in NETWORK_FEATURES}
            for name in old_nodes:
                replacements.setdefault(name, []).append(cleared)
            return None, set()
        return old_id, old_nodes

    def _replace_network(self, key: str, old_id: int | None, old_nodes: set[str], replacements: Replacements) -> None:
        network = self.model.networks.get(key)
        if network is None:
            return
        new_nodes = self.views.audience(network)
        cleared: Slots = {cookie(f, old_id): None for f in NETWORK_FEATURES} if old_id is not None else {}
        router_slots: Slots | None = None  # one dict for every node that only routes into the network
        router_view = None if self.views.per_node_views(network) else self.views.router_view(network)
        hosts = self.model.hosts[key]
        carriers = self.views.carriers(network)
        self.views.keep_segments(key, carriers)
        for name in old_nodes | new_nodes:
            if name not in new_nodes:
                slots = cleared
            elif router_view is not None and name not in hosts and name not in carriers:
                if router_slots is None:
                    router_slots = {**cleared, **router_view}
                slots = router_slots
            else:
                slots = {**cleared, **self.views.network_sections(network, name)}
            replacements.setdefault(name, []).append(slots)
        self._network_nodes[key] = new_nodes
        self._network_ids[key] = network.id

    def _retire_port(self, endpoint_id: str, replacements: Replacements, meter_nodes: set[str]) -> None:
        """Remove the endpoint's old port section, unless the same slot is filled again below."""
        previous = self._ports.get(endpoint_id)
        if previous is None:
            return
        endpoint = self.model.endpoints.get(endpoint_id)
        if endpoint is not None and previous == (endpoint.node, cookie(Feature.PORT, endpoint.num)):
            return  # replaced in place: one modify rather than a delete and an add
        del self._ports[endpoint_id]
        replacements.setdefault(previous[0], []).append({previous[1]: None})
        meter_nodes.add(previous[0])

    def _gateway_signature(self) -> tuple:
        """What the gateway sections depend on besides the nodes (a node change recompiles everything): the
        setting, the cluster network and every NATed network with its tenant's networks (immutable objects)."""
        config = self.model.gateway
        if config is None:
            return ()
        nats = tuple(
            (n, self.model.tenants[n.tenant].id, tuple(self.model.networks_by_tenant[n.tenant].values()))
            for n in self.model.networks.values()
            if n.nat_outgoing or n.node_ports
        )
        cluster = self.model.networks.get(config.cluster_network)
        tenant = self.model.tenants.get(config.cluster_tenant)
        return (config, cluster, tenant, nats)

    def _replace_gateways(self, replacements: Replacements) -> None:
        signature = self._gateway_signature()
        if signature == self._gateway_inputs:
            return
        self._gateway_inputs = signature
        c = cookie(Feature.NODE_GATEWAY, 0)
        for name in self.model.nodes:
            replacements.setdefault(name, []).append({c: self.views.gateway_section(name)})

    def _replace_port(self, endpoint_id: str, replacements: Replacements, meter_nodes: set[str]) -> None:
        endpoint = self.model.endpoints.get(endpoint_id)
        if endpoint is not None:
            section = self.views.port_section(endpoint)
            replacements.setdefault(endpoint.node, []).append({section.cookie: section})
            self._ports[endpoint_id] = (endpoint.node, section.cookie)
            meter_nodes.add(endpoint.node)

    def _replace_meters(self, name: str, replacements: Replacements) -> None:
        if name not in self.model.nodes:
            return
        new = self.views.meter_sections(name)
        slots: Slots = dict.fromkeys(self._meters.get(name, set()) - new.keys())
        slots.update(new)
        replacements.setdefault(name, []).append(slots)
        self._meters[name] = set(new)

    def _apply(self, replacements: Replacements, own: Collection[int] = ()) -> dict[str, ChangeSet]:
        """Install the replacement sections in each node's state and return each node's change set.

        Many nodes receive the very same replacement for the very same sections (every node that only
        routes into a network): its change set is computed once and handed to all of them. The slots whose
        id is in `own` are one node's and hold sections of that node alone (its policy sections): they are
        diffed straight into one change set, without a memo, and a node with such a part gets a change set
        of its own (its part is new and unshared: its id may be the id of another node's part, since freed).
        """
        changes: dict[str, ChangeSet] = {}
        pair_changes: PairMemo = {}
        slot_changes: dict[int, tuple[tuple[Section | None, ...], ChangeSet]] = {}
        combined: dict[tuple[int, ...], tuple[list[ChangeSet], ChangeSet]] = {}
        splits: dict[int, tuple[dict[int, Section], list[int]]] = {}
        for name, slot_list in replacements.items():
            state = self.states.get(name)
            if state is None:
                state = self.states[name] = NodeState()
            sections = state.sections
            parts = []
            mine = False  # a part of this node alone among them
            for slots in slot_list:
                if id(slots) in own:
                    part = ChangeSet()
                    for slot, new in slots.items():
                        old = sections.get(slot)
                        if new is not old:
                            diff_into(part, new, old)
                        if new is None:
                            sections.pop(slot, None)
                        else:
                            sections[slot] = new
                    if part:
                        parts.append(part)
                        mine = True
                    continue
                olds = tuple(map(sections.get, slots))
                known = slot_changes.get(id(slots))
                if known is not None and known[0] == olds:  # the same old section objects (tuples compare by is first)
                    part = known[1]
                else:
                    part = ChangeSet.combine(
                        pair_diff(pair_changes, new, old) for new, old in zip(slots.values(), olds, strict=True)
                    )
                    slot_changes[id(slots)] = (olds, part)
                if part:
                    parts.append(part)
                split = splits.get(id(slots))
                if split is None:
                    split = splits[id(slots)] = (
                        {slot: new for slot, new in slots.items() if new is not None},
                        [slot for slot, new in slots.items() if new is None],
                    )
                sections.update(split[0])
                for slot in split[1]:
                    sections.pop(slot, None)
            if mine:
                changes[name] = parts[0] if len(parts) == 1 else ChangeSet.combine(parts)
            elif parts:
                key = tuple(map(id, parts))
                found = combined.get(key)
                if found is None:  # the memo holds the parts too: while it is a key, no id is another part's
                    found = combined[key] = (parts, parts[0] if len(parts) == 1 else ChangeSet.combine(parts))
                changes[name] = found[1]
        return changes

    # --- memory ---------------------------------------------------------------------------------

    def cache_sizes(self) -> dict[str, int]:
        """Entries held per index and memo, beside the node states: each counts live objects only (networks
        with sections somewhere, endpoints, tenants with endpoints, meters), never deleted ones."""
        return {
            "network_nodes": len(self._network_nodes),
            "network_ids": len(self._network_ids),
            "tenant_audience": len(self._tenant_audience),
            "ports": len(self._ports),
            "meters": sum(len(m) for m in self._meters.values()),
            **self.views.cache_sizes(),
            **self.policies.cache_sizes(),
        }


def pair_diff(memo: PairMemo, new: Section | None, old: Section | None) -> ChangeSet:
    """The change from one section to another, computed once per pair (sections are shared).

    The memo holds the pair itself along with its change set, so an id is never reused while it is a key.
    """
    if new is old:
        return EMPTY_CHANGES
    key = (id(new), id(old))
    found = memo.get(key)
    if found is None:
        found = memo[key] = (new, old, diff_sections(new, old))
    return found[2]


@contextmanager
def gc_paused() -> Iterator[None]:
    """Build large, acyclic structures without the cyclic collector rescanning them again and again.

    A full compile allocates millions of small immutable objects and creates no reference cycles; with the
    collector running, its repeated full scans of the growing heap cost more than the compile itself.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# The first generation's collection threshold (CPython's default: 700 allocations). A change to a large
# cluster builds and drops about a thousand container objects (sections, flows, their change sets); at 700
# most changes ran a collection over what they had just built and not yet dropped, and every tenth one the
# next generation's too (≈0.3 ms and ≈6 ms at 10,000 endpoints). At 10,000 what a change drops is freed
# by its reference count before a collection comes: about half the collector's time is gone.
GEN0_THRESHOLD = 10_000


def settle_collector() -> None:
    """Once a full compile is done in a process that keeps its result: collect once, move every surviving
    object out of the cyclic collector's sight (`gc.freeze`, so its full collections do not rescan the
    compiled cluster: ≈1 s at 10,000 endpoints) and raise the first generation's threshold to
    `GEN0_THRESHOLD`. The compiled state holds no reference cycles; it is freed by reference counting."""
    gc.collect()
    gc.freeze()
    _gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, gen1, gen2)


def compile(model: Model, node: str) -> NodeState:
    """The desired state of one node's br-int."""
    model.node(node)
    return Compiler(model).compile_node(node)
