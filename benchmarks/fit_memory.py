"""Training's fit against scikit-learn's own `Pipeline.fit` of the same rows: memory, time, same model.

    PYTHONPATH=. .venv/bin/python benchmarks/fit_memory.py [--rows 3000000] [--features 25] [--max-iter 30]

fraud_model's pipeline on generated rows shaped like a training set (its three categorical inputs,
`amount`, and `--features` numeric feature columns), enough of them for the classifier to stop early on
its own validation rows; `--max-iter` boosting iterations (the memory peaks before the first). Each side
runs in an interpreter of its own on the same parquet file, read the way training reads the warehouse
(text as pyarrow strings): the platform's `fit` (inputs prepared in slices, the early-stopping split
prepared apart) and the bare `Pipeline.fit`. Reported: the RSS each fit added over its loaded rows (peak,
sampled every 20 ms), its time, the ratios, and whether the two fitted pipelines give the same
predictions on unseen rows (they must). benchmarks/results/fit_memory.json keeps one entry per
`--label`, so the code before a change can be measured beside the code after it.
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

RESULTS = Path(__file__).parent / "results" / "fit_memory.json"
SIDE = """
import sys, time
import numpy as np, pandas as pd, pyarrow.parquet as pq
sys.path.insert(0, "benchmarks")
from harness import PeakRSS
from mlplatform.resources.warehouse import compact_frame
from mlplatform.training import model
from mlplatform.training.spec import FRAUD_MODEL

SPEC = FRAUD_MODEL.updated({"estimator.max_iter": int(sys.argv[5])}, "benchmark")
rows = compact_frame(pq.read_table(sys.argv[2]))
unseen = compact_frame(pq.read_table(sys.argv[3]))
columns = model.feature_columns(SPEC, rows.columns)
with PeakRSS() as rss:
    started = time.perf_counter()
    if sys.argv[1] == "platform":
        fitted = model.fit(SPEC, rows)
    else:
        fitted = model.build_pipeline(SPEC, rows.columns)
        with model.thread_limiter().limit(limits=1):
            fitted.fit(rows[columns], model.labels_of(SPEC, rows))
    seconds = time.perf_counter() - started
np.save(sys.argv[4], fitted.predict_proba(unseen[columns])[:, 1])
print(round(seconds, 2), round(rss.before_mb), round(rss.peak_mb - rss.before_mb))
"""


def generated(n: int, features: int, seed: int) -> pd.DataFrame:
    """Rows shaped like fraud_model's training set: its categorical inputs, amount, numeric features."""
    rng = np.random.default_rng(seed)
    amount = rng.gamma(2.0, 30.0, n)
    category = rng.choice(["food", "travel", "games", "fuel", "retail"], n)
    rows = pd.DataFrame(
        {
            "event_ts": pd.Timestamp("2026-01-01")
            + pd.to_timedelta(np.sort(rng.integers(0, 86_400 * 365, n)), "s"),
            "channel": rng.choice(["pos", "online", "atm"], n),
            "merchant_stats__category": category,
            "merchant_stats__risk_tier": rng.choice(["low", "medium", "high"], n),
            "amount": amount,
        }
    )
    for i in range(features):
        rows[f"customer_stats__feature_{i}"] = np.where(rng.random(n) < 0.05, np.nan, rng.normal(size=n))
    risk = (amount > 120) | (category == "games")
    rows["is_fraud"] = risk & (rng.random(n) < 0.2) | (rng.random(n) < 0.005)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=3_000_000)
    parser.add_argument("--features", type=int, default=25)
    parser.add_argument("--max-iter", type=int, default=30, help="boosting iterations (memory peaks before)")
    parser.add_argument("--label", default="after", help="the key this run is stored under in the JSON")
    parser.add_argument("--note", default="", help="what code was measured (e.g. a commit)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fit-memory-") as scratch:
        folder = Path(scratch)
        generated(args.rows, args.features, seed=0).to_parquet(folder / "rows.parquet", index=False)
        generated(20_000, args.features, seed=1).to_parquet(folder / "unseen.parquet", index=False)
        sides = {}
        for side in ("platform", "bare"):
            argv = [
                sys.executable,
                "-c",
                SIDE,
                side,
                *(str(folder / f) for f in ("rows.parquet", "unseen.parquet")),
            ]
            done = subprocess.run(
                [*argv, str(folder / f"{side}.npy"), str(args.max_iter)],
                capture_output=True,
                text=True,
                check=True,
            )
            seconds, rows_mb, added_mb = done.stdout.split()[-3:]
            sides[side] = {
                "fit_s": float(seconds),
                "rows_loaded_mb": int(rows_mb),
                "fit_added_mb": int(added_mb),
            }
        same = bool(np.array_equal(np.load(folder / "platform.npy"), np.load(folder / "bare.npy")))
    platform, bare = sides["platform"], sides["bare"]
    report = {
        "note": args.note,
        "rows": args.rows,
        "inputs": 4 + args.features,
        "max_iter": args.max_iter,
        "platform": platform,
        "bare_pipeline_fit": bare,
        "memory_ratio": round(platform["fit_added_mb"] / bare["fit_added_mb"], 2),
        "time_ratio": round(platform["fit_s"] / bare["fit_s"], 2),
        "same_predictions": same,
    }
    runs = json.loads(RESULTS.read_text())["runs"] if RESULTS.exists() else {}
    RESULTS.write_text(json.dumps({"runs": {**runs, args.label: report}}, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
