"""Flow push benchmark: N distinct flows through Tenet's sending path, and through ovs-ofctl, to real OVS.

    python -m bench.flowpush --flows 50000 --json

Tenet sends them as the controller does (one ONF bundle of flow-mods, then a barrier); the peer is
`ovs-ofctl --bundle add-flows` with the same flows as text, into the same bridge, in the same run.
Needs root (a network namespace with its own Open vSwitch). `--repeat N`: the median of N paired rounds.
"""

from __future__ import annotations

import tempfile

from bench.switch import run_flows_benchmark, running, timed
from controller.app.reconcile import Plan
from controller.openflow.ofctl import flow_text
from controller.pipeline.cookies import Feature, cookie
from controller.pipeline.ir import Flow, SetField, match
from controller.pipeline.tables import PIPELINE


def synthetic_flows(count: int) -> list[Flow]:
    """Distinct L2 entries, each valid for its table: (network, MAC) -> port."""
    c = cookie(Feature.L2, 0xFFFF)
    return [
        PIPELINE.verify(
            Flow(
                "l2",
                100,
                match(reg0=0xFFFF, eth_dst=0x02_AA_00_00_00_00 | i),
                (SetField("reg3", 1000 + i % 50000),),
                goto="ingress_policy",
                cookie=c,
            )
        )
        for i in range(count)
    ]


def measure(count: int) -> dict:
    flows = synthetic_flows(count)
    with running(0) as bench:
        base = bench.switch_flow_count()
        tenet_s = timed(lambda: bench.on_session(lambda s: s.execute(Plan(flow_adds=flows), round_=1)))
        assert bench.switch_flow_count() == base + count, "Tenet's push did not land whole"
        bench.node.ofctl("del-flows", f"cookie={flows[0].cookie | 1 << 56:#x}/-1")
        assert bench.switch_flow_count() == base
        with tempfile.NamedTemporaryFile("w", suffix=".flows", delete=False) as text:
            text.writelines(flow_text(f, names=False, round_=1) + "\n" for f in flows)
        ofctl_s = timed(lambda: bench.node.ofctl("--bundle", "add-flows", text.name))
        assert bench.switch_flow_count() == base + count, "ovs-ofctl's push did not land whole"
    return {
        "flows": count,
        "tenet_s": round(tenet_s, 3),
        "tenet_flows_per_s": round(count / tenet_s),
        "ovs_ofctl_s": round(ofctl_s, 3),
        "ovs_ofctl_flows_per_s": round(count / ofctl_s),
        "ratio": round(ofctl_s / tenet_s, 3),  # Tenet's rate over ovs-ofctl's
    }


if __name__ == "__main__":
    run_flows_benchmark("bench.flowpush", __doc__, measure, flows_help="how many flows to push")
