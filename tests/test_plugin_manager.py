"""Plugin manager rules: per-instance managers, StartupError, misspelled hooks, async hooks, duplicates."""

from __future__ import annotations

import pytest
from quart import Quart

from upload_service import StartupError, UploadRejected, hookimpl
from upload_service.service import UploadService
from upload_service.settings import Settings


def _settings(tmp_path, **values) -> Settings:
    return Settings(secret_key="s" * 32, upload_dir=tmp_path, **values)


class Refuser:
    __name__ = "refuser"

    @hookimpl
    def startup(self, service):
        raise StartupError("the refuser plugin needs REFUSER_URL")


class Misspelled:
    __name__ = "misspelled"

    @hookimpl
    def validate_uplaod(self, upload):  # the typo is the point
        return None


class DuplicateStorage:
    __name__ = "duplicate_storage"

    @hookimpl
    def register_storage_backends(self, register):
        register("local", lambda service: None)


class AsyncValidator:
    __name__ = "async_validator"

    def __init__(self):
        self.seen = []

    @hookimpl
    async def validate_upload(self, upload, identity):
        self.seen.append((upload.filename, identity.id))
        if upload.size and upload.size > 3:
            raise UploadRejected("too big for this test", status=422)


async def test_startup_error_stops_start(tmp_path):
    app = Quart(__name__)
    service = UploadService(app, settings=_settings(tmp_path), plugins=[Refuser()])
    with pytest.raises(StartupError, match="REFUSER_URL"):
        await service.start()


def test_misspelled_hook_is_a_startup_error(tmp_path):
    from pluggy import PluginValidationError

    with pytest.raises(PluginValidationError):
        UploadService(Quart(__name__), settings=_settings(tmp_path), plugins=[Misspelled()])


def test_duplicate_backend_name_is_refused(tmp_path):
    with pytest.raises(StartupError, match="two storage backends"):
        UploadService(Quart(__name__), settings=_settings(tmp_path), plugins=[DuplicateStorage()])


def test_unknown_backend_is_refused(tmp_path):
    with pytest.raises(StartupError, match="not installed"):
        UploadService(Quart(__name__), settings=_settings(tmp_path, storage_backend="nowhere"))


def test_missing_secret_key_is_refused(tmp_path):
    settings = Settings(upload_dir=tmp_path)
    with pytest.raises(StartupError, match="SECRET_KEY"):
        UploadService(Quart(__name__), settings=settings)


async def test_async_hooks_are_awaited_and_instances_are_separate(tmp_path):
    from upload_service.files import UploadInfo
    from upload_service.identity import Identity

    validator = AsyncValidator()
    app = Quart(__name__)
    first = UploadService(app, settings=_settings(tmp_path / "a"), plugins=[validator], name="first", url_prefix="/a")
    second = UploadService(app, settings=_settings(tmp_path / "b"), name="second", url_prefix="/b")
    assert first.pm is not second.pm
    assert second.pm.get_plugin("async_validator") is None
    who = Identity(id="token:x", name="x", provider="api_tokens")
    await first.validate(UploadInfo("ok.txt", "text/plain", 2, False), who)
    with pytest.raises(UploadRejected):
        await first.validate(UploadInfo("big.txt", "text/plain", 10, False), who)
    await second.validate(UploadInfo("big.txt", "text/plain", 10, False), who)
    assert validator.seen == [("ok.txt", "token:x"), ("big.txt", "token:x")]


def test_settings_parse_units_and_refuse_nonsense(tmp_path):
    settings = _settings(tmp_path, max_upload_size="2GiB", temp_upload_ttl="90m", max_json_upload_size="10MB")
    assert settings.max_upload_size == 2 * 1024**3
    assert settings.max_json_upload_size == 10_000_000
    assert settings.temp_upload_ttl == 5400
    from pydantic import ValidationError

    for bad in ({"max_upload_size": "lots"}, {"temp_upload_ttl": "-1h"}, {"port": 70000}, {"log_level": "LOUD"}):
        with pytest.raises(ValidationError):
            _settings(tmp_path, **bad)


def test_environment_wins_over_dotenv(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("MAX_UPLOAD_SIZE=1KiB\nPORT=9001\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PORT", "9002")
    settings = Settings.from_env()
    assert settings.max_upload_size == 1024 and settings.port == 9002
