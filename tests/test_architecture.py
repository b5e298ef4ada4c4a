"""The layering of the code, checked on its imports (DESIGN.md, "Public API for plugins and host apps").

- Plugins (``upload_service/builtin/*`` and ``plugins/*``) import only the public API: the package root,
  ``upload_service.storage``, ``upload_service.testing`` and ``upload_service.hookspecs`` (and their own package).
- The core's modules import only downwards, layer by layer: values and protocols, then domain logic, then the
  plugin runtime, then HTTP, then assembly (the only modules that build the service). Imports made only for
  type checking may name the service facade (``UploadService``) from any layer: they never run.
- No module keeps mutable state or a thread pool at module level.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

import upload_service

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "upload_service"
PUBLIC = {"upload_service", "upload_service.storage", "upload_service.testing", "upload_service.hookspecs"}

LAYERS = [
    ("values and protocols", {
        "errors", "identity", "storage", "settings", "files", "randomness", "aio", "filenames", "digests",
        "locking", "hookspecs", "hookcalls", "metrics", "tokens", "multipart", "body", "security_headers",
        "session_cookie", "proxies", "templating", "assets", "hypercorn_tuning", "logs", "sessions", "json_body",
        "attempts", "lean_path", "tls",
    }),
    ("domain logic", {
        "usage", "quotas", "concurrency", "reservations", "content_types", "uploads", "lockers", "rate_limits",
        "auth",
    }),
    ("plugin runtime", {"plugins"}),
    ("HTTP", {"responses", "idempotency", "serving", "health", "ui", "api", "api.fallback", "api.files", "api.openapi",
              "api.schemas", "api.uploads", "api.persist", "api.raw_lane"}),
    ("assembly", {"service", "app", "cli", "workers", "testing", ""}),
]
ASSEMBLY = len(LAYERS) - 1
_LAYER_OF = {module: index for index, (_, modules) in enumerate(LAYERS) for module in modules}


def layer_of(module: str) -> int | None:
    """A module's layer, or its package's (``testing._server`` is in ``testing``'s)."""
    while module not in _LAYER_OF and "." in module:
        module = module.rpartition(".")[0]
    return _LAYER_OF.get(module)


@dataclass(frozen=True)
class Import:
    module: str  # absolute, e.g. ``upload_service.storage``
    line: int
    typing_only: bool


def module_name(path: Path) -> str:
    parts = list(path.relative_to(path.parents[len(path.relative_to(ROOT).parts) - 1]).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, name: str) -> list[Import]:
    """Every ``import``/``from ... import`` in ``path`` as absolute module names, marking TYPE_CHECKING ones."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[Import] = []

    def visit(node: ast.AST, typing_only: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for inner in child.body:
                    visit_one(inner, True)
                for inner in child.orelse:
                    visit_one(inner, typing_only)
            else:
                visit_one(child, typing_only)

    def visit_one(node: ast.AST, typing_only: bool) -> None:
        if isinstance(node, ast.Import):
            found.extend(Import(alias.name, node.lineno, typing_only) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if node.module is None:  # ``from . import hookspecs`` imports the module ``<package>.hookspecs``
                found.extend(Import(f"{target}.{alias.name}", node.lineno, typing_only) for alias in node.names)
            else:
                found.append(Import(target, node.lineno, typing_only))
        else:
            visit(node, typing_only)

    visit(ast.parse(path.read_text()), False)
    return found


def plugin_files() -> list[tuple[Path, str, str]]:
    """(file, module name, the plugin's own package) for every default and first-party plugin module."""
    found = []
    for path in sorted((CORE / "builtin").rglob("*.py")):
        relative = path.relative_to(CORE / "builtin").parts
        in_package = len(relative) > 1 or relative[0] != "__init__.py"
        own = "upload_service.builtin" + (f".{Path(relative[0]).stem}" if in_package else "")
        found.append((path, module_name(path), own))
    for package in sorted((ROOT / "plugins").glob("*/upload_service_*")):
        for path in sorted(package.rglob("*.py")):
            found.append((path, module_name(path), package.name))
    return found


@pytest.mark.parametrize("path,name,own", plugin_files(), ids=lambda value: str(value)[-60:])
def test_plugins_import_only_the_public_api(path: Path, name: str, own: str) -> None:
    leaks = [f"{path.relative_to(ROOT)}:{item.line} imports {item.module}"
             for item in imports_of(path, name)
             if item.module.startswith("upload_service") and item.module not in PUBLIC
             and not (item.module == own or item.module.startswith(own + "."))]
    assert not leaks, "plugins may import only the public API:\n" + "\n".join(leaks)


def core_modules() -> list[tuple[Path, str]]:
    return [(path, module_name(path).removeprefix("upload_service").lstrip("."))
            for path in sorted(CORE.rglob("*.py")) if "builtin" not in path.relative_to(CORE).parts]


def test_every_core_module_has_a_layer() -> None:
    missing = sorted(short for _, short in core_modules() if layer_of(short) is None)
    assert not missing, f"put these modules in a layer of {__name__}.LAYERS: {missing}"


@pytest.mark.parametrize("path,short", core_modules(), ids=lambda value: str(value)[-40:])
def test_core_imports_point_down(path: Path, short: str) -> None:
    mine = layer_of(short)
    if mine is None:
        pytest.skip("no layer yet (test_every_core_module_has_a_layer fails)")
    upward = []
    for item in imports_of(path, f"upload_service.{short}".rstrip(".")):
        if not item.module.startswith("upload_service") or item.typing_only:
            continue
        target = item.module.removeprefix("upload_service").lstrip(".")
        if target.startswith("builtin"):
            if mine < ASSEMBLY:  # assembly may pick default plugins (the kit's entry_points=False set)
                upward.append(f"line {item.line}: the core imports the plugin {item.module}")
        elif (theirs := layer_of(target)) is not None and theirs > mine:
            upward.append(f"line {item.line}: {LAYERS[mine][0]} imports {item.module} ({LAYERS[theirs][0]})")
    assert not upward, f"{short or 'upload_service'}:\n" + "\n".join(upward)


MUTABLE_FACTORIES = {"ThreadPoolExecutor", "ProcessPoolExecutor", "WeakKeyDictionary", "WeakValueDictionary",
                     "dict", "list", "set", "defaultdict", "OrderedDict", "deque", "local"}


@pytest.mark.parametrize("path", [path for path in sorted(CORE.rglob("*.py"))] +
                         sorted((ROOT / "plugins").glob("*/upload_service_*/**/*.py")),
                         ids=lambda value: str(value.relative_to(ROOT)))
def test_no_module_level_mutable_state(path: Path) -> None:
    """Module state would be shared by every service in a process (two embedded services, a test run)."""
    found = []
    for node in ast.parse(path.read_text()).body:
        value = node.value if isinstance(node, (ast.Assign, ast.AnnAssign)) else None
        if isinstance(value, (ast.Dict, ast.List, ast.Set)) and _is_private(node):
            found.append(f"line {node.lineno}: {ast.unparse(node)[:80]}")
        elif isinstance(value, ast.Call):
            called = value.func.attr if isinstance(value.func, ast.Attribute) else getattr(value.func, "id", "")
            if called in MUTABLE_FACTORIES:
                found.append(f"line {node.lineno}: {ast.unparse(node)[:80]}")
    assert not found, f"{path.relative_to(ROOT)} keeps state at module level:\n" + "\n".join(found)


def _is_private(node: ast.Assign | ast.AnnAssign) -> bool:
    """Private containers are state; public UPPER_CASE ones are constant tables (their users never change them)."""
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    return any(isinstance(target, ast.Name) and target.id.startswith("_") and not target.id.startswith("__")
               and not target.id.isupper()
               for target in targets)


def test_every_public_name_resolves() -> None:
    missing = [name for name in upload_service.__all__ if getattr(upload_service, name, None) is None]
    assert not missing
    assert set(upload_service.__all__) <= set(dir(upload_service))
