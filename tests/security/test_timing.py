"""Timing-safe comparison of secrets and hashes (RFC 6819 §5.1.4.1.x; CWE-208), checked over the
source: a secret is either compared with ``hmac.compare_digest`` (or Django's
``constant_time_compare``), or never compared at all, only looked up by a keyed hash of the
whole value, which an attacker cannot steer byte by byte.

Three parts: the inventory of every place a presented secret meets a stored one, each with its
mechanism; a scan of the whole code base for an ``==``/``!=``/``in`` on anything named like a
secret; and the library functions the server leans on for the rest.
"""

from __future__ import annotations

import ast
import inspect
import re
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("authserver", "clients", "onboarding")

CONSTANT_TIME = re.compile(r"\b(hmac\.compare_digest|compare_digest|constant_time_compare)\(")


def _function_source(dotted: str) -> str:
    module_name, _, attribute = dotted.rpartition(":")
    module = __import__(module_name, fromlist=["_"])
    target: Any = module
    for part in attribute.split("."):
        target = getattr(target, part)
    return textwrap.dedent(inspect.getsource(target))


# (where, how it is safe, a pattern its source must contain)
COMPARISON_POINTS: list[tuple[str, str, str]] = [
    # Client secrets at the token, introspection and revocation endpoints: the keyed hash of the
    # presented secret against each usable secret's, in constant time (process-local copies).
    ("authserver.oauth.validator:Validator._authenticate_secret", "constant time", r"compare_digest\("),
    # RFC 7592 registration access token: constant time, and the same work for an unknown client.
    ("clients.services.dcr:client_for_registration_token", "constant time", r"compare_digest\("),
    # RFC 7592 §2.2: a client_secret presented in an update must be the current one.
    ("clients.services.dcr:_check_secret", "constant time", r"compare_digest\("),
    # RFC 7591 §3 initial access tokens: keyed hash lookup.
    ("clients.services.registration:initial_access_token_lookup", "keyed hash", r"token_hash=hash_client_secret\("),
    # Invitation links: hash lookup of a 256-bit random token.
    ("onboarding.services.memberships:invitation_accept", "hash lookup", r"token_hash=hash_token\("),
    # The Prometheus endpoint's bearer token.
    ("authserver.views:metrics", "constant time", r"compare_digest\("),
    # The bootstrap command's demo secret (operator input against the stored hash).
    (
        "authserver.management.commands.bootstrap:Command._demo_api_secret",
        "constant time",
        r"compare_digest\(",
    ),
    # Email verification links: Django's signing (HMAC, constant-time check).
    ("onboarding.accounts:user_for_verification_token", "signed", r"signing\.loads\("),
    # Access tokens by the resource endpoints and introspection: SHA-256 checksum lookup.
    ("authserver.oauth.validator:Validator._load_access_token", "hash lookup", r"token_checksum=checksum"),
    ("authserver.oauth.introspection:_find_access_token", "hash lookup", r"token_checksum=checksum"),
    ("authserver.oauth.introspection:_find_refresh_token", "hash lookup", r"token_checksum=checksum"),
    # Client assertions: a signature check by PyJWT, then the jti replay cache.
    ("authserver.oauth.client_auth:verify_assertion", "signature", r"jwt\.decode\("),
]


@pytest.mark.parametrize(("where", "how", "pattern"), COMPARISON_POINTS, ids=[p[0] for p in COMPARISON_POINTS])
def test_each_secret_comparison_point_is_timing_safe(where, how, pattern):
    source = _function_source(where)
    assert re.search(pattern, source), f"{where} should compare by {how} ({pattern})"
    # And never compares the presented value with == / != in Python.
    assert not _naive_comparisons(ast.parse(source)), (where, _naive_comparisons(ast.parse(source)))


def test_the_keyed_hash_is_an_hmac_with_the_pepper():
    """A lookup by hash is safe only when the attacker cannot compute the hash: HMAC, keyed."""
    from authserver.oauth import client_auth

    source = inspect.getsource(client_auth.hash_client_secret)
    assert "hmac.new(settings.AUTHSERVER_SECRET_PEPPER" in source


