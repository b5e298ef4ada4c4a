"""Where settings come from: a host app's ``Settings(...)`` holds only what it was given, ``Settings.from_env()``
reads the environment and ``.env``, unknown keywords are refused by name, and a plugin's own settings
(``service.plugin_settings``) are read the same way as the service's."""

from __future__ import annotations

import pytest
from pydantic_settings import BaseSettings, SettingsConfigDict
from quart import Quart

from upload_service import Settings, UploadService


class GreetingSettings(BaseSettings):
    """A plugin's own settings, as a plugin author writes them: a prefix, defaults."""

    model_config = SettingsConfigDict(env_prefix="GREETING_")

    word: str = "hello"
    times: int = 1


@pytest.fixture
def environment(tmp_path, monkeypatch):
    """An environment and a ``.env`` full of the service's, a plugin's and other programs' variables."""
    (tmp_path / ".env").write_text("MAX_UPLOAD_SIZE=2KiB\nPORT=9001\nGREETING_TIMES=3\nGREETING_COLOUR=blue\n"
                                   "SOME_OTHER_TOOL=1\nDATABASE_URL=postgres://elsewhere\n")
    monkeypatch.chdir(tmp_path)
    for name, value in {"PORT": "9002", "STORAGE_BACKEND": "nowhere", "GREETING_WORD": "from the environment",
                        "UNRELATED_VARIABLE": "x"}.items():
        monkeypatch.setenv(name, value)
    return tmp_path


def _service(settings: Settings) -> UploadService:
    return UploadService(Quart(__name__), settings=settings)


def test_keyword_settings_read_neither_the_environment_nor_dotenv(environment, monkeypatch):
    monkeypatch.setenv("MAX_UPLOAD_SIZE", "1KiB")
    settings = Settings(upload_dir=environment / "files")
    assert settings.max_upload_size == 5 * 1024**3 and settings.port == 8000
    assert settings.storage_backend == "local" and not settings.from_environment
    assert Settings(max_upload_size="3KiB").max_upload_size == 3 * 1024


def test_from_env_reads_the_environment_over_dotenv_and_keywords_over_both(environment):
    settings = Settings.from_env()
    assert settings.from_environment
    assert settings.max_upload_size == 2 * 1024  # from .env
    assert settings.port == 9002 and settings.storage_backend == "nowhere"  # the environment wins over .env
    assert Settings.from_env(port=9003).port == 9003


def test_unknown_keywords_are_refused_by_name():
    with pytest.raises(TypeError, match=r"has no setting 'storage_backnd' \(did you mean 'storage_backend'\?\)"):
        Settings(storage_backnd="memory")
    with pytest.raises(TypeError, match=r"settings 'colour', 'max_uplod_size' \(did you mean 'max_upload_size'\?\)"):
        Settings.from_env(colour="blue", max_uplod_size="1KiB")
    assert Settings(MAX_UPLOAD_SIZE="1KiB").max_upload_size == 1024  # the environment's spelling is a name too


def test_a_plugins_settings_come_from_the_environment_when_the_services_do(environment):
    service = _service(Settings.from_env(secret_key="s" * 32, storage_backend="local", upload_dir=environment))
    greeting = service.plugin_settings(GreetingSettings)
    assert greeting.word == "from the environment" and greeting.times == 3  # environment and .env
    assert service.plugin_settings(GreetingSettings) is greeting  # read once per service
    overridden = Settings.from_env(storage_backend="local", plugin_settings={"GREETING_TIMES": "5"})
    assert overridden.for_plugin(GreetingSettings).times == 5  # a host's values win, as keywords do


def test_a_plugins_settings_come_only_from_the_host_when_it_passes_settings(environment):
    given = Settings(secret_key="s" * 32, upload_dir=environment, plugin_settings={"greeting_word": "given",
                                                                                    "S3_BUCKET": "another plugin's"})
    service, other = _service(given), _service(Settings(secret_key="s" * 32, upload_dir=environment))
    assert service.plugin_settings(GreetingSettings).model_dump() == {"word": "given", "times": 1}
    assert other.plugin_settings(GreetingSettings).model_dump() == {"word": "hello", "times": 1}
    assert type(service.plugin_settings(GreetingSettings)) is GreetingSettings


def test_misspelled_and_misplaced_plugin_settings_are_refused_by_name():
    misspelled = Settings(plugin_settings={"GREETING_WROD": "hi"})
    with pytest.raises(ValueError, match=r"has no setting 'GREETING_WROD' \(did you mean 'GREETING_WORD'\?\)"):
        misspelled.for_plugin(GreetingSettings)
    with pytest.raises(ValueError, match=r"the service's own 'MAX_UPLOAD_SIZE': pass max_upload_size=\.\.\."):
        Settings(plugin_settings={"MAX_UPLOAD_SIZE": "1KiB"})
    with pytest.raises(Exception, match="times"):
        Settings(plugin_settings={"GREETING_TIMES": "many"}).for_plugin(GreetingSettings)
