"""manage.py compliance: item by item, PASS / MISS / SKIP, non-zero in --strict on a miss."""

from __future__ import annotations

import io
import json
import subprocess

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from authserver.compliance import MISS, PASS, SKIP
from authserver.nginx_tls import tls_findings
from tests.authserver.test_settings import manage, production_env  # noqa: F401  (a fixture)

from .conftest import NGINX, install

# What a development or test set-up misses: it runs on http, accepts client secrets, has no
# HSTS and no secure cookies, is not behind the TLS proxy, and is not a production set-up.
DEV_MISSES = {
    "oauth.issuer-https",
    "oauth.client-secrets-off",
    "transport.hsts",
    "transport.secure-cookies",
    "transport.tls-proxy",
    "deploy.production",
}


def statuses(output: str) -> dict[str, str]:
    return {line.split()[1]: line.split()[0] for line in output.splitlines() if line[:4] in (PASS, MISS, SKIP)}


def report(*args: str) -> str:
    out = io.StringIO()
    call_command("compliance", *args, stdout=out)
    return out.getvalue()


def test_the_test_settings_miss_what_a_development_set_up_misses():
    found = statuses(report())

    assert {key for key, status in found.items() if status == MISS} == DEV_MISSES
    # The protocol itself is strict in every environment.
    for key in (
        "oauth.pkce-s256",
        "oauth.no-implicit-password",
        "oauth.redirect-exact",
        "oauth.token-storage-hashed",
        "oauth.refresh-rotation",
        "oauth.authz-response-iss",
        "oauth.lifetimes",
        "oauth.signing-algs",
        "oauth.key-rotation",
        "deploy.debug-off",
    ):
        assert found[key] == PASS, key
    # Without nginx -T output the TLS items are not visible.
    assert {status for key, status in found.items() if key.startswith("tls.")} == {SKIP}


def test_strict_exits_non_zero_on_a_miss():
    with pytest.raises(CommandError) as caught:
        report("--strict")

    assert caught.value.returncode == 1
    assert f"{len(DEV_MISSES)} item(s) miss" in str(caught.value)


def test_json_output():
    document = json.loads(report("--json"))

    assert document["counts"]["MISS"] == len(DEV_MISSES)
    first = document["findings"][0]
    assert set(first) == {"id", "title", "source", "status", "detail"}


def test_the_dev_misses_follow_the_settings(settings):
    settings.AUTHSERVER_CLIENT_SECRETS_ENABLED = False
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.AUTHSERVER_ACCESS_TOKEN_LIFETIME = 7200
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "ALLOW_URI_WILDCARDS": True}

    found = statuses(report())

    assert found["oauth.client-secrets-off"] == PASS
    assert found["transport.hsts"] == PASS
    assert found["oauth.lifetimes"] == MISS
    assert found["oauth.redirect-exact"] == MISS


@pytest.fixture
def production(production_env):  # noqa: F811
    return {**production_env, "AUTHSERVER_BEHIND_TLS_PROXY": "true"}


def test_a_production_environment_passes(production):
    result = manage(production, "compliance", "--strict")

    assert result.returncode == 0, result.stdout + result.stderr
    found = statuses(result.stdout)
    assert MISS not in found.values()
    assert found["oauth.issuer-https"] == PASS
    assert found["deploy.production"] == PASS


@pytest.mark.parametrize(
    ("changes", "missed"),
    [
        pytest.param({"AUTHSERVER_CLIENT_SECRETS_ENABLED": "true"}, "oauth.client-secrets-off", id="secrets"),
        pytest.param({"AUTHSERVER_ACCESS_TOKEN_LIFETIME": "7200"}, "oauth.lifetimes", id="lifetime"),
        pytest.param({"AUTHSERVER_ACCESS_TOKEN_SIGNING_ALG": "ES256"}, "oauth.signing-algs", id="es256-default"),
        pytest.param({"AUTHSERVER_SIGNING_ALGORITHMS": "RS256,PS256,HS256"}, "oauth.signing-algs", id="hs256"),
        pytest.param({"AUTHSERVER_SIGNING_KEY_ROTATION_DAYS": "0"}, "oauth.key-rotation", id="no-rotation"),
        pytest.param({"SECURE_HSTS_SECONDS": "300"}, "transport.hsts", id="short-hsts"),
        pytest.param({"SESSION_COOKIE_SECURE": "false"}, "transport.secure-cookies", id="cookie"),
        pytest.param({"AUTHSERVER_BEHIND_TLS_PROXY": "false"}, "transport.tls-proxy", id="no-proxy"),
        pytest.param({"AUTHSERVER_CORS_ALLOWED_ORIGINS": "*"}, "transport.cors", id="cors-star"),
        pytest.param({"AUTHSERVER_BACKCHANNEL_URL": "http://api.example.org"}, "oauth.issuer-https", id="http-back"),
    ],
)
def test_a_loosened_production_environment_misses(production, changes, missed):
    result = manage({**production, **changes}, "compliance", "--strict")

    assert result.returncode == 1
    found = statuses(result.stdout)
    assert {key for key, status in found.items() if status == MISS} == {missed}


