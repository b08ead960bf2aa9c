"""The operator's commands: organisations, clients, users, signing keys and bootstrap."""

from __future__ import annotations

import json
import secrets
from io import StringIO
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from jwcrypto.jwk import JWK

from authserver.models import ApiResource, AuditEvent, Endpoint, Scope, SigningKey
from authserver.oauth.client_auth import hash_client_secret
from clients.models import Client, ClientCredential
from onboarding.models import Organisation

from ..conftest import REDIRECT_URI, make_client_key

pytestmark = pytest.mark.django_db

User = get_user_model()
OIN = "00000001002220647000"


def run(command: str, *args: str) -> tuple[str, str]:
    stdout, stderr = StringIO(), StringIO()
    call_command(command, *args, stdout=stdout, stderr=stderr)
    return stdout.getvalue(), stderr.getvalue()


def run_json(command: str, *args: str) -> Any:
    return json.loads(run(command, *args)[0])


def row_text(instance) -> str:
    """Every stored column of a row, as text: where a secret must never appear."""
    return json.dumps(
        {field.attname: getattr(instance, field.attname) for field in instance._meta.concrete_fields}, default=str
    )


def counts() -> dict[str, int]:
    return {
        "organisations": Organisation.objects.count(),
        "clients": Client.objects.count(),
        "credentials": ClientCredential.objects.count(),
        "users": User.objects.count(),
        "signing_keys": SigningKey.objects.count(),
        "scopes": Scope.objects.count(),
        "apis": ApiResource.objects.count(),
        "endpoints": Endpoint.objects.count(),
        "audit_events": AuditEvent.objects.count(),
    }


# --- createorganisation ---------------------------------------------------------------------


def test_createorganisation_prints_the_organisation_and_audits_it():
    output = run_json("createorganisation", "--name", "Gemeente Utrecht", "--kind", "government", "--oin", OIN)

    organisation = Organisation.objects.get(oin=OIN)
    assert output == {
        "id": organisation.pk,
        "name": "Gemeente Utrecht",
        "kind": "government",
        "status": "active",
        "trust_level": "low",
        "oin": OIN,
        "kvk_number": "",
    }
    assert AuditEvent.objects.filter(event="organisation.created", organisation=organisation).count() == 1


def test_createorganisation_refuses_a_duplicate_oin():
    run("createorganisation", "--name", "Gemeente Utrecht", "--oin", OIN)
    before = counts()

    with pytest.raises(CommandError, match=f"OIN {OIN} exists already"):
        run("createorganisation", "--name", "Another", "--oin", OIN)

    assert counts() == before


# --- createclient ---------------------------------------------------------------------------


def test_createclient_client_credentials_with_a_given_id_and_secret(organisation):
    secret = secrets.token_urlsafe(32)

    stdout, _ = run(
        "createclient",
        *("--organisation", str(organisation.pk), "--name", "Orders service"),
        *("--grant-type", "client_credentials", "--auth-method", "client_secret_basic"),
        *("--scope", "orders:read orders:write", "--client-id", "orders-service", f"--client-secret={secret}"),
    )

    output = json.loads(stdout)
    assert stdout.count(secret) == 1  # shown once
    assert output["client_id"] == "orders-service"
    assert output["client_secret"] == secret
    assert output["token_endpoint_auth_method"] == "client_secret_basic"
    assert output["scope"] == "orders:read orders:write"
    client = Client.objects.get(client_id="orders-service")
    assert client.organisation == organisation
    assert client.authorization_grant_type == Client.GRANT_CLIENT_CREDENTIALS
    assert client.client_type == Client.CLIENT_CONFIDENTIAL
    credential = client.credentials.get()
    assert credential.kind == ClientCredential.Kind.SECRET
    assert credential.secret_hash == hash_client_secret(secret)
    assert credential.secret_hash != secret
    assert output["client_secret_expires_at"] == int(credential.expires_at.timestamp())
    for row in (client, credential, *AuditEvent.objects.all()):
        assert secret not in row_text(row)
    assert set(AuditEvent.objects.values_list("event", flat=True)) == {"client.created", "client.credential.issued"}


def test_createclient_generates_a_high_entropy_secret_when_none_is_given(organisation):
    output = run_json(
        "createclient",
        *("--organisation", organisation.kvk_number, "--name", "Orders service"),
        *("--grant-type", "client_credentials", "--auth-method", "client_secret_post"),
    )

    assert len(output["client_secret"]) >= 32
    credential = ClientCredential.objects.get(client__client_id=output["client_id"])
    assert credential.secret_hash == hash_client_secret(output["client_secret"])
    assert output["client_secret"] not in row_text(credential)


