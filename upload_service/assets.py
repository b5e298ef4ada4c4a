"""Where the UI's static assets are loaded from, and the Content-Security-Policy that allows exactly that.

Assets are served by the service's blueprint (``<prefix>/static/``) unless ``STATIC_URL`` points at nginx or a
CDN. htmx and tus-js-client come from npm: the wheel build bundles them into ``static/vendor/`` (hatch_build.py,
when npm is there) as ``scripts/build-assets`` does in a checkout, and ``assets.json`` pins each one's version,
SRI hash and CDN URL. Where a bundled file is missing, the page loads that exact CDN file, checked by its hash, and
the CSP allows that file alone (its URL and its hash), never the whole CDN; the service says so at start-up.
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


@dataclass(frozen=True)
class Script:
    """A third-party script tag: where it comes from and the hash the browser must verify."""

    src: str
    integrity: str


@dataclass(frozen=True)
class Vendored:
    """One front-end file from npm, as ``assets.json`` pins it: its place in the bundle and its CDN copy."""

    package: str
    version: str
    source: str  # the file inside the npm package
    file: str  # the file under static/
    integrity: str
    cdn: str


def read_manifest(path: Path = MANIFEST) -> dict[str, Vendored]:
    """``assets.json``: each bundled front-end file by name (``htmx``, ``tus``)."""
    return {name: Vendored(**entry) for name, entry in json.loads(path.read_text()).items()}


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
        self.vendored = read_manifest(manifest)
        # bundled files with the hash of the copy at hand; the others are loaded from their pinned CDN URL
        self._bundled = {name: sri_hash(static_dir / entry.file) for name, entry in self.vendored.items()
                         if (static_dir / entry.file).is_file()}
        self.missing = [entry for name, entry in self.vendored.items() if name not in self._bundled]

    def script(self, name: str) -> Script:
        """A vendored script's tag: the bundled copy (via ``url``), else the pinned CDN copy; both with SRI."""
        entry = self.vendored[name]
        if name in self._bundled:
            return Script(self.url(entry.file), self._bundled[name])
        return Script(entry.cdn, entry.integrity)

    def htmx(self) -> Script:
        return self.script("htmx")

    def tus(self) -> Script:
        """tus-js-client (resumable uploads of large files; the page uploads in one request without it)."""
        return self.script("tus")

    def warn_if_unbundled(self) -> None:
        """One WARNING when the UI is served without (part of) its bundle: the page then needs the internet."""
        if not self.missing:
            return
        log.warning(
            "the UI is served without its front-end bundle: %s missing from %s, so browsers load %s from "
            "https://cdn.jsdelivr.net (pinned, with SRI hashes) and the page does not work without internet "
            "access. Install a wheel built with npm on PATH (pip install from a checkout bundles them when npm is "
            "there), or run scripts/build-assets in a checkout.",
            ", ".join(entry.file for entry in self.missing), self.static_dir,
            ", ".join(f"{entry.package}@{entry.version}" for entry in self.missing))

    def url(self, path: str) -> str:
        """The URL of a static file, with a content fingerprint so browsers never keep a stale copy."""
        file = self.static_dir / path
        query = f"?v={_fingerprint(file, file.stat().st_mtime)}" if file.is_file() else ""
        if self.static_url:
            return f"{self.static_url}/{path}{query}"
        return self.local_url(path) + query

    def content_security_policy(self, form_targets: list[str] | None = None) -> str:
        """Scripts and styles only from this origin (and STATIC_URL), plus the exact CDN file, with its hash, of
        each vendored script that is not bundled.

        ``form_targets``: origins besides this one that a form post may redirect to (a sign-in that goes on to
        an identity provider); None when that is not known, which leaves ``form-action`` out.
        """
        static = [found for found in [origin(self.static_url)] if found]
        scripts, styles = ["'self'", *static], ["'self'", *static]
        for entry in self.missing:
            scripts += [entry.cdn, f"'{entry.integrity}'"]
        forms = None if form_targets is None else ["'self'", *form_targets]
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
