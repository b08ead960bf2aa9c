"""Client assertions (RFC 7523) made ahead of a run: one per request, each with its own jti.

Signing RSA-2048 costs about 0.3 ms in Python, more than a token request should cost the
server, so the load generator cannot sign as it goes; the harness signs them first, on both
cores, and wrk sends each once (bench/harness/lua/workload.lua).
"""

from __future__ import annotations

import multiprocessing
import time
import uuid
from pathlib import Path
from urllib.parse import urlencode

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def _chunk(args: tuple[str, str, str, str, str, dict[str, str], int, int]) -> list[str]:
    import jwt
    from cryptography.hazmat.primitives import serialization

    pem, alg, kid, client_id, audience, form, count, lifetime = args
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    now = int(time.time())
    bodies = []
    for _ in range(count):
        claims = {
            "iss": client_id,
            "sub": client_id,
            "aud": audience,
            "iat": now,
            "exp": now + lifetime,
            "jti": uuid.uuid4().hex + uuid.uuid4().hex[:8],
        }
        assertion = jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})  # type: ignore[arg-type]
        bodies.append(urlencode({**form, "client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion}))
    return bodies


def write(
    path: Path,
    *,
    client: dict[str, str],
    audience: str,
    form: dict[str, str],
    count: int,
    lifetime: int = 280,
) -> Path:
    """``count`` form bodies with a fresh assertion each, one per line. ``lifetime`` stays under
    the server's limit on how far ahead ``exp`` may be (AUTHSERVER_CLIENT_ASSERTION_MAX_LIFETIME)."""
    processes = max(1, multiprocessing.cpu_count())
    share = -(-count // processes)
    jobs = [
        (client["private_key_pem"], client["alg"], client["kid"], client["client_id"], audience, form, share, lifetime)
        for _ in range(processes)
    ]
    with multiprocessing.Pool(processes) as pool:
        chunks = pool.map(_chunk, jobs)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as output:
        for chunk in chunks:
            output.writelines(body + "\n" for body in chunk)
    return path
