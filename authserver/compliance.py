"""Where the running configuration meets or misses the profiles (``manage.py compliance``).

Each check reads the settings this process runs with (and, given ``nginx -T`` output, the
TLS configuration in front of it) and answers PASS, MISS, or SKIP when it cannot see the
thing it checks. Sources: NL GOV Assurance profile for OAuth 2.0 (OAUTH-NL), the OIDC-NL
profile, RFC 9700, API Design Rules (ADR), KP-APIs access control (KP-AC) and the NCSC TLS
guidelines 2025 (NCSC); the levels and figures are those of STANDARDS.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings

PASS, MISS, SKIP = "PASS", "MISS", "SKIP"

# STANDARDS.md, lifetimes (OAUTH-NL/OIDC-NL "should"): setting -> the most it may be, seconds.
LIFETIME_LIMITS = {
    "AUTHSERVER_ACCESS_TOKEN_LIFETIME": 3600,
    "AUTHSERVER_PUBLIC_CLIENT_ACCESS_TOKEN_LIFETIME": 900,
    "AUTHSERVER_CLIENT_CREDENTIALS_TOKEN_LIFETIME": 6 * 3600,
    "AUTHSERVER_REFRESH_TOKEN_IDLE_LIFETIME": 6 * 3600,
    "AUTHSERVER_REFRESH_TOKEN_ABSOLUTE_LIFETIME": 24 * 3600,
    "AUTHSERVER_ID_TOKEN_LIFETIME": 300,
}
# OAUTH-NL: RS256 must, PS256 should (ES256 is allowed for keys, not as the server's default).
SERVER_SIGNING_ALGS = {"RS256", "PS256"}
ALLOWED_KEY_ALGS = {"RS256", "PS256", "ES256"}
HSTS_MIN_SECONDS = 31536000
ROTATION_TASK = "authserver.tasks.rotate_signing_keys_task"


@dataclass(frozen=True)
class Finding:
    id: str
    title: str
    source: str
    status: str
    detail: str = ""


def _finding(id: str, title: str, source: str, problems: Iterable[str], ok: str = "") -> Finding:
    found = [problem for problem in problems if problem]
    return Finding(id, title, source, MISS if found else PASS, "; ".join(found) or ok)


def _dot(name: str) -> Any:
    return settings.OAUTH2_PROVIDER.get(name)


def _gates(*names: str) -> list[str]:
    return [f"OAUTH2_PROVIDER[{name!r}] is not True" for name in names if _dot(name) is not True]


# ---- protocol (OAUTH-NL, OIDC-NL, RFC 9700, KP-AC) ------------------------------------


def check_pkce() -> Finding:
    from .oauth.views import metadata

    problems = _gates("COMPLIANT_BCP_RFC9700_PKCE_METHOD", "COMPLIANT_BCP_RFC9700_PKCE_REQUIRED")
    if _dot("PKCE_REQUIRED") is not True:
        problems.append("PKCE_REQUIRED is not True for every client")
    if metadata().get("code_challenge_methods_supported") != ["S256"]:
        problems.append("discovery advertises a code_challenge_method other than S256")
    return _finding(
        "oauth.pkce-s256", "PKCE on every authorization request, S256 only", "RFC 9700 §2.1.1; OAUTH-NL", problems
    )


def check_grants() -> Finding:
    from .oauth.views import metadata

    problems = _gates("COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT", "COMPLIANT_BCP_RFC9700_PASSWORD_GRANT")
    document = metadata()
    extra = set(document.get("grant_types_supported", [])) - {
        "authorization_code",
        "client_credentials",
        "refresh_token",
    }
    if extra:
        problems.append(f"discovery advertises grant types {sorted(extra)}")
    if document.get("response_types_supported") != ["code"]:
        problems.append("discovery advertises response types other than code")
    return _finding(
        "oauth.no-implicit-password",
        "No implicit, hybrid or password grant",
        "RFC 9700 §2.1.2, §2.4; OAUTH-NL",
        problems,
    )


def check_redirect_matching() -> Finding:
    problems = _gates("COMPLIANT_BCP_RFC9700_REDIRECT_URI_MATCHING", "COMPLIANT_BCP_RFC9700_REDIRECT_URI_SCHEME")
    if _dot("ALLOW_URI_WILDCARDS"):
        problems.append("ALLOW_URI_WILDCARDS is on")
    if list(_dot("ALLOWED_REDIRECT_URI_SCHEMES") or []) != ["https"]:
        problems.append(f"redirect URI schemes {_dot('ALLOWED_REDIRECT_URI_SCHEMES')} (https only)")
    return _finding(
        "oauth.redirect-exact", "Redirect URIs match exactly, https only", "RFC 9700 §4.1.1; OAUTH-NL", problems
    )


def check_token_storage() -> Finding:
    problems = _gates("COMPLIANT_BCP_RFC9700_TOKEN_STORAGE")
    if (_dot("REFRESH_TOKEN_GRACE_PERIOD_SECONDS") or 0) > 0:
        problems.append("a refresh token grace period keeps the previous token usable")
    return _finding("oauth.token-storage-hashed", "Tokens stored as hashes only", "RFC 9700 §4", problems)


def check_refresh_rotation() -> Finding:
    problems = _gates("COMPLIANT_BCP_RFC9700_REFRESH_TOKEN")
    problems += [
        f"{name} is off" for name in ("ROTATE_REFRESH_TOKEN", "REFRESH_TOKEN_REUSE_PROTECTION") if not _dot(name)
    ]
    return _finding(
        "oauth.refresh-rotation",
        "Refresh tokens rotate, reuse revokes the family",
        "RFC 9700 §4.14.2; OAUTH-NL",
        problems,
    )


def check_authorization_response_iss() -> Finding:
    return _finding(
        "oauth.authz-response-iss",
        "iss in every authorization response",
        "RFC 9207; RFC 9700 §4.4",
        _gates("COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS"),
    )


def check_token_transport() -> Finding:
    return _finding(
        "oauth.no-tokens-in-uri",
        "Access tokens are refused in query strings",
        "RFC 9700 §4.3.2; OAUTH-NL §4; ADR no-sensitive-uris",
        _gates("COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT"),
    )


def check_issuer() -> Finding:
    problems = []
    for name in ("AUTHSERVER_ISSUER", "AUTHSERVER_BACKCHANNEL_URL"):
        value = getattr(settings, name, "")
        if not value:
            continue
        parts = urlsplit(value)
        if parts.scheme != "https" or not parts.netloc or parts.query or parts.fragment:
            problems.append(f"{name} is {value!r}, not an https URL without query or fragment")
    return _finding("oauth.issuer-https", "The issuer (and back channel) is https", "RFC 8414 §2; ADR TLS", problems)


def check_client_secrets() -> Finding:
    return _finding(
        "oauth.client-secrets-off",
        "Client secrets are not accepted",
        "KP-AC (clients should not use secrets); OAUTH-NL private_key_jwt",
        ["AUTHSERVER_CLIENT_SECRETS_ENABLED is on"] if settings.AUTHSERVER_CLIENT_SECRETS_ENABLED else [],
    )


def check_lifetimes() -> Finding:
    problems = [
        f"{name}={getattr(settings, name)} > {limit}"
        for name, limit in LIFETIME_LIMITS.items()
        if getattr(settings, name) > limit
    ]
    return _finding(
        "oauth.lifetimes", "Token lifetimes within the profile", "OAUTH-NL; OIDC-NL (STANDARDS.md)", problems
    )


def check_signing_algorithms() -> Finding:
    problems = []
    for name in ("AUTHSERVER_ACCESS_TOKEN_SIGNING_ALG", "AUTHSERVER_ID_TOKEN_SIGNING_ALG"):
        if getattr(settings, name) not in SERVER_SIGNING_ALGS:
            problems.append(f"{name}={getattr(settings, name)} (RS256 or PS256)")
        if getattr(settings, name) not in settings.AUTHSERVER_SIGNING_ALGORITHMS:
            problems.append(f"{name} is not in AUTHSERVER_SIGNING_ALGORITHMS, so its keys never rotate")
    weaker = set(settings.AUTHSERVER_SIGNING_ALGORITHMS) - ALLOWED_KEY_ALGS
    if weaker:
        problems.append(f"AUTHSERVER_SIGNING_ALGORITHMS has {sorted(weaker)}")
    return _finding(
        "oauth.signing-algs", "Tokens signed with RS256/PS256, nothing weaker", "OAUTH-NL; OIDC-NL", problems
    )


def check_key_rotation() -> Finding:
    problems = []
    days = settings.AUTHSERVER_SIGNING_KEY_ROTATION_DAYS
    if not 0 < days <= 365:
        problems.append(f"AUTHSERVER_SIGNING_KEY_ROTATION_DAYS={days} (1..365)")
    if not any(job.get("task") == ROTATION_TASK for job in settings.CELERY_BEAT_SCHEDULE.values()):
        problems.append("the rotation job is not in CELERY_BEAT_SCHEDULE")
    if settings.AUTHSERVER_SIGNING_KEY_PREPUBLISH_SECONDS < settings.AUTHSERVER_JWKS_MAX_AGE:
        problems.append("next keys are published for less than the JWKS cache lifetime")
    longest = max(getattr(settings, name) for name in LIFETIME_LIMITS if "REFRESH" not in name)
    if longest > settings.AUTHSERVER_SIGNING_KEY_RETENTION_SECONDS:
        problems.append("retired keys leave the JWKS before the tokens they signed expire")
    return _finding(
        "oauth.key-rotation",
        "Signing keys rotate, pre-published and retained",
        "OAUTH-NL; STANDARDS.md discovery/JWKS",
        problems,
    )


def check_consent() -> Finding:
    return _finding(
        "oauth.consent",
        "Consent is asked every time",
        "OAUTH-NL §3.1.4",
        [] if _dot("REQUEST_APPROVAL_PROMPT") == "force" else ["REQUEST_APPROVAL_PROMPT is not 'force'"],
    )


# ---- transport and deployment (ADR, OIDC-NL, NCSC), as Django sees them -----------------


def check_debug() -> Finding:
    return _finding(
        "deploy.debug-off",
        "DEBUG is off",
        "ADR; Django deployment checklist",
        ["DEBUG is on"] if settings.DEBUG else [],
    )


def check_production() -> Finding:
    from .checks import production_problems

    problems = [] if settings.IS_PRODUCTION else [f"AUTHSERVER_ENVIRONMENT is {settings.AUTHSERVER_ENVIRONMENT!r}"]
    problems += [f"{problem.id}: {problem.msg}" for problem in production_problems()]
    return _finding(
        "deploy.production", "Production environment with its own secrets", "authserver.checks (README)", problems
    )


def check_hsts() -> Finding:
    problems = []
    if settings.SECURE_HSTS_SECONDS < HSTS_MIN_SECONDS:
        problems.append(f"SECURE_HSTS_SECONDS={settings.SECURE_HSTS_SECONDS} (at least one year)")
    if not settings.SECURE_HSTS_INCLUDE_SUBDOMAINS:
        problems.append("SECURE_HSTS_INCLUDE_SUBDOMAINS is off")
    return _finding(
        "transport.hsts", "HSTS for a year, subdomains included", "OIDC-NL; ADR security-headers; NCSC", problems
    )


def check_cookies() -> Finding:
    problems = [
        f"{name} is off" for name in ("SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE") if not getattr(settings, name)
    ]
    if not settings.SESSION_COOKIE_HTTPONLY:
        problems.append("SESSION_COOKIE_HTTPONLY is off")
    return _finding("transport.secure-cookies", "Cookies only over https", "ADR TLS; OWASP", problems)


def check_tls_proxy() -> Finding:
    proxied = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    return _finding(
        "transport.tls-proxy",
        "Django knows requests arrived over TLS (behind the proxy)",
        "ADR TLS; STANDARDS.md (offloader headers from configured proxies)",
        [] if proxied else ["AUTHSERVER_BEHIND_TLS_PROXY is off, so Django sees every request as http"],
    )


def check_cors() -> Finding:
    problems = [
        f"{origin!r} is not an https origin"
        for origin in settings.AUTHSERVER_CORS_ALLOWED_ORIGINS
        if origin == "*" or urlsplit(origin).scheme != "https" or urlsplit(origin).path not in ("", "/")
    ]
    return _finding("transport.cors", "CORS by allow-list of https origins", "ADR; STANDARDS.md CORS", problems)


SETTINGS_CHECKS: tuple[Callable[[], Finding], ...] = (
    check_pkce,
    check_grants,
    check_redirect_matching,
    check_token_storage,
    check_refresh_rotation,
    check_authorization_response_iss,
    check_token_transport,
    check_issuer,
    check_client_secrets,
    check_lifetimes,
    check_signing_algorithms,
    check_key_rotation,
    check_consent,
    check_debug,
    check_production,
    check_hsts,
    check_cookies,
    check_tls_proxy,
    check_cors,
)


def evaluate(*, nginx_dump: str | None = None) -> list[Finding]:
    """Every check, in order: the settings, then the TLS rules of the nginx dump (``nginx -T``)."""
    from .nginx_tls import tls_findings

    return [check() for check in SETTINGS_CHECKS] + tls_findings(nginx_dump)
