"""Seeded synthetic card-transaction fraud data, landed like real daily drops.

Every random draw comes from a generator seeded by (seed, what is drawn): the population by the seed
alone, a day's transactions by (seed, day). Any day can therefore be re-simulated on its own, so a later
call extends the history, or writes the labels that arrive for transactions an earlier call landed,
without ever contradicting it.
"""

import os
from dataclasses import dataclass, field
from datetime import date, timedelta
from enum import IntEnum
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mlplatform import schemas

SECONDS_PER_DAY = 86_400
FRAUD_LABEL_DELAY_DAYS = (1, 20)  # chargebacks: days after the transaction, skewed towards the first week
LEGIT_LABEL_DELAY_DAYS = (5, 10)  # a purchase nobody disputed is confirmed after this many days
MAX_LABEL_DELAY_DAYS = max(FRAUD_LABEL_DELAY_DAYS[1], LEGIT_LABEL_DELAY_DAYS[1])
BAD_FILE_SEQUENCE_START = 9_000_000  # transaction sequence numbers from here on are reserved for bad files
SIGNUP_CUTOFF = date.fromisoformat(schemas.PARTITIONS_START_DATE)  # every card holder signed up before it
NEW_CATEGORY = "crypto_exchange"

COUNTRY_CURRENCY = {
    "DE": "EUR", "FR": "EUR", "NL": "EUR", "ES": "EUR", "IT": "EUR",
    "GB": "GBP", "US": "USD", "CH": "CHF", "SE": "SEK", "PL": "PLN",
}  # fmt: skip
UNITS_PER_EUR = {"EUR": 1.0, "GBP": 0.85, "USD": 1.08, "CHF": 0.95, "SEK": 11.3, "PLN": 4.3}

HOME_COUNTRY_WEIGHTS = {
    "DE": 0.32, "FR": 0.22, "NL": 0.14, "ES": 0.10, "IT": 0.10,
    "GB": 0.04, "CH": 0.03, "SE": 0.02, "PL": 0.02, "US": 0.01,
}  # fmt: skip
MERCHANT_COUNTRY_WEIGHTS = {
    "DE": 0.24, "FR": 0.18, "NL": 0.10, "ES": 0.11, "IT": 0.11,
    "GB": 0.08, "US": 0.08, "CH": 0.04, "SE": 0.03, "PL": 0.03,
}  # fmt: skip
TRAVEL_DESTINATION_WEIGHTS = {
    "ES": 0.22, "IT": 0.18, "FR": 0.16, "GB": 0.10, "US": 0.10,
    "DE": 0.08, "NL": 0.05, "CH": 0.05, "SE": 0.03, "PL": 0.03,
}  # fmt: skip
FRAUD_DESTINATION_WEIGHTS = {
    "US": 0.35, "GB": 0.20, "NL": 0.08, "ES": 0.07, "PL": 0.07,
    "FR": 0.06, "IT": 0.06, "DE": 0.05, "CH": 0.03, "SE": 0.03,
}  # fmt: skip

SEGMENT_WEIGHTS = {"mass": 0.60, "affluent": 0.15, "student": 0.15, "business": 0.10}
SEGMENT_SPEND = {"mass": 1.0, "affluent": 2.2, "student": 0.6, "business": 1.6}
SEGMENT_ACTIVITY = {"mass": 1.0, "affluent": 1.2, "student": 1.1, "business": 1.6}
SEGMENT_FOREIGN_SHARE = {"mass": 0.03, "affluent": 0.07, "student": 0.04, "business": 0.10}

RISK_TIER_FRAUD_WEIGHT = np.array([0.3, 1.0, 3.0])  # low, medium, high: how much fraudsters favour a tier

# Relative transaction volume per hour of the day (UTC), and per weekday (Monday first; mean 1).
WEEKDAY_HOURS = np.array([0.6, 0.3, 0.2, 0.2, 0.3, 0.8, 2.0, 4.0, 5.0, 5.0, 5.5, 6.5,
                          7.5, 6.5, 5.5, 5.5, 6.5, 7.5, 7.5, 6.5, 5.0, 3.5, 2.2, 1.2])  # fmt: skip
WEEKEND_HOURS = np.array([1.2, 0.7, 0.4, 0.3, 0.3, 0.4, 0.8, 1.6, 3.0, 4.5, 6.0, 7.0,
                          7.5, 7.5, 7.0, 6.5, 6.5, 7.0, 7.0, 6.5, 5.5, 4.5, 3.0, 2.0])  # fmt: skip
