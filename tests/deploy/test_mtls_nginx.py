"""Mutual TLS (RFC 8705) through the real nginx with the repository's configuration.

nginx runs deploy/nginx/ with NGINX_CLIENT_CERT=optional and a client-certificate trust store
(tests/deploy/conftest.py starts it); clients are Python's ssl module with certificates made
by cryptography. Django believes nginx's X-SSL-Client-* headers because nginx's address,
127.0.0.1, is in AUTHSERVER_TRUSTED_PROXIES; a request straight to Django from another
address (127.0.0.2) that forges them is not believed.
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from cryptography.hazmat.primitives import serialization

from authserver import mtls
from clients.services import client_create, client_credential_add_certificate

from ..conftest import REDIRECT_URI, decode_unverified
from ..mtls import ClientCert, make_ca, make_cert, name
from ..protocol.test_errors import basic, obtain_code
from .conftest import BACK, Nginx, Pki, start_nginx

pytestmark = [pytest.mark.xdist_group("nginx"), pytest.mark.django_db(transaction=True)]

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture(scope="module")
def client_pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    directory = tmp_path_factory.mktemp("client-pki")
    ca = make_ca("authserver test client CA")
    stranger_ca = make_ca("someone else's CA")
    certs = {
        "orders": make_cert(name("orders.voorbeeld.nl", serial="00000001002220647000"), issuer=ca),
        "other": make_cert(name("other.voorbeeld.nl", "Gemeente Anders"), issuer=ca),
        "stranger": make_cert(name("orders.voorbeeld.nl", serial="00000001002220647000"), issuer=stranger_ca),
    }
    paths = {label: cert.write(directory, label) for label, cert in certs.items()}
    return {"ca": ca, "certs": certs, "paths": paths}


@pytest.fixture(scope="module")
def mtls_nginx(pki: Pki, live_server: Any, client_pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    """The back channel with ssl_verify_client optional and the client CA as its trust store."""
    upstream = urlsplit(live_server.url)
    host = "127.0.0.1" if upstream.hostname == "localhost" else upstream.hostname
    issuers = client_pki["ca"].certificate.public_bytes(serialization.Encoding.PEM)
    yield from start_nginx(
        tmp_path_factory.mktemp("nginx-mtls"),
        pki,
        f"{host}:{upstream.port}",
        extra={"NGINX_CLIENT_CERT": "optional"},
        files={"tls/back/client-issuers.pem": issuers},
    )


@pytest.fixture
def trusted_nginx(behind_nginx, settings) -> None:
    settings.AUTHSERVER_TRUSTED_PROXIES = ["127.0.0.1"]


def back_request(
    nginx: Nginx,
    method: str,
    path: str,
    *,
    cert: tuple[Path, Path] | None = None,
    body: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One request to the back channel over TLS, with a client certificate when given."""
    context = nginx.context()
    if cert is not None:
        context.load_cert_chain(certfile=str(cert[0]), keyfile=str(cert[1]))
    raw = socket.create_connection(("127.0.0.1", nginx.https_port), timeout=15)
    connection = http.client.HTTPSConnection(BACK, nginx.https_port, context=context, timeout=15)
    connection.sock = context.wrap_socket(raw, server_hostname=BACK)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def bound_web_client(organisation, cert: ClientCert):
    client = client_create(
        organisation=organisation,
        name="Orders portal (mTLS)",
        grant_type="authorization_code",
        scopes=["openid", "profile", "orders:read"],
        redirect_uris=[REDIRECT_URI],
        auth_method="tls_client_auth",
    )
    client_credential_add_certificate(client=client, subject_dn=cert.subject_dn)
    return client


