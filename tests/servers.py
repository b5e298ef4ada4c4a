"""Real servers for the tests: Hypercorn on 127.0.0.1, a free port.

``start_server`` runs ``upload-service`` as a subprocess, as operators run it (the CLI, its Hypercorn runner,
worker processes, signals, logs). ``start_in_process`` serves the same app, built from the same settings with
the CLI's Hypercorn options, from a thread of the test process: a fraction of a second to start instead of one
to two, so tests that only speak HTTP to the service use it (``tests/conftest.py`` picks which one).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import os
import random
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
TOKENS = {"alice": "alice-token-0123456789", "bob": "bob-token-0123456789", "carol": "carol-token-0123456789"}
NEEDS_PROCESS = "mark the test @pytest.mark.process to give it a server process of its own"
# first-party plugins: their settings go in Settings(plugin_settings)
PLUGIN_PREFIXES = ("S3_", "REDIS_", "IMAGES_", "CLAMAV_", "CLAMD_", "OIDC_")
STARTUP_ENVIRONMENT = ("AWS_",)  # boto's credentials, read from the environment when the S3 client is made
_environment_lock = threading.Lock()


fast_test: str | None = None  # the running test when the tier rule put it in the fast tier (tests/conftest.py)


def refuse_in_fast_tests(what: str) -> None:
    """Subprocess servers are for the slow tier: a test the tier rule called fast must not start one."""
    if fast_test is not None:
        raise RuntimeError(f"{fast_test} starts {what} but is in the fast tier: mark it process (or slow), or use "
                           f"the in-process server of the server/make_server fixtures")


PORT_SLICE = 1500  # ports per pytest-xdist worker, from PORT_BASE up: below Linux's ephemeral range (32768+)
PORT_BASE = 20000
_port_turns = itertools.count(random.randrange(PORT_SLICE))


def free_port() -> int:
    """A free port for a server a test starts.

    Not one the kernel picks for port 0: those come from the ephemeral range, where the test's own outgoing
    connections, and other xdist workers asking for port 0, can take the same number between our check and the
    server's bind (a foreign server then answered a test's requests). Each xdist worker takes ports from a slice
    of its own below that range, in turn, checking each is free.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:]
    base = PORT_BASE + (int(worker) % 8 if worker.isdigit() else 0) * PORT_SLICE
    for _ in range(PORT_SLICE):
        port = base + next(_port_turns) % PORT_SLICE
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {base}-{base + PORT_SLICE - 1}")


@functools.cache
def tls() -> ssl.SSLContext:
    """One TLS context for the tests' httpx clients (``verify=tls()``). httpx otherwise makes one per client, which
    loads the CA store: 30 ms of CPU each, for servers that speak plain HTTP."""
    return ssl.create_default_context()


