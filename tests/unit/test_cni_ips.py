"""A requested address through the CNI conventions, against both plugins (Python launcher and compiled): the
`ips` capability (runtimeConfig.ips) and CNI_ARGS IP=, one IPv4 address per attachment, errors naming the
field and applying nothing (the agent is not asked)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_cni_plugin import FakeAgent, agent, failure, launcher, netconf, run, short_dir

__all__ = ["agent", "launcher", "short_dir"]  # the fixtures, shared with test_cni_plugin

POD = "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-1"


@pytest.mark.parametrize(
    ("runtime_config", "cni_args", "asked"),
    [
        ({"ips": ["10.1.0.9/24"]}, POD, "10.1.0.9"),
        ({"ips": ["10.1.0.9"]}, POD, "10.1.0.9"),
        (None, f"{POD};IP=10.1.0.7", "10.1.0.7"),
        (None, "IgnoreUnknown=1;IP=10.1.0.7", "10.1.0.7"),
        ({"ips": ["10.1.0.9/24"]}, f"{POD};IP=10.1.0.9", "10.1.0.9"),
        ({"ips": []}, POD, None),
        ({"portMappings": []}, POD, None),
        (None, POD, None),
    ],
)
def test_add_asks_the_agent_for_the_requested_address(
    launcher: Path, agent: FakeAgent, runtime_config: dict[str, Any] | None, cni_args: str, asked: str | None
) -> None:
    config = netconf(agent.path, capabilities={"ips": True}, runtimeConfig=runtime_config)
    status, result = run(launcher, "ADD", config, CNI_ARGS=cni_args)
    assert status == 0, result
    (request,) = agent.requests
    assert request.get("ip") == asked
    assert request.get("pod") == ({"namespace": "default", "name": "web-1"} if "K8S_POD_NAME" in cni_args else None)


def test_del_and_check_ignore_a_requested_address(launcher: Path, agent: FakeAgent) -> None:
    config = netconf(agent.path, runtimeConfig={"ips": ["10.1.0.9/24"]})
    assert run(launcher, "DEL", config, CNI_ARGS="IP=10.1.0.9") == (0, None)
    assert "ip" not in agent.requests[0]


@pytest.mark.parametrize(
    ("runtime_config", "cni_args", "code", "words"),
    [
        ({"ips": "10.1.0.9/24"}, POD, 7, "runtimeConfig.ips must be a list"),
        ({"ips": ["10.1.0.9/24", "10.1.0.10/24"]}, POD, 7, "runtimeConfig.ips: Tenet gives one IPv4 address"),
        ({"ips": ["fd00::5/64"]}, POD, 7, "runtimeConfig.ips[0]: fd00::5/64 is IPv6"),
        ({"ips": ["10.1.0.300/24"]}, POD, 7, "runtimeConfig.ips[0]: '10.1.0.300/24' is not an IPv4 address"),
        ({"ips": ["10.1.0.9/33"]}, POD, 7, "runtimeConfig.ips[0]: '10.1.0.9/33' has an invalid prefix length"),
        ({"ips": [5]}, POD, 7, "runtimeConfig.ips[0]: want an IPv4 address as a string"),
        ("ips", POD, 7, "runtimeConfig must be an object"),
        (None, f"{POD};IP=web", 4, "CNI_ARGS IP: 'web' is not an IPv4 address"),
        (None, f"{POD};IP=010.1.0.9", 4, "CNI_ARGS IP: '010.1.0.9' has an octet with a leading zero"),
        ({"ips": ["10.1.0.9/24"]}, f"{POD};IP=10.1.0.8", 4, "CNI_ARGS IP: 10.1.0.8 disagrees with runtimeConfig"),
    ],
)
def test_a_bad_requested_address_is_refused_naming_the_field(
    launcher: Path, agent: FakeAgent, runtime_config: Any, cni_args: str, code: int, words: str
) -> None:
    config = netconf(agent.path, "1.0.0", capabilities={"ips": True}, runtimeConfig=runtime_config)
    error = failure(launcher, "ADD", config, CNI_ARGS=cni_args)
    assert error["code"] == code and error["msg"].startswith(words), error
    assert error["cniVersion"] == "1.0.0"
    assert not agent.requests  # nothing asked, nothing made


def test_the_agent_s_refusal_of_the_address_reaches_the_runtime(launcher: Path, agent: FakeAgent) -> None:
    msg = "creating the endpoint on acme/web: endpoint.ip: 10.1.0.9 is already used in network acme/web"
    agent.answer = lambda request: {"ok": False, "code": 999, "msg": msg, "details": "endpoint.ip"}
    error = failure(launcher, "ADD", netconf(agent.path, runtimeConfig={"ips": ["10.1.0.9/24"]}))
    assert error["code"] == 999 and "10.1.0.9" in error["msg"]
    assert agent.requests[0]["ip"] == "10.1.0.9"
