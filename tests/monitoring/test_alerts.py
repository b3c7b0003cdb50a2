"""Alert sinks and the run-failure sensor, with a real failed run and a real HTTP receiver."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

from dagster import DagsterEventType, build_run_status_sensor_context

from mlplatform.definitions import all_assets
from mlplatform.ingestion.assets import raw_transactions
from mlplatform.monitoring.sensors import run_failure_alert
from mlplatform.resources import JsonlAlertSink, WebhookAlertSink
from tests.conftest import SMALL, run_assets


def test_a_failed_run_reaches_the_alert_sink_with_the_step_and_the_error(resources, instance, tmp_path):
    # transactions before any customer snapshot was loaded: the asset fails and says why
    failed = run_assets(
        all_assets, resources, instance, partition_key=str(SMALL.start_date), selection=[raw_transactions]
    )
    assert not failed.success
    failure = next(e for e in failed.all_events if e.event_type == DagsterEventType.RUN_FAILURE)
    sink = JsonlAlertSink(path=str(tmp_path / "alerts.jsonl"))
    context = build_run_status_sensor_context(
        sensor_name="run_failure_alert",
        dagster_instance=instance,
        dagster_run=instance.get_run_by_id(failed.run_id),
        dagster_event=failure,
        resources={"alerts": sink},
    ).for_run_failure()

    run_failure_alert(context)

    [alert] = sink.read()
    assert alert["kind"] == "run_failure" and alert["run_id"] == failed.run_id
    assert alert["failed_steps"] == ["raw_transactions"] and alert["partition"] == str(SMALL.start_date)
    assert "raw_transactions" in alert["summary"]


def test_the_webhook_sink_posts_the_alert_and_an_unreachable_one_does_not_raise():
    received = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        sink = WebhookAlertSink(url=f"http://127.0.0.1:{server.server_port}/hook")
        sink.send("check_failed", "feature drift", asset="feature_drift", check="psi", figure=0.31)
    finally:
        server.shutdown()
    assert received and received[0]["check"] == "psi" and received[0]["figure"] == 0.31

    gone = WebhookAlertSink(url=f"http://127.0.0.1:{server.server_port}/hook", timeout_seconds=1)
    assert gone.send("check_failed", "nobody listening")["kind"] == "check_failed"
