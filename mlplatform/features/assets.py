"""Feast: the registry, online materialization per feature view, and their freshness and skew checks."""

import hashlib
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AutomationCondition,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)

from mlplatform.automation import FOLLOW_UPSTREAM
from mlplatform.checks import judged, not_judged
from mlplatform.features.skew import latest_rows, skew
from mlplatform.resources import FeastFeatureStore, Warehouse
from mlplatform.settings import FEATURE_REPO_DIR

if TYPE_CHECKING:
    import pandas as pd

SKEW_SAMPLE = 5_000  # every entity up to this many; a repeatable sample beyond


def feature_repo_version() -> str:
    """Changes whenever a Feast definition changes, so the registry is re-applied only then."""
    digest = hashlib.sha256()
    for path in sorted(FEATURE_REPO_DIR.glob("*.py")):  # the configuration is code, in resources/
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


@asset(
    group_name="features",
    kinds={"feast"},
    owners=["team:ml"],
    code_version=feature_repo_version(),
    automation_condition=(AutomationCondition.newly_missing() | AutomationCondition.code_version_changed())
    .since_last_handled()
    .with_label("on_definition_change"),
    description="`feast apply` of feature_repo/: entities, feature views, on-demand views, feature services.",
)
def feast_registry(feature_store: FeastFeatureStore) -> MaterializeResult:
    definitions = feature_store.apply()
    kinds: dict[str, list[str]] = {}
    for name, obj in definitions.items():
        kinds.setdefault(type(obj).__name__, []).append(name)
    return MaterializeResult(
        metadata={
            "objects": MetadataValue.json(kinds),
            "feature_services": MetadataValue.json(kinds.get("FeatureService", [])),
            "repo": MetadataValue.path(str(FEATURE_REPO_DIR)),
        }
    )


def newest_valid_row(warehouse: Warehouse, mart: str, now: datetime) -> "pd.Timestamp":
    """The feature time of the mart's newest row that is valid `now` (NaT for an empty mart)."""
    return warehouse.read_sql(
        f"select max(feature_ts) as t from marts.{mart} where feature_ts <= '{_naive(now)}'"
    )["t"].iloc[0]


def build_online_features(view: str, mart: str, key: str) -> tuple[AssetsDefinition, list]:
    """`feast materialize` for one feature view, with its freshness and skew checks."""
    asset_key = AssetKey(f"online_{view}")

    @asset(
        key=asset_key,
        group_name="features",
        kinds={"feast"},
        owners=["team:ml"],
        deps=[feast_registry, AssetKey(mart)],
        automation_condition=FOLLOW_UPSTREAM,
        description=f"Newest `{view}` per {key} in the online store, loaded incrementally from {mart}.",
    )
    def online_view(
        context: AssetExecutionContext, feature_store: FeastFeatureStore, warehouse: Warehouse
    ) -> MaterializeResult:
        import pandas as pd

        now = datetime.now(UTC)
        # every entity has a row for the newest feature date: reloading it always leaves each entity's
        # newest valid row online, even when dbt rebuilt it after the last materialization
        newest = newest_valid_row(warehouse, mart, now)
        started = time.perf_counter()
        start, end = feature_store.materialize(
            view, end=now, reload_from=None if pd.isna(newest) else newest.tz_localize(UTC)
        )
        elapsed = time.perf_counter() - started
        loaded = warehouse.read_sql(
            f"select count(distinct {key}) as n from marts.{mart} "
            f"where feature_ts >= '{_naive(start)}' and feature_ts < '{_naive(end)}'"
        )["n"].iloc[0]
        return MaterializeResult(
            metadata={
                "interval_start": start.isoformat(),
                "interval_end": end.isoformat(),
                "entities_written": int(loaded),
                "rows_per_second": round(loaded / elapsed) if elapsed else 0,
                "seconds": round(elapsed, 2),
            }
        )

    @asset_check(asset=asset_key, description="The online store holds the newest rows that are valid now.")
    def fresh(feature_store: FeastFeatureStore, warehouse: Warehouse) -> AssetCheckResult:
        import pandas as pd

        online_until = feature_store.store().get_feature_view(view).most_recent_end_time
        newest = newest_valid_row(warehouse, mart, datetime.now(UTC))
        figures = {"online_until": str(online_until), "newest_valid_offline_row": str(newest)}
        if pd.isna(newest):
            return not_judged(f"marts.{mart} has no row valid now", **figures)
        behind = online_until is None or _naive(online_until) < newest
        return judged(not behind, severity=AssetCheckSeverity.WARN, **figures)

    @asset_check(
        asset=asset_key,
        blocking=True,
        description=f"Online values equal the offline {mart} row as of the same time, for sampled {key}s.",
    )
    def no_online_offline_skew(
        context: AssetCheckExecutionContext, feature_store: FeastFeatureStore, warehouse: Warehouse
    ) -> AssetCheckResult:
        store = feature_store.store()
        fv = store.get_feature_view(view)
        fields = [f.name for f in fv.features]
        # each entity's newest row, picked by the warehouse: the whole mart (a row per entity and day of
        # history) never travels to pandas, so the check's cost follows the entities, not the days
        offline = warehouse.read_sql(
            f"select * from (select *, row_number() over (partition by {key} order by feature_ts desc) "
            f"as newest_first from marts.{mart} where feature_ts < '{_naive(fv.most_recent_end_time)}') "
            "as ranked where newest_first = 1"
        )
        expected = latest_rows(offline.drop(columns="newest_first"), key)
        expected = expected.sample(min(SKEW_SAMPLE, len(expected)), random_state=0)
        if expected.empty:
            return not_judged(f"no {key} has an offline row before the materialization to compare")
        online = store.get_online_features(
            features=[f"{view}:{f}" for f in fields],
            entity_rows=[{key: entity} for entity in expected.index],
        ).to_df()
        mismatches = skew(expected, online, key, fields)
        return judged(
            not mismatches,
            **{
                "entities_compared": len(expected),
                "features_compared": len(fields),
                "mismatches": len(mismatches),
                "examples": MetadataValue.json([{k: str(v) for k, v in m.items()} for m in mismatches[:10]]),
            },
        )

    return online_view, [fresh, no_online_offline_skew]


def _naive(moment: datetime):
    """The warehouse keeps naive UTC timestamps."""
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


online_customer_stats, customer_checks = build_online_features(
    "customer_stats", "customer_features", "customer_id"
)
online_merchant_stats, merchant_checks = build_online_features(
    "merchant_stats", "merchant_features", "merchant_id"
)

online_feature_assets = [online_customer_stats, online_merchant_stats]
feature_assets = [feast_registry, *online_feature_assets]
feature_checks = [*customer_checks, *merchant_checks]
