"""The `mlplatform` command."""

import json
import shutil
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import click

from mlplatform.schemas import BAD_FILE_KINDS
from mlplatform.settings import PROJECT_ROOT, state_dir


def dagster_instance():
    """The persistent instance under $DAGSTER_HOME (state/dagster by default), telemetry off."""
    import os

    from dagster import DagsterInstance

    home = Path(os.environ.setdefault("DAGSTER_HOME", str(state_dir() / "dagster")))
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        shutil.copy(PROJECT_ROOT / "dagster.local.yaml", home / "dagster.yaml")
    return DagsterInstance.get()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """mlplatform: data and ML platform on Dagster."""


@main.command("generate-data")
@click.option(
    "--start-date", type=click.DateTime(["%Y-%m-%d"]), help="First day (default: DAYS ending yesterday)."
)
@click.option(
    "--next-day",
    is_flag=True,
    help="Start the day after the newest landed transactions: extends the landed data (e.g. with drift).",
)
@click.option("--days", default=30, show_default=True, help="Days of data, one partition each.")
@click.option("--customers", default=2_000, show_default=True, help="Customers in the snapshot.")
@click.option("--merchants", default=300, show_default=True, help="Merchants in the snapshot.")
@click.option("--transactions-per-day", default=3_000, show_default=True, help="Transactions per day.")
@click.option("--fraud-rate", default=0.015, show_default=True, help="Share of fraudulent transactions.")
@click.option("--seed", default=42, show_default=True, help="Same seed, same data.")
@click.option(
    "--format",
    "file_format",
    type=click.Choice(["parquet", "csv"]),
    default="parquet",
    show_default=True,
    help="File format of the landed files.",
)
@click.option("--drift-amount-shift", default=0.0, help="Relative shift of all amounts, e.g. 0.3.")
@click.option(
    "--drift-new-fraud-pattern", is_flag=True, help="Fraud appears in a form the model has not seen."
)
@click.option("--drift-new-merchant-category", is_flag=True, help="A new merchant category starts trading.")
@click.option(
    "--bad-file",
    "bad_kind",
    type=click.Choice(BAD_FILE_KINDS),
    help="Also write one deliberately bad file of this kind, next to the day's good files.",
)
@click.option(
    "--bad-date", type=click.DateTime(["%Y-%m-%d"]), help="Day of the bad file (default: last day)."
)
@click.option(
    "--bad-table",
    type=click.Choice(["transactions", "labels"]),
    default="transactions",
    show_default=True,
    help="Table of the bad file.",
)
@click.option("--landing-dir", type=click.Path(path_type=Path), help="Default: <state>/landing.")
def generate_data(
    start_date,
    next_day,
    days,
    customers,
    merchants,
    transactions_per_day,
    fraud_rate,
    seed,
    file_format,
    drift_amount_shift,
    drift_new_fraud_pattern,
    drift_new_merchant_category,
    bad_kind,
    bad_date,
    bad_table,
    landing_dir,
) -> None:
    """Write seeded sample data (customers, merchants, daily transactions, delayed labels) to the landing."""
    from mlplatform.datagen import DriftConfig, GeneratorConfig, generate, write_bad_file
    from mlplatform.demo import demo_config
    from mlplatform.resources import LandingZone

    landing = landing_dir or state_dir() / "landing"
    start = start_date.date() if start_date else demo_config(days).start_date
    if next_day:
        landed = LandingZone(landing_dir=str(landing), quarantine_dir="").landed_days("transactions")
        if start_date or not landed:
            raise click.UsageError("--next-day needs landed transactions and no --start-date")
        start = date.fromisoformat(landed[-1]) + timedelta(days=1)
    today = datetime.now(UTC).date()
    if start + timedelta(days=days - 1) > today:
        raise click.UsageError(
            f"days after today ({today}) have no partition yet: the last day would be "
            f"{start + timedelta(days=days - 1)}"
        )
    config = GeneratorConfig(
        start_date=start,
        days=days,
        customers=customers,
        merchants=merchants,
        transactions_per_day=transactions_per_day,
        fraud_rate=fraud_rate,
        seed=seed,
        file_format=file_format,
        drift=DriftConfig(
            amount_shift=drift_amount_shift,
            new_fraud_pattern=drift_new_fraud_pattern,
            new_merchant_category=drift_new_merchant_category,
        ),
    )
    started = time.perf_counter()
    summary = generate(config, landing)
    click.echo(
        f"wrote {summary.rows} rows, {len(summary.files)} files, fraud rate {summary.fraud_rate:.2%}, "
        f"days {summary.days[0]}..{summary.days[-1]} into {landing} in {time.perf_counter() - started:.1f}s"
    )
    if bad_kind:
        day = bad_date.date() if bad_date else summary.days[-1]
        click.echo(f"bad file: {write_bad_file(landing, bad_kind, day, table=bad_table)}")


