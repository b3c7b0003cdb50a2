"""Training at scale: from the training set to a promoted champion, against a bare scikit-learn fit.

    python benchmarks/training.py [--days 42 --transactions-per-day 30000 --customers 50000]

Figures (JSON in benchmarks/results/training.json):
- training_set_s: Feast point-in-time retrieval of every labelled transaction (the asset);
- fraud_model_s: the asset with its five blocking gates (fit, MLflow tracking + registration,
  permutation importance, champion comparison, latency); champion_s: the promotion;
- training_set_to_champion_s: the three together, the lead time the platform adds;
- baseline_bare_fit_s: the same pipeline fitted on the same rows by scikit-learn alone, in this run;
- peak RSS before and after training (max RSS is monotonic: a rise means training set the peak).
"""

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

from dagster import AssetSelection, DagsterInstance, materialize
from harness import data_arguments, generator_config

from mlplatform.datagen import generate
from mlplatform.definitions import all_assets, all_checks, models
from mlplatform.demo import materialize_all
from mlplatform.profiles import build_resources
from mlplatform.training.model import fit, time_split
from mlplatform.training.spec import FRAUD_MODEL

RESULTS = Path(__file__).parent / "results" / "training.json"


def peak_rss_mb() -> int:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def main() -> None:
    parser = argparse.ArgumentParser()
    data_arguments(parser)
    args = parser.parse_args()
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}

    with tempfile.TemporaryDirectory() as tmp, DagsterInstance.ephemeral() as instance:
        state = Path(tmp)
        generate(generator_config(args), state / "landing")
        started = time.perf_counter()
        built = materialize_all(state, instance)
        build_s = time.perf_counter() - started
        assert not built.runs_failed, built.format()
        rss_before = peak_rss_mb()
        resources = build_resources(profile="local", state=state)

        timings = {}
        # one run per step; the promotion loads the candidate the previous run stored via the IO manager
        for name, asset in (
            ("training_set", models["fraud_model"].training_set),
            ("fraud_model", models["fraud_model"].candidate),
            ("champion", models["fraud_model"].champion),
        ):
            started = time.perf_counter()
            result = materialize(
                [*all_assets, *all_checks],
                selection=AssetSelection.assets(asset),
                resources=resources,
                instance=instance,
                run_config=quiet,
            )
            assert result.success
            timings[name] = time.perf_counter() - started
        rows = resources["warehouse"].read_sql("select * from training.training_set")
        train, _ = time_split(FRAUD_MODEL, rows)
        started = time.perf_counter()
        fit(FRAUD_MODEL, train)
        bare_s = time.perf_counter() - started
        registry = resources["model_registry"]
        champion = registry.version_for("fraud_model", "champion")
        metrics = (
            registry.client()
            .get_run(registry.client().get_model_version("fraud_model", champion).run_id)
            .data.metrics
        )

    report = {
        "labelled_rows": len(rows),
        "train_rows": len(train),
        "build_whole_graph_s": round(build_s, 1),
        "training_set_s": round(timings["training_set"], 1),
        "fraud_model_s": round(timings["fraud_model"], 1),
        "champion_s": round(timings["champion"], 1),
        "training_set_to_champion_s": round(sum(timings.values()), 1),
        "fit_inside_asset_s": round(metrics["train_seconds"], 1),
        "baseline_bare_fit_s": round(bare_s, 1),
        "asset_vs_bare_fit": round(timings["fraud_model"] / bare_s, 1),
        "peak_rss_before_training_mb": rss_before,
        "peak_rss_after_training_mb": peak_rss_mb(),
        "champion_roc_auc": round(metrics["roc_auc"], 4),
        "champion_pr_auc": round(metrics["pr_auc"], 4),
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    for key, value in report.items():
        print(f"{key:<32} {value}")


if __name__ == "__main__":
    main()
