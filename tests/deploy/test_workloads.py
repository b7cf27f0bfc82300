"""The controller's Deployment and the agents' DaemonSet: host mounts, the CNI installer, the downward API,
and arguments that the real `tenet-agent run` parser accepts once the kubelet has expanded them."""

from __future__ import annotations

import re

import yaml

from agent.main import parser as agent_parser
from tests.deploy.support import Obj, one, pod_spec

SERVICE_HOST = "10.96.0.53"  # any ClusterIP: the kubelet's value of TENET_CONTROLLER_SERVICE_HOST


def mounts(container: Obj) -> dict[str, Obj]:
    return {m["mountPath"]: m for m in container.get("volumeMounts", [])}


def host_paths(spec: Obj) -> dict[str, str]:
    """volume name -> hostPath path."""
    return {v["name"]: v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v}


def service_links() -> dict[str, str]:
    """The variables the kubelet sets in every container of the namespace for the Service tenet-controller."""
    service = one("Service", "tenet-controller")
    prefix = service["metadata"]["name"].upper().replace("-", "_")
    links = {f"{prefix}_SERVICE_HOST": SERVICE_HOST}
    for port in service["spec"]["ports"]:
        links[f"{prefix}_SERVICE_PORT_{port['name'].upper()}"] = str(port["port"])
    return links


def expand(text: str, env: dict[str, str]) -> str:
    """The kubelet's $(VAR) expansion of command and args; an unknown reference fails the test (the kubelet
    would leave it as it is)."""

    def value(match: re.Match[str]) -> str:
        assert match[1] in env, f"{text}: $({match[1]}) is neither a container variable nor a service link"
        return env[match[1]]

    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", value, text)


def test_the_agent_runs_on_every_node_as_a_node_component() -> None:
    spec = pod_spec("DaemonSet", "tenet-agent")
    assert spec["hostNetwork"] is True
    assert spec["priorityClassName"] == "system-node-critical"
    assert {"operator": "Exists"} in spec["tolerations"], "tolerate every taint"
    (agent,) = spec["containers"]
    assert agent["securityContext"]["privileged"] is True
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in agent["env"] if "valueFrom" in e}
    assert env == {"TENET_NODE": "spec.nodeName", "TENET_TUNNEL_IP": "status.hostIP"}


def test_the_agent_mounts_the_node_directories_it_works_in() -> None:
    spec = pod_spec("DaemonSet", "tenet-agent")
    (agent,) = spec["containers"]
    found = mounts(agent)
    hosts = host_paths(spec)
    for path in ("/var/run/openvswitch", "/var/run/tenet", "/run/netns"):
        assert hosts[found[path]["name"]] == path, path
    # Namespaces the runtime makes later must show up in the agent's view of /run/netns.
    assert found["/run/netns"]["mountPropagation"] in ("HostToContainer", "Bidirectional")
    assert hosts[found["/var/run/openvswitch"]["name"]] == "/var/run/openvswitch"


def test_the_init_container_installs_the_plugin_and_the_conflist() -> None:
    spec = pod_spec("DaemonSet", "tenet-agent")
    (install,) = spec["initContainers"]
    assert install["command"] == ["/opt/tenet/install-cni.sh"]
    hosts = host_paths(spec)
    found = mounts(install)
    # The node's paths at the same paths in the container: the launcher names them.
    for path in ("/opt/cni/bin", "/etc/cni/net.d", "/opt/tenet-cni"):
        assert hosts[found[path]["name"]] == path, path
        assert not found[path].get("readOnly")
    assert found["/etc/tenet/controller.yaml"]["subPath"] == "controller.yaml"
    socket = {e["name"]: e["value"] for e in install["env"]}["TENET_SOCKET"]
    (agent,) = spec["containers"]
    args = agent_parser().parse_args([expand(a, {"TENET_NODE": "n1", **service_links()}) for a in agent["args"]])
    assert args.socket == socket, "the conflist must name the socket the agent serves"
    assert socket.rsplit("/", 1)[0] in mounts(agent)


def test_the_agents_arguments_after_expansion() -> None:
    (agent,) = pod_spec("DaemonSet", "tenet-agent")["containers"]
    assert agent["command"] == ["tenet-agent"]
    env = {"TENET_NODE": "node7", **service_links()}
    args = agent_parser().parse_args([expand(a, env) for a in agent["args"]])
    assert args.verb == "run"
    assert args.controller == f"http://{SERVICE_HOST}:8780"
    assert args.openflow == f"tcp:{SERVICE_HOST}:6653", "OVS wants tcp:IP:PORT"
    assert args.token_file == "/etc/tenet/agent-tokens/node7"
    tokens = mounts(agent)["/etc/tenet/agent-tokens"]
    secret = {v["name"]: v for v in pod_spec("DaemonSet", "tenet-agent")["volumes"]}[tokens["name"]]["secret"]
    assert secret["secretName"] == "tenet-agent-tokens"


def test_the_controller() -> None:
    deployment = one("Deployment", "tenet-controller")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    spec = deployment["spec"]["template"]["spec"]
    assert spec["hostNetwork"] is True, "the pod network is what Tenet provides"
    assert {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    (controller,) = spec["containers"]
    assert controller["command"] == ["tenet-controller"]
    assert controller["args"] == ["--kubernetes", "--config", "/etc/tenet/controller.yaml"]
    found = mounts(controller)
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes[found["/etc/tenet/controller.yaml"]["name"]]["configMap"]["name"] == "tenet-config"
    settings = yaml.safe_load(one("ConfigMap", "tenet-config")["data"]["controller.yaml"])
    token_mount = found[settings["token_file"]]
    assert volumes[token_mount["name"]]["secret"]["secretName"] == "tenet-tokens"
    assert token_mount["subPath"] == "tokens.json"
    store = settings["store"].removeprefix("sqlite://")
    assert store.rsplit("/", 1)[0] in found, "the SQLite store lives on a mounted volume"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert controller[probe]["exec"]["command"] == ["python3", "/opt/tenet/health.py"]
    assert controller["resources"]["requests"] and controller["resources"]["limits"]["memory"]
    context = controller["securityContext"]
    assert context["allowPrivilegeEscalation"] is False and context["capabilities"] == {"drop": ["ALL"]}
    assert context["readOnlyRootFilesystem"] is True
    selector = one("Service", "tenet-controller")["spec"]["selector"]
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
