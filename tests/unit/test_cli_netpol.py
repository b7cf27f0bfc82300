"""tenetctl namespace and tenetctl policy against a real API server: Kubernetes YAML in, tables out,
one-line errors naming the document and the field, nothing applied on a bad file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from controller.service import Service
from tests.unit import test_cli_live as live
from tests.unit.test_cli_live import BLUE, Ctl, assert_one_line_error, columns

service, server, ctl = live.service, live.server, live.ctl  # the same fixtures

POLICIES = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: deny-all
  namespace: shop
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: web
spec:
  podSelector:
    matchLabels: {app: web}
  ingress:
    - ports: [{port: http}]
"""


def setup_blue(ctl: Ctl) -> None:
    ctl.ok("tenant", "create", "blue")
    ctl.ok("tenant", "create", "red")


def test_namespaces(ctl: Ctl) -> None:
    setup_blue(ctl)
    assert ctl.ok("namespace", "create", "shop", "--tenant", "blue", "--label", "team=a") == (
        "created namespace shop of tenant blue\n"
    )
    ctl.ok("namespace", "create", "bank", "--tenant", "red")
    rows = columns(ctl.ok("namespace", "ls"))
    assert rows[0] == ["NAME", "TENANT", "ENDPOINTS", "NETWORKPOLICIES", "LABELS"]
    assert rows[2] == ["shop", "blue", "0", "-", "kubernetes.io/metadata.name=shop,team=a"]
    assert [d["name"] for d in ctl.docs("namespace", "ls", token=BLUE)] == ["shop"]
    assert "labels:          kubernetes.io/metadata.name=shop,team=a" in ctl.ok("namespace", "show", "shop")
    assert ctl.ok("namespace", "label", "shop", "env=prod", "team-") == (
        "namespace shop: env=prod, kubernetes.io/metadata.name=shop\n"
    )
    assert_one_line_error(ctl("namespace", "show", "bank", token=BLUE), "unknown namespace 'bank'")
    assert_one_line_error(ctl("namespace", "label", "shop", "a b"), "want KEY=VALUE or KEY-")
    assert_one_line_error(ctl("namespace", "label", "shop", "a=b c"), "namespace.labels.a")
    assert ctl.ok("namespace", "rm", "bank") == "deleted namespace bank\n"


def test_namespace_messages_say_each_thing_once(ctl: Ctl, service: Service) -> None:
    setup_blue(ctl)
    ctl.ok("network", "create", "blue/web", "--encap", "vxlan", "--vni", "100", "--subnet", "10.0.0.0/24")
    ctl.ok("namespace", "create", "y", "--tenant", "blue")
    for pod in ("pod-a", "pod-b"):
        service.create_endpoint(pod, network="blue/web", node="node1", namespace="y")
    status, out, err = ctl("namespace", "rm", "y")
    assert (status, out) == (1, "")
    assert err == "tenetctl: namespace: 'y' still has 2 endpoint(s): delete them first\n"
    status, out, err = ctl("namespace", "label", "y", "kubernetes.io/metadata.name=evil", "team=a")
    assert (status, out) == (0, "namespace y: kubernetes.io/metadata.name=y, team=a\n")
    assert err == (
        "tenetctl: warning: kubernetes.io/metadata.name is set by the system to the namespace's name; kept as 'y'\n"
    )
    assert ctl("namespace", "label", "y", "team=b")[2] == ""  # no warning when the name label is left alone


def test_policies_are_applied_from_kubernetes_yaml(ctl: Ctl, tmp_path: Path, service: Service) -> None:
    setup_blue(ctl)
    ctl.ok("namespace", "create", "shop", "--tenant", "blue")
    file = tmp_path / "policies.yaml"
    file.write_text(POLICIES)
    out = ctl.ok("policy", "apply", "-f", str(file), "-n", "shop", token=BLUE)
    assert out == "networkpolicy shop/deny-all created\nnetworkpolicy shop/web created\n"
    again = ctl.ok("policy", "apply", "-f", str(file), "-n", "shop", token=BLUE)
    assert again == "networkpolicy shop/deny-all unchanged\nnetworkpolicy shop/web unchanged\n"
    assert columns(ctl.ok("policy", "ls", token=BLUE)) == [
        ["NAMESPACE", "NAME", "POD-SELECTOR", "POLICY-TYPES"],
        ["shop", "deny-all", "<all>", "Ingress,Egress"],
        ["shop", "web", "app=web", "Ingress"],
    ]
    shown = yaml.safe_load(ctl.ok("policy", "show", "shop/web"))
    assert shown == {**list(yaml.safe_load_all(POLICIES))[1], "metadata": {"name": "web", "namespace": "shop"}}
    assert ctl.ok("policy", "rm", "shop/web") == "deleted NetworkPolicy shop/web\n"
    assert sorted(service.model.policies) == ["shop/deny-all"]
    assert_one_line_error(ctl("policy", "show", "shop"), "want NAMESPACE/NAME")


