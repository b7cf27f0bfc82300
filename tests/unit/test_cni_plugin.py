"""tenet-cni run the way a container runtime runs it: its own process, CNI_* variables, the config on stdin.

Every case runs against both plugins cni.install writes: the Python launcher (``python3 -I -S``) and the
compiled one (cni/plugin.c), talking to a fake agent: a unix socket server in a thread that records each
request and answers per cni.protocol. The compiled plugin's EXEC requests are answered as the agent answers
them (cni.plugin.forwarded), so the fake agent records the same requests from both.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cni import plugin, protocol
from cni.config import SUPPORTED_VERSIONS
from cni.install import install

PYTHON = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable
NETNS = "/var/run/netns/pod-1"
LOOPBACK_RESULT = {  # what Debian's loopback prints first in the chain
    "cniVersion": "1.0.0",
    "interfaces": [{"name": "lo", "mac": "00:00:00:00:00:00", "sandbox": NETNS}],
    "ips": [{"interface": 0, "address": "127.0.0.1/8"}, {"interface": 0, "address": "::1/128"}],
    "dns": {},
}
Answer = Callable[[dict[str, Any]], dict[str, Any]]


def add_answer(request: dict[str, Any]) -> dict[str, Any]:
    if request["verb"] != "ADD":
        return {"ok": True}
    interface = {"name": request["ifname"], "mac": "02:00:0a:01:00:05", "sandbox": request["netns"], "mtu": 1450}
    host = {"name": "tn0000000001", "mac": "5a:9e:11:22:33:44", "mtu": 1450}
    return {
        "ok": True,
        "interface": interface,
        "host_interface": host,
        "ip": "10.1.0.5/24",
        "gateway": "10.1.0.1",
        "default_route": True,
        "endpoint": "ep-1",
    }


class FakeAgent:
    """A unix socket server that records requests and answers them with `answer`."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.requests: list[dict[str, Any]] = []
        self.failures: list[BaseException] = []
        self.answer: Answer = add_answer
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(path)
        self._server.listen(16)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._server.accept()
            except OSError:  # close() shut the socket down
                return
            with connection:
                try:
                    request = protocol.decode(protocol.read_all(connection))
                    if request.get("verb") == "EXEC":  # the compiled plugin: run cni.plugin as the agent does
                        connection.sendall(protocol.encode(plugin.forwarded(request, self._call)))
                        continue
                    self.requests.append(request)
                    connection.sendall(json.dumps(self.answer(request)).encode())
                except Exception as error:
                    self.failures.append(error)

    def _call(self, _path: str, request: dict[str, Any], *, timeout: float) -> dict[str, Any]:
        self.requests.append(request)
        return protocol.checked(json.loads(json.dumps(self.answer(request))))  # as if through the socket

    def close(self) -> None:
        self._server.shutdown(socket.SHUT_RDWR)  # wakes the accept() in the thread
        self._server.close()
        self._thread.join(timeout=10)
        assert not self._thread.is_alive()
        assert not self.failures, self.failures