def wait_until_up(url: str, process: subprocess.Popen | None = None, timeout: float = 60.0) -> None:
    """Poll ``url`` until it answers below 500; fail early once the server's process is gone."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=1, verify=tls()) as client:
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode}")
            try:
                if client.get(url).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.02)
    raise RuntimeError(f"{url} did not come up in {timeout}s")


def _preloaded() -> list[str]:
    """The core, Hypercorn and every installed plugin's module (each server loads them all by entry point), and
    this module: each child unpickles ``_run_command`` from it, and would otherwise import it, and httpx with it
    (a fifth of a forked start's CPU)."""
    from importlib.metadata import entry_points

    plugins = sorted({entry.module for entry in entry_points(group="upload_service")})
    return ["upload_service.app", "upload_service.cli", "upload_service.workers", "hypercorn.asyncio.run",
            "upload_service_s3.storage", "upload_service_redis.locker", *plugins, __name__]
_forkserver: Any = None


class ForkedProcess:
    """``upload-service`` in a child of multiprocessing's fork server, which imported what ``_preloaded`` names
    once, with what tests use of a ``Popen`` (``pid``, ``poll``, ``wait``, ``send_signal``, ``kill``, ``returncode``).

    The child takes the server's environment, working directory and log file, then runs the command's
    ``main``: settings, plugins and the app are read and built there, as in a fresh process (the modules are
    already imported, as a second start of a process finds them compiled).
    """

    def __init__(self, process: Any) -> None:
        self._process = process
        self.pid: int = process.pid
        self.args = ["upload-service", f"(forked {process.pid})"]

    @classmethod
    def start(cls, args: list[str], env: dict[str, str], cwd: Path, log_path: Path) -> ForkedProcess:
        global _forkserver
        if _forkserver is None:
            import multiprocessing

            _forkserver = multiprocessing.get_context("forkserver")
            _forkserver.set_forkserver_preload(_preloaded())
        process = _forkserver.Process(target=_run_command, args=(args, env, str(cwd), str(log_path)),
                                      name="upload-service")
        process.start()
        return cls(process)

    @property
    def returncode(self) -> int | None:
        return self._process.exitcode

    def poll(self) -> int | None:
        return self._process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self._process.exitcode is None:
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        return self._process.exitcode

    def send_signal(self, sig: int) -> None:
        if self._process.exitcode is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def _run_command(args: list[str], env: dict[str, str], cwd: str, log_path: str) -> None:
    """In the forked child: what ``python -m upload_service.cli`` would do in ``cwd`` with ``env``."""
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    os.environ.clear()
    os.environ.update(env)
    sys.path[:0] = [entry for entry in env.get("PYTHONPATH", "").split(os.pathsep) if entry and entry not in sys.path]
    os.chdir(cwd)
    from upload_service.cli import main

    sys.exit(main(args))


@dataclass
class Server:
    """A running service and what a test needs to talk to it (``process`` and ``log()``: subprocesses only)."""

    url: str
    upload_dir: Path
    env: dict[str, str]  # the service's environment: also what ``upload-service cleanup`` on its store needs
    log_path: Path | None = None
    popen: subprocess.Popen | ForkedProcess | None = None
    clients: list[httpx.Client] = field(default_factory=list)
    backend: str = "local"
    bucket: Any = None  # tests.s3.Bucket when the server stores on S3
    _stop_thread: Callable[[], None] | None = None

    @property
    def process(self) -> Any:  # a subprocess.Popen, or a ForkedProcess that answers the same calls
        if self.popen is None:
            raise RuntimeError(f"this server runs inside the test process: {NEEDS_PROCESS}")
        return self.popen

    def client(self, user: str | None = "alice", **options) -> httpx.Client:
        headers = {"Authorization": f"Bearer {TOKENS[user]}"} if user else {}
        client = httpx.Client(base_url=self.url, headers=headers, timeout=60, **{"verify": tls(), **options})
        self.clients.append(client)
        return client

    def log(self) -> str:
        if self.log_path is None:
            raise RuntimeError(f"this server logs into the test process: {NEEDS_PROCESS}")
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        for client in self.clients:
            client.close()
        if self._stop_thread is not None:
            self._stop_thread()
        elif self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _environment(port: int, upload_dir: Path, settings: dict[str, str]) -> dict[str, str]:
    return {
        **os.environ,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "SECRET_KEY": "test-secret-key-0123456789abcdef",
        "UPLOAD_DIR": str(upload_dir),
        "API_TOKENS": ",".join(f"{login}:{token}" for login, token in TOKENS.items()),
        "LOG_LEVEL": "WARNING",
        **{key.upper(): str(value) for key, value in settings.items()},
    }


def start_server(tmp: Path, *, args: tuple[str, ...] = (), python: str = sys.executable, fresh: bool = False,
                 port: int | None = None, **settings: str) -> Server:
    """``upload-service`` as a subprocess; its output goes to ``server.log()``.

    With this interpreter and one worker, the process is forked from a server that has the service's modules
    imported already (``ForkedProcess``): it starts in a third of the time, and then runs the command as
    ``python -m upload_service.cli`` would. Worker processes (their metrics directory is removed at exit, which
    a forked child skips), other interpreters and ``fresh`` servers get a new ``Popen``: benchmarks ask for one,
    since a forked child carries every preloaded module (18 MiB more RSS) and ran 1 GiB raw PUTs ~30 % slower.
    ``port``: where a server that died listened, to start it again where a proxy in front expects it.
    """
    refuse_in_fast_tests("upload-service as a subprocess")
    port = port or free_port()
    upload_dir = Path(settings.pop("upload_dir", tmp / "uploads"))
    env = _environment(port, upload_dir, settings)
    if python == sys.executable:  # the repo's own interpreter: let PLUGINS name test plugins under tests/
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    log_path = tmp / f"server-{port}.log"
    process: subprocess.Popen | ForkedProcess
    if python == sys.executable and env.get("WORKERS", "1") == "1" and not fresh:
        process = ForkedProcess.start(list(args), env, tmp, log_path)
    else:
        process = subprocess.Popen(
            [python, "-m", "upload_service.cli", *args], env=env, cwd=tmp,
            stdout=log_path.open("wb"), stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url + "/healthz", process)
    except RuntimeError as error:
        process.kill()
        output = log_path.read_text(errors="replace") if log_path.exists() else "(no output)"
        raise RuntimeError(f"{error}\n{output}") from None
    return Server(url=url, upload_dir=upload_dir, env=env, log_path=log_path, popen=process)


@contextmanager
def _patched_environment(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def start_in_process(tmp: Path, **settings: str) -> Server:
    """The service served from a thread of this process: the app ``create_app`` builds from these settings,
    Hypercorn configured as the CLI configures it (keep-alive timeout, event loop, error log). The CLI's
    ``tune_hypercorn`` patches Hypercorn for the whole process, so it is left out here, as in a host app; the
    ``process`` tests (``test_direct_body``, ``test_faults``) run the tuned server.

    The settings are the ones a subprocess would read from its environment (``env``): the service's own, and
    the first-party plugins' as ``plugin_settings``; boto's ``AWS_*`` credentials are in the environment while
    the service starts, which is when the S3 client is made. Other settings (test plugins read theirs from the
    environment at import), and more than one worker, need a process: they are refused, never dropped.
    """
    from upload_service.app import create_app
    from upload_service.settings import Settings

    port = free_port()
    upload_dir = Path(settings.pop("upload_dir", tmp / "uploads"))
    env = _environment(port, upload_dir, settings)
    given = {name.upper(): str(value) for name, value in settings.items()}
    others = {name: value for name, value in given.items() if name.lower() not in Settings.model_fields}
    unknown = sorted(name for name in others if not name.startswith(PLUGIN_PREFIXES + STARTUP_ENVIRONMENT))
    if unknown:
        raise RuntimeError(f"settings {unknown} are read by plugins from the environment: {NEEDS_PROCESS}")
    values = {name: env[name.upper()] for name in Settings.model_fields if name.upper() in env}
    plugin_values = {name: value for name, value in env.items() if name.startswith(PLUGIN_PREFIXES)
                     and name.lower() not in Settings.model_fields}
    chosen = Settings(**values, plugin_settings=plugin_values)
    if chosen.workers != 1:
        raise RuntimeError(f"WORKERS={chosen.workers} needs worker processes: {NEEDS_PROCESS}")
    startup_environment = {name: value for name, value in others.items() if name.startswith(STARTUP_ENVIRONMENT)}
    with _environment_lock, _patched_environment(startup_environment):
        try:
            app = create_app(chosen)
        except Exception as error:
            raise RuntimeError(f"the service did not start: {error}") from error
        return _serve_in_thread(app, chosen, upload_dir, env)


def _serve_in_thread(app: Any, chosen: Any, upload_dir: Path, env: dict[str, str]) -> Server:
    """Hypercorn serving ``app`` from a thread with an event loop of its own (uvloop when the settings pick it,
    as the CLI does), configured as the CLI configures it, until ``stop()``: the kit's ``ThreadServer``."""
    from hypercorn.config import Config

    from upload_service.cli import event_loop
    from upload_service.testing._server import ThreadServer

    def configure(config: Config) -> None:
        config.keep_alive_timeout = chosen.keep_alive_timeout
        config.errorlog = logging.getLogger("hypercorn.error")

    if event_loop(chosen.event_loop) == "uvloop":
        import uvloop

        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    server = ThreadServer(app, loop=loop, configure=configure)
    try:
        url = server.start()
    except RuntimeError as error:
        raise RuntimeError(f"the service did not start: {error.__cause__ or error}") from error
    env["PORT"] = url.rsplit(":", 1)[1]  # the kit's server binds a port of its own before serving
    return Server(url=url, upload_dir=upload_dir, env=env, _stop_thread=server.stop)
