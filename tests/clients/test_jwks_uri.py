"""jwks_uri credentials (RFC 7591 §2): SSRF protection, limits, caching, and private_key_jwt.

The JWKS is served over real https from a thread on 127.0.0.1 with a certificate from a test
CA (AUTHSERVER_JWKS_URI_CA_BUNDLE); AUTHSERVER_JWKS_URI_ALLOW_PRIVATE lets the fetcher reach
it. Tests about refusals turn that setting off again.
"""

from __future__ import annotations

import collections
import datetime
import http.server
import ipaddress
import json
import logging
import socket
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlencode

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from django.conf import settings as django_settings
from jwcrypto.jwk import JWK

from authserver.errors import DomainError
from authserver.models import AuditEvent
from clients import jwks_uri
from clients.models import Client, ClientCredential
from clients.services import client_create, client_credential_add_jwks_uri, client_credential_add_public_key

from ..conftest import ClientKey, make_client_key
from ..mtls import ClientCert, make_ca

pytestmark = pytest.mark.django_db

FORM = "application/x-www-form-urlencoded"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
T0 = datetime.datetime(2030, 3, 1, 12, 0, tzinfo=datetime.UTC)
SERVER_NAMES = ("localhost", "jwks.test")


# ---- a JWKS server over https ---------------------------------------------------------------


def make_server_cert(ca: ClientCert) -> ClientCert:
    now = datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    alt_names: list[x509.GeneralName] = [x509.DNSName(name) for name in SERVER_NAMES]
    alt_names += [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.IPAddress(ipaddress.ip_address("::1"))]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    return ClientCert(certificate, key)


@dataclass
class Reply:
    body: bytes = b""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    content_length: bool = True
    delay: float = 0  # seconds before the status line
    trickle: float = 0  # seconds between body bytes


def jwks_body(*keys: dict[str, Any]) -> bytes:
    return json.dumps({"keys": list(keys)}).encode()


class JwksServer:
    """A threaded https server: ``serve(path, Reply)``; ``hits[path]`` counts requests."""

    def __init__(self, cert_file: str, key_file: str):
        self.routes: dict[str, Reply] = {}
        self.hits: collections.Counter[str] = collections.Counter()
        self.stopping = threading.Event()
        self.prefix = f"/{uuid.uuid4().hex}"  # cache keys never collide between tests
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.hits[self.path] += 1
                reply = server.routes.get(self.path, Reply(status=404))
                if reply.delay:
                    server.stopping.wait(reply.delay)
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                if reply.content_length:
                    self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                if reply.trickle:
                    self.wfile.flush()
                    for byte in reply.body:
                        if server.stopping.wait(reply.trickle):
                            return
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                else:
                    self.wfile.write(reply.body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # the fetcher hangs up on purpose in several tests

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True, do_handshake_on_connect=False)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def path(self, name: str) -> str:
        return f"{self.prefix}/{name}"

    def url(self, name: str = "jwks.json", host: str = "127.0.0.1") -> str:
        return f"https://{host}:{self.port}{self.path(name)}"

    def serve(self, name: str, reply: Reply) -> str:
        self.routes[self.path(name)] = reply
        return self.url(name)

    def serve_keys(self, name: str, *keys: dict[str, Any], **headers: str) -> str:
        return self.serve(name, Reply(jwks_body(*keys), headers={"Content-Type": "application/json", **headers}))

    def count(self, name: str = "jwks.json") -> int:
        return self.hits[self.path(name)]

    def close(self) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory) -> dict[str, str]:
    directory = tmp_path_factory.mktemp("jwks-tls")
    ca = make_ca("jwks_uri test CA")
    server = make_server_cert(ca)
    ca_file = directory / "ca.pem"
    ca_file.write_text(ca.pem)
    cert_file, key_file = server.write(directory, "server")
    return {"ca": str(ca_file), "cert": str(cert_file), "key": str(key_file)}


@pytest.fixture
def server(tls_files):
    jwks_server = JwksServer(tls_files["cert"], tls_files["key"])
    yield jwks_server
    jwks_server.close()


