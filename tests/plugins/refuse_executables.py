"""A test plugin that refuses ``.exe`` files before any byte is stored (the client gets 422 and this detail).

Load it with ``PLUGINS=tests.plugins.refuse_executables``.
"""

from __future__ import annotations

from upload_service import UploadRejected, hookimpl

DETAIL = "executables are not accepted here"


@hookimpl
def validate_upload(upload, identity, service) -> None:
    if upload.filename.lower().endswith(".exe"):
        raise UploadRejected(DETAIL, reason="executable")
