"""How a stored file's bytes are served: inline only for raster images whose bytes say so, else as an attachment.

A file's stored type is what libmagic made of its first bytes at upload (``content_types``), or, where the
bytes said nothing specific, what its uploader claimed; either way it decides nothing on its own: a file is
shown inline only when its stored type is one of the raster images below *and* its first bytes are
that kind of image, and it is then served with the sniffed type. Everything else (HTML, SVG, XML, scripts,
PDFs, anything unknown) is an attachment, so the browser saves it instead of rendering it on our origin, and
types a browser would run (HTML, SVG, XML, scripts) are labelled ``application/octet-stream``. With
``X-Content-Type-Options: nosniff`` and a sandboxing CSP on every download, even a client that ignored the
disposition would not run what it got.
"""

from __future__ import annotations

from .filenames import content_disposition

SNIFF_BYTES = 12
INLINE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})  # never SVG: it runs script
# Types a browser would run if it ever rendered them; their downloads are labelled as plain bytes.
ACTIVE_TYPES = frozenset({"text/html", "application/xhtml+xml", "image/svg+xml", "text/xml", "application/xml",
                          "text/javascript", "application/javascript", "application/x-javascript",
                          "application/ecmascript", "text/ecmascript"})
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


def presentation(filename: str, content_type: str, head: bytes | None) -> tuple[str, str]:
    """``(Content-Type, Content-Disposition)`` of a download; ``head`` is the file's first bytes when read."""
    sniffed = sniff_image(head) if head is not None and worth_sniffing(content_type) else None
    if sniffed is not None:
        return sniffed, content_disposition(filename, "inline")
    served = NEUTRAL_TYPE if content_type.split(";")[0].strip().lower() in ACTIVE_TYPES else content_type
    return served, content_disposition(filename)
