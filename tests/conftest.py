"""Shared fixtures: every end-to-end test talks HTTP to a real Hypercorn server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .servers import Server, start_server


@pytest.fixture
def make_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Server]]:
    """Start servers with given settings (``make_server(max_upload_size="1MiB")``); all stop after the test."""
    started: list[Server] = []

    def make(**settings: str) -> Server:
        server = start_server(tmp_path_factory.mktemp("server"), **settings)
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server shared by a test module (tests use their own files, never assume an empty store)."""
    running = start_server(tmp_path_factory.mktemp("server"))
    yield running
    running.stop()


def stored_files(upload_dir: Path) -> list[Path]:
    """Every committed object's data file under an UPLOAD_DIR."""
    return sorted((upload_dir / "objects").rglob("data"))


def staging_entries(upload_dir: Path) -> list[Path]:
    return sorted((upload_dir / ".staging").iterdir())


from .browser import browser, contexts  # noqa: E402,F401  (Chromium fixtures for tests/test_ui_*.py)