@pytest.fixture(autouse=True)
def fetcher_settings(settings, tls_files):
    settings.AUTHSERVER_JWKS_URI_CA_BUNDLE = tls_files["ca"]
    settings.AUTHSERVER_JWKS_URI_ALLOW_PRIVATE = True
    settings.AUTHSERVER_JWKS_URI_TIMEOUT_SECONDS = 3
    settings.AUTHSERVER_JWKS_URI_MAX_BYTES = 65536
    settings.AUTHSERVER_JWKS_URI_MIN_CACHE_SECONDS = 60
    settings.AUTHSERVER_JWKS_URI_MAX_CACHE_SECONDS = 86400
    return settings


@pytest.fixture(scope="module")
def key() -> ClientKey:
    return make_client_key("RS256")


@pytest.fixture(scope="module")
def new_key() -> ClientKey:
    return make_client_key("RS256")


@pytest.fixture
def jwt_client(organisation) -> Client:
    return client_create(
        organisation=organisation,
        name="jwks_uri client",
        grant_type="client_credentials",
        scopes=["orders:read"],
        auth_method=Client.AuthMethod.PRIVATE_KEY_JWT,
    )


def token_request(django_client, client: Client, key: ClientKey):
    assertion = key.assertion(client.client_id, f"{django_settings.AUTHSERVER_ISSUER}/oauth/token")
    form = {
        "grant_type": "client_credentials",
        "client_id": client.client_id,
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion,
    }
    return django_client.post("/oauth/token", urlencode(form), content_type=FORM)


def rsa_jwk(bits: int, *, private: bool = False) -> dict[str, Any]:
    jwk = JWK.from_pyca(rsa.generate_private_key(65537, bits))
    return jwk.export_private(as_dict=True) if private else jwk.export_public(as_dict=True)


# ---- what may be fetched --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        pytest.param("http://keys.example.org/jwks.json", "https", id="http"),
        pytest.param("ftp://keys.example.org/jwks.json", "https", id="ftp"),
        pytest.param("https://user:pw@keys.example.org/jwks.json", "user information", id="userinfo"),
        pytest.param("https://keys.example.org@127.0.0.1/jwks.json", "user information", id="userinfo-host-trick"),
        pytest.param("https://keys.example.org/jwks.json#x", "fragment", id="fragment"),
        pytest.param("https:///jwks.json", "no host", id="no-host"),
        pytest.param("https://keys.example.org:99999/jwks.json", "not a valid URL", id="bad-port"),
        pytest.param("https://keys.example.org/jwks json", "spaces", id="space"),
        pytest.param("not a url", "spaces", id="garbage"),
        pytest.param("", "https URL", id="empty"),
    ],
)
def test_malformed_or_non_https_uris_are_refused_before_any_lookup(uri, message, monkeypatch):
    looked_up: list[str] = []
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *a, **k: looked_up.append(host) or [])

    with pytest.raises(jwks_uri.JwksUriError, match=message):
        jwks_uri.check_uri(uri)

    assert looked_up == []


@pytest.mark.parametrize(
    ("host", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "shared"),
        ("198.18.0.1", "private"),
        ("240.0.0.1", "reserved"),
        ("[::1]", "loopback"),
        ("[fd00::1]", "private"),
        ("[::ffff:127.0.0.1]", "loopback"),
        ("[::ffff:10.0.0.1]", "private"),
        ("[64:ff9b::a00:1]", "private"),
        ("[2002:a00:1::]", "private"),
    ],
)
def test_loopback_private_and_reserved_addresses_are_refused(fetcher_settings, host, kind):
    fetcher_settings.AUTHSERVER_JWKS_URI_ALLOW_PRIVATE = False

    with pytest.raises(jwks_uri.JwksUriError, match=f"{kind}.*address, which is not allowed"):
        jwks_uri.check_uri(f"https://{host}/jwks.json")


