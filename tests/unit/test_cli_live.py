"""tenetctl's live commands against a real API server on a free port: tables, --json, one-line errors."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import pytest

from controller.api import ApiServer, Tokens, make_app, serve
from controller.cli import main
from controller.service import Service
from controller.store.sqlite import SqliteStore
from topology.gateway import GatewayConfig

ROOT = Path(__file__).resolve().parents[2]
ADMIN, BLUE = "admin-token", "blue-token"
TOKENS = Tokens.from_dict({"admin": [ADMIN], "tenants": {"blue": [BLUE]}})


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    store = SqliteStore(tmp_path / "tenet.db")
    yield Service(store)
    store.close()


@pytest.fixture
def server(service: Service, monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiServer]:
    monkeypatch.delenv("TENET_SERVER", raising=False)
    monkeypatch.delenv("TENET_TOKEN", raising=False)
    # Shaped like the OpenFlow app's report.
    node1 = {
        "connected": True,
        "datapath_id": "0x1",
        "in_sync": False,
        "errors": ["OFPET_BAD_MATCH on\ntable=l2"],
        "guarded_ports": ["tnstale"],
    }
    verified = {  # shaped like controller.app.verify's answer
        "node1": {
            "checked": True,
            "in_sync": False,
            "missing": ["cookie=0x1,table=l2,priority=5 actions=drop"],
            "extra": ["cookie=0x0,table=classify,priority=9,in_port=7 actions=drop"],
            "different": [{"want": "group_id=1,type=all", "have": "group_id=1,type=all,bucket=actions=output:3"}],
            "switch_counts": {"flows": 30, "groups": 1, "meters": 0},
        },
        "node2": {"checked": True, "in_sync": True, "missing": [], "extra": [], "different": [],
                  "switch_counts": {"flows": 28, "groups": 1, "meters": 0}},
    }  # fmt: skip
    app = make_app(
        service,
        TOKENS,
        switch_status=lambda n: node1 if n == "node1" else {"connected": False},
        verify=lambda n, _wait: verified.get(
            n, {"checked": False, "reason": f"the switch of node {n} is not connected"}
        ),
    )
    running = serve(app, "127.0.0.1", 0).start()
    yield running
    running.stop()


class Ctl:
    """Runs tenetctl in-process against the server, as the admin unless told otherwise."""

    def __init__(self, server: ApiServer, capsys: pytest.CaptureFixture[str]) -> None:
        self.url, self.capsys = server.url, capsys

    def __call__(self, *args: str, token: str | None = ADMIN) -> tuple[int, str, str]:
        connection = ["--server", self.url] + (["--token", token] if token else [])
        status = main([*args, *connection])
        out, err = self.capsys.readouterr()
        return status, out, err

    def ok(self, *args: str, **kwargs: str | None) -> str:
        status, out, err = self(*args, **kwargs)
        assert (status, err) == (0, ""), (args, err)
        return out

    def json(self, *args: str, **kwargs: str | None) -> object:
        return json.loads(self.ok(*args, "--json", **kwargs))

    def doc(self, *args: str, **kwargs: str | None) -> dict[str, Any]:
        """The --json answer, which must be one JSON object."""
        answer = self.json(*args, **kwargs)
        assert isinstance(answer, dict), answer
        return answer

    def docs(self, *args: str, **kwargs: str | None) -> list[dict[str, Any]]:
        """The --json answer, which must be a list of JSON objects."""
        answer = self.json(*args, **kwargs)
        assert isinstance(answer, list) and all(isinstance(d, dict) for d in answer), answer
        return answer


@pytest.fixture
def ctl(server: ApiServer, capsys: pytest.CaptureFixture[str], service: Service) -> Ctl:
    service.register_node("node1", tunnel_ip="192.168.50.1", datapath_id=0x1)
    service.register_node("node2", tunnel_ip="192.168.50.2", uplink="eth1")
    return Ctl(server, capsys)


def assert_one_line_error(result: tuple[int, str, str], *needles: str) -> None:
    status, out, err = result
    assert (status, out) == (1, "")
    assert err.startswith("tenetctl: ") and err.count("\n") == 1 and err.endswith("\n"), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, (needle, err)


def columns(table: str) -> list[list[str]]:
    """Split an aligned table at the header's column starts, checking every row lines up."""
    lines = table.rstrip("\n").split("\n")
    starts = [i for i, c in enumerate(lines[0]) if c != " " and (i == 0 or lines[0][i - 1] == " ")]
    rows = []
    for line in lines:
        for start in starts[1:]:
            assert line[start - 1] == " " and line[start] != " ", (line, start)
        rows.append([line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)])
    return rows


