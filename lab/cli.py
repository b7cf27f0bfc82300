"""tenet-lab: Tenet on N nodes emulated on one machine (network namespaces, userspace OVS), for trying it out.

    tenet-lab up --nodes 3 [--config FILE]     nodes, underlay, controller, agents; tenants and networks
    tenet-lab up --kubernetes                  also an API server (STATE_DIR/kubeconfig) and a kubelet per node
    tenet-lab pod add NAME --node node1 --network blue/web
    tenet-lab pod add NAME ... [--namespace NS] [--label K=V]... [--serve 80/tcp,81/udp] [--ip ADDRESS]
    tenet-lab pod rm NAME
    tenet-lab matrix                           ping and TCP between every pair of pods, against the tenants'
                                               isolation (pairs a NetworkPolicy isolates: shown, not judged)
    tenet-lab matrix --ports 80,81 --protocols tcp,udp [--json]
                                               new connections between every pair of pods on those ports,
                                               against the controller's compiled NetworkPolicy
    tenet-lab exec POD -- CMD...               a command in a pod's namespace (its exit code passed through)
    tenet-lab exec --node node1 -- CMD...      a command on a node's host stack (OVS_RUNDIR: the node's OVS,
                                               so `ovs-vsctl show` works)
    tenet-lab apiserver stop|start|restart     with --kubernetes: an outage of the API server, then its return
                                               (same port, token and certificate: every kubeconfig stays valid)
    tenet-lab status
    tenet-lab down                             removes everything the lab made but its logs

`up` also starts an outside host beyond the fabric (203.0.113.10: HTTP on port 80, TCP and UDP echo on 7),
which every node's host stack reaches; `status --json` names it. With `--kubernetes` the lab also runs etcd,
a stand-in Kubernetes API server (lab/apiserver/) and a kubelet stand-in per node (lab/kubelet.py): Pods
applied with `kubectl --kubeconfig STATE_DIR/kubeconfig` and `spec.nodeName: nodeN` run as the lab's pods,
named NAMESPACE/NAME in `status`, `matrix` and `exec`.

Needs root. The state lives in --state-dir (env TENET_LAB_STATE, default /var/lib/tenet-lab), given before
or after the verb: `tenet-lab --state-dir DIR up` and `tenet-lab up --state-dir DIR` are the same.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from controller.cli import SubcommandParser, port_list, protocol_list
from controller.client import ClientError
from controller.pipes import until_the_reader_goes
from lab import matrix, ports
from lab.cluster import DEFAULT_STATE, Lab, LabError, load_config
from lab.outside import ADDRESS
from lab.ovs import pid_alive
from lab.servers import parse_serve


def global_options(*, suppress: bool) -> argparse.ArgumentParser:
    """Options every verb takes, before or after it. The copy on the verbs (`suppress`) has no default, so a
    value given before the verb is kept when the verb's parser runs."""
    common = argparse.ArgumentParser(add_help=False)
    default = argparse.SUPPRESS if suppress else Path(os.environ.get("TENET_LAB_STATE", DEFAULT_STATE))
    common.add_argument(
        "--state-dir",
        type=Path,
        default=default,
        metavar="DIR",
        help=f"the lab's state (env TENET_LAB_STATE; {DEFAULT_STATE})",
    )
    return common


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="tenet-lab",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[global_options(suppress=False)],
    )
    verbs: argparse._SubParsersAction = top.add_subparsers(  # SubcommandParser: a verb's usage for its errors
        dest="verb",
        required=True,
        metavar="up|pod|matrix|exec|apiserver|status|down",
        parser_class=SubcommandParser,
    )
    common = [global_options(suppress=True)]
    up = verbs.add_parser(
        "up",
        parents=common,
        help="build the lab",
        description="Build the lab in the state dir: a fabric bridge, the outside host (203.0.113.10), the "
        "controller, then N nodes, each a network namespace with its own ovsdb-server, ovs-vswitchd (userspace) "
        "and tenet-agent, set up by vagrant/provision/node-setup.sh; and the config's tenants, networks, QoS "
        "profiles and namespaces, made through the controller's API. The config is checked whole first: nothing "
        "is built when a field is wrong. A failed up takes down what it made.",
    )
    up.add_argument("--nodes", type=int, default=2, help="how many nodes, 1..200 (default 2)")
    up.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="YAML in the format of examples/cluster.yaml: tenants with their networks, qos (applies_to a "
        "network), namespaces ({name, tenant, labels}: Kubernetes namespaces for `pod add --namespace`); "
        "cluster_network, cluster_subnet, transit_subnet: the controller's cluster network settings (nodes, "
        "links, endpoints and policies are not applied). Default: tenants blue and red, each with web (VXLAN) "
        "and db (VLAN) on the same subnets, and the cluster network default/pods (10.244.0.0/16)",
    )
    up.add_argument(
        "--kubernetes",
        action="store_true",
        help="also etcd, a stand-in API server (kubeconfig in STATE_DIR/kubeconfig), the nodes as Node objects, "
        "Tenet's CRDs, the controller watching it, and a kubelet stand-in per node running the Pods bound to it",
    )
    pod = verbs.add_parser("pod", parents=common, help="add or remove a pod")
    pod_verbs = pod.add_subparsers(dest="pod_verb", required=True, metavar="add|rm")
    add = pod_verbs.add_parser("add", parents=common, help="a pod through the node's real CNI plugin")
    add.add_argument("name")
    add.add_argument("--node", required=True, help="the lab node the pod runs on (node1, node2, ...)")
    add.add_argument("--network", required=True, help="TENANT/NETWORK")
    add.add_argument(
        "--namespace",
        help="the pod's Kubernetes namespace (made for the network's tenant if it has none; labels from the "
        "config's namespaces:)",
    )
    add.add_argument(
        "--label", action="append", default=[], metavar="KEY=VALUE", help="a label of the pod (repeat for more)"
    )
    add.add_argument(
        "--serve",
        metavar="PORT/PROTO,...",
        help="ports the pod serves, e.g. 80/tcp,81/udp: TCP answers each connection, UDP each datagram, with the "
        "pod's name; the endpoint names them as container ports serve-80-tcp, serve-81-udp",
    )
    add.add_argument(
        "--ip",
        metavar="ADDRESS",
        help="the pod's IPv4 address on its network instead of the next free one, asked at the CNI ADD "
        "(runtimeConfig.ips, the CNI ips capability); a taken address or one outside the subnet is refused",
    )
    remove = pod_verbs.add_parser("rm", parents=common, help="CNI DEL, then the namespace goes")
    remove.add_argument("name")
    show = verbs.add_parser(
        "matrix",
        parents=common,
        help="who reaches whom (exit 1 on any mismatch with the policy)",
        description="Without --ports: a ping and a TCP connection between every pair of pods, checked against "
        "the tenants' isolation (a tenant's pods reach each other, tenants never do); a pair a NetworkPolicy "
        "isolates (the sender for egress, the receiver for ingress) is shown with ~ and not checked. With "
        "--ports: new connections on those ports, checked against the controller's compiled NetworkPolicy.",
    )
    show.add_argument("--json", action="store_true", help="each probe as JSON instead of the table")
    show.add_argument(
        "--ports",
        type=port_list,
        metavar="P,P",
        help="probe new connections to these ports (pods started with --serve, kubectl Pods' declared "
        "TCP and UDP container ports) instead of ping; expected: the "
        "controller's compiled NetworkPolicy, as `tenetctl matrix` computes it",
    )
    show.add_argument(
        "--protocols", type=protocol_list, default=["tcp"], metavar="tcp,udp", help="with --ports (default tcp)"
    )
    show.add_argument(
        "--timeout", type=float, default=0.5, metavar="S", help="with --ports: seconds a probe waits (default 0.5)"
    )
    run_in = verbs.add_parser(
        "exec", parents=common, help="run a command in a pod's namespace or on a node's host stack (exit code kept)"
    )
    run_in.add_argument(
        "--node",
        help="run CMD on this node's host stack instead of in a pod, with OVS_RUNDIR set to the node's OVS "
        "directory (STATE_DIR/nodes/NODE) so a plain ovs-vsctl talks to that node's switch",
    )
    run_in.add_argument("words", nargs="+", metavar="[POD] -- CMD", help="the pod (without --node), then the command")
    apiserver = verbs.add_parser(
        "apiserver",
        parents=common,
        help="with --kubernetes: stop, start or restart the API server (an outage: etcd, the controller, the "
        "kubelets and the pods keep running; it comes back on the same port with the same token and certificate, "
        "so STATE_DIR/kubeconfig and the clients holding it stay valid)",
    )
    apiserver.add_argument(
        "action",
        choices=["stop", "start", "restart"],
        help="stop: the API server exits (exit 1 if it is not running); start: it serves again (exit 1 if it "
        "runs); restart: stop if it runs, then start",
    )
    status = verbs.add_parser("status", parents=common, help="nodes, switches, agents and pods")
    status.add_argument("--json", action="store_true", help="the same as JSON, pods with their namespaces")
    verbs.add_parser(
        "down",
        parents=common,
        help="remove every namespace, veth, OVS instance and process of the lab (their logs stay in the state dir)",
    )
    return top


