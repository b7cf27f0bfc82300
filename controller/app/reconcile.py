"""What to send a switch so it holds the desired state: from a dump on connect, or from a change set.

Pure: takes IR and returns a `Plan` of IR operations; the session turns it into OpenFlow messages.
Flows that change are sent as adds, not modifies: on OVS a modify never updates the cookie, and an add
of an existing match replaces the flow in place (its packets never see a gap).

A restarted controller works in a new cookie round: it re-adds every desired flow with the new round and
deletes each older round by cookie mask, all in one bundle, so the switch goes from the old flows to the
new ones at once and nothing is flushed.
"""

from __future__ import annotations

from collections.abc import Collection, Container, Iterable
from dataclasses import dataclass, field
from typing import Any

from controller.pipeline.cookies import ROUND_MASK, ROUND_SHIFT
from controller.pipeline.ir import Flow, Group, Meter
from controller.pipeline.state import ChangeSet, NodeState, diff


@dataclass
class Installed:
    """What a switch reported: Tenet flows (with the round each carries), groups, meters, and the rest."""

    flows: list[tuple[Flow, int]] = field(default_factory=list)
    groups: list[Group] = field(default_factory=list)
    meters: list[Meter] = field(default_factory=list)
    foreign_flows: list[Any] = field(default_factory=list)  # raw os-ken flow stats Tenet cannot read: delete
    foreign_groups: list[int] = field(default_factory=list)
    foreign_meters: list[int] = field(default_factory=list)
    # Flow-stats bodies not decoded yet ((buffer, start, end) of each reply), and the desired flows
    # `dump_compare.resolve` found on the switch byte for byte: installed as desired, in the current round.
    raw_flows: list[tuple[bytes, int, int]] = field(default_factory=list)
    verified: list[Flow] = field(default_factory=list)

    def rounds(self) -> set[int]:
        return {round_ for _, round_ in self.flows}


@dataclass
class Plan:
    """Operations in sending order: meters and groups, then one bundle of flow changes, then removals."""

    meter_adds: list[Meter] = field(default_factory=list)
    meter_mods: list[Meter] = field(default_factory=list)
    group_adds: list[Group] = field(default_factory=list)
    group_mods: list[Group] = field(default_factory=list)
    flow_deletes: list[Flow] = field(default_factory=list)
    foreign_flow_deletes: list[Any] = field(default_factory=list)
    flow_adds: list[Flow] = field(default_factory=list)  # adds and changed flows alike
    round_deletes: list[tuple[int, int]] = field(default_factory=list)  # (cookie, mask) of old rounds
    group_deletes: list[int] = field(default_factory=list)
    meter_deletes: list[int] = field(default_factory=list)
    ct_flush_zones: list[int] = field(default_factory=list)  # after the flows: a deleted network's zones

    def flow_mod_count(self) -> int:
        return len(self.flow_deletes) + len(self.foreign_flow_deletes) + len(self.flow_adds) + len(self.round_deletes)

    def __len__(self) -> int:
        return (
            self.flow_mod_count()
            + len(self.meter_adds)
            + len(self.meter_mods)
            + len(self.group_adds)
            + len(self.group_mods)
            + len(self.group_deletes)
            + len(self.meter_deletes)
            + len(self.ct_flush_zones)
        )


def from_changes(changes: ChangeSet) -> Plan:
    """A compiler change set as a plan (the switch is assumed to hold the previous desired state)."""
    return Plan(
        meter_adds=list(changes.meter_adds),
        meter_mods=list(changes.meter_mods),
        group_adds=list(changes.group_adds),
        group_mods=list(changes.group_mods),
        flow_deletes=list(changes.flow_deletes),
        flow_adds=[*changes.flow_adds, *changes.flow_mods],
        group_deletes=[g.group_id for g in changes.group_deletes],
        meter_deletes=[m.meter_id for m in changes.meter_deletes],
        ct_flush_zones=list(changes.ct_flush_zones),
    )


def reconcile(desired: NodeState, installed: Installed, *, round_: int) -> Plan:
    """The plan that turns what the switch reported into `desired`, sending nothing already right."""
    old_rounds = sorted(installed.rounds() - {round_})
    current = [flow for flow, r in installed.flows if r == round_]
    wanted = desired
    if installed.verified:  # installed as desired: the same on both sides, so out of the diff
        rest: list[Flow] = []
        if len(installed.verified) < desired.flow_count():
            verified = set(map(id, installed.verified))
            rest = [flow for flow in desired.flows() if id(flow) not in verified]
        wanted = NodeState.flat(rest, desired.groups().values(), desired.meters().values())
    changes = diff(wanted, NodeState.flat(current, installed.groups, installed.meters))
    plan = from_changes(changes)
    if old_rounds:
        # Re-add everything in the new round; the old rounds go by mask in the same bundle.
        plan.flow_adds = list(desired.flows())
        plan.flow_deletes = []
        plan.round_deletes = [(r << ROUND_SHIFT, ROUND_MASK) for r in old_rounds]
    plan.foreign_flow_deletes = list(installed.foreign_flows)
    plan.group_deletes += installed.foreign_groups
    plan.meter_deletes += installed.foreign_meters
    return plan


def port_mismatches(planned: dict[str, int], actual: dict[str, int]) -> list[str]:
    """Ports the switch numbered other than planned: their flows point at the wrong port until fixed."""
    return [
        f"port {name} is OpenFlow port {actual[name]} on the switch, but flows use {ofport}"
        for name, ofport in sorted(planned.items())
        if name in actual and actual[name] != ofport
    ]


# OFPPC_NO_RECV | OFPPC_NO_FWD (OpenFlow 1.3.5, 7.2.1 "Port Structures", ofp_port_config): the port drops what it
# receives, and what the flows send to it. Set with OFPT_PORT_MOD; ovs-vswitchd honours both on every datapath.
PORT_GUARD = (1 << 2) | (1 << 5)


def port_guards(
    planned: dict[str, int],
    ports: Iterable[tuple[str, int, int]],
    *,
    opening: bool | Container[str] = True,
    disputed: Collection[str] = (),
) -> list[tuple[str, int, bool]]:
    """The ports of a switch whose guard must be set: (name, number, guarded) for each.

    `planned`: port name -> the OpenFlow port number the flows give it (`Model.planned_ports`); `ports`:
    (name, number, config) of each port on the switch, `config` its ofp_port_config bits as last set. The
    flows name ports by number only, so a port is bound when the plan gives its very name its very number;
    any other port (a pod's port whose endpoint is gone, one OVS numbered otherwise, one no one planned) is
    guarded (PORT_GUARD): it neither sends into the pipeline nor gets what the flows send to its number,
    which may already be a new endpoint's. A bound port with any guard bit keeps its guard unless `opening`
    (True, or the names of the ports that may open: a port opens once the switch holds its endpoint's
    flows). A port in `disputed` (a port status said other bits than were set) gets what it should have
    again, even if that is what was set.
    """
    changes = []
    for name, number, config in ports:
        opens = opening if isinstance(opening, bool) else name in opening
        guard = planned.get(name) != number or (bool(config & PORT_GUARD) and not opens)
        if name in disputed or config & PORT_GUARD != (PORT_GUARD if guard else 0):
            changes.append((name, number, guard))
    return changes
