"""Private PostgreSQL and Redis for the fault tests, which stop and start them.

The machine's shared PostgreSQL and Redis serve every other test and benchmark at the same
time, so the fault tests never touch them: one session fixture starts a PostgreSQL cluster
(initdb + pg_ctl, as the ``postgres`` OS user) and a Redis of their own on free ports in a
temporary directory, migrates the database once, and stops both at the end. Servers
(gunicorn) and Celery workers run as subprocesses against them; the test process reads the
private database with psycopg directly (it has no Django connection to it).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
from django.conf import settings

PG_BIN = Path(os.environ.get("AUTHSERVER_FAULTS_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_USER = "postgres"
START_SECONDS = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(condition: Callable[[], bool], *, what: str, seconds: float = START_SECONDS, log: Path | None = None):
    """Poll ``condition`` (bounded): services run in real time, so this waits, not sleeps for time."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            tail = log.read_text()[-4000:] if log is not None and log.exists() else ""
            pytest.fail(f"timed out after {seconds:.0f}s waiting for {what}\n{tail}")
        time.sleep(0.1)


def record_figures(scenario: str, figures: dict[str, Any]) -> None:
    """Append one JSON object per scenario to $AUTHSERVER_FAULTS_REPORT (bench/RESULTS.md reads them)."""
    target = os.environ.get("AUTHSERVER_FAULTS_REPORT")
    if not target:
        return
    with open(target, "a", encoding="utf-8") as report:
        report.write(json.dumps({"scenario": scenario, **figures}, sort_keys=True) + "\n")


@dataclass
class PrivateServices:
    """A PostgreSQL and a Redis that belong to this test session alone."""

    root: Path
    pg_port: int
    redis_port: int
    redis_process: subprocess.Popen | None = None
    children: list[subprocess.Popen] = field(default_factory=list)

    # ---- PostgreSQL ------------------------------------------------------------------

    @property
    def pg_data(self) -> Path:
        return self.root / "pg" / "data"

    @property
    def database_url(self) -> str:
        return f"postgres://{PG_USER}@127.0.0.1:{self.pg_port}/authserver"

    def _pg_ctl(self, *args: str) -> None:
        command = ["runuser", "-u", PG_USER, "--", str(PG_BIN / "pg_ctl"), "-D", str(self.pg_data), *args]
        subprocess.run(command, check=True, capture_output=True, timeout=60)

    def start_postgres(self) -> None:
        options = f"-k {self.root / 'pg'} -p {self.pg_port} -c listen_addresses=127.0.0.1 -c fsync=off"
        options += " -c full_page_writes=off -c synchronous_commit=off -c max_connections=60"
        self._pg_ctl("-l", str(self.root / "pg" / "postgres.log"), "-w", "-o", options, "start")

    def stop_postgres(self) -> None:
        """A fast shutdown: every session is ended, in-flight transactions roll back."""
        self._pg_ctl("-w", "-m", "fast", "stop")

    def postgres_running(self) -> bool:
        return (self.pg_data / "postmaster.pid").exists()

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(host="127.0.0.1", port=self.pg_port, user=PG_USER, dbname="authserver", autocommit=True)

    def query(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        with self.connect() as connection:
            return connection.execute(sql, params).fetchall()

    # ---- Redis -----------------------------------------------------------------------

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def broker_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/1"

    def start_redis(self) -> None:
        command = ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", ""]
        command += ["--appendonly", "no", "--dir", str(self.root), "--protected-mode", "no"]
        with (self.root / "redis.log").open("a") as log:
            self.redis_process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        wait_for(self.redis_answers, what="the private Redis", log=self.root / "redis.log")

    def stop_redis(self) -> None:
        if self.redis_process is not None and self.redis_process.poll() is None:
            self.redis_process.terminate()
            self.redis_process.wait(timeout=20)
        self.redis_process = None

    def redis_answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.redis_port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    # ---- Django against them ---------------------------------------------------------

    def env(self, **overrides: str) -> dict[str, str]:
        """The environment of a server, worker or command on these services."""
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "authserver.settings",
            "AUTHSERVER_ENVIRONMENT": "test",
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "CELERY_BROKER_URL": self.broker_url,
            "AUTHSERVER_RATE_LIMIT_KEY_PREFIX": f"faults-{time.monotonic_ns()}",
        }
        env.update(overrides)
        return env

    def manage(self, *args: str, env: dict[str, str] | None = None, timeout: float = 120) -> str:
        """Run ``manage.py`` on these services; its stdout."""
        completed = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=settings.BASE_DIR,
            env=env or self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if completed.returncode != 0:
            pytest.fail(f"manage.py {args[0]} failed:\n{completed.stdout[-2000:]}\n{completed.stderr[-4000:]}")
        return completed.stdout

    def shell(self, code: str, **inputs: Any) -> Any:
        """Run ``code`` in ``manage.py shell`` on these services with ``INPUT`` (a dict) set;
        what it assigns to ``OUTPUT`` comes back (JSON)."""
        program = f"import json, os\nINPUT = json.loads(os.environ['FAULTS_INPUT'])\nOUTPUT = None\n{code}\n"
        program += "print('FAULTS-OUTPUT ' + json.dumps(OUTPUT))\n"
        stdout = self.manage("shell", "-c", program, env=self.env(FAULTS_INPUT=json.dumps(inputs)))
        line = next(line for line in stdout.splitlines() if line.startswith("FAULTS-OUTPUT "))
        return json.loads(line.removeprefix("FAULTS-OUTPUT "))

    def start_server(self, name: str, *, workers: int = 2, **env: str) -> Server:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = self.root / f"{name}.log"
        command = [sys.executable, "-m", "gunicorn", "authserver.wsgi:application", "--bind", f"127.0.0.1:{port}"]
        command += ["--workers", str(workers), "--timeout", "60", "--error-logfile", "-"]
        server_env = self.env(AUTHSERVER_ISSUER=url, **env)
        with log.open("w") as output:
            process = subprocess.Popen(
                command, cwd=settings.BASE_DIR, env=server_env, stdout=output, stderr=subprocess.STDOUT
            )
        self.children.append(process)
        server = Server(url=url, process=process, log=log)
        wait_for(server.ready, what=f"the server {name}", log=log)
        return server