def progress(message: str) -> None:
    print(f"tenet-lab: {message}", flush=True)


def run(args: argparse.Namespace) -> int:
    lab = Lab(args.state_dir, progress=progress)
    if args.verb == "up":
        config = load_config(args.config) if args.config else None
        lab.up(args.nodes, config, kubernetes=args.kubernetes)
        progress(f"up: {args.nodes} node(s); add pods with `tenet-lab pod add NAME --node node1 --network T/N`")
        if args.kubernetes:
            progress(f"kubeconfig: {args.state_dir / 'kubeconfig'} (Pods need spec.nodeName: node1, ...)")
        return 0
    if args.verb == "down":
        if not lab.file.exists():
            progress(f"down: no lab in {lab.dir}: nothing to take down")
            return 0
        lab.down()
        progress(f"down: nothing left running; the logs stay in {lab.dir}")
        return 0
    if not lab.file.exists():
        raise LabError(f"no lab in {args.state_dir}: `tenet-lab up` first")
    if args.verb == "pod":
        if args.pod_verb == "add":
            labels = dict(label_pair(text) for text in args.label)
            serve = parse_serve(args.serve) if args.serve is not None else None
            pod = lab.pod_add(
                args.name, args.node, args.network, namespace=args.namespace, labels=labels, serve=serve, ip=args.ip
            )
            progress(f"pod {pod.name} on {pod.node}: {pod.ip} ({pod.network})")
        else:
            lab.pod_rm(args.name)
            progress(f"pod {args.name} removed")
        return 0
    if args.verb == "exec":
        pod_name, command = (None, args.words) if args.node else (args.words[0], args.words[1:])
        if not command:
            raise LabError("exec: no command: `tenet-lab exec POD -- CMD...`")
        return execute(lab, pod_name, args.node, command)
    if args.verb == "apiserver":
        return apiserver_verb(lab, args.action)
    if args.verb == "matrix":
        pods = {name: (pod.as_pod(), pod.network) for name, pod in lab.pods().items()}
        if len(pods) < 2:
            raise LabError("the matrix needs at least two pods")
        if args.ports:
            return port_matrix(lab, args)
        # NetworkPolicy is not judged here (lab/matrix.py says why): pairs a policy isolates are left to it.
        probes = matrix.measure(pods, isolation=ports.isolation(lab, lab.pods()))
        if args.json:
            print(json.dumps([probe.__dict__ for probe in probes], indent=2))
        else:
            print(matrix.render(pods, probes))
        return 0 if all(p.matches for p in probes) else 1
    return status(lab, as_json=args.json)


