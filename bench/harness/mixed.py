"""Load without loss: minutes of mixed traffic with the workers' memory sampled.

Three loads at once against one server: client-credentials token requests (wrk, 16
connections, every 200 body kept), introspection of a token by its resource server (wrk, 8
connections) and signed-in authorization-code flows (bench/harness/flow.py, 2 threads). It
reports what was sent and answered, every error, the workers' resident memory over time
(the first minute against the last), and checks that every access token answered 200 is in
the database afterwards (by its SHA-256, which is all authserver stores of a JWT).
"""

from __future__ import annotations

import hashlib
import json
import statistics
import subprocess
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import psycopg

from . import load, procs
from .targets import Target

LOAD_CPUS = "1"


def _tokens_found(database_url: str, tokens: list[str]) -> int:
    checksums = [hashlib.sha256(token.encode()).hexdigest() for token in tokens]
    found = 0
    with psycopg.connect(database_url) as connection:
        for start in range(0, len(checksums), 5000):
            chunk = checksums[start : start + 5000]
            row = connection.execute(
                "SELECT count(*) FROM oauth2_provider_accesstoken WHERE token_checksum = ANY(%s)", (chunk,)
            ).fetchone()
            found += int(row[0]) if row else 0
    return found


def _window(samples: list[tuple[float, int, int]], start: float, end: float) -> float:
    values = [sample[1] for sample in samples if start <= sample[0] < end]
    return statistics.mean(values) / 2**20 if values else 0.0


def run(target: Target, fixture: dict[str, Any], *, seconds: float, out: Path, database_url: str) -> dict[str, Any]:
    from . import flow

    save = out / "load-tokens"
    subprocess.run(["rm", "-rf", str(save)], check=True)
    client, resource_server = fixture["clients"]["basic"], fixture["clients"]["introspector"]
    form = {"grant_type": "client_credentials", "scope": fixture["scope"], "resource": fixture["resource"]}
    token_request = load.Request(
        "POST",
        target.token,
        {**target.headers, **load.FORM, "Authorization": load.basic(client["client_id"], client["client_secret"])},
        body=urlencode(form),
    )
    server = target.start()
    try:
        # The token to introspect, and a warm-up of every path.
        seed = load.wrk(server.url, token_request, connections=2, seconds=1, cpus=LOAD_CPUS, save=out / "load-seed")
        token = json.loads(next((out / "load-seed").glob("thread-*.txt")).read_text().splitlines()[0])["access_token"]
        introspect_request = load.Request(
            "POST",
            target.introspect or "",
            {
                **target.headers,
                **load.FORM,
                "Authorization": load.basic(resource_server["client_id"], resource_server["client_secret"]),
            },
            body=urlencode({"token": token}),
        )
        answers: dict[str, Any] = {}

        def tokens() -> None:
            answers["token"] = load.wrk(
                server.url, token_request, connections=16, seconds=seconds, cpus=LOAD_CPUS, save=save
            )

        def introspections() -> None:
            answers["introspect"] = load.wrk(
                server.url, introspect_request, connections=8, seconds=seconds, cpus=LOAD_CPUS
            )

        def flows() -> None:
            answers["flow"] = flow.run_flows(
                server.url, fixture, threads=2, seconds=seconds, signed_in=True, headers=target.headers
            )

        with procs.MemorySampler(server.pid, include_root=server.serves_in_root, interval=1.0) as memory:
            threads = [threading.Thread(target=work) for work in (tokens, introspections, flows)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    finally:
        server.stop()

    issued = [
        json.loads(line)["access_token"]
        for path in save.glob("thread-*.txt")
        for line in path.read_text().splitlines()
        if line.strip()
    ]
    found = _tokens_found(database_url, issued)
    first = _window(memory.samples, 0, 60)
    last = _window(memory.samples, seconds - 60, seconds + 5)
    token_answers, introspect_answers, flow_answers = answers["token"], answers["introspect"], answers["flow"]
    return {
        "seconds": seconds,
        "seed_requests": seed["requests"],
        "token": {
            "requests": token_answers["requests"],
            "rps": token_answers["rps"],
            "statuses": token_answers["statuses"],
            "p99_us": token_answers["p99_us"],
            "errors": token_answers["errors"],
        },
        "introspect": {
            "requests": introspect_answers["requests"],
            "rps": introspect_answers["rps"],
            "statuses": introspect_answers["statuses"],
            "p99_us": introspect_answers["p99_us"],
            "errors": introspect_answers["errors"],
        },
        "flow": flow_answers,
        "tokens_answered_200": len(issued),
        "tokens_in_database": found,
        "memory_mb": {
            "first_minute": round(first, 1),
            "last_minute": round(last, 1),
            "growth_percent": round((last - first) / first * 100, 1) if first else None,
            "peak": round(memory.peak_worker / 2**20, 1),
            "samples": [
                (round(t), round(rss / 2**20, 1))
                for t, rss, _total in memory.samples[:: max(1, len(memory.samples) // 60)]
            ],
        },
    }
