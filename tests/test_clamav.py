"""plugins/clamav (upload-service-clamav) against a real clamd (tests/clamd_server.py): every upload path is
scanned before its answer, malware is refused with nothing kept, and no verdict follows CLAMAV_FAIL."""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from upload_service_clamav.clamd import Clamd

from .clamd_server import EICAR, EICAR_SIGNATURE, MARKER, MARKER_SIGNATURE, ClamdServer
from .conftest import stored_files
from .servers import Server, free_port, start_in_process, start_server
from .test_constant_memory import _peak_mib
from .test_operations import samples
from .tus import create, patch

pytestmark = pytest.mark.process  # clamd and the servers are subprocesses; one test reads a server's memory


@pytest.fixture(scope="session")
def clamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClamdServer]:
    server = ClamdServer.start(tmp_path_factory.mktemp("clamd"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def server(clamd: ClamdServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Fail closed (the default), through clamd's unix socket."""
    running = start_server(tmp_path_factory.mktemp("clamav"), clamd_url=clamd.unix_url)
    yield running
    running.stop()


@pytest.fixture
def start(tmp_path: Path) -> Iterator:
    started: list[Server] = []

    def make(**settings: str) -> Server:
        directory = tmp_path / f"server-{len(started)}"
        directory.mkdir()
        started.append(start_server(directory, **settings))
        return started[-1]

    yield make
    for running in started:
        running.stop()


def dead_address() -> str:
    """A TCP port nothing listens on: a clamd that is stopped."""
    return f"tcp://127.0.0.1:{free_port()}"


@pytest.fixture
def silent_clamd() -> Iterator[str]:
    """A TCP server that accepts and reads everything but never answers: a clamd that hangs."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def drain(conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while conn.recv(65536):
                pass

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            held.append(conn)
            threading.Thread(target=drain, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    yield f"tcp://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()
    for conn in held:
        conn.close()


def refusals(server: Server, reason: str, status: int) -> float:
    """How many answers ``/metrics`` counts as refused for ``reason`` (a problem's reason labels it there)."""
    return samples(server.url).get(("upload_service_rejections_total",
                                    (("reason", reason), ("status", str(status)))), 0)


def kept(server: Server) -> list:
    """Every stored file, persistent or temporary (a file request's own record is no file)."""
    return stored_files(server, "files/") + stored_files(server, "temp/")


def assert_malware(answer: httpx.Response, signature: str = EICAR_SIGNATURE) -> None:
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert f"contains malware: {signature}" in answer.json()["detail"], answer.text


def test_a_clean_file_is_stored_and_marked_clean(server: Server) -> None:
    before = samples(server.url).get(("upload_service_clamav_scanned_total", ()), 0)
    client = server.client("alice")
    answer = client.put("/api/files/clean.txt", content=b"nothing to see here " * 1000)
    assert answer.status_code == 201, answer.text
    file = answer.json()
    assert file["metadata"] == {"clamav": "clean"}
    assert client.get(file["url"]).content == b"nothing to see here " * 1000
    assert samples(server.url)[("upload_service_clamav_scanned_total", ())] == before + 1


def _raw(client: httpx.Client, data: bytes) -> httpx.Response:
    return client.put("/api/files/eicar.com", content=data)


def _json(client: httpx.Client, data: bytes) -> httpx.Response:
    return client.post("/api/upload", json=[{"filename": "fine.txt", "content": base64.b64encode(b"fine").decode()},
                                            {"filename": "eicar.txt", "content": base64.b64encode(data).decode()}])


def _multipart(client: httpx.Client, data: bytes) -> httpx.Response:
    return client.post("/api/upload", files=[("file", ("fine.txt", b"fine")), ("file", ("eicar.txt", data))])


def _tus(client: httpx.Client, data: bytes) -> httpx.Response:
    url = create(client, len(data))
    return patch(client, url, 0, data)


def _file_request(client: httpx.Client, data: bytes) -> httpx.Response:
    file_request = client.post("/api/requests", json={"title": "send me things"}).json()
    return httpx.put(f"{client.base_url}{file_request['url']}/files/eicar.txt", content=data)


@pytest.mark.parametrize("send", [_raw, _json, _multipart, _tus, _file_request], ids=lambda send: send.__name__[1:])
def test_eicar_is_refused_on_every_upload_path_and_nothing_is_kept(server: Server, send) -> None:
    metrics, refused = samples(server.url), refusals(server, "malware", 422)
    before = kept(server)
    assert_malware(send(server.client("bob"), EICAR))
    assert kept(server) == before  # nor the clean file of the same batch
    after = samples(server.url)
    assert after[("upload_service_clamav_infected_total", ())] == \
        metrics.get(("upload_service_clamav_infected_total", ()), 0) + 1
    assert refusals(server, "malware", 422) == refused + 1


def test_the_tests_own_body_signature_is_found_inside_a_larger_file(server: Server) -> None:
    before = kept(server)
    data = os.urandom(300_000) + MARKER + os.urandom(300_000)  # across the plugin's 64 KiB chunks
    assert_malware(server.client("carol").put("/api/files/hidden.bin", content=data), MARKER_SIGNATURE)
    assert kept(server) == before


def test_a_big_file_is_scanned_in_bounded_server_memory(server: Server) -> None:
    """64 MiB with the marker at its very end: clamd sees the whole file, the server never holds it."""
    client = server.client("carol")
    client.put("/api/files/warm-up.bin", content=b"w" * 2_000_000)
    before = _peak_mib(server.process.pid)
    block = os.urandom(1 << 20)

    def body(tail: bytes) -> Iterator[bytes]:
        for _ in range(64):
            yield block
        yield tail

    clean = client.put("/api/files/big.bin", content=body(b""))
    assert clean.status_code == 201 and clean.json()["metadata"] == {"clamav": "clean"}
    infected = client.put("/api/files/big-infected.bin", content=body(MARKER))
    assert_malware(infected, MARKER_SIGNATURE)
    growth = _peak_mib(server.process.pid) - before
    assert growth < 32, f"the server grew by {growth:.0f} MiB while scanning 64 MiB"


def test_fail_closed_refuses_when_clamd_is_stopped_or_hangs(start, silent_clamd: str) -> None:
    for clamd_url, reason in [(dead_address(), "cannot be reached"), (silent_clamd, "did not answer within 1s")]:
        server = start(clamd_url=clamd_url, clamav_timeout="1s")
        before = kept(server)
        answer = server.client("alice").put("/api/files/a.txt", content=b"unscanned")
        assert answer.status_code == 503 and "scanner is unavailable" in answer.json()["detail"], answer.text
        assert refusals(server, "scan_unavailable", 503) == 1
        assert kept(server) == before
        assert reason in server.log()
        kind = "unavailable" if reason == "cannot be reached" else "timeout"
        assert samples(server.url)[("upload_service_clamav_errors_total", (("kind", kind),))] == 1


def test_fail_open_keeps_the_file_and_warns(start) -> None:
    server = start(clamd_url=dead_address(), clamav_fail="open")
    answer = server.client("alice").put("/api/files/a.txt", content=b"unscanned but kept")
    assert answer.status_code == 201, answer.text
    assert answer.json()["metadata"] == {"clamav": "unscanned"}
    assert len(kept(server)) == 1
    assert "file kept unscanned (CLAMAV_FAIL=open)" in server.log()


def test_a_file_over_clamds_stream_limit_is_refused_when_failing_closed(start, tmp_path: Path) -> None:
    small = ClamdServer.start(tmp_path / "small-clamd", stream_max_length="1M")
    try:
        server = start(clamd_url=small.tcp_url)
        answer = server.client("alice").put("/api/files/big.bin", content=b"z" * 3_000_000)
        # clamd answers "size limit exceeded" and hangs up; when the hang-up overtakes its answer the plugin
        # only knows the scan failed (503): refused either way, with nothing kept.
        assert answer.status_code in (413, 503), answer.text
        assert refusals(server, "scan_too_large", 413) + refusals(server, "scan_unavailable", 503) == 1
        assert kept(server) == []
        assert server.client("alice").put("/api/files/small.bin", content=b"z" * 1000).status_code == 201
    finally:
        small.stop()


def _start_cli(tmp_path: Path, **settings: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "SECRET_KEY": "test-secret-key-0123456789abcdef", "PORT": "0",
           "UPLOAD_DIR": str(tmp_path / "uploads"), **{key.upper(): value for key, value in settings.items()}}
    return subprocess.run([sys.executable, "-m", "upload_service.cli"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)


def test_a_malformed_clamd_url_refuses_to_start(tmp_path: Path) -> None:
    result = _start_cli(tmp_path, clamd_url="http://127.0.0.1:3310")
    assert result.returncode == 2, result.stderr
    assert "CLAMD_URL='http://127.0.0.1:3310' is not a clamd address: use unix:///path" in result.stderr


@pytest.mark.parametrize(("url", "why"), [("unix://relative/clamd.ctl", "three slashes"),
                                          ("tcp://:3310", "tcp://host:port"),
                                          ("tcp://127.0.0.1:notaport", "from 1 to 65535"),
                                          ("tcp://127.0.0.1:3310/path", "tcp://host:port")])
def test_what_is_wrong_with_a_clamd_url_is_said(url: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        Clamd.from_url(url)


def test_clamd_urls_that_are_accepted() -> None:
    assert Clamd.from_url("unix:///run/clamav/clamd.ctl") == Clamd(path="/run/clamav/clamd.ctl")
    assert Clamd.from_url("tcp://127.0.0.1:3310") == Clamd(host="127.0.0.1", port=3310)
    assert Clamd.from_url("tcp://clamav") == Clamd(host="clamav", port=3310)


def test_a_bad_fail_setting_refuses_to_start(tmp_path: Path, clamd: ClamdServer) -> None:
    result = _start_cli(tmp_path, clamd_url=clamd.tcp_url, clamav_fail="sometimes")
    assert result.returncode == 2 and "clamav plugin" in result.stderr and "fail" in result.stderr, result.stderr


def test_unset_it_is_inert_and_says_which_setting_turns_it_on(start) -> None:
    server = start(log_level="INFO")
    answer = server.client("alice").put("/api/files/eicar.com", content=EICAR)
    assert answer.status_code == 201 and answer.json()["metadata"] == {}
    assert server.log().count("plugin clamav: inactive: set CLAMD_URL") == 1


def test_listed_by_the_plugins_command_and_blocked_by_disabled_plugins(tmp_path: Path, clamd: ClamdServer) -> None:
    listed = subprocess.run([sys.executable, "-m", "upload_service.cli", "plugins"], capture_output=True, text=True,
                            env={**os.environ, "SECRET_KEY": "test-secret-key-0123456789abcdef"}, cwd=tmp_path)
    assert "clamav" in listed.stdout and "process_upload" in listed.stdout, listed.stdout + listed.stderr
    # DISABLED_PLUGINS=clamav: configured, yet nothing is scanned (the plugin is never imported)
    server = start_server(tmp_path, clamd_url=clamd.tcp_url, disabled_plugins="clamav")
    try:
        answer = server.client("alice").put("/api/files/eicar.com", content=EICAR)
        assert answer.status_code == 201 and answer.json()["metadata"] == {}
    finally:
        server.stop()


def test_a_host_app_passes_the_settings_as_plugin_settings(clamd: ClamdServer, tmp_path: Path) -> None:
    """In-process, as a host app: ``Settings(plugin_settings={"CLAMD_URL": ..., "CLAMAV_FAIL": ...})``."""
    server = start_in_process(tmp_path, clamd_url=clamd.tcp_url, clamav_timeout="30s")
    try:
        client = server.client("alice")
        assert client.put("/api/files/fine.txt", content=b"fine").json()["metadata"] == {"clamav": "clean"}
        assert_malware(client.put("/api/files/eicar.txt", content=EICAR))
    finally:
        server.stop()