def port_matrix(lab: Lab, args: argparse.Namespace) -> int:
    """`matrix --ports`: every pod to every other on each port and protocol, `pod add` pods and the kubelets'
    (NAMESPACE/NAME); 1 on any mismatch. A pod without an endpoint (hostNetwork) is left out, and said so."""
    pods = {name: pod for name, pod in lab.pods().items() if pod.endpoint}
    outside = sorted(set(lab.pods()) - set(pods))
    if outside:
        print(f"matrix --ports: left out (no endpoint of their own): {', '.join(outside)}", file=sys.stderr)
    if not any(pod.serve for pod in pods.values()):
        raise LabError("matrix --ports: no pod serves anything; add pods with --serve 80/tcp,...")
    if "sctp" in args.protocols:
        raise LabError("matrix --protocols: the lab probes tcp and udp")
    probes = ports.measure(lab, pods, args.ports, args.protocols, timeout=args.timeout)
    if args.json:
        print(json.dumps({"probes": [p.json() for p in probes]}, indent=1))
    else:
        print(ports.render(list(pods), probes, args.ports, args.protocols))
    return 0 if all(p.matches for p in probes) else 1


def apiserver_verb(lab: Lab, action: str) -> int:
    """`apiserver stop|start|restart`: the lab's API server down or up again (lab/k8s.py)."""
    from lab import k8s

    if not lab.state.kubernetes or not lab.state.apiserver_token:
        raise LabError("apiserver: this lab has no API server (`tenet-lab up --kubernetes`)")
    if action == "stop" or (action == "restart" and lab.state.apiserver_pid and pid_alive(lab.state.apiserver_pid)):
        k8s.stop_apiserver(lab)
        progress("API server stopped (etcd, the controller, the kubelets and the pods keep running)")
    if action in ("start", "restart"):
        k8s.start_apiserver(lab)
        progress(f"API server serving on https://127.0.0.1:{lab.state.apiserver_port} (pid {lab.state.apiserver_pid})")
    return 0