def test_tenants(ctl: Ctl) -> None:
    assert ctl.ok("tenant", "create", "blue") == "created tenant blue (id 1)\n"
    ctl.ok("tenant", "create", "red-team")
    assert columns(ctl.ok("tenant", "ls")) == [["NAME", "ID", "NETWORKS"], ["blue", "1", "-"], ["red-team", "2", "-"]]
    unlimited, unused = {"networks": None, "endpoints": None}, {"networks": 0, "endpoints": 0}
    assert ctl.json("tenant", "ls") == [
        {"name": "blue", "id": 1, "networks": [], "quota": unlimited, "usage": unused},
        {"name": "red-team", "id": 2, "networks": [], "quota": unlimited, "usage": unused},
    ]
    assert ctl.ok("tenant", "show", "blue") == (
        "name:     blue\nid:       1\nnetworks: -\nquota:    networks no limit, endpoints no limit\n"
        "usage:    networks 0, endpoints 0\n"
    )
    assert ctl.ok("tenant", "rm", "red-team") == "deleted tenant red-team\n"
    assert [t["name"] for t in ctl.docs("tenant", "ls", token=BLUE)] == ["blue"]


def test_tenant_quota_and_a_network_from_the_pool(ctl: Ctl) -> None:
    ctl.ok("tenant", "create", "blue")
    assert (
        ctl.ok("tenant", "quota", "blue", "--networks", "1") == "quota of tenant blue: networks 1, endpoints no limit\n"
    )
    status, _out, err = ctl("tenant", "quota", "blue", "--networks", "5", token=BLUE)
    assert status != 0 and "needs the cluster-admin token" in err
    out = ctl.ok("network", "create", "blue/web", "--encap", "vxlan", "--subnet", "10.0.0.0/24", token=BLUE)
    assert out.startswith("created network blue/web (vxlan 1, ")  # the lowest free of the (whole) pool
    status, _out, err = ctl("network", "create", "blue/db", "--encap", "vlan", "--subnet", "10.1.0.0/24", token=BLUE)
    assert status != 0 and "quota of 1 networks" in err
    shown = ctl.ok("tenant", "show", "blue").splitlines()  # the table shows what --json has: quota and usage
    assert shown[-2:] == ["quota:    networks 1, endpoints no limit", "usage:    networks 1 of 1, endpoints 0"]


def test_networks(ctl: Ctl) -> None:
    ctl.ok("tenant", "create", "blue")
    out = ctl.ok("network", "create", "blue/web", "--encap", "vxlan", "--vni", "100", "--subnet", "10.0.0.0/24")
    assert out == "created network blue/web (vxlan 100, 10.0.0.0/24)\n"
    vlan = ("--encap", "vlan", "--vlan", "20", "--subnet", "10.1.0.0/24", "--gateway", "10.1.0.254", "--mtu", "1450")
    doc = ctl.doc("network", "create", "blue/db", *vlan, token=BLUE)
    assert (doc["gateway"], doc["mtu"], doc["vlan"]) == ("10.1.0.254", 1450, 20)
    rows = columns(ctl.ok("network", "ls", "blue"))
    assert rows[0] == [
        "NETWORK", "ENCAP", "SEGMENT", "SUBNET", "GATEWAY", "MTU", "ENDPOINTS", "QOS", "NAT-OUTGOING", "NODE-PORTS"
    ]  # fmt: skip
    assert rows[1:] == [
        ["blue/db", "vlan", "20", "10.1.0.0/24", "10.1.0.254", "1450", "0", "-", "off", "-"],
        ["blue/web", "vxlan", "100", "10.0.0.0/24", "10.0.0.1", "1450", "0", "-", "off", "-"],
    ]
    assert ctl.ok("network", "ls") == ctl.ok("network", "ls", "blue")
    shown = ctl.ok("network", "show", "blue/web")
    assert "gateway_mac:" in shown and "free_addresses: 253" in shown  # 254 hosts less the gateway
    assert ctl.ok("network", "rm", "blue/db") == "deleted network blue/db\n"
    assert [n["key"] for n in ctl.docs("network", "ls")] == ["blue/web"]


