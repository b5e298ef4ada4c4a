"""``UploadService``: the Quart extension that owns one plugin manager, storage and blueprint.

Stand-alone, ``create_app`` makes an app and attaches one service at ``/``; embedded, a host app does
``UploadService(app, url_prefix="/uploads")``. Nothing is global: two services in one process (with different
names and prefixes) never see each other's plugins, sessions or metrics.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, TypeVar, overload

import pluggy
from prometheus_client import Counter
from pydantic_settings import BaseSettings
from quart import Blueprint, Quart, Request, Response, request, url_for

from . import sessions
from .api.downloads import serve_file
from .api.fallback import register_api_fallback
from .api.files import register_file_routes
from .api.openapi import register_openapi_routes
from .api.persist import register_persist_route
from .api.raw_lane import RawUploadLane
from .api.uploads import register_upload_routes
from .attempts import KeyedAttempt, current_attempt
from .auth import AuthProviders, check_csrf, require_identity
from .body import StreamingBodyMiddleware, body_chunks, limited
from .content_types import ContentTypePolicy, head_of
from .errors import StartupError
from .files import FileStore, StoredFile, UploadInfo
from .health import register_health_routes
from .hookcalls import call_all, notify
from .idempotency import IdempotencyKeys, KeyScope, idempotent
from .identity import Identity
from .json_body import read_json
from .lockers import make_locker
from .locking import ExclusiveSections, Locker
from .logs import register_request_ids
from .metrics import Metrics
from .multipart import MultipartReader, Part, boundary_of
from .plugins import log_plugin_statuses, make_plugin_manager
from .proxies import public_origin
from .rate_limits import RateLimits, register_rate_limits
from .reservations import Reservation, forget_file, release_hold, upload_slot
from .responses import describe_file, error_answer
from .settings import PluginModel, Settings
from .storage import Storage
from .templating import service_template_loader
from .tokens import TemporaryTokens
from .ui import register_ui_routes
from .uploads import UploadBatch, run_process_hooks
from .usage import UsageLedger

log = logging.getLogger("upload_service")
V = TypeVar("V", bound=Callable[..., Awaitable[Any]])
UI_PARTS = ("panel", "file_action", "toolbar", "script")
PACKAGE_DIR = Path(__file__).resolve().parent


def templates_dir() -> Path:
    """Inside the wheel the templates sit in the package; in a source checkout, beside it."""
    packaged = PACKAGE_DIR / "templates"
    return packaged if packaged.is_dir() else PACKAGE_DIR.parent / "templates"


class UploadService:
    """The upload service as a Quart extension: ``UploadService(app)`` or ``UploadService()`` + ``init_app(app)``."""

    def __init__(
        self,
        app: Quart | None = None,
        *,
        settings: Settings | None = None,
        url_prefix: str = "",
        name: str = "upload_service",
        plugins: Iterable[Any] = (),
        entry_points: bool = True,
    ) -> None:
        self.settings = settings if settings is not None else Settings.from_env()
        self.url_prefix = url_prefix.rstrip("/")
        self.name = name
        self.extra_plugins = list(plugins)
        self.entry_points = entry_points  # False: installed plugins are left out (see ``make_plugin_manager``)
        self.app: Quart | None = None
        self.auth = AuthProviders()
        self.storage_backends: dict[str, Callable[[UploadService], Storage]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._plugin_state: dict[str, dict[str, Any]] = {}
        self._notifications: set[asyncio.Task[None]] = set()
        self._plugin_settings: dict[type[BaseSettings], BaseSettings] = {}
        self._streamed_paths: list[str] = []  # beside /api/: where plugins want bodies streamed (stream_bodies)
        self._secret_url_variables: set[str] = set()  # URL variables the access log redacts (redact_in_logs)
        self.ui_parts: dict[str, list[str]] = {kind: [] for kind in UI_PARTS}  # what plugins add to the UI
        if app is not None:
            self.init_app(app)

    # -- set-up ---------------------------------------------------------------------------------------

    def init_app(self, app: Quart) -> None:
        """Load plugins, pick the storage, mount the blueprint and the streaming middleware on ``app``."""
        if self.name in app.extensions:
            raise StartupError(f"this app already has an extension named {self.name!r}: give each UploadService a name")
        self.app = app
        self.secret_key = self._secret_key(app)
        self.pm: pluggy.PluginManager = make_plugin_manager(
            self.settings.disabled_plugin_names, self.extra_plugins, self.settings.plugin_modules,
            entry_points=self.entry_points,
        )
        self.hook = self.pm.hook
        self.call_registration(self.hook.register_auth_providers, register=self.auth.register)
        self.call_registration(self.hook.register_storage_backends, register=self._register_backend)
        self.storage = self._make_storage()
        self._locker = make_locker(self)  # register_lockers runs here, at start-up, like every registration hook
        self._exclusive = ExclusiveSections(self._locker)
        self.files = FileStore(self.storage)
        self.idempotency_keys = IdempotencyKeys(self)  # before the routes: their views find it here
        self.usage = UsageLedger(self)  # one per service: its in-process queues are shared by all its requests
        self.tokens = TemporaryTokens(self.secret_key, self.settings.temp_upload_ttl)
        self.metrics = Metrics(self.storage.name)
        self.rate_limits = RateLimits(self)
        self.content_types = ContentTypePolicy.from_settings(self.settings)  # what uploads may be, by content
        app.register_blueprint(self._blueprint(), url_prefix=self.url_prefix or None)
        streamed = (f"{self.url_prefix}/api/", *(f"{self.url_prefix}{path}" for path in self._streamed_paths))
        lane = RawUploadLane(app.asgi_app, app, self)  # an API client's raw upload, answered below Quart
        streaming = StreamingBodyMiddleware(lane, streamed, self.settings.upload_min_rate)
        # Quart's way to add ASGI middleware, but its types see asgi_app as a method taking TypedDict scopes
        app.asgi_app = streaming  # type: ignore[method-assign, assignment]
        app.before_serving(self.start)
        app.after_serving(self.stop)
        app.extensions[self.name] = self

    def _secret_key(self, app: Quart) -> str:
        if self.settings.secret_key is not None:
            key = self.settings.secret_key.get_secret_value()
        elif app.secret_key:
            key = str(app.secret_key)
        elif self.settings.dev:
            key = secrets.token_urlsafe(32)
        else:
            raise StartupError("SECRET_KEY is not set: set it in the environment or .env (or run with --dev)")
        if len(key) < 16:
            raise StartupError("SECRET_KEY is too short: use at least 16 random characters")
        if not app.secret_key:
            app.secret_key = key
        return key

    def call_registration(self, hook: pluggy.HookCaller, **kwargs: Any) -> None:
        """Call a ``register_*`` hook. They run while the app is built, outside any event loop, so they must be plain
        functions (an ``async def`` one is a start-up error naming the hook); their return values are ignored."""
        for result in hook(service=self, **kwargs):
            if inspect.isawaitable(result):
                if inspect.iscoroutine(result):
                    result.close()
                raise StartupError(f"the {hook.name} hook must be a plain function, not async")

    def _register_backend(self, name: str, factory: Callable[[UploadService], Storage]) -> None:
        if name in self.storage_backends:
            raise StartupError(f"two storage backends are named {name!r}")
        self.storage_backends[name] = factory

    def _make_storage(self) -> Storage:
        factory = self.storage_backends.get(self.settings.storage_backend)
        if factory is None:
            known = ", ".join(sorted(self.storage_backends)) or "none"
            hint = "" if self.entry_points else "; installed plugins are off (entry_points=False): pass one"
            raise StartupError(
                f"STORAGE_BACKEND={self.settings.storage_backend!r} is not installed (known: {known}){hint}")
        return factory(self)

    def _blueprint(self) -> Blueprint:
        bp = Blueprint(self.name, __name__, template_folder=str(templates_dir()),
                       static_folder=str(PACKAGE_DIR / "static"), static_url_path="/static")
        bp.jinja_loader = service_template_loader(templates_dir())  # host templates first, ``default:`` prefix
        register_request_ids(bp, self._secret_url_variables)
        register_rate_limits(bp, self)
        register_upload_routes(bp, self)
        register_persist_route(bp, self)
        register_file_routes(bp, self)
        register_health_routes(bp, self)
        register_ui_routes(bp, self)
        register_openapi_routes(bp, self)
        self.call_registration(self.hook.register_routes, blueprint=bp)
        register_api_fallback(bp, self)
        bp.register_error_handler(Exception, self._error_response)
        return bp

    async def _error_response(self, error: Exception) -> Any:
        return await error_answer(self, error)

    # -- lifecycle ------------------------------------------------------------------------------------

    async def preflight(self) -> None:
        """Run the ``startup`` hooks and check storage: what must hold before the service may serve."""
        opener = getattr(self.storage, "open", None)
        if opener is not None:
            await opener()
        await call_all(self.hook.startup, service=self)
        await self.rate_limits.open()
        self.content_types.open()
        try:
            await self.storage.check_ready()
        except Exception as error:
            raise StartupError(f"storage {self.storage.name!r} is not writable: {error}") from error

    async def start(self) -> None:
        log_plugin_statuses(self.pm, self)
        await self.preflight()
        loop = type(asyncio.get_running_loop())
        log.info("serving on the %s event loop", loop.__module__.split(".")[0], extra={"event_loop": loop.__module__})
        for functions in await call_all(self.hook.background_tasks, service=self):
            for function in functions or []:
                self._tasks.append(asyncio.create_task(self._run_background(function)))

    async def _run_background(self, function: Callable[[], Any]) -> None:
        try:
            await function()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("background task %s stopped with an error", getattr(function, "__name__", function))

    async def stop(self) -> None:
        await self.notified()
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.metrics.close()
        await self.content_types.close()
        for part in (self.storage, self._locker):  # a locker may keep connections too (``redis``: and a heartbeat)
            closer = getattr(part, "close", None)
            if closer is not None:
                await closer()

    # -- what routes and plugins call -----------------------------------------------------------------

    @property
    def locker(self) -> Locker:
        """The locker ``LOCKER`` names: one holder per name across every worker (``file``) or instance (``redis``)."""
        return self._locker

    def url(self, endpoint: str, **values: Any) -> str:
        """``url_for`` an endpoint of this service's blueprint (works under any ``url_prefix``).

        Endpoint names are the route functions' names: ``index``, ``file_content`` (``file_id``), ``tus_create``,
        ``tus_upload`` (``upload_id``) ... ``endpoints()`` lists them all. Needs an app or request context.
        """
        return url_for(f"{self.name}.{endpoint}", **values)

    def external_url(self, endpoint: str, **values: Any) -> str | None:
        """``url`` as an absolute URL another site can send browsers back to (an OAuth ``redirect_uri``), on the
        origin people reach the service at: ``PUBLIC_URL``, else the host a trusted proxy (``FORWARDED_ALLOW_IPS``)
        forwarded, else the request's ``Host`` only when it is a loopback name (a local run). None when none of
        these says: a ``Host`` header only the client vouches for never decides it. Needs a request context."""
        origin = public_origin(request, self.settings.public_url)
        return None if origin is None else origin + self.url(endpoint, **values)

    def endpoints(self) -> dict[str, str]:
        """Every endpoint of this service's blueprint and its URL rule (for ``url``), once the app is built."""
        assert self.app is not None, "call init_app first"
        prefix = f"{self.name}."
        return {rule.endpoint[len(prefix):]: rule.rule for rule in self.app.url_map.iter_rules()
                if rule.endpoint.startswith(prefix)}

    def describe(self, file: StoredFile) -> dict[str, Any]:
        """``file`` as the API describes it (``GET /api/files/<id>``), inside a request or outside one."""
        return describe_file(self, file)

    def state(self, plugin: str) -> dict[str, Any]:
        """A dict that ``plugin`` keeps for as long as this service lives (per service: never module state)."""
        return self._plugin_state.setdefault(plugin, {})

    def plugin_settings(self, model: type[PluginModel]) -> PluginModel:
        """A plugin's own settings: ``model`` is a pydantic-settings ``BaseSettings`` with an ``env_prefix``
        (``S3_``). Read as the service's settings were: from the environment and ``.env`` when they were
        (``Settings.from_env``: the ``upload-service`` command, ``create_app()``), else only from the
        ``Settings(plugin_settings={"S3_BUCKET": ...})`` a host app gave. Read once per service and model."""
        if model not in self._plugin_settings:
            self._plugin_settings[model] = self.settings.for_plugin(model)
        return self._plugin_settings[model]  # type: ignore[return-value]

    # -- sessions and auth: what auth providers and plugin routes call -----------------------------------

    async def identify(self, request: Request) -> Identity | None:
        """The first identity a registered auth provider finds for ``request``, or None. Checking credentials
        counts ``request`` towards ``RATE_LIMIT_PER_ADDRESS`` (429 over it), on a host app's own routes too."""
        await self.rate_limits.check_address(request)
        return await self.auth.identify(request)

    async def require_identity(self, request: Request, *, check_csrf: bool = True) -> Identity:
        """The caller's identity, or a 401 problem (429 over a rate limit). A cookie-authenticated request that
        changes something must carry the session's CSRF token in ``X-CSRF-Token`` (else 403), unless
        ``check_csrf`` is false because the route checks a form field with ``check_csrf`` itself."""
        return await require_identity(self, request, csrf_later=not check_csrf)

    def auth_provider(self, name: str) -> Any | None:
        """The registered auth provider called ``name``, or None."""
        return self.auth.providers.get(name)

    def sign_in(self, identity: Identity) -> None:
        """Start a browser session for ``identity`` (an auth provider's login route calls it)."""
        sessions.sign_in(self.name, identity)

    def sign_out(self) -> None:
        sessions.sign_out(self.name)

    def signed_in(self, provider: str | None = None) -> Identity | None:
        """The browser session's identity (only one that ``provider`` signed in, when given)."""
        return sessions.signed_in(self.name, provider)

    def session_key(self, what: str) -> str:
        """A key of this service's own in the browser session, for a plugin's session data."""
        return sessions.session_key(self.name, what)

    def csrf_token(self) -> str:
        """The browser session's CSRF token: a host app's own pages put it in ``X-CSRF-Token`` (or the form field
        ``csrf_token``) of every state-changing request they send to the service."""
        return sessions.csrf_token(self.name)

    def csrf_valid(self, presented: str | None) -> bool:
        """Whether ``presented`` is the browser session's CSRF token."""
        return sessions.csrf_valid(self.name, presented)

    def check_csrf(self, presented: str | None) -> None:
        """403 naming ``X-CSRF-Token`` unless ``presented`` is the session's CSRF token."""
        check_csrf(self, presented)

    # -- the ingest pipeline: what an upload protocol (tus, a plugin's own) runs -------------------------

    def batch(self, identity: Identity, *, temporary: bool, path: str, hold: Reservation | None = None,
              metadata: dict[str, Any] | None = None) -> UploadBatch:
        """An ``UploadBatch``: validate, reserve, sniff, stage, commit, process and notify, all or nothing.

        ``path`` names the upload path in metrics (``json``, ``multipart``, ``raw``, ``tus``, a plugin's own).
        ``hold``: an upload that already holds quota across requests (``service.hold``) passes it on.
        ``metadata``: what every file of the batch starts with (``batch.metadata``, changeable until commit);
        ``process_upload`` results are merged over it.
        """
        return UploadBatch(self, identity, temporary=temporary, path=path, reservation=hold, metadata=metadata)

    def hold(self, identity: Identity, name: str, *, lease: float | None = None) -> Reservation:
        """A named hold in ``identity``'s usage ledger that outlives one request (a resumable upload's quota).

        ``name`` is unique per upload (``tus-<id>``); ``lease`` defaults to ``TUS_UPLOAD_TTL``. Make the hold
        with ``await hold.add(bytes, files)`` (``QuotaExceeded`` when it does not fit) and give it back with
        ``release_hold`` or ``hold.release()``; passed to ``batch``, it is settled into the owner's totals.
        """
        return Reservation(self, identity, name, lease=self.settings.tus_upload_ttl if lease is None else lease)

    async def release_hold(self, owner: str, name: str) -> None:
        """Give back the hold ``name`` of the owner ``owner`` (an ``Identity.owner_key``); errors are logged."""
        await release_hold(self, owner, name)

    def upload_slot(self, identity: Identity) -> AbstractAsyncContextManager[None]:
        """Hold one of the owner's ``MAX_CONCURRENT_UPLOADS`` slots for the block (429 when none is left)."""
        return upload_slot(self, identity)

    def request_body(self, request: Request, max_size: int | None = None) -> AsyncIterator[bytes]:
        """The request body, streamed in constant memory: 408 for a stalled or too slow client, 413 past
        ``max_size`` (default ``MAX_UPLOAD_SIZE``)."""
        limit = self.settings.max_upload_size if max_size is None else max_size
        return limited(body_chunks(request, self.settings.upload_idle_timeout), limit)

    async def read_json(self, request: Request, max_size: int = 1024 * 1024) -> Any:
        """The request's JSON document (at most ``max_size`` bytes): 415 unless ``application/json``, 413 past
        the size, 400 when malformed or nested too deep; the same checks every JSON route of the core makes."""
        return await read_json(request, max_size, self.settings.upload_idle_timeout)

    async def download(self, file: StoredFile, *,
                       on_start: Callable[[], Awaitable[None]] | None = None) -> Response:
        """The answer to a GET or HEAD of ``file``'s bytes, as the owner's own download gives it: Range, ETag and
        If-None-Match, attachment (inline only for real raster images), nosniff, a storage redirect where the
        backend offers one. ``on_start`` is awaited right before a body starting at byte 0 goes out (never for
        HEAD, 304 or a Range from the middle): where a plugin counts a download, or refuses it by raising."""
        return await serve_file(self, file, on_start)

    def stream_bodies(self, path_prefix: str) -> None:
        """Let request bodies under ``path_prefix`` (below the service's prefix, e.g. ``/r/``) stream to their
        handlers as they do under ``/api/`` (constant memory, idle timeout, minimum rate) instead of being
        buffered whole by Quart. Call it from ``register_routes``."""
        if not path_prefix.startswith("/") or not path_prefix.endswith("/"):
            raise ValueError(f"a path prefix starts and ends with '/': {path_prefix!r}")
        self._streamed_paths.append(path_prefix)

    async def preview(self, file: StoredFile) -> tuple[bytes, str] | None:
        """A small picture of ``file`` from the ``file_preview`` hook (bytes and content type), or None."""
        for answer in await call_all(self.hook.file_preview, file=file, service=self):
            if answer is not None:
                return answer
        return None

    def exclusive(self, namespace: str, name: str) -> AbstractAsyncContextManager[None]:
        """A read-modify-write section no other request enters at once, on any worker or instance (``async
        with service.exclusive("myplugin", key):``): the locker (``LOCKER``) under an in-process queue. Keep
        it short: others wait for it, and give up with 423 after a while. ``namespace`` is a short lowercase word
        of your plugin's, ``name`` a storage-safe segment."""
        return self._exclusive(namespace, name)

    @overload
    def idempotent(self, view: V) -> V: ...

    @overload
    def idempotent(self, *, key_scope: KeyScope) -> Callable[[V], V]: ...

    def idempotent(self, view: V | None = None, *, key_scope: KeyScope | None = None) -> V | Callable[[V], V]:
        """Decorate a route that creates or changes something (put it under ``@documented``): a request carrying
        ``Idempotency-Key`` is done once per owner and key. A repeat gets the first answer (with
        ``Idempotent-Replayed: true``), 409 while the first still runs, 422 when it is another request under the
        same key; answers are kept for ``IDEMPOTENCY_TTL`` where every instance finds them. The caller must be
        signed in (the owner is the scope of a key; CSRF is left to the view); without the header the view runs
        as it is. The OpenAPI document gets the header and the 409/422 answers.

        ``@service.idempotent(key_scope=scope)``: for a route whose callers need not be signed in (a link's
        visitors). ``await scope(*view_args, **view_kwargs)`` runs first, in place of the sign-in: it refuses
        callers who may not use the route (raise a ``Problem``) and returns the name of the keys' scope (a link:
        ``"myplugin-link-<id>"``, prefixed with your plugin's name), or None when this request takes no key (the
        view then runs as without the header). Keys under one scope never meet those of another scope or owner."""
        if view is None:
            return lambda view: idempotent(self, view, key_scope)
        return idempotent(self, view, key_scope)

    def keyed_attempt(self) -> KeyedAttempt | None:
        """Inside a view under ``idempotent`` that runs for a request with ``Idempotency-Key``: the attempt, whose
        ``id`` is the same when the request is retried with its key after an attempt died or failed without an
        answer (``retrying``). Record work of your own that a retry must not repeat under that id (the sharing
        plugin's ``max_files`` slots), and look for it when retrying. None outside such a request."""
        attempt = current_attempt()
        return None if attempt is None else attempt.public()

    async def expire_idempotency_keys(self) -> int:
        """Remove the kept answers of ``Idempotency-Key`` requests older than ``IDEMPOTENCY_TTL`` (the cleanup
        sweep calls it); returns how many."""
        return await self.idempotency_keys.sweep()

    def counter(self, name: str, description: str, labels: tuple[str, ...] = ()) -> Counter:
        """A Prometheus counter of your plugin's on ``/metrics`` (prometheus-client's ``Counter``: ``.inc()``, or
        ``.labels(...).inc()``), in this service's own registry; ``upload_service_`` is prefixed to ``name``, and
        asking again for the same name gives the same counter."""
        return self.metrics.counter(name, description, labels)

    def add_ui_part(self, kind: str, what: str) -> None:
        """Add to the signed-in page, from ``register_routes``: ``"panel"`` (a template included below the file
        list), ``"file_action"`` (a template included in each file row's actions, with ``file`` in its context),
        ``"toolbar"`` (a template included above the file list) or ``"script"`` (a static path of the service's
        own, loaded as a module). Templates are found as the service's own are (a host app may override them)."""
        if kind not in UI_PARTS:
            raise ValueError(f"unknown UI part {kind!r}: one of {', '.join(UI_PARTS)}")
        self.ui_parts[kind].append(what)

    def redact_in_logs(self, url_variable: str) -> None:
        """Keep the values of a URL variable of your routes (``token`` in ``/s/<token>``) out of the access log:
        they are written as ``[redacted]``. For secrets in paths, which whoever reads the log could use."""
        self._secret_url_variables.add(url_variable)

    def multipart(self, request: Request) -> AsyncIterator[Part]:
        """The parts of a ``multipart/form-data`` body as they stream in: each has ``name``, ``filename`` (None for
        a plain field), ``content_type``, ``chunks()`` and ``text()`` (64 KiB at most); read a part before asking
        for the next. 400 for a malformed body or a missing boundary, 408 for a stalled client."""
        reader = MultipartReader(boundary_of(request.headers.get("Content-Type", "")),
                                 body_chunks(request, self.settings.upload_idle_timeout))
        return reader.parts()

    async def sniff(self, info: UploadInfo, stored: AsyncIterator[bytes]) -> UploadInfo:
        """``info`` with the content type the content policy decides from the first bytes of ``stored`` (which is
        closed); refuses with 415 what the policy forbids. Without a policy, ``stored`` is closed unread."""
        if not self.content_types.active:
            await stored.aclose()  # type: ignore[attr-defined]
            return info
        return await self.content_types.decide(info, await head_of(stored))

    def temporary_token(self, file_id: str, identity: Identity) -> str:
        """The signed token with which ``identity`` persists its temporary file ``file_id`` (``POST /api/persist``)."""
        return self.tokens.issue(file_id, identity.owner_key)

    async def validate(self, upload: UploadInfo, identity: Identity) -> None:
        """Run the ``validate_upload`` hooks (``UploadRejected`` refuses the upload)."""
        await call_all(self.hook.validate_upload, upload=upload, identity=identity, service=self)

    async def process(self, file: StoredFile) -> StoredFile:
        return await run_process_hooks(self, file)

    async def sweep(self) -> int:
        """One cleanup pass through every plugin's ``sweep`` hook; failures are logged, the rest still run."""
        removed = 0
        results = self.hook.sweep(service=self)
        try:
            for result in results:
                try:
                    count = await result if inspect.isawaitable(result) else result
                except Exception:
                    log.exception("a sweep failed")
                    continue
                removed += count or 0
        finally:  # cancelled midway (shutdown): the sweeps not started yet are dropped, not left unawaited
            for result in results:
                if inspect.iscoroutine(result):
                    result.close()
        if removed:
            self.metrics.sweeps.inc(removed)
        return removed

    async def notify_deleted(self, file: StoredFile) -> None:
        """A file is gone: take it out of its owner's quota, then tell plugins (``file_deleted``) after the answer."""
        await forget_file(self, file.key.split("/")[1], file.size)
        self.notify(self.hook.file_deleted, file=file)

    def notify(self, hook: pluggy.HookCaller, **kwargs: Any) -> None:
        """Call a notification hook in a task of its own, so it never delays the client's answer.

        The task is tracked and awaited when the service stops (a notification is not lost to a clean shutdown);
        an error is logged.
        """
        task = asyncio.create_task(notify(hook, service=self, **kwargs), name=f"notify:{hook.name}")
        self._notifications.add(task)
        task.add_done_callback(self._notifications.discard)

    async def notified(self) -> None:
        """Wait until every notification started so far has run (tests, and ``stop``)."""
        while self._notifications:
            await asyncio.gather(*list(self._notifications), return_exceptions=True)
