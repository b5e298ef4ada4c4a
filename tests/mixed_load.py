"""Many clients doing everything a user does at once against one service, then a check of every stored byte.

Each client (a thread with its own keep-alive connection) picks actions at random: raw, multipart and base64
JSON uploads of small and large files, temporary upload then persist, tus uploads (tuspy, as in
``cluster_load``), downloads (some with Range), listings and deletes. It remembers what it sent (a seed, so
that bytes can be made again for a Range check) and what the server acknowledged. ``check_store`` then lists
every user's files and downloads each: every acknowledged file must be there with the right sha256, nothing
deleted may remain, and nothing else may appear (a duplicate, or a partial file).
"""

from __future__ import annotations

import base64
import hashlib
import random
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from .cluster_load import USERS, TusGaveUp, run_clients, tus_upload
from .conftest import object_files
from .servers import TOKENS, tls

KiB, MiB = 1024, 1024 * 1024
SMALL = (0, 1, 1000, 10 * KiB, 100 * KiB)
LARGE = (2 * MiB + 123, 5 * MiB, 12 * MiB)
PARTS = (1, 10 * KiB, 300 * KiB, 2 * MiB)
TUS = (10 * KiB, 700 * KiB, 3 * MiB)
CLIENT_KEEPALIVE = 2.0  # below the server's 5 s: a connection is never reused just as the server closes it
ACTIONS = {"raw_small": 18, "raw_large": 5, "multipart": 10, "json": 10, "temporary_persist": 8, "tus": 5,
           "download": 18, "download_range": 8, "list": 4, "delete": 8}


