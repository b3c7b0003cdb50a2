"""Ingestion with every check, against the bare engine doing the same checks, in the same run.

    python benchmarks/ingestion.py [--transactions-per-day 30000 --days 34 --customers 50000] [--label after]

Both sides ingest the same landing zone (the generator's snapshots, then one run per landed day with
that day's transactions and labels):
- platform: every partition through the Dagster ingestion assets in process, as `mlplatform demo` runs
  them (a run of the `landed_day` job per day, the job the landing sensor launches): read, Great
  Expectations validation (every check of `checks_for`), quarantine or load;
- bare: DuckDB alone on the same parquet files, with the same checks written as plain SQL, file by file
  where the platform judges files (schema: the contract's columns and types, at least one row; nulls;
  keys unique within a file, across the partition's files and, for transactions, across days already
  loaded; amount in (0, MAX_AMOUNT]; categorical domains; timestamps inside the day; customers and
  merchants known in the snapshots; labels' transactions loaded), then the same replace-by-partition
  load with lineage columns, one transaction per partition.
Each platform run is timed right after the bare engine's same work, so the machine's drift weighs on
both sides alike. ratio = platform / bare. The plain load of the previous benchmark (no checks) is
reported beside them.
The JSON (benchmarks/results/ingestion.json) keeps one entry per `--label` ("before", "after", ...), so a
measurement of the code before a change stays next to the one after it.
"""

import argparse
import json
import platform as host
import resource
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
from dagster import DagsterInstance
from harness import data_arguments, generator_config, keep_run, timed

from mlplatform.datagen import generate
from mlplatform.definitions import build_definitions
from mlplatform.demo import ingestion_runs, quiet_run
from mlplatform.ingestion.validation import DOMAINS, REFERENCES, UNIQUE_ACROSS_DAYS
from mlplatform.profiles import build_resources
from mlplatform.schemas import CUSTOMERS, LABELS, LOAD_COLUMNS, MAX_AMOUNT, MERCHANTS, TRANSACTIONS, RawTable

RESULTS = Path(__file__).parent / "results" / "ingestion.json"
TABLES = {"customers": CUSTOMERS, "merchants": MERCHANTS, "transactions": TRANSACTIONS, "labels": LABELS}
# DuckDB column types accepted per logical type (the platform's ACCEPTED_TYPES, in SQL)
SQL_TYPES = {
    "string": {"VARCHAR"},
    "float": {"DOUBLE", "FLOAT", "BIGINT", "INTEGER"},
    "bool": {"BOOLEAN"},
    "timestamp": {"TIMESTAMP", "TIMESTAMP WITH TIME ZONE", "TIMESTAMP_NS", "TIMESTAMP_MS", "TIMESTAMP_S"},
    "date": {"DATE", "TIMESTAMP"},
}
SQL_KINDS = {
    "string": "varchar",
    "float": "double",
    "bool": "boolean",
    "timestamp": "timestamp",
    "date": "date",
}


def quoted(values) -> str:
    return ", ".join("'" + str(v).replace("'", "''") + "'" for v in values)


