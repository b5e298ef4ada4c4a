"""The S3 backend end to end: services on SeaweedFS's S3 gateway over real HTTP, checked from the outside.

The shared API suites already run on S3 (see ``conftest.STORAGE_SUITES``); these tests cover what only a
remote object store has: multipart streaming in bounded memory, aborted multipart uploads, several
instances on one bucket, crash recovery by the sweep, start-up checks and presigned downloads.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from upload_service_s3 import journal

from .servers import TOKENS, Server, start_server
from .tcp_proxy import BreakingProxy

MiB = 1024 * 1024


@pytest.fixture
def s3_service(make_server, s3_server):
    """``s3_service(bucket=None, **settings)``: a service on a fresh bucket, or on a given one (shared)."""

    def make(bucket=None, **settings):
        bucket = bucket or s3_server.bucket()
        server = make_server(**{**bucket.settings(), **settings})
        server.backend, server.bucket = "s3", bucket
        return server

    return make


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def _chunks(total: int, seed: bytes = b"s3"):
    block = hashlib.sha256(seed).digest() * (MiB // 32)
    for _ in range(total // MiB):
        yield block


def _wait_for(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


@pytest.mark.process
def test_200_mib_upload_streams_through_in_bounded_memory(s3_service):
    server = s3_service()
    client = server.client()
    client.put("/api/files/warm-up.txt", content=b"warm up")  # imports and pools in place before the baseline
    baseline = _peak_rss_mib(server.process.pid)
    expected = hashlib.sha256()
    for chunk in _chunks(200 * MiB):
        expected.update(chunk)
    response = client.put("/api/files/big.bin", content=_chunks(200 * MiB), timeout=300)
    assert response.status_code == 201, response.text
    file = response.json()
    assert file["size"] == 200 * MiB and file["sha256"] == expected.hexdigest()
    peak = _peak_rss_mib(server.process.pid)
    assert peak - baseline < 80, f"peak RSS grew by {peak - baseline:.0f} MiB while streaming 200 MiB"
    blobs = [key for key in server.bucket.keys("blobs/")]
    etags = {server.bucket.server.client().head_object(Bucket=server.bucket.name, Key=key)["ETag"] for key in blobs}
    assert any(etag.endswith('-25"') for etag in etags), etags  # one multipart upload of 25 parts of 8 MiB
    downloaded = hashlib.sha256()
    with client.stream("GET", file["url"]) as body:
        for chunk in body.iter_bytes():
            downloaded.update(chunk)
    assert downloaded.hexdigest() == file["sha256"]
    assert server.bucket.leftovers() == []


def _start_raw_put(server, total: int) -> socket.socket:
    """A raw PUT that announces ``total`` bytes: the test sends what it likes, then hangs up."""
    host, port = server.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.sendall((f"PUT /api/files/cut.bin HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKENS['alice']}\r\n"
                  f"Content-Type: application/octet-stream\r\nContent-Length: {total}\r\n\r\n").encode())
    return sock


def test_a_client_hanging_up_mid_upload_leaves_no_parts(s3_service):
    server = s3_service()
    sock = _start_raw_put(server, 100 * MiB)
    for chunk in _chunks(30 * MiB):
        sock.sendall(chunk)
    _wait_for(lambda: server.bucket.multipart_uploads() != [])  # the upload reached S3 as a multipart upload
    sock.close()
    _wait_for(lambda: server.bucket.multipart_uploads() == [] and server.bucket.leftovers() == [])
    assert server.bucket.records() == []
    assert server.client().get("/api/files").json()["files"] == []


def _kill_mid_upload(server) -> None:
    sock = _start_raw_put(server, 100 * MiB)
    for chunk in _chunks(20 * MiB):
        sock.sendall(chunk)
    _wait_for(lambda: server.bucket.multipart_uploads() != [])
    server.process.send_signal(signal.SIGKILL)
    server.process.wait()
    sock.close()
    assert server.bucket.leftovers() != []  # kill -9: nobody aborted anything


@pytest.mark.process
def test_a_killed_server_leaves_parts_that_the_next_sweep_aborts(s3_service, s3_server):
    bucket = s3_server.bucket()
    _kill_mid_upload(s3_service(bucket))
    s3_service(bucket, s3_staging_timeout="1s", cleanup_interval="1s")
    _wait_for(lambda: bucket.leftovers() == [])
    assert bucket.records() == []


@pytest.mark.process
def test_cleanup_command_aborts_the_parts_of_a_killed_server(s3_service):
    server = s3_service()
    _kill_mid_upload(server)
    server.bucket.wait_out(1)  # older than the staging timeout below, by the S3 server's clock
    result = subprocess.run([sys.executable, "-m", "upload_service.cli", "cleanup"],
                            env={**server.env, "S3_STAGING_TIMEOUT": "1s"}, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert '"removed": 1' in result.stdout
    assert server.bucket.leftovers() == [] and server.bucket.multipart_uploads() == []
    assert "Unclosed" not in result.stderr


def test_two_instances_on_one_bucket_see_each_others_files(s3_service, s3_server):
    bucket = s3_server.bucket()
    one, two = s3_service(bucket), s3_service(bucket)
    temporary = one.client().put("/api/files/shared.txt", params={"temporary": "1"}, content=b"shared").json()
    persisted = two.client().post("/api/persist", json={"tokens": [temporary["token"]], "metadata": {"by": "two"}})
    assert persisted.status_code == 201, persisted.text
    file = persisted.json()["files"][0]
    assert file["id"] == temporary["id"] and file["metadata"] == {"by": "two"} and not file["temporary"]
    assert one.client().get(file["url"]).content == b"shared"
    assert [f["id"] for f in one.client().get("/api/files").json()["files"]] == [file["id"]]
    assert one.client().get("/api/files", params={"temporary": "1"}).json()["files"] == []


def test_racing_persists_on_two_instances_persist_once(s3_service, s3_server):
    bucket = s3_server.bucket()
    one, two = s3_service(bucket), s3_service(bucket)
    tokens = [one.client().put(f"/api/files/race{i}.txt", params={"temporary": "1"}, content=b"race").json()["token"]
              for i in range(4)]
    clients = [one.client(), two.client()]
    for token in tokens:
        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(
                lambda c, token=token: c.post("/api/persist", json={"tokens": [token]}).status_code, clients))
        assert sorted(answers)[0] == 201 and answers.count(201) == 1, answers
    assert len(one.client().get("/api/files").json()["files"]) == 4
    assert bucket.leftovers() == []


@contextmanager
def _process_server(tmp_path: Path, **settings: str) -> Iterator[Server]:
    """One service in a process of its own (to be killed), beside the test's in-process ones."""
    server = start_server(tmp_path, **settings)
    try:
        yield server
    finally:
        server.stop()


