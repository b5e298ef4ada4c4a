"""Operations: request ids and JSON logs, Prometheus counters (one worker and several)."""

from __future__ import annotations

import json
import re

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .servers import TOKENS, tls


def samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``/metrics`` by (name, sorted labels), read by prometheus-client's own parser."""
    answer = httpx.get(url + "/metrics", verify=tls())
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(answer.text) for sample in family.samples}


@pytest.mark.process  # reads the server's log
def test_request_ids_and_json_logs(make_server) -> None:
    server = make_server(log_format="json", log_level="INFO")
    client = server.client("alice")
    given = client.get("/api/files", headers={"X-Request-Id": "proxy-id-42"})
    assert given.headers["X-Request-Id"] == "proxy-id-42"
    generated = client.put("/api/files/a.txt", content=b"abc").headers["X-Request-Id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    unsafe = client.get("/api/files", headers={"X-Request-Id": "bad id\twith spaces" + "x" * 200})
    assert re.fullmatch(r"[0-9a-f]{32}", unsafe.headers["X-Request-Id"])
    refused = httpx.get(server.url + "/api/files", headers={"X-Request-Id": "no-credentials-1"})
    assert refused.status_code == 401 and refused.headers["X-Request-Id"] == "no-credentials-1"
    server.stop()
    lines = [line for line in server.log().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    access = {record["request_id"]: record for record in records if record["logger"] == "upload_service.access"}
    assert access["proxy-id-42"]["status"] == 200 and access["proxy-id-42"]["path"] == "/api/files"
    assert access[generated]["method"] == "PUT" and access[generated]["status"] == 201
    assert access["no-credentials-1"]["status"] == 401
    assert all(isinstance(record["duration_ms"], float) for record in access.values())
    assert any(record["logger"] == "hypercorn.error" for record in records)  # Hypercorn's own lines too


@pytest.mark.process  # reads the server's log
def test_text_logs_carry_the_request_id(make_server) -> None:
    server = make_server(log_level="INFO")
    server.client("alice").get("/api/files", headers={"X-Request-Id": "text-id-7"})
    server.stop()
    assert re.search(r"INFO upload_service\.access \[text-id-7\]: GET /api/files 200", server.log())


def test_metrics_count_uploads_bytes_and_rejections(make_server) -> None:
    server = make_server(max_upload_size="1KiB")
    client = server.client("alice")
    assert client.put("/api/files/a.bin", content=b"a" * 100).status_code == 201
    assert client.put("/api/files/b.bin", content=b"b" * 200).status_code == 201
    two_files = [("f", ("c.txt", b"c" * 10)), ("f", ("d.txt", b"d" * 20))]
    assert client.post("/api/upload", files=two_files).status_code == 201
    assert client.put("/api/files/big.bin", content=b"x" * 2048).status_code == 413
    assert httpx.get(server.url + "/api/files").status_code == 401
    metrics = samples(server.url)
    local = lambda path: (("backend", "local"), ("path", path))  # noqa: E731
    assert metrics[("upload_service_uploads_total", local("raw"))] == 2
    assert metrics[("upload_service_upload_bytes_total", local("raw"))] == 300
    assert metrics[("upload_service_uploads_total", local("upload"))] == 2
    assert metrics[("upload_service_upload_bytes_total", local("upload"))] == 30
    assert metrics[("upload_service_upload_seconds_count", (("path", "raw"),))] >= 2
    assert metrics[("upload_service_active_uploads", (("path", "raw"),))] == 0
    rejected = {labels: value for (name, labels), value in metrics.items() if name == "upload_service_rejections_total"}
    assert rejected[(("reason", "no_credentials"), ("status", "401"))] == 1
    assert sum(value for labels, value in rejected.items() if ("status", "413") in labels) == 1


@pytest.mark.process
def test_metrics_add_up_across_workers(make_server, tmp_path) -> None:
    server = make_server(workers="2", tmpdir=str(tmp_path))  # the CLI makes its metrics directory under TMPDIR
    uploads = 16
    for index in range(uploads):  # a new connection each time, so both workers take some
        answer = httpx.put(f"{server.url}/api/files/{index}.bin", content=b"z" * 10,
                           headers={"Authorization": f"Bearer {TOKENS['alice']}"})
        assert answer.status_code == 201
    key = ("upload_service_uploads_total", (("backend", "local"), ("path", "raw")))
    for _ in range(6):  # whichever worker answers the scrape, it reports every worker's uploads
        assert samples(server.url)[key] == uploads
    (directory,) = tmp_path.glob("upload-service-metrics-*")
    writers = [path for path in directory.glob("counter_*.db") if b"upload_service_uploads_total" in path.read_bytes()]
    assert len(writers) == 2, writers  # both workers stored uploads and counted them
    server.stop()
    assert not directory.exists()  # removed when the server stops
