"""TLS per the NCSC 2025 guidelines, checked on the real nginx with the repository's configuration.

nginx from Debian's package runs deploy/nginx/ (rendered by deploy/nginx/render.py) on
loopback in front of the live Django server (tests/deploy/conftest.py). Python's ssl module
and `openssl s_client` are the clients.
"""

from __future__ import annotations

import json
import re
import ssl
import subprocess
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from authserver.compliance import MISS, PASS, SKIP
from authserver.nginx_tls import tls_findings

from .conftest import BACK, FRONT, NGINX, OPENSSL, install, openssl_version_of_nginx, require_nginx

pytestmark = pytest.mark.xdist_group("nginx")
through_django = pytest.mark.usefixtures("behind_nginx")

CHANNELS = pytest.mark.parametrize("server_name", [FRONT, BACK], ids=["front", "back"])


def refused(nginx, server_name: str = FRONT, **kwargs) -> ssl.SSLError:
    with pytest.raises(ssl.SSLError) as caught:
        nginx.handshake(server_name, **kwargs).close()
    return caught.value


def peer_key(tls: ssl.SSLSocket):
    der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).public_key()


@CHANNELS
def test_tls13_works(tls_nginx, server_name):
    with tls_nginx.handshake(server_name) as tls:
        assert tls.version() == "TLSv1.3"
        assert tls.compression() is None


@CHANNELS
def test_tls12_with_ecdhe_ecdsa_aes_gcm_works(tls_nginx, server_name):
    with tls_nginx.handshake(
        server_name, version=ssl.TLSVersion.TLSv1_2, ciphers="ECDHE-ECDSA-AES128-GCM-SHA256"
    ) as tls:
        assert tls.version() == "TLSv1.2"
        assert tls.cipher()[0] == "ECDHE-ECDSA-AES128-GCM-SHA256"
        key = peer_key(tls)
        assert isinstance(key, ec.EllipticCurvePublicKey)
        assert key.curve.name == "secp256r1"


def test_tls12_with_ecdhe_rsa_gets_the_rsa_3072_certificate(tls_nginx):
    with tls_nginx.handshake(FRONT, version=ssl.TLSVersion.TLSv1_2, ciphers="ECDHE-RSA-CHACHA20-POLY1305") as tls:
        assert tls.cipher()[0] == "ECDHE-RSA-CHACHA20-POLY1305"
        key = peer_key(tls)
        assert isinstance(key, rsa.RSAPublicKey)
        assert key.key_size == 3072


@CHANNELS
@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1], ids=["tls1.1", "tls1.0"])
def test_old_protocol_versions_are_refused(tls_nginx, server_name, version):
    # Debian's nginx.conf allows TLSv1 and TLSv1.1 at http level (main_config mimics it):
    # the repository's server blocks, the default server of the socket included, override it.
    error = refused(tls_nginx, server_name, version=version)
    # The server's alert, not the client refusing to try.
    assert error.reason in ("TLSV1_ALERT_PROTOCOL_VERSION", "UNSUPPORTED_PROTOCOL"), error
    assert error.reason != "NO_PROTOCOLS_AVAILABLE"


REFUSED_SUITES = [
    pytest.param("ECDHE-ECDSA-AES128-SHA", id="cbc-sha1"),
    pytest.param("ECDHE-ECDSA-AES256-SHA384", id="cbc-sha384"),
    pytest.param("ECDHE-RSA-AES128-SHA256", id="cbc-rsa"),
    pytest.param("DHE-RSA-AES128-GCM-SHA256", id="dhe"),
    pytest.param("DHE-RSA-CHACHA20-POLY1305", id="dhe-chacha"),
    pytest.param("AES128-GCM-SHA256", id="static-rsa"),
    pytest.param("AES256-SHA", id="static-rsa-cbc"),
]


@CHANNELS
@pytest.mark.parametrize("suite", REFUSED_SUITES)
def test_tls12_suites_outside_ecdhe_aead_are_refused(tls_nginx, server_name, suite):
    error = refused(tls_nginx, server_name, version=ssl.TLSVersion.TLSv1_2, ciphers=suite)
    assert error.reason == "SSLV3_ALERT_HANDSHAKE_FAILURE", error


