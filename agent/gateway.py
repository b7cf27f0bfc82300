"""The node's gateway port, `tenet-gw0`: an OVS internal port of br-int in the node's own IP stack.

What the agent sets up (once at start, and the same again on every start; every step is idempotent):

- the port, with `ofport_request` GATEWAY_OFPORT, `mtu_request` the cluster network's MTU (so it never
  follows the smallest MTU on the bridge, and a host packet for a pod fits the tunnel) and the MAC the
  pipeline sends to, `0e:00:<tunnel IP>`; TX checksum offload off (the userspace datapath does not fill in
  checksums the host left partial, and conntrack in OVS would take such packets for invalid);
- the node's tunnel IP as a /32 on it, and routes: the cluster subnet and the transit subnet via the cluster
  network's gateway address, `onlink` (the pipeline answers ARP for it), with the tunnel IP as source;
- IPv4 forwarding on;
- iptables, in chains of its own (TENET-POSTROUTING in nat, TENET-FORWARD in mangle and filter, TENET-INPUT
  in filter),
  each jumped to from the built-in chain:
  - MASQUERADE of the cluster subnet to non-cluster destinations, as the bridge plugin's `ipMasq` does,
    while the cluster network's `nat_outgoing` is on; off, only of what the host DNATed (a Service whose
    backend is outside the cluster subnet), and the rest leaves with the pods' own addresses;
  - MASQUERADE of the transit subnet (tenant networks' egress, already SNATed in OVS to it);
  - MASQUERADE of whatever the host DNATs into the cluster subnet: a pod's connection to a Service with a
    backend pod (kube-proxy's rules), or a connection to a hostPort (the `portmap` plugin's rules) from
    another node, a pod or the outside: the backend answers the node, whose conntrack then undoes the DNAT;
  - transit addresses reach nothing of the cluster (FORWARD drop to the cluster subnet, and of anything the
    host DNATed, e.g. to a Service, in mangle's FORWARD, ahead of any filter rule) and nothing of the
    node (INPUT drop): an isolated tenant gets the outside and no node address, except the ports the admin
    opened to its network (`node_ports`): INPUT accepts its transit address to the tunnel IP on those ports.

The node ports change while the agent runs: NodePortWatch asks GET /v1/gateway every few seconds and
replaces TENET-INPUT in one `iptables-restore --noflush` transaction when they changed; the same for
TENET-POSTROUTING when the cluster network's `nat_outgoing` changed. In the same round it reads the tables
(`iptables-save`) and puts the chains back, and each jump first in its built-in chain (in nat: present), if
a firewalld reload, an `iptables -F` or another program's rule inserted first moved them: in one
`iptables-restore --noflush` transaction per table, as at start, so no connection ever meets a chain
emptied for refilling (it would leave without its masquerade, and its answer bypass the node).

On the userspace datapath the agent turns the TCP sequence check of ovs-vswitchd's conntrack off
(`dpctl/ct-disable-tcp-seq-chk`, liberal_tcp; again every minute, as ovs-vswitchd forgets it on restart):
with it on, about 1 in 700 new connections through the SNAT zone failed: a reused pod source port is SNATed
to another transit port, which the server may still hold in TIME_WAIT; it answers with an ACK of the old
connection, and the pod's RST, which would end that TIME_WAIT, is out of the window OVS tracks and dropped
(README "Egress and the gateway port"). It is what Linux's `nf_conntrack_tcp_be_liberal=1` does for its
conntrack.
"""

from __future__ import annotations

import ipaddress
import logging
import subprocess
import threading
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute
from pyroute2.ethtool.ioctl import IoctlEthtool, NotSupportedError

from topology.gateway import node_gateway_mac
from topology.ipam import int_to_mac
from topology.model import GATEWAY_OFPORT, GATEWAY_PORT_NAME

log = logging.getLogger(__name__)
COMMENT = "tenet gateway"
Rule = tuple[str, str, tuple[str, ...]]  # (table, chain, rule arguments)


