"""CNI benchmark: ADD then DEL N pods through `tenet-cni`, and the same N pods through the reference plugins.

    python -m bench.cni --pods 20 --concurrency 1 --json

Tenet: a `tenet-controller` process, an OVS node (userspace br-int) with `tenet-agent` in the node's
namespace, and the installed `tenet-cni` launcher. The peer, in the same run: Debian's `bridge` plugin with
`host-local` IPAM (a Linux bridge, isGateway true, ipMasq false, host-local's dataDir in the run's temporary
directory) in a node namespace of its own. Both are run the same way: exec'd as a runtime does (``CNI_*``
environment, cniVersion 1.0.0 configuration on stdin, prevResult on DEL) from a thread in the node's
namespace, `--concurrency` at a time, into pod namespaces made before the clock starts; each exec is timed
from spawn to exit. One pod per plugin is added first, untimed: it warms the path up and is the pod every
new pod pings (`ping -c 1 -W 1`) as soon as its ADD returns. Prints p50/p99 of ADD and DEL for both, the
tenet/bridge ratios of the ADD and DEL p50s, the share of Tenet ADDs after which the pod answered at once
(target 100%), and the agent's own time per request from its log, with the p50 of each step of its ADD
(endpoint POST, what the veth pair made meanwhile took beyond it, OVSDB port, readiness, what the pod end's
addresses set meanwhile took beyond it, gratuitous ARP). CPU per ADD, which a shared 2-core machine makes
far steadier than the times: the whole machine's busy time during each side's timed ADDs (its pings
included), per pod (`machine_cpu_ms_per_add`, `cpu_per_add_ratio` tenet/bridge), and Tenet's part of it by
process (`tenet_cpu_ms_per_add`: agent with its `ovs-ofctl`/`ovs-appctl` children, controller, ovs-vswitchd,
ovsdb-server; the rest is the plugin, the pings and the kernel; /proc counts in 10 ms ticks, so take more pods
for finer figures), with ovs-vswitchd's coverage counters per ADD (`tenet_vswitchd_per_add`:
`bridge_reconfigure`, its passes over every port, and `netlink_sent`, its netlink requests; README
"Benchmarks" says why they count). `--repeat N`: N paired rounds, each with a node of its own; the medians of
each figure and of the rounds' ratios. `tenet_plugin` says which plugin ran.

Target: Tenet's ADD p50 at most 1.5x the bridge plugin's, at concurrency 1 and at concurrency 8. `tenet-cni` is
installed as `tenet-agent install-cni` installs it: compiled when a C compiler is found (cni/install.py).
Needs root. Everything made (namespaces, the bridge, OVS, processes) is removed at the end, on failure too.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.signals import clean_up_on_signals
from bench.stats import median_of_rounds, ms, percentile
from bench.switch import free_index
from cni.install import describe
from lab.cni import Namespaces, Network, PluginCall, TenetNode, enter_netns, exec_plugin
from lab.ovs import sh

TARGET_ADD_RATIO = 1.5
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")  # the unit of /proc's CPU times
REFERENCE_PLUGINS = Path("/usr/lib/cni")
TENET_NETWORK = Network("bench", "pods", 7001, "10.200.0.0/16")
BRIDGE_SUBNET = "10.201.0.0/16"


@dataclass(frozen=True)
class Pod:
    name: str  # its network namespace
    container: str

    @property
    def netns(self) -> str:
        return f"/var/run/netns/{self.name}"


@dataclass
class Side:
    """One plugin as a runtime on its node calls it."""

    name: str
    plugin: Path
    config: dict[str, Any]
    cni_path: str
    node_netns: str  # the runtime's (and so the plugin's) network namespace

    def call(self, command: str, pod: Pod, prev: dict[str, Any] | None = None) -> PluginCall:
        config = self.config if prev is None else {**self.config, "prevResult": prev}
        done = exec_plugin(
            self.plugin, command, config, container=pod.container, netns=pod.netns, cni_path=self.cni_path
        )
        if done.code != 0:
            raise RuntimeError(f"{self.name} {command} {pod.name}: exit {done.code}: {done.out} {done.stderr[-2000:]}")
        return done

    def pool(self, workers: int) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(workers, initializer=enter_netns, initargs=(self.node_netns,))


@dataclass
class Run:
    add_s: list[float]
    del_s: list[float]
    answered: int  # pods that answered a ping right after their ADD


def pings(pod: Pod, address: str) -> bool:
    done = subprocess.run(
        ["ip", "netns", "exec", pod.name, "ping", "-c", "1", "-W", "1", address],
        capture_output=True,
        timeout=15,
        check=False,
    )
    return done.returncode == 0


def process_cpu_ms(pid: int) -> float:
    """CPU time process `pid` and its children have used, ms: its own (user + system, all its threads, the
    exited ones too), its reaped children's and its running children's, theirs counted alike (proc(5),
    /proc/PID/stat fields 14-17; the agent's `ovs-ofctl monitor` and `ovs-appctl` runs are its children)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        tasks = list(Path(f"/proc/{pid}/task").glob("*/children"))
    except OSError:  # a child that ended meanwhile (ENOENT, or ESRCH once reaped): its time is its parent's now
        return 0.0
    used = sum(int(value) for value in fields[11:15]) * 1000 / CLOCK_TICKS
    for task in tasks:
        try:
            children = task.read_text().split()
        except OSError:  # that thread ended
            continue
        used += sum(process_cpu_ms(int(child)) for child in children)
    return used


VSWITCHD_COUNTERS = ("bridge_reconfigure", "netlink_sent")


def vswitchd_counters(appctl: Callable[..., str]) -> dict[str, int]:
    """ovs-vswitchd's VSWITCHD_COUNTERS, totals since it started (`ovs-appctl coverage/read-counter NAME`)."""
    return {name: int(appctl("coverage/read-counter", name).strip()) for name in VSWITCHD_COUNTERS}


def machine_busy_ms() -> float:
    """CPU time all cores have spent busy since boot, ms: /proc/stat's first line, all but idle and iowait."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = (
        int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    )
    return (user + nice + system + irq + softirq + steal) * 1000 / CLOCK_TICKS


def address_of(result: dict[str, Any]) -> str:
    return result["ips"][0]["address"].split("/")[0]


def parallel(pool: ThreadPoolExecutor, work: Callable[[Pod], Any], pods: list[Pod]) -> list[Any]:
    futures = [pool.submit(work, pod) for pod in pods]
    try:
        return [future.result() for future in futures]
    finally:
        for future in futures:
            future.cancel()


def measure_side(
    side: Side, anchor: Pod, pods: list[Pod], concurrency: int, on_phase: Callable[[str], None] | None = None
) -> Run:
    """Anchor pod (untimed), then the timed ADDs (each followed by its ping), then the timed DELs;
    `on_phase` hears "ADD", "DEL" and "end" as each timed phase starts and the last one ends."""
    pool = side.pool(concurrency)
    try:
        anchor_result = pool.submit(side.call, "ADD", anchor).result().out
        target = address_of(anchor_result)

        def add(pod: Pod) -> tuple[PluginCall, bool]:
            done = side.call("ADD", pod)
            return done, pings(pod, target)

        if on_phase:
            on_phase("ADD")
        added = dict(zip(pods, parallel(pool, add, pods), strict=True))
        if on_phase:
            on_phase("DEL")
        deleted = parallel(pool, lambda pod: side.call("DEL", pod, prev=added[pod][0].out), pods)
        if on_phase:
            on_phase("end")
        pool.submit(side.call, "DEL", anchor, anchor_result).result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return Run(
        add_s=[done.seconds for done, _ in added.values()],
        del_s=[done.seconds for done in deleted],
        answered=sum(answered for _, answered in added.values()),
    )


def measure(pods: int, concurrency: int) -> dict[str, Any]:
    state = Path(tempfile.mkdtemp(prefix="tenet-bench-cni-"))
    tag = f"{os.getpid() % 100000}"
    with ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, state, ignore_errors=True)
        namespaces = Namespaces()
        cleanup.callback(namespaces.close)

        # Tenet: controller, OVS node and agent, started before either side is measured.
        (state / "tenet").mkdir()
        tenet = TenetNode(state / "tenet", [TENET_NETWORK], name="bench", index=free_index(7))
        tenet.start()
        cleanup.callback(tenet.close)
        plugin_kind = describe(tenet.plugin)

        # The bridge plugin's node: a namespace of its own, so its bridge, its forwarding sysctl and any
        # rule it writes live and die there; the bridge is deleted explicitly too.
        bridge_node = f"tbn{tag}"
        bridge_name = f"tbr{tag}"
        bridge_netns = namespaces.add(bridge_node, lo_up=True)
        cleanup.callback(sh, "ip", "netns", "exec", bridge_node, "ip", "link", "del", bridge_name, check=False)
        bridge = Side(
            "bridge",
            REFERENCE_PLUGINS / "bridge",
            {
                "cniVersion": "1.0.0",
                "name": f"bench-bridge-{tag}",
                "type": "bridge",
                "bridge": bridge_name,
                "isGateway": True,
                "ipMasq": False,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": BRIDGE_SUBNET}]],
                    "dataDir": str(state / "host-local"),
                },
            },
            str(REFERENCE_PLUGINS),
            bridge_netns,
        )
        tenet_side = Side("tenet", tenet.plugin, tenet.net_config(), str(tenet.plugin.parent), tenet.netns_path)

        def make_pods(kind: str) -> tuple[Pod, list[Pod]]:
            made = [Pod(f"tbp{tag}{kind}{i}", f"{kind}{i:05d}-{tag}-bench") for i in range(pods + 1)]
            for pod in made:  # before the clock starts
                namespaces.add(pod.name)
            return made[0], made[1:]

        bridge_anchor, bridge_pods = make_pods("b")
        tenet_anchor, tenet_pods = make_pods("t")

        busy: dict[tuple[str, str], float] = {}  # (side, phase) -> the machine's busy ms when the phase started
        bridge_run = measure_side(
            bridge,
            bridge_anchor,
            bridge_pods,
            concurrency,
            on_phase=lambda phase: busy.__setitem__(("bridge", phase), machine_busy_ms()),
        )
        if not sh("ip", "netns", "exec", bridge_node, "ip", "-o", "link", "show", bridge_name, check=False):
            raise RuntimeError(f"the bridge plugin made no {bridge_name} in namespace {bridge_node}")
        rules = sh("ip", "netns", "exec", bridge_node, "iptables-save", check=False)
        bridge_rules = sum(1 for line in rules.splitlines() if line.startswith("-A"))

        marks: dict[str, int] = {}
        daemons = tenet.pids()
        used: dict[str, dict[str, float]] = {}  # phase -> daemon -> its CPU ms when the phase started
        counted: dict[str, dict[str, int]] = {}  # phase -> ovs-vswitchd's coverage counters when it started

        def tenet_phase(phase: str) -> None:
            busy["tenet", phase] = machine_busy_ms()
            used[phase] = {name: process_cpu_ms(pid) for name, pid in daemons.items()}
            counted[phase] = vswitchd_counters(tenet.node.appctl)
            marks[phase] = len(tenet.agent.log_text())

        tenet_run = measure_side(tenet_side, tenet_anchor, tenet_pods, concurrency, on_phase=tenet_phase)
        agent_add = tenet.agent.request_ms("ADD", marks["ADD"])
        agent_del = tenet.agent.request_ms("DEL", marks["DEL"])
        add_steps = tenet.agent.step_ms("ADD", marks["ADD"], marks["DEL"])
        left = tenet.leftovers()
        if any(left.values()):
            raise RuntimeError(f"Tenet's DELs left {left}")

    def stats(prefix: str, run: Run) -> dict[str, float]:
        return {
            f"{prefix}_add_p50_ms": ms(percentile(run.add_s, 0.5)),
            f"{prefix}_add_p99_ms": ms(percentile(run.add_s, 0.99)),
            f"{prefix}_del_p50_ms": ms(percentile(run.del_s, 0.5)),
            f"{prefix}_del_p99_ms": ms(percentile(run.del_s, 0.99)),
        }

    per_add = {side: (busy[side, "DEL"] - busy[side, "ADD"]) / pods for side in ("tenet", "bridge")}
    add_ratio = percentile(tenet_run.add_s, 0.5) / percentile(bridge_run.add_s, 0.5)
    del_ratio = percentile(tenet_run.del_s, 0.5) / percentile(bridge_run.del_s, 0.5)
    return {
        "pods": pods,
        "concurrency": concurrency,
        **stats("tenet", tenet_run),
        **stats("bridge", bridge_run),
        "add_p50_ratio": round(add_ratio, 2),  # tenet / bridge
        "del_p50_ratio": round(del_ratio, 2),
        "add_p50_ratio_target": TARGET_ADD_RATIO,
        "meets_target": add_ratio <= TARGET_ADD_RATIO,
        "tenet_ping_at_once": round(tenet_run.answered / pods, 3),  # target 1.0
        "bridge_ping_at_once": round(bridge_run.answered / pods, 3),
        "tenet_agent_add_p50_ms": percentile(agent_add, 0.5) if agent_add else None,  # the agent's own time
        "tenet_agent_del_p50_ms": percentile(agent_del, 0.5) if agent_del else None,
        # the agent's ADD step by step (endpoint POST, veth, OVS port, readiness wait, pod end, ARP), p50 of each
        **{f"tenet_agent_add_{step}_p50_ms": percentile(values, 0.5) for step, values in add_steps.items()},
        # CPU per ADD (its ping included), ms: the machine's for each side, and Tenet's daemons' part of it
        "machine_cpu_ms_per_add": {side: round(value, 1) for side, value in per_add.items()},
        "cpu_per_add_ratio": round(per_add["tenet"] / per_add["bridge"], 2) if per_add["bridge"] > 0 else None,
        "tenet_cpu_ms_per_add": {name: round((used["DEL"][name] - used["ADD"][name]) / pods, 2) for name in daemons},
        "tenet_vswitchd_per_add": {
            name: round((counted["DEL"][name] - counted["ADD"][name]) / pods, 2) for name in VSWITCHD_COUNTERS
        },
        "tenet_plugin": plugin_kind,  # "compiled", or "Python launcher" where no C compiler is
        "bridge_iptables_rules": bridge_rules,  # in its node namespace after the DELs (ipMasq false: 0)
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cni", description=__doc__.split("\n\n")[0])
    parser.add_argument("--pods", type=int, default=20, help="pods to ADD then DEL through each plugin")
    parser.add_argument("--concurrency", type=int, default=1, help="plugin execs running at once")
    parser.add_argument(
        "--repeat", type=int, default=1, help="paired rounds (both plugins each round); print the medians"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if args.pods < 1 or args.concurrency < 1 or args.repeat < 1:
        parser.error("--pods, --concurrency and --repeat must be at least 1")
    if os.geteuid() != 0:
        parser.error("needs root (network namespaces, Open vSwitch)")

    clean_up_on_signals()
    result = median_of_rounds([measure(args.pods, args.concurrency) for _ in range(args.repeat)])
    result["meets_target"] = result["add_p50_ratio"] <= TARGET_ADD_RATIO
    print(json.dumps(result) if args.json else "\n".join(f"{k:>24}: {v}" for k, v in result.items()))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
