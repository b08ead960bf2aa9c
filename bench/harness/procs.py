"""Processes under measurement: start pinned to a core, find a server's process tree, read
its CPU time and memory from /proc, and pin the shared services to the other core."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import requests

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may hold spaces; everything after its ")" is space-separated.
    return raw[raw.rindex(")") + 2 :].split()


def children(pid: int) -> list[int]:
    """Every live descendant of ``pid``."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(int(entry))) is not None:
            parents.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def cpu_seconds(pid: int) -> float:
    """CPU time of a server: the root's own and its reaped children's (recycled workers), plus
    every live descendant's own, so a worker that exits mid-run is still counted."""
    total = 0.0
    fields = _stat(pid)
    if fields is not None:  # utime, stime, cutime, cstime: fields 14-17, here 12-15
        total += sum(int(value) for value in fields[11:15])
    for child in children(pid):
        if (fields := _stat(child)) is not None:
            total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


def cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) seconds of a server, counted as cpu_seconds() counts them."""
    user = system = 0.0
    fields = _stat(pid)
    if fields is not None:
        user += int(fields[11]) + int(fields[13])
        system += int(fields[12]) + int(fields[14])
    for child in children(pid):
        if (fields := _stat(child)) is not None:
            user += int(fields[11])
            system += int(fields[12])
    return user / CLOCK_TICKS, system / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_SIZE
    except (FileNotFoundError, ProcessLookupError):
        return 0


@dataclass
class MemorySampler:
    """Samples the resident memory of a server's workers (every descendant; the root too
    when it serves requests itself, as node does) at a fixed interval in a thread."""

    root: int
    include_root: bool = False
    interval: float = 0.5
    samples: list[tuple[float, int, int]] = field(default_factory=list)  # (t, max worker rss, total rss)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> MemorySampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()

    def _run(self) -> None:
        start = time.monotonic()
        while not self._stop.is_set():
            pids = children(self.root) + ([self.root] if self.include_root else [])
            sizes = [rss_bytes(pid) for pid in pids]
            sizes = [size for size in sizes if size] or [0]
            self.samples.append((time.monotonic() - start, max(sizes), sum(sizes)))
            self._stop.wait(self.interval)

    @property
    def peak_worker(self) -> int:
        return max((sample[1] for sample in self.samples), default=0)


def pin(pids: Iterable[int], cpus: str) -> None:
    for pid in pids:
        subprocess.run(["taskset", "-a", "-p", "-c", cpus, str(pid)], capture_output=True, check=False)


def service_pids() -> list[int]:
    """PostgreSQL's and Redis's processes on this machine (new PostgreSQL backends inherit the
    postmaster's affinity)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            name = Path(f"/proc/{entry}/comm").read_text().strip()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if name.startswith(("postgres", "redis-server")):
            found.append(int(entry))
    return found


@dataclass
class Server:
    """One server under test, started in its own process group."""

    name: str
    command: list[str]
    env: dict[str, str]
    port: int
    cwd: Path
    log: Path
    ready_path: str
    cpus: str = "0"
    serves_in_root: bool = False
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as output:
            self.process = subprocess.Popen(
                ["taskset", "-c", self.cpus, *self.command],
                cwd=self.cwd,
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start; see {self.log}")
            try:
                requests.get(self.url + self.ready_path, timeout=2)
                return
            except requests.RequestException:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{self.name} did not start in {timeout:.0f}s; see {self.log}")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
