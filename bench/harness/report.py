"""bench/RESULTS.md from a run's figures (bench/out/results.json)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

MINE = "authserver"


def _fmt(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def _errors(figures: dict[str, Any]) -> int:
    socket = sum(figures["errors"][kind] for kind in ("connect", "read", "write", "timeout"))
    return int(figures["non_2xx"]) + int(socket)


def _best(figures: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    connections = max(figures, key=lambda key: figures[key]["rps"])
    return connections, figures[connections]


def _rps(results: dict[str, Any], workload: str, target: str, connections: str | None = None) -> float | None:
    figures = results["workloads"].get(workload, {}).get(target)
    if not figures:
        return None
    if connections is None:
        return float(_best(figures)[1]["rps"])
    return float(figures[connections]["rps"]) if connections in figures else None


def _p99_ms(results: dict[str, Any], workload: str, target: str) -> float | None:
    figures = results["workloads"].get(workload, {}).get(target, {}).get("16")
    return None if figures is None else figures["p99_us"] / 1000


def _check(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**met**" if ok else "**missed**")


def targets_table(results: dict[str, Any]) -> list[str]:
    sql = results.get("sql", {})
    load = results.get("load", {})
    rows: list[tuple[str, str, bool | None]] = []

    def rps_row(label: str, workload: str, target: str, floor: float) -> None:
        value = _rps(results, workload, target)
        rows.append((label, "n/a" if value is None else f"{_fmt(value)}/s", None if value is None else value >= floor))

    rps_row("client credentials, JWT persisted: >= 1,500 tokens/s", "token_basic", MINE, 1500)
    mine, theirs = _rps(results, "token_basic", MINE), _rps(results, "token_basic", "oidc-jwt")
    ratio = None if mine is None or not theirs else mine / theirs
    rows.append(
        (
            "... and >= 0.5 x oidc-provider's JWT figure",
            "n/a" if ratio is None else f"{ratio:.2f}x",
            None if ratio is None else ratio >= 0.5,
        )
    )
    rps_row("private_key_jwt (RS256): >= 1,200 tokens/s", "token_rs256_assertion", MINE, 1200)
    rps_row("private_key_jwt (PS256): >= 1,200 tokens/s", "token_ps256_assertion", MINE, 1200)
    rps_row("introspection, cached: >= 2,000/s", "introspect_jwt_cached", MINE, 2000)
    rps_row("introspection, not cached: >= 1,000/s", "introspect_jwt_uncached", MINE, 1000)
    for label, key, ceiling in (
        ("SQL statements, cached introspection: 0", "introspect_jwt_cached", 0),
        ("SQL statements, uncached introspection: <= 1", "introspect_jwt_uncached", 1),
        ("SQL statements, client-credentials token: 1 INSERT", "token_basic", 1),
    ):
        # Django's connection health check (a "SELECT 1" before a request's first statement,
        # DATABASE_CONN_HEALTH_CHECKS) is shown, not counted: it is a ping, switched off by a setting.
        counted = sql.get(key)
        value = None if counted is None else counted["warm"]
        shown = "n/a" if counted is None else f"{counted['warm']:g} (+{counted['health_checks']:g} health check)"
        rows.append((label, shown, None if value is None else value <= ceiling))
    for label, workload in (
        ("p99 at 16 connections < 25 ms: token", "token_basic"),
        ("p99 at 16 connections < 25 ms: introspection", "introspect_jwt_cached"),
    ):
        p99 = _p99_ms(results, workload, MINE)
        rows.append((label, "n/a" if p99 is None else f"{p99:.1f} ms", None if p99 is None else p99 < 25))
    growth = load.get("memory_mb", {}).get("growth_percent")
    rows.append(
        (
            "worker memory flat (within 10 %) over the load run",
            "n/a" if growth is None else f"{growth:+.1f} %",
            None if growth is None else abs(growth) <= 10,
        )
    )
    for label, target, factor in (
        ("> 300 x vanilla DOT (default PBKDF2 secrets), token endpoint", "dot-hashed", 300),
        ("> 5 x vanilla DOT (secret hashing off), token endpoint", "dot-plain", 5),
    ):
        workload = "token_pbkdf2" if target == "dot-hashed" else "token_basic"
        theirs = _rps(results, workload, target)
        value = None if mine is None or not theirs else mine / theirs
        rows.append((label, "n/a" if value is None else f"{value:,.1f}x", None if value is None else value > factor))
    lines = ["| target | measured | |", "| --- | ---: | --- |"]
    lines += [f"| {label} | {shown} | {_check(ok)} |" for label, shown, ok in rows]
    return lines


def workload_tables(results: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for workload, by_target in results["workloads"].items():
        if not by_target:
            continue
        lines += ["", f"### {results['titles'][workload]} (`{workload}`)", ""]
        lines += [
            "| server | conns | req/s | p50 ms | p99 ms | errors | CPU µs/req | peak worker MB | authserver ÷ this |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        mine = by_target.get(MINE) or next((f for key, f in by_target.items() if key.startswith(MINE)), None)
        for target, figures in by_target.items():
            for connections, f in figures.items():
                ratio = ""
                if mine and not target.startswith(MINE) and connections in mine and f["rps"]:
                    ratio = f"{mine[connections]['rps'] / f['rps']:,.2f}"
                lines.append(
                    f"| {results['targets'][target]} | {connections} | {_fmt(f['rps'])} | {f['p50_us'] / 1000:.1f} | "
                    f"{f['p99_us'] / 1000:.1f} | {_errors(f)} | {_fmt(f['cpu_us_per_request'])} | "
                    f"{f['peak_worker_rss_mb']:.0f} | {ratio} |"
                )
    return lines


def write(results: dict[str, Any], path: Path) -> None:
    machine = results["machine"]
    seconds = results["seconds"]
    lines = [
        "# Benchmark results",
        "",
        "Written by `make bench` (bench/run.py); do not edit by hand. How the harness works, and",
        "how to read and reproduce these figures: [bench/README.md](README.md).",
        "",
        f"- When: {results['finished']}; command: `{results['command']}`; took {seconds['total'] / 60:.0f} min.",
        f"- Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gb']} GB, "
        f"Linux {machine['kernel']}; Python {machine['python']}, {machine['postgres']}, {machine['redis']}, "
        f"node {machine['node']}, {machine['wrk']}.",
        "- Shape: each server pinned to core 0 (`taskset`), in its production configuration; PostgreSQL, Redis and",
        "  wrk pinned to core 1. Figures are **per server core**.",
        f"- Each figure is the median of {seconds['runs']} runs of {seconds['per_run']:g} s "
        "at 16 and at 64 connections (one run where each request spends a minted token:",
        "  uncached introspection, revocation);",
        "  errors are non-2xx answers plus socket errors; CPU is the server processes' user+system time per request.",
        "",
        "## Targets (issue 6)",
        "",
        *targets_table(results),
        "",
        "## Workloads",
        *workload_tables(results),
    ]
    sql = results.get("sql")
    if sql:
        lines += [
            "",
            "## SQL statements per request (authserver, warm)",
            "",
            "Counted in-process through the whole middleware stack (bench/harness/sqlcount.py). The",
            "health check is Django's `SELECT 1` on a reused connection (`CONN_HEALTH_CHECKS`).",
            "",
            "| workload | statements | health checks |",
            "| --- | ---: | ---: |",
            *[f"| `{key}` | {value['warm']:g} | {value['health_checks']:g} |" for key, value in sql.items()],
        ]
    layers = results.get("layers")
    if layers:
        lines += [
            "",
            "## Where a token request's CPU goes (authserver, client credentials, in-process)",
            "",
            f"One warm request costs {layers['request_us']:,} µs of CPU in-process (Django's test client,",
            "bench/harness/layers.py); each layer was timed with a CPU clock around its functions (nested",
            "layers include what they call). What a single operation costs on its own is below it.",
            "",
            "| layer | µs CPU per request |",
            "| --- | ---: |",
            *[f"| {name} | {value:,} |" for name, value in layers["layers"].items()],
            "",
            "| operation | µs CPU |",
            "| --- | ---: |",
            *[f"| {name} | {value:,} |" for name, value in layers["operations"].items()],
        ]
    flow = results.get("flow")
    if flow:
        lines += [
            "",
            "## Authorization-code flow with PKCE (authserver, 8 threads)",
            "",
            "| flow | flows/s | p50 ms | p99 ms | errors |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for key, label in (
            ("with_login", "login (PBKDF2 password check), authorize + consent, token"),
            ("signed_in", "signed in: authorize + consent, token"),
        ):
            if key in flow:
                f = flow[key]
                lines.append(f"| {label} | {f['rps']:.1f} | {f['p50_ms']:.0f} | {f['p99_ms']:.0f} | {f['errors']} |")
    load = results.get("load")
    if load:
        memory = load["memory_mb"]
        lines += [
            "",
            f"## Load without loss ({load['seconds'] / 60:.0f} minutes of mixed traffic, authserver)",
            "",
            "Token requests (wrk, 16 connections), introspection (wrk, 8 connections) and signed-in",
            "authorization-code flows (2 threads) at once, as fast as the server core serves them.",
            "",
            "| traffic | requests | per second | answers | p99 ms |",
            "| --- | ---: | ---: | --- | ---: |",
        ]
        for key in ("token", "introspect"):
            f = load[key]
            lines.append(
                f"| {key} | {_fmt(f['requests'])} | {_fmt(f['rps'])} | {f['statuses']} | {f['p99_us'] / 1000:.1f} |"
            )
        f = load["flow"]
        flows = f"{_fmt(f['flows'])} | {f['rps']:.1f} | {f['errors']} errors | {f['p99_ms']:.0f}"
        lines.append(f"| authorization-code flows | {flows} |")
        answered, stored = load["tokens_answered_200"], load["tokens_in_database"]
        lines += [
            "",
            f"- Access tokens answered 200: {_fmt(answered)}; found in the database afterwards: "
            f"{_fmt(stored)} ({'none missing' if answered == stored else f'{answered - stored} MISSING'}).",
            f"- Worker memory (largest worker's RSS): first minute {memory['first_minute']} MB, last minute "
            f"{memory['last_minute']} MB ({memory['growth_percent']:+} %), peak {memory['peak']} MB.",
        ]
    faults = results.get("faults")
    if faults:
        lines += ["", "## Faults (tests/faults/test_outages.py)", ""]
        for scenario in faults:
            name = scenario.get("scenario", "?")
            figures = ", ".join(f"{key}: {value}" for key, value in scenario.items() if key != "scenario")
            lines.append(f"- **{name}**: {figures}")
    path.write_text("\n".join(lines) + "\n")


HEADLINE_START = "<!-- bench:headline:start -->"
HEADLINE_END = "<!-- bench:headline:end -->"
HEADLINE_ROWS = (
    ("client credentials, `client_secret_basic`, JWT (ES256)", "token_basic", "authserver", "oidc-jwt", "dot-plain"),
    (
        "client credentials, `client_secret_basic`, JWT (RS256, RSA-3072)",
        "token_basic_rs256",
        "authserver-rs256",
        "oidc-rs256",
        None,
    ),
    (
        "client credentials, `private_key_jwt` (RS256 assertion)",
        "token_rs256_assertion",
        "authserver",
        "oidc-jwt",
        None,
    ),
    ("introspection, cached", "introspect_jwt_cached", "authserver", None, None),
    ("introspection, not cached", "introspect_jwt_uncached", "authserver", None, None),
    ("introspection of an opaque token", "introspect_opaque_cached", "authserver", "oidc-opaque", "dot-plain"),
    ("revocation", "revoke", "authserver", "oidc-opaque", "dot-plain"),
)


def headline(results: dict[str, Any]) -> list[str]:
    """The README's table: requests per second per server core, best of 16 and 64 connections."""

    def cell(workload: str, target: str | None) -> str:
        value = None if target is None else _rps(results, workload, target)
        return "n/a" if value is None else f"{_fmt(value)}/s"

    pbkdf2 = _rps(results, "token_pbkdf2", "dot-hashed")
    lines = [
        "| per server core | authserver | oidc-provider 9.13 | django-oauth-toolkit 3.4 (hashing off) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for label, workload, mine, oidc, dot in HEADLINE_ROWS:
        lines.append(f"| {label} | {cell(workload, mine)} | {cell(workload, oidc)} | {cell(workload, dot)} |")
    lines += [
        "",
        f"django-oauth-toolkit with its default PBKDF2-hashed secrets: {'n/a' if pbkdf2 is None else f'{pbkdf2:,.1f}'}"
        f" tokens/s. Measured {results['finished']} on {results['machine']['cpu']} "
        "([bench/RESULTS.md](bench/RESULTS.md): latencies, errors, CPU, memory, targets).",
    ]
    return lines


def update_readme(results: dict[str, Any], path: Path) -> None:
    """Replace the table between the README's bench markers, if it has them."""
    text = path.read_text()
    if HEADLINE_START not in text or HEADLINE_END not in text:
        return
    before, rest = text.split(HEADLINE_START, 1)
    _old, after = rest.split(HEADLINE_END, 1)
    path.write_text(before + HEADLINE_START + "\n" + "\n".join(headline(results)) + "\n" + HEADLINE_END + after)
