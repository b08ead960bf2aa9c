"""Mutual TLS (RFC 8705): tls_client_auth, self_signed_tls_client_auth, certificate-bound tokens.

The certificate reaches Django as nginx sends it (X-SSL-Client-Cert, URL-encoded PEM, and
X-SSL-Client-Verify), from a REMOTE_ADDR in AUTHSERVER_TRUSTED_PROXIES; the real nginx is in
tests/deploy/test_mtls_nginx.py.
"""

from __future__ import annotations

import io
import json
from typing import Any
from urllib.parse import urlencode

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import RequestFactory

from authserver import mtls
from authserver.errors import DomainError
from authserver.models import AuditEvent
from clients.models import Client, ClientCredential
from clients.services import client_create, client_credential_add_certificate, client_credential_add_public_key

from ..conftest import REDIRECT_URI, decode_unverified, make_client_key, register_client
from ..mtls import ClientCert, make_ca, make_cert, name
from ..protocol.test_errors import basic, obtain_code

pytestmark = pytest.mark.django_db

PROXY = "10.1.2.3"
FORM = "application/x-www-form-urlencoded"


@pytest.fixture(autouse=True)
def trusted_proxy(settings):
    settings.AUTHSERVER_TRUSTED_PROXIES = ["10.1.2.0/24", "2001:db8::1"]


@pytest.fixture(scope="module")
def ca() -> ClientCert:
    return make_ca()


@pytest.fixture(scope="module")
def pki_cert(ca) -> ClientCert:
    return make_cert(name("orders.voorbeeld.nl", serial="00000001002220647000"), issuer=ca)


@pytest.fixture(scope="module")
def other_pki_cert(ca) -> ClientCert:
    return make_cert(name("someone-else.example", "Someone Else"), issuer=ca)


@pytest.fixture(scope="module")
def self_signed() -> ClientCert:
    return make_cert(name("self-signed client"))


def mtls_client(organisation, method: str, **kwargs: Any) -> Client:
    defaults: dict[str, Any] = {"grant_type": "client_credentials", "scopes": ["orders:read"]}
    defaults.update(kwargs)
    return client_create(organisation=organisation, name=f"mtls {method}", auth_method=method, **defaults)


def via_proxy(cert: ClientCert | None, verify: str = "SUCCESS", remote: str = PROXY) -> dict[str, str]:
    headers = {"REMOTE_ADDR": remote, "HTTP_X_SSL_CLIENT_VERIFY": verify if cert else "NONE"}
    if cert is not None:
        headers["HTTP_X_SSL_CLIENT_CERT"] = cert.escaped
    return headers


def token_request(client, data: dict[str, Any], **extra: Any):
    return client.post("/oauth/token", urlencode(data), content_type=FORM, **extra)


def cc_token(client, registered: Client, cert: ClientCert | None, **kw: Any):
    return token_request(
        client, {"grant_type": "client_credentials", "client_id": registered.client_id}, **via_proxy(cert, **kw)
    )


# ---- registration ----------------------------------------------------------------------------


def test_a_certificate_is_registered_with_its_thumbprint(organisation, self_signed):
    client = mtls_client(organisation, "self_signed_tls_client_auth")
    credential = client_credential_add_certificate(client=client, certificate_pem=self_signed.pem)

    assert credential.kind == ClientCredential.Kind.CERTIFICATE
    assert credential.thumbprint == mtls.thumbprint(self_signed.certificate)
    assert len(credential.thumbprint) == 43
    assert "PRIVATE" not in credential.certificate_pem
    assert credential.expires_at == self_signed.certificate.not_valid_after_utc
    assert client.client_type == Client.CLIENT_CONFIDENTIAL
    assert AuditEvent.objects.filter(event="client.credential.issued", data__kind="certificate").exists()
    with pytest.raises(DomainError, match="already"):
        client_credential_add_certificate(client=client, certificate_pem=self_signed.pem)


def test_a_subject_dn_is_stored_in_rfc4514_form(organisation):
    client = mtls_client(organisation, "tls_client_auth")
    credential = client_credential_add_certificate(client=client, subject_dn=" CN=orders,O=Gemeente Voorbeeld,C=NL")
    assert credential.subject_dn == "CN=orders,O=Gemeente Voorbeeld,C=NL"
    assert credential.thumbprint == ""


