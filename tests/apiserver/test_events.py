"""Events as a controller records them, through the official client: events.k8s.io/v1 and core v1 share one
storage (as in kube-apiserver), the checks kube-apiserver makes of a new-style event, and `kubectl get
events`; ConfigMaps and Secrets through the client too."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from tests.apiserver.client import error_body, filled, name_of, version_of
from tests.apiserver.kubectl import kubectl

WHEN = "2026-01-01T00:00:00.000000Z"


def apis(kubeconfig: Path) -> tuple[client.EventsV1Api, client.CoreV1Api]:
    api = config.new_client_from_config(config_file=str(kubeconfig))
    return client.EventsV1Api(api), client.CoreV1Api(api)


def recorded(name: str, **changes: Any) -> dict[str, Any]:
    """An events.k8s.io/v1 Event about the cluster-scoped Network `web`, as an event recorder writes it."""
    body: dict[str, Any] = {
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"name": name},
        "eventTime": WHEN,
        "reportingController": "tenet.io/controller",
        "reportingInstance": "tenet-controller-0",
        "action": "Allocate",
        "reason": "PoolExhausted",
        "type": "Warning",
        "note": "no free address in 10.1.0.0/24",
        "regarding": {"apiVersion": "tenet.io/v1alpha1", "kind": "Network", "name": "web", "uid": "u-1"},
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


def test_events_k8s_io_events_are_core_events(kubeconfig: Path) -> None:
    events, core = apis(kubeconfig)
    made = events.create_namespaced_event("default", client.EventsV1Event.model_validate(recorded("web.1")))
    assert filled(made.regarding, "regarding").name == "web" and filled(made.note, "note").startswith("no free address")
    try:
        seen = core.read_namespaced_event("web.1", "default")
        assert (seen.involved_object.kind, seen.involved_object.name) == ("Network", "web")
        assert (seen.message, seen.reporting_component, seen.type) == (made.note, "tenet.io/controller", "Warning")
        about = core.list_namespaced_event("default", field_selector="involvedObject.kind=Network,reason=PoolExhausted")
        assert [name_of(e) for e in about.items] == ["web.1"]
        assert core.list_namespaced_event("default", field_selector="involvedObject.name=other").items == []
        series = {"series": {"count": 2, "lastObservedTime": WHEN}}
        patched = events.patch_namespaced_event("web.1", "default", series)
        assert filled(patched.series, "series").count == 2 and patched.note == made.note
        assert filled(core.read_namespaced_event("web.1", "default").series, "series").count == 2
        rows = kubectl(kubeconfig, "get", "events", "-n", "default").splitlines()
        assert rows[0].split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
        assert rows[1].split()[1:5] == ["Warning", "PoolExhausted", "network/web", "no"]
        version = version_of(core.list_namespaced_event("default"))
        events.delete_namespaced_event("web.1", "default")
        gone = watch.Watch().stream(
            events.list_namespaced_event, "default", resource_version=version, timeout_seconds=1
        )
        assert [(e["type"], e["raw_object"]["apiVersion"], e["raw_object"]["note"]) for e in gone] == [
            ("DELETED", "events.k8s.io/v1", made.note)
        ]
    finally:
        if core.list_namespaced_event("default", field_selector="metadata.name=web.1").items:
            core.delete_namespaced_event("web.1", "default")


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"eventTime": None}, "eventTime: Required value"),
        ({"reportingController": None}, "reportingController: Required value"),
        ({"reportingInstance": None}, "reportingInstance: Required value"),
        ({"action": None}, "action: Required value"),
        ({"type": "Error"}, 'type: Invalid value: "Error"'),
        ({}, "regarding.namespace"),  # about a cluster-scoped object, outside default and kube-system
    ],
    ids=["eventTime", "reportingController", "reportingInstance", "action", "type", "namespace"],
)
def test_a_new_style_event_is_checked(kubeconfig: Path, namespace: str, changes: dict[str, Any], words: str) -> None:
    events, _ = apis(kubeconfig)
    body = json.dumps(recorded("web.2", **changes))  # through kubectl: the client refuses a missing eventTime
    with pytest.raises(AssertionError, match="is invalid") as invalid:
        kubectl(kubeconfig, "create", "-n", namespace, "-f", "-", stdin=body)
    assert words in str(invalid.value)
    about_a_pod = recorded("pod.1", regarding={"kind": "Pod", "name": "p", "namespace": namespace})
    made = events.create_namespaced_event(namespace, client.EventsV1Event.model_validate(about_a_pod))
    assert filled(made.regarding, "regarding").name == "p"


def test_an_old_style_core_event_names_its_namespace(kubeconfig: Path, namespace: str) -> None:
    _, core = apis(kubeconfig)
    body: dict[str, Any] = {
        "metadata": {"name": "p.1"},
        "involvedObject": {"kind": "Pod", "name": "p", "namespace": namespace},
        "reason": "Started",
        "message": "started",
        "type": "Normal",
        "count": 1,
    }
    assert core.create_namespaced_event(namespace, client.CoreV1Event.model_validate(body)).count == 1
    elsewhere = {**body, "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"}}
    with pytest.raises(ApiException) as invalid:
        core.create_namespaced_event(
            namespace, client.CoreV1Event.model_validate({**elsewhere, "metadata": {"name": "p.2"}})
        )
    assert invalid.value.status == 422 and "involvedObject.namespace" in error_body(invalid.value)


def test_config_maps_and_secrets(kubeconfig: Path, namespace: str) -> None:
    _, core = apis(kubeconfig)
    secret = core.create_namespaced_secret(
        namespace,
        client.V1Secret.model_validate(
            {"metadata": {"name": "tokens"}, "stringData": {"tokens.json": "{}"}, "immutable": True}
        ),
    )
    assert secret.type == "Opaque" and secret.data == {"tokens.json": base64.b64encode(b"{}").decode()}
    with pytest.raises(ApiException) as frozen:
        core.patch_namespaced_secret("tokens", namespace, {"data": {"tokens.json": "e30K"}})
    assert frozen.value.status == 422 and "field is immutable when `immutable` is set" in error_body(frozen.value)
    with pytest.raises(ApiException) as not_base64:
        core.create_namespaced_secret(
            namespace, client.V1Secret.model_validate({"metadata": {"name": "bad"}, "data": {"k": "%%%"}})
        )
    assert not_base64.value.status == 422 and "data[k]" in error_body(not_base64.value)
    config_map = core.create_namespaced_config_map(
        namespace, client.V1ConfigMap.model_validate({"metadata": {"name": "c"}, "data": {"a.yaml": "x"}})
    )
    assert config_map.data == {"a.yaml": "x"}
    with pytest.raises(ApiException) as both:
        core.create_namespaced_config_map(
            namespace,
            client.V1ConfigMap.model_validate(
                {"metadata": {"name": "d"}, "data": {"k": "x"}, "binaryData": {"k": "eA=="}}
            ),
        )
    assert both.value.status == 422 and "binaryData[k]" in error_body(both.value)
    rows = [
        row.split() for row in kubectl(kubeconfig, "get", "-n", namespace, "secrets,cm", "--no-headers").splitlines()
    ]
    assert [row[:3] for row in rows if row] == [["secret/tokens", "Opaque", "1"], ["configmap/c", "1", rows[-1][2]]]
