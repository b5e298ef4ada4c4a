"""The service side by side with its peers (issue 21), in one run, rounds interleaved:

- 10 KiB PUTs at concurrency 32, one worker: the service with ``DURABILITY=full`` and ``=relaxed``, copyparty
  (PUT hashing on sha256, no fsync) and nginx WebDAV;
- a 1 GiB raw PUT (curl): the service in both modes, copyparty, nginx WebDAV, and ``dd ... conv=fdatasync``
  writing the same file on the same disk (the disk's own durable write);
- 1 GiB by tus in 8 MiB PATCHes with tuspy: the service in both modes and the Node.js tus server
  (``@tus/server`` with ``@tus/file-store``, devDependencies in package.json: ``npm ci`` installs them);
- then the listing page at 1,000 and 1,000,000 files, by ``tests/perf/bench_listing.py`` when it exists.

    uv run python -m tests.perf.bench_peers [--repeat 5] [--small-seconds 10] [--big-mib 1024]
    uv run python -m tests.perf.bench_peers --repeat 3 --small-seconds 3 --big-mib 64   # a quick look

Every contender runs once per round, in turn (A B C D A B C D ...), each time freshly started in an empty folder
that is removed, and the disk synced, before the next one: a shared machine whose disk and CPU speed drift
minute to minute drifts under all of them alike. Figures are medians over the rounds; only ratios within one
run mean anything. copyparty is installed, when missing, into a throwaway environment (uv's tool cache, else a
venv in the benchmark's folder), never into the project's.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import os
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from tusclient import client as tus_client

from tests.perf.harness import cpu_seconds, machine, make_file, measure, nginx, service, workdir
from tests.perf.load import put_load
from tests.servers import ROOT, TOKENS, free_port, wait_until_up

BODY = b"s" * 10240
CONCURRENCY = 32
WARMUP_SECONDS = 2.0
TUS_CHUNK = 8 * 1024 * 1024
NGINX_DAV = "location / { dav_methods PUT; create_full_put_path on; }"
NODE_TUS = ROOT / "tests" / "perf" / "tus_node_server.mjs"

FULL = "service, DURABILITY=full"
RELAXED = "service, DURABILITY=relaxed"
COPYPARTY = "copyparty, PUT hashed with sha256"
NGINX = "nginx WebDAV"
DD = "dd bs=8M conv=fdatasync"
TUS_NODE = "Node.js tus server (@tus/server, file store)"
MISSING = {COPYPARTY: "not installed: needs uv or pip and the network", NGINX: "not installed (apt-get install nginx)",
           TUS_NODE: "not installed: needs node and `npm ci` (the devDependencies)"}
SECTIONS = ("small", "raw", "tus", "listing")


@dataclass
class Peer:
    """A running contender: where to send requests and whose process to measure (none for dd)."""

    folder: Path
    port: int = 0
    pid: int | None = None
    put_prefix: str = "/"
    tus_path: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    ok: tuple[int, ...] = (201,)


@dataclass
class Sample:
    """One round of one contender: requests/s or MB/s, the server's CPU (ms per request, or seconds), peak RSS."""

    value: float
    cpu: float | None = None
    rss: float | None = None
    p99_ms: float | None = None


Samples = dict[str, list[Sample]]


@dataclass
class Section:
    """One section's figures: each contender's samples, and why a contender has none (or stopped)."""

    samples: Samples
    why_not: dict[str, str]


Starter = Callable[[Path], AbstractContextManager[Peer | None]]
Run = Callable[[str, Peer], Sample]


@dataclass
class Contender:
    name: str
    start: Starter
    run: Run


# --- the contenders ---

def the_service(durability: str) -> Starter:
    @contextmanager
    def start(folder: Path) -> Iterator[Peer | None]:
        with service(folder, durability=durability) as server:  # a fresh process, as users run it
            yield Peer(folder, int(server.url.rsplit(":", 1)[1]), server.process.pid, "/api/files/", "/api/tus/",
                       {"Authorization": f"Bearer {TOKENS['alice']}", "Content-Type": "application/octet-stream"})
    return start