@pytest.mark.usefixtures("trusted_nginx")
def test_mtls_client_gets_a_certificate_bound_token_that_only_works_with_its_certificate(
    mtls_nginx, client_pki, client, user, organisation, resource_server, resource_server_api
):
    orders, other = client_pki["certs"]["orders"], client_pki["certs"]["other"]
    registered = bound_web_client(organisation, orders)
    code, verifier = obtain_code(client, user, registered)  # the browser part, in process

    # The token request over mutual TLS: client_id and the certificate, nothing else.
    status, _headers, body = back_request(
        mtls_nginx,
        "POST",
        "/oauth/token",
        cert=client_pki["paths"]["orders"],
        headers=FORM,
        body=urlencode(
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT_URI,
                "code_verifier": verifier,
                "client_id": registered.client_id,
            }
        ),
    )
    assert status == 200, body
    access = json.loads(body)["access_token"]
    bound = mtls.thumbprint(orders.certificate)
    assert decode_unverified(access)["cnf"] == {"x5t#S256": bound}

    # Introspection tells the resource server what the token is bound to.
    status, _headers, body = back_request(
        mtls_nginx,
        "POST",
        "/oauth/introspect",
        headers={**FORM, "Authorization": basic(resource_server.client_id, resource_server.secret)},
        body=urlencode({"token": access}),
    )
    assert status == 200, body
    introspected = json.loads(body)
    assert introspected["active"] is True
    assert introspected["cnf"] == {"x5t#S256": bound}
    assert introspected["cnf"]["x5t#S256"] != mtls.thumbprint(other.certificate)

    # userinfo checks the binding: the token works over a connection with its certificate ...
    bearer = {"Authorization": f"Bearer {access}"}
    status, _headers, body = back_request(
        mtls_nginx, "GET", "/oauth/userinfo", cert=client_pki["paths"]["orders"], headers=bearer
    )
    assert status == 200, body
    assert json.loads(body)["sub"]
    # ... and not with another certificate (valid, same trust store), nor with none.
    for cert in (client_pki["paths"]["other"], None):
        status, headers, body = back_request(mtls_nginx, "GET", "/oauth/userinfo", cert=cert, headers=bearer)
        assert status == 401, body
        assert 'error="invalid_token"' in headers["WWW-Authenticate"]


@pytest.mark.usefixtures("trusted_nginx")
def test_a_certificate_from_another_issuer_or_another_subject_gets_nothing(mtls_nginx, client_pki, organisation):
    registered = bound_web_client(organisation, client_pki["certs"]["orders"])
    body = urlencode({"grant_type": "client_credentials", "client_id": registered.client_id})
    # Same subject DN, but not from the trust store: nginx refuses it before Django sees it.
    status, _headers, _body = back_request(
        mtls_nginx, "POST", "/oauth/token", cert=client_pki["paths"]["stranger"], headers=FORM, body=body
    )
    assert status == 400
    # From the trust store, another subject: Django refuses the client.
    status, _headers, answer = back_request(
        mtls_nginx, "POST", "/oauth/token", cert=client_pki["paths"]["other"], headers=FORM, body=body
    )
    assert status == 401, answer
    assert json.loads(answer)["error"] == "invalid_client"


@pytest.mark.usefixtures("trusted_nginx")
def test_forged_certificate_headers_are_not_trusted(mtls_nginx, live_server, client_pki, organisation):
    orders = client_pki["certs"]["orders"]
    registered = bound_web_client(organisation, orders)
    body = urlencode({"grant_type": "authorization_code", "code": "x" * 43, "client_id": registered.client_id})
    forged = {**FORM, "X-SSL-Client-Cert": orders.escaped, "X-SSL-Client-Verify": "SUCCESS"}

    # Through nginx without a certificate: nginx overwrites the forged headers.
    status, _headers, answer = back_request(mtls_nginx, "POST", "/oauth/token", headers=forged, body=body)
    assert status == 401, answer
    assert "none was presented" in json.loads(answer)["error_description"]

    # Straight to Django, from an address that is not the proxy: the headers are dropped.
    upstream = urlsplit(live_server.url)
    host = "127.0.0.1" if upstream.hostname == "localhost" else upstream.hostname
    connection = http.client.HTTPConnection(host, upstream.port, timeout=15, source_address=("127.0.0.2", 0))
    try:
        connection.request("POST", "/oauth/token", body=body, headers={**forged, "Host": "localhost"})
        response = connection.getresponse()
        status, answer = response.status, response.read()
    finally:
        connection.close()
    assert status == 401, answer
    error = json.loads(answer)
    assert error["error"] == "invalid_client"
    assert "none was presented" in error["error_description"]