@pytest.mark.xdist_group("nginx")
def test_a_production_environment_behind_the_repository_nginx_passes(production, pki, tmp_path):
    """nginx -T of the repository's configuration, piped into compliance --nginx-config -."""
    install(tmp_path, pki, "127.0.0.1:8000", http_port=8080, https_port=8443)
    dump = subprocess.run(
        [NGINX, "-p", f"{tmp_path}/", "-c", str(tmp_path / "nginx.conf"), "-T"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert dump.returncode == 0, dump.stderr

    result = subprocess.run(
        [*manage_command(), "compliance", "--strict", "--nginx-config", "-"],
        input=dump.stdout,
        env=production,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    found = statuses(result.stdout)
    tls = {key: status for key, status in found.items() if key.startswith("tls.")}
    assert {key for key, status in tls.items() if status != PASS} <= {"tls.pqc"}
    assert len(tls) == 10


def manage_command() -> list[str]:
    import sys

    from django.conf import settings

    return [sys.executable, str(settings.BASE_DIR / "manage.py")]


# ---- the nginx reader on its own ------------------------------------------------------

GOOD_SERVER = """
    server {
        listen 443 ssl;
        server_name good.example;
        ssl_certificate /nonexistent/cert.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-CHACHA20-POLY1305;
        ssl_prefer_server_ciphers on;
        ssl_ecdh_curve X25519:prime256v1;
        ssl_stapling on;
        add_header Strict-Transport-Security "max-age=63072000" always;
        %s
    }
"""


def dump(server_body: str = "", http: str = "") -> str:
    return (
        "# configuration file /etc/nginx/nginx.conf:\n"
        f"events {{}}\nhttp {{\n {http}\n include conf.d/*.conf;\n}}\n\n"
        "# configuration file /etc/nginx/conf.d/site.conf:\n" + GOOD_SERVER % server_body
    )


def tls_statuses(text: str) -> dict[str, str]:
    return {finding.id: finding.status for finding in tls_findings(text)}


def test_a_good_server_passes_and_unreadable_certificates_are_not_visible():
    found = tls_statuses(dump())

    assert {key for key, status in found.items() if status == MISS} == set()
    assert found["tls.certificates"] == SKIP


@pytest.mark.parametrize(
    ("server_body", "missed"),
    [
        pytest.param("ssl_ciphers HIGH:!aNULL:!MD5;", "tls.ciphers", id="cipher-macro"),
        pytest.param("ssl_ciphers ECDHE-RSA-AES128-SHA256:ECDHE-RSA-AES128-GCM-SHA256;", "tls.ciphers", id="cbc"),
        pytest.param("ssl_protocols TLSv1.1 TLSv1.2;", "tls.protocols", id="tls1.1"),
        pytest.param("ssl_prefer_server_ciphers off;", "tls.server-order", id="client-order"),
        pytest.param("ssl_early_data on;", "tls.no-0rtt", id="0-rtt"),
        pytest.param("ssl_stapling off;", "tls.ocsp-stapling", id="no-stapling"),
        pytest.param("ssl_ecdh_curve X25519:ffdhe2048;", "tls.groups", id="ffdhe"),
        pytest.param("location /x { add_header X-Foo bar; }", "tls.hsts", id="location-drops-hsts"),
    ],
)
def test_the_reader_finds_each_miss(server_body, missed):
    found = tls_statuses(dump(server_body))

    assert {key for key, status in found.items() if status == MISS} == {missed}


def test_http_level_settings_are_inherited_unless_the_server_overrides_them():
    text = dump().replace("ssl_protocols TLSv1.2 TLSv1.3;", "")

    assert tls_statuses(text)["tls.protocols"] == MISS  # nginx's default still has TLS 1.0/1.1
    assert tls_statuses(text.replace("http {\n", "http {\n ssl_protocols TLSv1.3;"))["tls.protocols"] == PASS
