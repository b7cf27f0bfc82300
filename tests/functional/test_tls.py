"""The README's recipe "TLS for OpenFlow and HTTPS for the API", run as written: ovs-pki and openssl make the
certificates, the controller serves OpenFlow over TLS and the API over HTTPS with client certificates, a real
OVS (userspace, in a namespace) set up by the agent connects over ssl: and is programmed, and a switch whose
certificate another CA signed is refused."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.ovsdb import Ovsdb
from controller.cli import main as tenetctl
from controller.client import Client, ClientError, path
from lab.cni import TOKEN
from lab.ovs import ROOT, OvsNode, free_ports, launch, wait_for

SECTION = "## TLS for OpenFlow and HTTPS for the API"


def recipe() -> tuple[str, dict[str, dict[str, str]]]:
    """The section's first code block (the certificates, a shell script) and, from its second, each
    command's flags: {"tenet-controller": {"--ofp-tls-cert": "controller-cert.pem", ...}, ...}."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index(SECTION) :].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.DOTALL)
    assert len(blocks) == 2, "the recipe has a block of certificates and a block of commands"
    commands: dict[str, dict[str, str]] = {}
    for line in blocks[1].replace("\\\n", " ").splitlines():
        words = shlex.split(line)
        program, rest = words[0], words[1:]
        while rest and not rest[0].startswith("--"):  # subcommands: `tenet-agent run`, `tenetctl node ls`
            program, rest = f"{program} {rest[0]}", rest[1:]
        assert len(rest) % 2 == 0, f"every flag of the recipe takes a value: {line}"
        commands[program] = dict(zip(rest[::2], rest[1::2], strict=True))
    return blocks[0], commands


def resolved(flags: dict[str, str], directory: Path) -> list[str]:
    """The flags as arguments, a file name made absolute when the file is in `directory`."""
    args = []
    for flag, value in flags.items():
        args += [flag, str(directory / value) if (directory / value).is_file() else value]
    return args


@dataclass
class Controller:
    """`tenet-controller` with the recipe's flags; `tls` holds the certificates."""

    tls: Path
    process: subprocess.Popen
    ofp_port: int
    api_port: int
    commands: dict[str, dict[str, str]]

    def client(self, host: str = "127.0.0.1") -> Client:
        return Client(
            f"https://{host}:{self.api_port}",
            TOKEN,
            ca_file=str(self.tls / "api-cert.pem"),
            cert_file=str(self.tls / "admin-cert.pem"),
            key_file=str(self.tls / "admin-privkey.pem"),
        )


def answers(client: Client, process: subprocess.Popen, log: Path) -> bool:
    if process.poll() is not None:
        raise RuntimeError(f"exited {process.returncode}:\n{log.read_text()[-3000:]}")
    try:
        client.get("/v1/health")
    except ClientError:
        return False
    return True


def stop(process: subprocess.Popen | None) -> None:
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=20)


