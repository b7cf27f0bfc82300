"""A switch's state as sections, and the ordered change set between two states.

A section is what one object (an endpoint, a network, a QoS attachment) contributes to one switch; all its
flows carry the section's cookie. Sections are shared between switches wherever their content is the
same, so comparing two states skips every section that is the very same object on both sides.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from controller.pipeline.ir import Flow, Group, Meter

FLAT = -1  # section key for state read back from a switch, where flows are not grouped by object


@dataclass(frozen=True, eq=False)
class Section:
    cookie: int
    flows: tuple[Flow, ...] = ()
    groups: tuple[Group, ...] = ()
    meters: tuple[Meter, ...] = ()


EMPTY_SECTION = Section(0)


@dataclass
class NodeState:
    sections: dict[int, Section] = field(default_factory=dict)

    @classmethod
    def flat(cls, flows: Iterable[Flow] = (), groups: Iterable[Group] = (), meters: Iterable[Meter] = ()) -> NodeState:
        return cls({FLAT: Section(FLAT, tuple(flows), tuple(groups), tuple(meters))})

    def flows(self) -> Iterator[Flow]:
        for section in self.sections.values():
            yield from section.flows

    def groups(self) -> dict[int, Group]:
        return {g.group_id: g for s in self.sections.values() for g in s.groups}

    def meters(self) -> dict[int, Meter]:
        return {m.meter_id: m for s in self.sections.values() for m in s.meters}

    def flow_count(self) -> int:
        return sum(len(s.flows) for s in self.sections.values())

    def same_as(self, other: NodeState) -> bool:
        return not diff(self, other)


@dataclass
class ChangeSet:
    """What to send to turn `installed` into `desired`, in the order it must be sent.

    Change sets returned by the compiler may be shared between nodes: treat them as read-only.
    """

    flow_deletes: list[Flow] = field(default_factory=list)
    group_deletes: list[Group] = field(default_factory=list)
    meter_deletes: list[Meter] = field(default_factory=list)
    meter_adds: list[Meter] = field(default_factory=list)
    meter_mods: list[Meter] = field(default_factory=list)
    group_adds: list[Group] = field(default_factory=list)
    group_mods: list[Group] = field(default_factory=list)
    flow_adds: list[Flow] = field(default_factory=list)
    flow_mods: list[Flow] = field(default_factory=list)
    # conntrack zones to flush after the flow changes (a deleted network's): its state must not outlive it
    ct_flush_zones: list[int] = field(default_factory=list)

    ORDER = (
        ("delete", "flow", "flow_deletes"),
        ("delete", "group", "group_deletes"),
        ("delete", "meter", "meter_deletes"),
        ("add", "meter", "meter_adds"),
        ("modify", "meter", "meter_mods"),
        ("add", "group", "group_adds"),
        ("modify", "group", "group_mods"),
        ("add", "flow", "flow_adds"),
        ("modify", "flow", "flow_mods"),
    )

    def ops(self) -> Iterator[tuple[str, str, Flow | Group | Meter]]:
        """(command, kind, object): flow deletes first, then meters and groups, then flow adds and modifies.

        Groups and meters come before the flows that use them; a group is deleted only after the flows that
        pointed at it (OVS would otherwise delete those flows with it).
        """
        for command, kind, name in self.ORDER:
            for item in getattr(self, name):
                yield command, kind, item

    def __len__(self) -> int:
        return (
            len(self.flow_deletes)
            + len(self.group_deletes)
            + len(self.meter_deletes)
            + len(self.meter_adds)
            + len(self.meter_mods)
            + len(self.group_adds)
            + len(self.group_mods)
            + len(self.flow_adds)
            + len(self.flow_mods)
            + len(self.ct_flush_zones)
        )

    def __bool__(self) -> bool:
        return bool(
            self.flow_deletes
            or self.flow_adds
            or self.flow_mods
            or self.group_deletes
            or self.group_adds
            or self.group_mods
            or self.meter_deletes
            or self.meter_adds
            or self.meter_mods
            or self.ct_flush_zones
        )

    @classmethod
    def combine(cls, parts: Iterable[ChangeSet]) -> ChangeSet:
        """One change set holding all the parts' changes, in the right order (a part alone: itself)."""
        parts = [part for part in parts if part]
        if len(parts) == 1:
            return parts[0]
        result = cls()
        for _, _, name in cls.ORDER:
            target = getattr(result, name)
            for part in parts:
                target.extend(getattr(part, name))
        for part in parts:
            result.ct_flush_zones.extend(zone for zone in part.ct_flush_zones if zone not in result.ct_flush_zones)
        return result

    def summary(self) -> dict[str, int]:
        return {name: len(getattr(self, name)) for _, _, name in self.ORDER if getattr(self, name)}


