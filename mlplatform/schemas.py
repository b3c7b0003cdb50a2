"""The raw tables' contract: what lands in the landing zone and what the warehouse's `raw` schema holds.

One definition serves the data generator, the Great Expectations suites and the loader, so they cannot
drift apart. Timestamps are UTC; the warehouse stores them as naive UTC `TIMESTAMP` (portable between
DuckDB and Postgres).
"""

from dataclasses import dataclass

# Partitioned tables land as data/landing/<table>/date=YYYY-MM-DD/*.parquet (CSV accepted);
# snapshots land the same way and the newest date folder is the current snapshot. Where the daily
# partitions start is configuration (`mlplatform.settings.partitions_start_date`); this date is only the
# generator's signup cut-off (every card holder signed up before it).
PARTITIONS_START_DATE = "2025-01-01"


@dataclass(frozen=True)
class RawTable:
    name: str
    columns: dict[str, str]  # column -> logical type: string | float | bool | timestamp | date
    key: str
    partitioned: bool
    partition_timestamp: str | None = None  # the column that must fall inside the file's date partition


TRANSACTIONS = RawTable(
    name="transactions",
    columns={
        "transaction_id": "string",
        "customer_id": "string",
        "merchant_id": "string",
        "amount": "float",
        "currency": "string",
        "channel": "string",
        "country": "string",
        "event_ts": "timestamp",
    },
    key="transaction_id",
    partitioned=True,
    partition_timestamp="event_ts",
)

LABELS = RawTable(
    name="labels",
    columns={"transaction_id": "string", "is_fraud": "bool", "reported_at": "timestamp"},
    key="transaction_id",
    partitioned=True,
    partition_timestamp="reported_at",
)

CUSTOMERS = RawTable(
    name="customers",
    columns={
        "customer_id": "string",
        "segment": "string",
        "region": "string",
        "home_country": "string",
        "signup_date": "date",
    },
    key="customer_id",
    partitioned=False,
)

MERCHANTS = RawTable(
    name="merchants",
    columns={
        "merchant_id": "string",
        "category": "string",
        "country": "string",
        "risk_tier": "string",
    },
    key="merchant_id",
    partitioned=False,
)

RAW_TABLES = {t.name: t for t in (TRANSACTIONS, LABELS, CUSTOMERS, MERCHANTS)}

# Value domains, shared by the generator and the expectations.
CHANNELS = ("pos", "online", "contactless", "atm")
CURRENCIES = ("EUR", "GBP", "USD", "CHF", "SEK", "PLN")
COUNTRIES = ("DE", "FR", "NL", "ES", "IT", "GB", "US", "CH", "SE", "PL")
SEGMENTS = ("mass", "affluent", "student", "business")
REGIONS = ("north", "south", "east", "west")
RISK_TIERS = ("low", "medium", "high")
MAX_AMOUNT = 50_000.0  # a single card transaction above this is a data error, not a purchase

# Columns the loader adds to every raw row (lineage back to the landing file).
LOAD_COLUMNS = {"_partition_date": "date", "_source_file": "string", "_loaded_at": "timestamp"}


# The ways a landed file can break this contract that the generator can write on purpose
# (`mlplatform generate-data --bad-file KIND`), each caught by a named check and quarantined
BAD_FILE_KINDS = (
    "missing_column",
    "wrong_type",
    "null_key",
    "duplicate_id",
    "out_of_range_amount",
    "timestamp_outside_partition",
    "unknown_customer",
    "empty_file",
    "unreadable_file",
)
