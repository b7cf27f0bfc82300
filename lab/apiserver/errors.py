"""The `Status` errors of object requests, worded as kube-apiserver words them."""

from __future__ import annotations

from lab.apiserver.http import ApiError
from lab.apiserver.resources import Resource


def invalid(resource: Resource, name: str, field: str, detail: str) -> ApiError:
    """422 Invalid, with the `causes` kubectl prints under "The Kind "name" is invalid"."""
    return invalid_all(resource, name, [(field, detail)])


def invalid_all(resource: Resource, name: str, errors: list[tuple[str, str]]) -> ApiError:
    """422 Invalid for one or more (field, detail) pairs, worded as kube-apiserver does:
    `Deployment.apps "x" is invalid: [spec.selector: Required value, ...]`."""
    listed = [f"{field}: {detail}" for field, detail in errors]
    text = listed[0] if len(listed) == 1 else "[" + ", ".join(listed) + "]"
    return ApiError(
        422,
        f'{resource.qualified_kind} "{name}" is invalid: {text}',
        "Invalid",
        name=name,
        group=resource.group,
        kind=resource.kind,
        causes=[{"reason": "FieldValueInvalid", "message": detail, "field": field} for field, detail in errors],
    )


def not_found(resource: Resource, name: str) -> ApiError:
    """404 NotFound."""
    what = f"{resource.plural}.{resource.group}" if resource.group else resource.plural
    return ApiError(404, f'{what} "{name}" not found', group=resource.group, kind=resource.plural, name=name)


def exists(resource: Resource, name: str) -> ApiError:
    """409 AlreadyExists."""
    what = f"{resource.plural}.{resource.group}" if resource.group else resource.plural
    return ApiError(409, f'{what} "{name}" already exists', "AlreadyExists", name=name, kind=resource.plural)


def conflict(resource: Resource, name: str) -> ApiError:
    """409 Conflict: the object changed since the resourceVersion the request named."""
    what = f"{resource.plural}.{resource.group}" if resource.group else resource.plural
    return ApiError(
        409,
        f'Operation cannot be fulfilled on {what} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again",
        "Conflict",
        name=name,
        kind=resource.plural,
        group=resource.group,
    )