def test_a_delete_cut_by_kill_9_is_taken_over_by_another_instance_once_the_lease_runs_out(s3_service, s3_server,
                                                                                          tmp_path):
    """Instance one (a process of its own) is killed while its DELETE waits on S3 (a proxy holds the record's
    deletion), leaving the blob's journal entry. The same DELETE on instance two waits out the dead entry's
    lease (1 s), finishes the dead delete and answers 204; it used to wait 10 s for the lock and answer 500
    until the sweep ran."""
    bucket = s3_server.bucket()
    with BreakingProxy(int(s3_server.url.rsplit(":", 1)[1]), method=b"DELETE", after=1, mode="stall",
                       times=0) as proxy, _process_server(tmp_path, **{
                           **bucket.settings(), "s3_endpoint_url": proxy.url, "s3_staging_timeout": "1s"}) as one:
        two = s3_service(bucket, s3_staging_timeout="1s")
        file = two.client().put("/api/files/doomed.txt", content=b"delete me").json()
        proxy.times = 1  # from now on the first DELETE sent to S3 stalls: the record's, after the entry is taken
        with ThreadPoolExecutor(1) as pool:
            cut = pool.submit(one.client().delete, f"/api/files/{file['id']}")
            assert proxy.broken.wait(20)
            assert bucket.keys("journal/") and bucket.records("files/")  # the entry is held, the record still there
            one.process.send_signal(signal.SIGKILL)
            one.process.wait()
            with pytest.raises(httpx.TransportError):
                cut.result(20)
    started = time.monotonic()
    answer = two.client().delete(f"/api/files/{file['id']}")
    took = time.monotonic() - started
    assert answer.status_code == 204, answer.text
    assert took < 5, f"took {took:.1f} s"
    print(f"the second DELETE answered after {took:.1f} s (lease 1 s; the lock wait is 10 s)")
    assert two.client().delete(f"/api/files/{file['id']}").status_code == 404
    assert bucket.records() == [] and bucket.leftovers() == []


