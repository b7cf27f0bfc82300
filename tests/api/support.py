"""Calling the WSGI app in-process, as a server would, and small request builders."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from wsgiref.util import setup_testing_defaults

ADMIN, BLUE, RED = "admin-token", "blue-token", "red-token"
TOKENS = {"admin": [ADMIN], "tenants": {"blue": [BLUE], "red": [RED]}}


@dataclass
class Answer:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def error(self) -> dict[str, Any]:
        assert isinstance(self.body, dict) and "error" in self.body, self.body
        return self.body["error"]


class Wsgi:
    """Calls the WSGI app the way a server would, with a bearer token (None: without one)."""

    def __init__(self, app: Callable) -> None:
        self.app = app

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = ADMIN,
        query: str = "",
        raw: bytes | None = None,
        environ: dict[str, Any] | None = None,
    ) -> Answer:
        payload = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        env: dict[str, Any] = {}
        setup_testing_defaults(env)
        env.update(
            {
                "REQUEST_METHOD": method,
                "PATH_INFO": path,
                "QUERY_STRING": query,
                "CONTENT_LENGTH": str(len(payload)),
                "wsgi.input": io.BytesIO(payload),
            }
        )
        if token is not None:
            env["HTTP_AUTHORIZATION"] = f"Bearer {token}"
        env.update(environ or {})
        started: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]]) -> None:
            started["status"], started["headers"] = status, dict(headers)

        data = b"".join(self.app(env, start_response))
        assert int(started["headers"]["Content-Length"]) == len(data)
        return Answer(int(started["status"].split()[0]), json.loads(data) if data else None, started["headers"])

    def get(self, path: str, **kwargs: Any) -> Answer:
        return self.call("GET", path, **kwargs)

    def post(self, path: str, body: Any, **kwargs: Any) -> Answer:
        return self.call("POST", path, body, **kwargs)

    def put(self, path: str, body: Any, **kwargs: Any) -> Answer:
        return self.call("PUT", path, body, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Answer:
        return self.call("DELETE", path, **kwargs)

    def ok(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        """A call that must succeed; its JSON answer."""
        answer = self.call(method, path, body, **kwargs)
        assert answer.status in (200, 201, 204), (method, path, answer)
        return answer.body


def network(name: str, subnet: str, *, vni: int | None = None, vlan: int | None = None, **extra: Any) -> dict:
    body: dict[str, Any] = {"name": name, "subnet": subnet, **extra}
    body.update({"encap": "vxlan", "vni": vni} if vlan is None else {"encap": "vlan", "vlan": vlan})
    return body