@pytest.mark.parametrize(
    ("host", "kind"),
    [
        ("169.254.169.254", "link-local"),  # cloud metadata
        ("[fe80::1]", "link-local"),
        ("[::ffff:169.254.169.254]", "link-local"),
        ("224.0.0.1", "multicast"),
        ("[ff02::1]", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("[::]", "unspecified"),
    ],
)
@pytest.mark.parametrize("allow_private", [False, True], ids=["strict", "private-allowed"])
def test_link_local_multicast_and_unspecified_are_refused_even_when_private_is_allowed(
    fetcher_settings, host, kind, allow_private
):
    fetcher_settings.AUTHSERVER_JWKS_URI_ALLOW_PRIVATE = allow_private

    with pytest.raises(jwks_uri.JwksUriError, match=kind):
        jwks_uri.check_uri(f"https://{host}/jwks.json")


def test_a_public_address_passes_and_allow_private_lets_loopback_through(fetcher_settings):
    fetcher_settings.AUTHSERVER_JWKS_URI_ALLOW_PRIVATE = False
    target = jwks_uri.check_uri("https://93.184.215.14:8443/keys?v=1")
    assert (target.host, target.port, target.path, target.addresses) == (
        "93.184.215.14",
        8443,
        "/keys?v=1",
        ("93.184.215.14",),
    )
    assert target.redacted == "https://93.184.215.14:8443/keys"

    fetcher_settings.AUTHSERVER_JWKS_URI_ALLOW_PRIVATE = True
    assert jwks_uri.check_uri("https://127.0.0.1/jwks.json").addresses == ("127.0.0.1",)


def test_a_host_name_resolving_to_loopback_is_refused(fetcher_settings):
    fetcher_settings.AUTHSERVER_JWKS_URI_ALLOW_PRIVATE = False

    with pytest.raises(jwks_uri.JwksUriError, match=r"localhost resolves to .*loopback"):
        jwks_uri.check_uri("https://localhost/jwks.json")


def test_a_host_name_with_one_private_address_among_public_ones_is_refused(fetcher_settings, monkeypatch):
    fetcher_settings.AUTHSERVER_JWKS_URI_ALLOW_PRIVATE = False

    def resolve(host, port, *args, **kwargs):
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.7", port)),
        ]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)

    with pytest.raises(jwks_uri.JwksUriError, match=r"10.0.0.7, a private address"):
        jwks_uri.check_uri("https://keys.example.org/jwks.json")


