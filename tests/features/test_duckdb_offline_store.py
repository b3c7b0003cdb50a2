"""The DuckDB offline store through Feast's own API, against a bare DuckDB ASOF join and Feast's file store.

Small hand-made sources cover what point-in-time retrieval must get right: events before any feature row,
rows older than the view's ttl, an event exactly at a row's timestamp, two rows with one timestamp (the one
created last wins), and two events with the same keys in the same second (each kept, with its own request
data)."""

from datetime import timedelta

import duckdb
import pandas as pd
import pyarrow as pa
import pytest
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, RequestSource, ValueType
from feast.data_source import DataSource
from feast.on_demand_feature_view import on_demand_feature_view
from feast.repo_config import RepoConfig
from feast.types import Float64, Int64, String, UnixTimestamp

from mlplatform.duckdb_offline_store import STORE_TYPE, connect

TTL = timedelta(days=2)
DAY = pd.Timestamp("2026-03-01")


def customer_rows() -> pd.DataFrame:
    """Daily rows for c1 (days 0-5) and c2 (day 0 only: expires after the ttl); c3 has none."""
    rows = [
        {
            "customer_id": "c1",
            "feature_ts": DAY + timedelta(days=d),
            "txn_count": d,
            "avg": d * 1.5,
            "home": "DE",
        }
        for d in range(6)
    ]
    rows.append({"customer_id": "c2", "feature_ts": DAY, "txn_count": 7, "avg": None, "home": "FR"})
    return pd.DataFrame(rows)


def merchant_rows() -> pd.DataFrame:
    """Two rows of m1 share a timestamp: the one created later is the valid one."""
    return pd.DataFrame(
        {
            "merchant_id": ["m1", "m1", "m1", "m2"],
            "feature_ts": [DAY, DAY + timedelta(days=1), DAY + timedelta(days=1), DAY + timedelta(days=3)],
            "created_ts": [DAY, DAY + timedelta(hours=1), DAY + timedelta(hours=2), DAY],
            "risk": [10, 20, 21, 30],
        }
    )


def events() -> pd.DataFrame:
    at = pd.to_datetime
    return pd.DataFrame(
        {
            "customer_id": ["c1", "c1", "c1", "c1", "c2", "c2", "c3", "c1"],
            "merchant_id": ["m1", "m1", "m2", "m2", "m1", "m1", "m1", "m2"],
            "event_timestamp": at(
                [
                    "2026-02-28 12:00:00",  # before any row of c1 and m1
                    "2026-03-02 00:00:00",  # exactly at a row of each
                    "2026-03-03 09:30:15",  # same keys, same second:
                    "2026-03-03 09:30:15",  #   two transactions, two rows
                    "2026-03-02 23:59:00",  # c2's day-0 row is within the ttl
                    "2026-03-03 00:01:00",  # ... and expired here
                    "2026-03-04 08:00:00",  # c3 has no rows at all
                    "2026-03-20 08:00:00",  # every row of c1 and m2 expired
                ],
                utc=True,
            ),
            "amount": [5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0],
        }
    )


def parquet_sources(tmp_path) -> dict[str, DataSource]:
    """The customer and merchant rows as parquet files, the sources of the local stores."""
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    customer_rows().to_parquet(data / "customers.parquet", index=False)
    merchant_rows().to_parquet(data / "merchants.parquet", index=False)
    return {
        "customers": FileSource(
            name="customers", path=str(data / "customers.parquet"), timestamp_field="feature_ts"
        ),
        "merchants": FileSource(
            name="merchants",
            path=str(data / "merchants.parquet"),
            timestamp_field="feature_ts",
            created_timestamp_column="created_ts",
        ),
    }


