"""The hooks a plugin can implement.

A public module: plugin authors read it as the reference of every hook (``docs/plugins.md`` has examples).

Two kinds of hooks:
- registration hooks (``register_*``) run once while the app is built, before any event loop exists: they must
  be plain functions (an ``async def`` one is a start-up error naming the hook);
- every other hook may be a plain function or ``async def``: the core awaits whatever is awaitable.
Results are collected in pluggy's order (plugins registered later run first); the core never iterates plugins
itself. A plugin implements only the hooks it needs and may leave out any argument it does not use.
Notification hooks (``upload_persisted``, ``file_deleted``) run after the client's answer, in a task the service
tracks and awaits when it stops; every other hook runs before the answer and can change it.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from quart import Blueprint

    from .files import StoredFile, UploadInfo
    from .identity import Identity
    from .service import UploadService

PROJECT_NAME = "upload_service"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def startup(service: UploadService) -> None:
    """Check the plugin's own settings and resources before the service serves anything.

    Called once per service instance, before serving starts (and by ``upload-service`` before it binds
    its port). Raise ``upload_service.StartupError(message)`` to refuse to start; the operator sees the message.
    """


@hookspec
def plugin_status(service: UploadService) -> str | None:
    """Say in one line what the plugin does with the settings it was given, or None when there is nothing to say.

    Called when a service starts serving, before the ``startup`` hooks (the core logs ``plugin <name>:
    <status>`` at INFO, once per worker), and by ``upload-service plugins`` (each entry's ``status``). An
    installed integration that is not configured says it is inactive and which setting turns it on, so operators
    need not read its README to find out why nothing happens. A plain function: read settings only, no I/O.
    Malformed settings: raise ``StartupError`` (``upload-service plugins`` shows its message; start-up refuses).
    """


@hookspec
def register_auth_providers(register: Callable[[Any], None], service: UploadService) -> None:
    """Register auth providers by calling ``register(provider)`` for each.

    Called once at start-up. A provider has a unique ``name``, ``async authenticate(request)`` returning an
    ``Identity`` or None, and optionally ``login_url`` (the UI shows a sign-in button for it) and ``title``.
    The first provider that returns an identity wins. A duplicate name is a start-up error.
    """


@hookspec
def register_storage_backends(register: Callable[[str, Callable[[UploadService], Any]], None],
                              service: UploadService) -> None:
    """Register storage backends by calling ``register(name, factory)``.

    Called once at start-up. ``STORAGE_BACKEND`` picks one by name; its factory gets the service and
    returns a storage object (see ``upload_service.storage.Storage``). A duplicate name is a start-up error.
    """


@hookspec
def register_routes(blueprint: Blueprint, service: UploadService) -> None:
    """Add routes to the service's blueprint (login pages, a thumbnail route, ...).

    Called once at start-up, before the blueprint is registered on the app, so routes land under the
    service's ``url_prefix``.
    """


@hookspec
def register_lockers(register: Callable[[str, Callable[[UploadService], Any]], None], service: UploadService) -> None:
    """Register lockers by calling ``register(name, factory)`` (tus uploads and usage ledgers lock with them).

    Called once at start-up, after the storage backend is made. ``LOCKER`` picks one by name (``file`` is built in); the
    factory gets the service and returns a locker (see ``upload_service.Locker``): one holder per name of a
    namespace across every worker, a way to ask a stale holder to let go, and a sweep of what it left behind.
    A duplicate name is an error.
    """


@hookspec
def register_tus_endpoints(register: Callable[..., None], service: UploadService) -> None:
    """Mount tus at another path, for uploads made on someone's behalf (the sharing plugin's file requests).

    Called once at start-up by the tus plugin (not at all when it is disabled). ``register(name, path,
    authorize)``: ``name`` prefixes the endpoint names (``<name>_create``, ``<name>_upload``), ``path`` is a URL
    rule with variables of its own (``/r/<token>/tus``), and ``async authorize(request, **variables)`` returns
    the ``upload_service.TusGrant`` the request may upload under, or raises a ``Problem`` (404, 410, ...). It is
    asked on every request of the endpoint (creation, HEAD, PATCH, DELETE), so a revoked grant stops uploads
    mid-way. Uploads are never temporary there, and concatenation is not offered. ``register(..., key_scope=f)``
    lets creations there take ``Idempotency-Key``: ``async f(request, **variables)`` names the keys' scope (as
    ``service.idempotent``'s ``key_scope`` does: a link, checked as ``authorize`` checks it), since the
    uploader has no account to scope a key; without it the header is ignored there.
    """


@hookspec
def validate_upload(upload: UploadInfo, identity: Identity, service: UploadService) -> None:
    """Refuse an upload before any byte of it is stored.

    Called for every file of every upload path (JSON, multipart, raw, tus creation). ``upload`` has
    ``filename`` (safe display name), ``content_type``, ``size`` (None when not known yet) and ``temporary``.
    Raise ``upload_service.UploadRejected(detail, status=422, reason="...")`` to refuse: the client gets
    ``status`` with ``detail`` as problem details, and ``reason`` (default ``rejected``) labels the refusal in
    the ``/metrics`` counters and logs. The return value is ignored.
    """


@hookspec
def process_upload(file: StoredFile, service: UploadService) -> dict[str, Any] | None:
    """Inspect or transform a file after its bytes are stored and before the client gets its answer.

    Called once per stored file on every upload path (temporary ones included). Return a dict to merge into
    ``file.metadata`` (later plugins' keys win), or None. Raising ``UploadRejected`` deletes the file (and the
    rest of its batch) and the client gets that status.
    A ``"preview"`` key naming one of the plugin's endpoints (registered with ``register_routes``, taking
    ``file_id``) makes the UI show that URL as the file's thumbnail. The keys plugins set are theirs: the
    metadata a client sends with ``/api/persist`` may add keys beside them, never replace one, nor set ``preview``.
    """


@hookspec
def upload_persisted(file: StoredFile, service: UploadService) -> None:
    """Notification: ``file`` has become persistent.

    Called after a direct upload's ``process_upload``, after ``/api/persist`` moved all of its temporary uploads
    (for each of them; never for a persist that failed), and when a tus upload completes. It runs after the
    client's answer (a slow webhook never delays an upload), in a task the service awaits when it stops.
    Implementations run together; an error here is logged and never loses the file.
    """


@hookspec
def file_deleted(file: StoredFile, service: UploadService) -> None:
    """Notification: ``file`` is gone.

    Called after its owner deleted it, or after the cleanup sweep removed an expired temporary upload. Like
    ``upload_persisted``, it runs after the client's answer, in a task awaited at shutdown. An error is logged.
    """


@hookspec
def file_preview(file: StoredFile, service: UploadService) -> tuple[bytes, str] | None:
    """A small picture of ``file`` (bytes and their content type, e.g. a WebP thumbnail), or None for none.

    Called by ``service.preview(file)``, which asks every plugin and takes the first answer in pluggy's order.
    The sharing plugin shows it on a share's public page, where the
    owner-only route named by ``metadata["preview"]`` cannot be used; return only what was made from the file
    itself (never another file's bytes), since visitors of a share see it.
    """


@hookspec
def share_downloaded(share: dict[str, Any], files: list[StoredFile], service: UploadService) -> None:
    """Notification: a visitor downloaded ``files`` through a share link (one file, or all of them as a zip).

    ``share`` is ``{"id", "owner", "downloads", "max_downloads"}`` after this download was counted (``owner`` is
    the owner's identity id; the link's token is never passed on). Called by the sharing plugin once per counted
    download, after the answer started, like the other notifications; an error is logged.
    """


@hookspec
def file_request_received(file_request: dict[str, Any], file: StoredFile, service: UploadService) -> None:
    """Notification: someone without an account uploaded ``file`` through a file request.

    ``file_request`` is ``{"id", "owner", "title", "files_received", "max_files"}``; the file is already one of
    the owner's persistent files (``upload_persisted`` was called for it too), with ``metadata["request"]`` and,
    when the uploader gave them, ``metadata["uploaded_by"]`` and ``metadata["uploader_note"]``.
    """


@hookspec
def background_tasks(service: UploadService) -> list[Callable[[], Coroutine[Any, Any, None]]]:
    """Return coroutine functions to run while the app serves.

    Called when serving starts; each function is started as a task and cancelled cleanly at shutdown.
    """


@hookspec
def sweep(service: UploadService) -> int | None:
    """Remove what has expired or been abandoned: expired temporary uploads, staging leftovers of a crash.

    Called by the cleanup task every ``CLEANUP_INTERVAL`` and once by ``upload-service cleanup``. Return how
    many things were removed (or None); an error is logged and the other sweeps still run.
    """