@main.command()
@click.option("--days", default=30, show_default=True, help="Days of sample data, ending yesterday.")
def demo(days: int) -> None:
    """Generate sample data and materialize the whole asset graph on the local profile."""
    from mlplatform.demo import demo_config, run_demo

    started = time.perf_counter()
    summary = run_demo(state_dir(), demo_config(days), dagster_instance())
    click.echo(summary.format())
    click.echo(
        f"done in {time.perf_counter() - started:.0f}s; open the UI with `make dev` (http://127.0.0.1:3000)"
    )
    if summary.runs_failed:
        raise SystemExit(1)


def declared_model(_context: click.Context, _param: click.Parameter, name: str) -> str:
    """A model declared in models/; anything else is a usage error naming the declared ones."""
    from mlplatform.training.spec import load_specs

    declared = load_specs()
    if name not in declared:
        raise click.BadParameter(f"{name!r} is not declared in models/ (declared: {', '.join(declared)})")
    return name


model_option = click.option(
    "--model",
    default="fraud_model",
    show_default=True,
    callback=declared_model,
    help="The model, by the name of its spec in models/.",
)


@main.command()
@click.option("--reason", default="manual rollback", show_default=True, help="Written to the audit trail.")
@model_option
def rollback(reason: str, model: str) -> None:
    """Restore the previous champion of a model (MLflow alias) in one step."""
    import getpass

    from mlplatform.profiles import build_resources
    from mlplatform.training.registry import NothingToRollBackError
    from mlplatform.training.registry import rollback as rollback_champion

    try:
        record = rollback_champion(
            build_resources(with_dbt=False)["model_registry"], model, actor=getpass.getuser(), reason=reason
        )
    except NothingToRollBackError as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"{model}: champion is version {record['version']} again (was {record['replaced']})")


def _decide(decision: str, model: str, version: str, reason: str, actor: str | None) -> None:
    """approve or reject a model version, with who and why in the audit trail."""
    import getpass

    from mlplatform.profiles import build_resources
    from mlplatform.training.registry import PromotionRefusedError, approve, reject

    registry = build_resources(with_dbt=False)["model_registry"]
    decide = {"approve": approve, "reject": reject}[decision]
    try:
        record = decide(registry, model, version, actor=actor or getpass.getuser(), reason=reason)
    except PromotionRefusedError as refused:
        raise click.ClickException(str(refused)) from refused
    if decision == "reject":
        click.echo(f"{model}: version {version} rejected; it can never be promoted")
    elif record is None:
        click.echo(f"{model}: version {version} already is the champion; nothing changed")
    else:
        click.echo(f"{model}: version {version} is the champion (was {record['replaced']})")


@main.command()
@click.argument("version")
@click.option("--reason", required=True, help="Why it may serve; written to the audit trail.")
@click.option("--actor", help="Who approves (default: the user running the command).")
@model_option
def approve(version: str, reason: str, actor: str | None, model: str) -> None:
    """Promote VERSION of a model to champion after review (manual promotion policy). Refused unless the
    version passed every validation gate."""
    _decide("approve", model, version, reason, actor)


@main.command()
@click.argument("version")
@click.option("--reason", required=True, help="Why it may not serve; written to the audit trail.")
@click.option("--actor", help="Who rejects (default: the user running the command).")
@model_option
def reject(version: str, reason: str, actor: str | None, model: str) -> None:
    """Refuse VERSION of a model for good: it loses the challenger alias and is never promoted."""
    _decide("reject", model, version, reason, actor)


@main.command()
@click.argument("model", callback=declared_model)
@click.option("--reason", required=True, help="Why it retires; written to the audit trail.")
@click.option("--actor", help="Who retires it (default: the user running the command).")
@click.option(
    "--idle-hours",
    default=24.0,
    show_default=True,
    help="Its route counts as in use when it answered a prediction this recently (the prediction log).",
)
@click.option("--force", is_flag=True, help="Retire it even though its route is in use.")
def retire(model: str, reason: str, actor: str | None, idle_hours: float, force: bool) -> None:
    """Retire MODEL: nothing serves it any more (its aliases are removed), scheduled scoring and retraining
    skip it, the model and every version are tagged retired; runs, versions, model cards and the audit trail
    stay. Refused while its route is in use, unless --force."""
    import getpass

    from mlplatform.profiles import build_resources
    from mlplatform.training.registry import RetirementRefusedError
    from mlplatform.training.registry import retire as retire_model

    resources = build_resources(with_dbt=False)
    served = resources["prediction_log"].recent(model, idle_hours)
    in_use = f"{served:,} predictions in the last {idle_hours:g} h" if served else None
    try:
        record = retire_model(
            resources["model_registry"],
            model,
            in_use=in_use,
            actor=actor or getpass.getuser(),
            reason=reason,
            force=force,
        )
    except RetirementRefusedError as refused:
        raise click.ClickException(str(refused)) from refused
    if not record:
        click.echo(f"{model} was already retired; nothing changed")
        return
    removed = ", ".join(f"{a} (version {v})" for a, v in record["aliases_removed"].items()) or "none"
    click.echo(f"{model} retired; aliases removed: {removed}; its history and audit trail stay")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on (0.0.0.0: all).")
