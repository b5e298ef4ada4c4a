"""The wheel build bundles the UI's front-end files (htmx, tus-js-client) from npm, as hatch-jupyter-builder does
for Jupyter extensions, so ``pip install .`` or ``pip install git+...`` from a checkout gives a UI that works
offline, not one that loads its scripts from a CDN.

hatchling runs this hook (``[tool.hatch.build.hooks.custom]`` in pyproject.toml) before it collects the files of a
wheel or sdist. When ``upload_service/static/vendor/`` already holds every file ``upload_service/assets.json``
pins, with the pinned hash (``scripts/build-assets`` ran, or the Dockerfile's assets stage), it does nothing.
Otherwise, with npm on PATH, it runs the locked ``npm ci`` (package-lock.json) in a temporary directory and
``scripts/bundle-assets.mjs`` copies the files into the package, checking each against its pinned version and
hash. Without npm, or when npm fails (no network), the build goes on with a warning: the UI then loads those
exact files from the CDN by their SRI hashes, and the service says so at start-up.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

NPM_FILES = ("package.json", "package-lock.json", ".npmrc")
NPM_TIMEOUT = 600  # seconds for `npm ci`: a slow network, not a hung one


def _assets_module(root: Path) -> Any:
    """``upload_service/assets.py`` on its own (standard library only): the manifest and hash the service uses."""
    spec = importlib.util.spec_from_file_location("_upload_service_assets", root / "upload_service" / "assets.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def unbundled(root: Path) -> list[str]:
    """The files of assets.json missing from the package, or not the pinned version (by their SRI hash)."""
    assets = _assets_module(root)
    static = root / "upload_service" / "static"
    return [entry.file for entry in assets.read_manifest(root / "upload_service" / "assets.json").values()
            if not (static / entry.file).is_file() or assets.sri_hash(static / entry.file) != entry.integrity]


def bundle(root: Path, npm: str, node: str) -> None:
    """``npm ci`` from the lock file in a scratch directory, then copy the pinned files into the package."""
    with tempfile.TemporaryDirectory(prefix="upload-service-npm-") as scratch:
        for name in NPM_FILES:
            if (root / name).is_file():
                shutil.copy2(root / name, Path(scratch) / name)
        # --omit=dev: the devDependencies are for tests and benchmarks (oidc-provider, the Node.js tus server),
        # no part of the wheel
        _run([npm, "ci", "--omit=dev", "--ignore-scripts", "--no-audit", "--no-fund"], Path(scratch))
        _run([node, str(root / "scripts" / "bundle-assets.mjs"), "--node-modules", str(Path(scratch) / "node_modules")],
             root)


def _run(command: list[str], cwd: Path) -> None:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=NPM_TIMEOUT)
    if result.returncode != 0:
        raise RuntimeError(f"{Path(command[0]).name} {command[1]} failed ({result.returncode}): "
                           f"{(result.stderr or result.stdout).strip()[-2000:]}")


class BundleFrontEndAssets(BuildHookInterface):
    """Make sure the wheel (or sdist) carries the UI's npm files; never fail a build for want of npm."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        root = Path(self.root)
        missing = unbundled(root)
        if not missing:
            return
        npm, node = shutil.which("npm"), shutil.which("node")
        if npm is None or node is None:
            self._warn(missing, "npm is not on PATH")
            return
        self.app.display_info(f"upload-service: bundling the UI's front-end files with npm ({', '.join(missing)})")
        try:
            bundle(root, npm, node)
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as error:
            self._warn(missing, str(error))
            return
        left = unbundled(root)
        if left:
            self._warn(left, "npm did not produce them")

    def _warn(self, missing: list[str], why: str) -> None:
        self.app.display_warning(
            f"upload-service: building WITHOUT the UI's front-end files ({', '.join(missing)}): {why}. The UI will "
            "load them from https://cdn.jsdelivr.net (pinned, with SRI hashes) and not work offline; install npm "
            "and build again, or run scripts/build-assets first.")
