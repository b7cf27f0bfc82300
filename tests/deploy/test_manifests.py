"""Every manifest of deploy/ parses, validates strictly against the Kubernetes API schemas, and applies in order."""

from __future__ import annotations

import argparse
import re
from dataclasses import fields
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from agent.main import parser as agent_parser
from controller.main import Settings
from tests.deploy.support import KUBERNETES_VERSION, NAMESPACE, documents, manifest_files, objects, one

CLUSTER_SCOPED = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}
# Settings of the controller's file beyond controller.main.Settings, which the Kubernetes watchers add.
KUBERNETES_SETTINGS = {"cluster_network", "cluster_subnet"}


def test_the_directory_holds_the_manifests_in_apply_order() -> None:
    names = [p.name for p in manifest_files()]
    assert names == [
        "00-namespace.yaml",
        "10-crds.yaml",
        "20-rbac.yaml",
        "30-configmap.yaml",
        "40-controller.yaml",
        "50-agent.yaml",
    ]
    kinds = [o["kind"] for o in objects()]
    # kubectl applies files by name and documents in order: the namespace before anything in it, and the
    # controller's Service before the agents, whose containers read its service environment variables.
    assert kinds[0] == "Namespace"
    assert kinds.index("Service") < kinds.index("DaemonSet")
    assert kinds.index("CustomResourceDefinition") < kinds.index("ClusterRole")


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: p.name)
def test_each_document_is_a_kubernetes_object(path: Path) -> None:
    docs = documents(path)
    assert docs, f"{path.name} holds no object"
    for doc in docs:
        assert isinstance(doc, dict) and {"apiVersion", "kind", "metadata"} <= set(doc), doc
        assert doc["metadata"]["name"]
        assert doc["metadata"].get("labels", {}).get("app.kubernetes.io/part-of") == "tenet", doc["metadata"]


@pytest.mark.parametrize(
    "obj", objects(), ids=lambda o: f"{o['kind']}/{o['metadata']['name']}" if isinstance(o, dict) else "?"
)
def test_each_object_validates_strictly(obj: dict) -> None:
    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_strict_validation_catches_a_misspelt_field() -> None:
    """The check above has teeth: an unknown field of a container is refused."""
    spec = one("DaemonSet", "tenet-agent")
    broken = yaml.safe_load(yaml.safe_dump(spec))
    broken["spec"]["template"]["spec"]["containers"][0]["volumeMount"] = []
    with pytest.raises(kubernetes_validate.ValidationError, match="volumeMount"):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_namespaced_objects_live_in_tenet_system() -> None:
    assert one("Namespace", NAMESPACE)["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
    for obj in objects():
        if obj["kind"] in CLUSTER_SCOPED:
            assert "namespace" not in obj["metadata"], obj["metadata"]
        else:
            assert obj["metadata"].get("namespace") == NAMESPACE, obj["metadata"]


def test_the_controllers_settings_are_its_own() -> None:
    settings = yaml.safe_load(one("ConfigMap", "tenet-config")["data"]["controller.yaml"])
    known = {f.name for f in fields(Settings)} | KUBERNETES_SETTINGS
    assert set(settings) <= known, set(settings) - known
    assert settings["api_host"] == "0.0.0.0", "agents on other nodes reach the API through the Service"
    assert (settings["api_port"], settings["ofp_port"]) == (8780, 6653)
    assert settings["token_file"] == "/etc/tenet/tokens.json"
    assert re.fullmatch(r"[a-z0-9-]+/[a-z0-9-]+", settings["cluster_network"])
    service_ports = {p["name"]: p["port"] for p in one("Service", "tenet-controller")["spec"]["ports"]}
    assert service_ports == {"api": settings["api_port"], "openflow": settings["ofp_port"]}


def subcommand(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    """The parser of verb `name`: argparse keeps the verbs in the parser's one _SubParsersAction."""
    verbs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return verbs.choices[name]


def test_service_links_do_not_shadow_tenet_settings() -> None:
    """The kubelet sets <SERVICE>_SERVICE_HOST, <SERVICE>_PORT_... for the Service; none may be a TENET_<setting>
    the controller or the agent reads from its environment."""
    service = one("Service", "tenet-controller")
    prefix = service["metadata"]["name"].upper().replace("-", "_")
    links = {f"{prefix}_SERVICE_HOST", f"{prefix}_SERVICE_PORT", f"{prefix}_PORT"}
    for port in service["spec"]["ports"]:
        links.add(f"{prefix}_SERVICE_PORT_{port['name'].upper()}")
        base = f"{prefix}_PORT_{port['port']}_{port['protocol']}"
        links |= {base, f"{base}_PROTO", f"{base}_PORT", f"{base}_ADDR"}
    run = subcommand(agent_parser(), "run")
    read = {f"TENET_{f.name.upper()}" for f in fields(Settings)}
    read |= {f"TENET_{a.dest.upper()}" for a in run._actions if a.dest != "help"}
    assert "TENET_CONTROLLER" in read and "TENET_CONTROLLER_SERVICE_HOST" in links
    assert not links & read