class BareEngine:
    """DuckDB and SQL only: the floor the platform's ingestion is compared with."""

    def __init__(self, path: Path) -> None:
        self.con = duckdb.connect(str(path))
        self.con.execute("set TimeZone = 'UTC'")
        self.con.execute("create schema raw")
        self.failures: list[str] = []

    def schema_failures(self, path: Path, table: RawTable) -> list[str]:
        described = self.con.execute(
            "describe select * from read_parquet(?, hive_partitioning = false)", [str(path)]
        ).fetchall()
        types = {name: kind for name, kind, *_ in described}
        failures = (
            [f"columns {sorted(types)} != {sorted(table.columns)}"]
            if set(types) != set(table.columns)
            else []
        )
        failures += [
            f"{column} is {types[column]}"
            for column, kind in table.columns.items()
            if column in types and types[column] not in SQL_TYPES[kind]
        ]
        rows = self.con.execute(
            "select count(*) from read_parquet(?, hive_partitioning = false)", [str(path)]
        ).fetchone()
        if not rows or rows[0] < 1:
            failures.append("no rows")
        return failures

    def content_failures(self, table: RawTable, day: str) -> dict[str, int]:
        """Counts of offending rows per check and file over `incoming` (the partition's sound files)."""
        start = date.fromisoformat(day)
        rules = {f"null {c}": f"{c} is null" for c in table.columns}
        if "amount" in table.columns:
            rules["amount range"] = f"not (amount > 0 and amount <= {MAX_AMOUNT})"
        rules |= {
            f"domain {c}": f"{c} not in ({quoted(d)})" for c, d in DOMAINS.items() if c in table.columns
        }
        if table.partition_timestamp:
            ts = table.partition_timestamp
            rules["inside partition"] = (
                f"not ({ts} >= timestamp '{start}' and {ts} < timestamp '{start + timedelta(days=1)}')"
            )
        if {"customer_id", "merchant_id"} <= set(table.columns) and table.partitioned:
            rules["unknown customer"] = "customer_id not in (select customer_id from raw.customers)"
            rules["unknown merchant"] = "merchant_id not in (select merchant_id from raw.merchants)"
        if table.name in REFERENCES:
            column, referenced = REFERENCES[table.name]
            rules["unknown transaction"] = (
                f"{column} not in (select {column} from raw.{referenced})"
                if self.exists(referenced)
                else "true"
            )
        selects = ", ".join(f"count(*) filter (where coalesce({sql}, false))" for sql in rules.values())
        found: dict[str, int] = {}
        for file, *counts in self.con.execute(
            f"select _file, {selects} from incoming group by _file"
        ).fetchall():
            found |= {f"{file}: {rule}": n for rule, n in zip(rules, counts, strict=True) if n}
        key = table.key
        duplicates = self.con.execute(
            f"select _file, count(*) from (select _file, {key} from incoming group by all "
            "having count(*) > 1) group by _file"
        ).fetchall()
        found |= {f"{file}: duplicate {key}": n for file, n in duplicates}
        across_files = self.con.execute(
            f"select count(*) from (select {key} from incoming group by {key} "
            "having count(distinct _file) > 1)"
        ).fetchone()
        if across_files and across_files[0]:
            found["key in two files"] = across_files[0]
        if table.name in UNIQUE_ACROSS_DAYS and self.exists(table.name):
            other_days = self.con.execute(
                f"select count(*) from incoming as i semi join raw.{table.name} as t on i.{key} = t.{key} "
                "and t._partition_date <> ?",
                [start],
            ).fetchone()
            if other_days and other_days[0]:
                found["key loaded on another day"] = other_days[0]
        return found

    def exists(self, table: str) -> bool:
        found = self.con.execute(
            "select count(*) from information_schema.tables where table_schema = 'raw' and table_name = ?",
            [table],
        ).fetchone()
        return bool(found and found[0])

    def ingest(self, table: RawTable, day: str, files: list[Path]) -> int:
        sound = []
        for path in files:
            failures = self.schema_failures(path, table)
            self.failures += [f"{path.name}: {failure}" for failure in failures]
            if not failures:
                sound.append(path)
        if not sound:
            return 0
        columns = ", ".join(f"{c}::{SQL_KINDS[kind]} as {c}" for c, kind in table.columns.items())
        self.con.execute(
            f"create or replace temp table incoming as select {columns}, parse_filename(filename) as _file "
            f"from read_parquet([{quoted(sound)}], filename = true, hive_partitioning = false)"
        )
        failures = self.content_failures(table, day)
        self.failures += [f"{table.name} {day} {what}: {n}" for what, n in failures.items()]
        if failures or len(sound) < len(files):
            return 0
        body = ", ".join(f"{c} {SQL_KINDS[kind]}" for c, kind in {**table.columns, **LOAD_COLUMNS}.items())
        self.con.execute(f"create table if not exists raw.{table.name} ({body})")
        self.con.execute("begin transaction")
        if table.partitioned:
            self.con.execute(
                f"delete from raw.{table.name} where _partition_date = ?", [date.fromisoformat(day)]
            )
        else:
            self.con.execute(f"delete from raw.{table.name}")
        loaded = self.con.execute(
            f"insert into raw.{table.name} by name select * exclude (_file), _file as _source_file, "
            "?::date as _partition_date, ?::timestamp as _loaded_at from incoming",
            [date.fromisoformat(day), datetime.now(UTC).replace(tzinfo=None)],
        ).fetchone()
        self.con.execute("commit")
        return int(loaded[0]) if loaded else 0


