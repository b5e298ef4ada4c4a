"""``Idempotency-Key`` across instances: a retry on another instance is recognised, and an instance that dies
after committing and before answering (test-only fault points, ``tests/plugins/crash_after_commit.py``) leaves
one set of files, which the retry is answered with: behind nginx with ``deploy/nginx.conf`` as shipped, nginx's
retry of a body it held whole or the client's after nginx's 502, when the answer was kept and then lost; the
client's when the instance died before it could keep it (raw PUT, JSON batch, persist, delete), and counted once
in the owner's usage.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from upload_service.builtin.local_storage.layout import Layout
from upload_service.usage import Usage

from .cluster import Nginx
from .conftest import stored_files
from .faults import connect, read_answer, received, request_head, wait_for
from .servers import TOKENS, Server, start_server, tls


def key() -> dict[str, str]:
    return {"Idempotency-Key": f'"{uuid.uuid4()}"'}


def crash_once() -> dict[str, str]:
    """The header that makes the first instance to answer this request die before answering."""
    return {"X-Crash-Once": uuid.uuid4().hex}


def batch(count: int) -> list[dict[str, str]]:
    return [{"filename": f"{n}.txt", "content": base64.b64encode(f"batch file {n}".encode()).decode()}
            for n in range(count)]


BOTH_BACKENDS = pytest.mark.parametrize("storage_backend", ["local", "s3"], indirect=True)


@BOTH_BACKENDS
def test_a_repeat_on_another_instance_gets_the_first_answer(twins) -> None:
    first, second = twins()
    headers = key()
    made = first.client().put("/api/files/twin.txt", content=b"once", headers=headers)
    again = second.client().put("/api/files/twin.txt", content=b"once", headers=headers)
    assert made.status_code == again.status_code == 201 and again.json() == made.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len(stored_files(first, "files/")) == 1


@BOTH_BACKENDS
def test_a_repeat_on_another_instance_while_the_first_runs_is_a_409(twins) -> None:
    first, second = twins()
    headers = key()
    body = b"slow " * 20_000
    sock = connect(first)
    try:
        sock.sendall(request_head(first, "/api/files/slow.txt", len(body), headers=headers) + body[:1000])
        assert wait_for(lambda: received(sock))
        repeat = second.client().put("/api/files/slow.txt", content=body, headers=headers)
        assert repeat.status_code == 409 and "in progress" in repeat.json()["detail"]
    finally:
        sock.close()


@dataclass
class Pair:
    """Two instances on one UPLOAD_DIR (the file locker spans them) with the fault point on and quotas (so a usage
    ledger), nginx in front; an instance that died is started again on its port before the next test."""

    root: Path
    instances: list[Server]
    nginx: Nginx


    @classmethod
    def start(cls, root: Path) -> Pair:
        pair = cls(root, [], None)  # type: ignore[arg-type]
        try:
            pair.instances = [pair._start(number) for number in range(2)]
            pair.nginx = pair._nginx()
        except Exception:
            pair.stop()
            raise
        return pair

    def _start(self, number: int, port: int | None = None) -> Server:
        folder = self.root / f"instance-{number}-{uuid.uuid4().hex[:6]}"
        folder.mkdir()
        return start_server(folder, port=port, upload_dir=str(self.root / "uploads"),
                            plugins="tests.plugins.crash_after_commit", crash_after_commit_dir=str(self.root),
                            forwarded_allow_ips="127.0.0.1", user_quota_files="100000")

    def _nginx(self) -> Nginx:
        """nginx with deploy/nginx.conf as shipped; it marks a dead instance down, so every retry in these tests
        goes to the other."""
        return Nginx.deployed(self.root / f"nginx-{uuid.uuid4().hex[:6]}",
                              [server.url.removeprefix("http://") for server in self.instances])

    def revive(self) -> None:
        """Start a dead instance again on its port, and nginx afresh (it would keep the port down a while)."""
        dead = [number for number, server in enumerate(self.instances) if server.process.poll() is not None]
        for number in dead:
            self.instances[number] = self._start(number, int(self.instances[number].url.rsplit(":", 1)[1]))
        if dead:
            self.nginx.stop()
            self.nginx = self._nginx()

    def stop(self) -> None:
        if self.nginx is not None:
            self.nginx.stop()
        for server in self.instances:
            server.stop()

    def client(self, server: Server | None = None) -> httpx.Client:
        url = self.nginx.url if server is None else server.url
        return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKENS['alice']}"}, timeout=30,
                            verify=tls())

    def files(self, area: str = "files/") -> set[str]:
        """The ids of the persistent (or ``temp/``: temporary) files in the storage (an object is a file named by
        its id, or a folder)."""
        return {path.parent.name if path.name == "data" else path.name
                for path in stored_files(self.root / "uploads", area)}

    def usage(self) -> Usage:
        """The one owner's usage ledger as the instances left it."""
        layout = Layout(self.root / "uploads")
        (path,) = (layout.objects / "usage").iterdir()
        stored = layout.read_record(path, f"usage/{path.name}")
        assert stored is not None
        return Usage.from_metadata(stored.metadata)

    def stored(self) -> tuple[int, int]:
        """The files and bytes the storage holds, persistent and temporary (what the usage ledger should say)."""
        paths = stored_files(self.root / "uploads", "files/") + stored_files(self.root / "uploads", "temp/")
        return len(paths), sum(path.stat().st_size for path in paths)

    def alive(self) -> list[Server]:
        return [server for server in self.instances if server.process.poll() is None]


