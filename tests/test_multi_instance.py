"""Three instances on one S3 bucket and one Redis behind nginx (round robin), all real, all on 127.0.0.1.

Consecutive requests land on different instances; one instance is killed with SIGKILL in the middle of an
upload and the client resumes through nginx. Nothing may depend on one instance's memory or disk.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import socket
import time
from collections.abc import Iterator

import pytest
import redis
from tusclient import client as tus_client

from .cluster import Cluster
from .cluster_load import run_load, verify
from .servers import TOKENS
from .tus import TUS, offset_of

MiB = 1024 * 1024
CLIENTS = int(os.environ.get("MULTI_INSTANCE_CLIENTS", "50"))
SECONDS = float(os.environ.get("MULTI_INSTANCE_SECONDS", "10"))

pytestmark = pytest.mark.process  # instances behind nginx, killed and restarted


@pytest.fixture
def cluster(tmp_path, redis_server, s3_server) -> Iterator[Cluster]:
    running = Cluster.start(tmp_path, redis_server, s3_server.bucket())
    yield running
    running.stop()


def tus(cluster: Cluster, user: str = "alice") -> tus_client.TusClient:
    return tus_client.TusClient(cluster.url + "/api/tus/", headers={"Authorization": f"Bearer {TOKENS[user]}"})


def downloaded_sha256(cluster: Cluster, upload_url: str) -> str:
    client = cluster.client()
    file_id = client.head(upload_url, headers=TUS).headers["Upload-File-Id"]
    return hashlib.sha256(client.get(client.get(f"/api/files/{file_id}").json()["url"]).content).hexdigest()


def test_patches_of_one_upload_alternate_between_instances(cluster: Cluster) -> None:
    data = os.urandom(3 * MiB + 77)
    uploader = tus(cluster).uploader(file_stream=io.BytesIO(data), chunk_size=256 * 1024)
    uploader.upload()
    path = uploader.url.removeprefix(cluster.url)
    patched_on = [upstream for method, uri, status, upstream in cluster.nginx.access_log()
                  if method == "PATCH" and uri == path and status == 204]
    assert len(patched_on) == 13 and set(patched_on) == {cluster.address(s) for s in cluster.instances}
    assert downloaded_sha256(cluster, path) == hashlib.sha256(data).hexdigest()
    assert cluster.server_errors() == []


def _stalled_patch(cluster: Cluster, path: str, offset: int, declared: int, sent: bytes) -> socket.socket:
    """A PATCH through nginx that sends part of its body and then nothing, as a client whose network died."""
    port = int(cluster.url.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port))
    head = (f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {TOKENS['alice']}\r\n"
            f"Tus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\nUpload-Offset: {offset}\r\n"
            f"Content-Length: {declared}\r\n\r\n")
    sock.sendall(head.encode() + sent)
    return sock


def test_instance_killed_mid_upload_and_the_client_resumes_through_nginx(cluster: Cluster, redis_server) -> None:
    data = os.urandom(8 * MiB)
    uploader = tus(cluster).uploader(file_stream=io.BytesIO(data), chunk_size=MiB)
    uploader.upload(stop_at=3 * MiB)
    path = uploader.url.removeprefix(cluster.url)
    stalled = _stalled_patch(cluster, path, 3 * MiB, 5 * MiB, data[3 * MiB:3 * MiB + 600_000])
    try:
        lock_key = f"upload-service:lock:tus:{path.rsplit('/', 1)[1]}"
        holder = None
        with redis.Redis.from_url(redis_server.url) as client:
            for _ in range(200):  # the lock's value names the instance (host:pid) that works on the upload
                if (holder := client.get(lock_key)) is not None:
                    break
                time.sleep(0.05)
        assert holder is not None
        pid = int(holder.decode().split(":")[1])
        (victim,) = [server for server in cluster.instances if server.process.pid == pid]
        cluster.kill(victim)
        resumed = tus(cluster).uploader(file_stream=io.BytesIO(data), chunk_size=MiB, url=uploader.url,
                                        retries=5, retry_delay=0.5)
        assert 3 * MiB <= resumed.offset <= 3 * MiB + 600_000
        resumed.upload()
    finally:
        stalled.close()
    assert downloaded_sha256(cluster, path) == hashlib.sha256(data).hexdigest()
    assert offset_of(cluster.client(), path) == len(data)
    assert cluster.server_errors() == []


def test_temporary_upload_and_persist_land_on_different_instances(cluster: Cluster) -> None:
    client = cluster.client()
    temporary = client.put("/api/upload_temporary",
                           json=[{"filename": "draft.txt", "content": base64.b64encode(b"draft").decode()}])
    assert temporary.status_code == 201, temporary.text
    (temp,) = temporary.json()["files"]
    persisted = client.post("/api/persist", json={"tokens": [temp["token"]], "metadata": {"note": "moved"}})
    assert persisted.status_code == 201, persisted.text
    assert temporary.headers["X-Upstream"] != persisted.headers["X-Upstream"]
    (file,) = persisted.json()["files"]
    assert file["id"] == temp["id"] and file["temporary"] is False
    downloaded = client.get(file["url"])
    assert downloaded.content == b"draft" and downloaded.headers["X-Upstream"] not in (
        temporary.headers["X-Upstream"], persisted.headers["X-Upstream"])
    again = client.post("/api/persist", json={"tokens": [temp["token"]]})  # once only, on any instance
    assert again.status_code >= 400 and again.status_code < 500


@pytest.mark.load
def test_many_clients_with_an_instance_killed_lose_and_duplicate_nothing(cluster: Cluster) -> None:
    """CI runs 50 clients for 10 s (tests/perf/multi_instance_load.py runs 200 for 60 s)."""
    result = run_load(cluster.url, CLIENTS, SECONDS, during=lambda: cluster.kill(cluster.instances[1]))
    assert result.failed == [] and len(result.finished) >= CLIENTS
    ids = verify(cluster.url, result)
    assert len(set(ids)) == len(ids) == len(result.finished)
    assert sorted(key.rsplit("/", 1)[1] for key in cluster.bucket.records("files/")) == sorted(ids)
    assert cluster.server_errors() == []
