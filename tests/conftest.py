"""Shared fixtures: every end-to-end test talks HTTP to a real Hypercorn server on 127.0.0.1.

The storage suites (``STORAGE_SUITES``) run twice, on local disk and on S3 (SeaweedFS on
127.0.0.1): ``make_server`` and ``server`` give each test a service on the backend of its parameter. That
service runs inside the test process (``tests.servers.start_in_process``) unless the test is marked ``process``:
then it is ``upload-service`` run as a subprocess.

Tiers: ``pytest -m fast`` runs unit tests and tests on in-process servers; ``slow`` is everything else:
``process``, ``browser`` and ``load`` tests, the S3 runs, and tests of subprocess servers (S3, Redis, nginx).
``pytest_collection_modifyitems`` puts each test in its tier from its markers and fixtures, so a new test
lands where it belongs; a test the rule calls fast that starts a subprocess server fails, saying to mark it.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from . import servers
from .faults import wait_for
from .github_double import GitHubDouble
from .oidc_provider import OpenIDProvider
from .redis_server import RedisServer
from .s3 import S3Server
from .servers import Server, start_in_process, start_server

STORAGE_SUITES = ("test_api_", "test_bad_input", "test_robustness", "test_tus", "test_storage_", "test_sharing")


MARKERS = {
    "local_storage": "the test looks at local disk, so it runs on local storage only",
    "process": "the test needs upload-service as a process of its own (the CLI): signals, worker processes, /proc, "
               "its log, or settings that plugins read from the environment",
    "browser": "the test drives Chromium (set by the browser fixtures)",
    "load": "a load, soak or memory test that takes seconds of the machine on purpose",
    "fast": "the fast tier (set by the tier rule): unit tests and tests on in-process servers",
    "slow": "the rest of the full suite (set by the tier rule, or by hand for other subprocesses and tools)",
}
# servers with no in-process stand-in here
SUBPROCESS_FIXTURES = {"s3_server", "redis_server", "browser", "openid_provider"}
SLOW_MARKERS = ("slow", "process", "browser", "load")


def pytest_configure(config: pytest.Config) -> None:
    for name, meaning in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {meaning}")


@pytest.hookimpl(tryfirst=True)  # before -m selects by these marks, and before pytest-xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test gets ``fast`` or ``slow`` (and ``browser`` when it uses Chromium), its xdist group, and the
    modules are put heaviest first."""
    weights: dict[str, float] = {}
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if "browser" in fixtures:
            item.add_marker("browser")
        params = getattr(getattr(item, "callspec", None), "params", {})
        weights[item.nodeid] = _weight(item, fixtures, params)
        slow = (any(item.get_closest_marker(name) for name in SLOW_MARKERS) or fixtures & SUBPROCESS_FIXTURES
                or params.get("storage_backend", "local") != "local")
        item.add_marker("slow" if slow else "fast")
        if _shares_a_module_fixture(item):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))
    _heaviest_modules_first(items, weights)


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's worker sends the collected ids to the scheduler
def pytest_collection_finish(session: pytest.Session) -> None:
    """Give each grouped test the ``@group`` suffix by which ``--dist loadgroup`` keeps a group on one process.

    pytest-xdist's worker sets it by assigning ``item._nodeid``, which pytest 9.2 ignores: it builds ids from a
    structured ``NodeId`` (pytest-dev/pytest-xdist#1386). No test was grouped then, and every process that ran a
    test of a module made the module's fixtures (its server, a browser, a built venv) again. Set here until
    pytest-xdist does it, and fail rather than let the grouping go silently again.
    """
    if not getattr(session.config.option, "loadgroup", False):  # set on pytest-xdist's workers under loadgroup
        return
    for item in session.items:
        names = sorted({str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
                        for mark in item.iter_markers("xdist_group")})
        suffix = "@" + "_".join(names)
        if names and not item.nodeid.endswith(suffix) and hasattr(item, "_id"):
            item._id = type(item._id).parse(item.nodeid + suffix)
        if names and not item.nodeid.endswith(suffix):
            raise pytest.UsageError(f"{item.nodeid}: its xdist group could not be set (tests/conftest.py)")


def _shares_a_module_fixture(item: pytest.Item) -> bool:
    """Whether the test uses a module- or class-scoped fixture (a module's server, a browser, a built venv).

    ``scripts/test`` runs ``--dist loadgroup``: such tests go, a module at a time, to one process, where the
    fixture is made once; every other test is handed out on its own, to whichever process is free.
    """
    definitions = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
    return any(definition.scope in ("module", "class", "package") for name, chain in definitions.items()
               if name != "storage_backend" for definition in chain[-1:])


def _weight(item: pytest.Item, fixtures: set[str], params: dict) -> float:
    """A rough cost, to start long modules first so that none is left running alone at the end."""
    for marker, weight in (("load", 30), ("slow", 10), ("process", 5), ("browser", 4)):  # slow: set by hand
        if item.get_closest_marker(marker):
            return weight
    return 2 if fixtures & SUBPROCESS_FIXTURES or params.get("storage_backend", "local") != "local" else 0.5


def _heaviest_modules_first(items: list[pytest.Item], weights: dict[str, float]) -> None:
    """Reorder whole modules (each keeps its own order, so its module fixtures are made once)."""
    modules: dict[str, list[pytest.Item]] = {}
    for item in items:
        modules.setdefault(item.nodeid.split("::")[0], []).append(item)
    ordered = sorted(modules.values(), key=lambda tests: -sum(weights[test.nodeid] for test in tests))
    items[:] = [item for tests in ordered for item in tests]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    servers.fast_test = item.nodeid if item.get_closest_marker("fast") else None


