"""Shared fixtures: every end-to-end test talks HTTP to a real Hypercorn server on 127.0.0.1.

The storage suites (``STORAGE_SUITES``) run twice, on local disk and on S3 (moto's server mode on
127.0.0.1): ``make_server`` and ``server`` give each test a service on the backend of its parameter.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .s3 import S3Server
from .servers import Server, start_server

STORAGE_SUITES = ("test_api_", "test_bad_input", "test_robustness", "test_tus", "test_storage_")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "local_storage: the test looks at local disk, so it runs on local storage only")


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
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One moto S3 server for the session; every service gets its own bucket on it."""
    running = S3Server.start(tmp_path_factory.mktemp("moto"))
    yield running
    running.stop()


def _starter(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
             backend: str) -> Callable[..., Server]:
    def start(**settings: str) -> Server:
        bucket = request.getfixturevalue("s3_server").bucket() if backend == "s3" else None
        if bucket is not None:
            settings = {**bucket.settings(), **settings}
        server = start_server(tmp_path_factory.mktemp("server"), **settings)
        server.backend, server.bucket = backend, bucket
        return server

    return start


@pytest.fixture
def make_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                storage_backend: str) -> Iterator[Callable[..., Server]]:
    """Start servers with given settings (``make_server(max_upload_size="1MiB")``); all stop after the test."""
    started: list[Server] = []
    start = _starter(request, tmp_path_factory, storage_backend)

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
    running = _starter(request, tmp_path_factory, storage_backend)()
    yield running
    running.stop()


def stored_files(server: Server | Path, area: str = "") -> list:
    """Every committed object (``area``: ``files/`` or ``temp/`` for one kind), on disk or in the bucket."""
    if isinstance(server, Server) and server.bucket is not None:
        return server.bucket.records(area)
    upload_dir = server.upload_dir if isinstance(server, Server) else server
    return sorted((upload_dir / "objects" / area).rglob("data"))


def staging_entries(server: Server | Path) -> list:
    """Leftovers of writes: staging directories on disk; journal entries, loose blobs and parts on S3."""
    if isinstance(server, Server) and server.bucket is not None:
        return server.bucket.leftovers()
    upload_dir = server.upload_dir if isinstance(server, Server) else server
    return sorted((upload_dir / ".staging").iterdir())