CONTROLLER_IP = "10.254.1.1"  # where node 1 (OvsNode index 1) reaches the root namespace


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The certificates, made exactly as the README makes them (ovs-pki init and three req+sign: ~4 s)."""
    tls = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["bash", "-euo", "pipefail", "-c", recipe()[0]],
        cwd=tls,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CONTROLLER_IP": CONTROLLER_IP},
        check=True,
        capture_output=True,
        timeout=120,
    )
    return tls


@pytest.fixture
def controller(tmp_path: Path, certificates: Path) -> Iterator[Controller]:
    _, commands = recipe()
    tls = tmp_path / "tls"
    shutil.copytree(certificates, tls)
    (tmp_path / "tokens.json").write_text(f'{{"admin": ["{TOKEN}"], "tenants": {{}}}}')
    ofp_port, api_port = free_ports(2)
    args = [
        *resolved(commands["tenet-controller"], tls),
        "--ofp-port", str(ofp_port), "--api-port", str(api_port), "--store", f"sqlite:///{tmp_path}/tenet.db",
        "--token-file", str(tmp_path / "tokens.json"), "--log-level", "info",
    ]  # fmt: skip
    process = launch([sys.executable, "-m", "controller.main", *args], tmp_path / "controller.log")
    try:
        running = Controller(tls, process, ofp_port, api_port, commands)
        wait_for(lambda: answers(running.client(), process, tmp_path / "controller.log"), "the API", timeout=60)
        yield running
    finally:
        stop(process)


@pytest.fixture
def node(tmp_path: Path, controller: Controller) -> Iterator[OvsNode]:
    """Node 1: OVS in its namespace, br-int set up by `tenet-agent run` with the recipe's flags."""
    node = OvsNode("node1", tmp_path / "ovs", index=1)
    assert node.host_ip == CONTROLLER_IP
    on_node = tmp_path / "node1"  # what the README copies to the node
    on_node.mkdir()
    for name in ("node1-privkey.pem", "node1-cert.pem", "pki/controllerca/cacert.pem", "api-cert.pem"):
        shutil.copy(controller.tls / name, on_node)
    (on_node / "agent-token").write_text(TOKEN)
    flags = dict(controller.commands["tenet-agent run"])
    assert flags["--openflow"] == "ssl:$CONTROLLER_IP:6653"
    assert flags["--controller"] == "https://$CONTROLLER_IP:8780"
    flags["--openflow"] = f"ssl:{node.host_ip}:{controller.ofp_port}"
    flags["--controller"] = f"https://{node.host_ip}:{controller.api_port}"
    flags["--token-file"] = str(on_node / "agent-token")
    args = [
        *resolved(flags, on_node),
        "--ovsdb", node.db, "--datapath-type", "netdev", "--socket", str(tmp_path / "agent.sock"),
    ]  # fmt: skip
    agent = None
    try:
        node.start()
        agent = launch(
            ["ip", "netns", "exec", node.netns, sys.executable, "-m", "agent.main", "run", *args],
            tmp_path / "agent.log",
        )
        wait_for(lambda: (tmp_path / "agent.sock").exists() or agent.poll() is not None, "the agent", timeout=60)
        assert agent.poll() is None, (tmp_path / "agent.log").read_text()
        yield node
    finally:
        stop(agent)
        node.close()


def test_the_recipe_programs_a_switch_over_tls(
    controller: Controller, node: OvsNode, capsys: pytest.CaptureFixture[str]
) -> None:
    # The agent set OVS's SSL table and an ssl: target, and registered the node over HTTPS with its certificate.
    ssl_table = node.vsctl("get-ssl")
    assert f"Private key: {controller.tls.parent / 'node1' / 'node1-privkey.pem'}" in ssl_table, ssl_table
    assert node.vsctl("get-controller", "br-int").strip() == f"ssl:{node.host_ip}:{controller.ofp_port}"
    on_node = controller.tls.parent / "node1"
    files = [str(on_node / name) for name in ("node1-privkey.pem", "node1-cert.pem", "cacert.pem")]
    ovsdb = Ovsdb(node.db)
    try:  # the same files again write nothing
        before = node.vsctl("get", "Open_vSwitch", ".", "next_cfg")
        ovsdb.ensure_ssl(*files)
        assert node.vsctl("get", "Open_vSwitch", ".", "next_cfg") == before
    finally:
        ovsdb.close()
    admin = controller.client()
    wait_for(lambda: admin.get(path("v1", "nodes", "node1"))["switch"].get("in_sync"), "the switch over TLS")
    # A change reaches the switch over the TLS connection.
    admin.post(path("v1", "tenants"), {"name": "blue"})
    network = {"name": "web", "encap": "vxlan", "vni": 5001, "subnet": "10.1.0.0/24"}
    admin.post(path("v1", "tenants", "blue", "networks"), network)
    endpoint = admin.post(path("v1", "endpoints"), {"id": "b1", "network": "blue/web", "node": "node1"})
    wait_for(lambda: endpoint["mac"] in node.ofctl("dump-flows"), "the endpoint's flows on the switch", timeout=30)
    # tenetctl as the README runs it; without the CA file it refuses the controller's certificate.
    flags = controller.commands["tenetctl node ls"]
    assert flags["--server"] == "https://127.0.0.1:8780"
    args = resolved({**flags, "--server": f"https://127.0.0.1:{controller.api_port}"}, controller.tls)
    assert tenetctl(["node", "ls", "--token", TOKEN, *args]) == 0
    assert "node1" in capsys.readouterr().out
    without_ca = [a for a in args if not a.endswith("api-cert.pem") and a != "--ca-file"]
    assert tenetctl(["node", "ls", "--token", TOKEN, *without_ca]) == 1
    assert "certificate verify failed" in capsys.readouterr().err
    # The API wants a client certificate the switch CA signed.
    anonymous = Client(f"https://127.0.0.1:{controller.api_port}", TOKEN, ca_file=str(controller.tls / "api-cert.pem"))
    with pytest.raises(ClientError, match="cannot reach the controller"):
        anonymous.get("/v1/nodes")