def make_bytes(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


@dataclass(frozen=True)
class Sent:
    """A file the server acknowledged, and how to make its bytes again."""

    user: str
    file_id: str
    seed: int
    size: int
    sha256: str


@dataclass
class LoadReport:
    """What the clients tried and saw; ``check_store`` adds what the store holds."""

    seconds: float = 0.0
    tried: Counter = field(default_factory=Counter)  # action -> count
    statuses: Counter = field(default_factory=Counter)  # (action, status or error name) -> count
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    bytes_up: int = 0
    bytes_down: int = 0
    live: dict[str, Sent] = field(default_factory=dict)  # file id -> what it must hold
    deleted: set[str] = field(default_factory=set)
    unanswered: set[int] = field(default_factory=set)  # seeds (file names) of uploads whose answer never came
    wrong_bytes: list[str] = field(default_factory=list)  # downloads during the run that did not match
    broken: list[str] = field(default_factory=list)  # requests whose connection failed, and when
    stored_unanswered: int = 0  # uploads whose answer was lost and whose file was stored whole
    verified: int = 0
    lost: list[str] = field(default_factory=list)
    corrupted: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def errors(self) -> Counter:
        """Non-2xx answers and broken requests, by status."""
        errors: Counter = Counter()
        for (_, status), count in self.statuses.items():
            if not (isinstance(status, int) and status < 300):
                errors[status] += count
        return errors

    def server_errors(self) -> int:
        return sum(count for status, count in self.errors().items() if not isinstance(status, int) or status >= 500)


class LoadClient:
    """One simulated user session: a connection, a random generator, and the files it owns."""

    def __init__(self, base_url: str, number: int, seed: int, report: LoadReport) -> None:
        self.base_url = base_url
        self.user = USERS[number % len(USERS)]
        self.rng = random.Random(seed * 7919 + number)
        self.report = report
        self.http = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {TOKENS[self.user]}"},
                                 timeout=180, limits=httpx.Limits(keepalive_expiry=CLIENT_KEEPALIVE), verify=tls())
        self.owned: list[Sent] = []
        self.previous, self.ended = "", time.perf_counter()

    def run(self, deadline: float) -> None:
        actions, weights = zip(*ACTIONS.items(), strict=True)
        with self.http:
            while time.monotonic() < deadline:
                action = self.rng.choices(actions, weights)[0]
                if action in ("download", "download_range", "delete") and not self.owned:
                    action = "raw_small"
                self._timed(action, getattr(self, action))

    def _timed(self, action: str, run) -> None:
        started = time.perf_counter()
        try:
            status = run()
        except (httpx.TransportError, TusGaveUp) as error:
            status = type(error).__name__
            with self.report.lock:
                self.report.broken.append(
                    f"{action}: {error!r} after {time.perf_counter() - started:.1f} s; "
                    f"the previous action ({self.previous}) ended {started - self.ended:.1f} s before")
        self.previous, self.ended = action, time.perf_counter()
        with self.report.lock:
            self.report.tried[action] += 1
            self.report.statuses[action, status] += 1
            self.report.latencies[action].append(time.perf_counter() - started)

    def _new(self, sizes: tuple[int, ...]) -> tuple[int, bytes]:
        seed = self.rng.getrandbits(63)
        data = make_bytes(seed, self.rng.choice(sizes))
        with self.report.lock:
            self.report.bytes_up += len(data)
        return seed, data

    def _acknowledged(self, answer: httpx.Response, files: list[tuple[int, bytes]]) -> int:
        """Note the files of a 201; on any other answer, note nothing (the batch is all or nothing)."""
        if answer.status_code == 201:
            body = answer.json()
            described = body.get("files", [body])
            for item, (seed, data) in zip(described, files, strict=True):
                self._own(Sent(self.user, item["id"], seed, len(data), hashlib.sha256(data).hexdigest()))
        return answer.status_code

    def _own(self, sent: Sent) -> None:
        self.owned.append(sent)
        with self.report.lock:
            self.report.live[sent.file_id] = sent

    def _sending(self, files: list[tuple[int, bytes]], request) -> int:
        """Send; a request whose answer never came may or may not have stored its files."""
        try:
            return self._acknowledged(request(), files)
        except httpx.TransportError:
            with self.report.lock:
                self.report.unanswered.update(seed for seed, _ in files)
            raise

    def raw_small(self) -> int:
        file = self._new(SMALL)
        return self._sending([file], lambda: self.http.put(f"/api/files/{file[0]}.bin", content=file[1]))

    def raw_large(self) -> int:
        file = self._new(LARGE)
        return self._sending([file], lambda: self.http.put(f"/api/files/{file[0]}.bin", content=file[1]))

    def multipart(self) -> int:
        files = [self._new(PARTS) for _ in range(self.rng.randint(1, 3))]
        parts = [("file", (f"{seed}.bin", data, "application/octet-stream")) for seed, data in files]
        return self._sending(files, lambda: self.http.post("/api/upload", files=parts))

    def json(self) -> int:
        files = [self._new(SMALL) for _ in range(self.rng.randint(1, 2))]
        items = [{"filename": f"{seed}.bin", "content": base64.b64encode(data).decode()} for seed, data in files]
        return self._sending(files, lambda: self.http.put("/api/upload", json=items))

    def temporary_persist(self) -> int:
        """The temporary file is the client's from its 201 on; persisting keeps its id (temporary or not, it is
        listed once)."""
        file = self._new(SMALL + (2 * MiB,))
        answers: list[httpx.Response] = []
        status = self._sending([file], lambda: answers.append(self.http.put(
            f"/api/files/{file[0]}.bin", params={"temporary": "1"}, content=file[1])) or answers[-1])
        if status != 201:
            return status
        token = answers[-1].json()["token"]
        return self.http.post("/api/persist", json={"tokens": [token], "metadata": {"note": "load"}}).status_code

    def tus(self) -> int:
        seed, data = self._new(TUS)
        url, _ = tus_upload(self.base_url, self.user, data, attempts=3, filename=f"{seed}.bin")
        head = self.http.head(url, headers={"Tus-Resumable": "1.0.0"})
        if head.status_code != 200 or "Upload-File-Id" not in head.headers:
            return head.status_code if head.status_code != 200 else 599
        self._own(Sent(self.user, head.headers["Upload-File-Id"], seed, len(data), hashlib.sha256(data).hexdigest()))
        return 201

    def download(self) -> int:
        sent = self.rng.choice(self.owned)
        digest = hashlib.sha256()
        size = 0
        with self.http.stream("GET", f"/api/files/{sent.file_id}/content") as answer:
            for chunk in answer.iter_bytes():
                digest.update(chunk)
                size += len(chunk)
        self._check(answer.status_code == 200 and digest.hexdigest() == sent.sha256, sent, size)
        return answer.status_code

    def download_range(self) -> int:
        sent = self.rng.choice(self.owned)
        if sent.size < 2:
            return self.download()
        start = self.rng.randrange(sent.size - 1)
        end = self.rng.randrange(start, sent.size)
        answer = self.http.get(f"/api/files/{sent.file_id}/content", headers={"Range": f"bytes={start}-{end}"})
        self._check(answer.status_code == 206 and answer.content == make_bytes(sent.seed, sent.size)[start:end + 1],
                    sent, len(answer.content))
        return answer.status_code

    def _check(self, right: bool, sent: Sent, size: int) -> None:
        with self.report.lock:
            self.report.bytes_down += size
            if not right:
                self.report.wrong_bytes.append(sent.file_id)

    def list(self) -> int:
        return self.http.get("/api/files", params={"limit": 20}).status_code

    def delete(self) -> int:
        sent = self.owned.pop(self.rng.randrange(len(self.owned)))
        answer = self.http.delete(f"/api/files/{sent.file_id}")
        if answer.status_code == 204:
            with self.report.lock:
                del self.report.live[sent.file_id]
                self.report.deleted.add(sent.file_id)
        else:
            self.owned.append(sent)
        return answer.status_code


