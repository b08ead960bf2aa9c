"""The NCSC TLS rules, checked on nginx's own dump of its running configuration (``nginx -T``).

``nginx -T`` prints every configuration file it read, each after a line
``# configuration file <path>:``. This module parses them (directives, blocks, includes),
finds each server block that listens with ``ssl`` and checks what nginx will do there:
settings given at ``http`` level count for a server unless the server overrides them, the
way nginx inherits them. Certificates are read from disk when this process may read them.
"""

from __future__ import annotations

import fnmatch
import re
import ssl
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from .compliance import MISS, PASS, SKIP, Finding

NCSC = "NCSC TLS guidelines 2025"
_FILE_HEADER = re.compile(r"^# configuration file (.+):$", re.MULTILINE)
# TLS 1.2 suites NCSC rates good or sufficient: ECDHE key exchange with an AEAD cipher.
_TLS12_SUITE = re.compile(r"^ECDHE-(ECDSA|RSA)-(AES(128|256)-GCM-SHA(256|384)|CHACHA20-POLY1305)$")
_GROUPS_OK = {"X25519MLKEM768", "X25519", "X448", "prime256v1", "secp256r1", "secp384r1", "P-256", "P-384"}
PQC_GROUP = "X25519MLKEM768"


@dataclass
class Directive:
    name: str
    args: list[str]
    block: list[Directive] | None = None


@dataclass
class Server:
    names: list[str]
    prefix: PurePosixPath
    directives: dict[str, list[list[str]]] = field(default_factory=dict)
    location_headers: list[tuple[str, list[list[str]]]] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.names[0] if self.names else "_"

    @property
    def rejects_handshakes(self) -> bool:
        """A catch-all that refuses unknown names: it serves nothing, but as the default
        server of its socket it still decides the protocol version and the cipher suites."""
        return (self.directives.get("ssl_reject_handshake") or [["off"]])[-1] == ["on"]


def _tokens(text: str) -> list[str]:
    tokens: list[str] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char.isspace():
            i += 1
        elif char == "#":
            while i < n and text[i] != "\n":
                i += 1
        elif char in "{};":
            tokens.append(char)
            i += 1
        elif char in "\"'":
            j, value = i + 1, []
            while j < n and text[j] != char:
                if text[j] == "\\" and j + 1 < n:
                    j += 1
                value.append(text[j])
                j += 1
            tokens.append("".join(value))
            i = j + 1
        else:
            j = i
            while j < n and not text[j].isspace() and text[j] not in "{};":
                j += 1
            tokens.append(text[i:j])
            i = j
    return tokens


def _parse(tokens: list[str], position: int = 0) -> tuple[list[Directive], int]:
    directives: list[Directive] = []
    words: list[str] = []
    while position < len(tokens):
        token = tokens[position]
        position += 1
        if token == ";":
            if words:
                directives.append(Directive(words[0], words[1:]))
            words = []
        elif token == "{":
            block, position = _parse(tokens, position)
            directives.append(Directive(words[0] if words else "", words[1:], block))
            words = []
        elif token == "}":
            return directives, position
        else:
            words.append(token)
    return directives, position


class Dump:
    """The files of one ``nginx -T`` run, with includes resolved against each other."""

    def __init__(self, text: str) -> None:
        parts = _FILE_HEADER.split(text)
        self.files = {parts[i].strip(): parts[i + 1] for i in range(1, len(parts) - 1, 2)}
        self.main = next(iter(self.files), "")
        self.prefix = PurePosixPath(self.main).parent

    def tree(self) -> list[Directive]:
        return self._expand(_parse(_tokens(self.files.get(self.main, "")))[0], depth=0)

    def _expand(self, directives: list[Directive], depth: int) -> list[Directive]:
        expanded: list[Directive] = []
        for directive in directives:
            if directive.name == "include" and directive.args and depth < 16:
                pattern = directive.args[0]
                if not pattern.startswith("/"):
                    pattern = str(self.prefix / pattern)
                for path in sorted(p for p in self.files if fnmatch.fnmatch(p, pattern)):
                    expanded += self._expand(_parse(_tokens(self.files[path]))[0], depth + 1)
            else:
                if directive.block is not None:
                    directive.block = self._expand(directive.block, depth)
                expanded.append(directive)
        return expanded