def diff(desired: NodeState, installed: NodeState) -> ChangeSet:
    """The change set that makes `installed` equal `desired`; empty when they are equal.

    A flow whose table, priority and match stay but whose actions or cookie change is one modify.
    """
    changes = ChangeSet()
    _fill(changes, *_collect(desired, installed))
    return changes


def diff_sections(new: Section | None, old: Section | None) -> ChangeSet:
    """The change set for one section replacing another (None: absent)."""
    changes = ChangeSet()
    diff_into(changes, new, old)
    return changes


def diff_into(changes: ChangeSet, new: Section | None, old: Section | None) -> None:
    """Append to `changes` what replaces section `old` with `new` (None: absent), as `diff_sections`."""
    if new is None and old is not None and not old.groups and not old.meters:
        changes.flow_deletes.extend(old.flows)  # a section gone: every flow of it
        return
    if old is None and new is not None and not new.groups and not new.meters:
        changes.flow_adds.extend(new.flows)  # a new section: every flow of it
        return
    new, old = new or EMPTY_SECTION, old or EMPTY_SECTION
    if len(new.flows) == 1 == len(old.flows) and not (new.groups or old.groups or new.meters or old.meters):
        after, before = new.flows[0], old.flows[0]  # a section of one flow (a peer's policy clause): no sets
        if after != before:
            if after.key == before.key:
                changes.flow_mods.append(after)
            else:
                changes.flow_deletes.append(before)
                changes.flow_adds.append(after)
        return
    _fill(changes, new.flows, old.flows, new.groups, old.groups, new.meters, old.meters)


def _collect(desired: NodeState, installed: NodeState) -> tuple[list, list, list, list, list, list]:
    want_f: list[Flow] = []
    have_f: list[Flow] = []
    want_g: list[Group] = []
    have_g: list[Group] = []
    want_m: list[Meter] = []
    have_m: list[Meter] = []
    for key in desired.sections.keys() | installed.sections.keys():
        new, old = desired.sections.get(key), installed.sections.get(key)
        if new is old:
            continue
        for section, flows, groups, meters in ((new, want_f, want_g, want_m), (old, have_f, have_g, have_m)):
            if section is not None:
                flows.extend(section.flows)
                groups.extend(section.groups)
                meters.extend(section.meters)
    return want_f, have_f, want_g, have_g, want_m, have_m


def _fill(changes: ChangeSet, want_f, have_f, want_g, have_g, want_m, have_m) -> None:
    removed: dict = {}  # by key; empty when every installed flow is still wanted (a growing section)
    if len(want_f) == len(have_f) + 1 and isinstance(want_f, tuple) and want_f[:-1] == have_f:
        # One flow appended to a section (an endpoint added to a network): the old flows are the very same
        # objects, compared by identity in C, not hashed one by one.
        added = [] if want_f[-1] in have_f else [want_f[-1]]
    else:
        have = set(have_f)
        added = [f for f in want_f if f not in have]
        if len(want_f) - len(added) != len(have_f):
            want = set(want_f)
            removed = {f.key: f for f in have_f if f not in want}
    for flow in added:
        if removed.pop(flow.key, None) is not None:
            changes.flow_mods.append(flow)
        else:
            changes.flow_adds.append(flow)
    changes.flow_deletes.extend(removed.values())
    _fill_by_id(want_g, have_g, "group_id", changes.group_adds, changes.group_mods, changes.group_deletes)
    _fill_by_id(want_m, have_m, "meter_id", changes.meter_adds, changes.meter_mods, changes.meter_deletes)


def _fill_by_id(want: list, have: list, attr: str, adds: list, mods: list, deletes: list) -> None:
    if not want and not have:
        return
    old = {getattr(x, attr): x for x in have}
    new = {getattr(x, attr): x for x in want}
    for key, item in new.items():
        if key not in old:
            adds.append(item)
        elif old[key] != item:
            mods.append(item)
    deletes.extend(item for key, item in old.items() if key not in new)


def apply(changes: ChangeSet, state: NodeState) -> NodeState:
    """What a switch holding `state` holds after receiving `changes` (flat): adds replace, deletes are strict."""
    flows = {f.key: f for f in state.flows()}
    groups, meters = state.groups(), state.meters()
    for command, _kind, item in changes.ops():
        if isinstance(item, Flow):
            if command == "delete":
                flows.pop(item.key, None)
            else:
                flows[item.key] = item
        elif isinstance(item, Group):
            if command == "delete":
                groups.pop(item.group_id, None)
            else:
                groups[item.group_id] = item
        elif command == "delete":
            meters.pop(item.meter_id, None)
        else:
            meters[item.meter_id] = item
    return NodeState.flat(flows.values(), groups.values(), meters.values())
