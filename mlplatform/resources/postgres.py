"""One Postgres server as configuration: host, port, credentials and database, from the environment.

Shared by the warehouse, the Feast offline store and the Feast registry. Fields are usually Dagster
`EnvVar`s: inside a run Dagster resolves them; outside one (the CLI, a test, the demo's summary) they
are resolved here, so the same resource object works in both places.
"""

from dagster import ConfigurableResource, EnvVar

from mlplatform.resources.env import resolved

ENV_VARS = {
    "host": "MLPLATFORM_PG_HOST",
    "port": "MLPLATFORM_PG_PORT",
    "user": "MLPLATFORM_PG_USER",
    # bandit B105: the variable's name, not a password
    "password": "MLPLATFORM_PG_PASSWORD",  # nosec B105
    "database": "MLPLATFORM_PG_DATABASE",
}


class PostgresConnection(ConfigurableResource):
    """Where a Postgres database is and how to log in. `sslmode` as libpq understands it."""

    host: str
    port: int = 5432
    user: str
    password: str = ""
    database: str
    sslmode: str = "prefer"

    @classmethod
    def from_env(cls, database_var: str = ENV_VARS["database"]) -> "PostgresConnection":
        """Every field an `EnvVar` (MLPLATFORM_PG_*), the database name from `database_var`."""
        return cls(
            host=EnvVar(ENV_VARS["host"]),
            port=EnvVar.int(ENV_VARS["port"]),
            user=EnvVar(ENV_VARS["user"]),
            password=EnvVar(ENV_VARS["password"]),
            database=EnvVar(database_var),
        )

    def params(self) -> dict:
        """host, port, user, password, database and sslmode, resolved."""
        return {
            name: resolved(getattr(self, name))
            for name in ("host", "port", "user", "password", "database", "sslmode")
        }

    def conninfo(self) -> str:
        """A libpq connection string for psycopg."""
        from psycopg.conninfo import make_conninfo

        p = self.params()
        return make_conninfo(
            host=p["host"],
            port=p["port"],
            user=p["user"],
            password=p["password"] or None,
            dbname=p["database"],
            sslmode=p["sslmode"],
        )