@pytest.mark.parametrize("as_jwks", [False, True], ids=["jwk", "jwks"])
def test_createclient_private_key_jwt_with_a_jwk_file(organisation, tmp_path, as_jwks):
    key = make_client_key("RS256")
    jwk_file = tmp_path / "client.jwk.json"
    jwk_file.write_text(json.dumps({"keys": [key.public_jwk]} if as_jwks else key.public_jwk))

    stdout, stderr = run(
        "createclient",
        *("--organisation", str(organisation.pk), "--name", "Orders service"),
        *("--grant-type", "client_credentials", "--auth-method", "private_key_jwt", "--jwk-file", str(jwk_file)),
    )

    output = json.loads(stdout)
    assert output["key_ids"] == [key.kid]
    assert "client_secret" not in output
    assert stderr == ""
    credential = ClientCredential.objects.get(client__client_id=output["client_id"])
    assert credential.kind == ClientCredential.Kind.PUBLIC_KEY
    assert credential.kid == key.kid
    assert credential.secret_hash == ""
    assert credential.public_jwk["n"] == key.public_jwk["n"]


def test_createclient_private_key_jwt_without_a_key_says_it_cannot_authenticate_yet(organisation):
    stdout, stderr = run(
        "createclient",
        *("--organisation", str(organisation.pk), "--name", "Orders service", "--grant-type", "client_credentials"),
    )

    assert json.loads(stdout)["token_endpoint_auth_method"] == "private_key_jwt"
    assert "cannot authenticate" in stderr
    assert not ClientCredential.objects.exists()


def test_createclient_authorization_code_with_a_redirect_uri(organisation):
    output = run_json(
        "createclient",
        *("--organisation", str(organisation.pk), "--name", "Portal", "--grant-type", "authorization_code"),
        *("--auth-method", "client_secret_basic", "--redirect-uri", REDIRECT_URI, "--scope", "openid profile"),
    )

    client = Client.objects.get(client_id=output["client_id"])
    assert output["redirect_uris"] == [REDIRECT_URI]
    assert client.redirect_uris == REDIRECT_URI
    assert client.authorization_grant_type == Client.GRANT_AUTHORIZATION_CODE
    assert client.scopes == ["openid", "profile"]
    assert client.credentials.get().secret_hash == hash_client_secret(output["client_secret"])


def _public_jwk() -> str:
    return json.dumps(make_client_key("RS256").public_jwk)


def _private_jwk() -> str:
    return JWK.from_pyca(rsa.generate_private_key(65537, 2048)).export_private()


def _small_rsa_jwk() -> str:
    return JWK.from_pyca(rsa.generate_private_key(65537, 1024).public_key()).export_public()


CC = ("--grant-type", "client_credentials")
WEB = ("--grant-type", "authorization_code", "--auth-method", "client_secret_basic")
BASIC = ("--auth-method", "client_secret_basic")


@pytest.mark.parametrize(
    ("args", "jwk_file", "message"),
    [
        pytest.param(("--organisation", "999999", *CC), None, "no organisation", id="unknown-organisation"),
        pytest.param(("--grant-type", "password"), None, "invalid choice", id="unknown-grant-type"),
        pytest.param(("--grant-type", "implicit"), None, "invalid choice", id="implicit-grant"),
        pytest.param(
            ("--grant-type", "client_credentials authorization_code"), None, "invalid choice", id="two-in-one"
        ),
        pytest.param(
            ("--grant-type", "client_credentials", "--grant-type", "authorization_code"),
            None,
            "one grant type",
            id="two-grant-types",
        ),
        pytest.param((*CC, *BASIC, "--client-secret", "x" * 31), None, "at least 32 characters", id="short-secret"),
        pytest.param(
            (*CC, f"--client-secret={secrets.token_urlsafe(32)}"), None, "--client-secret needs", id="secret-with-jwt"
        ),
        pytest.param((*CC, *BASIC), _public_jwk, "--jwk-file needs", id="jwk-with-secret-method"),
        pytest.param(CC, lambda: "{not json", "cannot read a JWK", id="malformed-jwk-file"),
        pytest.param(CC, lambda: '{"keys": []}', "holds no JWK", id="empty-jwks"),
        pytest.param(CC, lambda: '{"kty": "RSA", "n": "AQAB"}', "malformed JWK", id="incomplete-jwk"),
        pytest.param(CC, lambda: '{"kty": "oct", "k": "c2VjcmV0"}', "private key material", id="symmetric-jwk"),
        pytest.param(CC, _private_jwk, "private key material", id="private-jwk"),
        pytest.param(CC, _small_rsa_jwk, "at least 2048 bits", id="rsa-1024"),
        pytest.param((*WEB, "--redirect-uri", "http://rp.example.org/cb"), None, "redirect_uris", id="http-redirect"),
        pytest.param((*WEB, "--redirect-uri", f"{REDIRECT_URI}#x"), None, "fragment", id="fragment-redirect"),
        pytest.param(WEB, None, "redirect_uris", id="web-client-without-redirect"),
        pytest.param((*CC, "--auth-method", "none"), None, "confidential", id="public-client-credentials"),
    ],
)
def test_createclient_refuses_bad_arguments_and_creates_nothing(organisation, tmp_path, args, jwk_file, message):
    if "--organisation" not in args:
        args = ("--organisation", str(organisation.pk), *args)
    if jwk_file is not None:
        path = tmp_path / "key.json"
        path.write_text(jwk_file())
        args = (*args, "--jwk-file", str(path))
    before = counts()

    with pytest.raises(CommandError, match=message):
        run("createclient", "--name", "Bad client", *args)

    assert counts() == before


