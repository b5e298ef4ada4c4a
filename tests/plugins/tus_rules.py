"""A test plugin with house rules, to see tus uploads go through the same hooks as every other path.

``validate_upload`` refuses ``.exe`` names and sizes over 100 kB; ``process_upload`` refuses files whose
bytes start with ``VIRUS`` and tags the rest; ``upload_persisted`` writes a line per file to ``persisted.log``
in UPLOAD_DIR. Load it with ``PLUGINS=tests.plugins.tus_rules``.
"""

from __future__ import annotations

import json
from pathlib import Path

from upload_service import UploadRejected, hookimpl


@hookimpl
def validate_upload(upload, service) -> None:
    if upload.filename.endswith(".exe"):
        raise UploadRejected("no programs, please", status=422, reason="no_programs")
    if upload.size is not None and upload.size > 100_000:
        raise UploadRejected("too big for this house", status=413, reason="house_limit")


@hookimpl
async def process_upload(file, service):
    first = b""
    async for chunk in service.storage.read(file.key, 0, 5):
        first += chunk
    if first == b"VIRUS":
        raise UploadRejected("this file looks infected", status=422, reason="infected")
    return {"checked": True, "size_seen": file.size}


@hookimpl
def upload_persisted(file, service) -> None:
    log = Path(service.settings.upload_dir) / "persisted.log"
    with log.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({"id": file.id, "sha256": file.sha256}) + "\n")
