"""Drive a server with wrk (Debian's package) and read back what its Lua script reports."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

LUA = Path(__file__).resolve().parent / "lua" / "workload.lua"


@dataclass
class Request:
    """What one workload sends: the same request every time, or one body per line of a file."""

    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None
    bodies: Path | None = None


def basic(client_id: str, secret: str) -> str:
    from urllib.parse import quote

    pair = f"{quote(client_id, safe='')}:{quote(secret, safe='')}"
    return "Basic " + base64.b64encode(pair.encode()).decode()


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def wrk(
    url: str,
    request: Request,
    *,
    connections: int,
    seconds: float,
    threads: int = 2,
    cpus: str = "1",
    save: Path | None = None,
) -> dict[str, object]:
    threads = min(threads, connections)
    env = {
        **os.environ,
        "BENCH_METHOD": request.method,
        "BENCH_PATH": request.path,
        "BENCH_HEADERS": "\n".join(f"{name}: {value}" for name, value in request.headers.items()),
        "BENCH_THREADS": str(threads),
    }
    if request.body is not None:
        env["BENCH_BODY"] = request.body
    if request.bodies is not None:
        env["BENCH_BODIES"] = str(request.bodies)
    if save is not None:
        save.mkdir(parents=True, exist_ok=True)
        env["BENCH_SAVE"] = str(save)
    command = ["taskset", "-c", cpus, "wrk", "-t", str(threads), "-c", str(connections)]
    command += ["-d", f"{seconds:g}s", "--timeout", "10s", "-s", str(LUA), url]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({result.returncode}): {result.stderr[-2000:]} {result.stdout[-2000:]}")
    figures: dict[str, object] = json.loads(lines[-1])
    figures["rps"] = figures["requests"] / figures["seconds"]  # type: ignore[operator]
    statuses: dict[str, int] = figures["statuses"]  # type: ignore[assignment]
    figures["non_2xx"] = sum(count for status, count in statuses.items() if not status.startswith("2"))
    return figures