FRAUD_HOURS = np.array([4.0, 4.0, 4.0, 3.5, 3.0, 2.5, 2.0, 2.0, 2.5, 3.0, 3.5, 4.0,
                        4.0, 4.0, 4.0, 4.0, 4.0, 4.5, 4.5, 5.0, 5.0, 5.0, 5.0, 4.5])  # fmt: skip
WEEKDAY_VOLUME = (0.95, 0.97, 0.98, 1.00, 1.08, 1.12, 0.90)

BURST_SIZES = (2, 5)  # a compromised card is used this many times (inclusive) within a few hours
BURST_GAP_MINUTES = 35.0  # mean time between two uses of a compromised card
LEGIT_AMOUNT_SIGMA = 0.7  # log-scale spread of one customer's legitimate amounts in a category
NEW_CATEGORY_FRAUD_SHARE = 0.15  # share of fraud that moves to the new category when it trades


@dataclass(frozen=True)
class MerchantCategory:
    name: str
    merchant_share: float  # share of merchants
    popularity: float  # share of legitimate transactions (for the new category: once it trades)
    typical_amount_eur: float  # median legitimate amount for a customer of average spend
    fraud_appeal: float  # relative attractiveness to fraudsters with a stolen card
    risk_mix: tuple[float, float, float]  # probability of each schemas.RISK_TIERS
    channel_mix: tuple[float, float, float, float]  # probability of each schemas.CHANNELS (legitimate)


CATEGORIES = (
    MerchantCategory("grocery", 0.22, 0.30, 35, 0.2, (0.85, 0.13, 0.02), (0.42, 0.06, 0.50, 0.02)),
    MerchantCategory("restaurants", 0.20, 0.18, 30, 0.3, (0.70, 0.25, 0.05), (0.40, 0.05, 0.55, 0.00)),
    MerchantCategory("fuel", 0.10, 0.12, 55, 0.6, (0.75, 0.20, 0.05), (0.55, 0.00, 0.40, 0.05)),
    MerchantCategory("fashion", 0.14, 0.12, 70, 1.0, (0.50, 0.40, 0.10), (0.40, 0.35, 0.25, 0.00)),
    MerchantCategory("electronics", 0.08, 0.07, 220, 3.0, (0.20, 0.45, 0.35), (0.35, 0.60, 0.05, 0.00)),
    MerchantCategory("travel", 0.07, 0.06, 300, 2.5, (0.25, 0.40, 0.35), (0.15, 0.80, 0.05, 0.00)),
    MerchantCategory("digital_goods", 0.08, 0.08, 15, 3.0, (0.15, 0.40, 0.45), (0.00, 1.00, 0.00, 0.00)),
    MerchantCategory("gaming", 0.08, 0.07, 25, 3.0, (0.15, 0.35, 0.50), (0.00, 1.00, 0.00, 0.00)),
    MerchantCategory(NEW_CATEGORY, 0.03, 0.04, 400, 3.0, (0.00, 0.20, 0.80), (0.00, 1.00, 0.00, 0.00)),
)
CATEGORY_INDEX = {c.name: i for i, c in enumerate(CATEGORIES)}
CONFIG_LIMITS = {
    "days": (1, 36_500),
    "customers": (1, 999_999),  # ids have six digits
    # at least a grocer per country and a merchant of every other category; ids have five digits
    "merchants": (len(schemas.COUNTRIES) + len(CATEGORIES) - 1, 99_999),
    "transactions_per_day": (1, 1_000_000),  # keeps daily sequence numbers far below BAD_FILE_SEQUENCE_START
    "seed": (0, 2**63 - 1),
}


class BurstKind(IntEnum):
    """The forms fraud takes: a stolen card cashed out, a card tested online, a card tested in shops."""

    CASH_OUT = 0
    ONLINE_TESTING = 1
    SHOP_TESTING = 2  # the new pattern: it looks like everyday domestic spend


BURST_KIND_MIX = {False: (0.85, 0.15, 0.0), True: (0.50, 0.10, 0.40)}  # keyed by new_fraud_pattern
BURST_FOREIGN_SHARE = np.array([0.40, 0.0, 0.0])  # testing happens at home or online
BURST_HOURS = (FRAUD_HOURS, np.ones(24), WEEKDAY_HOURS)
SHOP_TESTING_CATEGORIES = ("grocery", "restaurants", "fuel", "fashion")
ONLINE_TESTING_CATEGORIES = ("digital_goods", "gaming")
CASH_OUT_CHANNEL_TILT = np.array([0.6, 2.5, 0.3, 6.0])  # fraudsters prefer online and cash machines


