"""The servers a benchmark run measures: authserver (under each application server), panva
oidc-provider and vanilla django-oauth-toolkit, each started fresh on a free loopback port,
pinned to the server core."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import ours
from .procs import Server, free_port

REPO = Path(__file__).resolve().parents[2]
OIDC = REPO / "bench" / "references" / "oidc_provider"
DOT = REPO / "bench" / "references" / "dot_vanilla"


@dataclass
class Target:
    """One server in one configuration, and where its endpoints are."""

    key: str
    title: str
    start: Callable[[], Server]
    token: str
    introspect: str | None = None
    revoke: str | None = None
    discovery: str | None = None
    jwks: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    # The token endpoint URL as the server names it: the ``aud`` of client assertions.
    token_url: Callable[[Server], str] = lambda server: server.url
    private_key_jwt: bool = True
    opaque: bool = False  # access tokens are opaque (else JWT)
    # The token endpoint's form for the fixture's resource (JWT) or opaque resource.
    uses_opaque_resource: bool = False


def authserver(env: dict[str, str], out: Path, *, app_server: str, alg: str, opaque: bool = False) -> Target:
    """authserver with access tokens signed with ``alg`` (ES256 or RS256)."""
    env = {**env, "AUTHSERVER_ACCESS_TOKEN_SIGNING_ALG": alg}

    def start() -> Server:
        port = free_port()
        log = out / "logs" / f"authserver-{app_server}.log"
        server = ours.gunicorn(env, port, log) if app_server == "gunicorn" else ours.granian(env, port, log)
        server.start()
        return server

    suffix = ", opaque tokens" if opaque else f", {alg}"
    return Target(
        key=f"authserver-{app_server}-{'opaque' if opaque else alg.lower()}",
        title=f"authserver ({app_server}{suffix})",
        start=start,
        token="/oauth/token",
        introspect="/oauth/introspect",
        revoke="/oauth/revoke",
        discovery="/.well-known/openid-configuration",
        jwks="/oauth/jwks",
        headers=dict(ours.PROXY_HEADERS),
        token_url=lambda server: f"{ours.ISSUER}/oauth/token",
        opaque=opaque,
        uses_opaque_resource=opaque,
    )


def oidc_provider(fixture: Path, out: Path, *, token_format: str, alg: str = "ES256") -> Target:
    def start() -> Server:
        port = free_port()
        server = Server(
            name="oidc-provider",
            command=["node", str(OIDC / "server.mjs")],
            env={
                **os.environ,
                "PORT": str(port),
                "BENCH_FIXTURE": str(fixture),
                "ISSUER": f"http://127.0.0.1:{port}",
                "TOKEN_FORMAT": token_format,
                "ACCESS_TOKEN_ALG": alg,
                "NODE_ENV": "production",
            },
            port=port,
            cwd=REPO,
            log=out / "logs" / "oidc-provider.log",
            ready_path="/.well-known/openid-configuration",
            serves_in_root=True,
        )
        server.start()
        return server

    return Target(
        key=f"oidc-provider-{'opaque' if token_format == 'opaque' else alg.lower()}",
        title=f"oidc-provider ({'opaque' if token_format == 'opaque' else alg})",
        start=start,
        token="/token",
        introspect="/token/introspection",
        revoke="/token/revocation",
        discovery="/.well-known/openid-configuration",
        jwks="/jwks",
        token_url=lambda server: f"{server.url}/token",
        opaque=token_format == "opaque",
    )


def install_oidc_provider() -> None:
    if not (OIDC / "node_modules" / "oidc-provider").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--prefix", str(OIDC)], check=True)


def dot_vanilla(fixture: Path, out: Path, database_url: str, *, hashed: bool) -> Target:
    env = {
        **os.environ,
        "DOT_BENCH_DATABASE_URL": database_url,
        "BENCH_FIXTURE": str(fixture),
        "DOT_HASH": "true" if hashed else "false",
    }

    def start() -> Server:
        subprocess.run(
            [sys.executable, str(DOT / "manage.py"), "seed"], env=env, check=True, capture_output=True, cwd=REPO
        )
        port = free_port()
        # The production shape authserver uses (deploy/gunicorn.conf.py): sync workers, 2 x cores + 1.
        server = Server(
            name="django-oauth-toolkit",
            command=[
                str(REPO / ".venv/bin/gunicorn"),
                "--chdir",
                str(DOT),
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "3",
                "--log-level",
                "warning",
                "dot_vanilla.wsgi:application",
            ],
            env=env,
            port=port,
            cwd=REPO,
            log=out / "logs" / "dot.log",
            ready_path="/o/token/",
        )
        server.start()
        return server

    return Target(
        key=f"dot-{'hashed' if hashed else 'plain'}",
        title=f"django-oauth-toolkit ({'default: PBKDF2 secrets' if hashed else 'secret hashing off'})",
        start=start,
        token="/o/token/",
        introspect="/o/introspect/",
        revoke="/o/revoke_token/",
        private_key_jwt=False,
        opaque=True,
    )