# ---- the whole code base --------------------------------------------------------------------------------

# Identifiers whose value is a secret, a credential, or a hash or signature of one.
SECRETISH = re.compile(
    r"(secret|password|passwd|passcode|token|digest|verifier|signature|checksum|pepper|otp|mac|hash)", re.I
)
# Named like one, but not a secret: kinds, methods, hints, settings switches, lengths.
NOT_SECRET = re.compile(
    r"(token_type|token_endpoint|auth_method|_methods?$|_enabled$|token_format|lifetime|"
    r"grant_type|_hint$|token_family|token_rate|_kind$|_kinds$|_cookie$|^len$|machine)",
    re.I,
)
# Comparisons the scan flags that were reviewed and are not of secrets (the reason beside each).
ALLOWED: set[str] = set()


def _last_name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Subscript):
        return _last_name(node.value)
    if isinstance(node, ast.Call):
        return _last_name(node.func)
    return None


def _secretish(node: ast.AST) -> bool:
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) and node.attr.isupper():
        return False  # an enum member such as ClientCredential.Kind.SECRET
    name = _last_name(node)
    if not name or name.isupper():  # a constant such as SECRET_METHODS
        return False
    return bool(SECRETISH.search(name) and not NOT_SECRET.search(name))


def _naive_comparisons(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        if not any(isinstance(op, ast.Eq | ast.NotEq | ast.In | ast.NotIn) for op in node.ops):
            continue
        operands = [node.left, *node.comparators]
        if any(isinstance(operand, ast.Constant) for operand in operands):
            continue  # against a literal (None, "", a fixed name): not a secret comparison
        if any(_secretish(operand) for operand in operands):
            text = ast.unparse(node)
            if text not in ALLOWED:
                found.append(text)
    return found


def _sources() -> list[Path]:
    return [
        path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if "migrations" not in path.parts
    ]


def test_no_secret_is_compared_with_a_plain_equality_anywhere():
    offenders = [
        f"{path.relative_to(ROOT)}:{text}"
        for path in _sources()
        for text in _naive_comparisons(ast.parse(path.read_text(), filename=str(path)))
    ]
    assert offenders == [], "compare secrets with hmac.compare_digest or look them up by keyed hash"


def test_the_scan_would_catch_a_naive_comparison():
    """The scan is not blind: the comparisons it exists to find are found."""
    for code in (
        "if presented_secret == credential.secret: pass",
        "ok = token != stored_token",
        "match = digest == expected_digest",
        "found = registration_token_hash == hash_client_secret(token)",
        "ok = password in passwords",
    ):
        assert _naive_comparisons(ast.parse(code)), code
    for code in ("ok = kind == ClientCredential.Kind.SECRET", "ok = token is None", "ok = method in SECRET_METHODS"):
        assert not _naive_comparisons(ast.parse(code)), code


# ---- what the libraries do for us ------------------------------------------------------------------------

LIBRARY_POINTS: list[tuple[str, Callable[[], Any]]] = [
    # Passwords (sign-in, the admin): Django's hashers.
    ("password hash", lambda: __import__("django.contrib.auth.hashers", fromlist=["_"]).PBKDF2PasswordHasher.verify),
    (
        "password hash (md5, tests)",
        lambda: __import__("django.contrib.auth.hashers", fromlist=["_"]).MD5PasswordHasher.verify,
    ),
    # Password-reset links.
    (
        "password reset token",
        lambda: __import__("django.contrib.auth.tokens", fromlist=["_"]).PasswordResetTokenGenerator.check_token,
    ),
    # CSRF tokens (consent, portal, admin, API sessions).
    ("csrf token", lambda: __import__("django.middleware.csrf", fromlist=["_"])._does_token_match),
    # Signed values (email verification links, signed cookies).
    ("signed value", lambda: __import__("django.core.signing", fromlist=["_"]).Signer.unsign),
]


@pytest.mark.parametrize(("what", "function"), LIBRARY_POINTS, ids=[p[0] for p in LIBRARY_POINTS])
def test_library_checks_we_rely_on_are_constant_time(what, function):
    source = inspect.getsource(function())
    assert CONSTANT_TIME.search(source), what
