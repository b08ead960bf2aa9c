"""The benchmark: ``make bench``.

Starts each server in its production shape on loopback, pinned to one core (the server
core), with PostgreSQL, Redis and the load generator (wrk) pinned to the other, and drives it
with every workload at 16 and 64 connections; authserver, panva oidc-provider and vanilla
django-oauth-toolkit take turns within each workload. It reports requests per second, p50
and p99 latency, errors, server CPU per request and peak worker memory, counts SQL
statements per request, runs a mixed load for several minutes with memory sampled (every
token answered 200 must be in the database afterwards), and writes bench/RESULTS.md
(figures, targets, ratios) and bench/out/results.json.

    .venv/bin/python bench/run.py                 # everything (about 40 minutes)
    .venv/bin/python bench/run.py --quick         # 3 s per run, one run, 60 s load: a smoke test
    .venv/bin/python bench/run.py --only token_basic,introspect_jwt_cached --runs 1

Needs a 2-core (or larger) Linux machine with the README's set-up, wrk and Node.js with npm
(Debian packages: wrk, nodejs, npm), PostgreSQL on 127.0.0.1:5432 and Redis on 6379.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import assertions, load, ours, procs, report, targets

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out"
DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/authserver_bench")
DOT_DATABASE_URL = os.environ.get("BENCH_DOT_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/dot_bench")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/10")
SERVER_CPUS, LOAD_CPUS = "0", "1"
CONNECTIONS = (16, 64)


@dataclass
class Workload:
    key: str
    title: str
    targets: list[str]  # Target keys, in the order they take turns
    request: Callable[[targets.Target, procs.Server, dict[str, Any], int], load.Request | None]
    # PBKDF2 at 245 ms a request: more connections than that only queue past wrk's timeout,
    # and the server keeps hashing for clients that gave up.
    connections: tuple[int, ...] = CONNECTIONS


def _form(fixture: dict[str, Any], opaque: bool) -> dict[str, str]:
    if opaque:
        return {
            "grant_type": "client_credentials",
            "scope": fixture["opaque_scope"],
            "resource": fixture["opaque_resource"],
        }
    return {"grant_type": "client_credentials", "scope": fixture["scope"], "resource": fixture["resource"]}


def _headers(target: targets.Target, **extra: str) -> dict[str, str]:
    return {**target.headers, **extra}


def token_basic(target: targets.Target, server: procs.Server, fixture: dict[str, Any], needed: int) -> load.Request:
    client = fixture["clients"]["basic"]
    form = _form(fixture, target.uses_opaque_resource)
    if target.key.startswith("dot"):
        form = {"grant_type": "client_credentials", "scope": fixture["scope"]}
    auth = load.basic(client["client_id"], client["client_secret"])
    return load.Request("POST", target.token, _headers(target, **load.FORM, Authorization=auth), body=urlencode(form))


def token_assertion(alg: str) -> Callable[..., load.Request | None]:
    def build(
        target: targets.Target, server: procs.Server, fixture: dict[str, Any], needed: int
    ) -> load.Request | None:
        if not target.private_key_jwt:
            return None
        bodies = assertions.write(
            OUT / f"assertions-{target.key}-{alg}.txt",
            client=fixture["clients"][alg.lower()],
            audience=target.token_url(server),
            form=_form(fixture, False),
            count=needed,
        )
        return load.Request("POST", target.token, _headers(target, **load.FORM), bodies=bodies)

    return build


def mint(target: targets.Target, server: procs.Server, fixture: dict[str, Any], count: int, opaque: bool) -> list[str]:
    """``count`` fresh access tokens from the server's token endpoint (wrk, saved bodies)."""
    client = fixture["clients"]["basic"]
    form = _form(fixture, opaque and target.key.startswith("authserver"))
    if target.key.startswith("dot"):
        form = {"grant_type": "client_credentials", "scope": fixture["scope"]}
    auth = load.basic(client["client_id"], client["client_secret"])
    request = load.Request(
        "POST", target.token, _headers(target, **load.FORM, Authorization=auth), body=urlencode(form)
    )
    save = OUT / "minted" / target.key
    tokens: list[str] = []
    while len(tokens) < count:
        subprocess.run(["rm", "-rf", str(save)], check=True)
        load.wrk(server.url, request, connections=16, seconds=5, cpus=LOAD_CPUS, save=save)
        for path in save.glob("thread-*.txt"):
            tokens += [json.loads(line)["access_token"] for line in path.read_text().splitlines() if line.strip()]
    return tokens[:count]


