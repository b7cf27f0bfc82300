"""What the switch benchmarks share: a real OVS node and Tenet's os-ken app in this process.

The app runs against a model with one node whose compiled state is `flows` flows; the benchmark then
drives the app's own sending path (`SwitchSession`) and compares with `ovs-ofctl` in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.signals import clean_up_on_signals
from bench.stats import median_of_rounds
from controller import records
from controller.app.osken_app import Runtime, TenetApp
from controller.app.session import SwitchSession
from controller.service import Service
from controller.store.base import Put
from controller.store.sqlite import SqliteStore
from lab.ovs import OvsNode, sh, wait_for
from topology.model import Model

DPID = 0xBE4C


@dataclass
class Bench:
    node: OvsNode
    service: Service
    app: TenetApp

    def session(self) -> SwitchSession:
        return next(s for s in self.app.sessions.values() if s.node == "bench")

    def switch_flow_count(self) -> int:
        return int(self.node.ofctl("dump-aggregate").split("flow_count=")[1].split()[0])

    def on_session(self, work) -> None:
        """Run `work(session)` on the session's own thread, as the app does, and wait for it."""
        done = []
        session = self.session()
        session.submit(lambda: done.append(work(session)))
        wait_for(lambda: done, "the session to finish", timeout=900, interval=0.005)


def populate(store: SqliteStore, endpoints: int) -> None:
    """One node, one tenant, networks of 200 endpoints each: built in memory, stored in one commit."""
    model = Model()
    model.add_node("bench", tunnel_ip="192.168.99.1", datapath_id=DPID)
    model.add_tenant("t")
    for i in range(endpoints):
        net = i // 200
        if i % 200 == 0:
            model.add_network(
                "t", f"n{net}", encap="vxlan", segment=1000 + net, subnet=f"10.{net // 256}.{net % 256}.0/24"
            )
        model.add_endpoint(f"e{i}", network=f"t/n{net}", node="bench")
    store.commit([Put(key, doc) for key, doc in records.all_records(model)])


@contextmanager
def running(endpoints: int) -> Iterator[Bench]:
    from os_ken import cfg
    from os_ken.base.app_manager import AppManager

    state = Path(tempfile.mkdtemp(prefix="tenet-bench-"))
    node = OvsNode("bench", state, index=free_index(9))
    store = SqliteStore(state / "tenet.db")
    populate(store, endpoints)
    service = Service(store)
    service.restore()
    Runtime.service, Runtime.round_ = service, 1
    try:
        node.start()
        if Runtime.app is None:  # one app for every round of the process: it listens on all addresses
            cfg.CONF(args=[], project="os_ken")
            cfg.CONF.ofp_listen_host = "0.0.0.0"
            cfg.CONF.ofp_tcp_listen_port = free_port()
            manager = AppManager.get_instance()
            manager.load_apps(["controller.app.osken_app"])
            manager.instantiate_apps(**manager.create_contexts())
            Runtime.ready.wait()
        else:  # a later round: the running app serves this round's model
            Runtime.app.service = service
            service.subscribe(Runtime.app.publish)
        assert Runtime.app is not None
        node.add_bridge(DPID, cfg.CONF.ofp_tcp_listen_port)
        bench = Bench(node, service, Runtime.app)
        wait_for(lambda: bench.app.status("bench").get("in_sync"), "the first reconcile", timeout=600)
        yield bench
    finally:
        node.close()
        shutil.rmtree(state, ignore_errors=True)


def free_index(preferred: int) -> int:
    """An `OvsNode` index whose control /30 (10.254.INDEX.0) no interface of this host uses: two nodes on
    one /30 (another run's, or one a killed run left) would take each other's traffic."""
    used = sh("ip", "-o", "-4", "addr", "show")
    for index in [preferred, *range(10, 250)]:
        if f" 10.254.{index}." not in used:
            return index
    raise RuntimeError("every 10.254.X.0/30 control network is in use")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("0.0.0.0", 0))
        return probe.getsockname()[1]


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def run_flows_benchmark(prog: str, doc: str, measure: Callable[[int], dict], *, flows_help: str) -> None:
    """The command line both switch benchmarks share: --flows N [--repeat N] [--json]; then leave at once."""
    parser = argparse.ArgumentParser(prog=f"python -m {prog}", description=doc.split("\n\n")[0])
    parser.add_argument("--flows", type=int, default=10000, help=flows_help)
    parser.add_argument(
        "--repeat", type=int, default=1, help="paired rounds (Tenet and its peer each round); print the medians"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if args.flows < 1 or args.repeat < 1:
        parser.error("--flows and --repeat must be at least 1")
    clean_up_on_signals()  # a killed run removes its OVS node too
    try:
        result = median_of_rounds([measure(args.flows) for _ in range(args.repeat)])
    except KeyboardInterrupt:
        sys.stdout.flush()
        os._exit(130)  # the node is gone (running()'s finally); os-ken's threads never stop by themselves
    print(json.dumps(result) if args.json else "\n".join(f"{k:>22}: {v}" for k, v in result.items()))
    sys.stdout.flush()
    os._exit(0)  # os-ken's threads never stop by themselves
