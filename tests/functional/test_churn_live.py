"""Incremental equals full on real switches: a random run of API changes with names, VNIs and ids reused.

Two nodes, each a userspace OVS in its own namespace, joined by a VXLAN underlay (a veth between the node
namespaces, on `br-phy`). A seeded random sequence of API calls creates and deletes tenants' networks
(VNIs from a pool of two), endpoints on both nodes (ids from a small pool) and QoS attachments; then each
tenant gets pods on both nodes. Every switch must then hold exactly what the controller computed, that must
be exactly what a restarted controller (a full compile from the store) installs, and real pings must cross
nodes within a tenant and never between tenants.
"""

from __future__ import annotations

import os
import random
import re
from collections import Counter
from collections.abc import Iterator
from ipaddress import IPv4Network
from pathlib import Path

import pytest

from controller.client import ClientError
from controller.pipeline.cookies import ROUND_MASK, ROUND_SHIFT
from lab.cni import ControllerProcess
from lab.ovs import OvsNode, Pod, sh, wait_for

NODES = {"n1": ("192.168.91.1", 0xC1), "n2": ("192.168.91.2", 0xC2)}  # tunnel IP, datapath id
TENANTS = ("blue", "red")
NETWORKS = ("x", "y")
VNIS = (5001, 7000)
SUBNETS = ("10.0.0.0/24", "10.0.1.0/24")
ENDPOINTS = ("e1", "e2", "e3", "e4")
STEPS = 40
COOKIE = re.compile(r"cookie=(0x[0-9a-f]+)")


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[dict[str, OvsNode]]:
    """Two OVS nodes with br-phy on a shared underlay and a flow-based VXLAN port `tenet-tun` on br-int."""
    control = f"10.{150 + os.getpid() % 100}"  # the /30s to the root namespace, apart from other runs'
    made = {name: OvsNode(name, tmp_path / "ovs", index=i + 1, control_net=control) for i, name in enumerate(NODES)}
    try:
        for node in made.values():
            node.start()
        n1, n2 = made["n1"], made["n2"]
        sh(
            "ip",
            "netns",
            "exec",
            n1.netns,
            "ip",
            "link",
            "add",
            "ul0",
            "type",
            "veth",
            "peer",
            "ul0",
            "netns",
            n2.netns,
        )
        for name, node in made.items():
            node.exec("ip", "link", "set", "ul0", "up")
            node.vsctl("add-br", "br-phy", "--", "set", "bridge", "br-phy", "datapath_type=netdev")
            node.vsctl("add-port", "br-phy", "ul0")
            node.exec("ip", "addr", "add", f"{NODES[name][0]}/24", "dev", "br-phy")
            node.exec("ip", "link", "set", "br-phy", "up")
        for name, node in made.items():  # userspace tunnelling learns the peer's MAC from ARP on br-phy
            other = NODES["n2" if name == "n1" else "n1"][0]
            wait_for(lambda n=node, o=other: "1 received" in n.exec("ping", "-c1", "-W1", o, check=False), "underlay")
        yield made
    finally:
        for node in made.values():
            node.close()


def add_switches(controller: ControllerProcess, nodes: dict[str, OvsNode]) -> None:
    for name, node in nodes.items():
        tunnel_ip, dpid = NODES[name]
        controller.client.put(f"/v1/nodes/{name}", {"tunnel_ip": tunnel_ip, "datapath_id": dpid})
        node.add_bridge(dpid, controller.ofp_port)
        node.vsctl(
            "add-port", "br-int", "tenet-tun", "--", "set", "interface", "tenet-tun", "type=vxlan",
            "options:remote_ip=flow", "options:key=flow", "ofport_request=1",
        )  # fmt: skip


