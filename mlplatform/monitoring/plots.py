"""Monitoring charts as PNG bytes and the static HTML report: pure functions over monitoring tables.

The same PNGs go into Dagster materialization metadata (markdown with an inline image, shown in the UI)
and into the HTML report written next to the data.
"""

import base64
import html
import io

import numpy as np
import pandas as pd
from dagster import MetadataValue

SCORE_BINS = np.linspace(0.0, 1.0, 21)
STABLE, SHIFTING, DRIFTED = "#4c9a6a", "#e0a030", "#c8453b"


def _pyplot():
    """matplotlib's pyplot on the Agg backend (no display: render to memory), imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=80)
    _pyplot().close(figure)
    return buffer.getvalue()


def psi_chart(table: pd.DataFrame, warn: float, error: float, top: int = 15) -> bytes:
    """Horizontal bars of the `top` highest PSIs, coloured by the WARN and ERROR bounds."""
    shown = table.dropna(subset=["psi"]).nlargest(top, "psi").iloc[::-1]
    colours = [DRIFTED if v > error else SHIFTING if v > warn else STABLE for v in shown["psi"]]
    figure, axis = _pyplot().subplots(figsize=(7, 0.28 * len(shown) + 1.2))
    axis.barh(shown["feature"], shown["psi"], color=colours)
    for bound, style in ((warn, ":"), (error, "--")):
        axis.axvline(bound, color="grey", linestyle=style, linewidth=1)
    axis.set_xlabel("PSI against the training reference (dotted: WARN, dashed: ERROR)")
    axis.tick_params(axis="y", labelsize=7)
    return _png(figure)


def score_histogram(reference: pd.Series, current: pd.Series) -> pd.DataFrame:
    """Share of scores per bin of [0, 1] for the reference and the day: small enough to store per day."""
    shares = {}
    for name, scores in (("reference_share", reference), ("current_share", current)):
        counts, _ = np.histogram(np.clip(scores.to_numpy(dtype=float), 0, 1), bins=SCORE_BINS)
        shares[name] = counts / max(counts.sum(), 1)
    return pd.DataFrame({"bin_start": SCORE_BINS[:-1], "bin_end": SCORE_BINS[1:], **shares})


def score_chart(histogram: pd.DataFrame) -> bytes:
    """Reference and current score distributions, log scale: fraud scores live in the thin right tail."""
    figure, axis = _pyplot().subplots(figsize=(7, 3))
    width = float(histogram["bin_end"].iloc[0] - histogram["bin_start"].iloc[0])
    for column, colour, label in (
        ("reference_share", "#8aa1c1", "training reference"),
        ("current_share", "#d9822b", "this day"),
    ):
        axis.bar(
            histogram["bin_start"],
            histogram[column],
            width=width,
            align="edge",
            alpha=0.6,
            color=colour,
            label=label,
        )
    axis.set_yscale("log")
    axis.set_xlabel("fraud score")
    axis.set_ylabel("share of transactions")
    axis.legend()
    return _png(figure)


def performance_chart(history: pd.DataFrame, floor_warn: float, floor_error: float) -> bytes:
    """ROC AUC, precision and recall of the served decisions per day, with the AUC floors."""
    history = history.sort_values("partition_date")
    figure, axis = _pyplot().subplots(figsize=(7, 3))
    for column, marker in (("roc_auc", "o"), ("precision_at_threshold", "s"), ("recall_at_threshold", "^")):
        axis.plot(pd.to_datetime(history["partition_date"]), history[column], marker=marker, label=column)
    for bound, style in ((floor_warn, ":"), (floor_error, "--")):
        axis.axhline(bound, color="grey", linestyle=style, linewidth=1)
    axis.set_ylim(0, 1.02)
    axis.set_ylabel("on labelled transactions")
    axis.legend(fontsize=7, loc="lower left")
    figure.autofmt_xdate()
    return _png(figure)


def image_metadata(png: bytes, title: str) -> MetadataValue:
    """A chart for the Dagster UI: markdown with the PNG inline (no file server needed)."""
    return MetadataValue.md(f"![{title}](data:image/png;base64,{base64.b64encode(png).decode()})")


def html_report(day: str, figures: dict[str, float | str], charts: dict[str, bytes], tables: dict) -> str:
    """One self-contained page: headline figures, charts inline, then the tables behind them."""
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in figures.items()
    )
    images = "".join(
        f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' "
        f"src='data:image/png;base64,{base64.b64encode(png).decode()}'>"
        for title, png in charts.items()
    )
    detail = "".join(
        f"<h2>{html.escape(title)}</h2>{table.to_html(index=False, float_format=lambda x: f'{x:.4g}')}"
        for title, table in tables.items()
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>mlplatform monitoring {html.escape(day)}</title><style>"
        "body{font-family:sans-serif;max-width:60em;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;font-size:0.85em}td,th{border:1px solid #ccc;padding:2px 8px}"
        "th{text-align:left;background:#f4f4f4}</style></head><body>"
        f"<h1>Monitoring: {html.escape(day)}</h1><p><a href='index.html'>all days</a></p>"
        f"<table>{rows}</table>{images}{detail}</body></html>"
    )


def html_index(days: list[str]) -> str:
    """The report folder's front page: every day's report, newest first."""
    links = "".join(f"<li><a href='monitoring-{d}.html'>{d}</a></li>" for d in sorted(days, reverse=True))
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>mlplatform monitoring</title></head>"
        f"<body style='font-family:sans-serif'><h1>Monitoring reports</h1><ul>{links}</ul></body></html>"
    )