def test_the_server_chooses_the_cipher_order(tls_nginx):
    # The client prefers AES-128 and ChaCha20; the server's first choice wins.
    offered = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES256-GCM-SHA384"
    with tls_nginx.handshake(FRONT, version=ssl.TLSVersion.TLSv1_2, ciphers=offered) as tls:
        assert tls.cipher()[0] == "ECDHE-ECDSA-AES256-GCM-SHA384"


def s_client(nginx, *args: str, server_name: str = FRONT) -> str:
    result = subprocess.run(
        [
            OPENSSL,
            "s_client",
            "-connect",
            f"127.0.0.1:{nginx.https_port}",
            "-servername",
            server_name,
            "-CAfile",
            str(nginx.pki.ca_cert),
            *args,
        ],
        input="",
        capture_output=True,
        text=True,
        timeout=30,
    )
    return result.stdout + result.stderr


def test_tls12_negotiates_extended_master_secret(tls_nginx):
    output = s_client(tls_nginx, "-tls1_2")
    assert "Protocol  : TLSv1.2" in output or "TLSv1.2" in output
    assert "Extended master secret: yes" in output


def test_the_key_exchange_is_x25519_first(tls_nginx):
    output = s_client(tls_nginx, "-tls1_3")
    assert re.search(r"Server Temp Key: X25519", output), output


def test_ocsp_responses_are_stapled(tls_nginx):
    """nginx fetches the OCSP answer from the CA's responder after the first handshake."""
    for _attempt in range(50):
        output = s_client(tls_nginx, "-status", "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256")
        if "OCSP Response Status: successful" in output:
            break
        time.sleep(0.2)  # waiting for nginx's background OCSP request, not for the clock
    assert "OCSP Response Status: successful" in output, output
    assert "Cert Status: good" in output


def test_an_unknown_server_name_gets_no_handshake(tls_nginx):
    error = refused(tls_nginx, "other.authserver.test")
    assert "UNRECOGNIZED_NAME" in str(error) or "HANDSHAKE_FAILURE" in str(error)


@through_django
@CHANNELS
def test_hsts_on_every_response(nginx, server_name):
    for path in ("/.well-known/openid-configuration", "/no-such-page"):
        response, _ = nginx.request(server_name, "GET", path)
        values = response.headers.get_all("Strict-Transport-Security") or []
        assert values == ["max-age=31536000; includeSubDomains"], (path, values)


@through_django
def test_a_request_through_nginx_reaches_django(nginx, settings):
    settings.AUTHSERVER_ISSUER = f"https://{FRONT}"
    response, body = nginx.request(FRONT, "GET", "/.well-known/openid-configuration?code=s3cr3t-in-the-url")

    assert response.status == 200
    document = json.loads(body)
    assert document["issuer"] == f"https://{FRONT}"
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"])  # nginx's $request_id
    assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    # nginx's access log: the path without its query string, and the request id. nginx
    # writes the line after it sent the response, so it may come a moment later.
    lines: list[str] = []
    for _attempt in range(100):
        log = (nginx.prefix / "logs" / "authserver-access.log").read_text()
        lines = [line for line in log.splitlines() if response.headers["X-Request-ID"] in line]
        if lines:
            break
        time.sleep(0.05)
    (line,) = lines
    assert '"GET /.well-known/openid-configuration HTTP/1.1" 200' in line
    assert "s3cr3t" not in log


