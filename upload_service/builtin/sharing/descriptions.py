"""Share links and file requests as the JSON API shows them: to their owner, and to a visitor."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from upload_service import Identity, StoredFile, iso

from .records import FileRequest, Share

if TYPE_CHECKING:
    from upload_service import UploadService


def owner_identity(record: Share | FileRequest) -> Identity:
    """The owner as the files know them (files are found, and stored, under the owner's identity id)."""
    return Identity(id=record.owner_id, name=record.owner_name, provider=record.owner_provider)


async def shared_files(service: UploadService, share: Share) -> list[StoredFile]:
    """The share's files that still exist, in the order the owner gave them."""
    owner = owner_identity(share)
    found = [await service.files.get(owner, file_id) for file_id in share.files]
    return [file for file in found if file is not None and not file.temporary]


def share_for_owner(service: UploadService, share: Share, files: list[StoredFile]) -> dict[str, Any]:
    return {
        "id": share.id, "url": service.url("share_page", token=share.token),
        "files": [service.describe(file) for file in files],
        "created_at": iso(share.created_at), "expires_at": iso(share.expires_at),
        "max_downloads": share.max_downloads, "downloads": share.downloads,
        "has_password": share.has_password, "note": share.note,
    }


def share_for_visitor(service: UploadService, share: Share, files: list[StoredFile]) -> dict[str, Any]:
    """Only what the link itself gives away: no owner, no file metadata, no other files."""
    return {
        "files": [{"id": file.id, "filename": file.filename, "size": file.size, "content_type": file.content_type,
                   "url": service.url("share_file", token=share.token, file_id=file.id)} for file in files],
        "expires_at": iso(share.expires_at), "downloads_left": share.downloads_left, "note": share.note,
    }


def request_for_owner(service: UploadService, file_request: FileRequest) -> dict[str, Any]:
    return {
        "id": file_request.id, "url": service.url("request_page", token=file_request.token),
        "title": file_request.title, "created_at": iso(file_request.created_at),
        "expires_at": iso(file_request.expires_at), "max_files": file_request.max_files,
        "max_file_size": file_request.max_file_size, "files_received": file_request.files_received,
        "has_password": file_request.has_password,
    }


def request_for_visitor(file_request: FileRequest) -> dict[str, Any]:
    return {"title": file_request.title, "expires_at": iso(file_request.expires_at),
            "files_left": file_request.files_left, "max_file_size": file_request.max_file_size}