def test_a_switch_with_a_certificate_of_another_ca_is_refused(controller: Controller, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    for command in (["init", "--dir", "pki"], ["req+sign", "rogue", "switch", "--dir", "pki"]):
        subprocess.run(["ovs-pki", *command], cwd=other, check=True, capture_output=True, timeout=60)
    rogue = OvsNode("rogue", tmp_path / "ovs", index=2)
    try:
        rogue.start()
        dpid = 0x7E00_0000_0000_0099
        controller.client().put(path("v1", "nodes", "rogue"), {"tunnel_ip": "192.168.50.99", "datapath_id": dpid})
        controller_ca = controller.tls / "pki" / "controllerca" / "cacert.pem"  # it trusts the real controller
        rogue.vsctl("set-ssl", str(other / "rogue-privkey.pem"), str(other / "rogue-cert.pem"), str(controller_ca))
        rogue.vsctl(
            "add-br", "br-int", "--", "set", "bridge", "br-int", "datapath_type=netdev", "protocols=OpenFlow13",
            "fail_mode=secure", f"other-config:datapath-id={dpid:016x}",
            "--", "set-controller", "br-int", f"ssl:{rogue.host_ip}:{controller.ofp_port}",
            "--", "set", "controller", "br-int", "connection-mode=out-of-band",
        )  # fmt: skip
        log = rogue.dir / "ovs-vswitchd.log"
        try:
            wait_for(lambda: "alert unknown ca" in log.read_text(), "the controller to refuse it", timeout=30)
        except TimeoutError as error:  # say what the switch saw instead: its connection attempts and their ends
            seen = [line for line in log.read_text().splitlines() if "rconn" in line or "stream_ssl" in line]
            raise AssertionError(f"{error}; ovs-vswitchd logged:\n" + "\n".join(seen[-20:])) from None
        assert "is_connected        : true" not in rogue.vsctl("--columns=is_connected", "list", "controller")
        assert controller.client().get(path("v1", "nodes", "rogue"))["switch"] == {"connected": False}
        assert "cookie=" not in rogue.ofctl("dump-flows")
        # The controller says so too, with the reason: an operator need not find the switch's log.
        said = f"OpenFlow: TLS handshake with {rogue.node_ip}:"
        controller_log = tmp_path / "controller.log"
        wait_for(lambda: said in controller_log.read_text(), "the controller to log the refusal", timeout=30)
        line = next(line for line in controller_log.read_text().splitlines() if said in line)
        assert " WARNING " in line, line
        assert line.endswith(" failed: certificate verify failed: unable to get local issuer certificate"), line
    finally:
        rogue.close()


def test_a_switch_whose_certificate_names_another_node_is_refused(controller: Controller, tmp_path: Path) -> None:
    """The switch CA signed it, but its subject CN ("admin id:...", as ovs-pki writes it) names no node
    "rogue": it may not claim rogue's datapath id."""
    tls = controller.tls
    rogue = OvsNode("rogue", tmp_path / "ovs", index=2)
    try:
        rogue.start()
        dpid = 0x7E00_0000_0000_0098
        controller.client().put(path("v1", "nodes", "rogue"), {"tunnel_ip": "192.168.50.98", "datapath_id": dpid})
        controller_ca = tls / "pki" / "controllerca" / "cacert.pem"
        rogue.vsctl("set-ssl", str(tls / "admin-privkey.pem"), str(tls / "admin-cert.pem"), str(controller_ca))
        rogue.vsctl(
            "add-br", "br-int", "--", "set", "bridge", "br-int", "datapath_type=netdev", "protocols=OpenFlow13",
            "fail_mode=secure", f"other-config:datapath-id={dpid:016x}",
            "--", "set-controller", "br-int", f"ssl:{rogue.host_ip}:{controller.ofp_port}",
            "--", "set", "controller", "br-int", "connection-mode=out-of-band",
        )  # fmt: skip
        log = tmp_path / "controller.log"
        wait_for(lambda: "which does not name node rogue" in log.read_text(), "the controller to refuse it", timeout=30)
        assert "subject CN 'admin id:" in log.read_text()
        assert controller.client().get(path("v1", "nodes", "rogue"))["switch"] == {"connected": False}
        assert "cookie=" not in rogue.ofctl("dump-flows")
    finally:
        rogue.close()