def pytest_runtest_teardown(item: pytest.Item) -> None:
    servers.fast_test = None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests of the storage suites that start servers run once per storage backend."""
    if "storage_backend" not in metafunc.fixturenames or metafunc.definition.get_closest_marker("local_storage"):
        return
    if metafunc.module.__name__.rsplit(".", 1)[-1].startswith(STORAGE_SUITES):
        metafunc.parametrize("storage_backend", ["local", "s3"], indirect=True, scope="module")


@pytest.fixture(scope="module")
def storage_backend(request: pytest.FixtureRequest) -> str:
    return getattr(request, "param", "local")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real Redis for the session; tests keep apart by key prefix or by the upload ids they make."""
    running = RedisServer.start(tmp_path_factory.mktemp("redis"))
    yield running
    running.stop()


@pytest.fixture(scope="session")
def openid_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenIDProvider]:
    """One real OpenID Provider (oidc-provider under node) for the session; each service registers its own client."""
    running = OpenIDProvider.start(tmp_path_factory.mktemp("oidc"))
    yield running
    running.stop()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One SeaweedFS S3 server for the session; every service gets its own bucket on it."""
    running = S3Server.start(tmp_path_factory.mktemp("seaweedfs"))
    yield running
    running.stop()


def server_starter(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                   backend: str) -> Callable[..., Server]:
    """``start(**settings)``: a server on ``backend`` (with a fresh bucket on the test S3 server for ``s3``),
    in-process unless the test (or, for a module's server, the module) is marked ``process``."""
    in_process = request.node.get_closest_marker("process") is None

    def start(**settings: str) -> Server:
        bucket = request.getfixturevalue("s3_server").bucket() if backend == "s3" else None
        if bucket is not None:
            settings = {**bucket.settings(), **settings}
        server = (start_in_process if in_process else start_server)(tmp_path_factory.mktemp("server"), **settings)
        server.backend, server.bucket = backend, bucket
        return server

    return start


@pytest.fixture
def make_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                storage_backend: str) -> Iterator[Callable[..., Server]]:
    """Start servers with given settings (``make_server(max_upload_size="1MiB")``); all stop after the test."""
    started: list[Server] = []
    start = server_starter(request, tmp_path_factory, storage_backend)

    def make(**settings: str) -> Server:
        server = start(**settings)
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           storage_backend: str) -> Iterator[Server]:
    """One server shared by a test module (tests use their own files, never assume an empty store)."""
    running = server_starter(request, tmp_path_factory, storage_backend)()
    yield running
    running.stop()


@pytest.fixture
def github_double() -> Iterator[GitHubDouble]:
    """A GitHub double on 127.0.0.1 (``make_server(**github_double.settings())`` points a server at it)."""
    double = GitHubDouble().start()
    yield double
    double.stop()


def stored_files(server: Server | Path, area: str = "") -> list:
    """Every committed object (``area``: ``files/`` or ``temp/`` for one kind), on disk or in the bucket."""
    if isinstance(server, Server) and server.bucket is not None:
        return server.bucket.records(area)
    upload_dir = server.upload_dir if isinstance(server, Server) else server
    return object_files(upload_dir / "objects" / area)


def object_files(folder: Path) -> list[Path]:
    """The files of the local storage's objects below ``folder``: one file each (``data`` in an object's folder,
    in the layout before single-file objects)."""
    return sorted(path for path in folder.rglob("*")
                  if path.is_file() and path.name != "meta.json" and not path.name.startswith("."))


def staging_entries(server: Server | Path) -> list:
    """Leftovers of writes: staging directories on disk; journal entries, loose blobs and parts on S3."""
    if isinstance(server, Server) and server.bucket is not None:
        return server.bucket.leftovers()
    upload_dir = server.upload_dir if isinstance(server, Server) else server
    return sorted((upload_dir / ".staging").iterdir())


def resumable_entries(server: Server) -> list:
    """tus uploads in progress: folders under ``.resumable`` on disk, objects under ``resumable/`` on S3."""
    if server.bucket is not None:
        return sorted(server.bucket.keys("resumable/"))
    return sorted((server.upload_dir / ".resumable").iterdir())



@pytest.fixture
def clear_of_a_minute_edge() -> None:
    """Start each test well inside a clock minute. The limiter's sliding-window counter weighs the previous
    minute's count by the part of it still in the window and rounds down, so requests that straddle a minute
    boundary may get one more through than the limit (a property of the algorithm, not of the service)."""
    wait_for(lambda: time.time() % 60 < 55, timeout=10)


from .browser import browser, contexts  # noqa: E402,F401  (Chromium fixtures for tests/test_ui_*.py)

_databases = itertools.count(1)


@pytest.fixture
def twins(make_server, redis_server):
    """Two instances of one service: same storage, same Redis (a database of their own, emptied first)."""

    def start(**settings: str):
        url = f"redis://127.0.0.1:{redis_server.port}/{next(_databases) % 16 or 1}"
        with redis.Redis.from_url(url) as client:
            client.flushdb()
        first = make_server(locker="redis", redis_url=url, **settings)
        shared = first.bucket.settings() if first.bucket is not None else {"upload_dir": str(first.upload_dir)}
        second = make_server(locker="redis", redis_url=url, **settings, **shared)
        second.backend, second.bucket = first.backend, first.bucket
        return first, second

    return start