class Stream(IntEnum):
    """What a random generator draws; part of its seed so that the streams stay independent."""

    CUSTOMERS = 1
    MERCHANTS = 2
    LEGIT = 3
    FRAUD = 4
    NEW_CATEGORY = 5
    LABELS = 6


@dataclass(frozen=True)
class DriftConfig:
    amount_shift: float = 0.0  # relative shift of all amounts, e.g. 0.3 = +30%
    new_fraud_pattern: bool = False  # small-amount card testing in shops, domestic, daytime
    new_merchant_category: bool = False  # crypto_exchange merchants start transacting
    start_date: date | None = None  # drift applies to days >= this date (None = every generated day)

    def __post_init__(self) -> None:
        if self.amount_shift <= -1:
            raise ValueError(f"amount_shift must be > -1 (amounts stay positive), got {self.amount_shift}")


NO_DRIFT = DriftConfig()


@dataclass(frozen=True)
class GeneratorConfig:
    start_date: date
    days: int = 30
    customers: int = 2_000
    merchants: int = 300
    transactions_per_day: int = 3_000
    fraud_rate: float = 0.015  # share of transactions that are fraud (approximately)
    seed: int = 42
    drift: DriftConfig = field(default_factory=DriftConfig)
    file_format: Literal["parquet", "csv"] = "parquet"

    def __post_init__(self) -> None:
        errors = [
            f"{name} must be in {low}..{high}, got {getattr(self, name)}"
            for name, (low, high) in CONFIG_LIMITS.items()
            if not low <= getattr(self, name) <= high
        ]
        if not 0 <= self.fraud_rate < 0.5:
            errors.append(f"fraud_rate must be in [0, 0.5), got {self.fraud_rate}")
        if self.file_format not in ("parquet", "csv"):
            errors.append(f"file_format must be parquet or csv, got {self.file_format!r}")
        if errors:
            raise ValueError("invalid GeneratorConfig: " + "; ".join(errors))

    @property
    def days_generated(self) -> list[date]:
        return [self.start_date + timedelta(days=i) for i in range(self.days)]

    def drift_on(self, day: date) -> DriftConfig:
        """The drift in force on `day`: it starts at drift.start_date, or with the generated days."""
        return self.drift if day >= (self.drift.start_date or self.start_date) else NO_DRIFT


@dataclass(frozen=True)
class GenerationSummary:
    landing_dir: Path
    days: list[date]
    rows: dict[str, int]  # table -> rows written
    files: list[Path]
    fraud_rate: float  # observed, over the written transactions


@dataclass(frozen=True, eq=False)
class Population:
    """Card holders and merchants: the landed snapshots plus the hidden traits that drive behaviour."""

    customers: pd.DataFrame
    merchants: pd.DataFrame
    home_country: np.ndarray  # index into schemas.COUNTRIES
    spend_level: np.ndarray  # multiplier on a category's typical amount
    activity: np.ndarray  # probability that a transaction is this customer's (sums to 1)
    foreign_share: np.ndarray  # share of this customer's legitimate spend abroad
    merchant_country: np.ndarray  # index into schemas.COUNTRIES
    merchant_category: np.ndarray  # index into CATEGORIES
    merchant_risk: np.ndarray  # index into schemas.RISK_TIERS
    merchant_popularity: np.ndarray  # relative share of legitimate transactions

    @property
    def customer_currency(self) -> np.ndarray:
        currency_of_country = np.array([COUNTRY_CURRENCY[c] for c in schemas.COUNTRIES])
        return currency_of_country[self.home_country]


class MerchantSampler:
    """Draws, for each transaction, a merchant in a given country with given weights (one searchsorted).

    Merchants are sorted by country and keyed by `country index + cumulative weight share within the
    country`, so `country + uniform` lands on a merchant of that country in proportion to its weight.
    Every requested country must hold a merchant of positive weight.
    """

    def __init__(self, merchant_country: np.ndarray, weights: np.ndarray) -> None:
        candidates = np.flatnonzero(weights > 0)
        self.merchants = candidates[np.argsort(merchant_country[candidates], kind="stable")]
        country = merchant_country[self.merchants]
        cumulative = np.cumsum(weights[self.merchants])
        country_start = np.searchsorted(country, country, side="left")
        before_country = np.where(country_start > 0, cumulative[country_start - 1], 0.0)
        country_total = np.bincount(country, weights=weights[self.merchants])[country]
        share = (cumulative - before_country) / country_total
        share[np.r_[country[1:] != country[:-1], True]] = 1.0  # close every country exactly
        self.keys = country + share

    def sample(self, rng: np.random.Generator, country: np.ndarray) -> np.ndarray:
        uniform = np.minimum(rng.random(len(country)), 1 - 1e-9)
        return self.merchants[np.searchsorted(self.keys, country + uniform, side="right")]


