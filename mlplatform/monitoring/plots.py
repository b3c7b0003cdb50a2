"""Monitoring charts as PNG bytes and the static HTML report: pure functions over monitoring tables.

The same PNGs go into Dagster materialization metadata (markdown with an inline image, shown in the UI)
and into the HTML report written next to the data. Each chart is drawn from the plain values it shows,
once per process: the day's report draws the charts its drift and performance assets drew moments before
from the same figures (in process, ~5% of building the whole graph went to drawing them twice).
"""

from __future__ import annotations

import base64
import functools
import html
import io
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dagster import MetadataValue

from mlplatform.monitoring.drift import LABELLED_FIGURES

if TYPE_CHECKING:
    import pandas as pd

SCORE_BINS = 20  # equal-width bins of the scores, 0 to 1
DRAWN_KEPT = 32  # charts a process keeps drawn (a few days of a few models)
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
    return _psi_png(tuple(shown["feature"]), tuple(shown["psi"].astype(float)), warn, error)


@functools.lru_cache(maxsize=DRAWN_KEPT)
def _psi_png(features: tuple[str, ...], values: tuple[float, ...], warn: float, error: float) -> bytes:
    colours = [DRIFTED if v > error else SHIFTING if v > warn else STABLE for v in values]
    figure, axis = _pyplot().subplots(figsize=(7, 0.28 * len(values) + 1.2))
    axis.barh(features, values, color=colours)
    for bound, style in ((warn, ":"), (error, "--")):
        axis.axvline(bound, color="grey", linestyle=style, linewidth=1)
    axis.set_xlabel("PSI against the training reference (dotted: WARN, dashed: ERROR)")
    axis.tick_params(axis="y", labelsize=7)
    return _png(figure)


def score_histogram(reference: pd.Series, current: pd.Series) -> pd.DataFrame:
    """Share of scores per bin of [0, 1] for the reference and the day: small enough to store per day."""
    import numpy as np
    import pandas as pd

    edges = np.linspace(0.0, 1.0, SCORE_BINS + 1)
    shares = {}
    for name, scores in (("reference_share", reference), ("current_share", current)):
        counts, _ = np.histogram(np.clip(scores.to_numpy(dtype=float), 0, 1), bins=edges)
        shares[name] = counts / max(counts.sum(), 1)
    return pd.DataFrame({"bin_start": edges[:-1], "bin_end": edges[1:], **shares})


def score_chart(histogram: pd.DataFrame) -> bytes:
    """Reference and current score distributions, log scale: fraud scores live in the thin right tail."""
    columns = ("bin_start", "bin_end", "reference_share", "current_share")
    return _score_png(*(tuple(histogram[c].astype(float)) for c in columns))


@functools.lru_cache(maxsize=DRAWN_KEPT)
def _score_png(
    starts: tuple[float, ...],
    ends: tuple[float, ...],
    reference: tuple[float, ...],
    current: tuple[float, ...],
) -> bytes:
    figure, axis = _pyplot().subplots(figsize=(7, 3))
    width = ends[0] - starts[0]
    for shares, colour, label in (
        (reference, "#8aa1c1", "training reference"),
        (current, "#d9822b", "this day"),
    ):
        axis.bar(starts, shares, width=width, align="edge", alpha=0.6, color=colour, label=label)
    axis.set_yscale("log")
    axis.set_xlabel("fraud score")
    axis.set_ylabel("share of transactions")
    axis.legend()
    return _png(figure)


PERFORMANCE_LINES = {"roc_auc": "o", "precision_at_threshold": "s", "recall_at_threshold": "^"}


def performance_chart(history: pd.DataFrame, floor_warn: float, floor_error: float) -> bytes:
    """ROC AUC, precision and recall of the served decisions per day, with the AUC floors."""
    import pandas as pd

    history = history.sort_values("partition_date")
    days = tuple(pd.to_datetime(history["partition_date"]).dt.strftime("%Y-%m-%d"))
    lines = tuple((column, tuple(history[column].astype(float))) for column in PERFORMANCE_LINES)
    return _performance_png(days, lines, floor_warn, floor_error)


