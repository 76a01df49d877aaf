"""The one settings tree, read from the environment (``TIDINGS_*``) and ``.env``.

Defaults are the embedded deployment: a SQLite file in ``./tidings-data``. Nothing is read at
import time; :func:`load_settings` is called by ``bootstrap``. Per-workspace policy figures are
not here: they live in the database (see ``workspaces.domain.WorkspacePolicy``).
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tidings.kernel.errors import TidingsError

PLACEHOLDER_SECRET = "change-me-in-production"  # noqa: S105 - the value refused at start
SECRET_FILE = "secret-key"  # noqa: S105 - a file name, in the data folder (mode 0600)


def ensure_data_dir(data_dir: Path) -> Path:
    """The data folder, created readable by its owner only (it holds the database, the
    secret key and customers' files)."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    return data_dir


def ensure_secret_file(data_dir: Path) -> str:
    """The installation's generated secret, made once (mode 0600) and kept in the data folder."""
    path = ensure_data_dir(data_dir) / SECRET_FILE
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text(encoding="utf-8").strip()
    secret = secrets.token_urlsafe(48)
    with os.fdopen(descriptor, "w", encoding="utf-8") as out:
        out.write(secret + "\n")
    return secret


class Settings(BaseSettings):
    """Process-wide configuration."""

    model_config = SettingsConfigDict(env_prefix="TIDINGS_", env_file=".env", extra="ignore")

    data_dir: Path = Field(default=Path("tidings-data"), description="Where SQLite and files live.")
    database_url: str = Field(
        default="", description="SQLAlchemy URL; empty means SQLite in data_dir."
    )
    exports_dir: Path | None = Field(
        default=None,
        description="Where daily exports go (a shared folder when workers run on many hosts); "
        "empty means data_dir/exports.",
    )
    export_retention_days: int = Field(default=180, ge=180, description="C6: at least 180.")
    sign_in_retention_days: int = Field(
        default=90, ge=1, le=3650, description="How long sign-in attempts are kept for review."
    )
    secret_key: SecretStr = Field(default=SecretStr(PLACEHOLDER_SECRET))
    demo: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    public_url: str = Field(default="", description="Base URL others use to reach this server.")
    worker_poll_seconds: float = Field(default=1.0, gt=0)
    worker_batch_size: int = Field(default=500, ge=1, le=100_000)
    # A worker whose heartbeat (every 5 s) is older than this is taken for dead: another
    # recovers its claimed sends.
    worker_lease_seconds: float = Field(default=20.0, ge=10)
    database_pool_size: int = Field(default=10, ge=1)
    log_level: str = "INFO"
    clock_file: Path | None = Field(
        default=None,
        description="Tests and demos: read the time from this file (ISO 8601), which another "
        "process moves, instead of the system clock.",
    )
    secure_cookies: bool = Field(
        default=False,
        description="Mark the session cookie Secure even when requests reach this process over "
        "plain HTTP (behind a TLS proxy); on by itself when public_url is https.",
    )
    egress_allow: str = Field(
        default="",
        description="Networks (CIDR, comma-separated) the WhatsApp adapter may call besides the "
        "public internet: the local simulator needs 127.0.0.0/8. Empty by default.",
    )
    allow_private_webhooks: bool = Field(
        default=False, description="Let outgoing webhooks reach private/loopback addresses."
    )

    @model_validator(mode="after")
    def _fill_database_url(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.data_dir / 'tidings.db').as_posix()}"
        if not self.public_url:
            self.public_url = f"http://{self.host}:{self.port}"
        if self.secret_key.get_secret_value() == PLACEHOLDER_SECRET:
            # TIDINGS_SECRET_KEY unset: the key `tidings init` generated, or for a demo one
            # made now — never a key that is printed in this source file.
            kept = self.data_dir / SECRET_FILE
            if kept.is_file():
                self.secret_key = SecretStr(kept.read_text(encoding="utf-8").strip())
            elif self.demo:
                self.secret_key = SecretStr(ensure_secret_file(self.data_dir))
        return self

    @field_validator("egress_allow")
    @classmethod
    def _networks(cls, value: str) -> str:
        for network in filter(None, (n.strip() for n in value.split(","))):
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(f"{network!r} is not a network (CIDR, e.g. 127.0.0.0/8)") from None
        return value

    @property
    def egress_networks(self) -> list[str]:
        return [n.strip() for n in self.egress_allow.split(",") if n.strip()]

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def check_production_ready(self) -> None:
        """Refuse to run on the placeholder secret outside demo mode.

        Raises:
            TidingsError: if ``TIDINGS_SECRET_KEY`` is unset or the placeholder.
        """
        secret = self.secret_key.get_secret_value()
        if not self.demo and (secret == PLACEHOLDER_SECRET or len(secret) < 16):
            raise TidingsError(
                "placeholder_secret",
                "no secret key: run `tidings init` (it writes one into the data folder), or "
                "set TIDINGS_SECRET_KEY to a random string of 16+ characters; "
                "`tidings serve --demo` is a local trial that makes its own",
                "TIDINGS_SECRET_KEY",
            )


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment, with explicit overrides winning."""
    return Settings(**overrides)  # type: ignore[arg-type]