def generate(config: GeneratorConfig, landing_dir: Path) -> GenerationSummary:
    """Write the population snapshots, one transactions file per day and the labels reported by then.

    Labels reported during the generated days for transactions of earlier days that already landed in
    `landing_dir` (up to MAX_LABEL_DELAY_DAYS back) are written too: those days are re-simulated, not
    re-written, so generating day by day gives the same landing zone as generating all days at once.
    """
    landing_dir, days, file_format = Path(landing_dir), config.days_generated, config.file_format
    population = build_population(config.seed, config.customers, config.merchants)
    files = [
        write_table(population.customers, schemas.CUSTOMERS, landing_dir, config.start_date, file_format),
        write_table(population.merchants, schemas.MERCHANTS, landing_dir, config.start_date, file_format),
    ]
    is_fraud, labels = [], []
    for day in landed_days_with_pending_labels(landing_dir, config) + days:
        simulated = simulate_day(population, config, day)
        if day >= config.start_date:
            files.append(write_table(simulated, schemas.TRANSACTIONS, landing_dir, day, file_format))
            is_fraud.append(simulated["is_fraud"].to_numpy())
        labels.append(labels_reported_between(simulated, days[0], days[-1]))
    all_labels = pd.concat(labels, ignore_index=True)
    files += write_labels(all_labels, landing_dir, file_format)
    written_fraud = np.concatenate(is_fraud)
    rows = {
        "customers": config.customers,
        "merchants": config.merchants,
        "transactions": len(written_fraud),
        "labels": len(all_labels),
    }
    return GenerationSummary(landing_dir, days, rows, files, float(written_fraud.mean()))


def write_labels(labels: pd.DataFrame, landing_dir: Path, file_format: str) -> list[Path]:
    """One file per day of reporting, in the order the labels were reported."""
    labels = labels.sort_values("reported_at", kind="stable", ignore_index=True)
    by_report_day = labels.groupby(labels["reported_at"].dt.floor("D"), sort=True)
    return [
        write_table(frame, schemas.LABELS, landing_dir, day.date(), file_format)
        for day, frame in by_report_day
    ]


def landed_days_with_pending_labels(landing_dir: Path, config: GeneratorConfig) -> list[date]:
    """Days before the generated ones whose transactions landed and may still get labels reported."""
    earlier = [config.start_date - timedelta(days=d) for d in range(MAX_LABEL_DELAY_DAYS, 0, -1)]
    return [day for day in earlier if find_landed_file(landing_dir, "transactions", day) is not None]


def find_landed_file(landing_dir: Path, table: str, day: date) -> Path | None:
    """The generator's own file for a table and day, if one landed (bad files are not considered)."""
    folder = partition_dir(landing_dir, table, day)
    return next((p for p in (folder / f"{table}.parquet", folder / f"{table}.csv") if p.is_file()), None)


def labels_reported_between(simulated: pd.DataFrame, first: date, last: date) -> pd.DataFrame:
    report_day = simulated["reported_at"].dt.floor("D")
    reported = (report_day >= pd.Timestamp(first, tz="UTC")) & (report_day <= pd.Timestamp(last, tz="UTC"))
    return simulated.loc[reported, list(schemas.LABELS.columns)]


def daily_count(transactions_per_day: int, weekday: int) -> int:
    return round(transactions_per_day * WEEKDAY_VOLUME[weekday])


def seeded(seed: int, stream: Stream, day: date | None = None) -> np.random.Generator:
    """A generator for one stream; population streams use ordinal 0, which no day has."""
    return np.random.default_rng([seed, day.toordinal() if day else 0, stream])


# --- population ---------------------------------------------------------------------------------------


def build_population(seed: int, customers: int, merchants: int) -> Population:
    """Customers depend only on (seed, customers), merchants only on (seed, merchants)."""
    customer_frame, traits = build_customers(seeded(seed, Stream.CUSTOMERS), customers)
    merchant_frame, merchant_traits = build_merchants(seeded(seed, Stream.MERCHANTS), merchants)
    return Population(customer_frame, merchant_frame, **traits, **merchant_traits)


