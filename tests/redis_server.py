"""A real Redis for the tests: Debian's ``redis-server`` as a subprocess on 127.0.0.1, a free port, no disk."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .servers import free_port, refuse_in_fast_tests


@dataclass
class RedisServer:
    url: str
    port: int
    process: subprocess.Popen

    @classmethod
    def start(cls, log_dir: Path) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install -y redis-server)")
        refuse_in_fast_tests("Redis")
        port = free_port()
        log = (log_dir / f"redis-{port}.log").open("wb")
        process = subprocess.Popen([binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                                    "--appendonly", "no", "--dir", str(log_dir)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return cls(f"redis://127.0.0.1:{port}/0", port, process)
            except OSError:
                time.sleep(0.05)
        process.kill()
        raise RuntimeError("redis-server did not come up in 20s")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)