def test_createclient_refuses_a_duplicate_client_id(organisation, cc_basic):
    before = counts()

    with pytest.raises(CommandError, match="is taken"):
        run(
            "createclient",
            *("--organisation", str(organisation.pk), "--name", "Copy", *CC, *BASIC, "--client-id", cc_basic.client_id),
        )

    assert counts() == before


def test_createclient_refuses_secrets_when_the_deployment_disables_them(organisation, settings):
    settings.AUTHSERVER_CLIENT_SECRETS_ENABLED = False
    before = counts()

    with pytest.raises(CommandError, match="does not allow client secrets"):
        run("createclient", "--organisation", str(organisation.pk), "--name", "Orders", *CC, *BASIC)

    assert counts() == before


# --- createuser -----------------------------------------------------------------------------


def test_createuser_with_a_given_password_does_not_print_it():
    password = "a long and unusual passphrase 81"

    output = run_json("createuser", "--username", "anne", "--email", "anne@example.org", "--password", password)

    user = User.objects.get(username="anne")
    assert output == {"username": "anne", "subject_id": str(user.subject_id)}
    assert user.check_password(password)
    assert password not in user.password
    assert not user.is_staff


def test_createuser_without_a_password_generates_one_and_prints_it_once():
    stdout, _ = run("createuser", "--username", "anne")

    output = json.loads(stdout)
    user = User.objects.get(username="anne")
    assert stdout.count(output["password"]) == 1
    assert user.check_password(output["password"])
    assert output["password"] not in user.password


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(("--username", "anne", "--password", "password"), "too common", id="common-password"),
        pytest.param(("--username", "anne", "--password", "Sh0rt!"), "too short", id="short-password"),
        pytest.param(("--username", "anne", "--password", "381726354918273"), "entirely numeric", id="numeric"),
        pytest.param(("--username", " "), "must not be empty", id="empty-username"),
    ],
)
def test_createuser_refuses_weak_passwords_and_creates_nothing(args, message):
    with pytest.raises(CommandError, match=message):
        run("createuser", *args)

    assert not User.objects.exists()


def test_createuser_refuses_a_taken_username(user):
    with pytest.raises(CommandError, match="exists already"):
        run("createuser", "--username", user.username)

    assert User.objects.count() == 1


# --- signingkey -----------------------------------------------------------------------------


def test_signingkey_create_list_rotate_retire():
    [created] = run_json("signingkey", "create", "--alg", "ES256")
    assert (created["alg"], created["status"]) == ("ES256", "next")
    [active] = run_json("signingkey", "create", "--alg", "RS256", "--activate")
    assert active["status"] == "active"

    listed = {row["kid"]: row["status"] for row in run_json("signingkey", "list")}
    assert listed == {created["kid"]: "next", active["kid"]: "active"}

    [rotated] = run_json("signingkey", "rotate", "--alg", "RS256")
    assert rotated["status"] == "active"
    assert rotated["kid"] != active["kid"]
    assert SigningKey.objects.get(kid=active["kid"]).status == SigningKey.Status.RETIRED
    assert SigningKey.objects.filter(alg="RS256", status=SigningKey.Status.NEXT).count() == 1

    [retired] = run_json("signingkey", "retire", rotated["kid"])
    assert retired["status"] == "retired"
    assert retired["retired_at"] is not None
    assert SigningKey.objects.get(kid=rotated["kid"]).status == SigningKey.Status.RETIRED
    retired_pk = SigningKey.objects.get(kid=rotated["kid"]).pk
    assert AuditEvent.objects.filter(event="signing_key.retired", target_id=str(retired_pk)).exists()