def build_customers(rng: np.random.Generator, n: int) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    segment = rng.choice(len(schemas.SEGMENTS), n, p=weights(SEGMENT_WEIGHTS, schemas.SEGMENTS))
    region = rng.integers(0, len(schemas.REGIONS), n)
    home_country = rng.choice(len(schemas.COUNTRIES), n, p=weights(HOME_COUNTRY_WEIGHTS, schemas.COUNTRIES))
    days_before_cutoff = rng.integers(1, 8 * 365, n).astype("timedelta64[D]")
    signup = (np.datetime64(SIGNUP_CUTOFF) - days_before_cutoff).astype(object)
    spend_level = per_segment(SEGMENT_SPEND, segment) * rng.lognormal(0.0, 0.5, n)
    activity = per_segment(SEGMENT_ACTIVITY, segment) * rng.lognormal(0.0, 1.0, n)
    mean_foreign = per_segment(SEGMENT_FOREIGN_SHARE, segment)
    foreign_share = rng.beta(0.5, 0.5 * (1 - mean_foreign) / mean_foreign)  # most never, a few often
    frame = pd.DataFrame(
        {
            "customer_id": numbered_ids("C", n, 6),
            "segment": np.array(schemas.SEGMENTS)[segment],
            "region": np.array(schemas.REGIONS)[region],
            "home_country": np.array(schemas.COUNTRIES)[home_country],
            "signup_date": signup,
        }
    )
    traits = {
        "home_country": home_country,
        "spend_level": spend_level,
        "activity": activity / activity.sum(),
        "foreign_share": foreign_share,
    }
    return frame, traits