def test_network_errors_are_one_line(ctl: Ctl) -> None:
    ctl.ok("tenant", "create", "blue")
    create = ("network", "create", "blue/web", "--encap", "vxlan", "--subnet", "10.0.0.0/24")
    ctl.ok(*create, "--vni", "100")
    assert_one_line_error(ctl(*create, "--vni", "100"), "network.name", "already exists")
    assert_one_line_error(
        ctl("network", "create", "blue/x", "--encap", "vlan", "--vlan", "5000", "--subnet", "10.9.0.0/24"),
        "VLAN 5000 is outside 1..4094",
    )
    overlap = ("network", "create", "blue/o", "--encap", "vxlan", "--vni", "7", "--subnet", "10.0.0.128/25")
    assert_one_line_error(ctl(*overlap), "overlaps 10.0.0.0/24")
    assert_one_line_error(ctl("network", "show", "blue"), "want TENANT/NAME")
    assert_one_line_error(ctl("network", "show", "blue/nope"), "unknown network 'blue/nope'")
    assert_one_line_error(ctl("network", "ls", "green"), "unknown tenant 'green'")


def test_qos(ctl: Ctl, service: Service) -> None:
    ctl.ok("tenant", "create", "blue")
    ctl.ok("network", "create", "blue/web", "--encap", "vxlan", "--vni", "1", "--subnet", "10.0.0.0/24")
    assert ctl.ok("qos", "create", "gold", "--rate-kbps", "10000", "--burst-kb", "1000") == (
        "created QoS profile gold (10000 kbit/s, burst 1000 kbit, both, per endpoint)\n"
    )
    assert ctl.ok("qos", "create", "plain", "--rate-kbps", "20000", "--direction", "ingress") == (
        "created QoS profile plain (20000 kbit/s, burst 10000 kbit, ingress, per endpoint)\n"
    )
    ctl.ok("qos", "rm", "plain")
    assert ctl.ok("qos", "attach", "gold", "blue/web", token=BLUE) == "attached QoS profile gold to network blue/web\n"
    service.create_endpoint("pod-a", network="blue/web", node="node1")
    ctl.ok("qos", "attach", "gold", "pod-a")
    rows = columns(ctl.ok("qos", "ls"))
    assert rows == [
        ["NAME", "RATE-KBPS", "BURST-KB", "DIRECTION", "ATTACHMENTS"],
        ["gold", "10000", "1000", "both", "blue/web,pod-a"],
    ]
    assert ctl.doc("qos", "show", "gold")["attachments"] == ["blue/web", "pod-a"]
    assert_one_line_error(ctl("qos", "rm", "gold"), "still attached")
    assert ctl.ok("qos", "detach", "pod-a") == "detached QoS from pod-a\n"
    ctl.ok("qos", "detach", "blue/web")
    assert_one_line_error(ctl("qos", "detach", "blue/web"), "no QoS profile is attached")
    assert_one_line_error(ctl("qos", "create", "x", "--rate-kbps", "1", "--burst-kb", "1", token=BLUE), "admin")
    assert ctl.ok("qos", "rm", "gold") == "deleted QoS profile gold\n"