def random_calls(controller: ControllerProcess, rng: random.Random, steps: int) -> list[str]:
    """`steps` random API calls over small pools; refused ones (a conflict, a name in use) change nothing."""
    api, done = controller.client, []
    api.post("/v1/qos", {"name": "slow", "rate_kbps": 10000, "burst_kb": 1000})
    for _ in range(steps):
        kind = rng.choice(["network", "network", "endpoint", "endpoint", "endpoint", "qos"])
        tenant, name, endpoint = rng.choice(TENANTS), rng.choice(NETWORKS), rng.choice(ENDPOINTS)
        networks = {n["tenant"] + "/" + n["name"] for n in api.get("/v1/networks")}
        key = f"{tenant}/{name}"
        try:
            if tenant not in {t["name"] for t in api.get("/v1/tenants")}:
                api.post("/v1/tenants", {"name": tenant})
                done.append(f"tenant {tenant}")
            elif kind == "network" and key in networks:
                for e in api.get("/v1/endpoints"):
                    if e["network"] == key:
                        api.delete(f"/v1/endpoints/{e['id']}")
                api.delete(f"/v1/tenants/{tenant}/networks/{name}")
                done.append(f"-network {key}")
                if not any(n.startswith(f"{tenant}/") for n in networks - {key}):
                    api.delete(f"/v1/tenants/{tenant}")  # its id goes back to the pool, for the next tenant
                    done.append(f"-tenant {tenant}")
            elif kind == "network":
                vni, subnet = rng.choice(VNIS), rng.choice(SUBNETS)
                api.post(
                    f"/v1/tenants/{tenant}/networks", {"name": name, "encap": "vxlan", "vni": vni, "subnet": subnet}
                )
                done.append(f"network {key} vni {vni} {subnet}")
            elif kind == "endpoint" and endpoint in {e["id"] for e in api.get("/v1/endpoints")}:
                api.delete(f"/v1/endpoints/{endpoint}")
                done.append(f"-endpoint {endpoint}")
            elif kind == "endpoint" and networks:
                network, node = rng.choice(sorted(networks)), rng.choice(sorted(NODES))
                api.post("/v1/endpoints", {"id": endpoint, "network": network, "node": node})
                done.append(f"endpoint {endpoint} {network}@{node}")
            elif kind == "qos":
                target = rng.choice([*sorted(networks), *ENDPOINTS])
                if target in {a["target"] for a in api.get("/v1/qos-attachments")}:
                    api.delete("/v1/qos-attachments", target=target)
                    done.append(f"-qos {target}")
                else:
                    api.post("/v1/qos/slow/attachments", {"target": target})
                    done.append(f"qos {target}")
        except ClientError as error:
            assert error.status is not None and 400 <= error.status < 500, error
    return done


def pods_for_each_tenant(controller: ControllerProcess, nodes: dict[str, OvsNode]) -> dict[str, Pod]:
    """A network per tenant (one it has, else a new one with a VNI left free) and a pod on each node:
    blue's at .20 and .21 of its subnet, red's at .30 and .31, so no address is in both tenants."""
    api = controller.client
    existing = {t["name"] for t in api.get("/v1/tenants")}
    pods = {}
    for t, tenant in enumerate(TENANTS):
        if tenant not in existing:
            api.post("/v1/tenants", {"name": tenant})
        networks = [n for n in api.get("/v1/networks") if n["tenant"] == tenant]
        if not networks:
            used = {n["vni"] for n in api.get("/v1/networks")}
            vni = next(v for v in (*VNIS, 9000 + t) if v not in used)
            api.post(
                f"/v1/tenants/{tenant}/networks", {"name": "p", "encap": "vxlan", "vni": vni, "subnet": SUBNETS[0]}
            )
            networks = [n for n in api.get("/v1/networks") if n["tenant"] == tenant]
        network = networks[0]
        for i, (name, node) in enumerate(nodes.items()):
            ip = str(IPv4Network(network["subnet"]).network_address + 20 + 10 * t + i)
            doc = api.post(
                "/v1/endpoints",
                {"id": f"{tenant}-{name}", "network": f"{tenant}/{network['name']}", "node": name, "ip": ip},
            )
            pods[f"{tenant}-{name}"] = node.add_pod(
                doc, gateway=doc["gateway"], prefix=doc["prefix_len"], mtu=doc["mtu"]
            )
    return pods