@click.option("--port", default=8000, show_default=True, help="TCP port of the prediction API.")
@click.option("--workers", default=1, show_default=True, help="Processes; each loads the models itself.")
def serve(host: str, port: int, workers: int) -> None:
    """Start the prediction API (OpenAPI docs at /docs)."""
    import uvicorn

    uvicorn.run(
        "mlplatform.serving.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=False,
        log_level="warning",
    )


@main.command()
@click.option(
    "--mode",
    type=click.Choice(["champion_only", "canary", "shadow", "ab"]),
    help="Leave out to print the policy in force.",
)
@click.option("--percent", "challenger_percent", type=float, default=0.0, help="Canary/A-B challenger share.")
@click.option("--threshold", type=float, help="Decision threshold for all models (default: each model's).")
@click.option(
    "--api",
    metavar="URL",
    help="Go through a running prediction API's admin surface (e.g. http://prediction-api:8000) with the "
    "token in $MLPLATFORM_ADMIN_TOKEN, instead of writing the routing file of this machine's profile.",
)
def routing(mode: str | None, challenger_percent: float, threshold: float | None, api: str | None) -> None:
    """Show or change how the prediction API routes traffic; running servers follow at their next request."""
    from pydantic import ValidationError

    from mlplatform.serving.routing import RoutingPolicy

    policy = None
    if mode is not None:
        try:
            policy = RoutingPolicy(mode=mode, challenger_percent=challenger_percent, threshold=threshold)
        except ValidationError as invalid:
            raise click.ClickException(str(invalid)) from invalid
    if api is not None:
        from mlplatform.serving.admin_client import AdminError, routing_through_api

        try:
            answer = routing_through_api(api, policy)
        except AdminError as refused:
            raise click.ClickException(str(refused)) from refused
        click.echo(
            json.dumps(answer, indent=2) if policy is None else f"routing is now: {json.dumps(answer)}"
        )
        return

    from mlplatform.profiles import build_resources
    from mlplatform.serving.routing import RoutingFile

    resources = build_resources(with_dbt=False)
    routing_file = RoutingFile(Path(resources["serving"].routing_file))
    if policy is None:
        click.echo(routing_file.current().model_dump_json(indent=2))
        return
    click.echo(f"routing is now: {routing_file.write(policy).model_dump_json()}")
    if policy.mode != "champion_only":
        from mlplatform.resources.model_registry import CHALLENGER
        from mlplatform.training.spec import FRAUD_MODEL

        if resources["model_registry"].version_for(FRAUD_MODEL.name, CHALLENGER) is None:
            click.echo(
                f"warning: no {FRAUD_MODEL.name} version carries the `{CHALLENGER}` alias: every request is "
                f"served by the champion until one does ({policy.mode} takes effect then)",
                err=True,
            )


@main.command()
@click.argument("archive", type=click.Path(path_type=Path))
def backup(archive: Path) -> None:
    """Back up the local state folder into ARCHIVE (.tar.gz). Stop `make dev` and the API first."""
    from mlplatform.profiles import active_profile
    from mlplatform.state_backup import StateError, backup_state

    if active_profile() != "local":
        raise click.ClickException("backup covers the local profile; prod state lives in its services")
    try:
        files = backup_state(state_dir(), archive)
    except StateError as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"backed up {files} files of {state_dir()} into {archive}")


