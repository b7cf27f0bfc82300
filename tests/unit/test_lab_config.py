"""`tenet-lab up --config`: the whole file is checked, with the topology loader's and the controller's own
validation, before anything is built; what the lab and its users give (examples/cluster.yaml, the API's
network keys, the cluster network's tenant) passes."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from lab import cli as lab_cli
from lab.cluster import DEFAULT_CONFIG, Lab, LabError, check_config, load_config
from lab.ovs import ROOT, sh

VLAN_5000 = """tenants:
  - name: blue
    networks:
      - {name: web, encap: vxlan, vni: 5001, subnet: 10.1.0.0/24}
      - {name: db, encap: vlan, vlan: 5000, subnet: 10.2.0.0/24}
"""


def test_a_bad_field_is_refused_naming_the_file_and_the_field(tmp_path: Path) -> None:
    config = tmp_path / "lab.yaml"
    config.write_text(VLAN_5000)
    with pytest.raises(LabError) as error:
        load_config(config)
    assert str(error.value) == f"--config {config}: tenants[0].networks[1].vlan: VLAN 5000 is outside 1..4094"


def test_up_with_a_bad_config_builds_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """As root, as tenet-lab runs: the error, and not one progress line of a fabric or controller."""
    config, state = tmp_path / "lab.yaml", tmp_path / "state"
    config.write_text(VLAN_5000)
    assert lab_cli.main(["--state-dir", str(state), "up", "--config", str(config)]) == 1
    out, err = capsys.readouterr()
    assert (out, err) == (
        "",
        f"tenet-lab: --config {config}: tenants[0].networks[1].vlan: VLAN 5000 is outside 1..4094\n",
    )
    assert not (state / "lab.json").exists()
    assert f"tl-{Lab(state).id}-" not in sh("ip", "netns", "list")


def test_lab_up_checks_a_config_given_in_code_before_it_saves_anything(tmp_path: Path) -> None:
    config = copy.deepcopy(DEFAULT_CONFIG)
    config["tenants"][0]["networks"][0]["subnet"] = "10.1.0.5/24"  # host bits set
    lab = Lab(tmp_path)
    with pytest.raises(LabError, match=r"^tenants\[0\]\.networks\[0\]\.subnet: "):
        lab.up(1, config)
    assert not lab.file.exists() and not lab.state.nodes


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tenant": []}, "unknown top-level key 'tenant' (allowed: tenants, namespaces, qos, cluster_network"),
        ({"cluster_network": "pods"}, "cluster_network: want TENANT/NAME, got 'pods'"),
        ({"cluster_subnet": "10.244.0.0/33"}, "cluster_subnet: want an IPv4 network"),
        ({"namespaces": [{"name": "x", "tenant": "green"}]}, "namespaces[0].tenant: "),
        ({"qos": [{"name": "gold", "rate_kbps": 1000, "applies_to": "blue/nosuch"}]}, "qos[0].applies_to: "),
    ],
)
def test_refused_configs_name_what_is_wrong(change: dict[str, Any], message: str) -> None:
    with pytest.raises(LabError) as error:
        check_config({**copy.deepcopy(DEFAULT_CONFIG), **change})
    assert str(error.value).startswith(message), str(error.value)


def test_what_the_lab_takes_passes() -> None:
    check_config(DEFAULT_CONFIG)
    load_config(ROOT / "examples" / "cluster.yaml")  # its nodes and endpoints are not the lab's to apply
    load_config(ROOT / "examples" / "netpol.yaml")
    check_config({"tenants": [], "cni_default": "blue/web", "cluster_network": "default/pods",
                  "cluster_subnet": "10.244.0.0/16"})  # the demo's  # fmt: skip
    config = copy.deepcopy(DEFAULT_CONFIG)
    config["tenants"][0]["networks"][0] |= {"nat_outgoing": True, "node_ports": ["tcp/53"]}  # the API's to check
    config["namespaces"] = [{"name": "kube-system", "tenant": "default", "labels": {"a": "b"}}]  # cluster tenant
    config["qos"] = [{"name": "gold", "rate_kbps": 1000, "applies_to": ["default/pods", "red/web"]}]
    check_config(config)
