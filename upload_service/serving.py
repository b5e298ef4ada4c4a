"""How a stored file's bytes are served: inline only for raster images whose bytes say so, else as an attachment,
and labelled with its own type only when that type is known to be inert.

A file's stored type is what libmagic made of its first bytes at upload (``content_types``), or, where the
bytes said nothing specific, what its uploader claimed; either way it decides nothing on its own: a file is
shown inline only when its stored type is one of the raster images below *and* its first bytes are
that kind of image, and it is then served with the sniffed type. Everything else is an attachment, so the
browser saves it instead of rendering it on our origin. The label is an allowlist: a type keeps it only when no
browser runs it or parses it as a document (raster images, audio, video, PDF, plain text, archives); anything
else (HTML, SVG, every XML dialect such as ``application/foo+xml`` or ``text/xsl``, stylesheets, scripts, a
type invented tomorrow) is served as ``application/octet-stream``. With ``X-Content-Type-Options: nosniff`` and
a sandboxing CSP on every download, even a client that ignored the disposition would not run what it got; a
storage that serves the bytes itself (a presigned S3 URL, which can carry neither header) gets the same type and
disposition from ``download_presentation``, so it never needs them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from .filenames import content_disposition

SNIFF_BYTES = 12
INLINE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})  # never SVG: it runs script
# Types no browser runs or parses as a document: they are served as themselves (still as attachments). Never an
# SVG or any other XML-based type (``*/*+xml`` is parsed as XML, and XHTML elements in it run script).
INERT_TYPES = frozenset({
    # raster images
    "image/png", "image/jpeg", "image/gif", "image/webp", "image/avif", "image/bmp", "image/x-ms-bmp",
    "image/tiff", "image/heic", "image/heif", "image/jxl", "image/x-icon", "image/vnd.microsoft.icon",
    # audio and video
    "audio/mpeg", "audio/mp4", "audio/x-m4a", "audio/aac", "audio/x-hx-aac-adts", "audio/ogg", "audio/opus",
    "audio/wav", "audio/x-wav", "audio/flac", "audio/x-flac", "audio/webm", "audio/midi", "audio/x-aiff",
    "video/mp4", "video/webm", "video/ogg", "video/quicktime", "video/x-matroska", "video/x-msvideo",
    "video/mpeg", "video/3gpp", "video/x-m4v", "video/mp2t",
    # shown by a viewer of the browser's own, or only saved
    "application/pdf", "text/plain", "application/octet-stream",
    "application/zip", "application/gzip", "application/x-gzip", "application/x-tar", "application/x-bzip2",
    "application/x-xz", "application/zstd", "application/x-7z-compressed", "application/vnd.rar",
    "application/x-rar",
})
NEUTRAL_TYPE = "application/octet-stream"
DOWNLOAD_POLICY = "default-src 'none'; frame-ancestors 'none'; sandbox"


def sniff_image(head: bytes) -> str | None:
    """The raster image type the first bytes of a file announce, or None."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def worth_sniffing(content_type: str) -> bool:
    """Only files stored as a safe image type can be inline, so only those need their first bytes read."""
    return content_type in INLINE_TYPES


def served_type(content_type: str) -> str:
    """The type a download is labelled with: the stored type (without parameters) when it is inert, else bytes."""
    media = content_type.split(";")[0].strip().lower()
    return media if media in INERT_TYPES else NEUTRAL_TYPE


def presentation(filename: str, content_type: str, head: bytes | None) -> tuple[str, str]:
    """``(Content-Type, Content-Disposition)`` of a download; ``head`` is the file's first bytes when read."""
    sniffed = sniff_image(head) if head is not None and worth_sniffing(content_type) else None
    if sniffed is not None:
        return sniffed, content_disposition(filename, "inline")
    return served_type(content_type), content_disposition(filename)


async def download_presentation(filename: str, content_type: str,
                                read_head: Callable[[int], Awaitable[bytes]]) -> tuple[str, str]:
    """``(Content-Type, Content-Disposition)`` to serve a stored file with, wherever its bytes come from (the
    service's download route, or a storage's own URL such as a presigned S3 GET). ``content_type`` is the stored
    type; ``read_head(n)`` returns the file's first ``n`` bytes and is awaited only when the answer depends on them
    (a file stored as a raster image, shown inline only when its bytes are that image)."""
    head = await read_head(SNIFF_BYTES) if worth_sniffing(content_type) else None
    return presentation(filename, content_type, head)