def test_an_unresolvable_host_is_refused(monkeypatch):
    def resolve(host, *args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", resolve)

    with pytest.raises(jwks_uri.JwksUriError, match="cannot be resolved"):
        jwks_uri.check_uri("https://nowhere.example.org/jwks.json")


def test_the_host_is_resolved_once_and_tls_is_verified_for_its_name(server, key, monkeypatch):
    """DNS rebinding: the connection goes to the address that was checked, not a second lookup."""
    lookups: list[str] = []
    real = socket.getaddrinfo

    def resolve(host, port, *args, **kwargs):
        lookups.append(host)
        if host == "jwks.test":
            # Nothing listens on ::1 at that port: the fetcher moves on to the next address.
            return [
                (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", port, 0, 0)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port)),
            ]
        return real(host, port, *args, **kwargs)

    server.serve_keys("jwks.json", key.public_jwk)
    monkeypatch.setattr(socket, "getaddrinfo", resolve)

    fetched = jwks_uri.fetch(server.url(host="jwks.test"))

    assert [k["kid"] for k in fetched.keys] == [key.kid]
    assert lookups.count("jwks.test") == 1
    assert server.count() == 1


def test_a_port_where_nothing_listens_is_refused():
    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    with pytest.raises(jwks_uri.JwksUriError, match="cannot be reached"):
        jwks_uri.fetch(f"https://127.0.0.1:{port}/jwks.json")


def test_a_certificate_for_another_name_is_refused(server, key, monkeypatch):
    real = socket.getaddrinfo

    def resolve(host, port, *args, **kwargs):
        if host == "keys.example.org":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        return real(host, port, *args, **kwargs)

    server.serve_keys("jwks.json", key.public_jwk)
    monkeypatch.setattr(socket, "getaddrinfo", resolve)

    with pytest.raises(jwks_uri.JwksUriError, match=r"TLS certificate of keys.example.org is not valid"):
        jwks_uri.fetch(server.url(host="keys.example.org"))


def test_a_server_the_ca_bundle_does_not_trust_is_refused(server, key, fetcher_settings, tmp_path):
    other_ca = tmp_path / "other-ca.pem"
    other_ca.write_text(make_ca("another CA").pem)
    fetcher_settings.AUTHSERVER_JWKS_URI_CA_BUNDLE = str(other_ca)
    uri = server.serve_keys("jwks.json", key.public_jwk)

    with pytest.raises(jwks_uri.JwksUriError, match="TLS certificate"):
        jwks_uri.fetch(uri)


def test_localhost_is_fetched_when_private_addresses_are_allowed(server, key):
    server.serve_keys("jwks.json", key.public_jwk)

    fetched = jwks_uri.fetch(server.url(host="localhost"))

    assert [k["kid"] for k in fetched.keys] == [key.kid]
    assert server.count() == 1


# ---- what the server answers ----------------------------------------------------------------


def test_a_redirect_is_not_followed(server, key):
    target = server.serve_keys("elsewhere.json", key.public_jwk)
    uri = server.serve("jwks.json", Reply(status=302, headers={"Location": target}))

    with pytest.raises(jwks_uri.JwksUriError, match="redirect"):
        jwks_uri.fetch(uri)

    assert server.count("jwks.json") == 1
    assert server.count("elsewhere.json") == 0


def test_an_error_status_is_refused(server):
    uri = server.serve("jwks.json", Reply(status=500, body=b"oops"))

    with pytest.raises(jwks_uri.JwksUriError, match="HTTP 500"):
        jwks_uri.fetch(uri)


@pytest.mark.parametrize("content_length", [True, False], ids=["declared", "streamed"])
def test_a_body_over_the_size_limit_is_refused(server, key, fetcher_settings, content_length):
    fetcher_settings.AUTHSERVER_JWKS_URI_MAX_BYTES = 4096
    keys = [dict(key.public_jwk, kid=f"k{n}") for n in range(12)]  # about 5 kB
    body = jwks_body(*keys)
    assert len(body) > 4096
    uri = server.serve("jwks.json", Reply(body, content_length=content_length))

    with pytest.raises(jwks_uri.JwksUriError, match="larger than 4096 bytes"):
        jwks_uri.fetch(uri)

    fetcher_settings.AUTHSERVER_JWKS_URI_MAX_BYTES = 8192
    assert len(jwks_uri.fetch(uri).keys) == 12


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(Reply(delay=5), id="slow-headers"),
        pytest.param(Reply(body=b'{"keys": []}' * 50, trickle=0.05), id="trickled-body"),
    ],
)
def test_a_slow_server_times_out_within_the_deadline(server, fetcher_settings, reply):
    fetcher_settings.AUTHSERVER_JWKS_URI_TIMEOUT_SECONDS = 0.5
    uri = server.serve("jwks.json", reply)

    started = time.monotonic()
    with pytest.raises(jwks_uri.JwksUriError, match=r"did not answer within 0.5 seconds"):
        jwks_uri.fetch(uri)

    assert time.monotonic() - started < 2


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(b"<html>keys</html>", "did not serve JSON", id="html"),
        pytest.param(b"\xff\xfe{", "did not serve JSON", id="not-utf8"),
        pytest.param(b'[{"kty": "RSA"}]', "JWK Set", id="array"),
        pytest.param(b'{"keys": {"kty": "RSA"}}', "JWK Set", id="keys-not-a-list"),
        pytest.param(b'{"keys": []}', "holds no signing key", id="empty"),
        pytest.param(b'{"keys": ["x"]}', "must be a JSON object", id="key-not-an-object"),
        pytest.param(b'{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}', "private key material", id="symmetric"),
        pytest.param(b'{"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}]}', "malformed JWK", id="broken-rsa"),
        pytest.param(b'{"keys": [{"kty": "RSA", "n": "AQAB"}]}', "malformed JWK", id="rsa-without-e"),
        pytest.param(jwks_body(JWK.generate(kty="EC", crv="P-384").export_public(as_dict=True)), "P-256", id="p384"),
    ],
)
def test_what_is_not_a_valid_jwks_is_refused(server, body, message):
    uri = server.serve("jwks.json", Reply(body))

    with pytest.raises(jwks_uri.JwksUriError, match=message):
        jwks_uri.fetch(uri)