def _collect(directives: list[Directive]) -> dict[str, list[list[str]]]:
    found: dict[str, list[list[str]]] = {}
    for directive in directives:
        if directive.block is None:
            found.setdefault(directive.name, []).append(directive.args)
    return found


def tls_servers(text: str) -> list[Server]:
    """The server blocks that terminate TLS, with the http-level settings they inherit."""
    servers: list[Server] = []
    dump = Dump(text)
    for http in (d for d in dump.tree() if d.name == "http" and d.block is not None):
        inherited = _collect(http.block or [])
        for block in (d.block for d in http.block or [] if d.name == "server" and d.block is not None):
            own = _collect(block)
            if not any("ssl" in args for args in own.get("listen", [])):
                continue
            merged = {**inherited, **own}
            if "add_header" not in own:  # nginx: a level with add_header inherits none
                merged["add_header"] = inherited.get("add_header", [])
            names = [name for args in own.get("server_name", []) for name in args]
            server = Server(names=names, prefix=dump.prefix, directives=merged)
            for location in (d for d in block if d.name == "location" and d.block is not None):
                headers = _collect(location.block or []).get("add_header")
                if headers is not None:
                    server.location_headers.append((" ".join(location.args), headers))
            servers.append(server)
    return servers


def _value(server: Server, name: str) -> list[str] | None:
    values = server.directives.get(name)
    return values[-1] if values else None


def _server_problems(server: Server) -> dict[str, list[str]]:
    """Per check id, what this server does wrong."""
    problems: dict[str, list[str]] = {key: [] for key in _CHECKS}
    protocols = set(_value(server, "ssl_protocols") or ["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"])
    if not protocols or not protocols <= {"TLSv1.2", "TLSv1.3"}:
        problems["tls.protocols"].append(f"ssl_protocols {' '.join(sorted(protocols))}")
    ciphers = (_value(server, "ssl_ciphers") or ["HIGH:!aNULL:!MD5"])[0].split(":")
    weak = [suite for suite in ciphers if not _TLS12_SUITE.match(suite)]
    if weak:
        problems["tls.ciphers"].append(f"ssl_ciphers has {', '.join(weak[:4])}")
    if (_value(server, "ssl_prefer_server_ciphers") or ["off"])[0] != "on":
        problems["tls.server-order"].append("ssl_prefer_server_ciphers is not on")
    if (_value(server, "ssl_early_data") or ["off"])[0] != "off":
        problems["tls.no-0rtt"].append("ssl_early_data is on")
    groups = (_value(server, "ssl_ecdh_curve") or ["auto"])[0].split(":")
    if groups != ["auto"] and not set(groups) <= _GROUPS_OK:
        problems["tls.groups"].append(f"ssl_ecdh_curve has {sorted(set(groups) - _GROUPS_OK)}")
    elif groups == ["auto"]:
        problems["tls.groups"].append("ssl_ecdh_curve is not set (OpenSSL's defaults)")
    if server.rejects_handshakes:
        return problems
    if (_value(server, "ssl_stapling") or ["off"])[0] != "on":
        problems["tls.ocsp-stapling"].append("ssl_stapling is not on")
    if not _has_hsts(server.directives.get("add_header", [])):
        problems["tls.hsts"].append("no Strict-Transport-Security header of a year or more")
    for location, headers in server.location_headers:
        if not _has_hsts(headers):
            problems["tls.hsts"].append(f"location {location} replaces the headers without HSTS")
    problems["tls.certificates"] = _certificate_problems(server)
    return problems


def _has_hsts(headers: list[list[str]]) -> bool:
    for args in headers:
        if len(args) >= 2 and args[0].lower() == "strict-transport-security":
            match = re.search(r"max-age=(\d+)", args[1])
            if match and int(match.group(1)) >= 31536000:
                return True
    return False


