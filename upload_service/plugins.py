"""The plugin manager of one service instance: blocking, entry points, programmatic plugins, and describing them.

How the core calls hooks that may be async lives in ``hookcalls``, below the plugin runtime.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable
from importlib import metadata
from typing import Any

import pluggy

from . import hookspecs
from .errors import StartupError

log = logging.getLogger("upload_service.plugins")


def make_plugin_manager(
    disabled: Iterable[str] = (), extra_plugins: Iterable[Any] = (), modules: Iterable[str] = (),
    *, entry_points: bool = True,
) -> pluggy.PluginManager:
    """Build a plugin manager: block disabled names, load entry points, then modules named in ``PLUGINS``
    and programmatic plugins, and check that every implementation matches a hook.

    Blocking happens before loading, so a disabled plugin is never even imported. ``entry_points=False``
    loads no installed plugin, upload-service's own defaults (local storage, API tokens, tus...) included:
    the service then has only ``modules`` and ``extra_plugins``, and one of them must register the storage
    backend that ``STORAGE_BACKEND`` names (``upload_service.testing.MemoryStoragePlugin`` registers ``memory``).
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    for name in disabled:
        pm.set_blocked(name)
    if entry_points:
        pm.load_setuptools_entrypoints(hookspecs.PROJECT_NAME)
    for module_name in modules:
        if not pm.is_blocked(module_name) and pm.get_plugin(module_name) is None:
            pm.register(importlib.import_module(module_name), name=module_name)
    for plugin in extra_plugins:
        name = getattr(plugin, "__name__", None) or getattr(plugin, "name", None) or repr(plugin)
        if not pm.is_blocked(name):
            pm.register(plugin, name=name)
    pm.check_pending()
    return pm


def plugin_statuses(pm: pluggy.PluginManager, service: Any, *, describing: bool = False) -> dict[str, str]:
    """Each plugin's answer to ``plugin_status`` by plugin name (pluggy's results do not say whose they are).

    Malformed settings make a plugin's status the ``StartupError``'s message when ``describing``; otherwise the
    error propagates, as start-up must refuse.
    """
    statuses = {}
    for impl in pm.hook.plugin_status.get_hookimpls():
        try:
            status = impl.function(**{name: service for name in impl.argnames})
        except StartupError as error:
            if not describing:
                raise
            status = f"misconfigured: {error}"
        if status:
            statuses[impl.plugin_name] = str(status)
    return statuses


def log_plugin_statuses(pm: pluggy.PluginManager, service: Any) -> None:
    """Log each plugin's status when a service starts serving (once per worker)."""
    for name, status in plugin_statuses(pm, service).items():
        log.info("plugin %s: %s", name, status, extra={"plugin": name, "status": status})


def describe_plugins(pm: pluggy.PluginManager, statuses: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Name, version, implemented hooks and status of every loaded plugin (for ``upload-service plugins``)."""
    dists = {id(plugin): dist for plugin, dist in pm.list_plugin_distinfo()}
    described = []
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda item: item[0]):
        if plugin is None:
            continue
        dist = dists.get(id(plugin))
        version = dist.version if dist is not None else _package_version(plugin)
        hooks = sorted(caller.name for caller in pm.get_hookcallers(plugin) or [])
        entry: dict[str, Any] = {"name": name, "version": version, "hooks": hooks}
        if statuses and name in statuses:
            entry["status"] = statuses[name]
        described.append(entry)
    return described


def _package_version(plugin: Any) -> str | None:
    module = getattr(plugin, "__module__", None) or getattr(plugin, "__name__", "")
    top = (module or "").split(".")[0]
    try:
        packages = metadata.packages_distributions().get(top, [])
        return metadata.version(packages[0]) if packages else None
    except metadata.PackageNotFoundError:
        return None
