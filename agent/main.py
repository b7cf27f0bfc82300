"""tenet-agent: gives pods on this node their ports on br-int, asked by the CNI plugin over a unix socket.

    tenet-agent run --node NAME --tunnel-ip IP [--controller URL] [--token-file FILE] ...
    tenet-agent install-cni [--bin-dir /opt/cni/bin] [--conf-dir /etc/cni/net.d] --tenant T --network N

`run` registers the node with the controller (name, tunnel IP, datapath id, uplink, and the MTUs of the
interface holding the tunnel IP and of the uplink, which network MTUs must fit; again with new values: the
node is updated in place, its pods kept), makes sure br-int is
there (userspace datapath where the kernel module is missing), `fail_mode=secure`, the controller target
and the flow-based VXLAN port, cleans up what a crash left half-made, then serves the socket. It ends
`flow-restore-wait` once the controller has replayed the node's flows (agent/restore.py). `install-cni`
writes the plugin, compiled from cni/plugin.c when a C compiler is found (cni.install), and says which.
Settings for `run` come from flags, else environment variables TENET_<NAME> (e.g. TENET_TUNNEL_IP).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, overload

from cni.protocol import DEFAULT_SOCKET
from controller.pipes import until_the_reader_goes

log = logging.getLogger("tenet.agent")
DATAPATH_ID_BASE = 0x7E_0000_0000_0000  # default datapath ids: this, or'ed with the tunnel IP


EXIT_REFUSED = 2  # the controller refused the node's registration: restarting cannot help


class StartupError(RuntimeError):
    """Something the operator must fix before the agent can start: printed as one line."""

    def __init__(self, message: str, *, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


@overload
def _env(name: str) -> str | None: ...
@overload
def _env(name: str, default: str) -> str: ...
def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"TENET_{name.upper()}", default)


def global_options(*, suppress: bool) -> argparse.ArgumentParser:
    """Options of every verb, taken before or after it; the verbs' copy (`suppress`) has no default, so a value
    given before the verb is not overwritten by the verb's parser."""
    common = argparse.ArgumentParser(add_help=False)
    default = argparse.SUPPRESS if suppress else _env("socket", DEFAULT_SOCKET)
    common.add_argument(
        "--socket", default=default, help=f"the unix socket the plugin calls (env TENET_SOCKET; {DEFAULT_SOCKET})"
    )
    return common


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="tenet-agent", description=__doc__.split("\n\n")[0], parents=[global_options(suppress=False)]
    )
    verbs = top.add_subparsers(dest="verb", required=True, metavar="run|install-cni")
    common = [global_options(suppress=True)]
    run = verbs.add_parser(
        "run",
        parents=common,
        help="serve CNI requests for this node (the daemon)",
        description="Register this node with the controller, make br-int, then serve the CNI plugin's requests "
        "on the unix socket. Every flag may come from an environment variable TENET_<NAME> instead (--tunnel-ip: "
        "TENET_TUNNEL_IP); a flag given wins.",
    )
    run.add_argument(
        "--node",
        default=_env("node", socket.gethostname()),
        help="node name (env TENET_NODE; default: this host's name)",
    )
    run.add_argument(
        "--tunnel-ip",
        default=_env("tunnel_ip"),
        help="this node's underlay address for VXLAN (env TENET_TUNNEL_IP; required)",
    )
    run.add_argument(
        "--uplink", default=_env("uplink"), help="interface carrying VLAN networks (env TENET_UPLINK; default: none)"
    )
    run.add_argument(
        "--controller",
        default=_env("controller", "http://127.0.0.1:8780"),
        help="controller API URL, http:// or https:// (env TENET_CONTROLLER; default http://127.0.0.1:8780)",
    )
    run.add_argument(
        "--token-file",
        default=_env("token_file"),
        help="file holding this node's bearer token (a node token of the controller's token file; env "
        "TENET_TOKEN_FILE; default: none)",
    )
    run.add_argument(
        "--openflow",
        default=_env("openflow", "tcp:127.0.0.1:6653"),
        help="br-int's controller target: tcp:IP:PORT, or ssl:IP:PORT with the three --ovs-ssl-* files (env "
        "TENET_OPENFLOW; default tcp:127.0.0.1:6653)",
    )
    run.add_argument(
        "--ovs-ssl-key",
        default=_env("ovs_ssl_key"),
        help="this switch's PEM private key (ovs-pki; env TENET_OVS_SSL_KEY)",
    )
    run.add_argument(
        "--ovs-ssl-cert",
        default=_env("ovs_ssl_cert"),
        help="this switch's PEM certificate (ovs-pki; env TENET_OVS_SSL_CERT)",
    )
    run.add_argument(
        "--ovs-ssl-ca",
        default=_env("ovs_ssl_ca"),
        help="PEM CA of the controller's certificate (ovs-pki controllerca; env TENET_OVS_SSL_CA)",
    )
    run.add_argument(
        "--ca-file",
        default=_env("ca_file"),
        help="PEM CA to verify an https:// --controller with (env TENET_CA_FILE; default: the system's CAs)",
    )
    run.add_argument(
        "--client-cert",
        default=_env("client_cert"),
        help="PEM certificate, for an API wanting mutual TLS (env TENET_CLIENT_CERT)",
    )
    run.add_argument("--client-key", default=_env("client_key"), help="PEM key of --client-cert (env TENET_CLIENT_KEY)")
    run.add_argument(
        "--ovsdb",
        default=_env("ovsdb", "unix:/var/run/openvswitch/db.sock"),
        help="OVSDB connection string (env TENET_OVSDB; default unix:/var/run/openvswitch/db.sock)",
    )
    run.add_argument(
        "--bridge",
        default=_env("bridge", "br-int"),
        help="the integration bridge the agent makes and plugs pods into (env TENET_BRIDGE; default br-int)",
    )
    run.add_argument(
        "--openflow-mgmt",
        default=_env("openflow_mgmt"),
        help="the bridge's management socket, through which the controller replays the flows while"
        " other_config:flow-restore-wait holds ovs-vswitchd, and, on the userspace datapath, where the agent"
        " watches the tables after whose changes it purges the datapath's flows (default: BRIDGE.mgmt next to the"
        " OVSDB unix socket, whose directory is also taken as ovs-vswitchd's rundir for ovs-appctl; env"
        " TENET_OPENFLOW_MGMT)",
    )
    run.add_argument(
        "--datapath-type",
        default=_env("datapath_type", "auto"),
        choices=("auto", "netdev", "system"),
        help="auto: the kernel datapath where the openvswitch module is there, else userspace (netdev) (env"
        " TENET_DATAPATH_TYPE; default auto)",
    )
    run.add_argument(
        "--datapath-id",
        default=_env("datapath_id"),
        help="br-int's datapath id (env TENET_DATAPATH_ID; default: 0x7e000000000000 | the tunnel IP)",
    )
    run.add_argument(
        "--ready-timeout",
        type=float,
        default=float(_env("ready_timeout", "10")),
        metavar="SECONDS",
        help="how long ADD waits for the controller to install a pod's flows before it fails with CNI code 11"
        " (env TENET_READY_TIMEOUT; default 10)",
    )
    run.add_argument(
        "--log-level",
        default=_env("log_level", "info"),
        help="debug, info, warning or error (env TENET_LOG_LEVEL; default info); the log goes to stderr",
    )
    install = verbs.add_parser(
        "install-cni",
        parents=common,
        help="write the plugin (compiled with cc or gcc if there is one, else a Python launcher) and a conflist",
        description="Write the CNI plugin `tenet` into --bin-dir (compiled from cni/plugin.c with cc or gcc if "
        "there is one, else a Python launcher) and 10-tenet.conflist (loopback, then tenet) into --conf-dir; give "
        "--tenant and --network, --namespace-map, or both.",
    )
    install.add_argument(
        "--bin-dir",
        default="/opt/cni/bin",
        type=Path,
        metavar="DIR",
        help="where the runtime looks for CNI plugins: the plugin `tenet` goes there (default /opt/cni/bin)",
    )
    install.add_argument(
        "--conf-dir",
        default="/etc/cni/net.d",
        type=Path,
        metavar="DIR",
        help="where the runtime reads CNI network configs: 10-tenet.conflist goes there (default /etc/cni/net.d)",
    )
    install.add_argument("--tenant", help="the tenant pods join unless --namespace-map says otherwise")
    install.add_argument("--network", help="the network pods join unless --namespace-map says otherwise")
    install.add_argument(
        "--kubernetes",
        action="store_true",
        help="the controller picks each pod's network by its Kubernetes mapping (the CNI config's kubernetes: true)",
    )
    install.add_argument(
        "--namespace-map",
        metavar="JSON",
        help='Kubernetes namespace -> "TENANT/NETWORK", e.g. \'{"shop": "blue/web"}\'',
    )
    install.add_argument("--name", default="tenet", help="the CNI network name (default tenet)")
    return top