def test_a_bad_file_names_the_document_and_applies_nothing(ctl: Ctl, tmp_path: Path, service: Service) -> None:
    setup_blue(ctl)
    ctl.ok("namespace", "create", "shop", "--tenant", "blue")
    file = tmp_path / "mixed.yaml"
    file.write_text(POLICIES + "---\napiVersion: v1\nkind: Pod\nmetadata: {name: p}\n")
    assert_one_line_error(
        ctl("policy", "apply", "-f", str(file), "-n", "shop"), "document 3 is of kind 'Pod', not NetworkPolicy"
    )
    file.write_text(POLICIES.replace("{port: http}", "{port: 90, endPort: 80}"))
    assert_one_line_error(
        ctl("policy", "apply", "-f", str(file), "-n", "shop"),
        "document 2: spec.ingress[0].ports[0].endPort: must not be below port",
    )
    assert_one_line_error(
        ctl("policy", "apply", "-f", str(file)), "document 2: metadata.namespace: is required (or give -n NAMESPACE)"
    )
    assert not service.model.policies


@pytest.mark.parametrize("namespace", ["nosuch", "bank"])  # missing, and another tenant's
def test_a_file_with_a_document_in_an_unknown_namespace_applies_nothing(
    ctl: Ctl, tmp_path: Path, service: Service, namespace: str
) -> None:
    setup_blue(ctl)
    ctl.ok("namespace", "create", "shop", "--tenant", "blue")
    ctl.ok("namespace", "create", "bank", "--tenant", "red")
    file = tmp_path / "two.yaml"
    file.write_text(POLICIES.replace("  name: web\n", f"  name: web\n  namespace: {namespace}\n"))
    assert_one_line_error(
        ctl("policy", "apply", "-f", str(file), token=BLUE),
        f"{file}: document 2: metadata.namespace: unknown namespace {namespace!r}; nothing was applied",
    )
    assert not service.model.policies


def test_endpoint_set_replaces_labels_and_named_ports_all_or_nothing(ctl: Ctl, service: Service) -> None:
    setup_blue(ctl)
    ctl.ok("network", "create", "blue/web", "--encap", "vxlan", "--vni", "100", "--subnet", "10.0.0.0/24")
    service.create_endpoint("pod-a", network="blue/web", node="node1", labels={"app": "old"})
    out = ctl.ok(
        "endpoint", "set", "pod-a", "--label", "app=web", "--label", "tier=f", "--ports", "http=80/tcp,dns=53/udp"
    )
    assert "labels:    app=web,tier=f" in out and "ports:     http=80/tcp,dns=53/udp" in out
    endpoint = service.model.endpoints["pod-a"]
    assert [(p.name, p.port, p.protocol) for p in endpoint.ports] == [("http", 80, "TCP"), ("dns", 53, "UDP")]
    assert_one_line_error(
        ctl("endpoint", "set", "pod-a", "--label", "app=x", "--ports", "http=0"), "endpoint.ports[0].port"
    )
    assert dict(service.model.endpoints["pod-a"].labels) == {"app": "web", "tier": "f"}  # nothing applied
    assert_one_line_error(ctl("endpoint", "set", "pod-a", "--ports", "http"), "want NAME=PORT[/PROTOCOL]")
    assert_one_line_error(ctl("endpoint", "set", "pod-a"), "nothing to set")
    assert ctl.doc("endpoint", "set", "pod-a", "--no-labels", "--ports", "none", token=BLUE)["ports"] == []
    assert dict(service.model.endpoints["pod-a"].labels) == {}
