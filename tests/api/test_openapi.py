"""The OpenAPI description matches the router, and requests generated from it never cause a 5xx.

The schema says what is valid (DNS-1123 names, IPv4 patterns, prefix lengths, segment and MTU ranges), so
positive requests get past the syntax to the model's checks; one field swapped for any JSON value or a
degenerate one (a /32, an IPv6 address, a boundary id, a 300-character name) probes the edges.
"""

from __future__ import annotations

import re

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from requests.structures import CaseInsensitiveDict
from schemathesis.core.jsonschema.types import JsonValue
from schemathesis.generation import GenerationMode

from controller.api.openapi import SPEC
from controller.api.routes import ROUTES, Api, Route
from tests.api.support import ADMIN, BLUE, Wsgi, network
from tests.degenerate import ANY

MAX_EXAMPLES = 20  # per operation and mode: 50 runs, well under a minute together
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=5,
)
KNOWN = {
    "tenant": "blue",
    "network": "web",
    "profile": "gold",
    "node": "node1",
    "endpoint": "b1",
    "namespace": "shop",
    "name": "web-only",
}


def test_every_route_is_described_and_nothing_else() -> None:
    routes = {(r.template, r.method.lower()) for r in ROUTES}
    described = {(path, method) for path, item in SPEC["paths"].items() for method in item}
    assert routes == described


def test_path_parameters_match_the_templates() -> None:
    for route in ROUTES:
        operation = SPEC["paths"][route.template][route.method.lower()]
        declared = {p["name"] for p in operation["parameters"] if p["in"] == "path"}
        assert declared == set(re.findall(r"\{(\w+)\}", route.template)), route
        assert callable(getattr(Api, route.handler)), route


def test_security_matches_auth() -> None:
    for route in ROUTES:
        operation = SPEC["paths"][route.template][route.method.lower()]
        assert (operation.get("security", SPEC["security"]) != []) == route.auth, route


def test_served_spec_is_the_spec(api: Wsgi) -> None:
    assert api.ok("GET", "/openapi.json", token=None) == SPEC


@pytest.fixture
def populated(cluster: Wsgi) -> Wsgi:
    """Objects for generated requests to find (schemathesis also invents its own names)."""
    cluster.ok("POST", "/v1/tenants/blue/networks", network("web", "10.0.0.0/24", vni=100))
    cluster.ok("POST", "/v1/endpoints", {"id": "b1", "network": "blue/web", "node": "node1"})
    cluster.ok("POST", "/v1/qos/gold/attachments", {"target": "blue/web"})
    cluster.ok("POST", "/v1/namespaces", {"name": "shop", "tenant": "blue", "labels": {"team": "a"}})
    spec = {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{"ports": [{"port": 80}]}]}
    policy = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "web-only"}}
    cluster.ok("PUT", "/v1/namespaces/shop/networkpolicies/web-only", {**policy, "spec": spec})
    return cluster


SCHEMA = schemathesis.openapi.from_dict(SPEC)


def has_inputs(route: Route) -> bool:
    operation = SPEC["paths"][route.template][route.method.lower()]
    return bool(operation["parameters"]) or "requestBody" in operation


# Invalid requests only where there is something to make invalid (parameters or a body).
RUNS = [(r.method, r.template, GenerationMode.POSITIVE) for r in ROUTES]
RUNS += [(r.method, r.template, GenerationMode.NEGATIVE) for r in ROUTES if has_inputs(r)]


@pytest.mark.parametrize(("method", "path", "mode"), RUNS, ids=[f"{m} {p} {g.value}" for m, p, g in RUNS])
def test_generated_requests_never_5xx(populated: Wsgi, method: str, path: str, mode: GenerationMode) -> None:
    strategy = SCHEMA[path][method].as_strategy(mode)

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,  # the same requests on every run: a failure here is a failure, not bad luck
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy, known=st.booleans(), swap=st.none() | st.tuples(st.integers(0, 9), JSON_VALUES | ANY))
    def check(case: schemathesis.Case, known: bool, swap: tuple[int, JsonValue] | None) -> None:
        if known and isinstance(case.path_parameters, dict):
            # Random names rarely exist; half the requests are about objects that do, to get past the lookups.
            case.path_parameters = {**case.path_parameters, **{k: KNOWN[k] for k in case.path_parameters if k in KNOWN}}
        if swap is not None and isinstance(case.body, dict) and case.body:
            # One field of a body replaced by any JSON value: the type confusion clients really produce.
            keys = sorted(case.body)
            case.body = {**case.body, keys[swap[0] % len(keys)]: swap[1]}
        # As a tenant, then as the admin: the second request often meets what the first created.
        for token in (BLUE, ADMIN):
            # Set on the case itself: invalid cases may drop call-time auth headers (401s are tested elsewhere).
            headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
            case.headers = CaseInsensitiveDict({**headers, "Authorization": f"Bearer {token}"})
            response = case.call(app=populated.app)
            assert response.status_code < 500, (case.method, case.formatted_path, case.body, response.text)
            if response.status_code >= 400:
                assert set(response.json()) == {"error"}
            if response.status_code in (400, 409) and isinstance(case.body, dict):
                assert response.json()["error"]["field"], response.text  # a bad body: the field to blame

    check()
