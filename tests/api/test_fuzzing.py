"""Schemathesis over the whole OpenAPI document, against the demo workspace: whatever it sends,
no operation answers with a server error.

Each operation gets ``TIDINGS_FUZZ_EXAMPLES`` generated requests (a bounded run with a fixed
seed, so CI stays short and a failure can be replayed); positive and negative (schema-breaking)
cases both.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, settings
from schemathesis import GenerationMode

from tidings.api.app import create_app
from tidings.bootstrap import Tidings, build
from tidings.demo.service import seed_demo
from tidings.settings import load_settings

EXAMPLES = int(os.environ.get("TIDINGS_FUZZ_EXAMPLES", "25"))


@pytest.fixture
def demo_key(tidings: Tidings) -> str:
    with tidings.db.transaction() as session:
        _, key = seed_demo(session, now=tidings.clock.now())
    return key


@pytest.fixture
def app(tidings: Tidings) -> FastAPI:
    return create_app(tidings)


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
    case: schemathesis.Case, app: FastAPI, demo_key: str
) -> None:
    response = case.call(app=app, headers={"Authorization": f"Bearer {demo_key}"})
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:800]}"
        f"\n{case.as_curl_command()}"
    )
