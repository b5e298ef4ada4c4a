"""The plugin's hooks: register the ``s3`` storage backend, and check the bucket before the service serves."""

from __future__ import annotations

from typing import TYPE_CHECKING

from upload_service import StartupError, hookimpl

if TYPE_CHECKING:
    from .storage import S3Storage

# botocore and aiobotocore are imported only when STORAGE_BACKEND=s3 is chosen: an installed but unused
# plugin should not cost every worker ~17 MiB of memory.


def make_storage(service) -> S3Storage:
    """The factory ``STORAGE_BACKEND=s3`` picks; settings are read here, when the backend is chosen, the way the
    service's own were (the environment and ``.env``, or a host app's ``plugin_settings``)."""
    from .settings import S3Settings
    from .storage import S3Storage

    settings = service.plugin_settings(S3Settings)
    if not settings.bucket:
        raise StartupError("STORAGE_BACKEND=s3 needs S3_BUCKET (and S3_ENDPOINT_URL for a store other than AWS)")
    return S3Storage(settings)


@hookimpl
def register_storage_backends(register, service) -> None:
    register("s3", make_storage)


@hookimpl
async def startup(service) -> None:
    """Refuse to start unless the bucket is there and these credentials can write to it."""
    if service.settings.storage_backend != "s3":
        return
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    from .client import error_code, write_probe

    storage = service.storage
    where = f"S3 bucket {storage.bucket!r} at {storage.settings.endpoint_url or 'AWS'}"
    try:  # with the client itself, not the storage: botocore's errors say what the operator must fix
        client = await storage.clients.get()
        await client.head_bucket(Bucket=storage.bucket)
        await write_probe(client, storage.bucket, storage.layout.probe())
    except NoCredentialsError as error:
        raise StartupError(f"{where}: no AWS credentials found (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
                           "AWS_PROFILE, or run with an instance role)") from error
    except ClientError as error:
        code = error_code(error)
        if code in {"404", "NoSuchBucket", "NotFound"}:
            raise StartupError(f"{where} does not exist: create it or fix S3_BUCKET") from error
        if code in {"403", "AccessDenied", "Forbidden"}:
            raise StartupError(f"{where}: access denied: the credentials need the IAM policy in the "
                               "upload-service-s3 README") from error
        raise StartupError(f"{where}: {error}") from error
    except BotoCoreError as error:
        raise StartupError(f"{where} cannot be reached: {error}") from error
