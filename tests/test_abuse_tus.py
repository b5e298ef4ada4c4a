"""Abuse of tus by a signed-in user (issue 18, findings 2 and 4), each attack run against a real server.

Finding 2: a final upload could name one finished partial again and again (a small partial became a big file
in a blink) and partials were never consumed. Finding 4: HEAD took the upload's lock before checking whose
upload it is, so another user's HEAD cut its owner's PATCH off, a HEAD on any unknown id left a lock file
behind, and a tus id could be the name of a usage ledger lock.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import secrets
import threading
import time
from pathlib import Path

import httpx

from .conftest import stored_files
from .faults import connect, read_answer, received, wait_for
from .servers import TOKENS, Server
from .tus import TUS, create, metadata, patch

PARTIAL = 4096


def finished_partial(client: httpx.Client, data: bytes | None = None) -> str:
    """A finished partial upload's URL."""
    data = os.urandom(PARTIAL) if data is None else data
    url = create(client, len(data), Upload_Concat="partial")
    assert patch(client, url, 0, data).status_code == 204
    return url


def final(client: httpx.Client, *parts: str) -> httpx.Response:
    return client.post("/api/tus/", headers={**TUS, "Upload-Concat": "final;" + " ".join(parts),
                                             "Upload-Metadata": metadata(filename="joined.bin")})


def lock_files(server: Server) -> list[Path]:
    """What the file locker left under ``UPLOAD_DIR/.locks`` (lock and release files, any depth)."""
    folder = server.upload_dir / ".locks"
    return sorted(path for path in folder.rglob("*") if path.is_file()) if folder.is_dir() else []


def test_a_partial_named_many_times_is_refused(make_server) -> None:
    """Attack: one 4 KiB partial named 400 times in one final upload makes a 1.6 MB file (write amplification).
    Instead: a partial may be named once; the final is refused with 400, nothing is stored, the partial stays."""
    server = make_server()
    client = server.client()
    part = finished_partial(client)
    before = stored_files(server)
    refused = final(client, *[part] * 400)
    assert refused.status_code == 400, refused.status_code
    assert refused.headers["content-type"] == "application/problem+json"
    assert stored_files(server) == before
    assert client.head(part, headers=TUS).status_code == 200


def test_a_final_naming_thousands_of_parts_is_refused(make_server) -> None:
    """Attack: an Upload-Concat header naming one partial thousands of times, read once per name. Hypercorn
    refuses a 125 KB header itself (431 over HTTP/1.1), but over HTTP/2 it takes header lists up to 64 KiB: 2,000
    names (50 KB) were accepted. Instead: the number of parts is bounded (MAX_FILES_PER_REQUEST, 1000): 413,
    nothing stored."""
    server = make_server()
    client = server.client()
    part = finished_partial(client, b"x" * 16).rsplit("/", 1)[-1]  # a bare id names an upload as well as its URL
    before = stored_files(server)
    h2 = httpx.Client(base_url=server.url, http1=False, http2=True, timeout=60,
                      headers={"Authorization": f"Bearer {TOKENS['alice']}"})
    with h2:
        refused = final(h2, *[part] * 2000)
    assert refused.status_code == 413, refused.status_code
    assert refused.json()["max_parts"] == 1000
    assert final(client, *[part] * 5000).status_code in (400, 413, 431)  # 125 KB: refused, whoever refuses it
    assert stored_files(server) == before


def test_parts_over_the_limit_are_refused_before_any_lookup(make_server) -> None:
    """Attack: a final naming more distinct partials than a request may hold files. Instead: 413 at once."""
    server = make_server(max_files_per_request="3")
    client = server.client()
    parts = [finished_partial(client, b"ab") for _ in range(4)]
    refused = final(client, *parts)
    assert refused.status_code == 413, refused.status_code
    assert refused.json()["max_parts"] == 3
    assert final(client, *parts[:3]).status_code == 201


def test_a_partial_is_taken_by_one_final_only(make_server) -> None:
    """Attack: the same finished partial joined by final after final (each one a new file, for free).
    Instead: a partial a final upload took no longer exists: a second final naming it is refused (404)."""
    server = make_server()
    client = server.client()
    part = finished_partial(client)
    assert final(client, part).status_code == 201
    before = stored_files(server)
    again = final(client, part)
    assert again.status_code == 404, again.status_code
    assert stored_files(server) == before


