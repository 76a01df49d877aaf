"""Schemathesis over the whole OpenAPI document, against the demo workspace: whatever it sends,
no operation answers with a server error.

Each operation gets ``TIDINGS_FUZZ_EXAMPLES`` generated requests (a bounded run with a fixed
seed, so CI stays short and a failure can be replayed); positive and negative (schema-breaking)
cases both.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, settings
from schemathesis import GenerationMode

from tests.conftest import POSTGRES_URL, START, _truncate_all
from tidings.api.app import create_app
from tidings.bootstrap import Tidings, build
from tidings.demo.service import find_demo_workspace, seed_demo
from tidings.kernel.clock import VirtualClock
from tidings.settings import load_settings
from tidings.workspaces import service as workspaces
from tidings.workspaces.domain import Role

EXAMPLES = int(os.environ.get("TIDINGS_FUZZ_EXAMPLES", "25"))


@dataclass
class Fuzzed:
    app: FastAPI
    installation: Tidings


@pytest.fixture(scope="module")
def fuzzed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fuzzed]:
    """One demo workspace for every operation (its data grows as the fuzzer writes, as a
    real one would): seeding a fresh one per operation cost more than the fuzzing."""
    folder = tmp_path_factory.mktemp("fuzz")
    if POSTGRES_URL:
        url: str = request.getfixturevalue("postgres_url")
        _truncate_all(url)
    else:
        template: Path = request.getfixturevalue("sqlite_template")
        shutil.copy(template, folder / "tidings.db")
        url = f"sqlite:///{folder / 'tidings.db'}"
    installation = build(
        load_settings(database_url=url, data_dir=folder / "data", demo=True),
        clock=VirtualClock(START),
    )
    with installation.db.transaction() as session:
        seed_demo(session, now=installation.clock.now())
    yield Fuzzed(create_app(installation), installation)
    installation.close()


@pytest.fixture
def owner_key(fuzzed: Fuzzed) -> str:
    """A fresh owner key for each operation: the one before may have revoked its own."""
    with fuzzed.installation.db.transaction() as session:
        workspace = find_demo_workspace(session)
        assert workspace is not None
        _, key = workspaces.create_api_key(
            session, workspace=workspace, name="fuzz", role=Role.OWNER, granted_by=Role.OWNER,
            created_by_user_id=None, now=fuzzed.installation.clock.now(),
        )  # fmt: skip
    return key


def _document() -> dict[str, Any]:
    """The OpenAPI document, from an app on a database that is never opened."""
    installation = build(load_settings(database_url="sqlite://"))
    try:
        return create_app(installation).openapi()
    finally:
        installation.close()


schema = schemathesis.openapi.from_dict(_document())
# Requests that fit the schema and requests that break it; NUL characters in text included.
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], allow_x00=True
)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_no_operation_answers_with_a_server_error(
    case: schemathesis.Case, fuzzed: Fuzzed, owner_key: str
) -> None:
    response = case.call(app=fuzzed.app, headers={"Authorization": f"Bearer {owner_key}"})
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:800]}"
        f"\n{case.as_curl_command()}"
    )
