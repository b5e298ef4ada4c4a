"""The wire shapes of the API as pydantic models: the source of the OpenAPI document's schemas.

``responses.describe_file`` builds the dicts the routes answer with; the OpenAPI test checks real answers of a
running server against these models' JSON schemas, so the two cannot drift apart unnoticed.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, RootModel


class File(BaseModel):
    """One stored file as the API describes it."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="opaque, url-safe id")
    filename: str = Field(description="safe display name (never a storage path)")
    size: int = Field(ge=0)
    content_type: str
    sha256: str = Field(pattern="^[0-9a-f]{64}$")
    created_at: str = Field(description="ISO 8601 UTC with milliseconds", json_schema_extra={"format": "date-time"})
    temporary: bool
    expires_at: str | None = Field(description="when a temporary upload expires; null when persistent")
    metadata: dict[str, Any]
    url: str = Field(description="where the bytes are (includes the service's url_prefix)")
    token: str | None = Field(None, description="temporary uploads only: the signed token for /api/persist")


class FileList(BaseModel):
    """The files an upload stored or persisted."""

    model_config = ConfigDict(extra="forbid")

    files: list[File]


class FilePage(BaseModel):
    """One page of the caller's files, newest first."""

    model_config = ConfigDict(extra="forbid")

    files: list[File]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null on the last")


class Base64Item(BaseModel):
    """One file of the original JSON upload body."""

    filename: str = Field(min_length=1, description="display name (reduced to a safe basename; 400 if none is left)")
    content: str = Field(description="the file's bytes, base64 (line breaks allowed)",
                         json_schema_extra={"contentEncoding": "base64"})
    content_type: str | None = None


class Base64Upload(RootModel[Annotated[list[Base64Item], Field(min_length=1)] | Base64Item]):
    """The original JSON upload body: a list of base64 items (a single item object is accepted too)."""


class MultipartUpload(BaseModel):
    """A multipart/form-data upload: any number of file parts (their field name does not matter)."""

    file: list[bytes] = Field(json_schema_extra={"items": {"type": "string", "format": "binary"}})
    csrf_token: str | None = Field(None, description="browser sessions: the CSRF token, instead of the header")
    redirect: str | None = Field(None, description="'1' to be redirected to the UI instead of a JSON answer")


class PersistRequest(BaseModel):
    """Temporary upload tokens to make persistent, and metadata to store with them."""

    tokens: list[str] = Field(min_length=1, json_schema_extra={"items": {"type": "string", "minLength": 1}})
    metadata: dict[str, Any] = Field(default_factory=dict)


class Problem(BaseModel):
    """RFC 9457 problem details: every error of the API."""

    type: str
    title: str
    status: int
    detail: str


class Health(BaseModel):
    """Liveness or readiness."""

    status: str
    storage: str | None = None
    detail: str | None = None