def test_private_key_members_and_rsa_1024_are_refused_even_beside_a_good_key(server, key):
    private = server.serve_keys("private.json", key.public_jwk, rsa_jwk(2048, private=True))
    weak = server.serve_keys("weak.json", key.public_jwk, rsa_jwk(1024))

    with pytest.raises(jwks_uri.JwksUriError, match=r"key 2 .*private key material"):
        jwks_uri.fetch(private)
    with pytest.raises(jwks_uri.JwksUriError, match=r"key 2 .*at least 2048 bits; this one has 1024"):
        jwks_uri.fetch(weak)


def test_keys_without_kid_get_a_thumbprint_and_encryption_keys_are_skipped(server):
    signing = rsa_jwk(2048)
    encryption = dict(rsa_jwk(2048), use="enc", kid="enc-1")
    uri = server.serve_keys("jwks.json", signing, encryption)

    fetched = jwks_uri.fetch(uri)

    assert [k["kid"] for k in fetched.keys] == [JWK(**signing).thumbprint()]
    assert "d" not in fetched.keys[0]


# ---- the cache ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "fresh_for"),
    [
        pytest.param({"Cache-Control": "public, max-age=300"}, 300, id="max-age"),
        pytest.param({"Cache-Control": "max-age=300", "Age": "100"}, 200, id="max-age-minus-age"),
        pytest.param({"Cache-Control": "max-age=5"}, 60, id="below-minimum"),
        pytest.param({"Cache-Control": "max-age=999999999"}, 3600, id="above-maximum"),
        pytest.param({"Cache-Control": "no-store"}, 60, id="no-store"),
        pytest.param({"Cache-Control": "no-cache, max-age=600"}, 60, id="no-cache"),
        pytest.param(
            {"Expires": format_datetime(T0 + datetime.timedelta(seconds=900), usegmt=True)}, 900, id="expires"
        ),
        pytest.param({"Expires": "0"}, 60, id="invalid-expires"),
        pytest.param({}, 60, id="no-headers"),
    ],
)
def test_cached_keys_are_used_as_long_as_the_response_allows_within_bounds(
    server, key, fetcher_settings, time_machine, headers, fresh_for
):
    fetcher_settings.AUTHSERVER_JWKS_URI_MAX_CACHE_SECONDS = 3600
    time_machine.move_to(T0, tick=False)
    uri = server.serve_keys("jwks.json", key.public_jwk, **headers)

    assert [k["kid"] for k in jwks_uri.signing_keys(uri)] == [key.kid]
    assert server.count() == 1

    time_machine.move_to(T0 + datetime.timedelta(seconds=fresh_for - 1), tick=False)
    jwks_uri.signing_keys(uri)
    jwks_uri.signing_keys(uri)
    assert server.count() == 1

    time_machine.move_to(T0 + datetime.timedelta(seconds=fresh_for + 1), tick=False)
    assert [k["kid"] for k in jwks_uri.signing_keys(uri)] == [key.kid]
    jwks_uri.signing_keys(uri)
    assert server.count() == 2


def test_failed_refetches_keep_the_keys_until_their_maximum_lifetime(
    server, key, fetcher_settings, time_machine, caplog
):
    fetcher_settings.AUTHSERVER_JWKS_URI_MAX_CACHE_SECONDS = 3600
    time_machine.move_to(T0, tick=False)
    uri = server.serve_keys("jwks.json?token=sekrit-query-value", key.public_jwk, **{"Cache-Control": "max-age=60"})
    assert jwks_uri.signing_keys(uri)
    server.serve("jwks.json?token=sekrit-query-value", Reply(status=503))

    caplog.set_level(logging.WARNING, logger="clients.jwks_uri")
    time_machine.move_to(T0 + datetime.timedelta(seconds=61), tick=False)
    assert [k["kid"] for k in jwks_uri.signing_keys(uri)] == [key.kid]
    assert server.count("jwks.json?token=sekrit-query-value") == 2
    assert "HTTP 503" in caplog.text
    assert "sekrit" not in caplog.text

    time_machine.move_to(T0 + datetime.timedelta(seconds=90), tick=False)
    assert jwks_uri.signing_keys(uri)  # throttled: no new attempt within the minimum interval
    assert server.count("jwks.json?token=sekrit-query-value") == 2

    time_machine.move_to(T0 + datetime.timedelta(seconds=3601), tick=False)
    assert jwks_uri.signing_keys(uri) == []
    assert server.count("jwks.json?token=sekrit-query-value") == 3


