"""ScopePolicy: OpenAPI path templates, precedence, and the catalogue document's shape."""

from __future__ import annotations

import pytest

from authserver_rs import InsufficientScope, PathTemplate, ScopePolicy, VerifiedToken
from authserver_rs.policy import catalogue_rules


@pytest.mark.parametrize(
    ("template", "path", "matches"),
    [
        ("/orders", "/orders", True),
        ("/orders", "/orders/", False),  # exact: a trailing slash counts
        ("/orders", "/Orders", False),
        ("/orders/{id}", "/orders/42", True),
        ("/orders/{id}", "/orders/a%2Fb", True),  # still one segment on the wire
        ("/orders/{id}", "/orders/", False),  # a parameter is never empty
        ("/orders/{id}", "/orders/42/lines", False),
        ("/orders/{id}", "/orders/..", False),
        ("/orders/{id}", "/orders/.", False),
        ("/orders/{id}/lines/{line}", "/orders/42/lines/7", True),
        ("/orders/{id}/lines/{line}", "/orders/42/lines", False),
        ("/files/{name}.json", "/files/report.json", True),
        ("/files/{name}.json", "/files/report.xml", False),
        ("/files/{name}.json", "/files/.json", False),
        ("/v{version}/orders", "/v2/orders", True),
        ("/a.b/{x}", "/aXb/1", False),  # literal text is literal, not a regular expression
        ("/", "/", True),
        ("/", "/orders", False),
    ],
)
def test_path_templates(template, path, matches):
    assert PathTemplate(template).matches(path) is matches


@pytest.mark.parametrize("template", ["orders", "/orders/{id", "/orders/id}", "/orders/{{id}}"])
def test_malformed_templates_are_refused(template):
    with pytest.raises(ValueError):
        PathTemplate(template)


def test_concrete_paths_win_over_templated_ones():
    policy = ScopePolicy(
        {
            ("GET", "/orders/{id}"): ["orders:read"],
            ("GET", "/orders/mine"): ["orders:mine"],
            ("GET", "/orders/{id}.json"): ["orders:export"],
            ("GET", "/{collection}/mine"): ["any:mine"],
        }
    )

    assert policy.match("GET", "/orders/mine").scopes == ("orders:mine",)
    assert policy.match("GET", "/orders/42").scopes == ("orders:read",)
    assert policy.match("GET", "/orders/42.json").scopes == ("orders:export",)
    assert policy.match("GET", "/parcels/mine").scopes == ("any:mine",)
    # Earlier segments decide first: /orders/{id} is more concrete than /{collection}/mine.
    assert policy.match("GET", "/orders/mine").template == "/orders/mine"


def test_methods_head_and_wildcards():
    policy = ScopePolicy(
        {
            "GET /orders": "orders:read",
            "post /orders": ["orders:write", "orders:read"],
            ("*", "/orders"): ["orders:admin"],
        }
    )

    assert policy.match("get", "/orders").scopes == ("orders:read",)
    assert policy.match("POST", "/orders").scopes == ("orders:write", "orders:read")
    assert policy.match("HEAD", "/orders").scopes == ("orders:read",)  # HEAD falls back to GET
    assert policy.match("DELETE", "/orders").scopes == ("orders:admin",)
    assert policy.match("GET", "/orders/1") is None


def test_base_path_query_and_dot_segments():
    policy = ScopePolicy({"GET /orders/{id}": ["orders:read"], "GET /": []}, base_path="/api/v1/")

    assert policy.match("GET", "/api/v1/orders/42?expand=lines").scopes == ("orders:read",)
    assert policy.match("GET", "/api/v1").scopes == ()
    assert policy.match("GET", "/orders/42") is None  # outside the base path
    assert policy.match("GET", "/api/v10/orders/42") is None
    assert policy.match("GET", "/api/v1/../v1/orders/42") is None
    assert policy.match("GET", "/api/v1/orders/42/../43") is None


def token(*scopes: str) -> VerifiedToken:
    return VerifiedToken(client_id="c", sub="c", scopes=frozenset(scopes), aud=("a",), exp=None, iss="i")


def test_check_names_every_scope_the_endpoint_needs():
    policy = ScopePolicy({"POST /orders": ["orders:write", "orders:read"]}, public=["GET /healthz"])

    assert policy.check("POST", "/orders", token("orders:write", "orders:read", "x")).template == "/orders"
    with pytest.raises(InsufficientScope) as caught:
        policy.check("POST", "/orders", token("orders:read"))
    assert caught.value.status == 403
    assert caught.value.scope == ("orders:write", "orders:read")
    assert caught.value.challenge("api") == (
        'Bearer realm="api", error="insufficient_scope", error_description="POST /orders needs the scope '
        'orders:write orders:read; the token lacks orders:write.", scope="orders:write orders:read"'
    )
    with pytest.raises(InsufficientScope) as uncovered:
        policy.check("DELETE", "/orders", token("orders:write", "orders:read"))
    assert uncovered.value.scope == ()
    assert policy.match("GET", "/healthz").public


CATALOGUE = {
    "issuer": "https://auth.example.org",
    "apis": [
        {
            "slug": "orders",
            "audience": "https://api.example.org/orders",
            "endpoints": [
                {"method": "GET", "path": "/orders", "summary": "", "scopes": ["orders:read"]},
                {"method": "GET", "path": "/orders/{id}", "summary": "", "scopes": ["orders:read"]},
                {"method": "POST", "path": "/orders", "summary": "", "scopes": ["orders:write"]},
                {"method": "GET", "path": "/status", "summary": "", "scopes": []},
            ],
            "scopes": [],
        },
        {"slug": "parcels", "audience": "https://api.example.org/parcels", "endpoints": []},
    ],
    "other_scopes": [],
}


def test_the_catalogue_by_audience_or_slug():
    by_audience = ScopePolicy.from_catalogue(CATALOGUE, audience="https://api.example.org/orders")
    by_slug = ScopePolicy.from_catalogue(CATALOGUE, slug="orders")

    for policy in (by_audience, by_slug):
        assert policy.match("GET", "/orders/7").scopes == ("orders:read",)
        assert policy.match("POST", "/orders").scopes == ("orders:write",)
        assert policy.match("GET", "/status").scopes == ()  # any valid token
        assert policy.match("DELETE", "/orders/7") is None
    assert ScopePolicy.from_catalogue(CATALOGUE, slug="parcels").match("GET", "/orders") is None


def test_the_catalogue_document_is_checked():
    with pytest.raises(LookupError, match="no published API"):
        catalogue_rules(CATALOGUE, audience="https://api.example.org/unknown")
    with pytest.raises(ValueError, match="exactly one"):
        catalogue_rules(CATALOGUE, audience="https://api.example.org/orders", slug="orders")
    with pytest.raises(ValueError, match="no list of apis"):
        catalogue_rules({"apis": {}}, slug="orders")
    broken = {"apis": [{"slug": "orders", "endpoints": [{"method": "GET", "path": "/x", "scopes": "orders:read"}]}]}
    with pytest.raises(ValueError, match="lacks method, path or a list of scopes"):
        catalogue_rules(broken, slug="orders")