def test_certificate_registration_refusals(organisation, self_signed):
    self_signed_client = mtls_client(organisation, "self_signed_tls_client_auth")
    with pytest.raises(DomainError, match="not a subject DN"):
        client_credential_add_certificate(client=self_signed_client, subject_dn="CN=x")
    with pytest.raises(DomainError, match="either"):
        client_credential_add_certificate(client=self_signed_client)
    with pytest.raises(DomainError, match="either"):
        client_credential_add_certificate(client=self_signed_client, certificate_pem=self_signed.pem, subject_dn="CN=x")
    key_pem = self_signed.key.private_bytes(
        mtls.serialization.Encoding.PEM,
        mtls.serialization.PrivateFormat.PKCS8,
        mtls.serialization.NoEncryption(),
    )
    with pytest.raises(DomainError, match="private key"):
        client_credential_add_certificate(client=self_signed_client, certificate_pem=key_pem + self_signed.pem.encode())
    with pytest.raises(DomainError, match="not a PEM certificate"):
        client_credential_add_certificate(client=self_signed_client, certificate_pem="-----BEGIN CERTIFICATE-----x")
    jwt_client = register_client(
        organisation, grant_type="client_credentials", auth_method="private_key_jwt", scopes=[]
    ).client
    with pytest.raises(DomainError, match="mutual TLS"):
        client_credential_add_certificate(client=jwt_client, certificate_pem=self_signed.pem)
    with pytest.raises(DomainError, match="private_key_jwt"):
        client_credential_add_public_key(client=self_signed_client, jwk=make_client_key().public_jwk)
    tls_client = mtls_client(organisation, "tls_client_auth")
    with pytest.raises(DomainError, match="RFC 4514"):
        client_credential_add_certificate(client=tls_client, subject_dn="not a dn")


def test_createclient_registers_a_subject_dn_or_a_certificate(organisation, tmp_path, self_signed, pki_cert):
    out = io.StringIO()
    call_command(
        "createclient",
        "--organisation",
        str(organisation.pk),
        "--name",
        "Orders (PKI)",
        "--grant-type",
        "client_credentials",
        "--auth-method",
        "tls_client_auth",
        "--tls-subject-dn",
        pki_cert.subject_dn,
        stdout=out,
    )
    printed = json.loads(out.getvalue())
    assert printed["tls_client_auth_subject_dn"] == pki_cert.subject_dn
    cert_file, _key = self_signed.write(tmp_path, "client")
    out = io.StringIO()
    call_command(
        "createclient",
        "--organisation",
        str(organisation.pk),
        "--name",
        "Orders (self-signed)",
        "--grant-type",
        "client_credentials",
        "--auth-method",
        "self_signed_tls_client_auth",
        "--certificate-file",
        str(cert_file),
        stdout=out,
    )
    printed = json.loads(out.getvalue())
    assert printed["tls_client_certificate_thumbprint"] == mtls.thumbprint(self_signed.certificate)
    with pytest.raises(CommandError, match="tls_client_auth"):
        call_command(
            "createclient",
            "--organisation",
            str(organisation.pk),
            "--name",
            "x",
            "--grant-type",
            "client_credentials",
            "--tls-subject-dn",
            "CN=x",
        )


# ---- the proxy's headers -----------------------------------------------------------------------


def _through_middleware(meta: dict[str, str]) -> Any:
    request = RequestFactory().get("/healthz", **meta)
    seen: dict[str, Any] = {}

    def view(request):
        seen["request"] = request
        return None

    mtls.ClientCertificateMiddleware(view)(request)
    return seen["request"]


def test_middleware_trusts_the_headers_only_from_configured_proxies(pki_cert):
    trusted = _through_middleware(via_proxy(pki_cert))
    assert trusted.client_certificate == pki_cert.certificate
    assert trusted.META[mtls.VERIFIED_ENVIRON] is True
    assert not [key for key in trusted.META if key.startswith("HTTP_X_SSL_CLIENT")]

    for remote in ("10.9.9.9", "127.0.0.1", "2001:db8::2", ""):
        untrusted = _through_middleware(via_proxy(pki_cert, remote=remote))
        assert untrusted.client_certificate is None
        assert mtls.CERT_ENVIRON not in untrusted.META
        assert not [key for key in untrusted.META if key.startswith("HTTP_X_SSL_CLIENT")]

    assert _through_middleware(via_proxy(pki_cert, remote="2001:db8::1")).client_certificate is not None
    assert _through_middleware(via_proxy(None)).client_certificate is None
    garbage = _through_middleware({**via_proxy(pki_cert), "HTTP_X_SSL_CLIENT_CERT": "-----BEGIN%20CERTIFICATE"})
    assert garbage.client_certificate is None
    unverified = _through_middleware(via_proxy(pki_cert, verify="FAILED:self-signed certificate"))
    assert unverified.client_certificate is not None
    assert unverified.META[mtls.VERIFIED_ENVIRON] is False


