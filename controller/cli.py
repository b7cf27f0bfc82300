"""tenetctl: the tenant admin's command line.

Offline commands work on a topology file and need no controller:
  tenetctl check FILE                      validate the file
  tenetctl compile FILE --node NODE        the node's meters, groups and flows as ovs-ofctl text
  tenetctl trace FILE --src EP --dst EP    follow a packet through every switch it crosses

Live commands (tenant, network, qos, node, endpoint, flows) talk to a running controller; see cli_live.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from controller import cli_live
from controller.openflow.ofctl import flow_text, render_state
from controller.pipeline import matrix
from controller.pipeline.compile import Compiler
from controller.pipeline.features import netpol
from controller.pipeline.ir import ARP_REPLY, ETH_TYPE_ARP
from controller.pipeline.probes import PROTOCOLS, Spoof, to_endpoint
from controller.pipeline.simulate import SimNetwork, Trace
from controller.pipes import until_the_reader_goes
from topology.errors import ValidationError
from topology.loader import load_file
from topology.model import Endpoint, Model, parse_ip, parse_mac


class CommandError(Exception):
    """A user error: printed as one line, exit status 1."""


class SubcommandParser(argparse.ArgumentParser):
    """A command's parser that refuses words it does not take itself, with its own usage.

    argparse hands what a subcommand's parser leaves over to the top-level parser, which then prints its own
    usage (`tenetctl [-h] ... COMMAND ...`) and "unrecognized arguments", saying nothing of the command that
    was wrong; `tenetctl qos detach gold blue/web` prints `usage: tenetctl qos detach ... TARGET` instead.
    Given as `parser_class` to the top level's `add_subparsers`; the commands' own subcommands inherit it.
    """

    def parse_known_args(self, *args: Any, **kwargs: Any) -> Any:
        namespace, extras = super().parse_known_args(*args, **kwargs)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace, extras


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; output into a pipe closed early (`| head`) ends quietly."""
    return until_the_reader_goes(lambda: _main(argv))


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status = args.run(args)
        sys.stdout.flush()  # here, not at exit: a reader gone (`| head`) is the BrokenPipeError below
        return status
    except BrokenPipeError:
        # The reader went away (`tenetctl compile ... | head`): say nothing, but do not claim success.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except ValidationError as error:
        where = "" if error.path.startswith(args.file) else f"{args.file}: "
        print(f"tenetctl: {where}{error}", file=sys.stderr)
    except (CommandError, OSError) as error:
        print(f"tenetctl: {error}", file=sys.stderr)
    return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tenetctl",
        description="Tenet: multi-tenant networking on Open vSwitch. Offline commands read a topology file "
        "(nodes, tenants, networks, QoS, endpoints; see examples/cluster.yaml); live commands talk to a "
        "running controller (--server, --token, --json: before or after the command).",
        parents=[cli_live.connection_options()],
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=SubcommandParser)

    check = commands.add_parser(
        "check",
        help="validate a topology file",
        description="Validate a topology file: exit 0 and a summary if it is good, else one line naming the bad field.",
    )
    check.add_argument("file", metavar="FILE")
    check.set_defaults(run=run_check)

    compile_ = commands.add_parser(
        "compile",
        help="a node's flows, groups and meters as ovs-ofctl text",
        description="Print what Tenet installs on one node's br-int: meters, "
        "groups, then flows by table, as ovs-ofctl text.",
    )
    compile_.add_argument("file", metavar="FILE")
    compile_.add_argument("--node", required=True, help="the node to compile for")
    compile_.add_argument(
        "--numeric",
        action="store_true",
        help="numeric table ids, so the flows can be fed to `ovs-ofctl -O OpenFlow13 add-flows`",
    )
    compile_.set_defaults(run=run_compile)

    trace = commands.add_parser(
        "trace",
        help="follow a packet from one endpoint to another",
        description="Simulate a packet from --src to --dst through every switch of "
        "the compiled topology; print each table it passes and a final verdict line. "
        "Exit 0 for a completed trace, delivered or dropped.",
    )
    trace.add_argument("file", metavar="FILE")
    trace.add_argument("--src", required=True, metavar="ENDPOINT", help="sending endpoint id")
    trace.add_argument("--dst", required=True, metavar="ENDPOINT", help="destination endpoint id")
    trace.add_argument(
        "--proto",
        choices=PROTOCOLS,
        default="icmp",
        help="icmp, tcp or udp to the destination's IP; arp asks for its MAC (default icmp)",
    )
    trace.add_argument("--dport", type=int, metavar="N", help="destination port for tcp and udp (default 80)")
    trace.add_argument("--spoof-ip", metavar="IP", help="send from this source IP instead of the endpoint's own")
    trace.add_argument("--spoof-mac", metavar="MAC", help="send from this source MAC instead of the endpoint's own")
    trace.add_argument(  # no default: `tenetctl --json trace ...` sets it before the command
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print a JSON object: verdict, delivered_to, path",
    )
    trace.set_defaults(run=run_trace)
    matrix = commands.add_parser(
        "matrix",
        help="which endpoints reach which, through the compiled pipeline",
        description="Probe a new connection from every endpoint to every other on each protocol and port, "
        "through every switch of the compiled topology (conntrack and NetworkPolicies included): allowed when "
        "the request arrives and the answer comes back. Prints one grid per protocol and port (. allowed, "
        "X blocked; rows from, columns to, numbered), or with --json "
        '{"probes": [{from, to, protocol, port, allowed}]}.',
    )
    matrix.add_argument("file", metavar="FILE")
    matrix.add_argument(
        "--ports", type=port_list, default=[80], metavar="N[,N...]", help="destination ports (default 80)"
    )
    matrix.add_argument(
        "--protocols", type=protocol_list, default=["tcp"], metavar="P[,P...]", help="tcp, udp, sctp (default tcp)"
    )
    matrix.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print the probes as JSON")
    matrix.set_defaults(run=run_matrix)
    cli_live.add_commands(commands)
    return parser


