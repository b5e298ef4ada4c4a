"""The pytest11 fixtures plugin authors get with upload-service (``upload_service.testing``)."""

from __future__ import annotations

from upload_service import UploadRejected, hookimpl


class WordCount:
    """A plugin as an author would write it: records the number of words of text uploads."""

    name = "word_count"

    @hookimpl
    def process_upload(self, file, service):
        return {"words": None} if not file.content_type.startswith("text/") else None


class NoExecutables:
    name = "no_executables"

    @hookimpl
    async def validate_upload(self, upload, identity, service):
        if upload.filename.endswith(".exe"):
            raise UploadRejected("executables are not accepted", reason="executable")


def test_factory_starts_a_real_service_with_plugins(upload_service_factory) -> None:
    running = upload_service_factory(plugins=[WordCount()], max_upload_size="1KiB")
    client = running.client()
    stored = client.put("/api/files/a.bin", content=b"\x00\x01", headers={"Content-Type": "application/octet-stream"})
    assert stored.status_code == 201 and stored.json()["metadata"] == {"words": None}
    assert client.put("/api/files/big.bin", content=b"x" * 2000).status_code == 413  # its settings apply
    assert running.client(token=None).get("/api/files").status_code == 401
    assert running.service.pm.has_plugin("word_count")


def test_a_temporary_plugin_applies_only_while_registered(upload_service_factory, upload_service_plugin) -> None:
    running = upload_service_factory()
    client = running.client()
    name = upload_service_plugin(running, NoExecutables())
    assert name == "no_executables"
    refused = client.put("/api/files/setup.exe", content=b"MZ")
    assert refused.status_code == 422 and refused.json()["detail"] == "executables are not accepted"
    assert client.get("/api/files").json()["files"] == []
    running.service.pm.unregister(name=name)  # what the fixture does after the test
    assert client.put("/api/files/setup.exe", content=b"MZ").status_code == 201
