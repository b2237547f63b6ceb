"""schemathesis against the OpenAPI schema: whatever a client sends, no 5xx, and every answer
matches the schema (status documented, body shaped as declared).

The app is built at import (schemathesis parametrizes at collection) on a SQLite store in a
temporary directory; the SSE stream is left out (it holds the connection open by design)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import positive_data_acceptance

from adapters.http_api import create_app
from store.database import open_store

_ROOT = Path(tempfile.mkdtemp(prefix="kodr-openapi-"))
_APP = create_app(open_store(f"sqlite:///{_ROOT / 'kodr.db'}"), roots=[_ROOT / "shared"])
schema = schemathesis.openapi.from_asgi("/api/openapi.json", _APP)


@pytest.mark.slow
@schema.exclude(path_regex=".*/stream$").parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_matches_its_schema(case):
    # Positive-data acceptance is left out: a schema cannot say "a valid .tar.gz" or "a run id that
    # exists", so schema-valid requests are rightly refused with a documented 4xx naming the field.
    case.call_and_validate(excluded_checks=[positive_data_acceptance])
