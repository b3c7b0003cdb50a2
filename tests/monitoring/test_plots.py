"""Charts and the HTML report as plain functions."""

import base64

import numpy as np
import pandas as pd

from mlplatform.monitoring.plots import (
    Verdict,
    _psi_png,
    day_verdict,
    html_index,
    html_report,
    image_metadata,
    performance_chart,
    psi_chart,
    score_chart,
    score_histogram,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RNG = np.random.default_rng(5)


def test_score_histogram_holds_the_share_of_each_side_per_bin():
    histogram = score_histogram(pd.Series(RNG.beta(1, 30, 5_000)), pd.Series([0.99] * 10 + [0.01] * 30))
    assert histogram["reference_share"].sum() == 1.0 and histogram["current_share"].sum() == 1.0
    assert histogram["current_share"].iloc[-1] == 0.25  # 10 of 40 scores in the top bin
    assert histogram["reference_share"].iloc[0] > 0.7  # beta(1, 30): most scores below 0.05


def test_every_chart_is_a_png_and_travels_as_markdown_metadata():
    drift = pd.DataFrame({"feature": ["amount", "channel", "hour"], "psi": [0.4, 0.15, 0.01]})
    history = pd.DataFrame(
        {
            "partition_date": pd.date_range("2026-11-01", periods=5),
            "roc_auc": [0.95, 0.94, 0.9, 0.8, 0.7],
            "precision_at_threshold": [0.6] * 5,
            "recall_at_threshold": [0.7] * 5,
        }
    )
    histogram = score_histogram(pd.Series(RNG.random(100)), pd.Series(RNG.random(100)))
    charts = [psi_chart(drift, 0.1, 0.25), score_chart(histogram), performance_chart(history, 0.85, 0.75)]
    assert all(chart.startswith(PNG_SIGNATURE) for chart in charts)
    markdown = image_metadata(charts[0], "PSI").value
    assert markdown.startswith("![PSI](data:image/png;base64,")
    assert base64.b64decode(markdown.split(",", 1)[1].rstrip(")")) == charts[0]


def test_a_chart_of_the_same_figures_is_drawn_once_per_process():
    """The day's report draws what its drift asset drew from the same figures (read back from the
    warehouse: another frame, other columns and index): drawn once, the same bytes."""
    drift = pd.DataFrame({"feature": ["amount", "channel"], "psi": [0.4, 0.15]})
    read_back = pd.DataFrame(
        {"partition_date": ["2026-11-20"] * 2, "feature": ["amount", "channel"], "psi": [0.4, 0.15]},
        index=[7, 3],
    )
    before = _psi_png.cache_info()
    first, again = psi_chart(drift, 0.1, 0.25), psi_chart(read_back, 0.1, 0.25)
    after = _psi_png.cache_info()

    assert first == again
    assert (after.misses - before.misses, after.hits - before.hits) == (1, 1)
    assert psi_chart(drift.assign(psi=[0.4, 0.16]), 0.1, 0.25) != first  # other figures: another chart
    assert psi_chart(drift, 0.1, 0.3) != first  # another bound drawn


def test_the_report_is_one_self_contained_page_with_verdicts_and_the_index_lists_newest_first():
    verdicts = [
        Verdict("feature_drift:prediction_psi", "WARN", "score_psi 0.14 on 2026-11-20: WARN (above 0.1)"),
        Verdict("model_performance:roc_auc", "NOT JUDGED", "not judged: only 3 labelled frauds"),
    ]
    page = html_report(
        "2026-11-20",
        verdicts,
        {"feature_drift.max_psi": 0.4, "model_performance.roc_auc": float("nan")},
        {"PSI per feature": psi_chart(pd.DataFrame({"feature": ["a<b"], "psi": [0.3]}), 0.1, 0.25)},
        {
            "Feature drift": (pd.DataFrame({"feature": ["a<b"], "psi": [0.3]}), "not run"),
            "Serving skew": (pd.DataFrame(), "No online traffic logged for this day."),
        },
    )
    assert page.count("data:image/png;base64,") == 1 and "a&lt;b" in page and "a<b" not in page
    assert "feature_drift.max_psi" in page and "href='index.html'" in page
    assert "not enough labels yet" in page and "nan" not in page  # a missing figure says why
    assert "No online traffic logged for this day." in page  # an empty section says why
    assert "<h1>Monitoring: 2026-11-20 <span class='verdict'" in page and ">WARN</span></h1>" in page
    assert "only 3 labelled frauds" in page
    index = html_index("fraud_model", {"2026-11-19": "OK", "2026-11-21": "ERROR", "2026-11-20": "WARN"})
    assert index.index("2026-11-21") < index.index("2026-11-20") < index.index("2026-11-19")
    assert ">ERROR</span>" in index and "href='monitoring-2026-11-21.html'" in index
    assert "Monitoring reports: fraud_model" in index


def test_the_days_verdict_is_its_worst_judged_check():
    def verdict(*names: str) -> str:
        return day_verdict([Verdict("a:b", name, "") for name in names])

    assert verdict("OK", "WARN", "NOT JUDGED") == "WARN"
    assert verdict("OK", "ERROR", "WARN") == "ERROR"
    assert verdict("OK", "NOT JUDGED") == "OK"
    assert verdict("NOT JUDGED") == verdict() == "NOT JUDGED"
