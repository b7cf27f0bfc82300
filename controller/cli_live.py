"""tenetctl's live commands: they talk to a running controller's API.

  tenetctl tenant create|ls|show|rm     tenetctl tenant quota NAME [--networks N] [--endpoints N]   (admin)
  tenetctl network create TENANT/NAME --encap vxlan|vlan [--vni N|--vlan N] --subnet CIDR [--gateway IP] [--mtu N]
  tenetctl network create ... [--nat-outgoing] [--node-ports tcp/53,udp/53]
  tenetctl network set TENANT/NAME [--nat-outgoing on|off] [--node-ports tcp/53,udp/53|none]
  tenetctl network ls [TENANT] | show TENANT/NAME | rm TENANT/NAME
  tenetctl qos create NAME --rate-kbps N [--burst-kb N] [--direction egress|ingress|both] | ls | show | rm
  tenetctl qos attach NAME TARGET | detach TARGET
  tenetctl node ls|show       tenetctl endpoint ls|show|set   tenetctl flows NODE [--no-verify]
  tenetctl namespace ...      tenetctl policy apply -f FILE | ls | show | rm      (see cli_netpol)

Every command takes --server (or TENET_SERVER), --token, --token-file (or TENET_TOKEN) and --json, before
the command or after it: `tenetctl --json tenant ls` and `tenetctl tenant ls --json` are the same. For an
https:// server --ca-file (or TENET_CA_FILE), and --client-cert/--client-key for mutual TLS.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.client import DEFAULT_SERVER, Client, ClientError, path


@dataclass(frozen=True)
class Output:
    """What a command prints: `doc` for --json, `text` for people."""

    doc: Any
    text: str
    status: int = 0  # the exit status: 1 when the command found a problem (`tenetctl flows`: a difference)


Run = Callable[[Client, argparse.Namespace], Output]


class UsageError(Exception):
    """A bad argument found after parsing (TENANT/NAME without the slash, an unreadable token file)."""


# --- wiring ----------------------------------------------------------------------------------------------


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Register the live commands on tenetctl's subcommand parser (whose parent has `connection_options()`)."""
    common = connection_options(suppress=True)
    _tenant(commands, common)
    _network(commands, common)
    _qos(commands, common)
    _node(commands, common)
    endpoint_actions = _endpoint(commands, common)
    from controller import cli_netpol  # it builds on this module's helpers

    cli_netpol.add_commands(commands, common)
    cli_netpol.add_endpoint_set(endpoint_actions, common)
    flows = commands.add_parser(
        "flows",
        parents=[common],
        help="what the controller wants on a node, and whether its switch holds exactly that",
        description="Print the node's desired meters, groups and flows as ovs-ofctl text with table names, "
        "after a comment line saying whether the node's switch is connected; then dump the switch now and "
        "print, as comment lines, every flow, group and meter missing from it, extra on it, or different. "
        "Exit status 1 when the switch differs or cannot be dumped.",
    )
    flows.add_argument("node", metavar="NODE")
    flows.add_argument(
        "--no-verify", dest="verify", action="store_false", help="only the desired state: do not dump the switch"
    )
    flows.set_defaults(run=live(show_flows))


def connection_options(*, suppress: bool = False) -> argparse.ArgumentParser:
    """--server, --token, --token-file and --json, for tenetctl itself and (`suppress`) for each command.

    The commands' copy has no defaults (argparse.SUPPRESS): a value given before the command survives the
    command's parser, which would otherwise set its own default over it.
    """
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("controller connection")

    def default(value: object) -> object:
        return argparse.SUPPRESS if suppress else value

    server_help = f"the controller's API (env TENET_SERVER; {DEFAULT_SERVER})"
    group.add_argument("--server", metavar="URL", default=default(None), help=server_help)
    group.add_argument("--token", default=default(None), help="bearer token (env TENET_TOKEN)")
    group.add_argument("--token-file", metavar="FILE", default=default(None), help="a file holding the bearer token")
    ca_help = "PEM CA to verify an https:// controller with (env TENET_CA_FILE)"
    group.add_argument("--ca-file", metavar="FILE", default=default(None), help=ca_help)
    cert_help = "PEM certificate for a controller wanting mutual TLS (env TENET_CLIENT_CERT)"
    group.add_argument("--client-cert", metavar="FILE", default=default(None), help=cert_help)
    key_help = "PEM key of --client-cert (env TENET_CLIENT_KEY)"
    group.add_argument("--client-key", metavar="FILE", default=default(None), help=key_help)
    json_help = "print the API's JSON instead of a table"
    group.add_argument("--json", action="store_true", default=default(False), help=json_help)
    return common