@through_django
def test_front_and_back_channel_serve_their_own_endpoints(nginx):
    # The back channel: token, introspection, revocation, userinfo (Django answers the bad request).
    response, body = nginx.request(
        BACK, "POST", "/oauth/token", body="", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert response.status == 400
    assert json.loads(body)["error"] == "invalid_request"
    # ... and not the browser pages.
    assert nginx.request(BACK, "GET", "/accounts/login/")[0].status == 404
    assert nginx.request(BACK, "GET", "/oauth/authorize")[0].status == 404
    # The front channel: browser pages, discovery and the JWKS, not the token endpoint.
    assert nginx.request(FRONT, "GET", "/accounts/login/")[0].status == 200
    assert nginx.request(FRONT, "POST", "/oauth/token", body="")[0].status == 404
    assert nginx.request(FRONT, "GET", "/oauth/jwks")[0].status == 200
    # Neither publishes readiness or metrics.
    for host in (FRONT, BACK):
        assert nginx.request(host, "GET", "/metrics")[0].status == 404
        assert nginx.request(host, "GET", "/readyz")[0].status == 404


FORGED = {
    "X-SSL-Client-Cert": "-----BEGIN CERTIFICATE-----forged",
    "X-SSL-Client-Verify": "SUCCESS",
    "X-SSL-Client-S-DN": "CN=forged,O=Someone Else",
    "X_SSL_CLIENT_CERT": "underscored",
    "X-Forwarded-For": "198.51.100.7",
    "X-Forwarded-Proto": "http",
    "X-Forwarded-Host": "evil.example",
    "Forwarded": "for=198.51.100.7;proto=http",
    "X-Request-ID": "chosen-by-the-client",
}


@through_django
@CHANNELS
def test_nginx_sets_the_forwarded_headers_and_strips_what_clients_forge(nginx, settings, server_name):
    settings.ROOT_URLCONF = "tests.deploy.urls_echo"
    response, body = nginx.request(server_name, "GET", "/healthz", headers=FORGED)
    seen = json.loads(body)

    assert response.status == 200
    headers = seen["headers"]
    assert not [key for key in headers if key.startswith("HTTP_X_SSL_CLIENT")], headers
    assert headers["HTTP_X_FORWARDED_FOR"] == "127.0.0.1"
    assert headers["HTTP_X_REAL_IP"] == "127.0.0.1"
    assert headers["HTTP_X_FORWARDED_PROTO"] == "https"
    assert "HTTP_X_FORWARDED_HOST" not in headers
    assert "HTTP_FORWARDED" not in headers
    assert re.fullmatch(r"[0-9a-f]{32}", headers["HTTP_X_REQUEST_ID"])
    assert seen["is_secure"] is True  # AUTHSERVER_BEHIND_TLS_PROXY trusts nginx's X-Forwarded-Proto


@through_django
def test_static_files_carry_the_security_headers(nginx):
    response, body = nginx.request(FRONT, "GET", "/static/probe.css")

    assert response.status == 200
    assert body == b"body { color: #111; }\n"
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@through_django
def test_plain_http_redirects_browsers_to_the_front_channel(nginx):
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", nginx.http_port, timeout=10)
    connection.request("GET", "/portal/?x=1", headers={"Host": "evil.example"})
    response = connection.getresponse()

    assert response.status == 301
    assert response.headers["Location"] == f"https://{FRONT}/portal/?x=1"


def test_the_running_configuration_passes_the_compliance_tls_items(tls_nginx):
    dump = tls_nginx.run("-T")
    assert dump.returncode == 0, dump.stderr

    findings = {finding.id: finding for finding in tls_findings(dump.stdout)}

    assert {key: f.status for key, f in findings.items() if f.status == MISS} == {}
    for key in (
        "tls.protocols",
        "tls.ciphers",
        "tls.server-order",
        "tls.no-0rtt",
        "tls.ocsp-stapling",
        "tls.hsts",
        "tls.certificates",
    ):
        assert findings[key].status == PASS, findings[key]
    assert findings["tls.pqc"].status in (PASS, SKIP)


def test_debian_defaults_alone_miss_the_tls_items(tls_nginx):
    """The parser is not fooled: the http-level TLS 1.0/1.1 of Debian's nginx.conf is a miss."""
    dump = tls_nginx.run("-T").stdout.replace("include snippets/authserver-tls.conf;", "")
    findings = {finding.id: finding for finding in tls_findings(dump)}

    assert findings["tls.protocols"].status == MISS
    assert "TLSv1.1" in findings["tls.protocols"].detail
    assert findings["tls.ciphers"].status == MISS


def test_the_pqc_groups_need_openssl_3_5(pki, tmp_path):
    """X25519MLKEM768 first is an opt-in (NGINX_TLS_GROUPS=pqc) because OpenSSL < 3.5 lacks it."""
    require_nginx()
    install(tmp_path, pki, "127.0.0.1:9", http_port=1080, https_port=1443, groups="pqc")
    result = subprocess.run(
        [NGINX, "-p", f"{tmp_path}/", "-c", str(tmp_path / "nginx.conf"), "-t"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if openssl_version_of_nginx() >= (3, 5):
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode != 0
        assert "X25519MLKEM768" in result.stderr