def build_store(tmp_path, offline_store: dict, sources: dict[str, DataSource] | None = None) -> FeatureStore:
    """The test's views on `sources` (by default `parquet_sources`) in a store with `offline_store`."""
    sources = sources or parquet_sources(tmp_path)
    folder = tmp_path / offline_store["type"].rsplit(".", 1)[-1]
    folder.mkdir()
    store = FeatureStore(
        config=RepoConfig(
            project="offline_store_test",
            provider="local",
            registry=str(folder / "registry.db"),
            online_store={"type": "sqlite", "path": str(folder / "online.db")},
            offline_store=offline_store,
            entity_key_serialization_version=3,
            repo_path=folder,
        )
    )
    customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.STRING)
    merchant = Entity(name="merchant", join_keys=["merchant_id"], value_type=ValueType.STRING)
    customer_stats = FeatureView(
        name="customer_stats",
        entities=[customer],
        ttl=TTL,
        schema=[
            Field(name="txn_count", dtype=Int64),
            Field(name="avg", dtype=Float64),
            Field(name="home", dtype=String),
        ],
        source=sources["customers"],
    )
    merchant_stats = FeatureView(
        name="merchant_stats",
        entities=[merchant],
        ttl=TTL,
        schema=[Field(name="risk", dtype=Int64)],
        source=sources["merchants"],
    )
    request = RequestSource(name="request", schema=[Field(name="amount", dtype=Float64)])

    @on_demand_feature_view(
        sources=[customer_stats, request], schema=[Field(name="amount_x2", dtype=Float64)], mode="python"
    )
    def doubled(inputs: dict) -> dict:
        return {"amount_x2": [a * 2 for a in inputs["amount"]]}

    clock = RequestSource(name="clock", schema=[Field(name="event_ts", dtype=UnixTimestamp)])

    @on_demand_feature_view(
        sources=[customer_stats, clock],
        schema=[Field(name="utc_hour", dtype=Int64), Field(name="avg_missing", dtype=Int64)],
        mode="python",
    )
    def local_clock(inputs: dict) -> dict:
        from datetime import UTC

        return {
            "utc_hour": [(at.astimezone(UTC) if at.tzinfo else at).hour for at in inputs["event_ts"]],
            "avg_missing": [int(avg is None) for avg in inputs["avg"]],
        }

    store.apply([customer, merchant, customer_stats, merchant_stats, request, clock, doubled, local_clock])
    return store


FEATURES = [
    "customer_stats:txn_count",
    "customer_stats:avg",
    "customer_stats:home",
    "merchant_stats:risk",
    "doubled:amount_x2",
]


def bare_asof(tmp_path) -> pd.DataFrame:
    """The reference: one DuckDB statement, independent of Feast."""
    data = tmp_path / "data"
    ttl = f"interval {TTL.days} days"
    c_fresh = f"c.feature_ts >= e.event_timestamp - {ttl}"
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    entity_rows = events().assign(row=range(len(events())))
    con.register("entity_rows", entity_rows)
    return con.execute(
        f"""
        select e.customer_id, e.merchant_id, e.event_timestamp, e.amount,
          case when {c_fresh} then c.txn_count end as customer_stats__txn_count,
          case when {c_fresh} then c.avg end as customer_stats__avg,
          case when {c_fresh} then c.home end as customer_stats__home,
          case when m.feature_ts >= e.event_timestamp - {ttl} then m.risk end as merchant_stats__risk,
          e.amount * 2 as doubled__amount_x2
        from entity_rows as e
        asof left join (select customer_id, feature_ts::timestamptz as feature_ts, txn_count, avg, home
                        from '{data}/customers.parquet') as c
          on c.customer_id = e.customer_id and e.event_timestamp >= c.feature_ts
        asof left join (select merchant_id, feature_ts::timestamptz as feature_ts, risk
                        from '{data}/merchants.parquet'
                        qualify row_number() over (
                          partition by merchant_id, feature_ts order by created_ts desc) = 1) as m
          on m.merchant_id = e.merchant_id and e.event_timestamp >= m.feature_ts
        order by e.row
        """
    ).df()


@pytest.fixture
def duckdb_store(tmp_path) -> FeatureStore:
    return build_store(tmp_path, {"type": STORE_TYPE})


def test_point_in_time_values_equal_a_bare_duckdb_asof_join(duckdb_store, tmp_path):
    by_feast = duckdb_store.get_historical_features(
        entity_df=events(), features=FEATURES, full_feature_names=True
    ).to_df()
    expected = bare_asof(tmp_path)
    assert list(by_feast.columns) == list(expected.columns)
    pd.testing.assert_frame_equal(by_feast, expected, check_dtype=False)

    # what the join must get right, spelled out
    assert by_feast["customer_stats__txn_count"].isna().tolist() == [
        True,
        False,
        False,
        False,
        False,
        True,
        True,
        True,
    ]
    assert by_feast["customer_stats__txn_count"][1] == 1  # the row stamped exactly at the event
    assert by_feast["merchant_stats__risk"].tolist()[1] == 21  # the later created of two rows
    assert by_feast["doubled__amount_x2"][2:4].tolist() == [14.0, 16.0]  # same second, own request data
    assert by_feast["customer_stats__home"][4] == "FR" and pd.isna(by_feast["customer_stats__avg"][4])