def test_signingkey_output_holds_no_private_key():
    stdout, _ = run("signingkey", "create", "--alg", "RS256", "--activate")

    assert "PRIVATE" not in stdout
    assert set(json.loads(stdout)[0]) == {"kid", "alg", "status", "created_at", "activated_at", "retired_at"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(("retire", "no-such-kid"), "no signing key with kid", id="unknown-kid"),
        pytest.param(("create", "--alg", "HS256"), "invalid choice", id="hmac-alg"),
        pytest.param(("rotate", "--alg", "none"), "invalid choice", id="none-alg"),
    ],
)
def test_signingkey_refuses_bad_arguments(args, message):
    with pytest.raises(CommandError, match=message):
        run("signingkey", *args)

    assert not SigningKey.objects.exists()


def test_signingkey_retire_twice_is_refused():
    [key] = run_json("signingkey", "create", "--alg", "RS256", "--activate")
    run("signingkey", "retire", key["kid"])
    events = AuditEvent.objects.count()

    with pytest.raises(CommandError, match="cannot go from retired to retired"):
        run("signingkey", "retire", key["kid"])

    assert AuditEvent.objects.count() == events


# --- bootstrap ------------------------------------------------------------------------------


def test_bootstrap_makes_a_fresh_installation_usable(settings):
    stdout, _ = run("bootstrap")

    for alg in {settings.AUTHSERVER_ACCESS_TOKEN_SIGNING_ALG, settings.AUTHSERVER_ID_TOKEN_SIGNING_ALG}:
        assert SigningKey.objects.filter(alg=alg, status=SigningKey.Status.ACTIVE).count() == 1
    for alg in settings.AUTHSERVER_SIGNING_ALGORITHMS:
        assert SigningKey.objects.filter(alg=alg, status=SigningKey.Status.NEXT).count() == 1
    assert User.objects.filter(username="admin", is_superuser=True).exists()
    demo = Client.objects.get(client_id="demo-service")
    credential = demo.credentials.get()
    secret = stdout.split("secret: ")[1].split()[0]
    assert stdout.count(secret) == 2  # the line and the curl example, this once
    assert credential.secret_hash == hash_client_secret(secret)
    assert secret not in row_text(credential)
    # A catalogue to register against: one scope open registration may get, one needing review.
    assert set(Scope.objects.filter(open_registration=True).values_list("name", flat=True)) == {"demo:read"}
    assert Scope.objects.get(name="demo:admin").requires_approval
    # The walk-through's client reads and writes the demo API, and may not administer it.
    assert demo.scopes == ["demo:read", "demo:write"]
    assert demo.organisation.name == "Demo Organisation"

    # The demo API (examples/demo_api/) in the catalogue: its audience where make run starts it,
    # the endpoints and scopes of its OpenAPI document, the scopes it owns.
    api = ApiResource.objects.get(slug="demo")
    assert api.audience == "http://localhost:8001/"
    assert api.owner == demo.organisation
    assert api.published
    endpoints = {
        (endpoint.method, endpoint.path): sorted(endpoint.required_scopes.values_list("name", flat=True))
        for endpoint in api.endpoints.all()
    }
    assert endpoints == {
        ("GET", "/orders"): ["demo:read"],
        ("POST", "/orders"): ["demo:write"],
        ("GET", "/orders/{order_id}"): ["demo:read"],
        ("GET", "/admin/stats"): ["demo:admin"],
    }
    assert set(api.scopes.values_list("name", flat=True)) == {"demo:read", "demo:write", "demo:admin"}
    # Its resource server, allowed to introspect for it; without DEMO_API_CLIENT_SECRET no secret.
    resource_server = Client.objects.get(client_id="demo-api")
    assert resource_server.is_resource_server
    assert resource_server.organisation == demo.organisation
    assert list(api.introspectors.all()) == [resource_server]
    assert not resource_server.credentials.exists()
    assert AuditEvent.objects.filter(event="api.created", target_id=str(api.pk)).exists()
    assert AuditEvent.objects.filter(event="api.openapi_imported", target_id=str(api.pk)).exists()


def test_bootstrap_twice_creates_nothing_new():
    run("bootstrap")
    after_first = counts()
    keys = set(SigningKey.objects.values_list("kid", "status"))

    stdout, _ = run("bootstrap")

    assert counts() == after_first
    assert set(SigningKey.objects.values_list("kid", "status")) == keys
    assert "password:" not in stdout
    assert "secret:" not in stdout