def in_sync(controller: ControllerProcess) -> bool:
    for name in NODES:
        switch = controller.node(name).get("switch") or {}
        assert not switch.get("errors"), switch
        if not (switch.get("connected") and switch.get("in_sync")):
            return False
    return True


def switch_content(node: OvsNode) -> tuple[Counter[str], str, str, set[int]]:
    """Every flow's full text with the cookie's round taken out, the groups, the meters, and the rounds."""
    flows: Counter[str] = Counter()
    rounds: set[int] = set()
    for line in node.ofctl("--no-stats", "dump-flows").splitlines():
        found = COOKIE.search(line)
        if found:
            cookie = int(found.group(1), 16)
            rounds.add(cookie >> ROUND_SHIFT)
            flows[COOKIE.sub(hex(cookie & ~ROUND_MASK), line.strip())] += 1
    groups = "\n".join(sorted(node.ofctl("dump-groups").splitlines()[1:]))
    meters = "\n".join(sorted(node.ofctl("dump-meters").splitlines()[1:]))
    return flows, groups, meters, rounds


def only_new_round(node: OvsNode, old_rounds: set[int]) -> tuple | None:
    """The switch's content once it holds one round only, and not the old one."""
    content = switch_content(node)
    return content if len(content[3]) == 1 and content[3] != old_rounds else None


def test_random_changes_leave_every_switch_as_a_restarted_controller_would(
    controller: ControllerProcess, nodes: dict[str, OvsNode]
) -> None:
    seed = int(os.environ.get("TENET_CHURN_SEED", random.SystemRandom().randrange(2**32)))
    print(f"seed {seed} (TENET_CHURN_SEED={seed} replays it)")
    add_switches(controller, nodes)
    done = random_calls(controller, random.Random(seed), STEPS)
    pods = pods_for_each_tenant(controller, nodes)
    wait_for(lambda: in_sync(controller), "both switches in sync", timeout=60)
    history = f"seed {seed}: " + "; ".join(done)

    # What the switches hold after the incremental run is what a full compile from the store installs.
    before = {name: switch_content(node) for name, node in nodes.items()}
    for name, (_, _, _, rounds) in before.items():
        assert len(rounds) == 1, f"{name}: flows of several rounds: {rounds}"
    controller.stop()
    controller.start()
    for name, node in nodes.items():
        old_flows, old_groups, old_meters, old_rounds = before[name]
        flows, groups, meters, _ = wait_for(
            lambda n=node, r=old_rounds: only_new_round(n, r),
            f"{name}: the restarted controller's round alone on the switch",
            timeout=60,
        )
        assert flows == old_flows, (
            f"{history}\n{name}: incremental only {sorted(old_flows - flows)}\nfull only {sorted(flows - old_flows)}"
        )
        assert (groups, meters) == (old_groups, old_meters), f"{history}\n{name}: groups or meters differ"
    wait_for(lambda: in_sync(controller), "both switches in sync after the restart", timeout=60)

    # Same tenant across nodes: delivered; the other tenant: never, either way.
    for tenant, other in (("blue", "red"), ("red", "blue")):
        src, peer = pods[f"{tenant}-n1"], pods[f"{tenant}-n2"]
        assert src.ping(peer.ip, count=2), f"{history}\n{tenant}: n1 -> n2 failed"
        assert peer.ping(src.ip, count=2), f"{history}\n{tenant}: n2 -> n1 failed"
        for target in (pods[f"{other}-n1"], pods[f"{other}-n2"]):
            assert not src.ping(target.ip, wait=1), f"{history}\n{src.name} reached {target.name} of {other}"
