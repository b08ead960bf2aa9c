"""The real nginx from Debian's packages, with the repository's configuration, on loopback.

A session fixture makes a test CA and, per channel, an ECDSA P-256 and an RSA 3072 server
certificate (cryptography), runs `openssl ocsp` as the CA's OCSP responder, renders
deploy/nginx/ with deploy/nginx/render.py into its own prefix under a temporary directory
(pid, logs and temp paths there too) and starts nginx on unprivileged loopback ports in
front of pytest-django's live server.
"""

from __future__ import annotations

import datetime
import http.client
import importlib.util
import os
import re
import shutil
import socket
import ssl
import subprocess
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID
from django.conf import settings as django_settings

REPO = Path(django_settings.BASE_DIR)
NGINX = os.environ.get("AUTHSERVER_NGINX", shutil.which("nginx") or "/usr/sbin/nginx")
OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
FRONT = "auth.authserver.test"
BACK = "api.auth.authserver.test"

# deploy/nginx/render.py, the operator's installer, renders the configuration here too.
_spec = importlib.util.spec_from_file_location("authserver_nginx_render", REPO / "deploy" / "nginx" / "render.py")
assert _spec is not None
assert _spec.loader is not None
nginx_render = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(nginx_render)


def require_nginx() -> None:
    if not Path(NGINX).exists():
        pytest.skip(
            f"nginx is not installed ({NGINX} missing): install Debian's package "
            "(apt-get install nginx); .ci/run does this when it is missing"
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---- certificates --------------------------------------------------------------------


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem_key(key: Any) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@dataclass
class Pki:
    directory: Path
    ca_cert: Path
    ca_key: Path
    ocsp_url: str
    leaves: list[x509.Certificate] = field(default_factory=list)


def make_pki(directory: Path, ocsp_url: str) -> Pki:
    """A CA, and for the front and back channel an ECDSA P-256 and an RSA 3072 certificate."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("authserver test CA"))
        .issuer_name(_name("authserver test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pki = Pki(directory, directory / "ca.pem", directory / "ca.key", ocsp_url)
    pki.ca_cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    pki.ca_key.write_bytes(_pem_key(ca_key))
    for channel, host in (("front", FRONT), ("back", BACK)):
        target = directory / "tls" / channel
        target.mkdir(parents=True)
        (target / "chain.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        for kind, key in (
            ("ecdsa", ec.generate_private_key(ec.SECP256R1())),
            ("rsa", rsa.generate_private_key(65537, 3072)),
        ):
            leaf = (
                x509.CertificateBuilder()
                .subject_name(_name(host))
                .issuer_name(ca.subject)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
                .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .add_extension(
                    x509.AuthorityInformationAccess(
                        [
                            x509.AccessDescription(
                                AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(ocsp_url)
                            )
                        ]
                    ),
                    critical=False,
                )
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
                .sign(ca_key, hashes.SHA256())
            )
            (target / f"{kind}.crt").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
            (target / f"{kind}.key").write_bytes(_pem_key(key))
            (target / f"{kind}.key").chmod(0o600)
            pki.leaves.append(leaf)
    return pki


def write_ocsp_index(pki: Pki) -> Path:
    """openssl ca's index.txt: every leaf valid."""
    lines = []
    for leaf in pki.leaves:
        expiry = leaf.not_valid_after_utc.strftime("%y%m%d%H%M%SZ")
        lines.append(f"V\t{expiry}\t\t{leaf.serial_number:X}\tunknown\t/CN={leaf.subject.rfc4514_string()[3:]}")
    index = pki.directory / "index.txt"
    index.write_text("\n".join(lines) + "\n")
    (pki.directory / "index.txt.attr").write_text("unique_subject = no\n")
    return index


# ---- nginx ---------------------------------------------------------------------------


def main_config(prefix: Path) -> str:
    """An nginx.conf like Debian's: its http-level ssl_protocols still allows TLS 1.0 and 1.1,
    so the repository's server blocks must override it."""
    user = "user root root;\n" if os.geteuid() == 0 else ""
    mime = "include /etc/nginx/mime.types;" if Path("/etc/nginx/mime.types").exists() else ""
    temp = "\n".join(
        f"    {name}_temp_path {prefix / 'tmp' / name};"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""{user}worker_processes 1;
pid {prefix / "nginx.pid"};
error_log {prefix / "logs" / "error.log"} info;
events {{ worker_connections 64; }}
http {{
    ssl_protocols TLSv1 TLSv1.1 TLSv1.2 TLSv1.3;
    ssl_prefer_server_ciphers on;
    {mime}
    default_type application/octet-stream;
    access_log {prefix / "logs" / "access.log"};
{temp}
    include conf.d/*.conf;
}}
"""


@dataclass
class Nginx:
    prefix: Path
    https_port: int
    http_port: int
    pki: Pki

    @property
    def config(self) -> Path:
        return self.prefix / "nginx.conf"

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [NGINX, "-p", f"{self.prefix}/", "-c", str(self.config), *args],
            capture_output=True,
            text=True,
            timeout=30,
        )

    def context(self, **kwargs: Any) -> ssl.SSLContext:
        return client_context(self.pki.ca_cert, **kwargs)

    def handshake(self, server_name: str = FRONT, **kwargs: Any) -> ssl.SSLSocket:
        raw = socket.create_connection(("127.0.0.1", self.https_port), timeout=10)
        try:
            return self.context(**kwargs).wrap_socket(raw, server_hostname=server_name)
        except Exception:
            raw.close()
            raise

    def request(
        self, host: str, method: str, path: str, *, headers: dict[str, str] | None = None, body: str | None = None
    ) -> tuple[http.client.HTTPResponse, bytes]:
        connection = http.client.HTTPSConnection(host, self.https_port, context=self.context(), timeout=15)
        connection.sock = self.handshake(host)
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        content = response.read()
        connection.close()
        return response, content


def client_context(
    cafile: Path,
    *,
    version: ssl.TLSVersion | None = None,
    ciphers: str | None = None,
) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile=str(cafile))
    if version is not None:
        with warnings.catch_warnings():  # TLSv1 and TLSv1_1 are deprecated names: that is the point
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = context.maximum_version = version
        if version < ssl.TLSVersion.TLSv1_2:
            # OpenSSL 3 refuses TLS 1.0/1.1 itself below security level 0; lower it so the
            # refusal we see is the server's.
            context.set_ciphers("DEFAULT:@SECLEVEL=0")
    if ciphers is not None:
        context.set_ciphers(ciphers)
    return context


def install(
    prefix: Path,
    pki: Pki,
    upstream: str,
    http_port: int,
    https_port: int,
    groups: str = "classic",
    extra: dict[str, str] | None = None,
) -> None:
    prefix.mkdir(parents=True, exist_ok=True)
    for name in ("logs", "tmp"):
        (prefix / name).mkdir(exist_ok=True)
    shutil.copytree(pki.directory / "tls", prefix / "tls", dirs_exist_ok=True)
    (prefix / "static").mkdir(exist_ok=True)
    (prefix / "static" / "probe.css").write_text("body { color: #111; }\n")
    nginx_render.install(
        prefix,
        {
            **nginx_render.DEFAULTS,
            "NGINX_FRONT_SERVER_NAME": FRONT,
            "NGINX_BACK_SERVER_NAME": BACK,
            "NGINX_FRONT_LISTEN": f"127.0.0.1:{https_port}",
            "NGINX_BACK_LISTEN": f"127.0.0.1:{https_port}",
            "NGINX_HTTP_LISTEN": f"127.0.0.1:{http_port}",
            "NGINX_UPSTREAM": upstream,
            "NGINX_STATIC_ROOT": str(prefix / "static"),
            "NGINX_RESOLVER": "127.0.0.1",
            "NGINX_TLS_GROUPS": groups,
            "NGINX_ACCESS_LOG": str(prefix / "logs" / "authserver-access.log"),
            **(extra or {}),
        },
    )
    (prefix / "nginx.conf").write_text(main_config(prefix))


def _wait_for_port(port: int, process: subprocess.Popen[Any], log: Path) -> None:
    for _ in range(100):
        if process.poll() is not None:
            raise RuntimeError(f"nginx exited: {log.read_text() if log.exists() else ''}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("nginx did not start listening")


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pki]:
    require_nginx()
    directory = tmp_path_factory.mktemp("pki")
    ocsp_port = free_port()
    pki = make_pki(directory, f"http://127.0.0.1:{ocsp_port}")
    index = write_ocsp_index(pki)
    responder = subprocess.Popen(
        [
            OPENSSL,
            "ocsp",
            "-index",
            str(index),
            "-port",
            str(ocsp_port),
            "-CA",
            str(pki.ca_cert),
            "-rsigner",
            str(pki.ca_cert),
            "-rkey",
            str(pki.ca_key),
            "-ignore_err",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(directory / "ocsp.log").open("w"),
    )
    yield pki
    responder.terminate()
    responder.wait(timeout=10)


def start_nginx(
    prefix: Path,
    pki: Pki,
    upstream: str,
    *,
    extra: dict[str, str] | None = None,
    files: dict[str, bytes] | None = None,
) -> Iterator[Nginx]:
    """Render and start nginx; ``extra``: more NGINX_* values, ``files``: more files under the prefix."""
    server = Nginx(prefix, https_port=free_port(), http_port=free_port(), pki=pki)
    install(prefix, pki, upstream, server.http_port, server.https_port, extra=extra)
    for relative, content in (files or {}).items():
        (prefix / relative).write_bytes(content)
    checked = server.run("-t")
    assert checked.returncode == 0, checked.stderr
    process = subprocess.Popen(
        [NGINX, "-p", f"{prefix}/", "-c", str(server.config), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=(prefix / "logs" / "stderr.log").open("w"),
    )
    try:
        _wait_for_port(server.https_port, process, prefix / "logs" / "stderr.log")
        yield server
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def tls_nginx(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    """nginx for the handshake tests: no upstream (a closed port), so no database either."""
    yield from start_nginx(tmp_path_factory.mktemp("nginx-tls"), pki, f"127.0.0.1:{free_port()}")


@pytest.fixture(scope="session")
def nginx(pki: Pki, live_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    """nginx in front of the live server: front and back channel on one port (SNI)."""
    upstream = urlsplit(live_server.url)
    host = "127.0.0.1" if upstream.hostname == "localhost" else upstream.hostname
    yield from start_nginx(tmp_path_factory.mktemp("nginx"), pki, f"{host}:{upstream.port}")


@pytest.fixture
def behind_nginx(settings: Any, live_server: Any) -> None:
    """The settings production uses behind nginx, for the live server."""
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, FRONT, BACK]
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")


def openssl_version_of_nginx() -> tuple[int, int]:
    """The OpenSSL nginx runs with (nginx -V: "running with OpenSSL x.y.z", else "built with")."""
    output = subprocess.run([NGINX, "-V"], capture_output=True, text=True, timeout=10).stderr
    match = re.search(r"running with OpenSSL (\d+)\.(\d+)", output) or re.search(
        r"built with OpenSSL (\d+)\.(\d+)", output
    )
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)
