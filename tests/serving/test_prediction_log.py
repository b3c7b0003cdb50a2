"""The prediction log writer: records land on disk per day; a full queue or a broken disk never raises."""

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


def test_a_full_queue_drops_and_counts_without_blocking(tmp_path):
    writer = PredictionLogWriter(tmp_path, capacity=1)
    writer._queue.put(entry(0))  # fill it before the writer thread can drain (it may take this one)
    for n in range(100):
        writer.record(entry(n))
    writer.flush()
    assert writer.dropped > 0
    writer.close()
