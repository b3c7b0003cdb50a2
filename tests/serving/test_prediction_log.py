"""The prediction log writer: records land on disk per day; a full buffer or a broken disk never raises."""

import json

from mlplatform.resources import PredictionLog
from mlplatform.resources.prediction_log import PredictionLogWriter


def entry(n: int, day: str = "2026-11-23") -> dict:
    return {"logged_at": f"{day}T10:00:{n % 60:02d}+00:00", "request_id": f"r{n}", "score": n / 1000}


def test_records_are_written_per_day_and_read_back_in_order(tmp_path):
    log = PredictionLog(directory=str(tmp_path / "predictions"))
    writer = log.writer()
    for n in range(50):
        writer.record(entry(n, "2026-11-22" if n < 20 else "2026-11-23"))
    writer.flush()
    writer.close()

    assert sorted(p.name for p in (tmp_path / "predictions").iterdir()) == [
        "date=2026-11-22",
        "date=2026-11-23",
    ]
    logged = log.read()
    assert len(logged) == 50 and set(logged["request_id"]) == {f"r{n}" for n in range(50)}
    assert logged["logged_at"].is_monotonic_increasing
    assert writer.dropped == writer.failed == 0


def test_an_unwritable_log_counts_the_loss_instead_of_raising(tmp_path):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the log folder should be")
    writer = PredictionLogWriter(blocked)
    for n in range(10):
        writer.record(entry(n))  # must not raise
    writer.flush()
    assert writer.failed == 10 and "NotADirectoryError" in writer.last_error
    writer.close()


def test_a_full_buffer_drops_and_counts_without_blocking(tmp_path):
    writer = PredictionLogWriter(tmp_path, capacity=10, linger_seconds=30)  # the writer waits 30 s
    for n in range(100):
        writer.record(entry(n))
    writer.record_lines([entry(1000), entry(1001)])
    assert writer.dropped == 92  # the buffer took 10; the rest was dropped at once, nothing waited
    writer.close()  # writes what it took, without waiting for the linger
    logged = PredictionLog(directory=str(tmp_path)).read()
    assert list(logged["request_id"]) == [f"r{n}" for n in range(10)]


def test_lines_encoded_by_the_caller_land_per_day_and_a_bad_record_is_counted(tmp_path):
    writer = PredictionLogWriter(tmp_path)
    writer.record_lines([entry(n, "2026-11-22" if n < 3 else "2026-11-23") for n in range(8)])
    writer.record_lines([entry(20), {"request_id": "no logged_at"}])  # cannot be filed under a day
    writer.record(entry(99))
    writer.flush()
    assert writer.failed == 2 and "logged_at" in writer.last_error and writer.dropped == 0
    logged = PredictionLog(directory=str(tmp_path)).read()
    assert list(logged["request_id"]) == [f"r{n}" for n in range(8)] + ["r99"]
    assert len(PredictionLog(directory=str(tmp_path)).read("2026-11-22")) == 3
    writer.close()


def test_lines_read_back_as_written_non_finite_and_numpy_values_included(tmp_path):
    import math

    import numpy as np

    from mlplatform.resources.prediction_log import encode_line

    finite = {**entry(1), "features": {"a": 1.5, "b": None, "c": "DE", "d": np.float64(0.25), "e": 3}}
    infinite = {**entry(2), "features": {"a": float("inf"), "b": float("nan")}}
    assert json.loads(encode_line(finite)) == {**finite, "features": {**finite["features"], "d": 0.25}}
    back = json.loads(encode_line(infinite))["features"]  # NaN and Infinity, not null
    assert back["a"] == float("inf") and math.isnan(back["b"])
    assert encode_line(finite).endswith(b"\n") and encode_line(infinite).endswith(b"\n")
