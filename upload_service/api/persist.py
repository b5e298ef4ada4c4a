"""``POST /api/persist``: make temporary uploads persistent, all of them or none, as a batch upload is stored.

Every token is checked before anything moves (forged: 400, someone else's: 403, expired: 410, already
persisted: 409, one upload named twice: 400, more than ``MAX_FILES_PER_REQUEST``: 413), and the metadata against
every file. Then the files move one by one; if a move fails (a racing persist, the sweep, the storage), the ones
already moved are moved back as they were, and the request fails whole. Plugins hear ``upload_persisted`` for
each file once all of them are persistent, never for a persist that failed.

The client's metadata is added beside what plugins recorded when the file was uploaded (``process_upload``); it
never replaces a key the file has, and never sets one the service itself reads (``RESERVED_METADATA``:
``preview`` names the route of the UI's thumbnail). Either is a 400 naming the keys, and nothing is persisted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from quart import Blueprint, request

from ..attempts import current_attempt
from ..auth import require_identity
from ..errors import ObjectNotFound, Problem
from ..files import StoredFile, file_key, is_file_id
from ..json_body import MAX_JSON_DEPTH, read_json
from ..responses import describe_file as describe, json_response
from ..uploads import check_file_count
from . import schemas
from .openapi import Reply, documented

if TYPE_CHECKING:
    from ..identity import Identity
    from ..service import UploadService

MAX_PERSIST_BODY = 1024 * 1024
RESERVED_METADATA = frozenset({"preview"})  # metadata keys the service reads itself: only plugins set them


def register_persist_route(bp: Blueprint, service: UploadService) -> None:
    @bp.route("/api/persist", methods=["POST"], endpoint="persist")
    @documented(
        body={"application/json": schemas.PersistRequest},
        errors={400: f"malformed JSON (or nested deeper than {MAX_JSON_DEPTH} levels), a forged token, a token "
                     "naming an upload another token names too, or metadata that would replace a key a plugin "
                     f"set or set one of {', '.join(sorted(RESERVED_METADATA))}; nothing is persisted",
                403: "a token of someone else, or no CSRF token",
                404: "a token naming no upload", 409: "a token that was already persisted; nothing is persisted",
                410: "an expired token; nothing is persisted",
                413: "the body is over 1 MiB, or holds more than MAX_FILES_PER_REQUEST tokens",
                415: "the body is not application/json"},
        replies={201: Reply("the persisted files, with the metadata: all of them or none", schemas.FileList)})
    @service.idempotent
    async def persist() -> Any:
        """Make temporary uploads persistent, all or none: ``{"tokens": [...], "metadata": {...}}``."""
        identity = await require_identity(service, request)
        tokens, metadata = _persist_request(
            await read_json(request, MAX_PERSIST_BODY, service.settings.upload_idle_timeout))
        check_file_count(len(tokens), service.settings.max_files_per_request)
        attempt = current_attempt()
        # the retry of a keyed persist whose instance died midway: what it moved counts as persisted here
        done = await _persisted(service, identity, tokens) if attempt is not None and attempt.retrying else {}
        pending = [await _temporary_file(service, identity, token) for at, token in enumerate(tokens) if at not in done]
        _refuse_repeats([*pending, *done.values()])
        moves = [(file, with_client_metadata(file, metadata)) for file in pending]
        try:
            moved = iter(await service.files.persist_all(moves))
            persisted = [done[at] if at in done else next(moved) for at in range(len(tokens))]
        except ObjectNotFound as error:  # moved or swept since it was checked; the others are back where they were
            _, owner, file_id = str(error.args[0]).split("/")
            raise await _missing_temporary(service, owner, file_id) from None
        for file in persisted:
            service.notify(service.hook.upload_persisted, file=file)
        return json_response({"files": [describe(service, file) for file in persisted]}, 201)


def _persist_request(body: Any) -> tuple[list[Any], dict[str, Any]]:
    tokens = body.get("tokens") if isinstance(body, dict) else None
    metadata = body.get("metadata", {}) if isinstance(body, dict) else None
    if not isinstance(tokens, list) or not tokens or not isinstance(metadata, dict):
        raise Problem(400, 'expected {"tokens": [token, ...], "metadata": {...}}', reason="bad_json")
    return tokens, metadata


def with_client_metadata(file: StoredFile, metadata: dict[str, Any]) -> dict[str, Any]:
    """The file's metadata with the client's keys added: 400 for any that would replace a plugin's or the
    service's own."""
    taken = sorted(key for key in metadata if key in file.metadata or key in RESERVED_METADATA)
    if taken:
        raise Problem(400, f"metadata {', '.join(map(repr, taken))} is set by the service or its plugins; a client "
                           "may only add keys of its own", reason="reserved_metadata", keys=taken)
    return {**file.metadata, **metadata}


async def _persisted(service: UploadService, identity: Identity, tokens: list[Any]) -> dict[int, StoredFile]:
    """The caller's files, among those the tokens name, that are persistent already (by the token's place)."""
    found = {}
    for at, token in enumerate(tokens):
        claim = service.tokens.read(token)
        if claim.owner_key == identity.owner_key and is_file_id(claim.file_id):
            stored = await service.storage.stat(file_key(claim.owner_key, claim.file_id, temporary=False))
            if stored is not None:
                found[at] = StoredFile.from_stored(stored)
    return found


def _refuse_repeats(files: list[StoredFile]) -> None:
    """One upload named twice (the same token, or two tokens of one file) would be persisted, then found gone."""
    seen: set[str] = set()
    for file in files:
        if file.id in seen:
            raise Problem(400, f"the tokens name the upload {file.id} more than once; nothing was persisted",
                          reason="repeated_token", file_id=file.id)
        seen.add(file.id)


async def _temporary_file(service: UploadService, identity: Identity, token: object) -> StoredFile:
    """The temporary file a token names, with the status the contract gives each way it can fail."""
    claim = service.tokens.read(token)
    if claim.owner_key != identity.owner_key:
        raise Problem(403, "this token belongs to someone else", reason="not_owner")
    if not is_file_id(claim.file_id):
        raise Problem(400, "this is not a valid upload token", reason="bad_token")
    stored = await service.storage.stat(file_key(claim.owner_key, claim.file_id, temporary=True))
    if stored is None:
        raise await _missing_temporary(service, claim.owner_key, claim.file_id)
    file = StoredFile.from_stored(stored)
    if file.expired():
        raise Problem(410, "this temporary upload has expired", reason="token_expired")
    return file


async def _missing_temporary(service: UploadService, owner: str, file_id: str) -> Problem:
    """Why a temporary upload is not there: persisted already (409), or expired and swept (410)."""
    if await service.storage.stat(file_key(owner, file_id, temporary=False)) is not None:
        return Problem(409, "this upload was already persisted", reason="already_persisted")
    return Problem(410, "this temporary upload has expired and was removed", reason="token_expired")
