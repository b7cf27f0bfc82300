"""The tenants' pools and default quotas from the controller's settings: flags, environment, config file."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.main import StartupError, load_policy, load_settings
from controller.policy import Quota, SegmentPool
from topology.errors import ValidationError
from topology.model import VLAN_RANGE


def test_defaults_and_every_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    policy = load_policy(load_settings([]))
    assert (policy.vlan_pool.text, policy.vni_pool.text, policy.quota) == ("100-199", "5000-9999", Quota())
    config = tmp_path / "tenet.yaml"
    config.write_text("vlan_pool: 300-310,400\nquota_networks: 5\n")
    monkeypatch.setenv("TENET_VNI_POOL", "7000-7099")
    policy = load_policy(load_settings(["--config", str(config), "--quota-endpoints", "50"]))
    assert policy.vlan_pool.text == "300-310,400" and 400 in policy.vlan_pool and 311 not in policy.vlan_pool
    assert policy.vni_pool.text == "7000-7099"
    assert policy.quota == Quota(networks=5, endpoints=50)


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--vlan-pool", "0-10"], "vlan_pool: '0-10' is not a range within 1..4094"),
        (["--vlan-pool", "200-100"], "vlan_pool: '200-100' is not a range"),
        (["--vni-pool", "a-b"], "vni_pool: 'a-b' is not a range LOW-HIGH"),
        (["--quota-networks", "-3"], "quota_networks: want a non-negative integer"),
    ],
)
def test_bad_settings_name_the_setting(argv: list[str], words: str) -> None:
    with pytest.raises(StartupError, match=words.replace(".", r"\.").replace("(", r"\(")):
        load_policy(load_settings(argv))


def test_lowest_free_follows_the_ranges_in_order() -> None:
    pool = SegmentPool.parse("10-11, 5", what="vlan_pool", bounds=VLAN_RANGE)
    assert list(pool) == [5, 10, 11] and pool.text == "5,10-11"
    assert pool.lowest_free([5, 10]) == 11 and pool.lowest_free([5, 10, 11]) is None
    with pytest.raises(ValidationError, match="vlan_pool"):
        SegmentPool.parse("", what="vlan_pool", bounds=VLAN_RANGE)
