"""Shared parts of the benchmarks: start servers, reset and read peak RSS, time curl, print tables."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from tests.servers import TOKENS, Server, start_server

AUTH = f"Authorization: Bearer {TOKENS['alice']}"


def peak_rss_mib(pid: int) -> float:
    """VmHWM of a process and its children (workers), in MiB."""
    total = 0.0
    for candidate in [pid, *_children(pid)]:
        try:
            for line in Path(f"/proc/{candidate}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1]) / 1024
        except FileNotFoundError:
            pass
    return total


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children (workers) so far: the cost of the work, which a busy
    machine changes far less than it changes wall time."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for candidate in [pid, *_children(pid)]:
        try:
            fields = Path(f"/proc/{candidate}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total


def reset_peak_rss(pid: int) -> None:
    for candidate in [pid, *_children(pid)]:
        with suppress(FileNotFoundError, PermissionError):
            Path(f"/proc/{candidate}/clear_refs").write_text("5")


def _children(pid: int) -> list[int]:
    try:
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    except FileNotFoundError:
        return []
    return [int(line) for line in out.split()]


def make_file(path: Path, size: int) -> Path:
    if not path.exists() or path.stat().st_size != size:
        block = os.urandom(1024 * 1024)
        with path.open("wb") as handle:
            for _ in range(size // len(block)):
                handle.write(block)
            handle.write(block[: size % len(block)])
    return path


def curl(args: list[str]) -> float:
    """Run curl, fail loudly on an HTTP error, return wall seconds."""
    started = time.perf_counter()
    result = subprocess.run(["curl", "-sS", "-f", "-o", "/dev/null", "-w", "%{http_code}", *args],
                            capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"curl failed: {result.stderr} {result.stdout}")
    return elapsed


@dataclass
class Figure:
    name: str
    seconds: list[float]
    rss: list[float]
    size: int
    cpu: list[float]

    @property
    def mbps(self) -> float:
        return self.size / statistics.median(self.seconds) / 1e6

    def row(self) -> str:
        return (f"| {self.name} | {self.mbps:,.0f} MB/s | {statistics.median(self.seconds):.2f} s "
                f"| {statistics.median(self.cpu):.2f} s | {statistics.median(self.rss):.0f} MiB |")


def measure(name: str, pid: int, size: int, repeat: int, run, after=None) -> Figure:
    seconds, rss, cpu = [], [], []
    for _ in range(repeat):
        reset_peak_rss(pid)
        cpu_before = cpu_seconds(pid)
        seconds.append(run())
        cpu.append(cpu_seconds(pid) - cpu_before)
        rss.append(peak_rss_mib(pid))
        if after:
            after()
    figure = Figure(name, seconds, rss, size, cpu)
    print(figure.row(), flush=True)
    return figure


@contextmanager
def service(workdir: Path, **settings: str):
    workdir.mkdir(parents=True, exist_ok=True)
    server: Server = start_server(workdir, fresh=True, **settings)  # the command as users run it
    try:
        yield server
    finally:
        server.stop()


NGINX_CONF = """
user root;
worker_processes 1;
error_log {dir}/error.log;
pid {dir}/nginx.pid;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {dir}/client_temp;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        client_max_body_size 0;
        {location}
    }}
}}
"""


@contextmanager
def nginx(folder: Path, root: Path, location: str = ""):
    """nginx serving ``root`` on a free port with one worker: yields (port, the worker's pid), or None when
    nginx is not installed (the peer a user would put in front of, or instead of, the service)."""
    if not shutil.which("nginx"):
        yield None
        return
    from tests.servers import free_port

    (folder / "client_temp").mkdir(parents=True, exist_ok=True)
    port = free_port()
    (folder / "nginx.conf").write_text(NGINX_CONF.format(dir=folder, port=port, root=root, location=location))
    process = subprocess.Popen(["nginx", "-c", str(folder / "nginx.conf"), "-g", "daemon off;"])
    try:
        time.sleep(0.5)
        children = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True).stdout
        yield port, int(children.split()[0])
    finally:
        process.terminate()


def clear_uploads(upload_dir: Path) -> None:
    objects = upload_dir / "objects"
    if objects.exists():
        shutil.rmtree(objects)
        objects.mkdir()


def workdir(base: str | None = None) -> Path:
    return Path(tempfile.mkdtemp(prefix="upload-bench-", dir=base))


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown CPU")
    return f"{os.cpu_count()} cores, {cpu}, Python {sys.version.split()[0]}"
