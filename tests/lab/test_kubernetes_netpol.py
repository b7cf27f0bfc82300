"""NetworkPolicy truth tables driven entirely through kubectl: `tenet-lab up --kubernetes` on 3 nodes, the
upstream e2e cluster (namespaces x, y, z labelled ns=<name>; pods a, b, c labelled pod=<name>, spread over the
nodes, declaring 80 and 81 on TCP and UDP as serve-80-tcp ...) applied as YAML and run by the kubelet
stand-ins; scenarios of tests/netpol_scenarios.py applied with `kubectl apply -f`, new TCP connections and UDP
exchanges between every pair of pods (`tenet-lab matrix --ports`' code) polled until they equal the reference
model's table (tests/netpol_reference.py, fed the cluster as the API server has it), then `kubectl delete -f`
and everything allowed again; and labels changed with `kubectl label` changing the verdicts."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab import ports
from lab.cluster import Lab, LabPod
from lab.ovs import pid_alive, wait_for
from lab.sandbox import load_sandboxes, state_file
from tests.apiserver.kubectl import kubectl
from tests.lab.test_kubernetes_lab import lab_namespaces, processes, running
from tests.netpol_reference import Cluster, Pod, allowed
from tests.netpol_scenarios import SCENARIOS, Scenario

NODES = 3
PORTS, PROTOCOLS = [80, 81], ["tcp", "udp"]
POD_IDS = [f"{ns}/{pod}" for ns in "xyz" for pod in "abc"]
CONTAINER_PORTS = [
    {"name": f"serve-{port}-{protocol.lower()}", "containerPort": port, "protocol": protocol}
    for port in PORTS
    for protocol in ("TCP", "UDP")
]
ENFORCED_WITHIN_S = 30.0

# Default deny; namespaceSelector AND podSelector; a named port; endPort; egress isolation to a namespace;
# egress ipBlock with except, its CIDRs written from the pods' real (IPAM) addresses (see `ip_blocks`).
CHOSEN = [
    "default-deny-ingress",
    "allow-ingress-from-pod-in-namespace-and",
    "ingress-named-port",
    "ingress-end-port",
    "egress-to-namespace",
    "egress-ip-block-except",
]


class _Dumper(yaml.SafeDumper):
    """Quotes the strings YAML 1.1 (kubectl's reader) takes for booleans: the namespace `y`, the label `ns=y`."""


_Dumper.add_representer(
    str,
    lambda dumper, text: dumper.represent_scalar(
        "tag:yaml.org,2002:str", text, style="'" if text.lower() in ("y", "n", "yes", "no", "on", "off") else None
    ),
)


def to_yaml(documents: list[dict[str, Any]]) -> str:
    return yaml.dump_all(documents, Dumper=_Dumper)


def cluster_yaml() -> str:
    namespaces = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {"ns": ns}}} for ns in "xyz"
    ]
    pods = [
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": pod, "namespace": ns, "labels": {"pod": pod}},
            "spec": {
                "nodeName": f"node{(3 * i + j) % NODES + 1}",
                "containers": [{"name": "serve", "image": "agnhost", "ports": CONTAINER_PORTS}],
            },
        }
        for i, ns in enumerate("xyz")
        for j, pod in enumerate("abc")
    ]
    return to_yaml([*namespaces, *pods])


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    lab = Lab(Path(tmp_path_factory.mktemp("k8snetpol")))
    started: list[int] = []
    servers: list[int] = []
    try:
        lab.up(NODES, kubernetes=True)
        started = processes(lab)
        manifest = lab.dir / "e2e-cluster.yaml"
        manifest.write_text(cluster_yaml())
        kubectl(lab.dir / "kubeconfig", "apply", "-f", str(manifest))
        for ns in "xyz":
            running(lab, ns, 3, timeout=90)
        yield lab
    finally:
        servers = [
            box.server_pid or 0 for n in lab.state.nodes for box in load_sandboxes(state_file(lab.dir, n)).values()
        ]
        lab.down()
    assert lab_namespaces(lab) == []
    assert [p for p in [*started, *servers] if p and pid_alive(p)] == []


def get(lab: Lab, *what: str) -> list[dict[str, Any]]:
    return json.loads(kubectl(lab.dir / "kubeconfig", "get", *what, "-o", "json"))["items"]


