"""A pod's host-side veth on the userspace datapath, through the real plugin, agent, controller and br-int (root).

The host end is an ordinary interface of the node's kernel as well as an OVS port. The node's own IP stack
must neither see nor answer anything a pod sends through it: ARP and ND for any node address, IPv4 and IPv6,
link-local and global. Pods still talk to each other through OVS. And a pod that comes back with the same IP
and a new MAC announces itself, so its peers do not keep sending to the old MAC.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from agent.service import endpoint_id
from lab.cni import Network, TenetNode, exec_plugin
from lab.ovs import Pod, sh, tcp_connects, wait_for

NODE_V6 = "fd00:7e::2"  # a global IPv6 address given to the node for the test
NODE_EXTRA_V4 = "192.0.2.77"  # another address of the node, on its loopback
LISTEN_PORT = 8099

# Run in a pod: send one ARP request for argv[1] from the pod (argv[2] MAC, argv[3] IP) and print the MACs
# that answer within a second.
_ARP_PROBE = r"""
import socket, struct, sys, time
target, ip = socket.inet_aton(sys.argv[1]), socket.inet_aton(sys.argv[3])
mac = bytes.fromhex(sys.argv[2].replace(':', ''))
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
s.bind(('eth0', 0))
arp = struct.pack('!HHBBH', 1, 0x0800, 6, 4, 1) + mac + ip + b'\0' * 6 + target
s.send(b'\xff' * 6 + mac + b'\x08\x06' + arp)
s.settimeout(0.2)
answers, deadline = set(), time.monotonic() + 1.0
while time.monotonic() < deadline:
    try:
        frame = s.recv(2048)
    except socket.timeout:
        continue
    if frame[20:22] == b'\x00\x02' and frame[28:32] == target:
        answers.add(frame[22:28].hex(':'))
print(' '.join(sorted(answers)) or 'none')
"""
_CONNECT = (
    "import socket,sys\n"
    "try:\n socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1.0).close(); print('connected')\n"
    "except OSError as e: print('failed', e)\n"
)
_LISTEN = (
    "import select,socket,sys\n"
    "s=socket.socket(socket.AF_INET6);s.setsockopt(socket.IPPROTO_IPV6,socket.IPV6_V6ONLY,0)\n"
    "s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);s.bind(('::',int(sys.argv[1])));s.listen(8)\n"
    "u=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);u.bind(('0.0.0.0',int(sys.argv[1])))\n"
    "print('listening',flush=True)\n"
    "while True:\n"
    " for r in select.select([s,u],[],[])[0]:\n"
    "  if r is s:\n   c,a=s.accept();print('accepted',a[0],flush=True);c.close()\n"
    "  else:\n   print('received',u.recvfrom(64),flush=True)\n"
)
# Run in a pod: a UDP datagram from 0.0.0.0 to 255.255.255.255:argv[1] (a DHCPDISCOVER's addresses), which
# the kernel delivers without any source check.
_BROADCAST_FROM_NOWHERE = r"""
import socket, struct, sys
def checksum(data):
    total = sum(struct.unpack('!10H', data)); total = (total >> 16) + (total & 0xffff)
    return ~(total + (total >> 16)) & 0xffff
mac = bytes.fromhex(open('/sys/class/net/eth0/address').read().strip().replace(':', ''))
udp = struct.pack('!HHHH', 68, int(sys.argv[1]), 13, 0) + b'probe'
ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, bytes(4), b'\xff' * 4)
ip = ip[:10] + struct.pack('!H', checksum(ip)) + ip[12:]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(('eth0', 0))
for _ in range(3):
    s.send(b'\xff' * 6 + mac + b'\x08\x00' + ip + udp)
