"""Fixtures of the prod-profile tests: throwaway Postgres databases and a dedicated Redis db number.

Every database is created by the fixture that uses it (name prefixed `mlplatform_test_`) and dropped
afterwards; no other database is touched. The services must be running: a test of this folder fails,
never skips, when Postgres or Redis does not answer (CI starts them).
"""

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from tests.prod.services import reachable

PG_HOST = os.environ.get("MLPLATFORM_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("MLPLATFORM_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("MLPLATFORM_TEST_PG_USER", "postgres")
PG_PASSWORD = os.environ.get("MLPLATFORM_TEST_PG_PASSWORD", "")
REDIS_HOST = os.environ.get("MLPLATFORM_TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("MLPLATFORM_TEST_REDIS_PORT", "6379"))
# Redis database numbers nobody else uses on the test server; only these are ever flushed
REDIS_DB = int(os.environ.get("MLPLATFORM_TEST_REDIS_DB", "13"))
# the feature-server test's own database: it runs beside the end-to-end test (REDIS_DB) and the streaming
# tests (db 11) without flushing what they wrote
FEATURE_SERVER_REDIS_DB = int(os.environ.get("MLPLATFORM_TEST_FEATURE_SERVER_REDIS_DB", "12"))
# the velocity push test's: its online store and its input stream, beside all of the above
VELOCITY_REDIS_DB = int(os.environ.get("MLPLATFORM_TEST_VELOCITY_REDIS_DB", "14"))


def unreachable_services() -> list[str]:
    services = {"Postgres": (PG_HOST, PG_PORT), "Redis": (REDIS_HOST, REDIS_PORT)}
    return [
        f"{name} at {host}:{port}" for name, (host, port) in services.items() if not reachable(host, port)
    ]


@pytest.fixture(autouse=True, scope="session")
def prod_services_running() -> None:
    if missing := unreachable_services():
        pytest.fail(f"the prod services must be running: {', '.join(missing)} unreachable")


def admin_connection() -> psycopg.Connection:
    return psycopg.connect(
        host=PG_HOST,
        port=PG_PORT,
        user=PG_USER,
        password=PG_PASSWORD or None,
        dbname="postgres",
        autocommit=True,
    )


def create_database(prefix: str) -> str:
    name = f"mlplatform_test_{prefix}_{uuid.uuid4().hex[:8]}"
    with admin_connection() as con:
        con.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    return name


def drop_database(name: str) -> None:
    assert name.startswith("mlplatform_test_"), name  # never anything but our own
    with admin_connection() as con:
        con.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def throwaway_database() -> Iterator:
    """A factory of fresh databases for this session, all dropped at its end."""
    created: list[str] = []

    def make(prefix: str) -> str:
        created.append(create_database(prefix))
        return created[-1]

    yield make
    for name in created:
        drop_database(name)


def pg_env(database: str) -> dict[str, str]:
    """The MLPLATFORM_PG_* variables the prod profile reads, for `database` on the test server."""
    return {
        "MLPLATFORM_PG_HOST": PG_HOST,
        "MLPLATFORM_PG_PORT": str(PG_PORT),
        "MLPLATFORM_PG_USER": PG_USER,
        "MLPLATFORM_PG_PASSWORD": PG_PASSWORD,
        "MLPLATFORM_PG_DATABASE": database,
    }
