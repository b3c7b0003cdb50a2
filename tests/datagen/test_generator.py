"""The generator keeps the raw-table contract, is deterministic day by day, and its fraud is learnable."""

from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from threadpoolctl import threadpool_limits

from mlplatform import schemas
from mlplatform.datagen import DriftConfig, GeneratorConfig, generate

START = date(2025, 1, 1)
SMALL = GeneratorConfig(
    start_date=START, days=12, customers=300, merchants=40, transactions_per_day=400, seed=7
)
# Long enough for a time split: train on days 1-25, test on 26-35, the new fraud pattern from day 36 on.
DRIFT_START = START + timedelta(days=35)
LARGE = GeneratorConfig(
    start_date=START,
    days=45,
    customers=2_000,
    merchants=150,
    transactions_per_day=2_500,
    drift=DriftConfig(new_fraud_pattern=True, start_date=DRIFT_START),
)
ARROW_TYPES = {  # the contract's logical types as the later stages (Feast: microseconds, UTC) need them
    "string": pa.string(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "date": pa.date32(),
}
DAY = pd.Timedelta(days=1)


def read_table(landing: Path, table: str) -> pd.DataFrame:
    """Every landed file of a table, with the day of its partition."""
    frames = [
        pd.read_parquet(path).assign(partition=pd.Timestamp(path.parent.name.removeprefix("date="), tz="UTC"))
        for path in sorted((landing / table).glob("date=*/*.parquet"))
    ]
    return pd.concat(frames, ignore_index=True)


def landed_files(landing: Path) -> dict[str, pd.DataFrame]:
    return {str(p.relative_to(landing)): pd.read_parquet(p) for p in sorted(landing.rglob("*.parquet"))}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    landing = tmp_path_factory.mktemp("small") / "landing"
    return generate(SMALL, landing)


@pytest.fixture(scope="module")
def large(tmp_path_factory):
    landing = tmp_path_factory.mktemp("large") / "landing"
    generate(LARGE, landing)
    return labelled_transactions(landing)


def labelled_transactions(landing: Path) -> pd.DataFrame:
    customers = read_table(landing, "customers")[["customer_id", "home_country"]]
    merchants = read_table(landing, "merchants")[["merchant_id", "risk_tier", "category"]]
    labels = read_table(landing, "labels")[["transaction_id", "is_fraud", "reported_at"]]
    return (
        read_table(landing, "transactions")
        .merge(labels, on="transaction_id", how="left")
        .merge(customers, on="customer_id")
        .merge(merchants, on="merchant_id")
        .sort_values("event_ts", ignore_index=True)
    )


# --- layout and contract ----------------------------------------------------------------------------------


def test_writes_snapshots_once_and_one_transactions_file_per_day(small):
    landing = small.landing_dir
    days = [f"date={d}" for d in SMALL.days_generated]
    assert sorted(p.name for p in (landing / "transactions").iterdir()) == days
    assert [p.parent.name for p in (landing / "customers").rglob("*.parquet")] == [f"date={START}"]
    assert [p.parent.name for p in (landing / "merchants").rglob("*.parquet")] == [f"date={START}"]
    assert {p.name for p in (landing / "labels").iterdir()} <= set(days)
    assert sorted(small.files) == sorted(landing.rglob("*.parquet"))
    assert small.days == SMALL.days_generated


def test_summary_counts_match_the_files(small):
    for table in schemas.RAW_TABLES:
        assert small.rows[table] == len(read_table(small.landing_dir, table))
    transactions = read_table(small.landing_dir, "transactions")
    labels = read_table(small.landing_dir, "labels")
    reported_fraud = transactions.merge(labels, on="transaction_id")["is_fraud"].sum()
    assert 0 < reported_fraud <= small.fraud_rate * len(transactions)  # the rest is not reported yet


@pytest.mark.parametrize("table", schemas.RAW_TABLES.values(), ids=lambda t: t.name)
def test_every_file_has_exactly_the_contract_columns_and_types(small, table):
    expected = pa.schema([(column, ARROW_TYPES[kind]) for column, kind in table.columns.items()])
    files = list((small.landing_dir / table.name).rglob("*.parquet"))
    assert files
    for path in files:
        assert pq.read_schema(path).remove_metadata() == expected, path


def test_ids_are_unique_and_readable(small):
    customers = read_table(small.landing_dir, "customers")
    merchants = read_table(small.landing_dir, "merchants")
    transactions = read_table(small.landing_dir, "transactions")
    assert customers["customer_id"].str.fullmatch(r"C\d{6}").all() and customers["customer_id"].is_unique
    assert merchants["merchant_id"].str.fullmatch(r"M\d{5}").all() and merchants["merchant_id"].is_unique
    assert transactions["transaction_id"].is_unique
    day_of_id = pd.to_datetime(transactions["transaction_id"].str.extract(r"^T(\d{8})\d{7}$")[0], utc=True)
    assert (day_of_id == transactions["partition"]).all()
    assert read_table(small.landing_dir, "labels")["transaction_id"].is_unique


def test_values_stay_inside_their_domains(small):
    customers = read_table(small.landing_dir, "customers")
    merchants = read_table(small.landing_dir, "merchants")
    transactions = read_table(small.landing_dir, "transactions")
    assert customers["segment"].isin(schemas.SEGMENTS).all()
    assert customers["region"].isin(schemas.REGIONS).all()
    assert customers["home_country"].isin(schemas.COUNTRIES).all()
    assert (customers["signup_date"] < START).all()
    assert merchants["risk_tier"].isin(schemas.RISK_TIERS).all()
    assert merchants["country"].isin(schemas.COUNTRIES).all()
    assert transactions["channel"].isin(schemas.CHANNELS).all()
    assert transactions["currency"].isin(schemas.CURRENCIES).all()
    assert transactions["country"].isin(schemas.COUNTRIES).all()
    assert transactions["amount"].between(0, schemas.MAX_AMOUNT, inclusive="right").all()
    assert transactions["customer_id"].isin(customers["customer_id"]).all()
    assert transactions["merchant_id"].isin(merchants["merchant_id"]).all()
    assert transactions.notna().all().all()


def test_currency_is_the_card_holders_and_country_the_merchants(small):
    transactions = read_table(small.landing_dir, "transactions")
    customers = read_table(small.landing_dir, "customers").set_index("customer_id")
    merchants = read_table(small.landing_dir, "merchants").set_index("merchant_id")
    home = transactions["customer_id"].map(customers["home_country"])
    currency_of = {"DE": "EUR", "FR": "EUR", "NL": "EUR", "ES": "EUR", "IT": "EUR", "GB": "GBP", "US": "USD"}
    currency_of |= {"CH": "CHF", "SE": "SEK", "PL": "PLN"}
    assert (transactions["currency"] == home.map(currency_of)).all()
    assert (transactions["country"] == transactions["merchant_id"].map(merchants["country"])).all()
    assert 0.85 < (transactions["country"] == home).mean() < 0.99  # mostly at home, some travel


def test_timestamps_fall_inside_their_partition_day(small):
    transactions = read_table(small.landing_dir, "transactions")
    labels = read_table(small.landing_dir, "labels")
    assert (transactions["event_ts"].dt.floor("D") == transactions["partition"]).all()
    assert (labels["reported_at"].dt.floor("D") == labels["partition"]).all()


def test_labels_arrive_after_their_transaction_within_the_delay_bounds(large):
    labelled = large.dropna(subset=["is_fraud"])
    delay = labelled["reported_at"] - labelled["event_ts"]
    fraud = labelled["is_fraud"].astype(bool)
    assert delay[fraud].between(1 * DAY, 20 * DAY).all()
    assert delay[~fraud].between(5 * DAY, 10 * DAY).all()
    assert delay[fraud].median() < 7 * DAY  # chargebacks come mostly within the first week


def test_labels_only_cover_landed_transactions_reported_by_the_last_day(small, large):
    transactions = read_table(small.landing_dir, "transactions")
    labels = read_table(small.landing_dir, "labels")
    assert labels["transaction_id"].isin(transactions["transaction_id"]).all()
    assert labels["reported_at"].max() < pd.Timestamp(SMALL.days_generated[-1], tz="UTC") + DAY
    last_day_end = pd.Timestamp(LARGE.days_generated[-1], tz="UTC") + DAY
    must_have_arrived = large["event_ts"] + 20 * DAY < last_day_end
    assert large.loc[must_have_arrived, "is_fraud"].notna().all()
    assert large.loc[large["event_ts"] > last_day_end - DAY, "is_fraud"].isna().all()


# --- determinism ------------------------------------------------------------------------------------------


def test_the_same_config_gives_the_same_files(tmp_path):
    config = replace(SMALL, days=3)
    first, second = landed_files_of(config, tmp_path / "a"), landed_files_of(config, tmp_path / "b")
    assert first.keys() == second.keys()
    for name, frame in first.items():
        pd.testing.assert_frame_equal(frame, second[name])


def landed_files_of(config: GeneratorConfig, landing: Path) -> dict[str, pd.DataFrame]:
    generate(config, landing)
    return landed_files(landing)


def test_two_calls_give_the_same_days_and_labels_as_one(tmp_path):
    """Days 1-7, then days 8-10 with drift, equal days 1-10 with drift from day 8 in one call."""
    drift_day = START + timedelta(days=7)
    drift = DriftConfig(amount_shift=0.2, new_fraud_pattern=True, new_merchant_category=True)
    one_call = replace(SMALL, days=10, drift=replace(drift, start_date=drift_day))
    whole = landed_files_of(one_call, tmp_path / "one")
    generate(replace(SMALL, days=7), tmp_path / "two")
    in_two = landed_files_of(replace(SMALL, start_date=drift_day, days=3, drift=drift), tmp_path / "two")
    second_snapshots = {
        f"customers/date={drift_day}/customers.parquet",
        f"merchants/date={drift_day}/merchants.parquet",
    }
    assert in_two.keys() - second_snapshots == whole.keys()
    for name, frame in in_two.items():
        same_as = whole[name] if name in whole else whole[name.replace(str(drift_day), str(START))]
        pd.testing.assert_frame_equal(frame, same_as)
    late_labels = in_two[f"labels/date={drift_day + timedelta(days=2)}/labels.parquet"]["transaction_id"]
    assert (late_labels.str[1:9] < f"{drift_day:%Y%m%d}").any()  # labels for transactions of the first call


def test_the_population_depends_only_on_seed_and_sizes(tmp_path):
    other = replace(
        SMALL, start_date=date(2025, 3, 1), days=1, transactions_per_day=50, drift=DriftConfig(0.5)
    )
    generate(replace(SMALL, days=1), tmp_path / "a")
    generate(other, tmp_path / "b")
    for table in ("customers", "merchants"):
        first, second = read_table(tmp_path / "a", table), read_table(tmp_path / "b", table)
        pd.testing.assert_frame_equal(first.drop(columns="partition"), second.drop(columns="partition"))


def test_regenerating_overwrites_and_switching_format_leaves_no_twin(tmp_path):
    config = replace(SMALL, days=2)
    first = generate(config, tmp_path)
    assert generate(config, tmp_path).files == first.files
    as_csv = generate(replace(config, file_format="csv"), tmp_path)
    assert sorted(p for p in tmp_path.rglob("*.*")) == sorted(as_csv.files)


def test_csv_files_hold_the_same_rows_with_iso_utc_timestamps(tmp_path):
    config = replace(SMALL, days=2)
    generate(config, tmp_path / "parquet")
    summary = generate(replace(config, file_format="csv"), tmp_path / "csv")
    transactions = sorted(p for p in summary.files if p.parent.parent.name == "transactions")
    text = pd.read_csv(transactions[0], dtype=str)
    assert list(text.columns) == list(schemas.TRANSACTIONS.columns)
    assert text["event_ts"].str.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ").all()
    as_parquet = pd.read_parquet(
        tmp_path / "parquet" / transactions[0].relative_to(tmp_path / "csv").with_suffix(".parquet")
    )
    parsed = pd.read_csv(transactions[0], parse_dates=["event_ts"])
    pd.testing.assert_frame_equal(parsed, as_parquet, check_dtype=False)


@pytest.mark.parametrize(
    "change",
    [
        {"days": 0},
        {"customers": 0},
        {"merchants": 5},
        {"transactions_per_day": 0},
        {"fraud_rate": 0.7},
        {"seed": -1},
        {"file_format": "xlsx"},
    ],
)
def test_impossible_configs_are_rejected(change):
    with pytest.raises(ValueError, match="invalid GeneratorConfig"):
        replace(SMALL, **change)


def test_a_shift_that_would_make_amounts_negative_is_rejected():
    with pytest.raises(ValueError, match="amount_shift"):
        DriftConfig(amount_shift=-1.0)


# --- realism and drift ------------------------------------------------------------------------------------


def test_fraud_rate_is_close_to_the_configured_one(tmp_path, large):
    assert 0.012 < large["is_fraud"].mean() < 0.018
    summary = generate(replace(SMALL, fraud_rate=0.05, days=5), tmp_path)
    assert 0.035 < summary.fraud_rate < 0.065


def test_fraud_looks_different_from_everyday_spend(large):
    labelled = large.dropna(subset=["is_fraud"]).astype({"is_fraud": bool})
    before_drift = labelled[labelled["event_ts"] < pd.Timestamp(DRIFT_START, tz="UTC")]
    fraud = before_drift["is_fraud"]
    night = before_drift["event_ts"].dt.hour < 6
    foreign = before_drift["country"] != before_drift["home_country"]
    assert night[~fraud].mean() < 0.05 and night[fraud].mean() > 0.12
    assert foreign[~fraud].mean() < 0.10 and foreign[fraud].mean() > 0.25
    assert before_drift.loc[fraud, "amount"].median() > 2 * before_drift.loc[~fraud, "amount"].median()
    rate_by_tier = before_drift.groupby("risk_tier")["is_fraud"].mean()
    assert rate_by_tier["low"] < rate_by_tier["medium"] < rate_by_tier["high"]


def model_features(frame: pd.DataFrame, history: pd.DataFrame) -> pd.DataFrame:
    usual_amount = frame["customer_id"].map(history.groupby("customer_id")["amount"].mean())
    return pd.DataFrame(
        {
            "amount_ratio": frame["amount"] / usual_amount.fillna(history["amount"].mean()),
            "hour": frame["event_ts"].dt.hour,
            "is_foreign": frame["country"] != frame["home_country"],
            "risk_tier": frame["risk_tier"].map(schemas.RISK_TIERS.index),
            "channel": frame["channel"].map(schemas.CHANNELS.index),
        }
    )


def auc_by_period(large: pd.DataFrame) -> dict[str, float]:
    """Train on days 1-25, score days 26-35 (before the new fraud pattern) and 36-45 (with it)."""
    day = (large["event_ts"] - pd.Timestamp(START, tz="UTC")).dt.days
    train = large[day < 25]
    model = HistGradientBoostingClassifier(max_iter=100, random_state=0)
    model.fit(model_features(train, train), train["is_fraud"].astype(bool))
    periods = {"before_drift": large[(day >= 25) & (day < 35)], "after_drift": large[day >= 35]}
    aucs = {}
    for name, period in periods.items():
        period = period.dropna(subset=["is_fraud"])
        scores = model.predict_proba(model_features(period, train))[:, 1]
        aucs[name] = roc_auc_score(period["is_fraud"].astype(bool), scores)
    return aucs


@pytest.fixture(scope="module")
def aucs(large):
    with threadpool_limits(1):  # OpenMP sees the host's cores, not this container's: oversubscribed it crawls
        return auc_by_period(large)


def test_fraud_is_learnable_but_not_trivially_separable(aucs):
    assert 0.85 <= aucs["before_drift"] <= 0.995


def test_the_new_fraud_pattern_hurts_a_model_trained_before_it(aucs):
    assert aucs["after_drift"] < aucs["before_drift"] - 0.1


def test_the_new_fraud_pattern_is_small_domestic_in_shop_fraud(large):
    fraud = large[large["is_fraud"].eq(True)]
    in_shop_at_home = fraud["channel"].isin(["pos", "contactless"]) & (
        fraud["country"] == fraud["home_country"]
    )
    small_in_shop = in_shop_at_home & (fraud["amount"] < 30)
    after = fraud["event_ts"] >= pd.Timestamp(DRIFT_START, tz="UTC")
    assert small_in_shop[after].mean() > small_in_shop[~after].mean() + 0.2


def test_amount_shift_scales_amounts_from_its_start_date_only(tmp_path):
    shift_day = START + timedelta(days=2)
    base = replace(SMALL, days=4)
    generate(base, tmp_path / "base")
    generate(replace(base, drift=DriftConfig(amount_shift=0.3, start_date=shift_day)), tmp_path / "shifted")
    before = read_table(tmp_path / "base", "transactions")
    after = read_table(tmp_path / "shifted", "transactions")
    pd.testing.assert_frame_equal(before.drop(columns="amount"), after.drop(columns="amount"))
    shifted = before["event_ts"] >= pd.Timestamp(shift_day, tz="UTC")
    ratio = after["amount"] / before["amount"]
    assert (ratio[~shifted] == 1).all()
    assert ratio[shifted].median() == pytest.approx(1.3, abs=0.01)
    mean_ratio = after.loc[shifted, "amount"].mean() / before.loc[shifted, "amount"].mean()
    assert mean_ratio == pytest.approx(1.3, abs=0.02)


def test_the_new_merchant_category_only_trades_under_drift(tmp_path):
    config = replace(SMALL, days=3)
    generate(config, tmp_path / "base")
    generate(replace(config, drift=DriftConfig(new_merchant_category=True)), tmp_path / "drift")
    shares = {}
    for name in ("base", "drift"):
        merchants = read_table(tmp_path / name, "merchants").set_index("merchant_id")["category"]
        assert (merchants == "crypto_exchange").any()  # in the population from the start
        category = read_table(tmp_path / name, "transactions")["merchant_id"].map(merchants)
        shares[name] = (category == "crypto_exchange").mean()
    assert shares["base"] == 0
    assert 0.02 < shares["drift"] < 0.08