def reference(lab: Lab, policies: list[dict[str, Any]]) -> Cluster:
    """The reference model's cluster as the API server has it now: namespaces' and pods' labels, pod IPs and
    declared ports, all of one tenant (the cluster network's)."""
    namespaces = {n["metadata"]["name"]: ("default", n["metadata"].get("labels") or {}) for n in get(lab, "namespaces")}
    pods = {}
    for item in get(lab, "pods", "--all-namespaces"):
        meta = item["metadata"]
        if f"{meta['namespace']}/{meta['name']}" in POD_IDS:
            declared = [
                {"name": p["name"], "port": p["containerPort"], "protocol": p["protocol"]}
                for c in item["spec"]["containers"]
                for p in c.get("ports") or []
            ]
            pod = Pod(meta["namespace"], meta.get("labels") or {}, item["status"]["podIP"], "default", declared)
            pods[f"{meta['namespace']}/{meta['name']}"] = pod
    assert sorted(pods) == sorted(POD_IDS)
    return Cluster(namespaces, pods, policies)


def e2e_pods(lab: Lab) -> dict[str, LabPod]:
    pods = {name: pod for name, pod in lab.pods().items() if name in POD_IDS}
    assert sorted(pods) == sorted(POD_IDS) and all(p.endpoint for p in pods.values())
    return pods


def truth(lab: Lab, policies: list[dict[str, Any]]) -> dict[ports.Key, bool]:
    """The reference model's verdict for every probe of the matrix."""
    cluster = reference(lab, policies)
    keys = ports.wanted(e2e_pods(lab), PORTS, PROTOCOLS)
    return {(s, d, proto, port): allowed(cluster, s, d, proto.upper(), port) for s, d, proto, port in keys}


def ip_blocks(lab: Lab, scenario: Scenario) -> list[dict[str, Any]]:
    """The scenario's policies with its ipBlocks written for the pods' real addresses: the scenario's
    10.0.0.0/16 becomes the cluster network's subnet, the scenario address 10.0.<ns>.<pod> of a pod its IP."""
    network = lab.client.get("/v1/tenants/default/networks/pods")
    ips = {pod: p.ip for pod, p in reference(lab, []).pods.items()}
    scenario_ips = {
        f"10.0.{i + 1}.{j + 10}/32": f"{ips[f'{ns}/{pod}']}/32"
        for i, ns in enumerate("xyz")
        for j, pod in enumerate("abc")
    }
    policies = copy.deepcopy(scenario.policies)
    for policy in policies:
        spec = policy["spec"]
        for rule in [*(spec.get("ingress") or []), *(spec.get("egress") or [])]:
            for peer in [*(rule.get("from") or []), *(rule.get("to") or [])]:
                block = peer.get("ipBlock")
                if block:
                    assert block["cidr"] == "10.0.0.0/16" and all(e in scenario_ips for e in block.get("except", []))
                    block["cidr"] = network["subnet"]
                    block["except"] = [scenario_ips[e] for e in block.get("except", [])]
    return policies


def enforced(lab: Lab, verdicts: dict[ports.Key, bool]) -> list[ports.PortProbe]:
    """Probe until every probe is as `verdicts` says (the policy reached the controller and every node), within
    a deadline; then, on a mismatch, one more pass with retries (a lost first packet is not a policy)."""
    pods = e2e_pods(lab)
    deadline = time.monotonic() + ENFORCED_WITHIN_S
    while True:
        probes = ports.measure(lab, pods, PORTS, PROTOCOLS, verdicts=verdicts, retry=False)
        if all(p.matches for p in probes) or time.monotonic() > deadline:
            break
    if not all(p.matches for p in probes):
        probes = ports.measure(lab, pods, PORTS, PROTOCOLS, verdicts=verdicts)
    assert all(p.matches for p in probes), ports.render(POD_IDS, probes, PORTS, PROTOCOLS)
    return probes


def compiled_agrees(lab: Lab, verdicts: dict[ports.Key, bool]) -> None:
    """The controller's compiled model (what `tenet-lab matrix --ports` expects) says the same, polled: the
    controller learns of kubectl's changes through its watches."""
    found: dict[ports.Key, bool] = {}

    def same() -> bool:
        found.update(ports.expected(lab, e2e_pods(lab), list(verdicts)))
        return found == verdicts

    try:
        wait_for(same, "the compiled model to equal the reference", timeout=ENFORCED_WITHIN_S, interval=0.5)
    except TimeoutError:
        wrong = sorted(k for k in verdicts if found[k] != verdicts[k])
        raise AssertionError(f"the compiled model differs from the reference on {wrong[:10]}") from None