@dataclass(frozen=True)
class GatewayPlan:
    """What a node's gateway port needs: from the controller's GET /v1/gateway and the node's tunnel IP."""

    node_ip: ipaddress.IPv4Address
    cluster_subnet: ipaddress.IPv4Network
    transit_subnet: ipaddress.IPv4Network
    gateway: ipaddress.IPv4Address  # the cluster network's gateway address: the routes' next hop
    mtu: int  # bytes
    # (a network's transit address, its node ports as ("tcp/53", ...)), from the controller's `node_ports`
    node_ports: tuple[tuple[ipaddress.IPv4Address, tuple[str, ...]], ...] = ()
    nat_outgoing: bool = True  # the cluster network's: the host masquerades its traffic to the outside

    @property
    def mac(self) -> str:
        return int_to_mac(node_gateway_mac(self.node_ip))

    def rules(self) -> list[Rule]:
        """The iptables rules, in order, in Tenet's own chains."""
        cluster, transit, port = str(self.cluster_subnet), str(self.transit_subnet), GATEWAY_PORT_NAME
        hairpin = ("-m", "conntrack", "--ctstate", "DNAT", "-j", "MASQUERADE")
        # the cluster network's `nat_outgoing` (ipMasq) off: only what the host DNATs (a Service, a backend
        # outside the cluster subnet), whose answer must come back through this node's conntrack
        dnat_only = () if self.nat_outgoing else ("-m", "conntrack", "--ctstate", "DNAT")
        return [
            ("nat", "TENET-POSTROUTING", ("-s", cluster, "!", "-d", cluster, *dnat_only, "-j", "MASQUERADE")),
            ("nat", "TENET-POSTROUTING", ("-s", transit, "!", "-d", cluster, "-j", "MASQUERADE")),
            ("nat", "TENET-POSTROUTING", ("-d", cluster, "-o", port, *hairpin)),
            # Transit traffic is plain egress to the outside: never to the cluster, nor DNATed by the host
            # (kube-proxy's Service rules would take it to pods or other nodes' host-network backends). In
            # mangle, which the kernel runs before filter, so no rule of filter's FORWARD (kube-proxy's
            # KUBE-FORWARD accepts marked traffic, inserted first) can let it through first.
            ("mangle", "TENET-FORWARD", ("-s", transit, "-m", "conntrack", "--ctstate", "DNAT", "-j", "DROP")),
            ("mangle", "TENET-FORWARD", ("-s", transit, "-d", cluster, "-j", "DROP")),
            ("filter", "TENET-FORWARD", ("-s", transit, "-d", cluster, "-j", "DROP")),
            ("filter", "TENET-FORWARD", ("-i", port, "-j", "ACCEPT")),
            ("filter", "TENET-FORWARD", ("-o", port, "-j", "ACCEPT")),
            *self.input_rules(),
        ]

    def input_rules(self) -> list[Rule]:
        """TENET-INPUT: each network's transit address to its node ports of the tunnel IP, then nothing."""
        port, node = GATEWAY_PORT_NAME, f"{self.node_ip}/32"
        rules: list[Rule] = []
        for transit, ports in self.node_ports:
            for item in ports:
                protocol, number = item.split("/")
                accept = ("-i", port, "-s", f"{transit}/32", "-d", node, "-p", protocol, "--dport", number)
                rules.append(("filter", "TENET-INPUT", (*accept, "-j", "ACCEPT")))
        rules.append(("filter", "TENET-INPUT", ("-i", port, "-s", str(self.transit_subnet), "-j", "DROP")))
        return rules


def plan_from(doc: dict[str, Any], node_ip: ipaddress.IPv4Address) -> GatewayPlan | None:
    """The plan from the controller's answer, or None when no cluster network is set up (nothing to do)."""
    if not doc.get("cluster_network") or not doc.get("gateway"):
        return None
    return GatewayPlan(
        node_ip,
        ipaddress.IPv4Network(doc["cluster_subnet"]),
        ipaddress.IPv4Network(doc["transit_subnet"]),
        ipaddress.IPv4Address(doc["gateway"]),
        int(doc["mtu"]),
        tuple(
            (ipaddress.IPv4Address(item["transit_ip"]), tuple(item["ports"])) for item in doc.get("node_ports") or ()
        ),
        doc.get("nat_outgoing") is not False,  # absent from controllers before it: on, as it was
    )


class GatewayError(RuntimeError):
    """The gateway port could not be set up; the message says which step."""


