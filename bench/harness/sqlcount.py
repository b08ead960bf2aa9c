"""SQL statements per request, counted in-process on the benchmark database.

Run by the harness with the server's environment: ``python bench/harness/sqlcount.py FIXTURE``.
Each workload's request goes through Django's whole stack (middleware included) with the
test client, warmed up first; every statement Django sends is counted, and so is the
connection health check Django runs on the first query of a request when
``CONN_HEALTH_CHECKS`` is on (a ``SELECT 1`` outside Django's cursor wrappers). The figures
are a property of the code, not of the application server, so one pass serves every target.
Prints one JSON object: {workload: {"warm": n, "health_checks": n}}.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

REPO = Path(__file__).resolve().parents[2]
WARM_UP = 5
MEASURED = 20


def main() -> None:
    sys.path.insert(0, str(REPO))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "authserver.settings")
    import django

    django.setup()
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    sys.path.insert(0, str(REPO / "bench"))
    from harness.load import basic

    fixture = json.loads(Path(sys.argv[1]).read_text())
    clients = fixture["clients"]
    http = Client(HTTP_HOST="auth.bench.example", HTTP_X_FORWARDED_PROTO="https")
    form = "application/x-www-form-urlencoded"
    token_auth = basic(clients["basic"]["client_id"], clients["basic"]["client_secret"])
    rs_auth = basic(clients["introspector"]["client_id"], clients["introspector"]["client_secret"])

    def token(resource: str, scope: str) -> str:
        body = urlencode({"grant_type": "client_credentials", "scope": scope, "resource": resource})
        response = http.post("/oauth/token", body, content_type=form, HTTP_AUTHORIZATION=token_auth)
        assert response.status_code == 200, response.content
        return str(response.json()["access_token"])

    health_checks = 0
    original_is_usable = connection.is_usable

    def counted_is_usable() -> bool:
        nonlocal health_checks
        health_checks += 1
        return bool(original_is_usable())

    connection.is_usable = counted_is_usable  # type: ignore[method-assign]

    def measure(name: str, request: Any, fresh: Any = None) -> dict[str, float]:
        """Statements per request, averaged over MEASURED requests after WARM_UP."""
        nonlocal health_checks
        for _ in range(WARM_UP):
            request(fresh() if fresh else None)
        arguments = [fresh() if fresh else None for _ in range(MEASURED)]
        health_checks = 0
        with CaptureQueriesContext(connection) as queries:
            for argument in arguments:
                # What request_started does in a server (the test client leaves it out): the
                # connection is reused, and checked on the request's first query.
                connection.close_if_unusable_or_obsolete()
                request(argument)
        return {"warm": len(queries) / MEASURED, "health_checks": health_checks / MEASURED}

    results: dict[str, dict[str, float]] = {}
    body = urlencode({"grant_type": "client_credentials", "scope": fixture["scope"], "resource": fixture["resource"]})
    results["token_basic"] = measure(
        "token", lambda _: http.post("/oauth/token", body, content_type=form, HTTP_AUTHORIZATION=token_auth)
    )
    jwt_token = token(fixture["resource"], fixture["scope"])
    opaque_token = token(fixture["opaque_resource"], fixture["opaque_scope"])

    def introspect(value: str | None) -> None:
        response = http.post(
            "/oauth/introspect", urlencode({"token": value}), content_type=form, HTTP_AUTHORIZATION=rs_auth
        )
        assert response.json().get("active") is True, response.content

    results["introspect_jwt_cached"] = measure("introspect", lambda _: introspect(jwt_token))
    results["introspect_jwt_uncached"] = measure(
        "introspect", introspect, fresh=lambda: token(fixture["resource"], fixture["scope"])
    )
    results["introspect_opaque_cached"] = measure("introspect", lambda _: introspect(opaque_token))
    results["introspect_opaque_uncached"] = measure(
        "introspect", introspect, fresh=lambda: token(fixture["opaque_resource"], fixture["opaque_scope"])
    )

    def revoke(value: str | None) -> None:
        response = http.post(
            "/oauth/revoke", urlencode({"token": value}), content_type=form, HTTP_AUTHORIZATION=token_auth
        )
        assert response.status_code == 200, response.content

    results["revoke"] = measure("revoke", revoke, fresh=lambda: token(fixture["resource"], fixture["scope"]))
    results["discovery"] = measure("discovery", lambda _: http.get("/.well-known/openid-configuration"))
    results["jwks"] = measure("jwks", lambda _: http.get("/oauth/jwks"))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