def test_an_unreachable_uri_is_not_hammered(server, fetcher_settings, time_machine):
    time_machine.move_to(T0, tick=False)
    uri = server.serve("jwks.json", Reply(status=500))

    for _ in range(5):
        assert jwks_uri.signing_keys(uri, kid="whatever") == []
    assert server.count() == 1

    time_machine.move_to(T0 + datetime.timedelta(seconds=61), tick=False)
    assert jwks_uri.signing_keys(uri, kid="whatever") == []
    assert server.count() == 2


# ---- the service ----------------------------------------------------------------------------


def test_add_jwks_uri_fetches_once_stores_the_credential_and_audits_it(server, key, jwt_client):
    uri = server.serve_keys("jwks.json", key.public_jwk)

    credential = client_credential_add_jwks_uri(client=jwt_client, jwks_uri=uri)

    assert (credential.kind, credential.status, credential.jwks_uri) == (
        ClientCredential.Kind.JWKS_URI,
        ClientCredential.Status.ACTIVE,
        uri,
    )
    assert credential.hint == "27.0.0.1"
    assert credential.public_jwk is None
    event = AuditEvent.objects.get(event="client.credential.issued")
    assert event.target_id == str(credential.pk)
    assert event.data == {
        "client_id": jwt_client.client_id,
        "kind": "jwks_uri",
        "jwks_uri": uri,
        "kids": [key.kid],
    }
    # The registration fetch filled the cache: the first token request fetches nothing.
    assert [k["kid"] for k in jwks_uri.signing_keys(uri, kid=key.kid)] == [key.kid]
    assert server.count() == 1


@pytest.mark.parametrize(
    ("make_uri", "message"),
    [
        pytest.param(lambda server: server.url().replace("https", "http"), "https", id="http"),
        pytest.param(lambda server: server.serve("jwks.json", Reply(b"{}")), "JWK Set", id="not-a-jwks"),
        pytest.param(lambda server: server.serve_keys("jwks.json", rsa_jwk(1024)), "2048 bits", id="rsa-1024"),
        pytest.param(lambda server: server.url("missing.json"), "HTTP 404", id="404"),
    ],
)
def test_a_refused_jwks_uri_stores_and_audits_nothing(server, jwt_client, make_uri, message):
    with pytest.raises(DomainError, match=message):
        client_credential_add_jwks_uri(client=jwt_client, jwks_uri=make_uri(server))

    assert not jwt_client.credentials.exists()
    assert not AuditEvent.objects.filter(event="client.credential.issued").exists()


def test_a_private_jwks_uri_is_refused_by_the_service(server, key, jwt_client, fetcher_settings):
    fetcher_settings.AUTHSERVER_JWKS_URI_ALLOW_PRIVATE = False
    uri = server.serve_keys("jwks.json", key.public_jwk)

    with pytest.raises(jwks_uri.JwksUriError, match="loopback"):
        client_credential_add_jwks_uri(client=jwt_client, jwks_uri=uri)

    assert server.count() == 0
    assert not jwt_client.credentials.exists()


def test_only_private_key_jwt_clients_get_a_jwks_uri(server, key, cc_basic):
    uri = server.serve_keys("jwks.json", key.public_jwk)

    with pytest.raises(DomainError, match="does not authenticate with private_key_jwt"):
        client_credential_add_jwks_uri(client=cc_basic.client, jwks_uri=uri)

    assert server.count() == 0


