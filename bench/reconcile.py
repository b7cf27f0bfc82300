"""Reconcile benchmark: a switch holding N correct flows reconnects; then one flow is wrong.

    python -m bench.reconcile --flows 50000 --json

Prints the time from the reconnect to the switch being in sync and the messages sent (the target is no
flow-mod at all), then the same with one flow changed behind the controller's back (exactly one), and,
as the peer, how long `ovs-ofctl dump-flows` takes to read the same table, with the ratio of the two.
Needs root. `--repeat N`: the median of N rounds.
"""

from __future__ import annotations

import re
import time

from bench.switch import Bench, run_flows_benchmark, running, timed
from lab.ovs import wait_for

FLOWS_PER_ENDPOINT = 6  # classify, two port security, ARP answer, host route, L2 delivery


def reconnect(bench: Bench) -> tuple[float, dict]:
    before = bench.app.connections.get(bench.session().dp.id, 0)
    started = time.perf_counter()
    bench.node.appctl("bridge/reconnect", "br-int")

    def synced() -> dict | None:
        status = bench.app.status("bench")
        return status if status.get("in_sync") and status.get("connections", 0) > before else None

    status = wait_for(synced, "the reconcile after reconnecting", timeout=600, interval=0.01)
    return time.perf_counter() - started, status


def spoil_one_flow(bench: Bench) -> None:
    """Change one flow's actions on the switch, keeping its match and priority."""
    dump = bench.node.ofctl("dump-flows", "--no-stats").splitlines()
    line = next(text for text in dump if "table=7" in text and "reg3" in text)
    flow = re.sub(r"^\s*cookie=\S+\s*", "", line)
    match, _ = flow.split(" actions=")
    bench.node.ofctl("--strict", "mod-flows", f"{match.replace(' ', '')},actions=drop")


def measure(flows: int) -> dict:
    with running(max(1, flows // FLOWS_PER_ENDPOINT)) as bench:
        total = bench.switch_flow_count()
        correct_s, correct = reconnect(bench)
        spoil_one_flow(bench)
        _, changed = reconnect(bench)
        dump_s = timed(lambda: bench.node.ofctl("dump-flows"))
    return {
        "flows": total,
        "converge_s": correct["converge_ms"] / 1000,  # from the switch connecting to in sync
        "reconnect_steps_ms": correct["reconcile_ms"],  # dump, compile, diff, push
        "reconnect_wall_s": round(correct_s, 3),  # with OVS's own reconnect delay
        "reconnect_flow_mods": correct["last_push"]["flow_mods"],
        "reconnect_verified_flows": correct.get("verified_flows"),  # compared as bytes, not decoded
        "reconnect_messages": correct["last_push"]["messages"],
        "one_changed_converge_s": changed["converge_ms"] / 1000,
        "one_changed_flow_mods": changed["last_push"]["flow_mods"],
        "ovs_ofctl_dump_s": round(dump_s, 3),
        # the reconnect of a correct switch over ovs-ofctl's dump of the same table (target: at most 1.25)
        "converge_to_dump_ratio": round(correct["converge_ms"] / 1000 / dump_s, 3),
    }


if __name__ == "__main__":
    run_flows_benchmark("bench.reconcile", __doc__, measure, flows_help="about this many flows on the switch")
