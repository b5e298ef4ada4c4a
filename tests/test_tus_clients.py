"""Real tus clients against a real server: tuspy chunked, resumed by a new client, with checksums, through a
connection that breaks in the middle of a PATCH, and after a silent drop that leaves a stale lock behind."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import socket
import threading

import httpx
import pytest
from tusclient import client as tus_client
from tusclient.exceptions import TusCommunicationError
from tusclient.storage.filestorage import FileStorage

from .faults import received, wait_for
from .servers import TOKENS, Server
from .tcp_proxy import BreakingProxy
from .tus import TUS, create, offset_of, tus_backend  # noqa: F401 (tus_backend: autouse fixture)

MiB = 1024 * 1024


def tus(base_url: str, user: str = "alice") -> tus_client.TusClient:
    return tus_client.TusClient(base_url + "/api/tus/", headers={"Authorization": f"Bearer {TOKENS[user]}"})


def file_of(server: Server, upload_url: str, user: str = "alice") -> dict:
    """The file a finished upload became, as the API describes it, with its bytes' sha256 checked too."""
    client = server.client(user)
    head = client.head(upload_url, headers=TUS)
    described = client.get(f"/api/files/{head.headers['Upload-File-Id']}").json()
    described["downloaded_sha256"] = hashlib.sha256(client.get(described["url"]).content).hexdigest()
    return described


def test_tuspy_chunked_upload_with_checksums(make_server) -> None:
    server = make_server()
    data = os.urandom(3 * MiB + 12345)
    uploader = tus(server.url).uploader(file_stream=io.BytesIO(data), chunk_size=256 * 1024, upload_checksum=True,
                                        metadata={"filename": "chunked.bin", "filetype": "application/x-test"})
    uploader.upload()
    described = file_of(server, uploader.url)
    assert described["filename"] == "chunked.bin" and described["content_type"] == "application/x-test"
    assert described["size"] == len(data)
    assert described["sha256"] == described["downloaded_sha256"] == hashlib.sha256(data).hexdigest()


def test_tuspy_resumes_from_a_new_client_with_the_same_url(make_server, tmp_path) -> None:
    server = make_server()
    data = os.urandom(2 * MiB)
    first = tus(server.url).uploader(file_stream=io.BytesIO(data), chunk_size=512 * 1024,
                                     metadata={"filename": "resumed.bin"})
    first.upload(stop_at=MiB)
    assert offset_of(server.client(), first.url) == MiB
    second = tus(server.url).uploader(file_stream=io.BytesIO(data), chunk_size=512 * 1024, url=first.url)
    assert second.offset == MiB
    second.upload()
    assert file_of(server, first.url)["sha256"] == hashlib.sha256(data).hexdigest()


