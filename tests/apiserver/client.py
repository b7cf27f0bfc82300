"""The official Kubernetes Python client (`kubernetes` on PyPI) pointed at the stand-in API server, and typed
reads of its answers.

The client's models type every field the OpenAPI document does not mark required as Optional (`metadata`,
`status`, `metadata.resourceVersion`, ...), and `ApiException.body` too, though the API server fills them in
every answer these tests read; `filled` and the helpers on it fail the test, naming the field, where one is
missing, instead of an AttributeError or a TypeError on None."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, TypeVar

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

T = TypeVar("T")


class _Object(Protocol):
    @property
    def metadata(self) -> client.V1ObjectMeta | None: ...


class _List(Protocol):
    @property
    def metadata(self) -> client.V1ListMeta | None: ...


def core_api(kubeconfig: Path) -> client.CoreV1Api:
    """CoreV1Api over the kubeconfig the server wrote (its URL, CA and bearer token)."""
    return client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig)))


def pod(name: str, labels: dict[str, str] | None = None, node: str | None = None) -> client.V1Pod:
    """A one-container pod body."""
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels=labels or {}),
        spec=client.V1PodSpec(node_name=node, containers=[client.V1Container(name="c", image="busybox")]),
    )


def filled(value: T | None, what: str) -> T:
    """`value`, a field the client types Optional that the API server fills; fails the test naming `what`."""
    assert value is not None, f"the API server's answer has no {what}"
    return value


def meta(obj: _Object) -> client.V1ObjectMeta:
    """An object's `metadata`."""
    return filled(obj.metadata, f"metadata ({type(obj).__name__})")


def name_of(obj: _Object) -> str:
    """An object's `metadata.name`."""
    return filled(meta(obj).name, f"metadata.name ({type(obj).__name__})")


def version_of(obj: _Object | _List) -> str:
    """The `metadata.resourceVersion` of an object or of a list."""
    kind = type(obj).__name__
    metadata = obj.metadata  # narrowed here: `filled` would join the two types to BaseModel
    assert metadata is not None, f"the API server's answer has no metadata ({kind})"
    return filled(metadata.resource_version, f"metadata.resourceVersion ({kind})")


def error_body(error: ApiException) -> str:
    """The body of the API server's error answer (a Status, as JSON)."""
    return filled(error.body, f"body in the {error.status} answer")


def custom_object(answer: object) -> dict[str, Any]:
    """An answer of CustomObjectsApi, which the client types `object`: the JSON object the API server sent."""
    assert isinstance(answer, dict), f"not a JSON object: {answer!r}"
    return answer
