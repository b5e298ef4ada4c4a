"""Real servers for the tests: ``upload-service`` run as a subprocess (Hypercorn on 127.0.0.1, a free port)."""

from __future__ import annotations

import itertools
import os
import random
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
TOKENS = {"alice": "alice-token-0123456789", "bob": "bob-token-0123456789", "carol": "carol-token-0123456789"}


PORT_SLICE = 1500  # ports per pytest-xdist worker, from PORT_BASE up: below Linux's ephemeral range (32768+)
PORT_BASE = 20000
_port_turns = itertools.count(random.randrange(PORT_SLICE))


def free_port() -> int:
    """A free port for a server a test starts.

    Not one the kernel picks for port 0: those come from the ephemeral range, where the test's own outgoing
    connections, and other xdist workers asking for port 0, can take the same number between our check and the
    server's bind (a foreign server then answered a test's requests). Each xdist worker takes ports from a slice
    of its own below that range, in turn, checking each is free.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:]
    base = PORT_BASE + (int(worker) % 8 if worker.isdigit() else 0) * PORT_SLICE
    for _ in range(PORT_SLICE):
        port = base + next(_port_turns) % PORT_SLICE
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {base}-{base + PORT_SLICE - 1}")


def wait_until_up(url: str, process: subprocess.Popen | None = None, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up in {timeout}s")


@dataclass
class Server:
    """A running ``upload-service`` process and what a test needs to talk to it."""

    url: str
    upload_dir: Path
    process: subprocess.Popen
    env: dict[str, str]
    log_path: Path
    clients: list[httpx.Client] = field(default_factory=list)
    backend: str = "local"
    bucket: Any = None  # tests.s3.Bucket when the server stores on S3

    def client(self, user: str | None = "alice", **options) -> httpx.Client:
        headers = {"Authorization": f"Bearer {TOKENS[user]}"} if user else {}
        client = httpx.Client(base_url=self.url, headers=headers, timeout=60, **options)
        self.clients.append(client)
        return client

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        for client in self.clients:
            client.close()
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(tmp: Path, *, args: tuple[str, ...] = (), python: str = sys.executable, **settings: str) -> Server:
    port = free_port()
    upload_dir = Path(settings.pop("upload_dir", tmp / "uploads"))
    env = {
        **os.environ,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "SECRET_KEY": "test-secret-key-0123456789abcdef",
        "UPLOAD_DIR": str(upload_dir),
        "API_TOKENS": ",".join(f"{login}:{token}" for login, token in TOKENS.items()),
        "LOG_LEVEL": "WARNING",
        **{key.upper(): str(value) for key, value in settings.items()},
    }
    if python == sys.executable:  # the repo's own interpreter: let PLUGINS name test plugins under tests/
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    log_path = tmp / f"server-{port}.log"
    process = subprocess.Popen(
        [python, "-m", "upload_service.cli", *args], env=env, cwd=tmp,
        stdout=log_path.open("wb"), stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url + "/healthz", process)
    except RuntimeError as error:
        process.kill()
        raise RuntimeError(f"{error}\n{log_path.read_text(errors='replace')}") from None
    return Server(url=url, upload_dir=upload_dir, process=process, env=env, log_path=log_path)
