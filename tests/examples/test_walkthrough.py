"""The README's walk-through, run as written against `scripts/run.sh` on a fresh data directory.

`make run`'s script starts the server (SQLite, a local cache, Celery on the filesystem
transport: the embedded defaults) and the demo API beside it; this test reads the section
"Walk-through: protect an API" from README.md, runs its shell commands in one bash session
and checks, command by command, that the output holds every line the README shows under the
command as a `# ...` comment. What the test changes is only what a machine running it must:
the two ports (free ones instead of 8000 and 8001, which another process may hold) and the
secret the first start printed, in place of `<demo-service secret>`. So the README cannot
drift from what the system does.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.conf import settings

REPO = Path(settings.BASE_DIR)
README = REPO / "README.md"
SECTION = "## Walk-through: protect an API"
SERVER, API = "http://localhost:8000", "http://localhost:8001"
SECRET_PLACEHOLDER = "<demo-service secret>"
STEP_MARK = "@@walkthrough-step@@"
START_TIMEOUT = 240  # migrating a fresh SQLite database takes a while on a busy machine


@dataclass
class Command:
    text: str
    expected: list[str] = field(default_factory=list)


def walkthrough_commands(readme: str) -> list[Command]:
    """The section's shell commands (code lines: four or more spaces of indent), each with the
    ``# ...`` lines that follow it; a line ending in a backslash continues the command."""
    start = readme.index(SECTION + "\n")
    end = readme.find("\n## ", start + len(SECTION))
    section = readme[start : end if end != -1 else len(readme)]
    commands: list[Command] = []
    continued = False
    for line in section.splitlines():
        if not line.startswith("    ") or not line.strip():
            continued = False
            continue
        code = line.strip()
        if code.startswith("#"):
            assert commands, f"an expected line before any command: {line!r}"
            commands[-1].expected.append(code[1:].strip())
        elif continued:
            commands[-1].text += "\n" + code
        else:
            commands.append(Command(code))
        continued = not code.startswith("#") and code.endswith("\\")
    return commands


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def embedded_environment(data_dir: Path, server_port: int, api_port: int) -> dict[str, str]:
    """A newcomer's environment: no DATABASE_URL or REDIS_URL (the suite's own are dropped)."""
    keep = {name: os.environ[name] for name in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR") if name in os.environ}
    return {
        **keep,
        "AUTHSERVER_DATA_DIR": str(data_dir),
        "AUTHSERVER_RUN_PORT": str(server_port),
        "AUTHSERVER_DEMO_API_PORT": str(api_port),
        # What `make run` gets on a fresh machine; written out in case a .env file says otherwise.
        "AUTHSERVER_ENVIRONMENT": "development",
        "DATABASE_URL": f"sqlite:///{data_dir / 'authserver.sqlite3'}",
        "REDIS_URL": "",
    }


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture(scope="module")
def running_system(tmp_path_factory: pytest.TempPathFactory):
    """`scripts/run.sh` in its own process group, until the module's tests are done."""
    data_dir = tmp_path_factory.mktemp("embedded")
    server_port, api_port = free_port(), free_port()
    env = embedded_environment(data_dir, server_port, api_port)
    log = data_dir / "run.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [str(REPO / "scripts" / "run.sh")],
            cwd=REPO,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # run.sh and its children (runserver, worker, demo API) form one group
        )
    server, api = f"http://localhost:{server_port}", f"http://localhost:{api_port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not (answers(f"{server}/healthz") and answers(f"{api}/healthz")):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"scripts/run.sh did not start (exit {process.poll()}):\n{log.read_text()}")
            time.sleep(0.5)  # waiting for processes to start, not for time to pass
        found = re.search(r"Demo client: demo-service  secret: (\S+)  \(shown once\)", log.read_text())
        assert found, log.read_text()
        yield {"server": server, "api": api, "secret": found.group(1), "env": env, "log": log}
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def test_the_readme_section_has_the_steps_the_issue_asks_for():
    commands = walkthrough_commands(README.read_text())
    expected = "\n".join(line for command in commands for line in command.expected)
    script = "\n".join(command.text for command in commands)

    assert SECRET_PLACEHOLDER in script
    assert "/oauth/token" in script  # get a token for the API
    assert f"resource={API}/" in script
    for status in ("200 OK", "401 Unauthorized", "403 Forbidden"):
        assert status in expected
    assert 'error="insufficient_scope"' in expected
    assert 'scope="demo:admin"' in expected
    assert "manage.py revokeclient demo-service" in script
    # After the revocation the API refuses the same token.
    revoked_at = next(i for i, command in enumerate(commands) if "revokeclient" in command.text)
    assert any('error="invalid_token"' in line for command in commands[revoked_at + 1 :] for line in command.expected)


def test_the_walkthrough_runs_as_written(running_system):
    commands = walkthrough_commands(README.read_text())
    substitutions = {
        SERVER: running_system["server"],
        API: running_system["api"],
        SECRET_PLACEHOLDER: running_system["secret"],
    }

    def localise(text: str) -> str:
        for old, new in substitutions.items():
            text = text.replace(old, new)
        return text

    script = "set -uo pipefail\n" + "".join(
        f"{localise(command.text)}\nprintf '\\n%s\\n' '{STEP_MARK}'\n" for command in commands
    )
    result = subprocess.run(
        ["bash", "-c", script],
        cwd=REPO,
        env=running_system["env"],
        capture_output=True,
        text=True,
        timeout=300,
    )

    outputs = result.stdout.split(f"\n{STEP_MARK}\n")
    assert len(outputs) == len(commands) + 1, (result.stdout, result.stderr)
    for command, output in zip(commands, outputs, strict=False):
        for line in command.expected:
            assert localise(line) in output, (
                f"README walk-through: the output of\n    {command.text}\nlacks\n    {line}\n"
                f"It was:\n{output}\nstderr:\n{result.stderr}"
            )
    assert result.returncode == 0, result.stderr