@dataclass
class Server:
    """A gunicorn master with its workers."""

    url: str
    process: subprocess.Popen
    log: Path

    def ready(self) -> bool:
        if self.process.poll() is not None:
            pytest.fail(f"the server exited:\n{self.log.read_text()[-4000:]}")
        try:
            return requests.get(f"{self.url}/healthz", timeout=5).status_code == 200
        except requests.RequestException:
            return False

    def worker_pids(self) -> set[int]:
        """The master's children, read from /proc: a restarted worker has a new pid."""
        children = set()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rpartition(")")[2].split()[1])
            if ppid == self.process.pid:
                children.add(int(entry.name))
        return children

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # gunicorn's quick shutdown
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture(scope="session")
def private_services() -> Iterator[PrivateServices]:
    if not (PG_BIN / "initdb").exists() or shutil.which("redis-server") is None or os.geteuid() != 0:
        pytest.skip(f"the fault tests need root, PostgreSQL's binaries in {PG_BIN} and redis-server")
    # Not under pytest's basetemp: every pytest session started meanwhile (the others run in
    # parallel) resets /tmp/pytest-of-root to 0700, and the postgres user must reach its files.
    root = Path(tempfile.mkdtemp(prefix="authserver-faults-"))
    root.chmod(0o711)
    pg_dir = root / "pg"
    pg_dir.mkdir()
    postgres = pwd.getpwnam(PG_USER)
    os.chown(pg_dir, postgres.pw_uid, postgres.pw_gid)
    services = PrivateServices(root=root, pg_port=free_port(), redis_port=free_port())
    initdb = [str(PG_BIN / "initdb"), "-D", str(services.pg_data), "-U", PG_USER, "--auth=trust", "--no-sync"]
    subprocess.run(["runuser", "-u", PG_USER, "--", *initdb, "-E", "UTF8"], check=True, capture_output=True)
    try:
        services.start_postgres()
        createdb = [str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(services.pg_port), "-U", PG_USER]
        subprocess.run([*createdb, "authserver"], check=True, capture_output=True)
        services.start_redis()
        services.manage("migrate", "--no-input", "-v", "0")
        yield services
    finally:
        for child in services.children:
            if child.poll() is None:
                child.kill()
                child.wait()
        services.stop_redis()
        if services.postgres_running():
            services._pg_ctl("-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)
