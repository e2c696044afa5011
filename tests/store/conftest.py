"""A real PostgreSQL server for the store tests, started once per session.

Set ``TASTEMAKER_TEST_POSTGRES_DSN`` to use an existing server instead (each test works in
its own PostgreSQL schema). Without the server binaries the PostgreSQL tests skip, saying
how to install them; with ``TASTEMAKER_REQUIRE_POSTGRES=1`` (CI) they fail instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tastemaker.testing.store import PostgresUnavailable, temporary_postgres


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """The DSN of an empty database on a PostgreSQL server that lives for the session."""
    external = os.environ.get("TASTEMAKER_TEST_POSTGRES_DSN")
    if external:
        yield external
        return
    try:
        server = temporary_postgres()
        dsn = server.__enter__()
    except PostgresUnavailable as exc:
        if os.environ.get("TASTEMAKER_REQUIRE_POSTGRES"):
            pytest.fail(f"TASTEMAKER_REQUIRE_POSTGRES is set but PostgreSQL cannot start: {exc}")
        pytest.skip(f"PostgreSQL tests need a local server: {exc}")
    try:
        yield dsn
    finally:
        server.__exit__(None, None, None)