def datapath_id(args: argparse.Namespace, tunnel_ip: ipaddress.IPv4Address) -> int:
    if args.datapath_id is None:
        return DATAPATH_ID_BASE | int(tunnel_ip)
    try:
        return int(str(args.datapath_id), 0)
    except ValueError:
        raise StartupError(f"--datapath-id: want an integer (0x... for hex), got {args.datapath_id!r}") from None


def ovs_ssl_files(args: argparse.Namespace) -> tuple[str, str, str] | None:
    """(private key, certificate, CA certificate) as absolute paths for OVS's SSL table, when the controller
    target is ssl:...; None for tcp:. StartupError names a missing or unreadable file."""
    given = {"--ovs-ssl-key": args.ovs_ssl_key, "--ovs-ssl-cert": args.ovs_ssl_cert, "--ovs-ssl-ca": args.ovs_ssl_ca}
    if not args.openflow.startswith("ssl:"):
        if any(given.values()):
            flags = ", ".join(flag for flag, value in given.items() if value)
            raise StartupError(f"{flags}: only for an ssl:IP:PORT --openflow target, not {args.openflow}")
        return None
    missing = [flag for flag, value in given.items() if not value]
    if missing:
        raise StartupError(f"--openflow {args.openflow} needs {', '.join(missing)} (from ovs-pki)")
    files = []
    for flag, value in given.items():
        file = Path(value).resolve()  # ovs-vswitchd reads them from its own working directory
        if not file.is_file():
            raise StartupError(f"{flag} {value}: no such file")
        files.append(str(file))
    return files[0], files[1], files[2]