def test_no_trusted_proxies_means_no_certificates(settings, pki_cert):
    settings.AUTHSERVER_TRUSTED_PROXIES = []
    assert _through_middleware(via_proxy(pki_cert)).client_certificate is None


# ---- client authentication ---------------------------------------------------------------------


def test_tls_client_auth_by_subject_dn_gets_a_certificate_bound_token(client, organisation, pki_cert):
    registered = mtls_client(organisation, "tls_client_auth")
    client_credential_add_certificate(client=registered, subject_dn=pki_cert.subject_dn)

    response = cc_token(client, registered, pki_cert)

    assert response.status_code == 200, response.content
    claims = decode_unverified(response.json()["access_token"])
    assert claims["client_id"] == registered.client_id
    assert claims["cnf"] == {"x5t#S256": mtls.thumbprint(pki_cert.certificate)}
    assert ClientCredential.objects.get(client=registered).last_used_at is not None


def test_tls_client_auth_by_registered_certificate(client, organisation, pki_cert):
    registered = mtls_client(organisation, "tls_client_auth")
    client_credential_add_certificate(client=registered, certificate_pem=pki_cert.pem)
    assert cc_token(client, registered, pki_cert).status_code == 200


def _assert_invalid_client(response, mentions: str | None = None) -> None:
    assert response.status_code == 401, (response.status_code, response.content)
    body = response.json()
    assert body["error"] == "invalid_client"
    if mentions:
        assert mentions in body["error_description"], body


def test_tls_client_auth_refuses_another_subject_dn(client, organisation, pki_cert, other_pki_cert):
    registered = mtls_client(organisation, "tls_client_auth")
    client_credential_add_certificate(client=registered, subject_dn=pki_cert.subject_dn)
    _assert_invalid_client(cc_token(client, registered, other_pki_cert), "not the one registered")


def test_tls_client_auth_needs_a_chain_the_proxy_verified(client, organisation, pki_cert):
    registered = mtls_client(organisation, "tls_client_auth")
    client_credential_add_certificate(client=registered, subject_dn=pki_cert.subject_dn)
    _assert_invalid_client(
        cc_token(client, registered, pki_cert, verify="FAILED:unable to get local issuer certificate"), "trusted issuer"
    )


def test_self_signed_tls_client_auth(client, organisation, self_signed):
    registered = mtls_client(organisation, "self_signed_tls_client_auth")
    client_credential_add_certificate(client=registered, certificate_pem=self_signed.pem)

    # nginx with optional_no_ca: the handshake proved the key, the chain is nobody's.
    response = cc_token(client, registered, self_signed, verify="FAILED:self-signed certificate")

    assert response.status_code == 200, response.content
    claims = decode_unverified(response.json()["access_token"])
    assert claims["cnf"]["x5t#S256"] == mtls.thumbprint(self_signed.certificate)


def test_self_signed_tls_client_auth_refuses_another_certificate(client, organisation, self_signed):
    registered = mtls_client(organisation, "self_signed_tls_client_auth")
    client_credential_add_certificate(client=registered, certificate_pem=self_signed.pem)
    impostor = make_cert(self_signed.certificate.subject)  # same name, another key
    _assert_invalid_client(cc_token(client, registered, impostor, verify="FAILED:self-signed certificate"))


def test_revoked_certificate_credential_stops_working(client, organisation, self_signed):
    from clients.services import client_credential_revoke

    registered = mtls_client(organisation, "self_signed_tls_client_auth")
    credential = client_credential_add_certificate(client=registered, certificate_pem=self_signed.pem)
    client_credential_revoke(credential_id=credential.pk)
    _assert_invalid_client(cc_token(client, registered, self_signed))


def test_headers_from_an_untrusted_address_are_ignored(client, organisation, pki_cert):
    registered = mtls_client(organisation, "tls_client_auth")
    client_credential_add_certificate(client=registered, subject_dn=pki_cert.subject_dn)
    _assert_invalid_client(cc_token(client, registered, pki_cert, remote="192.0.2.66"), "none was presented")


def test_no_certificate_is_invalid_client(client, organisation, pki_cert):
    registered = mtls_client(organisation, "tls_client_auth")
    client_credential_add_certificate(client=registered, subject_dn=pki_cert.subject_dn)
    _assert_invalid_client(cc_token(client, registered, None), "none was presented")


def test_a_certificate_does_not_authenticate_other_clients(client, cc_jwt, cc_basic, pki_cert):
    # A client registered for another method gets nothing from a certificate.
    _assert_invalid_client(cc_token(client, cc_jwt.client, pki_cert))
    answer = token_request(
        client,
        {"grant_type": "client_credentials", "client_id": cc_basic.client_id},
        HTTP_AUTHORIZATION=basic(cc_basic.client_id, cc_basic.secret),
        **via_proxy(pki_cert),
    )
    assert answer.status_code == 200
    assert "cnf" not in decode_unverified(answer.json()["access_token"])


