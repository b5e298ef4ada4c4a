"""The sharing routes' wire shapes, as pydantic models for the OpenAPI document (and its fuzzing run)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import JsonDict

WHEN: JsonDict = {"format": "date-time"}
EXPIRES_IN = Field(None, description='seconds, or a duration such as "7d"; null: never', union_mode="left_to_right")


class ShareCreate(BaseModel):
    """What to share, and on which terms."""

    model_config = ConfigDict(extra="forbid")

    files: list[str] = Field(min_length=1, description="ids of the caller's persistent files, each once")
    expires_in: int | str | None = EXPIRES_IN
    password: str | None = Field(None, min_length=1, max_length=1024)
    max_downloads: int | None = Field(None, ge=1, description="downloads allowed (only those from byte 0 count)")
    note: str | None = Field(None, max_length=2000)


class Share(BaseModel):
    """A share link as its owner sees it."""

    model_config = ConfigDict(extra="forbid")

    id: str
    url: str = Field(description="the public link, <prefix>/s/<token>")
    files: list[dict[str, Any]] = Field(description="the shared files, as GET /api/files/{id} describes them")
    created_at: str = Field(json_schema_extra=WHEN)
    expires_at: str | None = Field(json_schema_extra=WHEN)
    max_downloads: int | None
    downloads: int = Field(ge=0)
    has_password: bool
    note: str | None


class ShareList(BaseModel):
    """The caller's share links, newest first."""

    shares: list[Share]


class RequestCreate(BaseModel):
    """An upload-only link's terms."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=2000, description="shown on the upload page")
    expires_in: int | str | None = EXPIRES_IN
    password: str | None = Field(None, min_length=1, max_length=1024)
    max_files: int | None = Field(None, ge=1)
    max_file_size: int | str | None = Field(None, description='bytes or a size such as "100MiB"; at most '
                                                              "MAX_UPLOAD_SIZE")


class FileRequest(BaseModel):
    """A file request as its owner sees it."""

    model_config = ConfigDict(extra="forbid")

    id: str
    url: str = Field(description="the public upload link, <prefix>/r/<token>")
    title: str
    created_at: str = Field(json_schema_extra=WHEN)
    expires_at: str | None = Field(json_schema_extra=WHEN)
    max_files: int | None
    max_file_size: int | None
    files_received: int = Field(ge=0)
    has_password: bool


class RequestList(BaseModel):
    """The caller's file requests, newest first."""

    requests: list[FileRequest]


class VisitorFile(BaseModel):
    """A shared file as a visitor sees it."""

    id: str
    filename: str
    size: int = Field(ge=0)
    content_type: str
    url: str


class VisitorShare(BaseModel):
    """A share link as a visitor sees it: no owner, no metadata."""

    files: list[VisitorFile]
    expires_at: str | None = Field(json_schema_extra=WHEN)
    downloads_left: int | None
    note: str | None


class VisitorRequest(BaseModel):
    """A file request as the uploader sees it."""

    title: str
    expires_at: str | None = Field(json_schema_extra=WHEN)
    files_left: int | None
    max_file_size: int | None


class Password(BaseModel):
    """The password of a protected link."""

    password: str


class Received(BaseModel):
    """A file the uploader sent: only what they already know."""

    model_config = ConfigDict(extra="forbid")

    filename: str
    size: int = Field(ge=0)
    sha256: str = Field(pattern="^[0-9a-f]{64}$")


class ReceivedList(BaseModel):
    """The files of one multipart upload to a request."""

    files: list[Received]


class RequestUpload(BaseModel):
    """A multipart upload to a file request: file parts, and optionally who sends them and a note."""

    file: list[bytes] = Field(json_schema_extra={"items": {"type": "string", "format": "binary"}})
    name: str | None = Field(None, max_length=200)
    note: str | None = Field(None, max_length=2000)