def test_a_delete_waiting_on_live_work_answers_503_with_retry_after(s3_service, monkeypatch):
    """Another instance holds the file's blob (its entry was just written: a live holder for a whole lease): the
    DELETE gives up after the lock wait with 503 and a Retry-After, never a 500, and works once the holder is done."""
    monkeypatch.setattr(journal, "LOCK_WAIT_SECONDS", 0.2)  # the in-process server's, to keep the test short
    server = s3_service()
    file = server.client().put("/api/files/held.txt", content=b"held").json()
    bucket, s3 = server.bucket, server.bucket.server.client()
    [record] = bucket.records("files/")
    blob = json.loads(s3.get_object(Bucket=bucket.name, Key=bucket.prefix + "objects/" + record)["Body"].read())["blob"]
    entry = bucket.prefix + "journal/" + blob
    s3.put_object(Bucket=bucket.name, Key=entry, Body=json.dumps({"op": "update", "key": record, "holder": "live"}))
    busy = server.client().delete(f"/api/files/{file['id']}")
    assert busy.status_code == 503, busy.text
    assert busy.headers["content-type"] == "application/problem+json"
    assert 25 <= int(busy.headers["retry-after"]) <= 31  # when the holder's lease (30 s) would run out
    assert "being changed by other work" in busy.json()["detail"]
    assert bucket.records("files/") == [record]
    s3.delete_object(Bucket=bucket.name, Key=entry)  # the holder is done
    assert server.client().delete(f"/api/files/{file['id']}").status_code == 204


def _start_cli(bucket_settings: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "SECRET_KEY": "test-secret-key-0123456789abcdef", "PORT": "0",
           **{key.upper(): value for key, value in bucket_settings.items()}}
    return subprocess.run([sys.executable, "-m", "upload_service.cli"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)


def test_start_up_refuses_a_missing_bucket(s3_server, tmp_path):
    settings = {**s3_server.bucket().settings(), "s3_bucket": "no-such-bucket-here"}
    result = _start_cli(settings, tmp_path)
    assert result.returncode == 2
    assert "S3 bucket 'no-such-bucket-here'" in result.stderr and "does not exist" in result.stderr


def test_start_up_refuses_without_a_bucket_setting(s3_server, tmp_path):
    settings = {**s3_server.bucket().settings(), "s3_bucket": ""}
    result = _start_cli(settings, tmp_path)
    assert result.returncode == 2 and "needs S3_BUCKET" in result.stderr


def test_readiness_reports_s3(s3_service):
    server = s3_service()
    ready = httpx.get(server.url + "/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ok", "storage": "s3"}
    server.bucket.server.client().delete_bucket(Bucket=server.bucket.name)
    gone = httpx.get(server.url + "/readyz")
    assert gone.status_code == 503 and gone.json()["storage"] == "s3"


def test_presigned_downloads_redirect_to_s3(s3_service):
    server = s3_service(s3_presigned_downloads="true")
    client = server.client()
    file = client.put("/api/files/report.pdf", content=b"%PDF presigned",
                      headers={"Content-Type": "application/pdf"}).json()
    answer = client.get(file["url"])
    assert answer.status_code == 302
    location = answer.headers["location"]
    assert location.startswith(server.bucket.server.url) and "X-Amz-Signature" in location
    direct = httpx.get(location)
    assert direct.status_code == 200 and direct.content == b"%PDF presigned"
    assert direct.headers["content-type"] == "application/pdf"
    disposition = direct.headers["content-disposition"]
    assert disposition.startswith("attachment") and "report.pdf" in disposition
    assert httpx.get(server.url + f"/api/files/{file['id']}/content").status_code == 401  # still needs the owner


def test_a_host_app_configures_s3_through_plugin_settings_not_the_environment(s3_server, upload_service_factory,
                                                                             monkeypatch):
    """Embedded with ``Settings(...)``, the S3 plugin reads the host's ``plugin_settings``: the ``S3_*`` variables
    of the environment (a bucket that does not exist here) change nothing."""
    from upload_service_s3.settings import S3Settings

    from .s3 import CREDENTIALS

    for name, value in {**CREDENTIALS, "S3_BUCKET": "not-this-bucket", "S3_PREFIX": "not-here/"}.items():
        monkeypatch.setenv(name, value)  # credentials come from the AWS chain, S3_* must not
    bucket = s3_server.bucket(prefix="host/")
    running = upload_service_factory(storage_backend="s3", plugin_settings={
        "S3_BUCKET": bucket.name, "S3_ENDPOINT_URL": s3_server.url, "S3_PREFIX": bucket.prefix})
    stored = running.client().put("/api/files/host.txt", content=b"stored where the host said")
    assert stored.status_code == 201, stored.text
    assert [key.rsplit("/", 1)[1] for key in bucket.records("files/")] == [stored.json()["id"]]
    assert running.service.plugin_settings(S3Settings).bucket == bucket.name
    assert running.client().get(stored.json()["url"]).content == b"stored where the host said"
