"""Does a switch hold exactly what it should? A fresh dump compared with the compiled state, item by item.

`compare` is pure: the desired `NodeState` and what a switch reported (`reconcile.Installed`, read by the
reconcile's own reader, `controller.openflow.flow_stats`) in, a `Verification` out, listing every missing,
extra and different flow, group and meter as `ovs-ofctl` text (tables by name, as `tenetctl flows` shows
them). A flow of another cookie round, or one Tenet cannot read at all, is extra: the switch should not
hold it. Counters and durations are not compared: they are not state.

`check` runs on the switch session's own thread, so it sees the switch after every change set queued
before it; it compiles the desired state and dumps the switch with no change in between (it retries
when the model changed during the dump), so a difference it reports is one the switch really has. It
only reads: repairing is the reconcile's job (on reconnect) and never happens as a side effect of looking.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from os_ken.lib import ofctl_v1_3

from controller.app.reconcile import Installed
from controller.openflow.ofctl import flow_text, group_text, meter_text
from controller.pipeline.state import NodeState
from controller.pipeline.tables import PIPELINE

ATTEMPTS = 5  # dumps tried while the model keeps changing under them

T = TypeVar("T")


@dataclass
class Verification:
    """The differences between a switch and its desired state, each item as ovs-ofctl text.

    `different` pairs (want, have) for a flow of the same table, priority and match (a group, a meter of
    the same id) whose instructions or cookie differ.
    """

    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    different: list[tuple[str, str]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # what the switch holds: flows, groups, meters

    @property
    def in_sync(self) -> bool:
        return not (self.missing or self.extra or self.different)

    def as_json(self) -> dict[str, Any]:
        return {
            "checked": True,
            "in_sync": self.in_sync,
            "missing": self.missing,
            "extra": self.extra,
            "different": [{"want": want, "have": have} for want, have in self.different],
            "switch_counts": self.counts,
        }


def compare(desired: NodeState, installed: Installed, *, round_: int) -> Verification:
    """Every difference between `desired` and what a switch reported, the switch's cookie round `round_`."""
    result = Verification()
    want = {flow.key: flow for flow in desired.flows()}
    seen = set()
    for flow, flow_round in installed.flows:
        target = want.get(flow.key) if flow_round == round_ else None
        if target is None:
            result.extra.append(flow_text(flow, round_=flow_round))
        elif target != flow:
            result.different.append((flow_text(target, round_=round_), flow_text(flow, round_=flow_round)))
            seen.add(flow.key)
        else:
            seen.add(flow.key)
    result.missing += [flow_text(flow, round_=round_) for key, flow in want.items() if key not in seen]
    result.extra += [foreign_flow_text(stats) for stats in installed.foreign_flows]
    groups = {g.group_id: g for g in installed.groups}
    _compare_items(result, "group", desired.groups(), groups, installed.foreign_groups, group_text)
    meters = {m.meter_id: m for m in installed.meters}
    _compare_items(result, "meter", desired.meters(), meters, installed.foreign_meters, meter_text)
    result.counts = {
        "flows": len(installed.flows) + len(installed.foreign_flows),
        "groups": len(installed.groups) + len(installed.foreign_groups),
        "meters": len(installed.meters) + len(installed.foreign_meters),
    }
    return result


def _compare_items(
    result: Verification,
    kind: str,
    wanted: Mapping[int, T],
    have: Mapping[int, T],
    foreign: Sequence[int],
    render: Callable[[T], str],
) -> None:
    """Add the groups or meters (`kind`) missing, different and extra on the switch to `result`."""
    for item_id, item in sorted(wanted.items()):
        if item_id not in have:
            result.missing.append(render(item))
        elif have[item_id] != item:
            result.different.append((render(item), render(have[item_id])))
    result.extra += [render(have[i]) for i in sorted(have.keys() - wanted.keys())]
    result.extra += [f"{kind}_id={i} (a {kind} Tenet does not write)" for i in sorted(foreign)]


def foreign_flow_text(stats: Any) -> str:
    """A flow Tenet's IR cannot express (os-ken's OFPFlowStats), as near ovs-ofctl text as os-ken says it."""
    head = [f"cookie={stats.cookie:#x}", f"table={PIPELINE.names.get(stats.table_id, stats.table_id)}"]
    head.append(f"priority={stats.priority}")
    head += [f"{name}={value}" for name, value in ofctl_v1_3.match_to_str(stats.match).items()]
    actions = ofctl_v1_3.actions_to_str(stats.instructions)
    return f"{','.join(head)} actions={','.join(str(a).lower() for a in actions) or 'drop'}"


class Unsettled(RuntimeError):
    """The model kept changing during every dump: no comparison would be fair."""


def check(service: Any, session: Any, *, round_: int, timeout: float) -> dict[str, Any]:
    """Compare the switch of `session` with its node's desired state now; the answer of `Verification.as_json`
    plus `dump_ms`. Waits up to `timeout` s for the session's thread. Raises `TimeoutError`, `Unsettled`, or
    the session's `SwitchError` when the switch does not answer."""
    done = threading.Event()
    outcome: dict[str, Any] = {}

    def attempt(left: int) -> None:
        try:
            with service.lock:  # no change set can be queued for this switch while the lock is held
                if session.queued() and left:
                    session.submit(lambda: attempt(left - 1))  # let the queued change sets go first
                    return
                desired = service.compiler.compile_node(session.node)
                sequence = service.sequence
            started = time.monotonic()
            installed = session.dump(to_repair=False)
            dump_ms = round((time.monotonic() - started) * 1000)
            with service.lock:
                if service.sequence != sequence:
                    if not left:
                        raise Unsettled("the model changed during every dump of the switch; try again")
                    session.submit(lambda: attempt(left - 1))
                    return
            outcome["result"] = {**compare(desired, installed, round_=round_).as_json(), "dump_ms": dump_ms}
        except Exception as error:  # handed to the caller, on its own thread
            outcome["error"] = error
        done.set()

    session.submit(lambda: attempt(ATTEMPTS))
    if not done.wait(timeout):
        raise TimeoutError(f"the switch of node {session.node} did not answer a dump within {timeout:.0f} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]