def test_partials_are_gone_after_the_final_and_the_quota_counts_the_file_once(make_server) -> None:
    """Attack: partials stay after their final (and keep their quota): storage and quota amplification.
    Instead: the final removes its partials, and the owner's quota counts the joined bytes once: partials of
    60 KB join under a 100 KB quota, and 30 KB more still fit afterwards."""
    server = make_server(user_quota_bytes="100000")
    client = server.client()
    pieces = [os.urandom(30_000), os.urandom(30_000)]
    parts = [finished_partial(client, piece) for piece in pieces]
    joined = final(client, *parts)
    assert joined.status_code == 201, joined.text
    file = client.get(f"/api/files/{joined.headers['Upload-File-Id']}").json()
    assert file["sha256"] == hashlib.sha256(b"".join(pieces)).hexdigest()
    for part in parts:
        assert client.head(part, headers=TUS).status_code == 404
    remaining = {path.name for path in (server.upload_dir / ".resumable").iterdir()}
    assert not remaining & {part.rsplit("/", 1)[-1] for part in parts}
    assert client.put("/api/files/more.bin", content=os.urandom(30_000)).status_code == 201


def test_finals_racing_for_one_partial_one_wins(make_server) -> None:
    """Attack: several finals sent at once, all naming one partial, each hoping to copy it. Instead: the
    partial is taken under its lock, so exactly one final gets it and the others are told it is gone."""
    server = make_server()
    part = finished_partial(server.client())
    statuses: list[int] = []
    start = threading.Barrier(6)

    def race() -> None:
        client = server.client()
        start.wait(10)
        statuses.append(final(client, part).status_code)

    threads = [threading.Thread(target=race) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(statuses) == [201] + [404] * 5, statuses
    assert len(stored_files(server)) == 1


def test_someone_elses_head_does_not_cut_the_owners_patch(make_server) -> None:
    """Attack: bob sends HEAD to alice's upload URL while alice's PATCH streams; the HEAD asked for the lock
    first, so alice's PATCH was told to stop (423). Instead: bob gets 404 and alice's PATCH completes."""
    server = make_server(upload_idle_timeout="30s")
    data = os.urandom(400_000)
    alice = server.client()
    url = create(alice, len(data))
    host = server.url.removeprefix("http://")
    sock = connect(server, timeout=20)
    try:
        sock.sendall((f"PATCH {url} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKENS['alice']}\r\n"
                      f"Tus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\n"
                      f"Upload-Offset: 0\r\nContent-Length: {len(data)}\r\nConnection: close\r\n\r\n").encode()
                     + data[:200_000])
        assert wait_for(lambda: received(sock))
        assert server.client("bob").head(url, headers=TUS).status_code == 404
        sock.sendall(data[200_000:])
        answer = read_answer(sock)
    finally:
        sock.close()
    assert answer.startswith(b"HTTP/1.1 204"), answer[:200]
    assert f"upload-offset: {len(data)}".encode() in answer.lower()


def test_heads_on_unknown_ids_leave_no_lock_files(make_server) -> None:
    """Attack: HEAD on 300 well-formed ids nobody has; each left a lock file that no sweep removed.
    Instead: an unknown id is 404 before any lock is taken, and nothing is left on disk."""
    server = make_server()
    client = server.client()
    for _ in range(300):
        assert client.head(f"/api/tus/{secrets.token_urlsafe(18)}", headers=TUS).status_code == 404
    assert lock_files(server) == []


def test_head_on_a_ledger_lock_name_takes_no_lock(make_server) -> None:
    """Attack: ``HEAD /api/tus/usage-<owner hash>`` took the lock of that owner's usage ledger (tus ids and
    ledger locks shared one namespace), slowing their uploads. Instead: 404 and no lock taken at all.

    Without quotas the ledger itself never locks, so any lock file that appears was taken by the HEAD.
    """
    server = make_server()
    victim = hashlib.sha256(b"token:alice").hexdigest()[:32]
    for name in (f"usage-{victim}", f"usage-{victim[:18]}"):  # as it is, and cut to a tus id's length
        for user in ("bob", "alice"):
            assert server.client(user).head(f"/api/tus/{name}", headers=TUS).status_code == 404
    assert lock_files(server) == []


def test_stale_lock_files_are_swept(make_server) -> None:
    """Attack: lock files piled up for good (one per upload id ever locked, any id a HEAD named). Instead: the
    cleanup sweep removes lock files that nobody holds once they are older than a grace period; a held one
    stays."""
    server = make_server(cleanup_interval="1s")
    client = server.client()
    url = create(client, 3)
    assert patch(client, url, 0, b"abc").status_code == 204  # the upload's lock file stays behind
    folder = server.upload_dir / ".locks"
    planted = [folder / f"{secrets.token_urlsafe(18)}.lock" for _ in range(3)]  # as older versions left them
    for path in planted:
        path.touch()
    assert len(lock_files(server)) >= 4
    held = folder / "held.lock"
    fd = os.open(held, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        old = time.time() - 3600
        for path in lock_files(server):
            os.utime(path, (old, old))
        assert wait_for(lambda: lock_files(server) == [held], timeout=5), lock_files(server)
    finally:
        os.close(fd)
    assert client.head(url, headers=TUS).status_code == 200  # the upload itself is untouched
