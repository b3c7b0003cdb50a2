"""The Dagster UI, checked in a real headless browser on a built demo state, with screenshots.

Starts `dagster-webserver` on the state folder (DAGSTER_HOME=<state>/dagster, MLPLATFORM_STATE_DIR=<state>),
waits until the code location is loaded, opens the UI in headless Chromium and checks:

1. the asset graph: the upstream lineage of `batch_predictions` shows `raw_transactions` (lineage.png);
2. an asset's checks: the Checks tab of `raw_transactions` lists its checks (`schema`, ...) (checks.png);
3. a chart: `feature_drift`'s `psi_chart` metadata, an inline PNG, renders as an image (chart.png);
4. named runs: the runs list and the Overview timeline show the demo's jobs by name (`landed_day`,
   `refresh_features_and_model`, ...), and no run is the anonymous `__ephemeral_asset_job__`
   (runs.png, timeline.png).

Exits 1 with one line per missing thing. Run it from the project root (playwright in its own venv):

    python3.11 -m venv .venv-ui && .venv-ui/bin/pip install -r .ci/ui-requirements.txt
    make demo   # or any state built by `mlplatform demo`
    .venv-ui/bin/python .ci/ui_check.py state ui-screenshots

Needs a Chromium binary (Debian: `apt-get install chromium`; `--chromium` for another path).
"""

import argparse
import contextlib
import json
import os
import socket
import subprocess  # nosec B404
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page, sync_playwright