@functools.lru_cache(maxsize=DRAWN_KEPT)
def _performance_png(
    days: tuple[str, ...],
    lines: tuple[tuple[str, tuple[float, ...]], ...],
    floor_warn: float,
    floor_error: float,
) -> bytes:
    import pandas as pd

    figure, axis = _pyplot().subplots(figsize=(7, 3))
    for column, values in lines:
        axis.plot(pd.to_datetime(list(days)), values, marker=PERFORMANCE_LINES[column], label=column)
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


@dataclass(frozen=True)
class Verdict:
    """One check's latest evaluation for the day, as the report shows it."""

    check: str  # asset:check
    verdict: str  # OK, WARN, ERROR or NOT JUDGED
    detail: str  # the evaluation's own sentence: value, day, bounds, or why it could not judge


VERDICT_ORDER = ("ERROR", "WARN", "OK", "NOT JUDGED")  # the day's verdict: the first one present
VERDICT_COLOURS = {"OK": STABLE, "WARN": SHIFTING, "ERROR": DRIFTED, "NOT JUDGED": "#777777"}
STYLE = (
    "body{font-family:sans-serif;max-width:60em;margin:2em auto;color:#222}"
    "table{border-collapse:collapse;font-size:0.85em}td,th{border:1px solid #ccc;padding:2px 8px}"
    "th{text-align:left;background:#f4f4f4}.verdict{color:#fff;font-weight:bold;padding:1px 6px}"
)


def day_verdict(verdicts: list[Verdict]) -> str:
    """ERROR if any check failed with ERROR, else WARN, else OK; NOT JUDGED when nothing could judge."""
    present = {v.verdict for v in verdicts}
    return next((v for v in VERDICT_ORDER if v in present), "NOT JUDGED")


def _badge(verdict: str) -> str:
    colour = VERDICT_COLOURS[verdict]
    return f"<span class='verdict' style='background:{colour}'>{html.escape(verdict)}</span>"


def _figure(name: str, value: float | str) -> str:
    """A headline figure for people: NaN says why there is no number."""
    import numpy as np

    if isinstance(value, float) and np.isnan(value):
        return "not enough labels yet" if name.rsplit(".", 1)[-1] in LABELLED_FIGURES else "no data"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def html_report(
    day: str,
    verdicts: list[Verdict],
    figures: dict[str, float | str],
    charts: dict[str, bytes],
    tables: dict[str, tuple[pd.DataFrame, str]],
) -> str:
    """One self-contained page: the day's verdict and each check's, the headline figures, charts inline,
    then the tables behind them (`tables`: title -> (rows, what an empty table means))."""
    checks = "".join(
        f"<tr><td>{_badge(v.verdict)}</td><th>{html.escape(v.check)}</th><td>{html.escape(v.detail)}</td></tr>"
        for v in verdicts
    )
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(_figure(k, v))}</td></tr>" for k, v in figures.items()
    )
    images = "".join(
        f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' "
        f"src='data:image/png;base64,{base64.b64encode(png).decode()}'>"
        for title, png in charts.items()
    )
    detail = "".join(
        f"<h2>{html.escape(title)}</h2>"
        + (
            table.to_html(index=False, float_format=lambda x: f"{x:.4g}")
            if len(table)
            else f"<p>{html.escape(empty)}</p>"
        )
        for title, (table, empty) in tables.items()
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>mlplatform monitoring {html.escape(day)}</title><style>{STYLE}</style></head><body>"
        f"<h1>Monitoring: {html.escape(day)} {_badge(day_verdict(verdicts))}</h1>"
        "<p><a href='index.html'>all days</a></p>"
        f"<h2>Checks</h2><table>{checks or '<tr><td>no check has run for this day</td></tr>'}</table>"
        f"<h2>Figures</h2><table>{rows}</table>{images}{detail}</body></html>"
    )


def html_index(model: str, days: dict[str, str]) -> str:
    """A model's report folder's front page: every day's verdict and report, newest first."""
    rows = "".join(
        f"<tr><td><a href='monitoring-{d}.html'>{d}</a></td><td>{_badge(days[d])}</td></tr>"
        for d in sorted(days, reverse=True)
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>mlplatform monitoring: {html.escape(model)}"
        f"</title><style>{STYLE}</style></head><body><h1>Monitoring reports: {html.escape(model)}</h1>"
        f"<table><tr><th>day</th><th>verdict</th></tr>{rows}</table></body></html>"
    )