@pytest.fixture(scope="module")
def started_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    running = Pair.start(tmp_path_factory.mktemp("pair"))
    yield running
    running.stop()


@pytest.fixture
def pair(started_pair: Pair) -> Pair:
    started_pair.revive()
    return started_pair


def in_one_piece(pair: Pair, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], Any]:
    """A PUT through nginx whose head and body go out in one write, as a small upload does from many clients:
    the status, the headers (lowercase names) and the JSON body of the answer."""
    with connect(pair.nginx) as sock:  # nginx has the url that connect and request_head need
        sock.sendall(request_head(pair.nginx, path, len(body), headers={**headers, "Connection": "close"}) + body)
        answer = read_answer(sock)
    head, _, content = answer.partition(b"\r\n\r\n")
    status, *lines = head.decode().split("\r\n")
    fields = {name.lower(): value for name, value in (line.split(": ", 1) for line in lines)}
    return int(status.split(" ")[1]), fields, json.loads(content)


def tried(pair: Pair) -> list[list[str]]:
    """The instances nginx sent each PUT to, in order (logged once answered)."""
    return [upstreams.split(", ") for method, _, _, upstreams in pair.nginx.access_log() if method == "PUT"]


@pytest.mark.process
@pytest.mark.parametrize("kind", ["raw in one piece, nginx's key", "json batch in one piece", "raw streamed"])
def test_an_instance_dead_after_committing_behind_the_deployed_nginx_leaves_one_file(pair: Pair, kind) -> None:
    """deploy/nginx.conf as shipped streams bodies (``proxy_request_buffering off``). A small body that came with
    its head (up to about 10 KiB with nginx 1.22) it holds whole, and it sends the PUT again to the other
    instance with the same Idempotency-Key (the client's, or the one nginx gives a request without:
    $request_id), which answers with the first attempt's answer. A body it was still streaming it cannot send
    again: the client gets 502, and its own retry with its key gets the first answer. One file either way."""
    client_key = {} if "nginx's key" in kind else key()
    headers = {**client_key, **crash_once()}
    before = pair.files()
    if "one piece" in kind:
        if "json" in kind:
            status, fields, answer = in_one_piece(pair, "/api/upload", json.dumps(batch(3)).encode(),
                                                  {**headers, "Content-Type": "application/json"})
        else:
            status, fields, answer = in_one_piece(pair, "/api/files/crash.txt", b"sent with its head", headers)
        assert status == 201 and fields["idempotent-replayed"] == "true"
        assert wait_for(lambda: len(tried(pair)) == 1)
        assert len(tried(pair)[0]) == 2  # nginx sent it to both instances
    else:
        body = os.urandom(64 * 1024)  # streamed on, never held whole
        with pair.client() as client:
            cut = client.put("/api/files/streamed.bin", content=body, headers=headers)
            assert cut.status_code == 502
            retried = client.put("/api/files/streamed.bin", content=body, headers=headers)
        assert retried.status_code == 201 and retried.headers["Idempotent-Replayed"] == "true"
        answer = retried.json()
        assert wait_for(lambda: len(tried(pair)) == 2)
        assert [len(instances) for instances in tried(pair)] == [1, 1]  # nginx did not send the first twice
    assert wait_for(lambda: len(pair.alive()) == 1)  # the one that committed first died; the other replayed
    assert pair.files() - before == {file["id"] for file in answer.get("files", [answer])}


