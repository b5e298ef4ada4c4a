"""docs/plugins.md documents every hook, every public name and every method of the service facade (as
datasette's test of its plugin hooks does): a name added to the public API without a word in the docs fails here."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

import upload_service
import upload_service.storage
import upload_service.testing
from upload_service import hookspecs
from upload_service.service import UploadService

DOC = (Path(__file__).resolve().parent.parent / "docs" / "plugins.md").read_text()
HOOKS = sorted(name for name, value in vars(hookspecs).items() if hasattr(value, "upload_service_spec"))
FACADE = sorted(name for name, value in vars(UploadService).items()
                if not name.startswith("_") and (inspect.isfunction(value) or isinstance(value, property)))
FACADE_ATTRIBUTES = ["name", "url_prefix", "app", "settings", "storage", "files", "hook"]


def mentioned(name: str) -> bool:
    return re.search(rf"`[^`]*\b{re.escape(name)}\b[^`]*`", DOC) is not None


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_section_with_an_example(hook: str) -> None:
    section = re.search(rf"^### `{hook}\((.*?)\)`\n(.*?)(?=^##)", DOC, re.S | re.M)
    assert section is not None, f"docs/plugins.md has no section '### `{hook}(...)`'"
    signature = inspect.signature(getattr(hookspecs, hook))
    assert section.group(1) == ", ".join(signature.parameters), f"{hook}: the section's signature is not the hook's"
    assert f"def {hook}(" in section.group(2), f"{hook}: the section has no example implementation"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_says_when_it_is_called(hook: str) -> None:
    doc = getattr(hookspecs, hook).__doc__ or ""
    assert "Called" in doc or "called" in doc, f"{hook} does not say when it is called"


@pytest.mark.parametrize("name", sorted(set(upload_service.__all__) | set(upload_service.storage.__all__)
                                        | set(getattr(upload_service.testing, "__all__", []))))
def test_every_public_name_is_documented(name: str) -> None:
    assert mentioned(name), f"docs/plugins.md never mentions the public name {name!r}"


@pytest.mark.parametrize("name", FACADE + FACADE_ATTRIBUTES)
def test_every_facade_method_is_documented(name: str) -> None:
    assert f"service.{name}" in DOC, f"docs/plugins.md does not document service.{name}"