def test_tuspy_resumes_after_a_restart_through_its_url_storage(make_server, tmp_path) -> None:
    server = make_server()
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(MiB + 7))
    storage = FileStorage(str(tmp_path / "urls.json"))
    first = tus(server.url).uploader(file_path=str(path), chunk_size=256 * 1024, store_url=True, url_storage=storage)
    first.upload(stop_at=512 * 1024)
    storage.close()
    storage = FileStorage(str(tmp_path / "urls.json"))
    restarted = tus(server.url).uploader(file_path=str(path), chunk_size=256 * 1024, store_url=True,
                                         url_storage=storage)
    assert restarted.url == first.url and restarted.offset == 512 * 1024
    restarted.upload()
    storage.close()
    assert file_of(server, first.url)["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_tuspy_temporary_upload_carries_a_token(make_server) -> None:
    server = make_server()
    uploader = tus(server.url).uploader(file_stream=io.BytesIO(b"x" * 1000), chunk_size=300,
                                        metadata={"filename": "t.txt", "temporary": "1"})
    uploader.upload()
    head = server.client().head(uploader.url, headers=TUS)
    assert head.headers["Upload-Token"]
    assert file_of(server, uploader.url)["temporary"] is True


def test_connection_cut_mid_patch_then_resume_gives_the_right_file(make_server) -> None:
    server = make_server()
    data = os.urandom(3 * MiB)
    port = int(server.url.rsplit(":", 1)[1])
    with BreakingProxy(port, after=MiB + 300_000, mode="cut") as proxy:
        uploader = tus(proxy.url).uploader(file_stream=io.BytesIO(data), chunk_size=2 * MiB,
                                           metadata={"filename": "cut.bin"})
        with pytest.raises(TusCommunicationError):
            uploader.upload()
        assert proxy.broken.is_set()
    # A HEAD before the server is done with the cut PATCH may win the lock first, or ask the PATCH to stop
    # before it stored anything: both honest offsets, but not what this test is about.
    assert wait_for(lambda: _bodies_received(server) == 1)
    url = server.url + "/api/tus/" + uploader.url.rsplit("/", 1)[1]
    kept = offset_of(server.client(), url)
    assert 0 < kept < 2 * MiB  # what arrived before the cut counts, nothing more
    resumed = tus(server.url).uploader(file_stream=io.BytesIO(data), chunk_size=2 * MiB, url=url)
    assert resumed.offset == kept
    resumed.upload()
    described = file_of(server, url)
    assert described["size"] == len(data)
    assert described["sha256"] == described["downloaded_sha256"] == hashlib.sha256(data).hexdigest()


def _bodies_received(server: Server, path: str = "tus") -> int:
    """How many request bodies the server has finished receiving on ``path``, whole or cut (from /metrics)."""
    metrics = server.client(None).get("/metrics").text
    found = re.search(rf'^upload_service_upload_seconds_count\{{path="{path}"\}} (\S+)$', metrics, re.M)
    return int(float(found.group(1))) if found else 0


def test_cut_chunk_with_checksum_is_discarded_whole(make_server) -> None:
    server = make_server()
    data = os.urandom(2 * MiB)
    port = int(server.url.rsplit(":", 1)[1])
    with BreakingProxy(port, after=MiB, mode="cut") as proxy:
        uploader = tus(proxy.url).uploader(file_stream=io.BytesIO(data), chunk_size=2 * MiB, upload_checksum=True)
        with pytest.raises(TusCommunicationError):
            uploader.upload()
    url = server.url + "/api/tus/" + uploader.url.rsplit("/", 1)[1]
    assert offset_of(server.client(), url) == 0
    resumed = tus(server.url).uploader(file_stream=io.BytesIO(data), chunk_size=MiB, url=url, upload_checksum=True)
    resumed.upload()
    assert file_of(server, url)["sha256"] == hashlib.sha256(data).hexdigest()


def _stalled_patch(server: Server, url: str, declared: int, sent: bytes) -> socket.socket:
    """A PATCH whose client vanished: headers and part of the body sent, the connection left open and silent."""
    host, port = server.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    head = (f"PATCH {url} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKENS['alice']}\r\n"
            f"Tus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\n"
            f"Content-Length: {declared}\r\n\r\n")
    sock.sendall(head.encode() + sent)
    return sock


def lockers(request: pytest.FixtureRequest, locker: str) -> dict[str, str]:
    """Settings for ``LOCKER=file`` or ``LOCKER=redis`` (then with the session's real Redis)."""
    if locker == "redis":
        return {"locker": "redis", "redis_url": request.getfixturevalue("redis_server").url}
    return {"locker": locker}


@pytest.mark.parametrize(("workers", "locker"), [
    ("1", "file"),
    pytest.param("2", "file", marks=pytest.mark.process),  # worker processes
    pytest.param("2", "redis", marks=pytest.mark.process),
])
def test_head_after_a_silent_drop_takes_the_lock_over(make_server, request, workers: str, locker: str) -> None:
    """The old PATCH waits for bytes that never come (idle timeout 120 s); the client's HEAD must not wait."""
    server = make_server(upload_idle_timeout="120s", workers=workers, **lockers(request, locker))
    data = os.urandom(2 * MiB)
    client = server.client()
    client.timeout = httpx.Timeout(15)  # far below the idle timeout: a HEAD that waited for it fails
    url = create(client, len(data))
    stale = _stalled_patch(server, url, len(data), data[:700_000])
    try:
        assert wait_for(lambda: received(stale))  # then the client goes silent
        assert offset_of(client, url) == 700_000  # answered at once, with every byte that arrived
        uploader = tus(server.url).uploader(file_stream=io.BytesIO(data), chunk_size=MiB, url=server.url + url)
        uploader.upload()
    finally:
        stale.close()
    assert file_of(server, url)["sha256"] == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("locker", ["file", pytest.param("redis", marks=pytest.mark.slow)])
def test_patch_after_a_stalled_proxy_takes_the_lock_over(make_server, request, locker: str) -> None:
    """A client behind a network that went silent mid-PATCH retries directly: its PATCH wins the lock."""
    server = make_server(upload_idle_timeout="120s", **lockers(request, locker))
    data = os.urandom(2 * MiB)
    port = int(server.url.rsplit(":", 1)[1])
    url = create(server.client(), len(data))
    with BreakingProxy(port, after=MiB, mode="stall") as proxy:
        stalled = tus(proxy.url).uploader(file_stream=io.BytesIO(data), chunk_size=2 * MiB, url=proxy.url + url)
        thread = threading.Thread(target=_ignore_errors, args=(stalled.upload,), daemon=True)
        thread.start()
        assert proxy.broken.wait(10)
        assert wait_for(lambda: received(proxy.stalled_upstream()))  # the server has what got through
        resumed = tus(server.url).uploader(file_stream=io.BytesIO(data), chunk_size=2 * MiB, url=server.url + url)
        assert 0 < resumed.offset <= MiB
        resumed.upload()
    assert file_of(server, url)["sha256"] == hashlib.sha256(data).hexdigest()


def _ignore_errors(function) -> None:
    with contextlib.suppress(Exception):
        function()


def test_someone_elses_upload_url_is_not_found(make_server) -> None:
    server = make_server()
    uploader = tus(server.url).uploader(file_stream=io.BytesIO(b"a" * 2000), chunk_size=1000)
    uploader.upload(stop_at=1000)
    with pytest.raises(TusCommunicationError) as caught:  # tuspy asks for the offset first: bob is told 404
        tus(server.url, "bob").uploader(file_stream=io.BytesIO(b"b" * 2000), chunk_size=1000, url=uploader.url)
    assert caught.value.status_code == 404
    bob = server.client("bob")
    for method in ("HEAD", "DELETE"):
        assert bob.request(method, uploader.url, headers=TUS).status_code == 404
    assert offset_of(server.client("alice"), uploader.url) == 1000