def _subcommands(commands: argparse._SubParsersAction, name: str, help_: str) -> argparse._SubParsersAction:
    parser = commands.add_parser(name, parents=[connection_options(suppress=True)], help=help_, description=help_)
    return parser.add_subparsers(dest=f"{name}_command", required=True, metavar="ACTION")


def _leaf(
    actions: argparse._SubParsersAction, name: str, common: argparse.ArgumentParser, run: Run, help_: str
) -> argparse.ArgumentParser:
    parser = actions.add_parser(name, parents=[common], help=help_, description=help_)
    parser.set_defaults(run=live(run))
    return parser


def _tenant(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    actions = _subcommands(commands, "tenant", "tenants (creating and deleting them needs the admin token)")
    _leaf(actions, "create", common, create_tenant, "create a tenant").add_argument("name", metavar="NAME")
    _leaf(actions, "ls", common, list_tenants, "list tenants")
    _leaf(actions, "show", common, show_tenant, "show a tenant").add_argument("name", metavar="NAME")
    _leaf(actions, "rm", common, delete_tenant, "delete a tenant without networks").add_argument("name", metavar="NAME")
    quota = _leaf(actions, "quota", common, set_quota, "set a tenant's quota (admin); a limit left out: the default")
    quota.add_argument("name", metavar="NAME")
    quota.add_argument("--networks", type=int, metavar="N", help="networks the tenant may hold")
    quota.add_argument("--endpoints", type=int, metavar="N", help="endpoints the tenant may hold")


def _network(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    actions = _subcommands(commands, "network", "a tenant's networks")
    create = _leaf(actions, "create", common, create_network, "create a VXLAN or VLAN network with its subnet")
    create.add_argument("network", metavar="TENANT/NAME")
    create.add_argument("--encap", required=True, choices=("vxlan", "vlan"))
    segment = create.add_mutually_exclusive_group()
    segment.add_argument(
        "--vni", type=int, metavar="N", help="VXLAN network identifier (vxlan; default: pool's lowest free)"
    )
    segment.add_argument("--vlan", type=int, metavar="N", help="VLAN id (vlan; default: the pool's lowest free)")
    create.add_argument("--subnet", required=True, metavar="CIDR")
    create.add_argument("--gateway", metavar="IP", help="default: the subnet's first host address")
    create.add_argument(
        "--mtu",
        type=int,
        metavar="N",
        help="bytes; default: the tenant's MTU (every network of a tenant has one), or for its first network the "
        "smallest node underlay MTU less 50; at most that (vxlan) or the smallest uplink MTU (vlan)",
    )
    create.add_argument(
        "--nat-outgoing",
        action="store_true",
        default=None,
        help="reach addresses outside the cluster with SNAT through the node's gateway port (default: on for the "
        "cluster network only)",
    )
    create.add_argument("--node-ports", metavar="PORTS", help=NODE_PORTS_HELP + " (default: none)")
    set_ = _leaf(actions, "set", common, set_network, "change a network: its egress SNAT, its node ports")
    set_.add_argument("network", metavar="TENANT/NAME")
    set_.add_argument(
        "--nat-outgoing",
        choices=("on", "off"),
        help="on: egress beyond the cluster with SNAT; off: none (for the cluster network: without the nodes' "
        "masquerade, with the pods' own addresses)",
    )
    set_.add_argument("--node-ports", metavar="PORTS", help=NODE_PORTS_HELP + "; none closes them all")
    _leaf(actions, "ls", common, list_networks, "list networks").add_argument("tenant", metavar="TENANT", nargs="?")
    _leaf(actions, "show", common, show_network, "show a network").add_argument("network", metavar="TENANT/NAME")
    rm = _leaf(actions, "rm", common, delete_network, "delete a network without endpoints")
    rm.add_argument("network", metavar="TENANT/NAME")


def _qos(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    actions = _subcommands(commands, "qos", "QoS profiles (bandwidth caps) and what they apply to")
    create = _leaf(
        actions,
        "create",
        common,
        create_qos,
        "create a QoS profile (admin). A profile caps each endpoint it covers on its own: attached to a network,"
        " every endpoint of the network gets its own meter with the full rate (it is not a cap on the network"
        " or on a node as a whole)",
    )
    create.add_argument("name", metavar="NAME")
    create.add_argument("--rate-kbps", type=int, required=True, metavar="N", help="the rate, in kbit/s")
    create.add_argument(
        "--burst-kb",
        type=int,
        metavar="N",
        help="the meter's bucket, in kbit (kilobits, not kB); default: half a second of the rate, which TCP needs"
        " to reach the rate (much less and TCP gets a fraction of it)",
    )
    create.add_argument(
        "--direction",
        choices=("egress", "ingress", "both"),
        default="both",
        help="egress: traffic the pod sends; ingress: traffic the pod receives; both (default): each capped"
        " at the rate by a meter of its own",
    )
    _leaf(actions, "ls", common, list_qos, "list QoS profiles")
    _leaf(actions, "show", common, show_qos, "show a QoS profile").add_argument("name", metavar="NAME")
    _leaf(actions, "rm", common, delete_qos, "delete a QoS profile (admin)").add_argument("name", metavar="NAME")
    attach = _leaf(actions, "attach", common, attach_qos, "meter a network or an endpoint with a profile")
    attach.add_argument("name", metavar="NAME")
    attach.add_argument("target", metavar="TENANT/NETWORK|ENDPOINT")
    detach = _leaf(
        actions,
        "detach",
        common,
        detach_qos,
        "remove the profile from a network or an endpoint: give the target only, as it has one profile at most "
        "(tenetctl qos detach blue/web)",
    )
    detach.add_argument("target", metavar="TENANT/NETWORK|ENDPOINT")


def _node(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    actions = _subcommands(commands, "node", "nodes and their switches")
    _leaf(actions, "ls", common, list_nodes, "list nodes")
    _leaf(actions, "show", common, show_node, "show a node and its switch").add_argument("name", metavar="NAME")


def _endpoint(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> argparse._SubParsersAction:
    actions = _subcommands(commands, "endpoint", "endpoints (pods) and their addresses")
    ls = _leaf(actions, "ls", common, list_endpoints, "list endpoints")
    ls.add_argument("--network", metavar="TENANT/NAME", help="only this network's")
    ls.add_argument("--node", metavar="NODE", help="only this node's")
    _leaf(actions, "show", common, show_endpoint, "show an endpoint").add_argument("id", metavar="ID")
    return actions


def live(run: Run) -> Callable[[argparse.Namespace], int]:
    """Connect, run, print; any failure is one line on stderr and exit status 1."""

    def command(args: argparse.Namespace) -> int:
        try:
            client = make_client(args)
            result = run(client, args)
        except (ClientError, UsageError) as error:
            print(f"tenetctl: {error_line(error)}", file=sys.stderr)
            return 1
        text = json.dumps(result.doc, indent=2) if args.json else result.text
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return result.status

    return command


def make_client(args: argparse.Namespace) -> Client:
    server = args.server or os.environ.get("TENET_SERVER") or DEFAULT_SERVER
    token = args.token
    if token is None and args.token_file:
        try:
            token = Path(args.token_file).read_text().strip()
        except OSError as error:
            raise UsageError(f"cannot read token file {args.token_file}: {error.strerror or error}") from None
    if token is None:
        token = os.environ.get("TENET_TOKEN") or None
    return Client(
        server,
        token,
        ca_file=args.ca_file or os.environ.get("TENET_CA_FILE") or None,
        cert_file=args.client_cert or os.environ.get("TENET_CLIENT_CERT") or None,
        key_file=args.client_key or os.environ.get("TENET_CLIENT_KEY") or None,
    )


def error_line(error: Exception) -> str:
    line = " ".join(str(error).split())  # one line, whatever the server said
    if isinstance(error, ClientError) and error.status == 401:
        line += " (give --token, --token-file or TENET_TOKEN)"
    return line


# --- output ----------------------------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Aligned columns, a header row first; empty cells print as '-'."""
    cells = [list(headers)] + [[_cell(value) for value in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells)


def fields(doc: dict[str, Any], keys: Sequence[str]) -> str:
    """`key: value` lines, values aligned."""
    width = max(len(key) for key in keys) + 1
    return "\n".join(f"{key + ':':<{width}} {_cell(doc.get(key))}" for key in keys)


def header(name: str) -> str:
    return name.upper().replace("_", "-")


def _cell(value: object) -> str:
    if value is None or value == "" or value == []:
        return "-"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def switch_text(status: dict[str, Any] | None) -> str:
    if not status:
        return "-"
    if not status.get("connected"):
        return "disconnected"
    in_sync = status.get("in_sync")
    state = "sync unknown" if in_sync is None else ("in sync" if in_sync else "out of sync")
    errors = status.get("errors") or []
    guarded = status.get("guarded_ports") or []
    return (
        f"connected, {state}"
        + (f", {len(errors)} error(s)" if errors else "")
        + (f", {len(guarded)} guarded port(s)" if guarded else "")
    )


def split_network(key: str) -> tuple[str, str]:
    tenant, _, name = key.partition("/")
    if not tenant or not name or "/" in name:
        raise UsageError(f"want TENANT/NAME, got {key!r}")
    return tenant, name


# --- tenants ---------------------------------------------------------------------------------------------

TENANT_FIELDS = ("name", "id", "networks")


def create_tenant(client: Client, args: argparse.Namespace) -> Output:
    doc = client.post(path("v1", "tenants"), {"name": args.name})
    return Output(doc, f"created tenant {doc['name']} (id {doc['id']})")


def list_tenants(client: Client, args: argparse.Namespace) -> Output:
    docs = client.get(path("v1", "tenants"))
    return Output(docs, table([header(f) for f in TENANT_FIELDS], [[d[f] for f in TENANT_FIELDS] for d in docs]))


def show_tenant(client: Client, args: argparse.Namespace) -> Output:
    doc = client.get(path("v1", "tenants", args.name))
    return Output(doc, fields({**doc, **quota_view(doc)}, (*TENANT_FIELDS, "quota", "usage")))


def quota_view(doc: dict[str, Any]) -> dict[str, str]:
    """A tenant's `quota` and `usage` in words: `networks 10, endpoints no limit` and `networks 1 of 10,
    endpoints 0`; empty for a document without them (a controller from before quotas)."""
    quota, usage = doc.get("quota"), doc.get("usage")
    if not isinstance(quota, dict) or not isinstance(usage, dict):
        return {}
    limits = {kind: "no limit" if quota.get(kind) is None else str(quota[kind]) for kind in ("networks", "endpoints")}
    used = {
        kind: f"{usage.get(kind, 0)}" + ("" if quota.get(kind) is None else f" of {quota[kind]}") for kind in limits
    }
    return {
        "quota": ", ".join(f"{kind} {limit}" for kind, limit in limits.items()),
        "usage": ", ".join(f"{kind} {count}" for kind, count in used.items()),
    }


def set_quota(client: Client, args: argparse.Namespace) -> Output:
    doc = client.put(
        path("v1", "tenants", args.name), {"quota": {"networks": args.networks, "endpoints": args.endpoints}}
    )
    limits = ", ".join(f"{k} {'no limit' if v is None else v}" for k, v in doc["quota"].items())
    return Output(doc, f"quota of tenant {doc['name']}: {limits}")


def delete_tenant(client: Client, args: argparse.Namespace) -> Output:
    client.delete(path("v1", "tenants", args.name))
    return Output({"deleted": args.name}, f"deleted tenant {args.name}")


# --- networks --------------------------------------------------------------------------------------------

NETWORK_COLUMNS = (
    "key",
    "encap",
    "segment",
    "subnet",
    "gateway",
    "mtu",
    "endpoints",
    "qos",
    "nat_outgoing",
    "node_ports",
)
NETWORK_FIELDS = (
    "key",
    "encap",
    "segment",
    "subnet",
    "gateway",
    "gateway_mac",
    "mtu",
    "id",
    "endpoints",
    "free_addresses",
    "qos",
    "nat_outgoing",
    "node_ports",
)
NODE_PORTS_HELP = (
    "ports of its node's own address the network's pods may reach, comma-separated PROTOCOL/PORT (tcp or udp), "
    "e.g. tcp/53,udp/53; the cluster admin's token only"
)


def node_ports_arg(text: str | None) -> list[str] | str | None:
    """--node-ports as the API takes it: None (not given), "none", or the list; UsageError for an empty value
    or an empty item (`tcp/53,`): only `none` closes every port."""
    if text is None or text.strip() == "none":
        return None if text is None else "none"
    items = [item.strip() for item in text.split(",")]
    if not all(items):
        raise UsageError(
            f"--node-ports: want PROTOCOL/PORT[,PROTOCOL/PORT...] like tcp/53,udp/53, or none to close them all; "
            f"got {text!r}" + (" (an empty item)" if text.strip() else "")
        )
    return items


def on_off(doc: dict[str, Any]) -> dict[str, Any]:
    """The network document with `nat_outgoing` as `network set --nat-outgoing` takes it: on or off."""
    value = doc.get("nat_outgoing")
    return doc if not isinstance(value, bool) else {**doc, "nat_outgoing": "on" if value else "off"}


def network_table(docs: list[dict[str, Any]]) -> str:
    headers = ["NETWORK" if c == "key" else header(c) for c in NETWORK_COLUMNS]
    return table(headers, [[on_off(d).get(c) for c in NETWORK_COLUMNS] for d in docs])


def create_network(client: Client, args: argparse.Namespace) -> Output:
    tenant, name = split_network(args.network)
    body = {"name": name, "encap": args.encap, "subnet": args.subnet, "gateway": args.gateway, "mtu": args.mtu}
    body.update({"vni": args.vni, "vlan": args.vlan, "nat_outgoing": args.nat_outgoing})
    body["node_ports"] = node_ports_arg(args.node_ports)
    doc = client.post(path("v1", "tenants", tenant, "networks"), {k: v for k, v in body.items() if v is not None})
    return Output(doc, f"created network {doc['key']} ({doc['encap']} {doc['segment']}, {doc['subnet']})")


def set_network(client: Client, args: argparse.Namespace) -> Output:
    tenant, name = split_network(args.network)
    body: dict[str, Any] = {}
    if args.nat_outgoing is not None:
        body["nat_outgoing"] = args.nat_outgoing == "on"
    if args.node_ports is not None:
        body["node_ports"] = node_ports_arg(args.node_ports)
    if not body:
        raise UsageError("network set: give --nat-outgoing, --node-ports or both")
    doc = client.patch(path("v1", "tenants", tenant, "networks", name), body)
    said = []
    if "nat_outgoing" in body:
        said.append(f"nat_outgoing {'on' if doc['nat_outgoing'] else 'off'}")
    if "node_ports" in body:
        said.append(f"node_ports {','.join(doc['node_ports']) or 'none'}")
    return Output(doc, f"network {doc['key']}: {', '.join(said)}")


def list_networks(client: Client, args: argparse.Namespace) -> Output:
    url = path("v1", "tenants", args.tenant, "networks") if args.tenant else path("v1", "networks")
    docs = client.get(url)
    return Output(docs, network_table(docs))


def show_network(client: Client, args: argparse.Namespace) -> Output:
    tenant, name = split_network(args.network)
    doc = client.get(path("v1", "tenants", tenant, "networks", name))
    return Output(doc, fields(on_off(doc), NETWORK_FIELDS))


def delete_network(client: Client, args: argparse.Namespace) -> Output:
    tenant, name = split_network(args.network)
    client.delete(path("v1", "tenants", tenant, "networks", name))
    return Output({"deleted": args.network}, f"deleted network {args.network}")


# --- QoS -------------------------------------------------------------------------------------------------

QOS_FIELDS = ("name", "rate_kbps", "burst_kb", "direction", "attachments")


def create_qos(client: Client, args: argparse.Namespace) -> Output:
    body = {"name": args.name, "rate_kbps": args.rate_kbps, "direction": args.direction}
    if args.burst_kb is not None:
        body["burst_kb"] = args.burst_kb
    doc = client.post(path("v1", "qos"), body)
    summary = f"{doc['rate_kbps']} kbit/s, burst {doc['burst_kb']} kbit, {doc['direction']}, per endpoint"
    return Output(doc, f"created QoS profile {doc['name']} ({summary})")


def list_qos(client: Client, args: argparse.Namespace) -> Output:
    docs = client.get(path("v1", "qos"))
    return Output(docs, table([header(f) for f in QOS_FIELDS], [[d[f] for f in QOS_FIELDS] for d in docs]))


def show_qos(client: Client, args: argparse.Namespace) -> Output:
    doc = client.get(path("v1", "qos", args.name))
    return Output(doc, fields(doc, QOS_FIELDS))


def delete_qos(client: Client, args: argparse.Namespace) -> Output:
    client.delete(path("v1", "qos", args.name))
    return Output({"deleted": args.name}, f"deleted QoS profile {args.name}")


def attach_qos(client: Client, args: argparse.Namespace) -> Output:
    doc = client.post(path("v1", "qos", args.name, "attachments"), {"target": args.target})
    return Output(doc, f"attached QoS profile {doc['profile']} to {doc['kind']} {doc['target']}")


def detach_qos(client: Client, args: argparse.Namespace) -> Output:
    client.delete(path("v1", "qos-attachments"), target=args.target)
    return Output({"detached": args.target}, f"detached QoS from {args.target}")


# --- nodes, endpoints, flows -----------------------------------------------------------------------------

NODE_COLUMNS = ("name", "tunnel_ip", "uplink", "datapath_id", "endpoints", "switch")


def node_view(doc: dict[str, Any]) -> dict[str, Any]:
    """The node as people read it: the datapath id in hex as ovs-vsctl shows it, the switch in words."""
    return {**doc, "datapath_id": f"{doc['datapath_id']:#018x}", "switch": switch_text(doc.get("switch"))}


def list_nodes(client: Client, args: argparse.Namespace) -> Output:
    docs = client.get(path("v1", "nodes"))
    rows = [[node_view(d).get(c) for c in NODE_COLUMNS] for d in docs]
    return Output(docs, table([header(c) for c in NODE_COLUMNS], rows))


def show_node(client: Client, args: argparse.Namespace) -> Output:
    doc = client.get(path("v1", "nodes", args.name))
    text = fields(node_view(doc), NODE_COLUMNS if "switch" in doc else NODE_COLUMNS[:4])
    errors = (doc.get("switch") or {}).get("errors") or []
    text += "".join(f"\nerror:       {' '.join(str(e).split())}" for e in errors)
    guarded = (doc.get("switch") or {}).get("guarded_ports") or []
    text += "".join(f"\nguarded:     {name} (no endpoint has it as planned)" for name in guarded)
    return Output(doc, text)


ENDPOINT_COLUMNS = ("id", "network", "node", "ip", "mac", "port_name", "qos", "namespace")
ENDPOINT_FIELDS = (
    "id",
    "tenant",
    "network",
    "node",
    "ip",
    "prefix_len",
    "gateway",
    "mtu",
    "mac",
    "port_name",
    "ofport",
    "namespace",
    "labels",
    "ports",
)


def list_endpoints(client: Client, args: argparse.Namespace) -> Output:
    docs = client.get(path("v1", "endpoints"), network=args.network, node=args.node)
    rows = [[{**d, "ip": f"{d['ip']}/{d['prefix_len']}"}.get(c) for c in ENDPOINT_COLUMNS] for d in docs]
    return Output(docs, table([header(c).removesuffix("-NAME") for c in ENDPOINT_COLUMNS], rows))


def show_endpoint(client: Client, args: argparse.Namespace) -> Output:
    doc = client.get(path("v1", "endpoints", args.id))
    shown = {
        **doc,
        "labels": [f"{k}={v}" for k, v in sorted((doc.get("labels") or {}).items())],
        "ports": [_port_text(p) for p in doc.get("ports") or []],
    }
    return Output(doc, fields(shown, ENDPOINT_FIELDS))


def _port_text(port: dict[str, Any]) -> str:
    """A named container port as `endpoint set --ports` takes it: NAME=PORT/PROTOCOL (unnamed: PORT/PROTOCOL)."""
    text = f"{port['port']}/{str(port.get('protocol') or 'TCP').lower()}"
    return f"{port['name']}={text}" if port.get("name") else text


def show_flows(client: Client, args: argparse.Namespace) -> Output:
    doc = client.get(path("v1", "nodes", args.node, "flows"), verify="1" if args.verify else None)
    summary = counts_text(doc["counts"])
    # Comment lines: ovs-ofctl skips them, so the text still reads as a flow file.
    verify = doc.get("verify")
    switch = switch_text(doc["switch"])
    if verify and verify.get("checked"):  # the dump made now is the verdict, not the last reconcile's
        switch = "connected, " + ("in sync" if verify.get("in_sync") else "OUT OF SYNC (see below)")
    text = f"# node {doc['node']}: switch {switch}; desired: {summary}\n{doc['flows']}"
    if verify is None:
        return Output(doc, text)
    lines = verify_lines(verify)
    text = f"{lines[0]}\n{text}" + "".join(f"{line}\n" for line in lines[1:])  # the verdict first
    return Output(doc, text, 0 if verify.get("in_sync") else 1)


def counts_text(counts: dict[str, int]) -> str:
    """ "3 flows, 1 group, 0 meters": each count with its noun, singular for 1."""
    parts = []
    for noun in ("flows", "groups", "meters"):
        number = counts.get(noun, 0)
        parts.append(f"{number} {noun.removesuffix('s') if number == 1 else noun}")
    return ", ".join(parts)


def verify_lines(verify: dict[str, Any]) -> list[str]:
    """The comparison of a fresh dump with the desired state, as comment lines: a verdict, then each difference."""
    if not verify.get("checked"):
        return [f"# OVS not checked: {verify.get('reason', 'unknown reason')}"]
    held = verify.get("switch_counts") or {}
    dumped = counts_text(held)
    if verify.get("in_sync"):
        return [f"# OVS holds exactly that (dumped now: {dumped})"]
    missing, extra, different = verify.get("missing", []), verify.get("extra", []), verify.get("different", [])
    lines = [
        f"# OVS DIFFERS (dumped now: {dumped}): {len(missing)} missing, {len(extra)} extra, {len(different)} different"
    ]
    lines += [f"# missing: {item}" for item in missing]
    lines += [f"# extra:   {item}" for item in extra]
    for pair in different:
        lines += [f"# want:    {pair['want']}", f"# have:    {pair['have']}"]
    return lines