@pytest.mark.process
@pytest.mark.parametrize("kind", ["raw", "json batch", "persist", "persist cut midway", "delete"])
def test_a_retry_after_an_instance_died_between_its_commit_and_keeping_the_answer_does_not_do_it_twice(
        pair: Pair, kind) -> None:
    """The dead attempt left its mark and its work but no answer: the retry adopts the work (the same file ids),
    finds the files persisted (all, or the first two of three when it died between two moves: it moves the
    rest) or the file gone, and answers as the first would have. The owner's usage is then what the storage
    holds: the files of an upload that died before it settled its usage are counted by the retry that adopts them,
    which also takes over the dead attempt's hold at once."""
    first, second = pair.instances
    name = uuid.uuid4().hex
    headers = key()
    if kind == "raw":
        request = ("PUT", f"/api/files/crash-in-commit-{name}.txt", {"content": b"committed, no answer kept"})
    elif kind == "json batch":
        items = batch(2) + [{"filename": f"crash-in-commit-{name}.txt", "content": "eA=="}]
        request = ("PUT", "/api/upload", {"json": items})
    elif kind.startswith("persist"):
        crashing = {"filename": f"crash-{'after-move' if 'midway' in kind else 'on-persist'}-{name}.txt",
                    "content": "eA=="}
        with pair.client(second) as client:
            made = client.put("/api/upload_temporary", json=[*batch(1), crashing, *batch(1)])
        temporary = {file["id"] for file in made.json()["files"]}
        request = ("POST", "/api/persist", {"json": {"tokens": [f["token"] for f in made.json()["files"]]}})
    else:
        with pair.client(second) as client:
            doomed = client.put(f"/api/files/crash-on-delete-{name}.txt", content=b"delete me").json()["id"]
        request = ("DELETE", f"/api/files/{doomed}", {})
    before = pair.files()
    method, path, body = request
    with pair.client(first) as client, pytest.raises(httpx.TransportError):
        client.request(method, path, headers=headers, **body)
    assert wait_for(lambda: first.process.poll() is not None)
    if kind == "persist cut midway":  # it died between two moves: the first two are persistent, the third not
        ids = [file["id"] for file in made.json()["files"]]
        assert pair.files() - before == set(ids[:2]) and ids[2] in pair.files("temp/")
    with pair.client(second) as client:
        answer = client.request(method, path, headers=headers, **body)
        again = client.request(method, path, headers=headers, **body)
    usage = pair.usage()
    assert (usage.files, usage.bytes) == pair.stored() and usage.holds == {}
    if kind == "delete":
        assert answer.status_code == again.status_code == 204 and pair.files() == before - {doomed}
        return
    assert answer.status_code == 201, answer.text
    files = answer.json().get("files", [answer.json()])
    assert pair.files() - before == {file["id"] for file in files}  # each file once: none stored twice
    assert len(files) == (1 if kind == "raw" else 3)
    if kind.startswith("persist"):
        assert [file["id"] for file in files] == [file["id"] for file in made.json()["files"]]  # in token order
        assert not temporary & pair.files("temp/")  # none left temporary
    assert again.json() == answer.json() and again.headers["Idempotent-Replayed"] == "true"


@pytest.mark.process
def test_a_visitors_retry_after_the_instance_died_takes_no_second_slot_of_the_link(pair: Pair) -> None:
    """A visitor's keyed upload fills a file request link (``max_files`` 1) and its instance dies after committing,
    before keeping the answer: the retry on the other instance finds the slot its dead attempt claimed, so it
    answers 201 with the file that attempt committed (not 409: the link is full of it), and the link counts the
    file once."""
    first, second = pair.instances
    crashing = f"crash-in-commit-{uuid.uuid4().hex}.txt"
    with pair.client(second) as owner:
        link = owner.post("/api/requests", json={"title": "crash", "max_files": 1}).json()
    put = f"{link['url']}/files/{crashing}"
    body, headers = b"committed, no answer kept", key()
    before = pair.files()
    with first.client(None) as visitor, pytest.raises(httpx.TransportError):
        visitor.put(put, content=body, headers=headers)
    assert wait_for(lambda: first.process.poll() is not None)
    committed = pair.files() - before
    assert len(committed) == 1
    with second.client(None) as visitor:
        answer = visitor.put(put, content=body, headers=headers)
        again = visitor.put(put, content=body, headers=headers)
    assert answer.status_code == 201, answer.text
    assert answer.json()["filename"] == crashing and answer.json()["size"] == len(body)
    assert again.json() == answer.json() and again.headers["Idempotent-Replayed"] == "true"
    assert pair.files() - before == committed  # the dead attempt's file, not stored twice
    with pair.client(second) as owner:
        assert owner.get(f"/api/requests/{link['id']}").json()["files_received"] == 1