def test_nodes_endpoints_and_flows(ctl: Ctl, service: Service) -> None:
    ctl.ok("tenant", "create", "blue")
    ctl.ok("network", "create", "blue/web", "--encap", "vxlan", "--vni", "1", "--subnet", "10.0.0.0/24")
    service.create_endpoint("pod-a", network="blue/web", node="node1")
    service.create_endpoint("pod-b", network="blue/web", node="node2")
    rows = columns(ctl.ok("node", "ls"))
    assert rows[0] == ["NAME", "TUNNEL-IP", "UPLINK", "DATAPATH-ID", "ENDPOINTS", "SWITCH"]
    switch = "connected, out of sync, 1 error(s), 1 guarded port(s)"
    assert rows[1] == ["node1", "192.168.50.1", "-", "0x0000000000000001", "1", switch]
    assert rows[2][:3] == ["node2", "192.168.50.2", "eth1"] and rows[2][5] == "disconnected"
    shown = ctl.ok("node", "show", "node1")
    assert f"switch:      {switch}\n" in shown
    assert shown.endswith(
        "error:       OFPET_BAD_MATCH on table=l2\nguarded:     tnstale (no endpoint has it as planned)\n"
    )
    assert "switch" not in ctl.doc("node", "show", "node1", token=BLUE)
    rows = columns(ctl.ok("endpoint", "ls", "--node", "node2"))
    assert rows[0] == ["ID", "NETWORK", "NODE", "IP", "MAC", "PORT", "QOS", "NAMESPACE"]
    assert rows[1][:4] == ["pod-b", "blue/web", "node2", "10.0.0.3/24"]
    assert ctl.doc("endpoint", "show", "pod-a", token=BLUE)["ip"] == "10.0.0.2"
    assert "prefix_len: 24\n" in ctl.ok("endpoint", "show", "pod-a")
    ctl.ok("endpoint", "set", "pod-a", "--label", "pod=a", "--label", "tier=web", "--ports", "http=80/tcp,dns=53/udp")
    shown = ctl.ok("endpoint", "show", "pod-a")
    assert "labels:     pod=a,tier=web\n" in shown and "ports:      http=80/tcp,dns=53/udp\n" in shown, shown
    flows = ctl.ok("flows", "node1", "--no-verify")
    first, rest = flows.split("\n", 1)
    assert first.startswith(f"# node node1: switch {switch}; desired: ")
    assert "table=classify" in rest and rest == ctl.doc("flows", "node1", "--no-verify")["flows"]
    status, out, err = ctl("flows", "node1")
    # The dump made now is the verdict: first, and the header agrees with it.
    verdict = "# OVS DIFFERS (dumped now: 30 flows, 1 group, 0 meters): 1 missing, 1 extra, 1 different\n"
    assert (status, err) == (1, "") and out.startswith(
        verdict + "# node node1: switch connected, OUT OF SYNC (see below);"
    )
    assert "in sync" not in out.split("\n")[1]
    assert out.endswith(
        rest + "# missing: cookie=0x1,table=l2,priority=5 actions=drop\n"
        "# extra:   cookie=0x0,table=classify,priority=9,in_port=7 actions=drop\n"
        "# want:    group_id=1,type=all\n"
        "# have:    group_id=1,type=all,bucket=actions=output:3\n"
    )
    shown = ctl.ok("flows", "node2")
    assert shown.startswith("# OVS holds exactly that (dumped now: 28 flows, 1 group, 0 meters)\n# node node2: switch ")
    service.register_node("node3", tunnel_ip="192.168.50.3")
    status, out, _ = ctl("flows", "node3")
    assert status == 1 and out.startswith("# OVS not checked: the switch of node node3 is not connected\n")
    assert_one_line_error(ctl("flows", "node1", token=BLUE), "needs the cluster-admin token")
    assert_one_line_error(ctl("flows", "node9"), "unknown node 'node9'")


def test_authentication_errors(ctl: Ctl, tmp_path: Path) -> None:
    assert_one_line_error(ctl("tenant", "ls", token=None), "missing or unknown bearer token", "TENET_TOKEN")
    assert_one_line_error(ctl("tenant", "ls", token="wrong"), "missing or unknown bearer token")
    assert_one_line_error(
        ctl("tenant", "create", "blue", token=BLUE), "creating a tenant needs the cluster-admin token"
    )
    token_file = tmp_path / "token"
    token_file.write_text(ADMIN + "\n")
    assert ctl.ok("tenant", "ls", "--token-file", str(token_file), token=None) == "NAME  ID  NETWORKS\n"
    missing = ctl("tenant", "ls", "--token-file", str(tmp_path / "absent"), token=None)
    assert_one_line_error(missing, "cannot read token file")


