"""Cost of one client-secret check: Django's PBKDF2 hasher vs the keyed SHA-256 we use.

Run from the repository root:

    .venv/bin/python bench/secret_hash.py [--repeat 7]

A client secret is 32 random bytes (43 characters, ``secrets.token_urlsafe(32)``). The
server stores HMAC-SHA256(pepper, secret) and finds the credential by that hash
(``authserver.oauth.client_auth.hash_client_secret``); the alternative is Django's default
password hasher, PBKDF2-HMAC-SHA256 with Django's iteration count, verified per request.
Both are timed with ``timeit`` on one core; the figure is the median of the repeats.
See docs/decisions/0003-client-secret-hash.md for what the numbers decided.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import platform
import secrets
import statistics
import sys
import timeit
from pathlib import Path

import django
from django.conf import settings

REPO = Path(__file__).resolve().parent.parent
PEPPER = secrets.token_urlsafe(32)  # 32 random bytes, as AUTHSERVER_SECRET_PEPPER holds them
SECRET = secrets.token_urlsafe(32)  # 43 characters, as generate_client_secret() makes them


def _setup() -> None:
    # Only what the two code paths read; no database, no project settings module.
    settings.configure(
        PASSWORD_HASHERS=["django.contrib.auth.hashers.PBKDF2PasswordHasher"],
        AUTHSERVER_SECRET_PEPPER=PEPPER,
        USE_TZ=True,
    )
    django.setup()
    sys.path.insert(0, str(REPO))


def _median_seconds(statement, *, number: int, repeat: int) -> float:
    """Median time of one call, over ``repeat`` runs of ``number`` calls each."""
    runs = timeit.repeat(statement, number=number, repeat=repeat)
    return statistics.median(runs) / number


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="timeit repeats; the median is reported")
    parser.add_argument("--hmac-number", type=int, default=200_000, help="HMAC checks per repeat")
    parser.add_argument("--pbkdf2-number", type=int, default=1, help="PBKDF2 checks per repeat")
    args = parser.parse_args()
    _setup()

    from django.contrib.auth.hashers import PBKDF2PasswordHasher

    from authserver.oauth.client_auth import hash_client_secret

    # The project's function is exactly HMAC-SHA256(pepper, secret); say so before timing it.
    expected = hmac.new(PEPPER.encode(), SECRET.encode(), hashlib.sha256).hexdigest()
    assert hash_client_secret(SECRET) == expected, "hash_client_secret is no longer HMAC-SHA256"

    hasher = PBKDF2PasswordHasher()
    encoded = hasher.encode(SECRET, hasher.salt())
    assert hasher.verify(SECRET, encoded)

    pbkdf2 = _median_seconds(lambda: hasher.verify(SECRET, encoded), number=args.pbkdf2_number, repeat=args.repeat)
    keyed = _median_seconds(lambda: hash_client_secret(SECRET), number=args.hmac_number, repeat=args.repeat)

    print(f"machine: {_cpu_model()}, Python {platform.python_version()}, Django {django.get_version()}")
    print(f"secret: {len(SECRET)} characters; pepper: 32 bytes; median of {args.repeat} repeats, one core")
    print()
    print(f"{'method':<52} {'µs per check':>14} {'checks/s':>12}")
    rows = [
        (f"PBKDF2-HMAC-SHA256, {hasher.iterations:,} iterations (verify)", pbkdf2),
        ("HMAC-SHA256 with pepper (hash_client_secret)", keyed),
    ]
    for label, seconds in rows:
        print(f"{label:<52} {seconds * 1e6:>14,.2f} {1 / seconds:>12,.1f}")
    print()
    print(f"PBKDF2 costs {pbkdf2 / keyed:,.0f} times as much per check.")


if __name__ == "__main__":
    main()