"""


@dataclass
class Lab:
    node: TenetNode
    pods: list[str]

    def add(self, name: str, *, netns_exists: bool = False) -> Pod:
        if not netns_exists:
            sh("ip", "netns", "add", name)
            self.pods.append(name)
        call = exec_plugin(
            self.node.plugin, "ADD", self.node.net_config(), container=f"c-{name}", netns=f"/var/run/netns/{name}"
        )
        assert call.code == 0, call
        return Pod(name, name, call.out["ips"][0]["address"].split("/")[0])

    def delete(self, name: str) -> None:
        call = exec_plugin(
            self.node.plugin, "DEL", self.node.net_config(), container=f"c-{name}", netns=f"/var/run/netns/{name}"
        )
        assert call.code == 0, call

    def endpoint(self, name: str) -> dict:
        return self.node.controller.client.get(f"/v1/endpoints/{endpoint_id(f'c-{name}', 'eth0')}")

    def host_mac(self, pod: str) -> str:
        port = self.endpoint(pod)["port_name"]
        return self.node.node.exec("cat", f"/sys/class/net/{port}/address").strip()


def _control_index() -> int:
    """The node's control /30 is 10.254.INDEX.0: one of this run's own, not the 10.254.1.0 other runs use."""
    return 100 + os.getpid() % 150


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    node = TenetNode(
        tmp_path_factory.mktemp("hostveth"),
        [Network("blue", "web", 5001, "10.1.0.0/24")],
        index=_control_index(),
    )
    lab = Lab(node.start(), [])
    try:
        node.node.exec("ip", "-6", "addr", "add", f"{NODE_V6}/64", "dev", "ctl0", "nodad")
        node.node.exec("ip", "addr", "add", f"{NODE_EXTRA_V4}/32", "dev", "lo")
        # The kernel's own defaults, not whatever the machine's init namespace passed on: no reverse-path filter.
        node.node.exec("sysctl", "-q", "-w", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0")
        yield lab
    finally:
        for name in lab.pods:
            sh("ip", "netns", "del", name, check=False)
        node.close()


@pytest.fixture
def listener(lab: Lab) -> Iterator[subprocess.Popen]:
    """A TCP listener on [::]:8099 (IPv4 too) in the node's namespace, printing every connection it accepts."""
    process = subprocess.Popen(
        ["ip", "netns", "exec", lab.node.node.netns, "python3", "-I", "-S", "-c", _LISTEN, str(LISTEN_PORT)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "listening"
        yield process
    finally:
        process.kill()
        process.wait(timeout=10)


def _link_local(mac: str) -> str:
    """The EUI-64 link-local address the kernel would give an interface with this MAC (RFC 4291 appendix A)."""
    octets = bytearray.fromhex(mac.replace(":", ""))
    octets[0] ^= 0x02
    eui = bytes(octets[:3]) + b"\xff\xfe" + bytes(octets[3:])
    return str(ipaddress.IPv6Address(b"\xfe\x80" + b"\0" * 6 + eui))


def _pod_mac(pod: Pod) -> str:
    return pod.run("cat", "/sys/class/net/eth0/address").strip()


def test_the_node_stack_neither_sees_nor_answers_a_pod(lab: Lab, listener: subprocess.Popen) -> None:
    a, b = lab.add("hv-a"), lab.add("hv-b")
    host_mac, mac = lab.host_mac("hv-a"), _pod_mac(a)
    node_v4 = lab.node.node.node_ip
    veth_v6 = _link_local(host_mac)
    answers = {}
    # ARP for each address of the node, from the pod.
    for target in (node_v4, NODE_EXTRA_V4):
        answers[f"ARP {target}"] = a.run("python3", "-I", "-S", "-c", _ARP_PROBE, target, mac, a.ip).strip()
    # ND and ICMPv6: everyone on the link, then the host end's link-local address (the pod asks for its MAC).
    # The agent turned IPv6 off on eth0; a pod may turn it on again itself (without DAD, at once usable).
    a.run("sysctl", "-qw", "net.ipv6.conf.eth0.accept_dad=0", "net.ipv6.conf.eth0.disable_ipv6=0")
    wait_for(lambda: "fe80" in a.run("ip", "-6", "addr", "show", "dev", "eth0"), "the pod's link-local address")
    own = {
        line.split()[3].split("/")[0] for line in a.run("ip", "-6", "-o", "addr", "show", "dev", "eth0").splitlines()
    }
    replies = a.run("ping", "-6", "-c", "2", "-i", "0.3", "-W", "1", "ff02::1%eth0", check=False)
    strangers = {w.rstrip(":").split("%")[0] for w in replies.split() if w.startswith("fe80")} - own
    answers["ping ff02::1"] = " ".join(sorted(strangers)) or "none"
    answers[f"ND/ping {veth_v6}"] = "answered" if a.ping(f"{veth_v6}%eth0") else "none"
    # TCP to the node's listener, the host end's MAC already known to the pod (no ARP or ND needed).
    a.run("ip", "neigh", "replace", node_v4, "lladdr", host_mac, "dev", "eth0", "nud", "permanent")
    a.run("ip", "route", "replace", f"{node_v4}/32", "dev", "eth0")
    a.run("ip", "-6", "neigh", "replace", NODE_V6, "lladdr", host_mac, "dev", "eth0", "nud", "permanent")
    a.run("ip", "-6", "neigh", "replace", veth_v6, "lladdr", host_mac, "dev", "eth0", "nud", "permanent")
    a.run("ip", "-6", "route", "replace", f"{NODE_V6}/128", "dev", "eth0")
    for target in (node_v4, f"{veth_v6}%eth0", NODE_V6):
        answers[f"TCP {target}"] = a.run("python3", "-I", "-S", "-c", _CONNECT, target, str(LISTEN_PORT)).strip()
    print("probes:", answers)
    assert all(v == "none" or v.startswith("failed") for v in answers.values()), answers
    a.run("python3", "-I", "-S", "-c", _BROADCAST_FROM_NOWHERE, str(LISTEN_PORT))
    # The host end itself: no IPv6, no ARP answers, strict reverse-path filtering.
    port = lab.endpoint("hv-a")["port_name"]
    assert lab.node.node.exec("ip", "-6", "addr", "show", "dev", port).strip() == ""
    settings = {
        k: lab.node.node.exec("sysctl", "-n", f"net.ipv4.conf.{port}.{k}").strip() for k in ("arp_ignore", "rp_filter")
    }
    assert settings == {"arp_ignore": "8", "rp_filter": "1"}
    # ... and OVS still carries pod to pod traffic.
    assert a.ping(b.ip, count=2) and tcp_connects(a, b) and tcp_connects(b, a)
    listener.kill()
    seen = listener.communicate(timeout=10)[0]
    assert "accepted" not in seen and "received" not in seen, seen


def test_a_pod_back_with_a_new_mac_is_reached_at_once(lab: Lab) -> None:
    a, b = lab.add("hv-c"), lab.add("hv-d")
    assert b.ping(a.ip, count=2)  # b caches a's MAC
    old = lab.endpoint("hv-c")
    lab.delete("hv-c")
    # Hold a's derived MAC with another endpoint, so a comes back with its IP and the next MAC.
    hold = {"id": "hold-mac", "network": "blue/web", "node": lab.node.node.name, "ip": "10.1.0.250", "mac": old["mac"]}
    lab.node.controller.client.post("/v1/endpoints", hold)
    try:
        again = lab.add("hv-c", netns_exists=True)
        new = lab.endpoint("hv-c")
        assert (again.ip, new["ip"]) == (a.ip, old["ip"]) and new["mac"] != old["mac"], (old, new)
        assert _pod_mac(again) == new["mac"]
        # 50 pings in one second right after ADD returned: the gratuitous ARP already moved b to the new MAC.
        out = b.run("ping", "-c", "50", "-i", "0.02", "-W", "1", a.ip, check=False)
        received = int(out.split(" received")[0].rsplit(",", 1)[1])
        print("after the re-add, 50 pings at 20 ms:", received, "answered")
        assert received >= 47, out
        assert _neighbour_mac(b, a.ip) == new["mac"]
    finally:
        lab.node.controller.client.delete("/v1/endpoints/hold-mac")


def _neighbour_mac(pod: Pod, ip: str) -> str:
    return wait_for(lambda: [*pod.run("ip", "neigh", "show", ip).split(), "", "", "", "", ""][4], f"{ip} in the cache")