def run(args: argparse.Namespace) -> None:
    from agent.netlink import Netlink
    from agent.ovsdb import Ovsdb, OvsdbError, kernel_datapath_available
    from agent.restore import FlowRestore, mgmt_socket_path
    from agent.server import AgentSocket
    from agent.service import AgentService, AgentSettings
    from agent.underlay import interface_mtus
    from controller.client import Client, ClientError, path

    if not args.tunnel_ip:
        raise StartupError("--tunnel-ip (or TENET_TUNNEL_IP) is required: the node's underlay address")
    try:
        tunnel_ip = ipaddress.IPv4Address(args.tunnel_ip)
    except ValueError:
        raise StartupError(f"--tunnel-ip: {args.tunnel_ip!r} is not an IPv4 address") from None
    token = None
    if args.token_file:
        try:
            token = Path(args.token_file).read_text().strip()
        except OSError as error:
            raise StartupError(f"--token-file {args.token_file}: {error.strerror}") from None
    dpid = datapath_id(args, tunnel_ip)
    datapath_type = args.datapath_type
    if datapath_type == "auto":
        datapath_type = "system" if kernel_datapath_available() else "netdev"
    ssl_files = ovs_ssl_files(args)
    try:
        client = Client(
            args.controller,
            token,
            timeout=args.ready_timeout + 20,
            ca_file=args.ca_file,
            cert_file=args.client_cert,
            key_file=args.client_key,
        )
    except ClientError as error:
        raise StartupError(f"--controller {args.controller}: {error}") from None
    try:
        ovsdb = Ovsdb(args.ovsdb)
        if ssl_files:
            ovsdb.ensure_ssl(*ssl_files)
        ovsdb.ensure_bridge(
            args.bridge, datapath_type=datapath_type, datapath_id=dpid, controller=args.openflow, uplink=args.uplink
        )
    except OvsdbError as error:
        raise StartupError(f"OVSDB {args.ovsdb}: {error}") from None
    body = {"tunnel_ip": str(tunnel_ip), "datapath_id": dpid}
    if args.uplink:
        body["uplink"] = args.uplink
    underlay_mtu, uplink_mtu = interface_mtus(tunnel_ip, args.uplink)  # the controller checks networks fit
    if underlay_mtu is not None:
        body["underlay_mtu"] = underlay_mtu
    if uplink_mtu is not None:
        body["uplink_mtu"] = uplink_mtu
    try:
        client.put(path("v1", "nodes", args.node), body)
    except ClientError as error:
        # A refusal (a tunnel IP or datapath id of another node, a token of another node) stays a refusal: exit
        # with EXIT_REFUSED, which the unit does not restart on, instead of asking again every few seconds.
        refused = error.status is not None and 400 <= error.status < 500
        code = EXIT_REFUSED if refused else 1
        raise StartupError(f"registering node {args.node} with {args.controller}: {error}", code=code) from None
    setup_gateway(client, ovsdb, args.bridge, tunnel_ip, vswitchd=vswitchd_of(args.ovsdb, datapath_type))
    settings = AgentSettings(
        node=args.node, bridge=args.bridge, datapath_type=datapath_type, ready_timeout=args.ready_timeout
    )
    service = AgentService(settings, client, ovsdb, Netlink())
    try:
        removed = service.recover()
    except Exception as error:  # the controller went away meanwhile: start anyway, GC cleans up later
        log.warning("could not check for leftovers of a crash: %s", error)
        removed = {}
    mgmt = args.openflow_mgmt or mgmt_socket_path(args.ovsdb, args.bridge)
    if args.openflow.startswith("tcp:"):
        restore = FlowRestore(
            ovsdb, client, args.node, mgmt_socket=mgmt, openflow=args.openflow, bridge=args.bridge
        ).start()
    else:
        restore = None
        log.warning("--openflow %s is not tcp:HOST:PORT: flow-restore-wait will not be ended", args.openflow)
    purge = start_policy_flow_purge(mgmt, vswitchd_of(args.ovsdb, datapath_type))
    server = AgentSocket(args.socket, service.handle)
    log.info(
        "node %s (datapath %#x, %s datapath) on %s; socket %s; cleaned %s",
        args.node,
        dpid,
        datapath_type,
        args.controller,
        args.socket,
        removed,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    threading.Thread(target=server.serve_forever, name="cni-socket", daemon=True).start()
    stop.wait()
    log.info("stopping")
    server.shutdown()
    server.server_close()
    service.close()
    if restore is not None:
        restore.stop()
    if purge is not None:
        purge.stop()
    ovsdb.close()


def start_policy_flow_purge(mgmt_socket: str, vswitchd: str | None) -> Any:
    """On the userspace datapath (`vswitchd`: its rundir, vswitchd_of), the purge of the datapath's flows after
    each change to the tables that decide what traffic may pass, the two NetworkPolicy tables and
    egress_gateway (node ports) (agent.datapath_flows), started; None on the kernel datapath. StartupError
    without ovs-ofctl or ovs-appctl."""
    if vswitchd is None:
        return None
    import shutil

    from agent.datapath_flows import PolicyFlowPurge

    missing = [tool for tool in ("ovs-ofctl", "ovs-appctl") if shutil.which(tool) is None]
    if missing:
        raise StartupError(f"the userspace datapath needs {' and '.join(missing)} (Debian: openvswitch-common)")
    from controller.pipeline.tables import PIPELINE

    tables = [PIPELINE.table_id(name) for name in ("egress_policy", "ingress_policy", "egress_gateway")]
    return PolicyFlowPurge(mgmt_socket, vswitchd, tables).start()


def vswitchd_of(ovsdb: str, datapath_type: str) -> str | None:
    """ovs-vswitchd's rundir on the userspace datapath (where its conntrack needs agent.gateway.liberal_tcp),
    None on the kernel datapath: the OVSDB socket's directory, as mgmt_socket_path finds it."""
    from agent.restore import mgmt_socket_path

    return mgmt_socket_path(ovsdb, "x").rsplit("/", 1)[0] if datapath_type == "netdev" else None


def setup_gateway(
    client: Any, ovsdb: Any, bridge: str, tunnel_ip: ipaddress.IPv4Address, *, vswitchd: str | None = None
) -> None:
    """The node's gateway port (agent/gateway.py), when the controller has a cluster network; `vswitchd`:
    the userspace datapath's rundir (vswitchd_of), whose conntrack then tracks TCP liberally."""
    from agent.gateway import Gateway, GatewayError, NodePortWatch, liberal_tcp, plan_from
    from agent.ovsdb import OvsdbError
    from controller.client import ClientError, path

    try:
        plan = plan_from(client.get(path("v1", "gateway")), tunnel_ip)
    except ClientError as error:
        if error.status == 404:  # a controller from before gateway ports
            log.warning("the controller has no GET /v1/gateway: no gateway port")
            return
        raise StartupError(f"reading the cluster network from the controller: {error}") from None
    if plan is None:
        log.info("no cluster network: no gateway port")
        return
    try:
        gateway = Gateway(ovsdb, bridge)
        gateway.apply(plan)
    except (GatewayError, OvsdbError, OSError) as error:
        raise StartupError(f"setting up the gateway port: {error}") from None
    if vswitchd is not None:
        try:
            liberal_tcp(vswitchd)
        except GatewayError as error:
            raise StartupError(f"the userspace datapath's conntrack: {error}") from None
    NodePortWatch(gateway, client, plan, vswitchd=vswitchd).start()  # node ports changed while the agent runs


def install_cni(args: argparse.Namespace) -> None:
    from cni.install import compiler, describe, install

    namespaces = None
    if args.namespace_map:
        try:
            namespaces = json.loads(args.namespace_map)
        except ValueError as error:
            raise StartupError(f"--namespace-map: not JSON: {error}") from None
        if not isinstance(namespaces, dict):
            raise StartupError('--namespace-map: want a JSON object {"namespace": "TENANT/NETWORK"}')
    if bool(args.tenant) != bool(args.network):
        raise StartupError("give --tenant and --network together")
    if not namespaces and not args.tenant:
        raise StartupError("give --tenant and --network, or --namespace-map")
    try:
        plugin, conflist = install(
            args.bin_dir,
            args.conf_dir,
            socket_path=args.socket,
            tenant=args.tenant,
            network=args.network,
            namespaces=namespaces,
            name=args.name,
            kubernetes=args.kubernetes,
        )
    except ValueError as error:
        raise StartupError(str(error)) from None
    kind = describe(plugin)
    if kind != "compiled":  # it works the same, only each run starts an interpreter (15 ms or more)
        kind += ", not compiled: " + ("no C compiler (cc, gcc) on PATH" if compiler() is None else "see the log")
    print(f"installed {plugin} ({kind}) and {conflist}")


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; output into a pipe closed early (`| head`) ends quietly."""
    return until_the_reader_goes(lambda: _main(argv))


def _main(argv: Sequence[str] | None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.verb == "run":
            logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
            run(args)
        else:
            install_cni(args)
    except StartupError as error:
        print(f"tenet-agent: {error}", file=sys.stderr)
        return error.code
    except OSError as error:
        print(f"tenet-agent: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
