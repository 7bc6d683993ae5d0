"""Runtime settings: environment variables, an optional YAML file, defaults.

Precedence (highest first): keyword arguments (tests, CLI flags), environment
variables with the module's prefix, the YAML file named by ``<PREFIX>CONFIG_FILE``,
then the defaults below. Secrets are ``SecretStr`` so they never appear in reprs
or logs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AnyHttpUrl, Field, SecretStr, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from .constants import (
    DEFAULT_MAX_CONCURRENT_TASKS,
    DEFAULT_PORT,
    ENV_PREFIX,
    MODULE_NAME,
)

# HMAC keys shorter than the hash output weaken the signature (RFC 7518 3.2).
_MIN_SECRET_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}
_ORIGIN = re.compile(r"^https?://[^/\s*]+$")
_REDIS_URL = re.compile(r"^(rediss?://\S+|unix:///\S+)$")


class YamlFileSource(PydanticBaseSettingsSource):
    """Reads the YAML file named by ``config_file`` (keyword argument or env var).

    Keys are the field names (``port``, ``max_concurrent_tasks``...), case-insensitive.
    A named file that is missing or not a mapping is an error, not silently ignored.
    """

    def __init__(
        self,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
    ) -> None:
        super().__init__(settings_cls)
        self._init_settings = init_settings
        self._env_settings = env_settings

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        # Unused: __call__ returns the whole mapping at once.
        return None, field_name, False

    def _path(self) -> Path | None:
        for source in (self._init_settings, self._env_settings):
            value = source().get("config_file")
            if value:
                return Path(value)
        return None

    def __call__(self) -> dict[str, Any]:
        path = self._path()
        if path is None:
            return {}
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ValueError(f"{ENV_PREFIX}CONFIG_FILE {path}: cannot be read: {exc}") from exc
        except yaml.YAMLError as exc:
            raise ValueError(f"{ENV_PREFIX}CONFIG_FILE {path}: invalid YAML: {exc}") from exc
        if loaded is None:
            return {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{ENV_PREFIX}CONFIG_FILE {path}: must be a mapping of setting names")
        values = {str(key).lower(): value for key, value in loaded.items()}
        values.pop("config_file", None)  # the file cannot name another file
        return values


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        case_sensitive=False,
        extra="forbid",
        validate_default=True,
    )

    environment: Literal["development", "staging", "production"] = "development"
    host: str = "127.0.0.1"
    port: int = Field(default=DEFAULT_PORT, ge=1, le=65535)
    log_level: Literal["CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"] = "INFO"
    log_format: Literal["json", "text"] = "json"
    # uvicorn's per-request access log (JSON like every other line when on).
    access_log: bool = False
    config_file: Path | None = None
    manifest_dir: Path = Path("manifests")
    data_dir: Path = Path("data")
    max_concurrent_tasks: int = Field(default=DEFAULT_MAX_CONCURRENT_TASKS, ge=1)
    max_queued_tasks: int = Field(default=1000, ge=1)
    task_timeout_seconds: float = Field(default=300, gt=0)
    task_retention_seconds: float = Field(default=3600, gt=0)
    shutdown_grace_seconds: float = Field(default=20, ge=0)
    # Where tasks are queued and stored: "embedded" (SQLite in DATA_DIR, one
    # replica) or "redis" (Redis Streams and hashes shared by every replica).
    # Deployments of a module generated with task_backend redis set it in
    # their ConfigMap / docker-compose.yml; a bare local run stays embedded.
    task_backend: Literal["embedded", "redis"] = "embedded"
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_password: SecretStr | None = None
    # Keys this module's tasks use: <prefix>tasks (stream), <prefix>task:<id> ...
    redis_key_prefix: str = Field(default=f"{MODULE_NAME}:", min_length=1)
    # A task whose replica stopped renewing its claim this long ago (it died)
    # is taken over by another replica and run again from its input.
    task_claim_timeout_seconds: float = Field(default=30, gt=0)
    # Platform event stream (one stream, a "type" field per entry) in the same Redis.
    events_stream: str = Field(default="blux:events", min_length=1)
    max_values: int = Field(default=100_000, ge=1)
    jwt_secret: SecretStr | None = None
    jwt_secret_file: Path | None = None
    jwt_audience: str = Field(default=MODULE_NAME, min_length=1)
    jwt_issuer: str = Field(default="blux-lite", min_length=1)
    jwt_algorithm: Literal["HS256", "HS384", "HS512"] = "HS256"
    blux_lite_url: AnyHttpUrl | None = None
    blux_guard_url: AnyHttpUrl | None = None
    # Platform calls (blux-lite registry, blux-guard audit service): per-request
    # timeout, retry back-off (doubling from initial to max, with jitter), and how
    # long shutdown waits for deregistration and the final audit flush.
    module_public_url: AnyHttpUrl | None = None
    platform_timeout_seconds: float = Field(default=5, gt=0)
    platform_retry_initial_seconds: float = Field(default=0.5, gt=0)
    platform_retry_max_seconds: float = Field(default=30, gt=0)
    platform_shutdown_seconds: float = Field(default=2, ge=0)
    discovery_ttl_seconds: float = Field(default=30, ge=0)
    # Remote (http/https) and local data_reference inputs.
    data_reference_max_bytes: int = Field(default=4 * 1024 * 1024, ge=1)
    data_reference_timeout_seconds: float = Field(default=10, gt=0)
    # NoDecode: accept "a,b" as well as a JSON list from the environment.
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Requests per client address per window; 0 disables. Probes are exempt.
    rate_limit_requests: int = Field(default=1200, ge=0)
    rate_limit_window_seconds: int = Field(default=60, ge=1)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Order is precedence: env vars win over the YAML file.
        return (
            init_settings,
            env_settings,
            YamlFileSource(settings_cls, init_settings, env_settings),
        )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str) -> str:
        if not _REDIS_URL.match(value):
            # The value is not echoed: it may carry a password.
            raise ValueError(
                "must be a Redis URL like redis://host:6379/0, rediss://... or unix:///path"
            )
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("cors_origins")
    @classmethod
    def _check_origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if origin == "*":
                raise ValueError(
                    "'*' is refused: list the exact origins allowed to call this module"
                )
            if not _ORIGIN.match(origin):
                raise ValueError(f"{origin!r} is not an origin like https://app.example.com")
        return value

    @model_validator(mode="after")
    def _load_secret(self) -> Settings:
        if self.jwt_secret_file is not None:
            if self.jwt_secret is not None:
                raise ValueError("set JWT_SECRET or JWT_SECRET_FILE, not both")
            try:
                text = self.jwt_secret_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ValueError(f"JWT_SECRET_FILE {self.jwt_secret_file}: {exc}") from exc
            self.jwt_secret = SecretStr(text)
        if self.jwt_secret is not None:
            minimum = _MIN_SECRET_BYTES[self.jwt_algorithm]
            if len(self.jwt_secret.get_secret_value().encode("utf-8")) < minimum:
                raise ValueError(
                    f"the JWT secret must be at least {minimum} bytes for {self.jwt_algorithm}"
                )
        return self

    def jwt_key(self) -> bytes | None:
        """The HMAC key, or None when no secret is configured."""
        if self.jwt_secret is None:
            return None
        return self.jwt_secret.get_secret_value().encode("utf-8")

    @property
    def inputs_dir(self) -> Path:
        """Where ``data_reference`` files live."""
        return self.data_dir / "inputs"

    @property
    def audit_file(self) -> Path:
        return self.data_dir / "audit.jsonl"

    @property
    def task_store_file(self) -> Path:
        """SQLite database of accepted tasks (what makes them survive a restart)."""
        return self.data_dir / "tasks.sqlite3"

    @property
    def audit_cursor_file(self) -> Path:
        """The last audit record blux-guard confirmed (see forwarding.py)."""
        return self.data_dir / "audit.forwarded"


def env_name(field: str) -> str:
    """The environment variable for a field: ``env_name("port")`` -> ``<PREFIX>PORT``."""
    return f"{ENV_PREFIX}{field.upper()}"


def get_settings() -> Settings:
    """Settings from the process environment (the CLI's entry point)."""
    return Settings()


__all__ = ["Settings", "env_name", "get_settings"]