def copyparty_python(base: Path) -> tuple[str, str] | None:
    """(the Python of a throwaway environment that has copyparty, copyparty's version): uv's tool cache, else a
    venv made here with pip; None when neither works (no network)."""
    probe = ["-c", "import sys, importlib.metadata as m; print(sys.executable, m.version('copyparty'))"]
    if shutil.which("uv"):
        found = subprocess.run(["uv", "tool", "run", "--from", "copyparty", "python", *probe],
                               capture_output=True, text=True)
        if found.returncode == 0:
            python, version = found.stdout.split()[-2:]
            return python, version
    venv = base / "copyparty-venv"
    made = subprocess.run([sys.executable, "-m", "venv", str(venv)], capture_output=True)
    if made.returncode != 0 or subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                                               "copyparty"], capture_output=True).returncode != 0:
        return None
    found = subprocess.run([str(venv / "bin" / "python"), *probe], capture_output=True, text=True)
    if found.returncode != 0:
        return None
    python, version = found.stdout.split()[-2:]
    return python, version


def copyparty(python: str) -> Starter:
    @contextmanager
    def start(folder: Path) -> Iterator[Peer | None]:
        root = folder / "root"
        root.mkdir(parents=True)
        port = free_port()
        # one volume everyone may write to; plain HTTP (no TLS detection, no certificate made); no access log,
        # as nginx and the service run here; its config and salts in the folder, not in ~/.config
        with (folder / "copyparty.log").open("wb") as log:
            process = subprocess.Popen(
                [python, "-m", "copyparty", "-i", "127.0.0.1", "-p", str(port), "-v", f"{root}::w", "--put-ck",
                 "sha256", "-q", "--http-only", "--no-crt"],
                env={**os.environ, "XDG_CONFIG_HOME": str(folder / "config")}, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_until_up(f"http://127.0.0.1:{port}/", process)
            answer = httpx.put(f"http://127.0.0.1:{port}/check.bin", content=BODY)
            digest = base64.urlsafe_b64encode(hashlib.sha256(BODY).digest()).decode()
            if answer.status_code != 201 or digest not in answer.text:
                raise RuntimeError(f"copyparty did not hash the PUT with sha256: {answer.status_code} {answer.text}")
            yield Peer(folder, port, process.pid)
        finally:
            process.terminate()
            process.wait()
    return start


@contextmanager
def nginx_dav(folder: Path) -> Iterator[Peer | None]:
    (folder / "root").mkdir(parents=True)
    with nginx(folder, folder / "root", NGINX_DAV) as running:
        if running is None:
            yield None
            return
        port, worker = running
        yield Peer(folder, port, worker, ok=(201, 204))  # 204: a PUT that replaced the file


@contextmanager
def tus_node(folder: Path) -> Iterator[Peer | None]:
    if not shutil.which("node") or not (ROOT / "node_modules" / "@tus" / "server").is_dir():
        yield None
        return
    folder.mkdir(parents=True)
    port = free_port()
    with (folder / "node.log").open("wb") as log:
        process = subprocess.Popen(["node", str(NODE_TUS), str(port), str(folder / "files")], cwd=ROOT, stdout=log,
                                   stderr=subprocess.STDOUT)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/files/", process)
        yield Peer(folder, port, process.pid, tus_path="/files/")
    finally:
        process.terminate()
        process.wait()


@contextmanager
def not_installed(folder: Path) -> Iterator[Peer | None]:
    yield None


@contextmanager
def just_a_folder(folder: Path) -> Iterator[Peer | None]:
    folder.mkdir(parents=True)
    yield Peer(folder)


# --- what each section does with a contender ---

def small_puts(seconds: float) -> Run:
    def run(name: str, peer: Peer) -> Sample:
        assert peer.pid is not None
        path = peer.put_prefix + "small.bin"
        asyncio.run(put_load("127.0.0.1", peer.port, path, peer.headers, BODY, CONCURRENCY, WARMUP_SECONDS,
                             peer.ok))
        before = cpu_seconds(peer.pid)
        result = asyncio.run(put_load("127.0.0.1", peer.port, path, peer.headers, BODY, CONCURRENCY, seconds,
                                      peer.ok))
        cpu = cpu_seconds(peer.pid) - before
        if result["errors"] or not result["requests"]:
            raise RuntimeError(f"{name}: {result['errors']} of {result['requests']} PUTs failed")
        sample = Sample(result["rps"], cpu / result["requests"] * 1000, None, result["p99_ms"])
        print(f"| {name} | {sample.value:,.0f} req/s | p99 {sample.p99_ms:.0f} ms | {sample.cpu:.2f} ms CPU |",
              flush=True)
        return sample
    return run


def raw_put(big: Path) -> Run:
    def run(name: str, peer: Peer) -> Sample:
        assert peer.pid is not None
        headers = [option for key, value in peer.headers.items() for option in ("-H", f"{key}: {value}")]
        url = f"http://127.0.0.1:{peer.port}{peer.put_prefix}big.bin"
        figure = measure(name, peer.pid, big.stat().st_size, 1,
                         lambda: curl_put(["-T", str(big), *headers, url], peer.ok))
        return Sample(figure.mbps, figure.cpu[0], figure.rss[0])
    return run


def curl_put(args: list[str], ok: tuple[int, ...]) -> float:
    started = time.perf_counter()
    done = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", *args],
                          capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0 or int(done.stdout or 0) not in ok:
        raise RuntimeError(f"curl failed: {done.stdout} {done.stderr}")
    return elapsed


def dd(big: Path) -> Run:
    def run(name: str, peer: Peer) -> Sample:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run(["dd", f"if={big}", f"of={peer.folder / 'big.bin'}", "bs=8M", "conv=fdatasync",
                        "status=none"], check=True)
        seconds = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        mbps = big.stat().st_size / seconds / 1e6
        print(f"| {name} | {mbps:,.0f} MB/s | {seconds:.2f} s | {cpu:.2f} s | |", flush=True)
        return Sample(mbps, cpu)
    return run


def tus_upload(big: Path) -> Run:
    def run(name: str, peer: Peer) -> Sample:
        assert peer.pid is not None
        headers = {key: value for key, value in peer.headers.items() if key == "Authorization"}

        def upload() -> float:
            started = time.perf_counter()
            uploader = tus_client.TusClient(f"http://127.0.0.1:{peer.port}{peer.tus_path}", headers=headers).uploader(
                str(big), chunk_size=TUS_CHUNK, metadata={"filename": "big.bin"})
            uploader.upload()
            return time.perf_counter() - started

        figure = measure(name, peer.pid, big.stat().st_size, 1, upload)
        return Sample(figure.mbps, figure.cpu[0], figure.rss[0])
    return run


# --- rounds and tables ---

def rounds(title: str, contenders: list[Contender], repeat: int, base: Path) -> Section:
    """Each contender once per round, in turn, fresh in an empty folder; the folder removed and the disk synced
    before the next, so nobody's write-back is left for the one after to pay. One that is not installed, or fails,
    is left out of the later rounds, with the reason, so a long run still gives the others' figures."""
    samples: Samples = {contender.name: [] for contender in contenders}
    why_not: dict[str, str] = {}
    for turn in range(repeat):
        print(f"\n{title}, round {turn + 1} of {repeat} (load average {os.getloadavg()[0]:.1f}):", flush=True)
        for number, contender in enumerate(contenders):
            if contender.name in why_not:
                continue
            folder = base / f"round-{turn}-{number}"
            try:
                with contender.start(folder) as peer:
                    if peer is None:
                        why_not[contender.name] = MISSING.get(contender.name, "not installed")
                        continue
                    samples[contender.name].append(contender.run(contender.name, peer))
            except Exception as error:  # reported in the table; the other contenders go on
                why_not[contender.name] = f"failed in round {turn + 1}: {str(error)[:200]}"
                print(f"| {contender.name} | {why_not[contender.name]} |", flush=True)
            finally:
                shutil.rmtree(folder, ignore_errors=True)
                os.sync()
    return Section(samples, why_not)


def median(samples: list[Sample], pick: Callable[[Sample], float | None] = lambda sample: sample.value) -> float | None:
    values = [value for value in map(pick, samples) if value is not None]
    return statistics.median(values) if values else None


def ratio(samples: Samples, over: str, under: str) -> float | None:
    top, bottom = median(samples.get(over, [])), median(samples.get(under, []))
    return top / bottom if top is not None and bottom else None


def table(section: Section, unit: str, cpu_unit: str, against: list[str]) -> None:
    samples = section.samples
    columns = [unit, "p99" if unit == "requests/s" else "server peak RSS", f"server CPU ({cpu_unit})",
               *(f"x {name.split(',')[0].split(' (')[0]}" for name in against)]
    print("\n| contender | " + " | ".join(columns) + " |\n|" + " --- |" * (len(columns) + 1))
    for name, runs in samples.items():
        if not runs:
            print(f"| {name} | {section.why_not.get(name, 'no figures')} |" + " |" * (len(columns) - 1))
            continue
        value, cpu = median(runs), median(runs, lambda sample: sample.cpu)
        second = median(runs, lambda sample: sample.p99_ms) if unit == "requests/s" else median(
            runs, lambda sample: sample.rss)
        cells = [f"{value:,.0f}",
                 "" if second is None else f"{second:.0f} {'ms' if unit == 'requests/s' else 'MiB'}",
                 "" if cpu is None else f"{cpu:.2f}"]
        cells += ["" if (found := ratio(samples, name, other)) is None else f"{found:.2f}" for other in against]
        print(f"| {name} | " + " | ".join(cells) + " |")


def targets(lines: list[tuple[str, float | None, float]]) -> None:
    """The targets of issue 21 in this run: what was asked, what was measured, met or not."""
    print("\n| target | this run | met |\n| --- | --- | --- |")
    for what, found, wanted in lines:
        if found is None:
            print(f"| {what} | not measured | |")
        elif what.startswith("peak RSS"):
            print(f"| {what} | {found:.0f} MiB | {'yes' if found <= wanted else 'no'} |")
        else:
            print(f"| {what} | {found:.2f}x | {'yes' if found >= wanted else 'no'} |")


def durability_note() -> str:
    from upload_service.settings import Settings

    if "durability" in Settings.model_fields:
        return ""
    return " (DURABILITY is not a setting of this checkout yet: both service rows run as today's full)"


def versions(copyparty_version: str | None) -> str:
    def output(command: list[str]) -> str:
        try:
            done = subprocess.run(command, capture_output=True, text=True)
        except FileNotFoundError:
            return "missing"
        return (done.stdout + done.stderr).strip().splitlines()[0] if done.returncode == 0 else "missing"

    package = ROOT / "node_modules" / "@tus" / "server" / "package.json"
    tus_server = package.read_text().split('"version": "', 1)[1].split('"', 1)[0] if package.exists() else "missing"
    return (f"copyparty {copyparty_version or 'missing'}; {output(['nginx', '-v'])}; node "
            f"{output(['node', '--version'])}, @tus/server {tus_server}; {output(['dd', '--version'])}")


def listing(extra: str) -> None:
    """The listing figures are the index work's benchmark: run it when it is there."""
    script = Path(__file__).with_name("bench_listing.py")
    if not script.exists():
        print("\nlisting: tests/perf/bench_listing.py is missing (the index work adds it); no listing figures")
        return
    print("\nlisting (tests/perf/bench_listing.py):", flush=True)
    subprocess.run([sys.executable, "-m", "tests.perf.bench_listing", *shlex.split(extra)], cwd=ROOT, check=True)


def header(args: argparse.Namespace, base: Path, copyparty_version: str | None) -> str:
    """What the figures were measured on and with: printed first, and again above the results."""
    filesystem = subprocess.run(["findmnt", "-no", "FSTYPE,SOURCE", "-T", str(base)], capture_output=True,
                                text=True).stdout.strip()
    return (f"machine: {machine()}; {' '.join(filesystem.split()) or 'unknown filesystem'} under /tmp; "
            f"load average {os.getloadavg()[0]:.1f} at the start\n"
            f"peers: {versions(copyparty_version)}\n"
            f"sizes: 10 KiB PUTs at concurrency {CONCURRENCY}, {args.small_seconds:g} s per round after "
            f"{WARMUP_SECONDS:g} s of warm-up; {args.big_mib} MiB raw PUT (curl -T) and tus ({TUS_CHUNK >> 20} MiB "
            f"PATCHes, tuspy); medians of {args.repeat} interleaved rounds{durability_note()}")


def results(small: Section | None, raw: Section | None, tus: Section | None, args: argparse.Namespace) -> None:
    if small is not None:
        print(f"\n10 KiB PUTs, concurrency {CONCURRENCY}, one worker:")
        table(small, "requests/s", "ms per request", [COPYPARTY, NGINX])
    if raw is not None:
        print(f"\n{args.big_mib} MiB raw PUT (curl -T; dd writes the same file):")
        table(raw, "MB/s", "s", [NGINX, DD])
    if tus is not None:
        print(f"\n{args.big_mib} MiB by tus in {TUS_CHUNK >> 20} MiB PATCHes (tuspy):")
        table(tus, "MB/s", "s", [TUS_NODE])
    lines: list[tuple[str, float | None, float]] = []
    if small is not None:
        lines += [("10 KiB PUTs: relaxed / copyparty", ratio(small.samples, RELAXED, COPYPARTY), 1.0),
                  ("10 KiB PUTs: full / copyparty", ratio(small.samples, FULL, COPYPARTY), 0.6)]
    if raw is not None:
        lines += [("raw PUT: relaxed / nginx", ratio(raw.samples, RELAXED, NGINX), 0.9),
                  ("raw PUT: full / dd conv=fdatasync", ratio(raw.samples, FULL, DD), 0.8)]
        for name in (FULL, RELAXED):  # the highest of the rounds
            peaks = [sample.rss for sample in raw.samples[name] if sample.rss is not None]
            lines.append((f"peak RSS, raw PUT, {name}", max(peaks) if peaks else None, 80))
    if tus is not None:
        lines.append(("tus: relaxed / Node.js tus server", ratio(tus.samples, RELAXED, TUS_NODE), 1.0))
    if lines:
        targets(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5, help="rounds of every section (default 5)")
    parser.add_argument("--small-seconds", type=float, default=10, help="seconds of 10 KiB PUTs per round")
    parser.add_argument("--big-mib", type=int, default=1024, help="size of the raw PUT and the tus upload")
    parser.add_argument("--only", default=",".join(SECTIONS), help="sections to run (default: all)")
    parser.add_argument("--listing-args", default="", help="arguments for tests/perf/bench_listing.py")
    args = parser.parse_args()
    only = set(args.only.split(","))
    if only - set(SECTIONS):
        parser.error(f"--only takes {','.join(SECTIONS)}")
    base = workdir("/tmp")
    try:
        big = base / "big.bin"
        if only & {"raw", "tus"}:
            make_file(big, args.big_mib * 1024 * 1024)
        found = copyparty_python(base) if only & {"small", "raw"} else None
        about = header(args, base, found[1] if found else None)
        print(about, flush=True)
        starters: dict[str, Starter] = {FULL: the_service("full"), RELAXED: the_service("relaxed"), NGINX: nginx_dav,
                                        DD: just_a_folder, TUS_NODE: tus_node}
        if found:
            starters[COPYPARTY] = copyparty(found[0])

        def peers(run: Run, *names: str) -> list[Contender]:
            return [Contender(name, starters.get(name, not_installed), run) for name in names]

        small = raw = tus = None
        if "small" in only:
            small = rounds("10 KiB PUTs", peers(small_puts(args.small_seconds), FULL, RELAXED, COPYPARTY, NGINX),
                           args.repeat, base)
        if "raw" in only:
            raw = rounds(f"{args.big_mib} MiB raw PUT", [*peers(raw_put(big), FULL, RELAXED, COPYPARTY, NGINX),
                                                         *peers(dd(big), DD)], args.repeat, base)
        if "tus" in only:
            tus = rounds(f"{args.big_mib} MiB tus", peers(tus_upload(big), FULL, RELAXED, TUS_NODE), args.repeat,
                         base)
        if small or raw or tus:
            print(f"\n## Results\n\n{about}")
            results(small, raw, tus, args)
        if "listing" in only:
            listing(args.listing_args)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