def test_mtls_client_with_a_secret_too_is_refused(client, organisation, pki_cert):
    registered = mtls_client(organisation, "tls_client_auth")
    client_credential_add_certificate(client=registered, subject_dn=pki_cert.subject_dn)
    response = token_request(
        client,
        {"grant_type": "client_credentials", "client_id": registered.client_id, "client_secret": "x" * 40},
        **via_proxy(pki_cert),
    )
    _assert_invalid_client(response)


# ---- bound tokens: introspection and userinfo ----------------------------------------------------


def test_introspection_returns_cnf(client, organisation, pki_cert, resource_server, resource_server_api):
    registered = mtls_client(organisation, "tls_client_auth")
    client_credential_add_certificate(client=registered, subject_dn=pki_cert.subject_dn)
    access = cc_token(client, registered, pki_cert).json()["access_token"]

    answer = client.post(
        "/oauth/introspect",
        urlencode({"token": access}),
        content_type=FORM,
        HTTP_AUTHORIZATION=basic(resource_server.client_id, resource_server.secret),
    )

    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["active"] is True
    assert body["cnf"] == {"x5t#S256": mtls.thumbprint(pki_cert.certificate)}


def test_introspection_of_an_unbound_token_has_no_cnf(client, cc_basic, resource_server, resource_server_api):
    access = token_request(
        client, {"grant_type": "client_credentials"}, HTTP_AUTHORIZATION=basic(cc_basic.client_id, cc_basic.secret)
    ).json()["access_token"]
    answer = client.post(
        "/oauth/introspect",
        urlencode({"token": access}),
        content_type=FORM,
        HTTP_AUTHORIZATION=basic(resource_server.client_id, resource_server.secret),
    )
    assert answer.json()["active"] is True
    assert "cnf" not in answer.json()


def test_userinfo_checks_the_certificate_binding(client, user, organisation, pki_cert, other_pki_cert):
    registered = mtls_client(
        organisation,
        "tls_client_auth",
        grant_type="authorization_code",
        scopes=["openid", "profile", "orders:read"],
        redirect_uris=[REDIRECT_URI],
    )
    client_credential_add_certificate(client=registered, subject_dn=pki_cert.subject_dn)
    code, verifier = obtain_code(client, user, registered)
    client.logout()
    response = token_request(
        client,
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
            "client_id": registered.client_id,
        },
        **via_proxy(pki_cert),
    )
    assert response.status_code == 200, response.content
    tokens = response.json()
    access = tokens["access_token"]
    assert decode_unverified(access)["cnf"] == {"x5t#S256": mtls.thumbprint(pki_cert.certificate)}

    good = client.get("/oauth/userinfo", HTTP_AUTHORIZATION=f"Bearer {access}", **via_proxy(pki_cert))
    assert good.status_code == 200, good.content
    for presented in ({}, via_proxy(other_pki_cert), via_proxy(pki_cert, remote="192.0.2.66")):
        refused = client.get("/oauth/userinfo", HTTP_AUTHORIZATION=f"Bearer {access}", **presented)
        assert refused.status_code == 401, refused.content
        assert 'error="invalid_token"' in refused["WWW-Authenticate"]

    # The refresh token is redeemed with the certificate too, and the new token is bound again.
    refreshed = token_request(
        client,
        {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": registered.client_id},
        **via_proxy(pki_cert),
    )
    assert refreshed.status_code == 200, refreshed.content
    assert decode_unverified(refreshed.json()["access_token"])["cnf"] == {
        "x5t#S256": mtls.thumbprint(pki_cert.certificate)
    }


# ---- discovery --------------------------------------------------------------------------------


def test_discovery_advertises_mtls_only_with_a_trusted_proxy(client, settings):
    metadata = client.get("/.well-known/openid-configuration").json()
    assert {"tls_client_auth", "self_signed_tls_client_auth"} <= set(metadata["token_endpoint_auth_methods_supported"])
    assert "tls_client_auth" in metadata["introspection_endpoint_auth_methods_supported"]
    assert metadata["tls_client_certificate_bound_access_tokens"] is True
    assert "mtls_endpoint_aliases" not in metadata

    settings.AUTHSERVER_TRUSTED_PROXIES = []
    metadata = client.get("/.well-known/openid-configuration").json()
    assert "tls_client_auth" not in metadata["token_endpoint_auth_methods_supported"]
    assert "tls_client_certificate_bound_access_tokens" not in metadata
