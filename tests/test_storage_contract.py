"""The plugin author's conformance tests (``upload_service.testing``) against every backend the project ships:
local disk, S3 (SeaweedFS, as in tests/s3.py) and the in-memory backend of the kit."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from upload_service.builtin.local_storage import LocalStorage
from upload_service.testing import MemoryStorage, ResumableStorageContract, StorageContract
from upload_service_s3.settings import S3Settings
from upload_service_s3.storage import S3Storage

from .s3 import CREDENTIALS, Bucket

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def shared_bucket(s3_server) -> Bucket:
    return s3_server.bucket()


class TestLocalStorage(StorageContract, ResumableStorageContract):
    @pytest.fixture
    async def storage(self, tmp_path):
        storage = LocalStorage(tmp_path)
        await storage.open()
        yield storage
        await storage.close()

    async def leftovers(self, storage: LocalStorage) -> Any:
        return sorted(storage.layout.staging.iterdir())

    @pytest.fixture
    async def second_worker(self, storage: LocalStorage):
        other = LocalStorage(storage.layout.root)
        await other.open()
        yield other
        await other.close()


class TestLocalStorageInFolders(TestLocalStorage):
    """Where the file system keeps no user xattrs: each object a folder of ``data`` and ``meta.json``, as before
    single-file objects, in ``DURABILITY=relaxed`` (the other mode of the class above)."""

    @pytest.fixture
    async def storage(self, tmp_path):
        storage = LocalStorage(tmp_path, "relaxed")
        storage.layout.xattrs = False
        await storage.open()
        yield storage
        await storage.close()

    @pytest.fixture
    async def second_worker(self, storage: LocalStorage):
        other = LocalStorage(storage.layout.root, "relaxed")
        other.layout.xattrs = False
        await other.open()
        yield other
        await other.close()


class TestS3Storage(StorageContract, ResumableStorageContract):
    large = 9 * MiB  # past the first multipart part (8 MiB)

    @pytest.fixture
    async def storage(self, shared_bucket, monkeypatch):
        """Each test in a prefix of its own in one bucket (a bucket per test costs more than most tests)."""
        self.bucket = Bucket(shared_bucket.server, shared_bucket.name, f"contract-{secrets.token_hex(4)}/")
        for name, value in CREDENTIALS.items():
            monkeypatch.setenv(name, value)
        self.settings = S3Settings(bucket=self.bucket.name, endpoint_url=self.bucket.server.url,
                                   prefix=self.bucket.prefix)
        storage = S3Storage(self.settings)
        await storage.open()
        yield storage
        await storage.close()

    @pytest.fixture
    async def second_worker(self, storage: S3Storage):
        other = S3Storage(self.settings)
        await other.open()
        yield other
        await other.close()

    @pytest.mark.xfail(strict=True, reason="SeaweedFS lists folder by folder (temp/a/x before temp/a-b/x), not in "
                                           "S3's byte order: plugins/s3/README.md, 'Tested against'")
    async def test_list_is_in_ascending_key_order_at_any_depth(self, storage: S3Storage) -> None:
        """Holds on S3 (byte order); fails on the test server, and must, until SeaweedFS lists as S3 does."""
        await super().test_list_is_in_ascending_key_order_at_any_depth(storage)

    async def leftovers(self, storage: S3Storage) -> Any:
        """Journal entries, blobs no record names, multipart uploads: what a write left that it should not."""
        return sorted(name for name in self.bucket.leftovers() if not name.startswith("resumable/"))


class TestMemoryStorage(StorageContract, ResumableStorageContract):
    @pytest.fixture
    def storage(self) -> MemoryStorage:
        return MemoryStorage()
