"""QoS through real OVS meters (userspace datapath) with real TCP: iperf3 between two pods made by the real
plugin, agent and controller (root).

A profile with the default burst holds TCP between 85% and 110% of its rate, each way, at several rates.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest

from agent.service import endpoint_id
from lab.cni import Network, TenetNode, exec_plugin
from lab.ovs import Pod, sh, wait_for

RATES_KBPS = (5_000, 20_000, 100_000)


def _control_index() -> int:
    """The node's control /30 is 10.254.INDEX.0: one of this run's own, not the 10.254.1.0 other runs use."""
    return 100 + os.getpid() % 150


@pytest.fixture(scope="module")
def pods(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TenetNode, Pod, Pod]]:
    node = TenetNode(
        tmp_path_factory.mktemp("qos"),
        [Network("blue", "web", 5001, "10.1.0.0/24")],
        index=_control_index(),
    )
    names: list[str] = []
    try:
        node.start()
        made = []
        for name in ("qos-a", "qos-b"):
            sh("ip", "netns", "add", name)
            names.append(name)
            call = exec_plugin(
                node.plugin, "ADD", node.net_config(), container=f"c-{name}", netns=f"/var/run/netns/{name}"
            )
            assert call.code == 0, call
            made.append(Pod(name, name, call.out["ips"][0]["address"].split("/")[0]))
        yield node, made[0], made[1]
    finally:
        for name in names:
            sh("ip", "netns", "del", name, check=False)
        node.close()


def _iperf_kbps(client: Pod, server: Pod, *, reverse: bool) -> float:
    """TCP from `client` to `server` (from `server` to `client` if `reverse`), in kbit/s as received: 3 s
    measured after 1 s left out (slow start, and the meter's bucket full at the start)."""
    listener = server.popen("iperf3", "-s", "-1", "-B", server.ip)
    try:
        wait_for(lambda: ":5201" in server.run("ss", "-ltn", check=False), "iperf3 to listen")
        args = ["iperf3", "-c", server.ip, "-t", "3", "-O", "1", "-J", "--connect-timeout", "3000"]
        report = json.loads(client.run(*args, *(["-R"] if reverse else []), timeout=60))
        return report["end"]["sum_received"]["bits_per_second"] / 1000
    finally:
        listener.kill()
        listener.wait(timeout=10)


def test_tcp_gets_the_rate_each_way_with_the_default_burst(pods: tuple[TenetNode, Pod, Pod]) -> None:
    node, a, b = pods
    api = node.controller.client
    a_endpoint = endpoint_id("c-qos-a", "eth0")
    ofport = api.get(f"/v1/endpoints/{a_endpoint}")["ofport"]
    measured = {}
    for rate in RATES_KBPS:
        name = f"r{rate}"
        profile = api.post("/v1/qos", {"name": name, "rate_kbps": rate})  # no burst: the default
        assert (profile["burst_kb"], profile["direction"]) == (rate // 2, "both")
        api.post(f"/v1/qos/{name}/attachments", {"target": a_endpoint})
        want = {f"meter={ofport} ", f"meter={0x10000 + ofport} ", f"rate={rate} ", f"burst_size={rate // 2}"}
        wait_for(lambda w=want: all(x in node.node.ofctl("dump-meters") for x in w), f"the {rate} kbit/s meters")
        measured[rate] = (_iperf_kbps(a, b, reverse=False), _iperf_kbps(a, b, reverse=True))  # a sends, receives
        api.delete("/v1/qos-attachments", target=a_endpoint)
        api.delete(f"/v1/qos/{name}")
    ratios = {rate: tuple(round(kbps / rate, 2) for kbps in pair) for rate, pair in measured.items()}
    print("received / rate (a sends, a receives):", ratios)
    assert all(0.85 <= r <= 1.10 for pair in ratios.values() for r in pair), ratios
