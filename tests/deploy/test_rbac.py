"""RBAC is least privilege: no wildcards, reads where the controller watches, writes only on `status` (and
Events), nothing at all for the agent."""

from __future__ import annotations

from tests.deploy.support import NAMESPACE, Obj, objects, one, pod_spec

READS = {"get", "list", "watch"}
EVENTS = {("", "events"), ("events.k8s.io", "events")}


def rules(role: str) -> list[Obj]:
    return one("ClusterRole", role)["rules"]


def grants(role: str) -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) for every combination a role grants."""
    return {
        (group, resource, verb)
        for rule in rules(role)
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_no_wildcards_and_no_secrets() -> None:
    for role in objects():
        if role["kind"] not in ("ClusterRole", "Role"):
            continue
        for rule in role["rules"]:
            for key in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
                assert "*" not in rule.get(key, []), (role["metadata"]["name"], rule)
            assert "secrets" not in rule["resources"]


def test_the_controller_reads_what_it_watches() -> None:
    reads = {(group, resource) for group, resource, verb in grants("tenet-controller") if verb in READS}
    for group, resource in reads:
        assert {(group, resource, verb) for verb in READS} <= grants("tenet-controller"), resource
    assert reads == {
        ("", "nodes"),
        ("", "namespaces"),
        ("", "pods"),
        ("networking.k8s.io", "networkpolicies"),
        ("tenet.io", "tenants"),
        ("tenet.io", "networks"),
        ("tenet.io", "qosprofiles"),
    }


def test_the_controller_writes_only_status_and_events() -> None:
    writes = {(group, resource, verb) for group, resource, verb in grants("tenet-controller") if verb not in READS}
    for group, resource, verb in writes:
        if (group, resource) in EVENTS:
            assert verb in ("create", "patch")
        else:
            assert group == "tenet.io" and resource.endswith("/status") and verb in ("update", "patch"), resource
    status = {resource for group, resource, _ in writes if group == "tenet.io"}
    assert status == {"tenants/status", "networks/status", "qosprofiles/status"}


def test_bindings_and_service_accounts() -> None:
    bindings = [o for o in objects() if o["kind"] in ("ClusterRoleBinding", "RoleBinding")]
    subjects = {(s["kind"], s["name"], s["namespace"]) for b in bindings for s in b["subjects"]}
    assert subjects == {("ServiceAccount", "tenet-controller", NAMESPACE)}, "the agent needs no Kubernetes API"
    for binding in bindings:
        assert binding["roleRef"]["kind"] == "ClusterRole"
        one("ClusterRole", binding["roleRef"]["name"])
    assert pod_spec("Deployment", "tenet-controller")["serviceAccountName"] == "tenet-controller"
    agent = pod_spec("DaemonSet", "tenet-agent")
    assert agent["serviceAccountName"] == "tenet-agent"
    assert agent["automountServiceAccountToken"] is False
    assert one("ServiceAccount", "tenet-agent")["automountServiceAccountToken"] is False