def test_environment_variables(
    server: ApiServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TENET_SERVER", server.url)
    monkeypatch.setenv("TENET_TOKEN", ADMIN)
    assert main(["tenant", "create", "blue"]) == 0
    assert main(["tenant", "ls", "--json"]) == 0
    out, _ = capsys.readouterr()
    assert json.loads(out.split("\n", 1)[1])[0]["name"] == "blue"
    monkeypatch.setenv("TENET_TOKEN", BLUE)  # --token wins over the environment
    assert main(["tenant", "create", "red", "--token", ADMIN]) == 0
    assert main(["tenant", "create", "green"]) == 1
    _, err = capsys.readouterr()
    assert "admin" in err


def test_unreachable_controller(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
        monkeypatch.setenv("TENET_SERVER", url)
        status = main(["node", "ls", "--token", ADMIN])
    out, err = capsys.readouterr()
    assert_one_line_error((status, out, err), f"cannot reach the controller at {url}: ", "refused")


def test_as_a_process(server: ApiServer) -> None:
    """The installed entry point: real exit statuses, nothing but one line on an error."""
    cli = [sys.executable, "-m", "controller.cli"]
    env = {"TENET_SERVER": server.url, "TENET_TOKEN": ADMIN, "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [*cli, "tenant", "create", "blue"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "created tenant blue (id 1)\n", "")
    again = subprocess.run(
        [*cli, "tenant", "create", "blue"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert_one_line_error((again.returncode, again.stdout, again.stderr), "already exists")


def test_offline_commands_still_work(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(ROOT / "examples" / "cluster.yaml")]) == 0
    assert ": ok: " in capsys.readouterr().out


def test_connection_options_go_before_or_after_the_command(ctl: Ctl, capsys: pytest.CaptureFixture[str]) -> None:
    """--server, --token and --json are tenetctl's options and each command's: a value before the command is
    not lost to the command's defaults, a value after it wins."""
    ctl.ok("tenant", "create", "blue")
    after = ["tenant", "ls", "--server", ctl.url, "--token", ADMIN, "--json"]
    before = ["--server", ctl.url, "--token", ADMIN, "--json", "tenant", "ls"]
    between = ["--server", ctl.url, "tenant", "--json", "ls", "--token", ADMIN]
    outputs = []
    for argv in (after, before, between):
        assert main(argv) == 0, argv
        out, err = capsys.readouterr()
        assert err == "", (argv, err)
        outputs.append(json.loads(out))
    assert outputs[0] == outputs[1] == outputs[2]
    assert [(t["name"], t["id"], t["networks"]) for t in outputs[0]] == [("blue", 1, [])]
    # The command's own value beats tenetctl's: this token is the tenant's, so creating a tenant is refused.
    assert main(["--token", ADMIN, "--server", ctl.url, "tenant", "create", "red", "--token", BLUE]) == 1
    assert "cluster-admin token" in capsys.readouterr().err


def test_trace_json_goes_before_or_after_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    trace = ["trace", str(ROOT / "examples" / "cluster.yaml"), "--src", "b1", "--dst", "b2"]
    documents = []
    for argv in ([*trace, "--json"], ["--json", *trace]):
        assert main(argv) == 0
        documents.append(json.loads(capsys.readouterr().out))
    assert documents[0] == documents[1] and documents[0]["verdict"]


def test_network_nat_outgoing(ctl: Ctl, service: Service) -> None:
    config = GatewayConfig("default/pods", IPv4Network("10.244.0.0/16"), IPv4Network("100.64.0.0/16"))
    service.gateway = config
    service.model.configure_gateway(config)
    ctl.ok("tenant", "create", "blue")
    doc = ctl.doc("network", "create", "blue/web", "--encap", "vxlan", "--subnet", "10.0.0.0/24", "--nat-outgoing")
    assert doc["nat_outgoing"] is True
    assert ctl.ok("network", "set", "blue/web", "--nat-outgoing", "off") == "network blue/web: nat_outgoing off\n"
    assert "nat_outgoing:   off" in ctl.ok("network", "show", "blue/web")
    assert ctl.doc("network", "show", "blue/web")["nat_outgoing"] is False  # --json: the API's document
    assert ctl.doc("network", "set", "blue/web", "--nat-outgoing", "on", token=BLUE)["nat_outgoing"] is True


def test_network_node_ports(ctl: Ctl, service: Service) -> None:
    config = GatewayConfig("default/pods", IPv4Network("10.244.0.0/16"), IPv4Network("100.64.0.0/16"))
    service.gateway = config
    service.model.configure_gateway(config)
    ctl.ok("tenant", "create", "blue")
    create = ("network", "create", "blue/web", "--encap", "vxlan", "--subnet", "10.0.0.0/24")
    assert ctl.doc(*create, "--node-ports", "udp/53,tcp/53")["node_ports"] == ["tcp/53", "udp/53"]
    said = ctl.ok("network", "set", "blue/web", "--node-ports", "tcp/10250")
    assert said == "network blue/web: node_ports tcp/10250\n"
    assert "node_ports:     tcp/10250" in ctl.ok("network", "show", "blue/web")
    assert_one_line_error(ctl("network", "set", "blue/web", "--node-ports", "tcp/53", token=BLUE), "node_ports")
    assert_one_line_error(ctl("network", "set", "blue/web", "--node-ports", "tcp/x"), "node_ports[0]")
    assert_one_line_error(ctl("network", "set", "blue/web"), "--nat-outgoing, --node-ports")
    for empty in ("", " ", "tcp/53,", "tcp/53,,udp/53"):  # never read as "close them all"
        assert_one_line_error(ctl("network", "set", "blue/web", "--node-ports", empty), "--node-ports")
    assert service.model.networks["blue/web"].node_ports == ("tcp/10250",)
    rows = columns(ctl.ok("network", "ls", "blue"))
    assert rows[1][-2:] == ["off", "tcp/10250"] and rows[0].index("NODE-PORTS") == len(rows[1]) - 1
    said = ctl.ok("network", "set", "blue/web", "--node-ports", "none", "--nat-outgoing", "on")
    assert said == "network blue/web: nat_outgoing on, node_ports none\n"
    assert service.model.networks["blue/web"].node_ports == ()
