"""A shortened mixed load (tests/perf/service_load.py runs the full one): 30 clients for 10 s against one
service with two workers, every kind of upload, download and delete at once, then every stored byte checked."""

from __future__ import annotations

import os

import pytest

from .mixed_load import ACTIONS, check_store, run_mixed_load, summary

CLIENTS = int(os.environ.get("LOAD_CLIENTS", "30"))
SECONDS = float(os.environ.get("LOAD_SECONDS", "10"))
pytestmark = [pytest.mark.process, pytest.mark.load]


def test_mixed_load_loses_corrupts_and_duplicates_nothing(make_server) -> None:
    server = make_server(workers="2")
    report = check_store(server.url, run_mixed_load(server.url, CLIENTS, SECONDS), server.upload_dir)
    print(summary(report))
    assert set(report.tried) == set(ACTIONS), report.tried  # every kind of request was tried
    assert report.errors() == {}, report.errors()
    assert report.wrong_bytes == [] and report.unanswered == set()
    assert report.lost == [] and report.corrupted == [] and report.duplicated == [] and report.unexpected == []
    assert report.verified == len(report.live) > 50
    assert report.deleted  # deletes happened, and none of them came back