def test_on_demand_views_get_python_values_as_online(duckdb_store):
    """A python-mode view runs through Feast's `transform_dict` on Python values, as it does online: an event
    time in any zone arrives as the same instant (naive UTC), a missing feature as None; its answers equal
    Feast's own arrow path on the same inputs."""
    rows = events().assign(event_ts=events()["event_timestamp"].dt.tz_convert("Asia/Kolkata"))
    got = duckdb_store.get_historical_features(
        entity_df=rows, features=["local_clock:utc_hour", "local_clock:avg_missing"], full_feature_names=True
    ).to_df()
    assert got["local_clock__utc_hour"].tolist() == [12, 0, 9, 9, 23, 0, 8, 8]
    assert got["local_clock__avg_missing"].tolist() == [1, 0, 0, 0, 1, 1, 1, 1]

    view = duckdb_store.get_on_demand_feature_view("local_clock")
    inputs = pa.Table.from_pandas(
        duckdb_store.get_historical_features(entity_df=rows, features=["customer_stats:avg"]).to_df()[
            ["event_ts", "avg"]
        ]
    )
    by_feast = view.transform_arrow(inputs, full_feature_names=True).to_pandas()
    assert by_feast["local_clock__utc_hour"].tolist() == got["local_clock__utc_hour"].tolist()
    assert by_feast["local_clock__avg_missing"].tolist() == got["local_clock__avg_missing"].tolist()


def test_short_feature_names(duckdb_store):
    short = duckdb_store.get_historical_features(
        entity_df=events(), features=["customer_stats:txn_count"]
    ).to_df()
    assert list(short.columns) == [*events().columns, "txn_count"]
    assert short["txn_count"].tolist()[1:4] == [1, 2, 2]


def test_agrees_with_feasts_file_store_where_that_store_keeps_the_event(duckdb_store, tmp_path):
    """Feast's file (dask) store is the reference semantics; it drops or merges some events, so the
    comparison is on the events it returns."""
    file_store = build_store(tmp_path, {"type": "file"})
    features = [f for f in FEATURES if not f.startswith("doubled")]
    unique = events().drop_duplicates(["customer_id", "merchant_id", "event_timestamp"])
    by_file = file_store.get_historical_features(
        entity_df=unique, features=features, full_feature_names=True
    ).to_df()
    by_duckdb = duckdb_store.get_historical_features(
        entity_df=unique, features=features, full_feature_names=True
    ).to_df()
    keys = ["customer_id", "merchant_id", "event_timestamp"]
    compared = by_file.merge(by_duckdb, on=keys, suffixes=("_file", "_duckdb"))
    assert len(compared) == len(by_file) >= 2
    assert len(by_duckdb) == len(unique) > len(by_file)  # the file store drops events the DuckDB store keeps
    for feature in (f.replace(":", "__") for f in features):
        pd.testing.assert_series_equal(
            compared[f"{feature}_file"], compared[f"{feature}_duckdb"], check_dtype=False, check_names=False
        )


def test_materialization_loads_each_entitys_newest_row(duckdb_store):
    duckdb_store.materialize(start_date=DAY - timedelta(days=1), end_date=DAY + timedelta(days=10))
    online = duckdb_store.get_online_features(
        features=["customer_stats:txn_count", "merchant_stats:risk"],
        entity_rows=[{"customer_id": "c1", "merchant_id": "m1"}, {"customer_id": "c2", "merchant_id": "m2"}],
    ).to_dict()
    assert online["txn_count"] == [5, 7]
    assert online["risk"] == [21, 30]


def test_the_local_profile_and_the_cli_configuration_name_this_store(tmp_path):
    import yaml

    from mlplatform.features.cli_config import write_cli_config
    from mlplatform.resources.feature_store import LocalFeastFeatureStore

    local = LocalFeastFeatureStore(state_dir=str(tmp_path), duckdb_memory_limit="1GB")
    assert local.store_config()["offline_store"]["type"] == STORE_TYPE
    config = local.repo_config()
    assert config.offline_store.type == STORE_TYPE
    # its joins stay inside the profile's memory limit and spill into the state folder beyond it
    with connect(config) as con:
        settings = "select current_setting('memory_limit'), current_setting('temp_directory')"
        limit, spill = con.execute(settings).fetchone()
    assert limit == "953.6 MiB"
    assert spill == str(tmp_path / "feast" / "spill")
    cli = yaml.safe_load(write_cli_config(tmp_path / "feature_repo").read_text())
    assert cli["offline_store"]["type"] == STORE_TYPE