def build_merchants(rng: np.random.Generator, n: int) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Crypto exchanges are part of the population from the start but only trade under drift."""
    n_new = max(1, round(CATEGORIES[CATEGORY_INDEX[NEW_CATEGORY]].merchant_share * n))
    established = np.array([i for i, c in enumerate(CATEGORIES) if c.name != NEW_CATEGORY])
    shares = np.array([CATEGORIES[i].merchant_share for i in established])
    category = np.r_[
        rng.choice(established, n - n_new, p=shares / shares.sum()),
        np.full(n_new, CATEGORY_INDEX[NEW_CATEGORY]),
    ]
    country = rng.choice(len(schemas.COUNTRIES), n, p=weights(MERCHANT_COUNTRY_WEIGHTS, schemas.COUNTRIES))
    # a grocer in every country and every category somewhere: each kind of purchase is always possible
    others = [i for i in established if CATEGORIES[i].name != "grocery"]
    guaranteed = np.r_[np.full(len(schemas.COUNTRIES), CATEGORY_INDEX["grocery"]), others]
    category[: len(guaranteed)] = guaranteed
    country[: len(schemas.COUNTRIES)] = np.arange(len(schemas.COUNTRIES))
    risk = pick_per_row(rng, np.array([c.risk_mix for c in CATEGORIES])[category])
    per_merchant = np.array([c.popularity / c.merchant_share for c in CATEGORIES])[category]
    frame = pd.DataFrame(
        {
            "merchant_id": numbered_ids("M", n, 5),
            "category": np.array([c.name for c in CATEGORIES])[category],
            "country": np.array(schemas.COUNTRIES)[country],
            "risk_tier": np.array(schemas.RISK_TIERS)[risk],
        }
    )
    traits = {
        "merchant_country": country,
        "merchant_category": category,
        "merchant_risk": risk,
        "merchant_popularity": per_merchant * rng.lognormal(0.0, 0.8, n),
    }
    return frame, traits


def weights(mapping: dict[str, float], domain: tuple[str, ...]) -> np.ndarray:
    """Probabilities in the order of a schemas domain (which must cover every key)."""
    unknown = set(mapping) - set(domain)
    if unknown:
        raise ValueError(f"{sorted(unknown)} not in the schema domain {domain}")
    values = np.array([mapping.get(v, 0.0) for v in domain])
    return values / values.sum()


def per_segment(mapping: dict[str, float], segment: np.ndarray) -> np.ndarray:
    return np.array([mapping[s] for s in schemas.SEGMENTS])[segment]


def numbered_ids(prefix: str, n: int, width: int, first: int = 1) -> np.ndarray:
    """`prefix` + zero-padded numbers `first`, `first + 1`, ...: readable ids that sort in creation order."""
    numbers = np.arange(first, first + n).astype(str)
    return np.char.add(prefix, np.char.zfill(numbers, width)).astype(object)


def pick_per_row(rng: np.random.Generator, probabilities: np.ndarray) -> np.ndarray:
    """One categorical draw per row of an (unnormalised) probability matrix."""
    cumulative = probabilities.cumsum(axis=1)
    uniform = rng.random(len(probabilities))[:, None] * cumulative[:, -1:]
    return (uniform >= cumulative).sum(axis=1)


def destination_matrix(mapping: dict[str, float]) -> np.ndarray:
    """Row h: where someone from country h goes abroad (never h itself)."""
    matrix = np.tile(weights(mapping, schemas.COUNTRIES), (len(schemas.COUNTRIES), 1))
    np.fill_diagonal(matrix, 0.0)
    return matrix


# --- one day --------------------------------------------------------------------------------------------


def simulate_day(population: Population, config: GeneratorConfig, day: date) -> pd.DataFrame:
    """The day's transactions with their label (is_fraud, reported_at), sorted by time.

    Depends only on the seed, the population, the day and the drift in force that day.
    """
    drift = config.drift_on(day)
    n_total = daily_count(config.transactions_per_day, day.weekday())
    fraud_rng = seeded(config.seed, Stream.FRAUD, day)
    fraud = fraud_transactions(fraud_rng, population, n_total * config.fraud_rate, drift.new_fraud_pattern)
    n_legit = max(n_total - len(fraud), 0)
    legit = legit_transactions(seeded(config.seed, Stream.LEGIT, day), population, n_legit, day)
    drawn = pd.concat([legit, fraud], ignore_index=True)
    if drift.new_merchant_category:
        drawn = move_to_new_category(seeded(config.seed, Stream.NEW_CATEGORY, day), population, drawn)
    drawn["amount_eur"] *= 1 + drift.amount_shift
    drawn["report_delay_s"] = report_delays(seeded(config.seed, Stream.LABELS, day), drawn["is_fraud"])
    drawn = drawn.sort_values("second", kind="stable", ignore_index=True)
    return landed_form(population, drawn, day)


def hour_profile(day: date) -> np.ndarray:
    return WEEKEND_HOURS if day.weekday() >= 5 else WEEKDAY_HOURS


def seconds_in_hours(rng: np.random.Generator, hour_weights: np.ndarray, n: int) -> np.ndarray:
    hours = rng.choice(24, n, p=hour_weights / hour_weights.sum())
    return hours * 3600 + rng.integers(0, 3600, n)


def legit_transactions(rng: np.random.Generator, population: Population, n: int, day: date) -> pd.DataFrame:
    """Everyday spend: mostly at home, in the customer's usual range, following the daily rhythm."""
    customer = rng.choice(len(population.activity), n, p=population.activity)
    home = population.home_country[customer]
    abroad = rng.random(n) < population.foreign_share[customer]
    destination = pick_per_row(rng, destination_matrix(TRAVEL_DESTINATION_WEIGHTS)[home])
    trading = population.merchant_category != CATEGORY_INDEX[NEW_CATEGORY]
    merchant = MerchantSampler(population.merchant_country, population.merchant_popularity * trading).sample(
        rng, np.where(abroad, destination, home)
    )
    category = population.merchant_category[merchant]
    typical = np.array([c.typical_amount_eur for c in CATEGORIES])[category]
    return pd.DataFrame(
        {
            "customer": customer,
            "merchant": merchant,
            "channel": pick_per_row(rng, np.array([c.channel_mix for c in CATEGORIES])[category]),
            "amount_eur": typical
            * population.spend_level[customer]
            * rng.lognormal(0.0, LEGIT_AMOUNT_SIGMA, n),
            "second": seconds_in_hours(rng, hour_profile(day), n),
            "is_fraud": False,
        }
    )


def fraud_transactions(
    rng: np.random.Generator, population: Population, expected_count: float, new_pattern: bool
) -> pd.DataFrame:
    """Compromised cards, each used in a burst of a few transactions within hours."""
    n_bursts = rng.poisson(expected_count / np.mean(BURST_SIZES))
    size = rng.integers(BURST_SIZES[0], BURST_SIZES[1] + 1, n_bursts)
    kind = rng.choice(len(BurstKind), n_bursts, p=BURST_KIND_MIX[new_pattern])
    customer = rng.choice(len(population.activity), n_bursts, p=population.activity)
    home = population.home_country[customer]
    abroad = rng.random(n_bursts) < BURST_FOREIGN_SHARE[kind]
    country = np.where(abroad, pick_per_row(rng, destination_matrix(FRAUD_DESTINATION_WEIGHTS)[home]), home)
    start = pick_per_row(rng, np.array(BURST_HOURS)[kind]) * 3600 + rng.integers(0, 3600, n_bursts)
    burst = np.repeat(np.arange(n_bursts), size)
    second = burst_seconds(rng, start, size)
    merchant = fraud_merchants(rng, population, kind[burst], country[burst])
    customer, kind = customer[burst], kind[burst]
    return pd.DataFrame(
        {
            "customer": customer,
            "merchant": merchant,
            "channel": fraud_channels(rng, population.merchant_category[merchant], kind),
            "amount_eur": fraud_amounts(rng, population, customer, merchant, kind),
            "second": second,
            "is_fraud": True,
        }
    )