def token_pool_request(kind: str, opaque: bool, cached: bool) -> Callable[..., load.Request | None]:
    """Introspection (``kind`` "introspect") or revocation of fresh tokens, one per request,
    or (``cached``) introspection of one token over and over."""

    def build(
        target: targets.Target, server: procs.Server, fixture: dict[str, Any], needed: int
    ) -> load.Request | None:
        path = target.introspect if kind == "introspect" else target.revoke
        if path is None:
            return None
        if kind == "introspect" and (
            (not opaque and target.opaque) or (opaque and not target.opaque and not target.key.startswith("authserver"))
        ):
            return None  # a JWT workload for a server of opaque tokens, or the other way round
        # A resource server introspects; a client revokes its own tokens (RFC 7009 §2.1).
        caller = fixture["clients"]["introspector" if kind == "introspect" else "basic"]
        auth = load.basic(caller["client_id"], caller["client_secret"])
        headers = _headers(target, **load.FORM, Authorization=auth)
        if cached:
            token = mint(target, server, fixture, 1, opaque)[0]
            return load.Request("POST", path, headers, body=urlencode({"token": token}))
        if target.key.startswith("oidc-provider"):
            return None  # its store keeps only the newest 1,000 tokens (bench/references/README.md)
        tokens = mint(target, server, fixture, needed, opaque)
        bodies = OUT / f"pool-{target.key}-{kind}.txt"
        bodies.write_text("".join(urlencode({"token": token}) + "\n" for token in tokens))
        return load.Request("POST", path, headers, bodies=bodies)

    return build


def get(path_of: Callable[[targets.Target], str | None]) -> Callable[..., load.Request | None]:
    def build(
        target: targets.Target, server: procs.Server, fixture: dict[str, Any], needed: int
    ) -> load.Request | None:
        path = path_of(target)
        return None if path is None else load.Request("GET", path, _headers(target))

    return build


