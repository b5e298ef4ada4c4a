"""``upload-service-webhooks``: the operator's dead letters, listed and replayed.

It builds the service from the same settings (environment and ``.env``) as ``upload-service cleanup`` does,
without serving, so it reaches the same storage as the running instances.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from upload_service import Settings, StartupError, UploadService, create_app

from .plugin import outbox_of


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="upload-service-webhooks",
                                     description="List and replay the webhooks that could not be delivered.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("dead", help="list the dead letters as JSON lines")
    replay = commands.add_parser("replay", help="send dead letters again (what fails stays in the outbox)")
    replay.add_argument("entries", nargs="*", help="entries to replay (as `dead` lists them)")
    replay.add_argument("--all", action="store_true", help="replay every dead letter")
    return parser


async def _run(service: Any, args: argparse.Namespace) -> int:
    await service.preflight()
    try:
        outbox = outbox_of(service)
        if outbox is None:
            print("upload-service-webhooks: no webhook endpoint is configured (WEBHOOK_URLS or WEBHOOK_ENDPOINTS)",
                  file=sys.stderr)
            return 2
        if args.command == "dead":
            for letter in await outbox.dead_letters():
                print(json.dumps(letter))
            return 0
        entries = [letter["entry"] for letter in await outbox.dead_letters()] if args.all else args.entries
        results = await outbox.replay(entries)
        for entry, outcomes in results.items():
            print(json.dumps({"entry": entry, "outcomes": outcomes}))
        return 0 if all(set(o.values()) == {"delivered"} for o in results.values()) else 1
    finally:
        await service.stop()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "replay" and not (args.entries or args.all):
        print("upload-service-webhooks: name entries to replay, or --all", file=sys.stderr)
        return 2
    try:
        app = create_app(Settings.from_env())
        service = next(ext for ext in app.extensions.values() if isinstance(ext, UploadService))
        return asyncio.run(_run(service, args))
    except ValidationError as error:
        print(f"upload-service-webhooks: invalid settings: {error}", file=sys.stderr)
        return 2
    except StartupError as error:
        print(f"upload-service-webhooks: cannot start: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
