"""The official Kubernetes Python client (`kubernetes` on PyPI) pointed at the stand-in API server."""

from __future__ import annotations

from pathlib import Path

from kubernetes import client, config


def core_api(kubeconfig: Path) -> client.CoreV1Api:
    """CoreV1Api over the kubeconfig the server wrote (its URL, CA and bearer token)."""
    return client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig)))


def pod(name: str, labels: dict[str, str] | None = None, node: str | None = None) -> client.V1Pod:
    """A one-container pod body."""
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels=labels or {}),
        spec=client.V1PodSpec(node_name=node, containers=[client.V1Container(name="c", image="busybox")]),
    )
