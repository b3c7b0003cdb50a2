"""Where alerts go: a JSON-lines file locally, a webhook in production. Sending never raises."""

import json
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from dagster import ConfigurableResource, get_dagster_logger

from mlplatform.resources.env import resolved


class AlertSink(ConfigurableResource):
    """An alert is a flat dict: what happened (`kind`), to what (asset, check, run) and the figure."""

    def send(self, kind: str, summary: str, **details) -> dict:
        alert = {"at": datetime.now(UTC).isoformat(), "kind": kind, "summary": summary, **details}
        try:
            self.deliver(alert)
        except Exception as error:  # an alert that cannot be delivered must not fail what raised it
            get_dagster_logger().error(f"alert not delivered ({error!r}): {alert}")
        return alert

    def deliver(self, alert: dict) -> None:
        raise NotImplementedError


class JsonlAlertSink(AlertSink):
    """Local profile: one JSON line per alert (`state/alerts/alerts.jsonl`)."""

    path: str

    def deliver(self, alert: dict) -> None:
        path = Path(self.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as out:
            out.write(json.dumps(alert, default=str) + "\n")

    def read(self) -> list[dict]:
        path = Path(self.path)
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


class WebhookAlertSink(AlertSink):
    """Production: POST the alert as JSON (Slack/Teams/PagerDuty-style incoming webhooks)."""

    url: str
    timeout_seconds: float = 5.0

    def deliver(self, alert: dict) -> None:
        request = urllib.request.Request(
            resolved(self.url),
            data=json.dumps(alert, default=str).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:
            response.read()
