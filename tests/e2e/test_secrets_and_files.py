"""Secrets and files: no server runs on the placeholder secret outside a demo, `tidings init`
generates one (mode 0600) that later commands use, a demo makes its own, and the data folder
and the SQLite file are readable by their owner only."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from tidings.settings import PLACEHOLDER_SECRET, SECRET_FILE, load_settings

TIDINGS = [sys.executable, "-m", "tidings"]


def clean_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    return {**env, "TIDINGS_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "200"}


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_servers_refuse_the_placeholder_secret_and_say_how_to_set_one(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    for command in (["serve", "--port", "9"], ["worker"]):
        ran = subprocess.run(
            [*TIDINGS, *command], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
        )
        assert ran.returncode == 2, ran.stdout + ran.stderr
        assert "tidings init" in ran.stdout + ran.stderr


def test_init_generates_a_secret_that_later_commands_use(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    ran = subprocess.run(
        [*TIDINGS, "init", "--owner-password", "a quiet harbour 12"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout + ran.stderr
    data = tmp_path / "data"
    secret = data / SECRET_FILE
    assert mode_of(secret) == 0o600 and mode_of(data) == 0o700
    assert mode_of(data / "tidings.db") == 0o600
    kept = secret.read_text().strip()
    assert len(kept) >= 32 and kept != PLACEHOLDER_SECRET
    settings = load_settings(data_dir=data)
    assert settings.secret_key.get_secret_value() == kept
    settings.check_production_ready()  # no longer refused
    # Running init again keeps the same secret (sealed values stay readable).
    subprocess.run([*TIDINGS, "init"], env=env, cwd=tmp_path, check=True, timeout=120)
    assert secret.read_text().strip() == kept


def test_a_demo_seals_with_a_key_of_its_own(tmp_path: Path) -> None:
    first = load_settings(data_dir=tmp_path / "one", demo=True).secret_key.get_secret_value()
    second = load_settings(data_dir=tmp_path / "two", demo=True).secret_key.get_secret_value()
    assert PLACEHOLDER_SECRET not in (first, second) and first != second
    assert mode_of(tmp_path / "one" / SECRET_FILE) == 0o600