def run_mixed_load(base_url: str, clients: int, seconds: float, *, seed: int = 1) -> LoadReport:
    """``clients`` threads doing random actions for ``seconds``."""
    report = LoadReport()
    report.seconds = run_clients(clients, seconds,
                                 lambda number, deadline: LoadClient(base_url, number, seed, report).run(deadline))
    return report


def _all_files(client: httpx.Client, temporary: bool) -> list[dict]:
    files, cursor = [], None
    while True:
        params = {"limit": 1000, **({"cursor": cursor} if cursor else {}), **({"temporary": "1"} if temporary else {})}
        page = client.get("/api/files", params=params).json()
        files += page["files"]
        cursor = page["next_cursor"]
        if not cursor:
            return files


def check_store(base_url: str, report: LoadReport, upload_dir: Path | None = None) -> LoadReport:
    """List and download every stored file of every user; fill in verified, lost, corrupted, duplicated."""
    acknowledged = {sent.seed for sent in report.live.values()}
    listed: dict[str, dict] = {}
    for user in USERS:
        with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {TOKENS[user]}"}, timeout=120,
                          verify=tls()) as http:
            for file in _all_files(http, temporary=False) + _all_files(http, temporary=True):
                listed[file["id"]] = file
                digest = hashlib.sha256()
                with http.stream("GET", file["url"]) as answer:
                    for chunk in answer.iter_bytes():
                        digest.update(chunk)
                sent = report.live.get(file["id"])
                seed = int(file["filename"].removesuffix(".bin")) if file["filename"][:-4].isdigit() else None
                if sent is None:
                    whole = seed is not None and digest.hexdigest() == hashlib.sha256(
                        make_bytes(seed, file["size"])).hexdigest()
                    if whole and seed in report.unanswered:  # a lost answer may have stored its file
                        report.stored_unanswered += 1
                    else:
                        (report.duplicated if seed in acknowledged else report.unexpected).append(file["id"])
                elif answer.status_code != 200 or digest.hexdigest() != sent.sha256 or file["sha256"] != sent.sha256:
                    report.corrupted.append(file["id"])
                else:
                    report.verified += 1
    report.lost = sorted(set(report.live) - set(listed))
    if upload_dir is not None:  # on disk: exactly the listed objects, and no staging leftovers
        on_disk = {path.parent.name if path.name == "data" else path.name
                   for path in object_files(upload_dir / "objects")}
        report.unexpected += sorted(on_disk - set(listed))
        report.unexpected += [f"staging:{entry.name}" for entry in (upload_dir / ".staging").iterdir()]
    return report


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] if ordered else 0.0


def summary(report: LoadReport) -> str:
    """The figures, as lines of text."""
    total = sum(report.tried.values())
    every = [value for values in report.latencies.values() for value in values]
    lines = [f"{total} actions in {report.seconds:.1f} s: {total / report.seconds:.1f}/s; "
             f"up {report.bytes_up / MiB:.0f} MiB ({report.bytes_up / MiB / report.seconds:.1f} MiB/s), "
             f"down {report.bytes_down / MiB:.0f} MiB ({report.bytes_down / MiB / report.seconds:.1f} MiB/s)",
             f"latency p50 {percentile(every, 0.5) * 1000:.0f} ms, p99 {percentile(every, 0.99) * 1000:.0f} ms",
             "| action | tried | p50 ms | p99 ms |", "| --- | ---: | ---: | ---: |"]
    for action in ACTIONS:
        values = report.latencies.get(action, [])
        lines.append(f"| {action} | {report.tried[action]} | {percentile(values, 0.5) * 1000:.0f} "
                     f"| {percentile(values, 0.99) * 1000:.0f} |")
    lines.append(f"errors by status: {dict(report.errors()) or 'none'}")
    by_action = {f"{action} {status}": count for (action, status), count in report.statuses.items()
                 if not (isinstance(status, int) and status < 300)}
    if by_action:
        lines.append(f"errors by action: {by_action}")
    lines.append(f"files verified by sha256 {report.verified}; lost {len(report.lost)}; corrupted "
                 f"{len(report.corrupted)}; duplicated {len(report.duplicated)}; unexpected {len(report.unexpected)}; "
                 f"wrong bytes during the run {len(report.wrong_bytes)}; deleted {len(report.deleted)}; "
                 f"uploads whose answer was lost {len(report.unanswered)} (of them stored whole "
                 f"{report.stored_unanswered}, not stored {len(report.unanswered) - report.stored_unanswered})")
    for name in ("broken", "lost", "corrupted", "duplicated", "unexpected", "wrong_bytes"):
        if getattr(report, name):
            lines.append(f"{name}: {getattr(report, name)[:10]}")
    return "\n".join(lines)