def test_jwks_and_jwks_uri_are_never_both_active(server, key, new_key, jwt_client):
    uri = server.serve_keys("jwks.json", key.public_jwk)
    registered = client_credential_add_public_key(client=jwt_client, jwk=new_key.public_jwk)

    with pytest.raises(DomainError, match="never both"):
        client_credential_add_jwks_uri(client=jwt_client, jwks_uri=uri)
    assert server.count() == 0

    # A rotation overlap: the old kind is expiring, so the new kind may be added beside it.
    ClientCredential.objects.filter(pk=registered.pk).update(status=ClientCredential.Status.EXPIRING)
    client_credential_add_jwks_uri(client=jwt_client, jwks_uri=uri)

    with pytest.raises(DomainError, match="never both"):
        client_credential_add_public_key(client=jwt_client, jwk=make_client_key("ES256").public_jwk)
    with pytest.raises(DomainError, match="registered already"):
        client_credential_add_jwks_uri(client=jwt_client, jwks_uri=uri)
    assert jwt_client.credentials.count() == 2


# ---- private_key_jwt at the token endpoint ----------------------------------------------------


def test_a_token_request_verifies_against_the_jwks_uri_until_the_key_is_removed(
    client, server, key, new_key, jwt_client, time_machine
):
    time_machine.move_to(T0, tick=False)
    uri = server.serve_keys("jwks.json", key.public_jwk, **{"Cache-Control": "max-age=300"})
    credential = client_credential_add_jwks_uri(client=jwt_client, jwks_uri=uri)

    response = token_request(client, jwt_client, key)
    assert response.status_code == 200, response.content
    assert json.loads(response.content)["access_token"]
    assert server.count() == 1  # the cache answered
    credential.refresh_from_db()
    assert credential.last_used_at is not None

    server.serve_keys("jwks.json", new_key.public_jwk, **{"Cache-Control": "max-age=300"})
    time_machine.move_to(T0 + datetime.timedelta(seconds=200), tick=False)
    assert token_request(client, jwt_client, key).status_code == 200  # still cached
    assert server.count() == 1

    time_machine.move_to(T0 + datetime.timedelta(seconds=301), tick=False)
    response = token_request(client, jwt_client, key)
    assert response.status_code == 401, response.content
    assert json.loads(response.content)["error"] == "invalid_client"
    assert server.count() == 2
    assert token_request(client, jwt_client, new_key).status_code == 200


def test_an_unknown_kid_refetches_at_most_once_per_interval(client, server, key, new_key, jwt_client, time_machine):
    time_machine.move_to(T0, tick=False)
    uri = server.serve_keys("jwks.json", key.public_jwk, **{"Cache-Control": "max-age=3600"})
    client_credential_add_jwks_uri(client=jwt_client, jwks_uri=uri)

    # Right after the registration fetch: an unknown kid does not refetch.
    assert token_request(client, jwt_client, new_key).status_code == 401
    assert server.count() == 1

    time_machine.move_to(T0 + datetime.timedelta(seconds=61), tick=False)
    for _ in range(4):
        assert token_request(client, jwt_client, new_key).status_code == 401
    assert server.count() == 2

    # The client rolls its key over; within the interval nothing is fetched, after it once.
    server.serve_keys("jwks.json", key.public_jwk, new_key.public_jwk, **{"Cache-Control": "max-age=3600"})
    time_machine.move_to(T0 + datetime.timedelta(seconds=100), tick=False)
    assert token_request(client, jwt_client, new_key).status_code == 401
    assert server.count() == 2

    time_machine.move_to(T0 + datetime.timedelta(seconds=122), tick=False)
    assert token_request(client, jwt_client, new_key).status_code == 200
    assert token_request(client, jwt_client, new_key).status_code == 200
    assert token_request(client, jwt_client, key).status_code == 200
    assert server.count() == 3


def test_a_revoked_jwks_uri_credential_stops_working_at_once(client, server, key, jwt_client):
    from clients.services import client_credential_revoke

    uri = server.serve_keys("jwks.json", key.public_jwk)
    credential = client_credential_add_jwks_uri(client=jwt_client, jwks_uri=uri)
    assert token_request(client, jwt_client, key).status_code == 200

    client_credential_revoke(credential_id=credential.pk)

    assert token_request(client, jwt_client, key).status_code == 401
    assert server.count() == 1