def _run(*args: str, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(args, input=input, capture_output=True, text=True, timeout=30, check=False)


class Gateway:
    """Sets up the gateway port of `bridge` through `ovsdb` (agent.ovsdb.Ovsdb) and the node's stack."""

    def __init__(self, ovsdb: Any, bridge: str, *, run: Callable[..., subprocess.CompletedProcess] = _run) -> None:
        self.ovsdb, self.bridge, self.run = ovsdb, bridge, run

    def apply(self, plan: GatewayPlan) -> None:
        """Everything the module doc lists; raises GatewayError naming the step that failed."""
        self.ovsdb.ensure_internal_port(
            self.bridge, GATEWAY_PORT_NAME, ofport=GATEWAY_OFPORT, mtu=plan.mtu, mac=plan.mac
        )
        with IPRoute() as ipr:
            index = self._wait_for_link(ipr)
            ipr.link("set", index=index, address=plan.mac, mtu=plan.mtu, state="up")
            have = {a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(index=index, family=2)}
            if str(plan.node_ip) not in have:
                ipr.addr("add", index=index, address=str(plan.node_ip), prefixlen=32)
            for subnet in (plan.cluster_subnet, plan.transit_subnet):
                ipr.route(
                    "replace",
                    dst=str(subnet),
                    gateway=str(plan.gateway),
                    oif=index,
                    prefsrc=str(plan.node_ip),
                    flags=4,  # RTNH_F_ONLINK: the next hop is on the link although no address covers it
                )
        try:
            with closing(IoctlEthtool(GATEWAY_PORT_NAME)) as ethtool:
                ethtool.set_offload_flag("tx-checksumming", 0)
        except (NotSupportedError, OSError) as error:
            log.warning("%s: could not turn TX checksum offload off: %s", GATEWAY_PORT_NAME, error)
        Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")
        self._iptables(plan.rules())
        log.info(
            "gateway port %s: %s/32, routes to %s and %s via %s, MTU %d",
            GATEWAY_PORT_NAME,
            plan.node_ip,
            plan.cluster_subnet,
            plan.transit_subnet,
            plan.gateway,
            plan.mtu,
        )

    def _wait_for_link(self, ipr: IPRoute, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while True:
            found = ipr.link_lookup(ifname=GATEWAY_PORT_NAME)
            if found:
                return found[0]
            if time.monotonic() > deadline:
                raise GatewayError(f"OVS made no interface {GATEWAY_PORT_NAME} within {timeout:.0f} s")
            time.sleep(0.05)

    def _iptables(self, rules: list[Rule]) -> None:
        """Tenet's chains filled with `rules`, each jumped to once from its built-in chain, first (in nat:
        anywhere, present is enough), in one `iptables-restore --noflush` transaction per table: no packet
        ever meets a chain emptied for refilling or a jump taken out for moving (a connection made in such a
        moment would leave without its masquerade, and its answer would bypass the node). GatewayError if
        iptables-save or iptables-restore fails."""
        tables: dict[str, dict[str, list[tuple[str, ...]]]] = {}
        for table, chain, rule in rules:
            tables.setdefault(table, {}).setdefault(chain, []).append(rule)
        for table, chains in tables.items():
            saved = self._saved(table)
            transaction = []
            for chain, chain_rules in chains.items():
                transaction.append(f":{chain} - [0:0]")  # made, or emptied: --noflush empties the chains it names
                transaction += [f"-A {chain} {' '.join(rule)}" for rule in chain_rules]
            for chain in chains:
                builtin = chain.removeprefix("TENET-")
                jumps = [words for words in saved if words[1] == builtin]
                ours = sum(1 for words in jumps if words[-2:] == ["-j", chain])
                if ours == 1 and (table == "nat" or jumps[0][-2:] == ["-j", chain]):
                    continue
                jump = f'-m comment --comment "{COMMENT}" -j {chain}'
                transaction += [f"-D {builtin} {jump}"] * ours  # wherever they are: one goes back first below
                transaction.append(f"-I {builtin} 1 {jump}")
            self._commit(table, transaction)

    def _saved(self, table: str) -> list[list[str]]:
        """The rules of `table` as `iptables-save` prints them, split in words; GatewayError if it fails."""
        done = self.run("iptables-save", "-t", table)
        if done.returncode != 0:
            raise GatewayError(f"iptables-save -t {table}: {done.stderr.strip() or done.returncode}")
        return [line.split() for line in done.stdout.splitlines() if line.startswith("-A ")]

    def drifted(self, plan: GatewayPlan) -> list[str]:
        """What is no longer as `_iptables` left it (one `iptables-save` per table): a chain's jump missing or
        not first in its built-in chain (a firewalld reload, `iptables -F`, kube-proxy inserting its own
        first; in the nat table only a missing jump counts), or a chain without its rules. [] when all is
        in place; GatewayError if iptables-save fails."""
        wanted: dict[tuple[str, str], int] = {}
        for table, chain, _rule in plan.rules():
            wanted[(table, chain)] = wanted.get((table, chain), 0) + 1
        problems: list[str] = []
        for table in dict.fromkeys(table for table, _ in wanted):
            lines = self._saved(table)
            for (of_table, chain), count in wanted.items():
                if of_table != table:
                    continue
                builtin = chain.removeprefix("TENET-")
                jumps = [words for words in lines if words[1] == builtin]
                if table == "nat":  # masquerades compose in any order: present is enough (portmap, kube-proxy
                    # insert theirs first; putting ours back first would flush the chain for a moment)
                    if not any(words[-2:] == ["-j", chain] for words in jumps):
                        problems.append(f"{table} {builtin} does not jump to {chain}")
                elif not jumps or jumps[0][-2:] != ["-j", chain]:
                    problems.append(f"{table} {builtin} does not jump to {chain} first")
                if sum(1 for words in lines if words[1] == chain) != count:
                    problems.append(f"{table} {chain} does not hold its {count} rule(s)")
        return problems

    def repair(self, plan: GatewayPlan) -> list[str]:
        """Put the chains and their jumps back (`_iptables`) if they drifted; what had drifted ([] if none)."""
        problems = self.drifted(plan)
        if problems:
            self._iptables(plan.rules())
        return problems

    def replace_input(self, plan: GatewayPlan) -> None:
        """TENET-INPUT replaced by plan.input_rules() in one transaction (never empty in between); GatewayError."""
        self._restore("filter", "TENET-INPUT", [rule for _table, _chain, rule in plan.input_rules()])

    def replace_nat(self, plan: GatewayPlan) -> None:
        """TENET-POSTROUTING replaced by plan's nat rules in one transaction (with or without the cluster
        network's masquerade, `plan.nat_outgoing`); GatewayError. Connections already open keep the
        translation conntrack holds for them."""
        rules = [rule for table, chain, rule in plan.rules() if (table, chain) == ("nat", "TENET-POSTROUTING")]
        self._restore("nat", "TENET-POSTROUTING", rules)

    def _restore(self, table: str, chain: str, rules: list[tuple[str, ...]]) -> None:
        """`chain` of `table` flushed and filled with `rules` in one `iptables-restore --noflush` transaction."""
        self._commit(table, [f":{chain} - [0:0]", *(f"-A {chain} {' '.join(rule)}" for rule in rules)])

    def _commit(self, table: str, lines: list[str]) -> None:
        """`lines` (iptables-restore's syntax) applied to `table` in one `iptables-restore --noflush`
        transaction; GatewayError if it fails."""
        # joined as they are: iptables-restore takes `!` bare, not quoted; the one argument with a space, the
        # jumps' comment, comes quoted
        done = self.run("iptables-restore", "-w", "--noflush", input="\n".join([f"*{table}", *lines, "COMMIT", ""]))
        if done.returncode != 0:
            raise GatewayError(f"iptables-restore -t {table}: {done.stderr.strip() or done.returncode}")


def appctl_args(rundir: str, *command: str) -> list[str]:
    """`ovs-appctl COMMAND...` for the ovs-vswitchd whose rundir is `rundir`: its unixctl socket
    `ovs-vswitchd.ctl` there (as the lab and tests name it), else the one its pidfile in `rundir` names."""
    ctl = Path(rundir) / "ovs-vswitchd.ctl"
    target = str(ctl) if ctl.exists() else "ovs-vswitchd"
    return ["env", f"OVS_RUNDIR={rundir}", "ovs-appctl", "-t", target, *command]


def liberal_tcp(rundir: str, *, run: Callable[..., subprocess.CompletedProcess] = _run) -> bool:
    """Turn the TCP sequence check of the userspace datapath's conntrack off (module doc), through the
    ovs-vswitchd whose rundir is `rundir` (its unixctl socket `ovs-vswitchd.ctl` there, or the one its pidfile
    names). False, with a warning logged, if ovs-vswitchd refused or did not answer in time; GatewayError if
    ovs-appctl cannot be run at all."""
    try:
        done = run(*appctl_args(rundir, "dpctl/ct-disable-tcp-seq-chk"))
    except subprocess.TimeoutExpired:  # a busy ovs-vswitchd: the next round asks again
        log.warning("could not turn conntrack's TCP sequence check off: ovs-appctl timed out")
        return False
    except OSError as error:
        raise GatewayError(f"running ovs-appctl: {error}") from None
    if done.returncode == 127:  # env found no ovs-appctl
        raise GatewayError(f"no ovs-appctl: {done.stderr.strip()}")
    if done.returncode != 0:
        log.warning("could not turn conntrack's TCP sequence check off: %s", done.stderr.strip() or done.returncode)
        return False
    return True


class NodePortWatch:
    """Keeps TENET-INPUT to the controller's node ports: GET /v1/gateway every `interval` seconds through
    `client` (controller.client.Client), replacing the chain when they changed (TENET-POSTROUTING when the
    cluster network's `nat_outgoing` changed); and, given the userspace datapath's `vswitchd` rundir,
    liberal_tcp every `LIBERAL_EVERY` rounds; and every round puts Tenet's chains and their jumps back where
    they belong if something moved or flushed them. Errors are logged and the next round tries again."""

    LIBERAL_EVERY = 30

    def __init__(
        self, gateway: Gateway, client: Any, plan: GatewayPlan, *, interval: float = 2.0, vswitchd: str | None = None
    ) -> None:
        self.gateway, self.client, self.plan, self.interval = gateway, client, plan, interval
        self.vswitchd = vswitchd
        self.stopped = threading.Event()

    def start(self) -> NodePortWatch:
        threading.Thread(target=self._run, name="node-ports", daemon=True).start()
        return self

    def stop(self) -> None:
        self.stopped.set()

    def _run(self) -> None:
        rounds = 0
        while not self.stopped.wait(self.interval):
            rounds += 1
            self.round(rounds)

    def round(self, rounds: int) -> None:
        """One round of the thread: nothing raised out of it ends the watch."""
        try:
            if self.vswitchd is not None and rounds % self.LIBERAL_EVERY == 0:
                liberal_tcp(self.vswitchd)
        except Exception as error:  # ovs-appctl gone or hanging: next time
            log.warning("conntrack TCP sequence check: %s", error)
        try:
            self.check()
        except Exception as error:  # the controller away, iptables busy: next round
            log.warning("node ports: %s", error)

    def set_nat_outgoing(self, plan: GatewayPlan) -> None:
        """The cluster network's masquerade added or removed (Gateway.replace_nat) as `plan` says."""
        self.gateway.replace_nat(plan)
        log.info("cluster network nat_outgoing now %s", "on" if plan.nat_outgoing else "off")
        self.plan = replace(self.plan, nat_outgoing=plan.nat_outgoing)

    def check(self) -> bool:
        """One round: the chains and their jumps put back if they drifted (Gateway.repair); then True when
        the node ports changed and TENET-INPUT was replaced."""
        problems = self.gateway.repair(self.plan)
        if problems:
            log.warning("iptables rules put back: %s", "; ".join(problems))
        plan = plan_from(self.client.get("/v1/gateway"), self.plan.node_ip)
        if plan is not None and plan.nat_outgoing != self.plan.nat_outgoing:
            self.set_nat_outgoing(plan)
        if plan is None or plan.node_ports == self.plan.node_ports:
            return False
        self.gateway.replace_input(plan)
        log.info("node ports now %s", [(str(ip), list(ports)) for ip, ports in plan.node_ports] or "none")
        self.plan = plan
        return True