# Bandit's skips above: subprocess starts the project's own dagster-webserver (a fixed command, no shell) and
# urlopen asks that local webserver (an http URL built here) whether its code location loaded.
PROJECT_ROOT = Path(__file__).resolve().parent.parent
LOCATION_QUERY = (
    "{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus "
    "locationOrLoadError { __typename ... on PythonError { message } } } } } }"
)
LINEAGE_NODES = ("raw_transactions", "batch_predictions")
CHECKS = ("schema", "not_null", "unique_key")
CHART_ASSET, CHART_KEY = "feature_drift", "psi_chart"
NAMED_JOBS = ("landed_day", "refresh_features_and_model", "batch_scoring", "monitor_day")
ANONYMOUS_JOB = "__ephemeral_asset_job__"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def location_status(url: str) -> tuple[str, str]:
    """(load status, error) of the first code location; ("", "") while the server does not answer."""
    request = urllib.request.Request(
        f"{url}/graphql",
        data=json.dumps({"query": LOCATION_QUERY}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # nosec B310
            body = json.load(response)
    except OSError:
        return "", ""
    entries = body.get("data", {}).get("workspaceOrError", {}).get("locationEntries") or []
    if not entries:
        return "", ""
    entry = entries[0]
    loaded = entry.get("locationOrLoadError") or {}
    return entry["loadStatus"], loaded.get("message", "") if loaded.get("__typename") == "PythonError" else ""


def wait_for_webserver(url: str, server: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"ui check: dagster-webserver exited with {server.returncode} before it served")
        status, error = location_status(url)
        if error:
            raise SystemExit(f"ui check: the code location failed to load:\n{error}")
        if status == "LOADED":
            return
        time.sleep(2)
    raise SystemExit(f"ui check: the code location was not loaded after {timeout:.0f}s")


def dismiss_dialogs(page: Page) -> None:
    """The first visit's 'Join the Dagster community' dialog covers the page: skip it when it shows."""
    skip = page.get_by_role("button", name="Skip")
    with contextlib.suppress(PlaywrightError):
        skip.click(timeout=5000)


def check_lineage(page: Page, url: str, out: Path) -> list[str]:
    page.goto(f"{url}/assets/batch_predictions?view=lineage&lineageScope=upstream", wait_until="networkidle")
    dismiss_dialogs(page)
    missing = []
    for node in LINEAGE_NODES:
        try:
            page.get_by_text(node, exact=True).first.wait_for(state="visible", timeout=20_000)
        except PlaywrightError:
            missing.append(f"asset graph: the node {node!r} is not shown in the lineage of batch_predictions")
    page.screenshot(path=out / "lineage.png")
    return missing


def check_asset_checks(page: Page, url: str, out: Path) -> list[str]:
    page.goto(f"{url}/assets/raw_transactions?view=checks", wait_until="networkidle")
    dismiss_dialogs(page)
    missing = []
    try:
        page.get_by_text("Checks (", exact=False).first.wait_for(state="visible", timeout=20_000)
    except PlaywrightError:
        missing.append("checks: the Checks tab of raw_transactions shows no list of checks")
    for check in CHECKS:
        if page.get_by_text(check, exact=True).count() == 0:
            missing.append(f"checks: raw_transactions does not list the check {check!r}")
    page.screenshot(path=out / "checks.png")
    return missing


def check_chart(page: Page, url: str, out: Path) -> list[str]:
    page.goto(f"{url}/assets/{CHART_ASSET}", wait_until="networkidle")
    dismiss_dialogs(page)
    row = page.locator("tr", has=page.get_by_text(CHART_KEY, exact=True))
    try:
        row.get_by_text("[Show Markdown]").click(timeout=20_000)
        image = page.locator("img[src^='data:image/png']").first
        image.wait_for(state="visible", timeout=20_000)
        width, height = image.evaluate("img => [img.naturalWidth, img.naturalHeight]")
        page.wait_for_timeout(1000)  # the dialog fades in: screenshot it opaque
    except PlaywrightError:
        page.screenshot(path=out / "chart.png")
        return [f"chart: {CHART_ASSET}'s {CHART_KEY} metadata does not open as an inline PNG"]
    page.screenshot(path=out / "chart.png")
    if width < 100 or height < 100:
        return [f"chart: {CHART_ASSET}'s {CHART_KEY} image did not decode ({width}x{height} px)"]
    return []


def check_named_runs(page: Page, url: str, out: Path) -> list[str]:
    missing = []
    for view, path, shot in (
        ("runs list", "/runs", "runs.png"),
        ("Overview timeline", "/overview/activity/timeline", "timeline.png"),
    ):
        page.goto(f"{url}{path}", wait_until="networkidle")
        dismiss_dialogs(page)
        for job in NAMED_JOBS:
            try:
                page.get_by_text(job, exact=True).first.wait_for(state="visible", timeout=20_000)
            except PlaywrightError:
                missing.append(f"{view}: no run of the job {job!r} is shown")
        if view == "runs list" and page.get_by_text(ANONYMOUS_JOB).count():
            missing.append(f"{view}: a run shows as the anonymous {ANONYMOUS_JOB}")
        page.screenshot(path=out / shot)
    return missing


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("state", type=Path, help="a state folder built by `mlplatform demo` (`make demo`)")
    parser.add_argument("out", type=Path, help="where the screenshots (PNG) go")
    parser.add_argument("--chromium", default="/usr/bin/chromium", help="the Chromium binary")
    parser.add_argument(
        "--webserver",
        default=str(PROJECT_ROOT / ".venv" / "bin" / "dagster-webserver"),
        help="the project's dagster-webserver",
    )
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for the code location")
    args = parser.parse_args()

    state = args.state.resolve()
    if not (state / "dagster").is_dir() or not (state / "warehouse.duckdb").is_file():
        print(f"ui check: {state} is not a built state (no dagster/ or warehouse.duckdb): run `make demo`")
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])),
        "MLPLATFORM_STATE_DIR": str(state),
        "DAGSTER_HOME": str(state / "dagster"),
        "MLPLATFORM_DUCKDB_PATH": str(state / "warehouse.duckdb"),
        "MLPLATFORM_FEAST_DATA_DIR": str(state / "feast" / "data"),
        "DAGSTER_DISABLE_TELEMETRY": "1",
        "DO_NOT_TRACK": "1",
    }
    command = [args.webserver, "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)]
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen(  # nosec B603
            command, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            try:
                wait_for_webserver(url, server, args.timeout)
            except SystemExit:
                log.seek(0)
                sys.stdout.write(log.read().decode(errors="replace")[-4000:])
                raise
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
                page = browser.new_page(viewport={"width": 1600, "height": 1200})
                missing = [
                    *check_lineage(page, url, args.out),
                    *check_asset_checks(page, url, args.out),
                    *check_chart(page, url, args.out),
                    *check_named_runs(page, url, args.out),
                ]
                browser.close()
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
    for line in missing:
        print(f"ui check: MISSING {line}")
    shots = ", ".join(sorted(p.name for p in args.out.glob("*.png")))
    print(f"ui check: {'FAILED' if missing else 'passed'}; screenshots in {args.out}: {shots}")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