def run_check(args: argparse.Namespace) -> int:
    model = load_file(args.file)
    print(
        f"{args.file}: ok: {len(model.nodes)} nodes, {len(model.tenants)} tenants, {len(model.networks)} networks, "
        f"{len(model.endpoints)} endpoints, {len(model.qos_profiles)} QoS profiles"
        + (f", {len(model.namespaces)} namespaces, {len(model.policies)} NetworkPolicies" if model.namespaces else "")
    )
    return 0


def run_compile(args: argparse.Namespace) -> int:
    model = load_file(args.file)
    if args.node not in model.nodes:
        raise CommandError(f"unknown node {args.node!r} (the file has {', '.join(sorted(model.nodes))})")
    state = Compiler(model).compile_node(args.node)
    text = render_state(state.flows(), state.groups().values(), state.meters().values(), names=not args.numeric)
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


def run_trace(args: argparse.Namespace) -> int:
    model = load_file(args.file)
    src, dst = (find_endpoint(model, args.src, "--src"), find_endpoint(model, args.dst, "--dst"))
    if args.dport is not None and not (args.proto in ("tcp", "udp") and 0 < args.dport < 65536):
        raise CommandError("--dport wants --proto tcp or udp and a port in 1..65535")
    try:
        spoof = Spoof(
            ip=parse_ip("--spoof-ip", args.spoof_ip) if args.spoof_ip else None,
            mac=parse_mac("--spoof-mac", args.spoof_mac) if args.spoof_mac else None,
        )
    except ValidationError as error:
        raise CommandError(str(error)) from None
    states = Compiler(model).compile_all()
    packet = to_endpoint(model, src, dst, proto=args.proto, dport=args.dport, spoof=spoof)
    trace = SimNetwork(model, states).send(src.id, packet)
    decisions = netpol.explain(model, [(hop.node, hop.flow) for hop in trace.hops])
    if args.json:
        print(json.dumps({**trace_json(trace, decisions), "policy": decisions}, indent=2))
    else:
        print(trace_text(trace, args, decisions) + "".join(f"\npolicy: {line}" for line in decisions))
    return 0


def port_list(text: str) -> list[int]:
    try:
        ports = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"want ports like 80,81, got {text!r}") from None
    if not all(0 < port < 65536 for port in ports):
        raise argparse.ArgumentTypeError(f"ports are 1..65535, got {text!r}")
    return ports


