"""The hooks: process JPEG/PNG/WebP uploads, serve thumbnails, remove a thumbnail with its file."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic_settings import BaseSettings, SettingsConfigDict
from quart import Response, request

from upload_service import ObjectNotFound, Problem, Reply, Size, StoredFile, UploadRejected, documented, hookimpl

from .processing import FORMATS, process_image

THUMBNAIL_ENDPOINT = "image_thumbnail"


class ImageSettings(BaseSettings):
    """``IMAGES_*``, read through ``service.plugin_settings`` (the environment, or a host's ``plugin_settings``)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", env_prefix="IMAGES_")

    max_pixels: int = 50_000_000
    max_size: Size = 64 * 1024 * 1024
    thumbnail_size: int = 256


def thumbnail_key(file: StoredFile) -> str:
    """Beside the files area, under the same owner folder: never listed as a file."""
    _, owner, file_id = file.key.split("/")
    return f"thumbnails/{owner}/{file_id}"


async def read_all(service: Any, key: str) -> bytes:
    return b"".join([chunk async for chunk in service.storage.read(key)])


async def put(service: Any, key: str, data: bytes, metadata: dict[str, Any]) -> Any:
    """Write ``data`` under ``key``, replacing what is there (only for keys nobody has been told of yet)."""
    async with service.storage.writer() as writer:
        await writer.write(data)
        await writer.finish()
        await service.storage.delete(key)
        return await writer.commit(key, metadata)


@hookimpl
async def process_upload(file: StoredFile, service: Any) -> dict[str, Any] | None:
    image_format = FORMATS.get(file.content_type)
    if image_format is None:
        return None
    settings = service.plugin_settings(ImageSettings)
    if file.size > settings.max_size:
        raise UploadRejected(f"images over {settings.max_size} bytes are not processed", status=413,
                             reason="image_too_large")
    processed = await asyncio.to_thread(process_image, await read_all(service, file.key), image_format,
                                        settings.max_pixels, settings.thumbnail_size)
    # process_upload runs before the client learns the file's id, so replacing its bytes races no reader.
    await put(service, file.key, processed.data, file.storage_metadata())
    await put(service, thumbnail_key(file), processed.thumbnail, {"content_type": "image/webp"})
    return {"image": {"width": processed.width, "height": processed.height, "format": processed.format},
            "preview": THUMBNAIL_ENDPOINT}


@hookimpl
async def file_deleted(file: StoredFile, service: Any) -> None:
    await service.storage.delete(thumbnail_key(file))


@hookimpl
async def file_preview(file: StoredFile, service: Any) -> tuple[bytes, str] | None:
    """The thumbnail this plugin made of an image, for pages that show a file to others (share links)."""
    if file.metadata.get("preview") != THUMBNAIL_ENDPOINT:
        return None
    try:
        return await read_all(service, thumbnail_key(file)), "image/webp"
    except ObjectNotFound:
        return None


@hookimpl
def register_routes(blueprint: Any, service: Any) -> None:
    @blueprint.route("/api/files/<file_id>/thumbnail", methods=["GET"], endpoint=THUMBNAIL_ENDPOINT)
    @documented(errors={404: "no such file, not the caller's, or not an image"},
                replies={200: Reply("a WebP thumbnail", {"type": "string", "format": "binary"}, "image/webp")})
    async def thumbnail(file_id: str) -> Response:
        """A small WebP of one of the caller's images (upload-service-images)."""
        identity = await service.require_identity(request)
        file = await service.files.get(identity, file_id)
        if file is None:
            raise Problem(404, "no such file", reason="not_found")
        preview = await service.preview(file)
        if preview is None:
            raise Problem(404, "this file has no thumbnail (not an image)", reason="no_thumbnail")
        return Response(preview[0], content_type=preview[1],
                        headers={"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"})