@pytest.fixture(scope="session", params=["python", "compiled"])
def launcher(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The plugin as installed: the Python launcher, then the compiled plugin (built here: gcc is needed)."""
    root = tmp_path_factory.mktemp("cni")
    path, _ = install(
        root / "bin",
        root / "net.d",
        socket_path=protocol.DEFAULT_SOCKET,
        tenant="acme",
        network="web",
        namespaces=None,
        python=PYTHON,
        compiled=request.param == "compiled",
    )
    return path


@pytest.fixture(scope="module")
def short_dir() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="tenet-cni-"))  # unix socket paths must stay under 108 bytes
    yield directory
    shutil.rmtree(directory)


@pytest.fixture
def agent(short_dir: Path) -> Iterator[FakeAgent]:
    path = short_dir / "agent.sock"
    fake = FakeAgent(str(path))
    yield fake
    fake.close()
    path.unlink()


def netconf(agent_socket: str, version: str | None = "1.1.0", /, **fields: Any) -> dict[str, Any]:
    """A network configuration; a None value (the version too) leaves its key out."""
    config: dict[str, Any] = {
        "cniVersion": version,
        "name": "tenet",
        "type": "tenet",
        "tenant": "acme",
        "network": "web",
        "agentSocket": agent_socket,
        "timeout": 10,
    }
    config.update(fields)
    return {key: value for key, value in config.items() if value is not None}


def run(
    launcher: Path, command: str | None, config: Any = None, *, stdin: bytes | None = None, **variables: str | None
) -> tuple[int, Any]:
    """Run the plugin; return its exit status and its stdout parsed (None when empty)."""
    env = {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": "c0ffee-1",
        "CNI_NETNS": NETNS,
        "CNI_IFNAME": "eth0",
        "CNI_PATH": "/opt/cni/bin",
        "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-1",
    }
    env.update(variables)
    data = stdin if stdin is not None else json.dumps(config).encode()
    done = subprocess.run(
        [str(launcher)],
        input=data,
        capture_output=True,
        timeout=60,
        env={key: value for key, value in env.items() if value is not None},
    )
    assert done.stderr == b"", done.stderr.decode()  # never a traceback, nor anything else
    assert done.returncode in (0, 1), done
    output = json.loads(done.stdout) if done.stdout.strip() else None
    if done.returncode:
        assert_error(output)
    return done.returncode, output


def assert_error(output: Any) -> None:
    assert isinstance(output, dict), output
    assert set(output) <= {"cniVersion", "code", "msg", "details"}, output
    assert output["cniVersion"] in SUPPORTED_VERSIONS
    assert isinstance(output["code"], int) and not isinstance(output["code"], bool)
    assert isinstance(output["msg"], str) and output["msg"]
    assert isinstance(output.get("details", ""), str)


def failure(launcher: Path, command: str | None, config: Any = None, **kwargs: Any) -> dict[str, Any]:
    status, output = run(launcher, command, config, **kwargs)
    assert status == 1, output
    return output


# start-up


def test_the_plugin_imports_neither_os_nor_socket_nor_json() -> None:
    """Each module costs milliseconds of every plugin run, which the runtime waits for."""
    probe = "import sys; import cni.plugin; print(sorted({'os', 'socket', 'json', 're'} & set(sys.modules)))"
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([PYTHON, "-I", "-S", "-c", f"import sys; sys.path.insert(0, {str(root)!r}); {probe}"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    assert done.stdout.strip() == "[]"


def test_the_environment_reads_as_os_environ_does(monkeypatch: pytest.MonkeyPatch) -> None:
    from cni import plugin

    monkeypatch.setenv("CNI_ARGS", "K8S_POD_NAME=caf\u00e9")
    os.environb[b"CNI_UNDECODABLE"] = b"\xff\xfe"
    try:
        assert plugin.environ() == dict(os.environ)
    finally:
        del os.environb[b"CNI_UNDECODABLE"]


# VERSION


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_version_answers_in_the_requested_version(launcher: Path, version: str) -> None:
    status, output = run(launcher, "VERSION", {"cniVersion": version}, CNI_CONTAINERID=None, CNI_NETNS=None)
    assert status == 0
    assert output == {"cniVersion": version, "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]}


@pytest.mark.parametrize("stdin", [b"", b'{"cniVersion": "9.9.9"}', b"not json"])
def test_version_answers_in_the_latest_version_otherwise(launcher: Path, stdin: bytes) -> None:
    assert run(launcher, "VERSION", stdin=stdin) == (
        0,
        {"cniVersion": "1.1.0", "supportedVersions": list(SUPPORTED_VERSIONS)},
    )


# ADD


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_add_result_has_the_shape_of_the_config_version(launcher: Path, agent: FakeAgent, version: str) -> None:
    status, result = run(launcher, "ADD", netconf(agent.path, version))
    assert status == 0
    host: dict[str, str | int] = {"name": "tn0000000001", "mac": "5a:9e:11:22:33:44"}  # the host end: no sandbox
    interface: dict[str, str | int] = {"name": "eth0", "mac": "02:00:0a:01:00:05", "sandbox": NETNS}
    if version == "1.1.0":
        host["mtu"] = interface["mtu"] = 1450
    ip = {"address": "10.1.0.5/24", "gateway": "10.1.0.1", "interface": 1}  # the pod's interface, not the host's
    if version.startswith("0."):
        ip["version"] = "4"
    assert result == {
        "cniVersion": version,
        "interfaces": [host, interface],
        "ips": [ip],
        "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.0.1"}],
        "dns": {},
    }
    assert agent.requests == [
        {
            "verb": "ADD",
            "cni_network": "tenet",
            "container_id": "c0ffee-1",
            "ifname": "eth0",
            "netns": NETNS,
            "tenant": "acme",
            "network": "web",
            "pod": {"namespace": "default", "name": "web-1"},
        }
    ]


def test_add_chained_after_loopback_appends_to_its_result(launcher: Path, agent: FakeAgent) -> None:
    previous = {**LOOPBACK_RESULT, "routes": [{"dst": "192.0.2.0/24"}], "dns": {"nameservers": ["10.1.0.2"]}}
    status, result = run(launcher, "ADD", netconf(agent.path, "1.0.0", prevResult=previous))
    assert status == 0
    assert result["cniVersion"] == "1.0.0"
    assert result["interfaces"] == [
        *LOOPBACK_RESULT["interfaces"],
        {"name": "tn0000000001", "mac": "5a:9e:11:22:33:44"},
        {"name": "eth0", "mac": "02:00:0a:01:00:05", "sandbox": NETNS},
    ]
    assert result["ips"] == [*LOOPBACK_RESULT["ips"], {"address": "10.1.0.5/24", "gateway": "10.1.0.1", "interface": 2}]
    assert result["routes"] == [{"dst": "192.0.2.0/24"}, {"dst": "0.0.0.0/0", "gw": "10.1.0.1"}]
    assert result["dns"] == {"nameservers": ["10.1.0.2"]}


def test_add_reports_an_ipv6_address_with_its_family(launcher: Path, agent: FakeAgent) -> None:
    agent.answer = lambda request: {**add_answer(request), "ip": "fd00:1::5/64", "gateway": "fd00:1::1"}
    status, result = run(launcher, "ADD", netconf(agent.path, "0.4.0"))
    assert status == 0
    assert result["ips"] == [{"version": "6", "address": "fd00:1::5/64", "gateway": "fd00:1::1", "interface": 1}]
    assert result["routes"] == [{"dst": "::/0", "gw": "fd00:1::1"}]


def test_add_without_a_gateway_reports_no_route(launcher: Path, agent: FakeAgent) -> None:
    agent.answer = lambda request: {**add_answer(request), "gateway": None}
    status, result = run(launcher, "ADD", netconf(agent.path))
    assert status == 0
    assert result["ips"] == [{"address": "10.1.0.5/24", "interface": 1}]
    assert "routes" not in result


def test_a_second_interface_lists_no_default_route(launcher: Path, agent: FakeAgent) -> None:
    """The agent installs the pod's default route through its first interface only (agent.netlink)."""
    agent.answer = lambda request: {**add_answer(request), "default_route": False}
    status, result = run(launcher, "ADD", netconf(agent.path), CNI_IFNAME="net1")
    assert status == 0
    assert result["ips"] == [{"address": "10.1.0.5/24", "gateway": "10.1.0.1", "interface": 1}]
    assert result["interfaces"][1]["name"] == "net1" and "routes" not in result


@pytest.mark.parametrize(
    ("cni_args", "tenant", "network", "pod"),
    [
        ("K8S_POD_NAMESPACE=shop;K8S_POD_NAME=cart-0", "acme", "shop", {"namespace": "shop", "name": "cart-0"}),
        (
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=lab;K8S_POD_NAME=x",
            "research",
            "sandbox",
            {"namespace": "lab", "name": "x"},
        ),
        ("K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-1", "acme", "web", {"namespace": "default", "name": "web-1"}),
        ("", "acme", "web", None),
    ],
)
def test_namespaces_map_a_pod_to_its_tenant_network(
    launcher: Path, agent: FakeAgent, cni_args: str, tenant: str, network: str, pod: dict[str, str] | None
) -> None:
    config = netconf(agent.path, namespaces={"shop": "acme/shop", "lab": "research/sandbox"})
    status, _ = run(launcher, "ADD", config, CNI_ARGS=cni_args)
    assert status == 0
    (request,) = agent.requests
    assert (request["tenant"], request["network"], request.get("pod")) == (tenant, network, pod)


def test_namespaces_alone_cover_only_their_namespaces(launcher: Path, agent: FakeAgent) -> None:
    config = netconf(agent.path, tenant=None, network=None, namespaces={"shop": "acme/shop"})
    assert run(launcher, "ADD", config, CNI_ARGS="K8S_POD_NAMESPACE=shop;K8S_POD_NAME=a")[0] == 0
    error = failure(launcher, "ADD", config, CNI_ARGS="K8S_POD_NAMESPACE=other;K8S_POD_NAME=b")
    assert error["code"] == 7 and "namespaces" in error["msg"] and "other" in error["msg"]
    assert run(launcher, "DEL", config, CNI_ARGS="K8S_POD_NAMESPACE=other;K8S_POD_NAME=b") == (0, None)  # DEL goes on
    assert [(r["verb"], r["tenant"], r["network"]) for r in agent.requests] == [
        ("ADD", "acme", "shop"),
        ("DEL", "", ""),
    ]


def test_kubernetes_config_leaves_the_network_to_the_controller(launcher: Path, agent: FakeAgent) -> None:
    config = netconf(agent.path, kubernetes=True)  # the default network is for callers that name no pod
    assert run(launcher, "ADD", config, CNI_ARGS="K8S_POD_NAMESPACE=other;K8S_POD_NAME=b")[0] == 0
    assert run(launcher, "ADD", config, CNI_ARGS="")[0] == 0
    assert [(r["tenant"], r["network"], r.get("pod")) for r in agent.requests] == [
        ("", "", {"namespace": "other", "name": "b"}),
        ("acme", "web", None),
    ]
    alone = netconf(agent.path, tenant=None, network=None, kubernetes=True)
    error = failure(launcher, "ADD", alone, CNI_ARGS="")
    assert error["code"] == 4 and "K8S_POD_NAMESPACE" in error["msg"]
    error = failure(launcher, "ADD", netconf(agent.path, kubernetes="yes"))
    assert error["code"] == 7 and "kubernetes" in error["msg"]


def test_agent_error_codes_pass_through(launcher: Path, agent: FakeAgent) -> None:
    agent.answer = lambda request: {"ok": False, "code": 107, "msg": "no free address in web", "details": "10.1.0.0/24"}
    error = failure(launcher, "ADD", netconf(agent.path, "0.4.0"))
    assert error == {"cniVersion": "0.4.0", "code": 107, "msg": "no free address in web", "details": "10.1.0.0/24"}


def test_an_unexpected_failure_is_code_999_not_a_traceback(launcher: Path, agent: FakeAgent) -> None:
    agent.answer = lambda request: {"ok": False, "code": "soon", "msg": "later"}  # protocol.call: int("soon")
    error = failure(launcher, "ADD", netconf(agent.path))
    assert error["code"] == 999 and "ValueError" in error["msg"]


@pytest.mark.parametrize(
    "answer",
    [
        {"ok": True},
        {"ok": True, "interface": {"name": "eth0"}, "ip": "10.1.0.5/24"},
        {"ok": True, "interface": {"name": "eth9", "mac": "02:00:00:00:00:01"}, "ip": "10.1.0.5/24"},
        {"ok": True, "interface": {"mac": "02:00:00:00:00:01"}, "ip": "10.1.0.5"},
        {"ok": True, "interface": {"mac": "02:00:00:00:00:01"}, "ip": "10.1.0.5/24", "gateway": 7},
    ],
)
def test_a_malformed_add_answer_is_an_error(launcher: Path, agent: FakeAgent, answer: dict[str, Any]) -> None:
    agent.answer = lambda request: answer
    error = failure(launcher, "ADD", netconf(agent.path))
    assert error["code"] == 999 and "agent" in error["msg"]


# DEL, CHECK, STATUS, GC


@pytest.mark.parametrize("netns", ["", None])
def test_del_succeeds_repeatedly_without_netns_or_prev_result(
    launcher: Path, agent: FakeAgent, netns: str | None
) -> None:
    for _ in range(2):
        assert run(launcher, "DEL", netconf(agent.path), CNI_NETNS=netns) == (0, None)
    assert [(r["verb"], r["container_id"], r["ifname"], r["netns"]) for r in agent.requests] == [
        ("DEL", "c0ffee-1", "eth0", ""),
        ("DEL", "c0ffee-1", "eth0", ""),
    ]


@pytest.mark.parametrize("ifname", ["é" * 7, "net1", "a" * 15])  # 14 bytes, 15 bytes: within IFNAMSIZ
def test_interface_names_up_to_15_bytes_pass(launcher: Path, agent: FakeAgent, ifname: str) -> None:
    status, result = run(launcher, "ADD", netconf(agent.path), CNI_IFNAME=ifname)
    assert status == 0 and result["interfaces"][-1]["name"] == ifname


@pytest.mark.parametrize("previous", ["x", {"ips": {"a": 1}}, {"interfaces": [1]}, [], 7])
def test_del_ignores_a_malformed_prev_result(launcher: Path, agent: FakeAgent, previous: Any) -> None:
    assert run(launcher, "DEL", netconf(agent.path, prevResult=previous)) == (0, None)
    assert [(r["verb"], r["container_id"], r["ifname"]) for r in agent.requests] == [("DEL", "c0ffee-1", "eth0")]


def test_check_compares_namespaces_not_paths(launcher: Path, agent: FakeAgent, tmp_path: Path) -> None:
    """Another path to the same file (as a bind mount or /proc/PID/ns/net is to a netns) is the same sandbox."""
    sandbox, alias, other = tmp_path / "pod", tmp_path / "alias", tmp_path / "other"
    sandbox.touch()
    other.touch()
    alias.hardlink_to(sandbox)
    _, result = run(launcher, "ADD", netconf(agent.path), CNI_NETNS=str(sandbox))
    assert run(launcher, "CHECK", netconf(agent.path, prevResult=result), CNI_NETNS=str(alias)) == (0, None)
    error = failure(launcher, "CHECK", netconf(agent.path, prevResult=result), CNI_NETNS=str(other))
    assert error["code"] == 7 and "prevResult lists no interface eth0" in error["msg"]


def test_check_consults_prev_result_then_asks_the_agent(launcher: Path, agent: FakeAgent) -> None:
    status, result = run(launcher, "ADD", netconf(agent.path, "1.0.0", prevResult=LOOPBACK_RESULT))
    assert status == 0
    assert run(launcher, "CHECK", netconf(agent.path, "1.0.0", prevResult=result)) == (0, None)
    assert [r["verb"] for r in agent.requests] == ["ADD", "CHECK"]


@pytest.mark.parametrize("previous", [None, LOOPBACK_RESULT])
def test_check_fails_when_prev_result_lacks_our_interface(launcher: Path, agent: FakeAgent, previous: Any) -> None:
    error = failure(launcher, "CHECK", netconf(agent.path, prevResult=previous))
    assert error["code"] == 7 and ("prevResult" in error["msg"])
    if previous is None:
        assert error["msg"].startswith("prevResult is required for CHECK"), error
    assert agent.requests == []


def test_check_passes_the_agents_verdict(launcher: Path, agent: FakeAgent) -> None:
    _, result = run(launcher, "ADD", netconf(agent.path))
    agent.answer = lambda request: {"ok": False, "code": 110, "msg": "port tap-c0ffee missing from br-int"}
    error = failure(launcher, "CHECK", netconf(agent.path, prevResult=result))
    assert (error["code"], error["msg"]) == (110, "port tap-c0ffee missing from br-int")


def test_status_is_silent_when_the_agent_is_ready(launcher: Path, agent: FakeAgent) -> None:
    assert run(launcher, "STATUS", netconf(agent.path), CNI_CONTAINERID=None, CNI_NETNS=None, CNI_IFNAME=None) == (
        0,
        None,
    )
    assert agent.requests[0]["verb"] == "STATUS"


@pytest.mark.parametrize(("agent_code", "code"), [(50, 50), (51, 51), (11, 50), (999, 50)])
def test_status_reports_an_unready_agent(launcher: Path, agent: FakeAgent, agent_code: int, code: int) -> None:
    agent.answer = lambda request: {"ok": False, "code": agent_code, "msg": "the controller is unreachable"}
    error = failure(launcher, "STATUS", netconf(agent.path))
    assert error["code"] == code and "the controller is unreachable" in error["msg"]


def test_status_reports_an_absent_agent(launcher: Path, short_dir: Path) -> None:
    error = failure(launcher, "STATUS", netconf(str(short_dir / "absent.sock")))
    assert error["code"] == 50 and "absent.sock" in error["details"]


@pytest.mark.parametrize("key", ["cni.dev/valid-attachments", "cni.dev/attachments"])
def test_gc_sends_the_attachments_to_keep(launcher: Path, agent: FakeAgent, key: str) -> None:
    keep = [{"containerID": "c0ffee-1", "ifname": "eth0"}, {"containerID": "beef-2", "ifname": "net1"}]
    assert run(launcher, "GC", netconf(agent.path, **{key: keep}), CNI_CONTAINERID=None, CNI_IFNAME=None) == (0, None)
    (request,) = agent.requests
    assert (request["verb"], request["cni_network"], request["valid_attachments"]) == ("GC", "tenet", keep)


@pytest.mark.parametrize("attachments", [None, {}, [{"containerID": "a"}], ["a"], [{"containerID": 1, "ifname": "x"}]])
def test_gc_without_a_valid_list_deletes_nothing(launcher: Path, agent: FakeAgent, attachments: Any) -> None:
    error = failure(launcher, "GC", netconf(agent.path, **{"cni.dev/valid-attachments": attachments}))
    assert error["code"] == 7 and "cni.dev/valid-attachments" in error["msg"]
    assert agent.requests == []


# Error codes


@pytest.mark.parametrize(
    ("command", "version"),
    [
        ("ADD", "0.2.0"),
        ("ADD", "2.0.0"),
        ("DEL", "1.0"),
        ("CHECK", "0.3.1"),
        ("STATUS", "1.0.0"),
        ("GC", "1.0.0"),
        ("ADD", None),
    ],
)
def test_incompatible_version_is_code_1(launcher: Path, agent: FakeAgent, command: str, version: str | None) -> None:
    error = failure(launcher, command, netconf(agent.path, version, **{"cni.dev/valid-attachments": []}))
    assert error["code"] == 1
    if command in ("CHECK", "STATUS", "GC"):
        assert command in error["msg"] and version in error["msg"]
    assert agent.requests == []


@pytest.mark.parametrize(
    ("command", "variables", "named"),
    [
        (None, {}, "CNI_COMMAND"),
        ("BOGUS", {}, "CNI_COMMAND"),
        ("ADD", {"CNI_CONTAINERID": None}, "CNI_CONTAINERID"),
        ("ADD", {"CNI_NETNS": ""}, "CNI_NETNS"),
        ("ADD", {"CNI_IFNAME": None}, "CNI_IFNAME"),
        ("CHECK", {"CNI_NETNS": None}, "CNI_NETNS"),
        ("DEL", {"CNI_IFNAME": ""}, "CNI_IFNAME"),
        ("DEL", {"CNI_CONTAINERID": None}, "CNI_CONTAINERID"),
        ("ADD", {"CNI_IFNAME": "eth0/1"}, "CNI_IFNAME"),
        ("ADD", {"CNI_IFNAME": "a-name-too-long-16"}, "CNI_IFNAME"),
        ("ADD", {"CNI_IFNAME": "é" * 9}, "CNI_IFNAME"),  # nine characters, 18 bytes
        ("ADD", {"CNI_IFNAME": "àb"}, "CNI_IFNAME"),  # UTF-8 C3 A0: the kernel's isspace() takes 0xA0
        ("ADD", {"CNI_IFNAME": "eth 0"}, "CNI_IFNAME"),
        ("ADD", {"CNI_IFNAME": "eth:0"}, "CNI_IFNAME"),
        ("ADD", {"CNI_IFNAME": ".."}, "CNI_IFNAME"),
        ("CHECK", {"CNI_IFNAME": "."}, "CNI_IFNAME"),
        ("DEL", {"CNI_IFNAME": "eth0\t"}, "CNI_IFNAME"),
        ("ADD", {"CNI_IFNAME": "eth\udcff"}, "CNI_IFNAME"),  # the byte 0xFF: not UTF-8
        ("DEL", {"CNI_CONTAINERID": "-leading-dash"}, "CNI_CONTAINERID"),
        ("ADD", {"CNI_ARGS": "K8S_POD_NAMESPACE"}, "CNI_ARGS"),
    ],
)
def test_invalid_environment_is_code_4_naming_the_variable(
    launcher: Path, agent: FakeAgent, command: str | None, variables: dict[str, str | None], named: str
) -> None:
    error = failure(launcher, command, netconf(agent.path), **variables)
    assert error["code"] == 4 and named in error["msg"]
    assert agent.requests == []


def test_every_missing_variable_is_named(launcher: Path, agent: FakeAgent) -> None:
    error = failure(launcher, "ADD", netconf(agent.path), CNI_CONTAINERID=None, CNI_NETNS=None, CNI_IFNAME=None)
    assert all(name in error["msg"] for name in ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"))


@pytest.mark.parametrize(
    "stdin", [b"", b"{", b"[]", b'"tenet"', b"\xff\xfe\x00", b"[" * 100_000 + b"]" * 100_000, b'{"a": 1} {"b": 2}']
)
@pytest.mark.parametrize("command", ["ADD", "DEL"])
def test_undecodable_stdin_is_code_6(launcher: Path, stdin: bytes, command: str) -> None:
    assert failure(launcher, command, stdin=stdin)["code"] == 6


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"name": None}, "name"),
        ({"name": "no spaces"}, "name"),
        ({"type": 3}, "type"),
        ({"cniVersion": 1.0}, "cniVersion"),
        ({"tenant": None}, "tenant"),
        ({"network": None}, "network"),
        ({"tenant": 7}, "tenant"),
        ({"network": ""}, "network"),
        ({"tenant": None, "network": None}, "tenant"),
        ({"namespaces": ["shop"]}, "namespaces"),
        ({"namespaces": {"shop": "acme"}}, 'namespaces["shop"]'),
        ({"namespaces": {"shop": "acme/web/x"}}, 'namespaces["shop"]'),
        ({"namespaces": {"shop": "/web"}}, 'namespaces["shop"]'),
        ({"namespaces": {"shop": 4}}, 'namespaces["shop"]'),
        ({"agentSocket": 5}, "agentSocket"),
        ({"agentSocket": ""}, "agentSocket"),
        ({"timeout": "30"}, "timeout"),
        ({"timeout": True}, "timeout"),
        ({"timeout": 0}, "timeout"),
        ({"prevResult": "yes"}, "prevResult"),
        ({"prevResult": {"interfaces": {}}}, "prevResult.interfaces"),
        ({"prevResult": {"ips": [1]}}, "prevResult.ips"),
    ],
)
def test_invalid_config_is_code_7_naming_the_field(
    launcher: Path, agent: FakeAgent, fields: dict[str, Any], named: str
) -> None:
    error = failure(launcher, "ADD", netconf(agent.path, **fields))  # a None field is left out
    assert error["code"] == 7 and named in error["msg"], error
    assert agent.requests == []