def protocol_list(text: str) -> list[str]:
    protocols = [part.strip().lower() for part in text.split(",")]
    if not all(p in ("tcp", "udp", "sctp") for p in protocols):
        raise argparse.ArgumentTypeError(f"protocols are tcp, udp and sctp, got {text!r}")
    return protocols


def run_matrix(args: argparse.Namespace) -> int:
    model = load_file(args.file)
    states = Compiler(model).compile_all()
    results = matrix.run(model, states, matrix.probes(model, args.ports, args.protocols))
    if getattr(args, "json", False):
        print(json.dumps({"probes": [probe.json(allowed) for probe, allowed in results]}, indent=1))
        return 0
    ids = sorted(model.endpoints)
    verdict = {(p.source, p.destination, p.protocol, p.port): allowed for p, allowed in results}
    width = max(len(i) for i in ids)
    blocks = []
    for protocol in args.protocols:
        for port in args.ports:
            lines = [f"{protocol}/{port}", " " * width + " " + " ".join(str(n % 10) for n in range(len(ids)))]
            for src in ids:
                cells = ["-" if src == dst else "." if verdict[(src, dst, protocol, port)] else "X" for dst in ids]
                lines.append(f"{src:<{width}} " + " ".join(cells))
            blocks.append("\n".join(lines))
    print("\n\n".join(blocks))
    print("columns: " + " ".join(f"{n % 10}={i}" for n, i in enumerate(ids)))
    return 0


def find_endpoint(model: Model, endpoint_id: str, option: str) -> Endpoint:
    endpoint = model.endpoints.get(endpoint_id)
    if endpoint is None:
        raise CommandError(f"{option}: unknown endpoint {endpoint_id!r}")
    return endpoint


def drop_reason(trace: Trace, decisions: Sequence[str] = ()) -> str:
    """Why a dropped packet was dropped: the isolation that dropped it (`NetworkPolicy: x-a is isolated for
    ingress by x/deny and none of their rules allows it`, from `netpol.explain`'s decisions) when a policy did and
    the switches gave no other reason, else the simulated switches' own."""
    if not trace.drops:
        for line in decisions:
            _direction, dropped, why = line.partition(": dropped: ")
            if dropped:
                return f"NetworkPolicy: {why}"
    return trace.reason


def verdict_line(trace: Trace, decisions: Sequence[str] = ()) -> str:
    """`delivered to A, B`, or `dropped: REASON`. What reaches endpoints as ARP replies to a traced ARP request
    was made by a switch's ARP responder (the simulation sends one packet; no endpoint answers): `answered
    by the switch's ARP responder: reply delivered to A`."""
    if trace.delivered:
        replies = all(
            d.packet.fields.get("eth_type") == ETH_TYPE_ARP and d.packet.fields.get("arp_op") == ARP_REPLY
            for d in trace.delivered
        )
        prefix = "answered by the switch's ARP responder: reply delivered to " if replies else "delivered to "
        return prefix + ", ".join(trace.delivered_to)
    return f"dropped: {drop_reason(trace, decisions)}"


def trace_text(trace: Trace, args: argparse.Namespace, decisions: Sequence[str] = ()) -> str:
    what = args.proto + (f" dport {args.dport}" if args.dport else "")
    lines = [f"trace {args.src} -> {args.dst} ({what})"]
    for hop in trace.hops:
        detail = flow_text(hop.flow) if hop.flow is not None else hop.detail
        lines.append(f"  {hop.node:<10} {hop.table:<15} {detail}")
    lines.append(verdict_line(trace, decisions))
    return "\n".join(lines)


def trace_json(trace: Trace, decisions: Sequence[str] = ()) -> dict:
    return {
        "verdict": trace.verdict,
        "delivered_to": trace.delivered_to,
        "reason": None if trace.delivered else drop_reason(trace, decisions),
        "path": [
            {"node": h.node, "table": h.table, "flow": flow_text(h.flow) if h.flow else None, "note": h.detail}
            for h in trace.hops
        ],
    }


if __name__ == "__main__":
    sys.exit(main())
