"""Where the UI's static assets are loaded from, and the Content-Security-Policy that allows exactly that.

Assets are served by the service's blueprint (``<prefix>/static/``) unless ``STATIC_URL`` points at nginx or a
CDN. htmx is bundled by ``scripts/build-assets`` into ``static/vendor/``; when that copy is missing (a source
checkout that skipped the build) the page loads the pinned CDN copy recorded in ``assets.json``, checked by its
SRI hash. tus-js-client is bundled the same way; without it the UI uploads large files in one request.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

log = logging.getLogger("upload_service.assets")
PACKAGE_DIR = Path(__file__).resolve().parent
STATIC_DIR = PACKAGE_DIR / "static"
MANIFEST = PACKAGE_DIR / "assets.json"
TUS_FILE = "vendor/tus.min.js"


@dataclass(frozen=True)
class Script:
    """A third-party script tag: where it comes from and the hash the browser must verify."""

    src: str
    integrity: str


def sri_hash(path: Path) -> str:
    """The Subresource Integrity value (sha384) of a file."""
    return "sha384-" + base64.b64encode(hashlib.sha384(path.read_bytes()).digest()).decode()


@cache
def _fingerprint(path: Path, mtime: float) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def origin(url: str) -> str | None:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else None


class Assets:
    """Builds every asset URL of the UI (so ``STATIC_URL`` is honoured in one place) and the matching CSP."""

    def __init__(self, local_url: Callable[[str], str], static_url: str = "", *,
                 static_dir: Path = STATIC_DIR, manifest: Path = MANIFEST) -> None:
        self.local_url = local_url
        self.static_url = static_url.rstrip("/")
        self.static_dir = static_dir
        htmx = json.loads(manifest.read_text())["htmx"]
        bundled = static_dir / htmx["file"]
        self.htmx_bundled = bundled.is_file()
        if self.htmx_bundled:
            self._htmx = (htmx["file"], sri_hash(bundled))
        else:
            log.warning("bundled htmx is missing (run scripts/build-assets); pages load htmx %s from %s",
                        htmx["version"], htmx["cdn"])
            self._htmx = (htmx["cdn"], htmx["integrity"])
        tus = static_dir / TUS_FILE
        self._tus = sri_hash(tus) if tus.is_file() else None
        if self._tus is None:
            log.warning("bundled tus-js-client is missing (run scripts/build-assets); the UI uploads large files "
                        "without resuming")

    def htmx(self) -> Script:
        """The htmx script tag: the bundled copy (via ``url``), else the pinned CDN copy; both with SRI."""
        where, integrity = self._htmx
        return Script(self.url(where) if self.htmx_bundled else where, integrity)

    def tus(self) -> Script | None:
        """The bundled tus-js-client (resumable uploads of large files), or None when the build left it out."""
        return None if self._tus is None else Script(self.url(TUS_FILE), self._tus)

    def url(self, path: str) -> str:
        """The URL of a static file, with a content fingerprint so browsers never keep a stale copy."""
        file = self.static_dir / path
        query = f"?v={_fingerprint(file, file.stat().st_mtime)}" if file.is_file() else ""
        if self.static_url:
            return f"{self.static_url}/{path}{query}"
        return self.local_url(path) + query

    def content_security_policy(self, form_targets: list[str] | None = None) -> str:
        """Scripts and styles only from this origin (and STATIC_URL, and the htmx CDN when not bundled).

        ``form_targets``: origins besides this one that a form post may redirect to (a sign-in that goes on to
        an identity provider); None when that is not known, which leaves ``form-action`` out.
        """
        static = [found for found in [origin(self.static_url)] if found]
        scripts, styles = ["'self'", *static], ["'self'", *static]
        forms = None if form_targets is None else ["'self'", *form_targets]
        if not self.htmx_bundled and (cdn := origin(self._htmx[0])):
            scripts.append(cdn)
        return "; ".join([
            "default-src 'self'",
            f"script-src {' '.join(dict.fromkeys(scripts))}",
            f"style-src {' '.join(styles)}",
            "img-src 'self' data:",
            "connect-src 'self'",
            *([f"form-action {' '.join(forms)}"] if forms is not None else []),
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "object-src 'none'",
        ])