def run_target(
    target: targets.Target,
    workload: Workload,
    fixture: dict[str, Any],
    *,
    seconds: float,
    runs: int,
    expected_rps: float,
) -> dict[str, Any] | None:
    """Start the server, build the workload's requests, run every connection count ``runs``
    times, stop the server. Figures per connection count: the median run."""
    server = target.start()
    try:
        needed = int(expected_rps * seconds * runs * len(workload.connections)) + 1000
        request = workload.request(target, server, fixture, needed)
        if request is None:
            return None
        if request.bodies is None:  # warm up (a pool of one-use bodies is not spent on it)
            load.wrk(server.url, request, connections=4, seconds=1, cpus=LOAD_CPUS)
        figures: dict[str, Any] = {}
        for connections in workload.connections:
            samples = []
            for _ in range(runs):
                cpu_before = procs.cpu_seconds(server.pid)
                with procs.MemorySampler(server.pid, include_root=server.serves_in_root) as memory:
                    result = load.wrk(server.url, request, connections=connections, seconds=seconds, cpus=LOAD_CPUS)
                cpu = procs.cpu_seconds(server.pid) - cpu_before
                result["cpu_us_per_request"] = cpu / max(result["requests"], 1) * 1e6
                result["peak_worker_rss_mb"] = memory.peak_worker / 2**20
                samples.append(result)
            samples.sort(key=lambda sample: sample["rps"])
            median = dict(samples[len(samples) // 2])
            median["runs_rps"] = [round(sample["rps"], 1) for sample in samples]
            figures[str(connections)] = median
        return figures
    finally:
        server.stop()


def preflight(references: bool) -> None:
    """wrk from Debian's packages (installed when missing and we may); Node.js for oidc-provider."""
    import shutil

    if shutil.which("wrk") is None:
        if os.geteuid() != 0:
            sys.exit("bench: wrk is missing: apt-get install wrk")
        print("installing wrk (Debian package)", flush=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "wrk"],
            check=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
    if references and (shutil.which("node") is None or shutil.which("npm") is None):
        sys.exit("bench: Node.js and npm are needed for the oidc-provider reference (or pass --skip-references)")
    if (os.cpu_count() or 1) < 2:
        sys.exit("bench: needs two cores (one for the server, one for the load generator and the services)")


def machine() -> dict[str, str]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    versions = {}
    for name, command in {
        "wrk": ["wrk", "--version"],
        "node": ["node", "--version"],
        "postgres": ["psql", "--version"],
        "redis": ["redis-server", "--version"],
    }.items():
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        versions[name] = (
            (result.stdout or result.stderr).strip().splitlines()[0] if (result.stdout or result.stderr) else "?"
        )
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory_gb": f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f}",
        "kernel": platform.release(),
        "python": platform.python_version(),
        **versions,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each wrk run (default 8)")
    parser.add_argument(
        "--runs", type=int, default=3, help="runs per workload, target and connection count; the median is reported"
    )
    parser.add_argument("--load-seconds", type=float, default=300.0, help="length of the mixed load run (default 300)")
    parser.add_argument("--quick", action="store_true", help="3 s runs, one run each, 60 s load: a smoke test")
    parser.add_argument("--only", default="", help="comma-separated workload keys")
    parser.add_argument("--skip-references", action="store_true", help="authserver only")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the figures of bench/out/results.json and replace only what this run measures",
    )
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.runs, args.load_seconds = 3.0, 1, 60.0
    only = set(filter(None, args.only.split(",")))
    preflight(not args.skip_references)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "logs").mkdir(exist_ok=True)
    started = time.time()

    # The services sit on the load core, the servers on the server core.
    services = procs.service_pids()
    procs.pin(services, LOAD_CPUS)
    try:
        env = ours.environment(DATABASE_URL, REDIS_URL)
        fixture_path = OUT / "fixture.json"
        print("preparing the authserver database", flush=True)
        ours.prepare_database(env, fixture_path, OUT / "logs" / "prepare.log")
        fixture = json.loads(fixture_path.read_text())
        if not args.skip_references:
            targets.install_oidc_provider()
        app_servers = {
            name: targets.authserver(env, OUT, app_server=name, alg="ES256") for name in ("gunicorn", "granian")
        }
        default_server = ours.DEFAULT_APP_SERVER
        mine = app_servers[default_server]
        mine_rs256 = targets.authserver(env, OUT, app_server=default_server, alg="RS256")
        mine_opaque = targets.authserver(env, OUT, app_server=default_server, alg="ES256", opaque=True)
        references = (
            {}
            if args.skip_references
            else {
                "oidc-jwt": targets.oidc_provider(fixture_path, OUT, token_format="jwt", alg="ES256"),
                "oidc-rs256": targets.oidc_provider(fixture_path, OUT, token_format="jwt", alg="RS256"),
                "oidc-opaque": targets.oidc_provider(fixture_path, OUT, token_format="opaque"),
                "dot-plain": targets.dot_vanilla(fixture_path, OUT, DOT_DATABASE_URL, hashed=False),
                "dot-hashed": targets.dot_vanilla(fixture_path, OUT, DOT_DATABASE_URL, hashed=True),
            }
        )
        every = {
            **{f"authserver-{name}": target for name, target in app_servers.items()},
            "authserver": mine,
            "authserver-rs256": mine_rs256,
            "authserver-opaque": mine_opaque,
            **references,
        }

        def present(*keys: str) -> list[str]:
            return [key for key in keys if key in every]

        other_server = [f"authserver-{name}" for name in app_servers if name != default_server]
        workloads = [
            Workload(
                "token_basic",
                "client credentials, client_secret_basic, JWT (ES256)",
                present("authserver", *other_server, "oidc-jwt", "dot-plain"),
                token_basic,
            ),
            Workload(
                "token_basic_rs256",
                "client credentials, client_secret_basic, JWT (RS256, RSA-3072)",
                present("authserver-rs256", "oidc-rs256"),
                token_basic,
            ),
            Workload(
                "token_basic_opaque",
                "client credentials, client_secret_basic, opaque token",
                present("authserver-opaque", "oidc-opaque"),
                token_basic,
            ),
            Workload(
                "token_pbkdf2",
                "client credentials, client_secret_basic: DOT's default (PBKDF2) secrets",
                present("dot-hashed"),
                token_basic,
                connections=(1, 4),
            ),
            Workload(
                "token_rs256_assertion",
                "client credentials, private_key_jwt RS256, fresh assertion each",
                present("authserver", "oidc-jwt"),
                token_assertion("RS256"),
            ),
            Workload(
                "token_ps256_assertion",
                "client credentials, private_key_jwt PS256, fresh assertion each",
                present("authserver", "oidc-jwt"),
                token_assertion("PS256"),
            ),
            Workload(
                "introspect_jwt_cached",
                "introspection of one JWT access token, repeated",
                present("authserver"),
                token_pool_request("introspect", opaque=False, cached=True),
            ),
            Workload(
                "introspect_jwt_uncached",
                "introspection of a fresh JWT access token each time",
                present("authserver"),
                token_pool_request("introspect", opaque=False, cached=False),
            ),
            Workload(
                "introspect_opaque_cached",
                "introspection of one opaque access token, repeated",
                present("authserver", "oidc-opaque", "dot-plain"),
                token_pool_request("introspect", opaque=True, cached=True),
            ),
            Workload(
                "introspect_opaque_uncached",
                "introspection of a fresh opaque access token each time",
                present("authserver", "dot-plain"),
                token_pool_request("introspect", opaque=True, cached=False),
            ),
            Workload(
                "revoke",
                "revocation of a fresh access token each time",
                present("authserver", "oidc-opaque", "dot-plain"),
                token_pool_request("revoke", opaque=False, cached=False),
            ),
            Workload(
                "discovery",
                "discovery document (GET)",
                present("authserver", "oidc-jwt"),
                get(lambda target: target.discovery),
            ),
            Workload("jwks", "JWKS (GET)", present("authserver", "oidc-jwt"), get(lambda target: target.jwks)),
        ]
        if args.only:
            wanted = set(args.only.split(","))
            workloads = [workload for workload in workloads if workload.key in wanted]
        print(f"{len(workloads)} workloads; results in bench/out/ and bench/RESULTS.md", flush=True)

        results: dict[str, Any] = {"workloads": {}, "titles": {}, "targets": {}}
        for workload in workloads:
            results["titles"][workload.key] = workload.title
            results["workloads"][workload.key] = {}
            for key in workload.targets:
                target = every[key]
                results["targets"][key] = target.title
                print(f"{workload.key}: {target.title}", flush=True)
                # One-use bodies (assertions, token pools) are made beforehand, enough for a rate
                # well above what each server reached in development; a pool that runs out shows
                # as 404 errors. A token pool is minted through the server itself, so pool
                # workloads run once per connection count, not ``--runs`` times.
                pooled = workload.key.startswith(("introspect_jwt_uncached", "introspect_opaque_uncached", "revoke"))
                runs = 1 if pooled else args.runs
                if key.startswith("dot"):
                    expected = 600.0
                elif key.startswith("oidc"):
                    expected = 4000.0
                else:
                    expected = 1500.0 if pooled else 2500.0
                figures = run_target(target, workload, fixture, seconds=args.seconds, runs=runs, expected_rps=expected)
                if figures is not None:
                    results["workloads"][workload.key][key] = figures
                    summary = ", ".join(
                        f"{c}: {f['rps']:.0f}/s p99 {f['p99_us'] / 1000:.1f} ms" for c, f in figures.items()
                    )
                    print(f"  {summary}", flush=True)

        # The code's environment (for tools and for reading the figures again): bench/out/ only.
        # In-process measurements use the headline configuration: ES256 access tokens.
        env = {**env, "AUTHSERVER_ACCESS_TOKEN_SIGNING_ALG": "ES256"}
        (OUT / "env.json").write_text(json.dumps(env))
        print("counting SQL statements per request", flush=True)
        counted = subprocess.run(
            [sys.executable, "bench/harness/sqlcount.py", str(fixture_path)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        results["sql"] = json.loads(counted.stdout.strip().splitlines()[-1])
        print("CPU per layer of a token request", flush=True)
        layered = subprocess.run(
            ["taskset", "-c", SERVER_CPUS, sys.executable, "bench/harness/layers.py", str(fixture_path)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        results["layers"] = json.loads(layered.stdout.strip().splitlines()[-1])

        if not only or "load" in only:
            from harness import mixed

            print(f"mixed load for {args.load_seconds:.0f} s", flush=True)
            results["load"] = mixed.run(mine, fixture, seconds=args.load_seconds, out=OUT, database_url=DATABASE_URL)

        if not only or "flow" in only:
            results["flow"] = flows(mine, fixture, seconds=args.seconds)
    finally:
        procs.pin(services, f"0-{(os.cpu_count() or 2) - 1}")
    if not only or "faults" in only:
        print("faults (tests/faults/test_outages.py)", flush=True)
        results["faults"] = faults()

    command = " ".join(["make bench"] if len(sys.argv) == 1 else [".venv/bin/python bench/run.py", *sys.argv[1:]])
    previous_file = OUT / "results.json"
    if args.merge and previous_file.exists():
        previous = json.loads(previous_file.read_text())
        for section in ("workloads", "titles", "targets"):
            previous[section].update(results[section])
        for section, value in results.items():
            if section not in ("workloads", "titles", "targets"):
                previous[section] = value
        previous["seconds"]["total"] += time.time() - started
        command = f"{previous['command']}, then {command}"
        results = previous
    results["machine"] = machine()
    results["command"] = command
    if not args.merge:
        results["seconds"] = {
            "per_run": args.seconds,
            "runs": args.runs,
            "load": args.load_seconds,
            "total": time.time() - started,
        }
    results["finished"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    (OUT / "results.json").write_text(json.dumps(results, indent=2))
    report.write(results, REPO / "bench" / "RESULTS.md")
    if (not only or args.merge) and results["seconds"]["runs"] >= 3:  # a full run: the README's table follows
        report.update_readme(results, REPO / "README.md")
    print(f"wrote bench/RESULTS.md ({time.time() - started:.0f} s)", flush=True)


def faults() -> list[dict[str, Any]]:
    """Run the fault scenarios once more, with their figures written down (tests/faults/)."""
    report = OUT / "faults.jsonl"
    report.unlink(missing_ok=True)
    env = {
        **os.environ,
        "DATABASE_URL": os.environ.get(
            "BENCH_TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/authserver_benchtest"
        ),
        "REDIS_URL": os.environ.get("BENCH_TEST_REDIS_URL", "redis://127.0.0.1:6379/12"),
        "AUTHSERVER_ENVIRONMENT": "test",
        "DATABASE_CONN_MAX_AGE": "0",
        "AUTHSERVER_FAULTS_REPORT": str(report),
    }
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0", "-m", "faults"]
    result = subprocess.run(
        [*command, "tests/faults/test_outages.py"], cwd=REPO, env=env, capture_output=True, text=True, check=False
    )
    (OUT / "logs" / "faults.log").write_text(result.stdout + result.stderr)
    figures = [json.loads(line) for line in report.read_text().splitlines()] if report.exists() else []
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else f"exit {result.returncode}"
    return [{"scenario": "pytest", "outcome": summary}, *figures]


def flows(target: targets.Target, fixture: dict[str, Any], *, seconds: float) -> dict[str, Any]:
    """The authorization-code flow with PKCE, per second (bench/harness/flow.py)."""
    from harness import flow

    server = target.start()
    try:
        answers = {}
        for signed_in in (False, True):
            print(f"authorization-code flow ({'signed in' if signed_in else 'with login'})", flush=True)
            answers["signed_in" if signed_in else "with_login"] = flow.run_flows(
                server.url, fixture, threads=8, seconds=seconds, signed_in=signed_in, headers=target.headers
            )
        return answers
    finally:
        server.stop()


if __name__ == "__main__":
    main()
