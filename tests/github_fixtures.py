"""Fixtures of the GitHub test modules: one GitHub double and one server per module, the double reset per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .github_double import GitHubDouble
from .github_helpers import double_and_server
from .servers import Server


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GitHubDouble, Server]]:
    with double_and_server(tmp_path_factory.mktemp("server")) as running:
        yield running


@pytest.fixture
def github(shared: tuple[GitHubDouble, Server]) -> GitHubDouble:
    shared[0].reset()
    return shared[0]


@pytest.fixture
def server(shared: tuple[GitHubDouble, Server]) -> Server:
    return shared[1]