@main.command()
@click.argument("archive", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--force", is_flag=True, help="Restore over a non-empty state (kept aside, not deleted).")
def restore(archive: Path, force: bool) -> None:
    """Restore the local state folder from ARCHIVE (a `mlplatform backup`), re-rooted on this folder."""
    from mlplatform.profiles import active_profile
    from mlplatform.state_backup import StateError, restore_state

    if active_profile() != "local":
        raise click.ClickException("restore covers the local profile; prod state lives in its services")
    try:
        kept = restore_state(archive, state_dir(), force=force)
    except StateError as error:
        raise click.ClickException(str(error)) from error
    click.echo(
        f"restored {archive} into {state_dir()}" + (f"; the previous state is in {kept}" if kept else "")
    )


@main.command("model-card")
@click.argument("version")
@model_option
def model_card(version: str, model: str) -> None:
    """Print the model card of VERSION of a model (Markdown, as stored with it in MLflow)."""
    from mlflow.exceptions import MlflowException

    from mlplatform.profiles import build_resources
    from mlplatform.training.model_card import read_model_card

    try:
        click.echo(
            read_model_card(build_resources(with_dbt=False)["model_registry"], model, version), nl=False
        )
    except (MlflowException, OSError) as error:
        raise click.ClickException(f"{model} version {version} has no model card: {error}") from error


@main.command()
@click.option(
    "--spec",
    "spec_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The model spec to vary (default: models/fraud_model.yaml).",
)
@click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="FIELD=VALUE",
    help="Change a field of the spec, e.g. estimator.learning_rate=0.05 or feature_service=... (repeatable).",
)
@click.option(
    "--propose",
    is_flag=True,
    help="Then train it as a candidate in the retraining job: the same gates and promotion policy.",
)
def experiment(spec_file: Path | None, settings: tuple[str, ...], propose: bool) -> None:
    """Train a variation of a model's spec on the same labelled data, compared with the champion on the
    same holdout and tracked in MLflow under `<model>/experiments`; no version is registered and no alias
    moves, unless --propose."""
    from mlplatform.checks import check_verdicts
    from mlplatform.demo import quiet_run, silenced
    from mlplatform.profiles import build_resources
    from mlplatform.training.experiment import propose_run_config, run_experiment
    from mlplatform.training.spec import SPECS_DIR, ModelSpecError, load_spec

    try:
        committed = load_spec(spec_file or SPECS_DIR / "fraud_model.yaml")
        pairs = [setting.split("=", 1) for setting in settings]
        if any(len(pair) != 2 for pair in pairs):
            raise ModelSpecError(f"--set takes FIELD=VALUE, got {settings}")
        spec = committed.with_settings(dict(pairs))
        run_config = propose_run_config(spec, committed) if propose else None
    except (ModelSpecError, ValueError) as error:
        raise click.ClickException(str(error)) from error
    resources = build_resources(with_dbt=False)
    result = run_experiment(
        spec, committed, resources["model_registry"], resources["warehouse"], resources["feature_store"]
    )
    click.echo(f"MLflow experiment {result.experiment!r}, run {result.run_id}")
    click.echo(
        "changed from the champion's spec: "
        + (
            ", ".join(f"{k}: {theirs} -> {mine}" for k, (mine, theirs) in result.differences.items())
            or "nothing"
        )
    )
    click.echo(result.table().to_string())
    if result.champion_not_compared:
        click.echo(f"champion not compared: {result.champion_not_compared}")
    if run_config is None:
        return
    from mlplatform.definitions import defs

    retrain = f"retrain_{spec.name}"
    click.echo(f"training it as a candidate ({retrain}): training set, model, gates, promotion ...")
    with silenced():
        outcome = quiet_run(
            defs.resolve_job_def(retrain),
            dagster_instance(),
            tags={"mlplatform/experiment_run": result.run_id},
            run_config=run_config,
        )
    click.echo(
        "gates: " + ", ".join(f"{check} {verdict}" for check, verdict in check_verdicts(outcome).items())
    )
    if not outcome.success:
        raise click.ClickException(f"proposed as run {outcome.run_id}: not promoted (see the gates above)")
    decision = outcome.asset_materializations_for_node(spec.champion_asset)[0].metadata
    click.echo(
        f"proposed as run {outcome.run_id}: candidate version {decision['candidate_version'].value} "
        f"{decision['outcome'].value} (champion: version {decision['champion_version'].value})"
    )


