"""Pillow work, run in a worker thread: measure, strip metadata, make a thumbnail; refuse what is not safe."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError

from upload_service import UploadRejected

FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP"}
SAVE_OPTIONS: dict[str, dict[str, Any]] = {
    "JPEG": {"quality": 92, "optimize": True}, "PNG": {"optimize": True}, "WEBP": {"quality": 90},
}


@dataclass(frozen=True)
class ProcessedImage:
    data: bytes
    thumbnail: bytes
    width: int
    height: int
    format: str


def process_image(data: bytes, image_format: str, max_pixels: int, thumbnail_size: int) -> ProcessedImage:
    """The image re-encoded without metadata, its size, and a WebP thumbnail; ``UploadRejected`` if unsafe."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data), formats=[image_format]) as opened:
                if opened.width * opened.height > max_pixels:
                    raise UploadRejected(f"the image has more than {max_pixels} pixels", reason="image_too_many_pixels")
                opened.load()
                image = ImageOps.exif_transpose(opened)  # keep how it looks once the orientation tag is gone
                return ProcessedImage(_clean(image, image_format), _thumbnail(image, thumbnail_size),
                                      image.width, image.height, image_format)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise UploadRejected("the image would decompress to too many pixels", reason="image_bomb") from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
            raise UploadRejected(f"this is not a valid {image_format} image", reason="bad_image") from None


def _clean(image: Image.Image, image_format: str) -> bytes:
    """Pixels only: a fresh image object carries no EXIF, XMP or text chunks into the saved file."""
    if image_format == "JPEG" and image.mode not in ("RGB", "L", "CMYK"):
        image = image.convert("RGB")
    bare = Image.new(image.mode, image.size)
    bare.paste(image)
    if image.mode == "P" and (palette := image.getpalette()):
        bare.putpalette(palette)
    out = io.BytesIO()
    bare.save(out, image_format, **SAVE_OPTIONS[image_format])
    return out.getvalue()


def _thumbnail(image: Image.Image, size: int) -> bytes:
    thumb = image.convert("RGBA" if image.mode in ("RGBA", "LA", "P") else "RGB")
    thumb.thumbnail((size, size))
    out = io.BytesIO()
    thumb.save(out, "WEBP", quality=80)
    return out.getvalue()