@pytest.mark.parametrize("command", ["ADD", "DEL", "CHECK", "GC"])
def test_an_absent_agent_is_code_11(launcher: Path, short_dir: Path, command: str) -> None:
    config = netconf(
        str(short_dir / "absent.sock"), prevResult=add_answer_result(), **{"cni.dev/valid-attachments": []}
    )
    error = failure(launcher, command, config)
    assert error["code"] == 11 and "not running" in error["msg"]


def add_answer_result() -> dict[str, Any]:
    return {
        "cniVersion": "1.1.0",
        "interfaces": [{"name": "eth0", "mac": "02:00:0a:01:00:05", "sandbox": NETNS}],
        "ips": [{"address": "10.1.0.5/24", "interface": 0}],
    }


def test_errors_answer_in_the_config_version(launcher: Path, short_dir: Path) -> None:
    assert failure(launcher, "ADD", netconf(str(short_dir / "absent.sock"), "0.3.1"))["cniVersion"] == "0.3.1"


# Fuzzing: whatever arrives on stdin, the answer is success or the spec's error object


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
FIELDS = [
    "cniVersion",
    "name",
    "type",
    "tenant",
    "network",
    "namespaces",
    "agentSocket",
    "timeout",
    "prevResult",
    "cni.dev/valid-attachments",
    "runtimeConfig",
]
COMMANDS = st.sampled_from(["ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION", "", "add"])
FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def fuzz_agent(short_dir: Path) -> Iterator[FakeAgent]:
    fake = FakeAgent(str(short_dir / "fuzz.sock"))
    yield fake
    fake.close()


