"""The ``upload-service`` command: serve (default), ``plugins``, ``cleanup`` and ``reindex``."""

from __future__ import annotations

import argparse
import asyncio
import atexit
import importlib.util
import ipaddress
import json
import logging
import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import Sequence

from pydantic import ValidationError

from .errors import StartupError

APP_PATH = "upload_service.app:create_app()"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="upload-service", description="Self-hosted upload service.")
    parser.add_argument("command", nargs="?", default="serve", choices=["serve", "plugins", "cleanup", "reindex"],
                        help="serve (default), list the loaded plugins as JSON, run one cleanup sweep, or rebuild "
                             "the storage's index from the stored objects")
    parser.add_argument("--host", help="address to bind (HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to bind (PORT, default 8000)")
    parser.add_argument("--workers", type=int, help="worker processes (WORKERS, default 1)")
    parser.add_argument("--dev", action="store_true",
                        help="local development: generated secret, dev sign-in and API token, 127.0.0.1 only")
    return parser


def _apply_arguments(args: argparse.Namespace) -> None:
    """Command-line options become environment settings, so every worker process sees the same."""
    for name in ("host", "port", "workers"):
        if getattr(args, name) is not None:
            os.environ[name.upper()] = str(getattr(args, name))
    if args.dev:
        os.environ["DEV"] = "1"
        os.environ["HOST"] = "127.0.0.1"
        os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(32))
        os.environ.setdefault("DEV_TOKEN", "dev-" + secrets.token_urlsafe(18))


def _load():
    from .settings import Settings

    settings = _with_dev_secrets(Settings.from_env())
    _refuse_public_dev(settings)
    _prepare_multiprocess_metrics(settings.workers)
    from .app import create_app

    return settings, create_app(settings)


def _with_dev_secrets(settings):
    """``DEV`` switched on by ``DEV=1`` (environment or ``.env``) rather than ``--dev`` may come without a
    ``SECRET_KEY`` or ``DEV_TOKEN``: generate them once, here, into the environment, which the app Hypercorn loads
    and every worker process read. Each making its own would print a token no worker accepts and sign sessions
    that the other workers refuse."""
    from .settings import Settings

    generated = {}
    if settings.dev and not (settings.secret_key and settings.secret_key.get_secret_value()):
        generated["SECRET_KEY"] = secrets.token_urlsafe(32)
    if settings.dev and not (settings.dev_token and settings.dev_token.get_secret_value()):
        generated["DEV_TOKEN"] = "dev-" + secrets.token_urlsafe(18)
    if not generated:
        return settings
    os.environ.update(generated)
    return Settings.from_env()


def _refuse_public_dev(settings) -> None:
    """``DEV`` signs anyone in without a password: it may only listen on loopback, however it was switched on
    (``--dev`` forces 127.0.0.1; ``DEV=1`` in the environment or ``.env`` does not)."""
    if not settings.dev or settings.host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(settings.host.strip("[]")).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise StartupError(f"DEV is on, which signs anyone in without a password, so HOST must be a loopback "
                           f"address such as 127.0.0.1, not {settings.host!r}")


def _prepare_multiprocess_metrics(workers: int) -> None:
    """With several workers, prometheus-client must share counters through files in one directory.

    The variable has to be set before prometheus-client is first imported (it picks its value store then);
    the worker processes inherit it. An operator's own ``PROMETHEUS_MULTIPROC_DIR`` is kept as it is.
    """
    if workers <= 1 or os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    directory = tempfile.mkdtemp(prefix="upload-service-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    atexit.register(shutil.rmtree, directory, True)


def _service(app):
    return next(ext for ext in app.extensions.values() if ext.__class__.__name__ == "UploadService")


async def _check(service, *, sweep: bool) -> int:
    """Start-up checks (and one cleanup pass) in one event loop, closing whatever the storage opened for them."""
    try:
        await service.preflight()
        return await service.sweep() if sweep else 0
    finally:
        await service.stop()


async def _reindex(service) -> int:
    """Rebuild the storage's index (the local storage's SQLite file) from its objects; how many it lists."""
    reindex = getattr(service.storage, "reindex", None)
    if reindex is None:
        raise StartupError(f"storage {service.storage.name!r} keeps no index to rebuild")
    try:
        await service.preflight()
        return int(await reindex())
    finally:
        await service.stop()


def event_loop(choice: str) -> str:
    """Hypercorn's worker class: uvloop when installed (its transports copy each received byte fewer times,
    which large uploads feel), else the standard asyncio loop."""
    if choice != "auto":
        return choice
    return "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"


def _serve(settings) -> int:
    from hypercorn.config import Config
    from hypercorn.run import run

    from .hypercorn_tuning import tune_hypercorn

    tune_hypercorn()
    config = Config()
    config.application_path = APP_PATH
    config.bind = [f"{settings.host}:{settings.port}"]
    config.worker_class = event_loop(settings.event_loop)
    # Hypercorn starts this clock once a response is in the kernel's buffers, not once the client has read it:
    # with its default (5 s) a client still reading the last megabytes of a download found the connection
    # closed under its next request. It also bounds the time a client may take to send a request head.
    config.keep_alive_timeout = settings.keep_alive_timeout
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")  # through the service's handler (LOG_FORMAT)
    url = f"http://{settings.host}:{settings.port}/"
    if settings.dev:
        print("=" * 72, flush=True)
        print(" DEVELOPMENT MODE: generated secret key, dev sign-in, bound to 127.0.0.1 only", flush=True)
        print(f" open        {url}", flush=True)
        print(f" API token   {settings.dev_token.get_secret_value()}", flush=True)
        print(f" try         curl -H 'Authorization: Bearer {settings.dev_token.get_secret_value()}' {url}api/files",
              flush=True)
        print("=" * 72, flush=True)
    elif settings.log_format == "json":
        logging.getLogger("upload_service").info("listening", extra={"url": url, "workers": settings.workers})
    else:
        print(f"upload-service listening on {url} ({settings.workers} worker(s))", flush=True)
    if settings.workers == 1:
        config.workers = 0  # Hypercorn serves in this process
        return run(config)
    from .workers import WorkerPool

    return WorkerPool(config, settings.workers).run()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _apply_arguments(args)
    try:
        settings, app = _load()
        service = _service(app)
        if args.command == "plugins":
            from .plugins import describe_plugins, plugin_statuses

            statuses = plugin_statuses(service.pm, service, describing=True)
            print(json.dumps(describe_plugins(service.pm, statuses), indent=2))
            return 0
        if args.command == "reindex":
            print(json.dumps({"objects": asyncio.run(_reindex(service))}))
            return 0
        removed = asyncio.run(_check(service, sweep=args.command == "cleanup"))
        if args.command == "cleanup":
            print(json.dumps({"removed": removed}))
            return 0
    except ValidationError as error:
        print("upload-service: invalid settings:", file=sys.stderr)
        for problem in error.errors():
            print(f"  {'.'.join(str(p) for p in problem['loc']).upper()}: {problem['msg']}", file=sys.stderr)
        return 2
    except StartupError as error:
        print(f"upload-service: cannot start: {error}", file=sys.stderr)
        return 2
    return _serve(settings) or 0


if __name__ == "__main__":
    sys.exit(main())
