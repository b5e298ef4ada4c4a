"""Many tus clients (tuspy, one thread each) uploading files of mixed sizes through one address, then a check
of every byte: each finished upload is downloaded and its sha256 compared, and the store holds exactly those.

Clients resume as real ones do: a failed chunk is retried after asking the server for the offset, and a client
whose upload broke off (its instance was killed) starts again from the offset the server reports.
"""

from __future__ import annotations

import hashlib
import io
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
from tusclient import client as tus_client

from .servers import TOKENS, tls

KiB, MiB = 1024, 1024 * 1024
SIZES = (1, 10 * KiB, 10 * KiB, 100 * KiB, 100 * KiB, 700 * KiB, 2 * MiB + 123, 5 * MiB)  # small ones most often
USERS = ("alice", "bob", "carol")


@dataclass
class Finished:
    user: str
    url: str
    size: int
    sha256: str


@dataclass
class LoadResult:
    finished: list[Finished] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # uploads a client gave up on, with why
    resumed: int = 0  # uploads that had to start a new client from the server's offset
    seconds: float = 0.0

    @property
    def bytes(self) -> int:
        return sum(item.size for item in self.finished)


class TusGaveUp(Exception):
    """A tus client retried and resumed for long enough and still could not finish its upload."""


def tus_upload(base_url: str, user: str, data: bytes, *, attempts: int = 30,
               filename: str | None = None) -> tuple[str, int]:
    """Upload ``data`` with tuspy as a real client does, resuming after failures; (upload URL, resumptions)."""
    client = tus_client.TusClient(base_url + "/api/tus/", headers={"Authorization": f"Bearer {TOKENS[user]}"})
    url = None
    for attempt in range(attempts):
        try:
            uploader = client.uploader(file_stream=io.BytesIO(data), chunk_size=MiB, retries=5, retry_delay=0.3,
                                       url=url, metadata={"filename": filename or f"load-{len(data)}.bin"})
            if url is None:
                url = uploader.create_url()
                uploader.set_url(url)
                uploader.offset = 0
            uploader.upload()
            return url, attempt
        except Exception as error:
            reason = f"{type(error).__name__}: {error}"
            time.sleep(0.3)
    raise TusGaveUp(f"{url}: {reason}")


def _upload(base_url: str, user: str, data: bytes, result: LoadResult, lock: threading.Lock) -> None:
    try:
        url, attempts = tus_upload(base_url, user, data)
    except TusGaveUp as error:
        with lock:
            result.failed.append(str(error))
        return
    with lock:
        result.finished.append(Finished(user, url, len(data), hashlib.sha256(data).hexdigest()))
        result.resumed += attempts > 0


def run_clients(clients: int, seconds: float, client: Callable[[int, float], None],
                during: Callable[[], None] | None = None) -> float:
    """Run ``client(number, deadline)`` in ``clients`` threads, ``during()`` half-way; return the seconds taken."""
    deadline = time.monotonic() + seconds
    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(number, deadline), daemon=True) for number in range(clients)]
    for thread in threads:
        thread.start()
    if during is not None:
        time.sleep(seconds / 2)
        during()
    for thread in threads:
        thread.join(seconds + 300)
    return time.monotonic() - started


def run_load(base_url: str, clients: int, seconds: float, *, seed: int = 1,
             during: Callable[[], None] | None = None) -> LoadResult:
    """``clients`` threads upload back to back for ``seconds``; ``during()`` runs in the middle (a kill)."""
    result = LoadResult()
    lock = threading.Lock()

    def client(number: int, deadline: float) -> None:
        rng = random.Random(seed * 1000 + number)
        while time.monotonic() < deadline:
            _upload(base_url, USERS[number % len(USERS)], rng.randbytes(rng.choice(SIZES)), result, lock)

    result.seconds = run_clients(clients, seconds, client, during)
    return result


def verify(base_url: str, result: LoadResult) -> list[str]:
    """Download the file of every finished upload and assert its size and sha256; return the file ids."""
    ids: list[str] = []
    clients = {user: httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {TOKENS[user]}"},
                                  timeout=120, verify=tls()) for user in USERS}
    try:
        for item in result.finished:
            client = clients[item.user]
            head = client.head(item.url, headers={"Tus-Resumable": "1.0.0"})
            file_id = head.headers.get("Upload-File-Id")
            assert head.status_code == 200 and file_id, (item.url, head.status_code)
            described = client.get(f"/api/files/{file_id}").json()
            digest = hashlib.sha256()
            with client.stream("GET", described["url"]) as download:
                assert download.status_code == 200, (item.url, download.status_code)
                for chunk in download.iter_bytes():
                    digest.update(chunk)
            assert digest.hexdigest() == item.sha256 == described["sha256"], item.url
            assert described["size"] == item.size, item.url
            ids.append(file_id)
    finally:
        for client in clients.values():
            client.close()
    return ids
