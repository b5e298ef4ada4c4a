"""The aiobotocore client: one per event loop, opened by the service at start and closed at stop."""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, aclosing, contextmanager
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import aiohttp
from aiobotocore.session import get_session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ConnectTimeoutError, ReadTimeoutError

from upload_service.storage import StorageError

from .settings import S3Settings

# Checksums only where S3 requires them: the trailing CRC checksums newer botocore adds by default are not
# understood by every S3-compatible store. Payload signing off: botocore would hash every part on the event
# loop; the writer sends a Content-MD5 computed in a worker thread instead, which S3 checks.
CLIENT_CONFIG = Config(
    request_checksum_calculation="when_required",
    response_checksum_validation="when_required",
    s3={"payload_signing_enabled": False},
    retries={"max_attempts": 5, "mode": "standard"},  # S3_MAX_ATTEMPTS replaces the 5
    max_pool_connections=32,
    signature_version="s3v4",
)
F = TypeVar("F", bound=Callable[..., Any])


class S3Timeout(StorageError, TimeoutError):
    """S3 did not answer in time: a storage error the client sees as 504, as for ``STORAGE_TIMEOUT``."""


@contextmanager
def storage_errors() -> Iterator[None]:
    """S3 failing after the client's own retries, in the core's terms: ``S3Timeout`` (504) for an S3 that did
    not answer, ``StorageError`` (500, "the storage failed") for anything else, whether botocore reports it or
    aiohttp does (a connection lost while a body streams is aiohttp's own error)."""
    try:
        yield
    except (ReadTimeoutError, ConnectTimeoutError) as error:
        raise S3Timeout(f"S3 did not answer: {error}") from error
    except (BotoCoreError, ClientError, aiohttp.ClientError) as error:
        raise StorageError(f"S3 failed: {error}") from error


def s3_errors(function: F) -> F:
    """``storage_errors`` around a method of the backend's boundary (a coroutine or an async generator), so that
    no botocore or aiohttp error escapes to the core."""
    if inspect.isasyncgenfunction(function):

        @functools.wraps(function)
        async def stream(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            with storage_errors():
                async with aclosing(function(*args, **kwargs)) as items:
                    async for item in items:
                        yield item

        return stream  # type: ignore[return-value]

    @functools.wraps(function)
    async def call(*args: Any, **kwargs: Any) -> Any:
        with storage_errors():
            return await function(*args, **kwargs)

    return call  # type: ignore[return-value]


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def is_missing(error: ClientError) -> bool:
    return error_code(error) in {"NoSuchKey", "404", "NotFound", "NoSuchUpload"}


def is_precondition_failed(error: ClientError) -> bool:
    """412: a conditional write lost (``If-None-Match: *`` found the key taken)."""
    return error_code(error) in {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}


async def read_small(client: Any, bucket: str, key: str) -> bytes | None:
    """The whole body of a small object (a record, a journal entry), or None if there is none."""
    try:
        response = await client.get_object(Bucket=bucket, Key=key)
        async with response["Body"] as body:
            return await body.read()
    except ClientError as error:
        if is_missing(error):
            return None
        raise


async def write_probe(client: Any, bucket: str, key: str) -> None:
    """Write and delete a probe object: the bucket is reachable and writable with these credentials."""
    await client.put_object(Bucket=bucket, Key=key, Body=b"ok")
    await client.delete_object(Bucket=bucket, Key=key)


def server_time(response: dict[str, Any]) -> datetime:
    """The S3 server's clock (``Date`` header): ages are measured against it, never against local clocks."""
    date = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    return parsedate_to_datetime(date) if date else datetime.now(UTC)


class ClientHolder:
    """Holds the client of the running event loop.

    ``upload-service`` checks the storage in one event loop and serves in another, so a client made for a
    loop that is gone is dropped and a new one made for the current loop.
    """

    def __init__(self, settings: S3Settings) -> None:
        self.settings = settings
        self._stack: AsyncExitStack | None = None
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def open(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._client is not None and self._loop is loop:
            return self._client
        stack = AsyncExitStack()
        retries = Config(retries={"max_attempts": self.settings.max_attempts, "mode": "standard"})
        client = await stack.enter_async_context(get_session().create_client(
            "s3", region_name=self.settings.region, endpoint_url=self.settings.endpoint_url,
            config=CLIENT_CONFIG.merge(retries),
        ))
        self._stack, self._client, self._loop = stack, client, loop
        return client

    async def close(self) -> None:
        stack, self._stack, self._client, self._loop = self._stack, None, None, None
        if stack is not None:
            await stack.aclose()

    async def get(self) -> Any:
        return await self.open()