def _certificate_problems(server: Server) -> list[str]:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    problems, read = [], 0
    for (name,) in (args[:1] for args in server.directives.get("ssl_certificate", []) if args):
        path = str(server.prefix / name)  # nginx reads relative paths from its prefix
        try:
            with open(path, "rb") as handle:
                certificate = x509.load_pem_x509_certificate(handle.read())
        except (OSError, ValueError):
            continue
        read += 1
        key = certificate.public_key()
        if isinstance(key, rsa.RSAPublicKey) and key.key_size < 3072:
            problems.append(f"{path}: RSA {key.key_size} (at least 3072)")
        elif isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name not in ("secp256r1", "secp384r1"):
            problems.append(f"{path}: curve {key.curve.name} (P-256 or P-384)")
        elif not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
            problems.append(f"{path}: {type(key).__name__}")
    if not read:
        problems.append("SKIP: the certificate files are not readable here")
    return problems


_CHECKS = {
    "tls.protocols": "TLS 1.3 and 1.2 only",
    "tls.ciphers": "TLS 1.2 with ECDHE and AEAD suites only (no CBC, DHE or static RSA)",
    "tls.server-order": "The server's cipher order",
    "tls.no-0rtt": "No 0-RTT (early data)",
    "tls.ocsp-stapling": "OCSP stapling",
    "tls.groups": "Key exchange groups NCSC rates good",
    "tls.hsts": "HSTS on every response nginx sends",
    "tls.certificates": "Certificates RSA >= 3072 or ECDSA P-256/P-384",
}


def tls_findings(text: str | None) -> list[Finding]:
    if not text:
        reason = "no nginx configuration given (manage.py compliance --nginx-config, from nginx -T)"
        return [Finding(key, title, NCSC, SKIP, reason) for key, title in _CHECKS.items()] + [_pqc_finding([])]
    servers = tls_servers(text)
    if not servers:
        return [Finding(key, title, NCSC, MISS, "no server block listens with ssl") for key, title in _CHECKS.items()]
    findings = []
    per_server = [(server, _server_problems(server)) for server in servers]
    for key, title in _CHECKS.items():
        problems = [
            f"{server.label}: {p}" for server, found in per_server for p in found[key] if not p.startswith("SKIP")
        ]
        serving = [found for server, found in per_server if not server.rejects_handshakes] or [{key: []}]
        skipped = all(any(p.startswith("SKIP") for p in found[key]) for found in serving)
        if problems:
            findings.append(Finding(key, title, NCSC, MISS, "; ".join(problems)))
        elif skipped:
            findings.append(Finding(key, title, NCSC, SKIP, "the certificate files are not readable here"))
        else:
            findings.append(Finding(key, title, NCSC, PASS, f"{len(servers)} TLS server block(s)"))
    findings.append(_pqc_finding(servers))
    findings.append(
        Finding(
            "tls.no-compression",
            "No TLS compression",
            NCSC,
            PASS if ssl.OPENSSL_VERSION_INFO >= (1, 1, 0) else MISS,
            f"{ssl.OPENSSL_VERSION}: no TLS compression unless built with it",
        )
    )
    return findings


def _pqc_finding(servers: list[Server]) -> Finding:
    title = f"{PQC_GROUP} offered first (hybrid post-quantum key exchange)"
    offered = [s for s in servers if (_value(s, "ssl_ecdh_curve") or [""])[0].split(":")[0] == PQC_GROUP]
    if servers and len(offered) == len(servers):
        return Finding("tls.pqc", title, NCSC, PASS, "every TLS server block")
    if ssl.OPENSSL_VERSION_INFO < (3, 5):
        detail = (
            f"{ssl.OPENSSL_VERSION} has no ML-KEM; with OpenSSL >= 3.5 include "
            "snippets/authserver-tls-groups-pqc.conf (deploy/nginx/README.md)"
        )
        return Finding("tls.pqc", title, NCSC, SKIP, detail)
    return Finding(
        "tls.pqc", title, NCSC, MISS, "this OpenSSL has ML-KEM: include snippets/authserver-tls-groups-pqc.conf"
    )
