"""A real clamd for the tests: Debian's ``clamav-daemon`` as a subprocess on 127.0.0.1 (TCP and a unix socket),
with a signature database written here, since the official one cannot be downloaded: an MD5 signature of the
EICAR test file and a body signature of a marker of our own. No freshclam, no system config."""

from __future__ import annotations

import hashlib
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .servers import free_port, refuse_in_fast_tests

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
MARKER = b"upload-service-clamav-test-marker: not a virus, matched by the tests' own body signature"
EICAR_SIGNATURE = "Test.EICAR.MD5"  # clamd reports unofficial signatures as <name>.UNOFFICIAL
MARKER_SIGNATURE = "Test.UploadService.Marker"


def write_database(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tests.hdb").write_text(f"{hashlib.md5(EICAR).hexdigest()}:{len(EICAR)}:{EICAR_SIGNATURE}\n")
    (directory / "tests.ndb").write_text(f"{MARKER_SIGNATURE}:0:*:{MARKER.hex()}\n")


@dataclass
class ClamdServer:
    port: int
    socket_path: Path
    process: subprocess.Popen

    @property
    def tcp_url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    @property
    def unix_url(self) -> str:
        return f"unix://{self.socket_path}"

    @classmethod
    def start(cls, directory: Path, stream_max_length: str = "100M") -> ClamdServer:
        binary = shutil.which("clamd") or shutil.which("clamd", path="/usr/sbin")
        if binary is None:
            raise RuntimeError("clamd is not installed (apt-get install -y clamav-daemon)")
        refuse_in_fast_tests("clamd")
        write_database(directory / "db")
        port, socket_path = free_port(), directory / "clamd.sock"
        config = directory / "clamd.conf"
        config.write_text("\n".join([
            "Foreground yes", f"TCPSocket {port}", "TCPAddr 127.0.0.1", f"LocalSocket {socket_path}",
            f"DatabaseDirectory {directory / 'db'}", f"TemporaryDirectory {directory}",
            f"StreamMaxLength {stream_max_length}", f"MaxFileSize {stream_max_length}",
            f"MaxScanSize {stream_max_length}", "LogTime yes", "",
        ]))
        log = (directory / "clamd.log").open("wb")
        process = subprocess.Popen([binary, "-c", str(config)], stdout=log, stderr=subprocess.STDOUT)
        server = cls(port, socket_path, process)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"clamd exited with {process.returncode}: "
                                   f"{(directory / 'clamd.log').read_text(errors='replace')}")
            if server.ping():
                return server
            time.sleep(0.05)
        process.kill()
        raise RuntimeError("clamd did not come up in 60s")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"zPING\0")
                return sock.recv(16) == b"PONG\0"
        except OSError:
            return False

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)