def kubectl_file(lab: Lab, verb: str, file: Path) -> str:
    return kubectl(lab.dir / "kubeconfig", verb, "-f", str(file))


def matrix_command(lab: Lab) -> dict[ports.Key, bool]:
    """`tenet-lab matrix --ports 80,81 --protocols tcp,udp --json`'s probes (pods named NAMESPACE/NAME); it
    must exit 0, every probe as the compiled model says."""
    command = [str(Path(sys.executable).with_name("tenet-lab")), "--state-dir", str(lab.dir), "matrix"]
    command += ["--ports", "80,81", "--protocols", "tcp,udp", "--json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    probes = json.loads(done.stdout)["probes"]
    return {(p["from"], p["to"], p["protocol"], p["port"]): p["allowed"] for p in probes}


def test_without_policies_every_kubectl_pod_reaches_every_other(lab: Lab) -> None:
    verdicts = truth(lab, [])
    assert len(verdicts) == 9 * 8 * 4 and all(verdicts.values())
    compiled_agrees(lab, verdicts)
    enforced(lab, verdicts)


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s.name in CHOSEN], ids=lambda s: s.name)
def test_scenario_through_kubectl(lab: Lab, scenario: Scenario, tmp_path: Path) -> None:
    policies = ip_blocks(lab, scenario)
    verdicts = truth(lab, policies)
    assert not all(verdicts.values())  # the scenario denies something, so the probes can tell
    # the reference, fed the real addresses, agrees with the scenario's hand-written table
    assert verdicts == {k: scenario.expect(k[0], k[1], k[2].upper(), k[3]) for k in verdicts}
    manifest = tmp_path / f"{scenario.name}.yaml"
    manifest.write_text(to_yaml(policies))
    kubectl_file(lab, "apply", manifest)
    try:
        compiled_agrees(lab, verdicts)
        enforced(lab, verdicts)
        if scenario.name == "default-deny-ingress":
            assert matrix_command(lab) == verdicts
    finally:
        kubectl_file(lab, "delete", manifest)
    everything = truth(lab, [])
    compiled_agrees(lab, everything)
    enforced(lab, everything)


def test_kubectl_label_changes_the_verdicts(lab: Lab, tmp_path: Path) -> None:
    """x/a admits only pods labelled pod=b in namespaces labelled ns=y: relabel y/b, then namespace z."""
    scenario = next(s for s in SCENARIOS if s.name == "allow-ingress-from-pod-in-namespace-and")
    manifest = tmp_path / "and.yaml"
    manifest.write_text(to_yaml(scenario.policies))
    kubeconfig = lab.dir / "kubeconfig"
    kubectl_file(lab, "apply", manifest)
    try:
        verdicts = truth(lab, scenario.policies)
        assert {s for (s, d, _, _), ok in verdicts.items() if d == "x/a" and ok} == {"y/b"}
        compiled_agrees(lab, verdicts)
        kubectl(kubeconfig, "label", "pod", "b", "-n", "y", "pod=q", "--overwrite")
        wait_for(lambda: lab.pods()["y/b"].labels == {"pod": "q"}, "the kubelet's record of y/b's labels", timeout=30)
        verdicts = truth(lab, scenario.policies)
        assert not any(ok for (s, d, _, _), ok in verdicts.items() if d == "x/a")
        compiled_agrees(lab, verdicts)
        enforced(lab, verdicts)
        kubectl(kubeconfig, "label", "namespace", "z", "ns=y", "--overwrite")
        verdicts = truth(lab, scenario.policies)
        assert {s for (s, d, _, _), ok in verdicts.items() if d == "x/a" and ok} == {"z/b"}
        compiled_agrees(lab, verdicts)
        enforced(lab, verdicts)
    finally:
        kubectl(kubeconfig, "label", "pod", "b", "-n", "y", "pod=b", "--overwrite")
        kubectl(kubeconfig, "label", "namespace", "z", "ns=z", "--overwrite")
        kubectl_file(lab, "delete", manifest)
