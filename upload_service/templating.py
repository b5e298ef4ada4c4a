"""How the service finds its Jinja templates, so that a host app can override or extend any of them.

Quart asks the host app's own loader first and the blueprints' loaders after it, so a host template named
``upload_service/index.html`` replaces the service's. The service's loader is a ``ChoiceLoader`` of its own
folder and the same folder under the ``default:`` prefix: a host template can then extend the original it
replaces (``{% extends "default:upload_service/base.html" %}``) instead of copying it.
"""

from __future__ import annotations

from pathlib import Path

from jinja2 import BaseLoader, ChoiceLoader, FileSystemLoader, PrefixLoader

DEFAULT_PREFIX = "default"


def service_template_loader(folder: Path) -> BaseLoader:
    """The service's own templates by name, and again as ``default:<name>`` for host templates to extend."""
    own = FileSystemLoader(str(folder))
    return ChoiceLoader([own, PrefixLoader({DEFAULT_PREFIX: own}, delimiter=":")])
