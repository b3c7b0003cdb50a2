"""Charts and the HTML report as plain functions."""

import base64

import numpy as np
import pandas as pd

from mlplatform.monitoring.plots import (
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


def test_the_report_is_one_self_contained_page_and_the_index_lists_newest_first():
    page = html_report(
        "2026-11-20",
        {"feature_drift.max_psi": 0.4},
        {"PSI per feature": psi_chart(pd.DataFrame({"feature": ["a<b"], "psi": [0.3]}), 0.1, 0.25)},
        {"Feature drift": pd.DataFrame({"feature": ["a<b"], "psi": [0.3]})},
    )
    assert page.count("data:image/png;base64,") == 1 and "a&lt;b" in page and "a<b" not in page
    assert "feature_drift.max_psi" in page and "href='index.html'" in page
    index = html_index(["2026-11-19", "2026-11-21", "2026-11-20"])
    assert index.index("2026-11-21") < index.index("2026-11-20") < index.index("2026-11-19")