def assert_well_formed(status: int, output: Any) -> None:
    if status == 0:
        assert output is None or (isinstance(output, dict) and output.get("cniVersion") in SUPPORTED_VERSIONS)


@FUZZ
@given(
    command=COMMANDS,
    version=st.sampled_from([*SUPPORTED_VERSIONS, "0.1.0"]),
    fields=st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=4),
)
def test_fuzzed_fields(launcher: Path, fuzz_agent: FakeAgent, command: str, version: str, fields: dict) -> None:
    config = (
        netconf(
            fuzz_agent.path,
            version,
            namespaces={"default": "acme/web"},
            prevResult=add_answer_result(),
            **{"cni.dev/valid-attachments": []},
        )
        | fields
    )
    assert_well_formed(*run(launcher, command, config))


@FUZZ
@given(command=COMMANDS, value=json_values)
def test_fuzzed_documents(launcher: Path, fuzz_agent: FakeAgent, command: str, value: Any) -> None:
    if isinstance(value, dict):
        value = {**value, "agentSocket": fuzz_agent.path}  # never reach a real agent on this machine
    assert_well_formed(*run(launcher, command, value))


@settings(FUZZ, max_examples=50)
@given(command=COMMANDS, stdin=st.binary(max_size=64))
def test_fuzzed_bytes(launcher: Path, command: str, stdin: bytes) -> None:
    assert_well_formed(*run(launcher, command, stdin=stdin))


def test_stdin_that_cannot_be_read_is_code_5() -> None:
    import io

    from cni import plugin

    class Broken(io.RawIOBase):
        def read(self, *_: object) -> bytes:
            raise OSError(5, "Input/output error")

    out = io.StringIO()
    assert plugin.run({"CNI_COMMAND": "ADD"}, Broken(), out) == 1  # type: ignore[arg-type]
    error = json.loads(out.getvalue())
    assert error["code"] == 5 and "stdin" in error["msg"] and "Input/output error" in error["details"], error