def label_pair(text: str) -> tuple[str, str]:
    key, equals, value = text.partition("=")
    if not equals or not key:
        raise LabError(f"--label {text!r}: want KEY=VALUE")
    return key, value


def execute(lab: Lab, pod: str | None, node: str | None, command: list[str]) -> int:
    """Run `command` in `pod`'s namespace or on `node`'s host stack, output unchanged; returns its exit code.
    On a node, OVS_RUNDIR is the node's OVS directory (STATE_DIR/nodes/NODE), so a plain `ovs-vsctl` talks to
    that node's ovsdb-server (unix:OVS_RUNDIR/db.sock)."""
    netns = lab.netns_of(pod=pod, node=node)
    env = {**os.environ, "OVS_RUNDIR": str(lab.node(node).dir)} if node else None
    try:
        return subprocess.run(["ip", "netns", "exec", netns, *command], check=False, env=env).returncode
    except KeyboardInterrupt:
        return 130


def status(lab: Lab, *, as_json: bool) -> int:
    every_pod = lab.pods()
    nodes = []
    for name in lab.state.nodes:
        switch = lab.switch(name)
        agent = lab.state.agent_pids.get(name)
        nodes.append(
            {
                "node": name,
                "switch": "in sync" if switch.get("in_sync") else ("connected" if switch.get("connected") else "down"),
                "agent": "running" if agent and pid_alive(agent) else "down",
                "pods": sorted(p.name for p in every_pod.values() if p.node == name),
            }
        )
    controller = "running" if lab.state.controller_pid and pid_alive(lab.state.controller_pid) else "down"
    if as_json:
        pods = {name: pod.__dict__ for name, pod in every_pod.items()}
        outside = {"netns": lab.outside.netns, "address": ADDRESS}
        document = {"controller": controller, "nodes": nodes, "pods": pods, "outside": outside}
        if lab.state.kubernetes:
            document["kubernetes"] = k8s_summary(lab)
        print(json.dumps(document, indent=2))
        return 0
    print(f"controller: {controller} (API {lab.state.server or lab.state.api_port}, OpenFlow :{lab.state.ofp_port})")
    print(f"outside host: {ADDRESS} (namespace {lab.outside.netns}; HTTP :80, TCP and UDP echo :7)")
    for node in nodes:
        print(f"{node['node']}: switch {node['switch']}, agent {node['agent']}, pods {', '.join(node['pods']) or '-'}")
    if lab.state.kubernetes:
        side = k8s_summary(lab)
        api = f"API server {side['apiserver']}" + (f" (pid {side['apiserver_pid']})" if side["apiserver_pid"] else "")
        etcd = f"etcd {side['etcd']}" + (f" (pid {side['etcd_pid']})" if side["etcd_pid"] else "")
        kubelets = ", ".join(f"{name} {state}" for name, state in side["kubelets"].items()) or "-"
        print(f"kubernetes: {api}, {etcd}, kubeconfig {side['kubeconfig']}, kubelets {kubelets}")
    for pod in every_pod.values():
        k8s = f", Kubernetes namespace {pod.namespace}" if pod.namespace else ""
        k8s += "".join(f", {key}={value}" for key, value in sorted(pod.labels.items()))
        k8s += f", serves {','.join(pod.serve)}" if pod.serve else ""
        print(f"  {pod.name}: {pod.ip} on {pod.node}, {pod.network}, namespace {pod.netns}{k8s}")
    return 0


def k8s_summary(lab: Lab) -> dict:
    """The Kubernetes side for `status`: kubeconfig, each process with whether it runs ("running", "down"),
    and the pids of the API server and etcd (`apiserver_pid`, `etcd_pid`: null when not running)."""
    running = {"apiserver": lab.state.apiserver_pid, "etcd": lab.state.etcd_pid}
    kubelets = {name: "running" if pid_alive(pid) else "down" for name, pid in lab.state.kubelet_pids.items()}
    processes = {name: "running" if pid and pid_alive(pid) else "down" for name, pid in running.items()}
    pids = {f"{name}_pid": pid if processes[name] == "running" else None for name, pid in running.items()}
    return {"kubeconfig": str(lab.dir / "kubeconfig"), **processes, **pids, "kubelets": kubelets}


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; output into a pipe closed early (`| head`) ends quietly."""
    return until_the_reader_goes(lambda: _main(argv))


def _main(argv: Sequence[str] | None) -> int:
    args = parser().parse_args(argv)
    if os.geteuid() != 0:
        print("tenet-lab: needs root (namespaces, Open vSwitch)", file=sys.stderr)
        return 1
    try:
        return run(args)
    except (LabError, ClientError, TimeoutError, RuntimeError, ValueError) as error:
        print(f"tenet-lab: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
