"""How every asset check of the platform reports, including when it could not judge.

A check that had nothing to judge (no file evaluated, no traffic, no labels, an earlier check failed,
no comparison possible) never reports `passed=True`. It reports a failed evaluation with severity WARN,
`judged: false` in its metadata, the reason in `not_judged_reason` and a description starting with
"not judged:". In the Dagster UI it shows as a yellow warning, never as a green pass; a WARN never
blocks downstream (Dagster blocks only on ERROR), and whatever needs the verdict (promotion, retraining)
reads `judged` and treats a not-judged evaluation as missing evidence. Checks that did judge carry
`judged: true`.
"""

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dagster import AssetCheckResult, AssetCheckSeverity, AssetKey

if TYPE_CHECKING:
    from dagster import ExecuteInProcessResult

JUDGED = "judged"
NOT_JUDGED_REASON = "not_judged_reason"
NOT_JUDGED_PREFIX = "not judged: "


def judged(
    passed: bool,
    *,
    severity: AssetCheckSeverity = AssetCheckSeverity.ERROR,
    asset_key: AssetKey | None = None,
    check_name: str | None = None,
    description: str | None = None,
    **metadata: Any,
) -> AssetCheckResult:
    """A verdict on real evidence."""
    return AssetCheckResult(
        asset_key=asset_key,
        check_name=check_name,
        passed=passed,
        severity=severity,
        description=description,
        metadata={JUDGED: True, **metadata},
    )


def not_judged(
    reason: str,
    *,
    asset_key: AssetKey | None = None,
    check_name: str | None = None,
    **metadata: Any,
) -> AssetCheckResult:
    """No verdict: there was nothing to judge. Visible as a WARN, never as a pass."""
    return AssetCheckResult(
        asset_key=asset_key,
        check_name=check_name,
        passed=False,
        severity=AssetCheckSeverity.WARN,
        description=NOT_JUDGED_PREFIX + reason,
        metadata={JUDGED: False, NOT_JUDGED_REASON: reason, **metadata},
    )


def was_judged(metadata: Mapping[str, Any]) -> bool:
    """Whether an evaluation's metadata (values or MetadataValue) says it judged something."""
    value = metadata.get(JUDGED)
    value = getattr(value, "value", value)
    return value is not False


def check_verdicts(result: "ExecuteInProcessResult") -> dict[str, str]:
    """check name -> passed / FAILED / not judged, for the checks an in-process run evaluated."""
    verdicts = {}
    for evaluation in result.get_asset_check_evaluations():
        verdict = "passed" if evaluation.passed else "FAILED"
        verdicts[evaluation.check_name] = verdict if was_judged(evaluation.metadata) else "not judged"
    return verdicts