def test_bootstrap_follows_the_demo_api_to_another_port():
    run("bootstrap", "--demo-api-url", "http://localhost:9101/")
    api = ApiResource.objects.get(slug="demo")
    assert api.audience == "http://localhost:9101/"
    endpoints = counts()["endpoints"]

    run("bootstrap", "--demo-api-url", "http://localhost:9102/")

    api.refresh_from_db()
    assert api.audience == "http://localhost:9102/"
    assert api.documentation_url == "http://localhost:9102/openapi.json"
    assert counts()["endpoints"] == endpoints
    events = AuditEvent.objects.filter(event="api.changed", target_id=str(api.pk)).order_by("pk")
    assert [event.data["changed"] for event in events] == [
        {"introspectors": ["demo-api"]},
        {"audience": "http://localhost:9102/"},
    ]


def test_bootstrap_makes_the_demo_api_secret_from_the_environment_its_only_one(monkeypatch):
    first, second = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    monkeypatch.setenv("DEMO_API_CLIENT_SECRET", first)
    stdout, _ = run("bootstrap")
    resource_server = Client.objects.get(client_id="demo-api")
    [credential] = resource_server.credentials.all()
    assert credential.secret_hash == hash_client_secret(first)
    assert first not in stdout
    for row in (credential, *AuditEvent.objects.all()):
        assert first not in row_text(row)

    # The same secret again (a restart that kept it): nothing changes.
    before = counts()
    run("bootstrap")
    assert counts() == before

    # A new secret (scripts/run.sh makes one on every start): it replaces the old one.
    monkeypatch.setenv("DEMO_API_CLIENT_SECRET", second)
    run("bootstrap")
    credential.refresh_from_db()
    assert credential.status == ClientCredential.Status.REVOKED
    [usable] = [c for c in resource_server.credentials.all() if c.is_usable()]
    assert usable.secret_hash == hash_client_secret(second)


def test_bootstrap_leaves_a_revoked_demo_alone_and_says_so(monkeypatch):
    run("bootstrap")
    run("revokeclient", "demo-service")
    run("revokeclient", "demo-api")
    monkeypatch.setenv("DEMO_API_CLIENT_SECRET", secrets.token_urlsafe(32))
    before = counts()

    stdout, stderr = run("bootstrap")

    assert counts() == before
    assert "Demo client: demo-service is revoked (rm -rf var" in stdout
    assert "demo-api is revoked" in stderr


@pytest.mark.parametrize("how", ["no-demo", "production"])
def test_bootstrap_without_demo_creates_keys_only(settings, how):
    if how == "production":
        settings.IS_PRODUCTION = True
    run("bootstrap", *(["--no-demo"] if how == "no-demo" else []))

    assert SigningKey.objects.filter(status=SigningKey.Status.ACTIVE).exists()
    assert not User.objects.exists()
    assert not Client.objects.exists()
    assert not Organisation.objects.exists()
    assert not ApiResource.objects.exists()


# --- revokeclient ---------------------------------------------------------------------------


def test_revokeclient_revokes_the_client_its_credentials_and_tokens(cc_basic, issuer):
    import requests

    answer = requests.post(
        f"{issuer}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(cc_basic.client_id, cc_basic.secret),
        timeout=10,
    )
    assert answer.status_code == 200, answer.text

    output = run_json("revokeclient", cc_basic.client_id)

    assert output == {
        "client_id": cc_basic.client_id,
        "name": cc_basic.client.name,
        "organisation": cc_basic.client.organisation.name,
        "status": "revoked",
    }
    cc_basic.client.refresh_from_db()
    assert cc_basic.client.status == Client.Status.REVOKED
    assert set(cc_basic.client.credentials.values_list("status", flat=True)) == {ClientCredential.Status.REVOKED}
    assert not cc_basic.client.accesstoken_set.exists()
    assert AuditEvent.objects.filter(event="client.revoked", target_id=str(cc_basic.client.pk)).count() == 1
    again = requests.post(
        f"{issuer}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(cc_basic.client_id, cc_basic.secret),
        timeout=10,
    )
    assert again.status_code == 401
    assert again.json()["error"] == "invalid_client"


def test_revokeclient_refuses_an_unknown_client(cc_basic):
    before = counts()

    with pytest.raises(CommandError, match="no client with client_id 'nobody'"):
        run("revokeclient", "nobody")

    assert counts() == before


def test_revokeclient_refuses_a_client_revoked_already(cc_basic):
    run("revokeclient", cc_basic.client_id)
    before = counts()

    with pytest.raises(CommandError, match="cannot go from revoked to revoked"):
        run("revokeclient", cc_basic.client_id)

    assert counts() == before