def burst_seconds(rng: np.random.Generator, start: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Times of each burst's transactions: minutes apart, moved earlier where a burst would pass midnight."""
    burst = np.repeat(np.arange(len(size)), size)
    first_of_burst = np.cumsum(size) - size
    gap = rng.exponential(BURST_GAP_MINUTES * 60, len(burst)).astype(np.int64)
    gap[first_of_burst] = 0
    elapsed = np.cumsum(gap)
    elapsed -= elapsed[first_of_burst][burst]
    last_second = start + elapsed[np.cumsum(size) - 1]
    start = start - np.maximum(last_second - (SECONDS_PER_DAY - 1), 0)
    return np.maximum(start[burst] + elapsed, 0)


def fraud_merchants(
    rng: np.random.Generator, population: Population, kind: np.ndarray, country: np.ndarray
) -> np.ndarray:
    """Cash-out favours risky merchants in the card's country of use; testing targets cheap purchases."""
    category_name = np.array([c.name for c in CATEGORIES])[population.merchant_category]
    appeal = np.array([c.fraud_appeal for c in CATEGORIES])[population.merchant_category]
    established = category_name != NEW_CATEGORY
    weights_by_kind = {
        BurstKind.CASH_OUT: appeal * RISK_TIER_FRAUD_WEIGHT[population.merchant_risk] * established,
        BurstKind.ONLINE_TESTING: np.isin(category_name, ONLINE_TESTING_CATEGORIES) * 1.0,
        BurstKind.SHOP_TESTING: np.isin(category_name, SHOP_TESTING_CATEGORIES)
        * population.merchant_popularity,
    }
    merchant = np.empty(len(kind), dtype=np.int64)
    for burst_kind, merchant_weights in weights_by_kind.items():
        rows = kind == burst_kind
        if burst_kind == BurstKind.ONLINE_TESTING:  # online: the merchant may be anywhere
            merchant[rows] = rng.choice(
                len(merchant_weights), rows.sum(), p=merchant_weights / merchant_weights.sum()
            )
        else:
            merchant[rows] = MerchantSampler(population.merchant_country, merchant_weights).sample(
                rng, country[rows]
            )
    return merchant


def fraud_channels(rng: np.random.Generator, category: np.ndarray, kind: np.ndarray) -> np.ndarray:
    legit_mix = np.array([c.channel_mix for c in CATEGORIES])[category]
    shop_testing = np.array([0.3, 0.0, 0.7, 0.0])  # pos, online, contactless, atm
    mix = np.where((kind == BurstKind.SHOP_TESTING)[:, None], shop_testing, legit_mix * CASH_OUT_CHANNEL_TILT)
    return pick_per_row(rng, mix)


def fraud_amounts(
    rng: np.random.Generator,
    population: Population,
    customer: np.ndarray,
    merchant: np.ndarray,
    kind: np.ndarray,
) -> np.ndarray:
    """Cash-out spends several times the card's usual amounts; testing stays small."""
    typical = np.array([c.typical_amount_eur for c in CATEGORIES])[population.merchant_category[merchant]]
    cash_out = typical * population.spend_level[customer] * rng.lognormal(np.log(3.0), 0.8, len(kind))
    online_testing = rng.uniform(0.5, 5.0, len(kind))
    shop_testing = rng.uniform(2.0, 25.0, len(kind))
    return np.select(
        [kind == BurstKind.CASH_OUT, kind == BurstKind.ONLINE_TESTING],
        [cash_out, online_testing],
        shop_testing,
    )


def move_to_new_category(
    rng: np.random.Generator, population: Population, drawn: pd.DataFrame
) -> pd.DataFrame:
    """Some customers, and some fraudsters, start using the new crypto exchanges (online, larger amounts)."""
    new_category = CATEGORIES[CATEGORY_INDEX[NEW_CATEGORY]]
    share = np.where(drawn["is_fraud"], NEW_CATEGORY_FRAUD_SHARE, new_category.popularity)
    moved = rng.random(len(drawn)) < share
    exchanges = np.flatnonzero(population.merchant_category == CATEGORY_INDEX[NEW_CATEGORY])
    popularity = population.merchant_popularity[exchanges]
    fraud_factor = np.where(drawn.loc[moved, "is_fraud"], 3.0, 1.0)
    drawn = drawn.copy()
    drawn.loc[moved, "merchant"] = rng.choice(exchanges, moved.sum(), p=popularity / popularity.sum())
    drawn.loc[moved, "channel"] = schemas.CHANNELS.index("online")
    drawn.loc[moved, "amount_eur"] = (
        new_category.typical_amount_eur
        * fraud_factor
        * population.spend_level[drawn.loc[moved, "customer"]]
        * rng.lognormal(0.0, LEGIT_AMOUNT_SIGMA, moved.sum())
    )
    return drawn


def report_delays(rng: np.random.Generator, is_fraud: pd.Series) -> np.ndarray:
    """Seconds until the label arrives: chargebacks mostly within a week, confirmations after 5-10 days."""
    low, high = FRAUD_LABEL_DELAY_DAYS
    fraud_days = low + (high - low) * rng.beta(1.2, 3.5, len(is_fraud))
    legit_days = rng.uniform(*LEGIT_LABEL_DELAY_DAYS, len(is_fraud))
    return np.round(np.where(is_fraud, fraud_days, legit_days) * SECONDS_PER_DAY).astype(np.int64)


def landed_form(population: Population, drawn: pd.DataFrame, day: date) -> pd.DataFrame:
    """Indices become the contract's strings, euros the card's currency, seconds UTC timestamps."""
    customer, merchant = drawn["customer"].to_numpy(), drawn["merchant"].to_numpy()
    currency = population.customer_currency[customer]
    units_per_eur = pd.Series(currency).map(UNITS_PER_EUR).to_numpy()
    amount = np.clip(np.round(drawn["amount_eur"].to_numpy() * units_per_eur, 2), 0.01, schemas.MAX_AMOUNT)
    midnight = pd.Timestamp(day, tz="UTC")
    event_ts = midnight + pd.to_timedelta(drawn["second"].to_numpy(), unit="s")
    return pd.DataFrame(
        {
            "transaction_id": transaction_ids(day, len(drawn)),
            "customer_id": population.customers["customer_id"].to_numpy()[customer],
            "merchant_id": population.merchants["merchant_id"].to_numpy()[merchant],
            "amount": amount,
            "currency": currency,
            "channel": np.array(schemas.CHANNELS)[drawn["channel"].to_numpy()],
            "country": population.merchants["country"].to_numpy()[merchant],
            "event_ts": event_ts,
            "is_fraud": drawn["is_fraud"].to_numpy(dtype=bool),
            "reported_at": event_ts + pd.to_timedelta(drawn["report_delay_s"].to_numpy(), unit="s"),
        }
    )


def transaction_ids(day: date, n: int, first_sequence: int = 1) -> np.ndarray:
    """`T` + yyyymmdd + 7-digit sequence: unique across days, stable for a given day."""
    return numbered_ids(f"T{day:%Y%m%d}", n, 7, first_sequence)


# --- files ----------------------------------------------------------------------------------------------

ARROW_TYPES = {
    "string": pa.string(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),  # Feast needs microseconds with a time zone
    "date": pa.date32(),
}


def arrow_schema(table: schemas.RawTable) -> pa.Schema:
    return pa.schema([(column, ARROW_TYPES[kind]) for column, kind in table.columns.items()])


def partition_dir(landing_dir: Path, table: str, day: date) -> Path:
    return Path(landing_dir) / table / f"date={day.isoformat()}"


def write_table(
    frame: pd.DataFrame, table: schemas.RawTable, landing_dir: Path, day: date, file_format: str
) -> Path:
    """Write or overwrite a table's file for a day; its twin in the other format goes (no row lands twice)."""
    folder = partition_dir(landing_dir, table.name, day)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{table.name}.{file_format}"
    temporary = folder / f".{path.name}.tmp"  # the landing sensor must never see a half-written file
    frame = frame[list(table.columns)]
    if file_format == "csv":
        csv_form(frame, table).to_csv(temporary, index=False)
    else:
        pq.write_table(
            pa.Table.from_pandas(frame, schema=arrow_schema(table), preserve_index=False, nthreads=1),
            temporary,
        )
    os.replace(temporary, path)
    (folder / f"{table.name}.{'parquet' if file_format == 'csv' else 'csv'}").unlink(missing_ok=True)
    return path


def csv_form(frame: pd.DataFrame, table: schemas.RawTable) -> pd.DataFrame:
    """Timestamps as ISO-8601 UTC with a `Z`, so any reader parses them the same way."""
    frame = frame.copy()
    for column, kind in table.columns.items():
        if kind == "timestamp":
            frame[column] = frame[column].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    return frame