def bare_run(
    engine: BareEngine, landing, assets: list, partition_key: str | None, rows: dict[str, int]
) -> float:
    """The bare engine ingesting what one platform run ingests; its seconds."""
    started = time.perf_counter()
    for asset in assets:
        table = TABLES[asset.key.path[-1].removeprefix("raw_")]
        day = partition_key or landing.latest_snapshot_day(table.name)
        rows[table.name] += engine.ingest(table, day, landing.files(table.name, day))
    return time.perf_counter() - started


def plain_load(landing: Path, target: Path) -> float:
    """The previous benchmark's floor: DuckDB reading the same files, no checks, no partitions."""
    started = time.perf_counter()
    con = duckdb.connect(str(target))
    for table in TABLES:
        con.execute(f"create table {table} as select * from read_parquet('{landing}/{table}/*/*.parquet')")
    con.close()
    return time.perf_counter() - started


def fingerprint(path: Path) -> dict[str, list]:
    """Per raw table: rows, distinct keys, sum of amounts, fraud labels: the two warehouses must agree."""
    con = duckdb.connect(str(path), read_only=True)
    out = {}
    for name, table in TABLES.items():
        extra = {"transactions": "round(sum(amount), 2)", "labels": "sum(is_fraud::int)"}.get(name, "0")
        row = con.execute(f"select count(*), count(distinct {table.key}), {extra} from raw.{name}").fetchone()
        out[name] = [float(v) if v is not None else None for v in row or ()]
    con.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    data_arguments(parser, days=34)
    parser.add_argument("--label", default="after", help="the key this run is stored under in the JSON")
    parser.add_argument("--note", default="", help="what code was measured (e.g. a commit)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, DagsterInstance.ephemeral() as instance:
        state = Path(tmp)
        generate_s, generated = timed(lambda: generate(generator_config(args), state / "landing"))
        resources = build_resources(profile="local", state=state)
        landing = resources["landing_zone"]
        runs = ingestion_runs(landing)

        plain_s = plain_load(state / "landing", state / "plain.duckdb")

        # each run's bare counterpart just before it, so that the machine's drift (seconds here move by
        # 20% between minutes) weighs on both sides alike
        bare = BareEngine(state / "bare.duckdb")
        bare_rows = dict.fromkeys(TABLES, 0)
        bare_seconds = []
        landed_day = build_definitions(resources).resolve_job_def("landed_day")
        run_seconds = []
        failed_runs = []
        for label, selection, partition_key in runs:
            bare_seconds.append(bare_run(bare, landing, selection, partition_key, bare_rows))
            began = time.perf_counter()
            keys = [key for asset in selection for key in asset.keys]
            result = quiet_run(landed_day, instance, keys, partition_key)
            run_seconds.append(time.perf_counter() - began)
            if not result.success:
                failed_runs.append(label)
        bare.con.close()
        bare_s, bare_failures = sum(bare_seconds), bare.failures
        platform_s = sum(run_seconds)
        same = fingerprint(Path(resources["warehouse"].path)) == fingerprint(state / "bare.duckdb")

    rows = generated.rows["transactions"] + generated.rows["labels"]
    measured = {
        "note": args.note,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "platform_s": round(platform_s, 2),
        "platform_rows_per_s": round(rows / platform_s),
        "platform_runs": len(run_seconds),
        "platform_run_s": {
            "snapshots": round(run_seconds[0], 2),
            "day_median": round(sorted(run_seconds[1:])[len(run_seconds[1:]) // 2], 2),
            "day_max": round(max(run_seconds[1:]), 2),
        },
        "platform_failed_runs": failed_runs,
        "bare_sql_checks_s": round(bare_s, 2),
        "bare_failures": bare_failures,
        "ratio_platform_to_bare": round(platform_s / bare_s, 2),
        "plain_load_no_checks_s": round(plain_s, 2),
        "ratio_platform_to_plain_load": round(platform_s / plain_s, 1),
        "same_warehouse_content": same,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    data = {
        "transactions": generated.rows["transactions"],
        "labels": generated.rows["labels"],
        "bare_rows_loaded": bare_rows,
        "partitions": len(generated.days),
        "args": vars(args) | {"label": None, "note": None},
        "generate_s": round(generate_s, 2),
        "machine": f"{host.machine()}, {host.python_version()}",
    }
    keep_run(RESULTS, args.label, measured, data=data)
    print(json.dumps(measured, indent=2))


if __name__ == "__main__":
    main()