@main.command("feature-server")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on (0.0.0.0: all).")
@click.option("--port", type=int, help="Default: Feast's own port.")
@click.option("--workers", default=1, show_default=True, help="Processes; scale pods rather than this.")
@click.option(
    "--repo-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where feature_store.yaml is written (default: a new temporary folder).",
)
@click.option("--config-only", is_flag=True, help="Write feature_store.yaml, print its folder, do not serve.")
def feature_server(
    host: str, port: int | None, workers: int, repo_dir: Path | None, config_only: bool
) -> None:
    """Feast's feature server (`feast serve`) on the active profile's registry and online store.

    The configuration is the one Dagster builds in code, written at start (settings from the
    environment stay `${NAME}` references, so no secret lands on disk); then this process becomes
    `feast serve`, so signals from the orchestrator reach the server itself. With --config-only, any
    other Feast command runs on the same configuration: `feast -c <folder> ...`."""
    import os
    import tempfile

    from mlplatform.profiles import build_resources
    from mlplatform.resources.feature_store import FEAST_SERVE_PORT, feast_serve_command

    repo = repo_dir or Path(tempfile.mkdtemp(prefix="feast-repo-"))
    build_resources(with_dbt=False)["feature_store"].write_serving_repo(repo)
    if config_only:
        click.echo(repo)
        return
    command = feast_serve_command(repo, host, port or FEAST_SERVE_PORT, workers)
    # bandit B606: the argv comes from this module and the CLI's own options
    os.execv(command[0], command)  # nosec B606


@main.command()
@click.option(
    "--metrics-port", type=int, default=9108, show_default=True, help="Prometheus /metrics; 0: off."
)
@click.option("--batch-size", type=int, help="Messages per micro-batch (default: the profile's).")
@click.option("--name", help="Consumer name in the group (default: host-pid, unique per process).")
def stream(metrics_port: int, batch_size: int | None, name: str | None) -> None:
    """Score transactions from the Redis input stream until SIGTERM/SIGINT (see README, Streaming)."""
    from mlplatform.profiles import build_resources
    from mlplatform.streaming.runner import run_consumer

    resources = build_resources(with_dbt=False)
    if batch_size:
        resources["streaming"] = resources["streaming"].model_copy(update={"batch_size": batch_size})
    run_consumer(resources, metrics_port or None, name)


@main.command("stream-replay")
@click.option("--day", required=True, type=click.DateTime(["%Y-%m-%d"]), help="A landed day.")
@click.option("--limit", type=int, help="Only the first N transactions of the day.")
@click.option("--rate", type=float, default=0.0, help="Messages per second (default: as fast as possible).")
def stream_replay(day: datetime, limit: int | None, rate: float) -> None:
    """Send a landed day's transactions to the input stream, in event order (demo and tests)."""
    from mlplatform.profiles import build_resources
    from mlplatform.streaming.replay import landed_transactions, send

    resources = build_resources(with_dbt=False)
    try:
        rows = landed_transactions(resources["landing_zone"], f"{day:%Y-%m-%d}")[:limit]
    except FileNotFoundError as error:
        raise click.ClickException(str(error)) from error
    ids = send(resources["streaming"], rows, rate)
    click.echo(f"sent {len(ids)} transactions of {day:%Y-%m-%d} to {resources['streaming'].input_stream}")


@main.command("velocity-push")
@click.option("--name", help="Consumer name in the velocity group (default: host-pid).")
@click.option(
    "--metrics-port", type=int, default=9109, show_default=True, help="Prometheus /metrics; 0: off."
)
def velocity_push(name: str | None, metrics_port: int) -> None:
    """Push velocity features of the input stream's transactions through Feast (see README, Velocity)."""
    from mlplatform.profiles import build_resources
    from mlplatform.streaming.pusher import run_pusher

    run_pusher(build_resources(with_dbt=False), name, metrics_port or None)


@main.command("velocity-backfill")
def velocity_backfill() -> None:
    """Store the velocity history of every loaded transaction in the offline store (for training sets)."""
    from mlplatform.profiles import build_resources
    from mlplatform.streaming.pusher import backfill, landed_transactions

    resources = build_resources(with_dbt=False)
    rows = backfill(resources["feature_store"].store(), landed_transactions(resources["warehouse"]))
    click.echo(f"stored {rows:,} velocity rows in the offline store")


@main.command()
@click.option("--alias", default="champion", show_default=True, help="Registry alias of the version.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=Path("exported"),
    show_default=True,
    help="Folder the exported model folder is written into.",
)
def export(alias: str, out_dir: Path) -> None:
    """Write a fraud_model version as a self-contained artifact scored with numpy alone (embedded mode)."""
    from mlplatform.export import export_model
    from mlplatform.inference.scoring import NoModelError, load_scoring_model
    from mlplatform.profiles import build_resources
    from mlplatform.training.spec import FRAUD_MODEL

    try:
        model = load_scoring_model(build_resources(with_dbt=False)["model_registry"], FRAUD_MODEL.name, alias)
    except NoModelError as error:
        raise click.ClickException(str(error)) from error
    folder = export_model(model, out_dir)
    click.echo(f"{FRAUD_MODEL.name} version {model.version} ({alias}) exported to {folder}")


if __name__ == "__main__":
    main()
