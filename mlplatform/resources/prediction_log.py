"""The prediction log: every online prediction as a JSON line, one folder per day, for monitoring to read."""

import io
import json
import logging
import os
import queue
import socket
import threading
import time
from pathlib import Path

import pandas as pd
from dagster import ConfigurableResource

_STOP = object()
logger = logging.getLogger(__name__)


class PredictionLogRead:
    """What one read found: the records, and the lines that could not be parsed (skipped and counted)."""

    def __init__(self, frame: pd.DataFrame, corrupt_lines: int, corrupt_files: list[str]) -> None:
        self.frame = frame
        self.corrupt_lines = corrupt_lines
        self.corrupt_files = corrupt_files


def parse_log_lines(text: str) -> tuple[list[str], int]:
    """The lines of a log file that hold a JSON object, and how many non-empty lines did not (e.g. the
    truncated last line of a writer killed mid-write)."""
    good, corrupt = [], 0
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            corrupt += 1
            continue
        if isinstance(record, dict):
            good.append(line)
        else:
            corrupt += 1
    return good, corrupt


class PredictionLogWriter:
    """Appends records from a background thread. `record` never blocks and never raises: a full queue or
    a failing disk drops records and counts them, it does not fail the prediction being logged."""

    def __init__(self, directory: Path, capacity: int = 10_000, linger_seconds: float = 0.05) -> None:
        self.directory = directory
        # after the first record of a batch, wait this long for more: one write per batch instead of a
        # thread switch and a file append per prediction (which cost the API ~1 ms a request under load)
        self.linger_seconds = linger_seconds
        self.dropped = 0  # records lost because the queue was full
        self.failed = 0  # records lost because writing them failed
        self.last_error: str | None = None
        self._file_name = f"predictions-{socket.gethostname()}-{os.getpid()}.jsonl"
        self._queue: queue.Queue = queue.Queue(maxsize=capacity)
        self._thread = threading.Thread(target=self._drain, name="prediction-log", daemon=True)
        self._thread.start()

    def record(self, entry: dict) -> None:
        try:
            self._queue.put_nowait(entry)
        except queue.Full:
            self.dropped += 1

    def flush(self) -> None:
        """Wait until every record taken so far is written (or counted as failed)."""
        self._queue.join()

    def close(self) -> None:
        self._queue.put(_STOP)
        self._thread.join(timeout=10)

    def _drain(self) -> None:
        while True:
            batch = [self._queue.get()]
            if batch[0] is not _STOP and self.linger_seconds:
                time.sleep(self.linger_seconds)
            while not self._queue.empty() and len(batch) < 1_000:
                batch.append(self._queue.get_nowait())
            stop = any(entry is _STOP for entry in batch)
            entries = [entry for entry in batch if entry is not _STOP]
            try:
                self._append(entries)
            except Exception as error:  # a logging failure must never reach a request
                self.failed += len(entries)
                self.last_error = repr(error)
            for _ in batch:
                self._queue.task_done()
            if stop:
                return

    def _append(self, entries: list[dict]) -> None:
        by_day: dict[str, list[str]] = {}
        for entry in entries:
            by_day.setdefault(entry["logged_at"][:10], []).append(json.dumps(entry, default=str))
        for day, lines in by_day.items():
            folder = self.directory / f"date={day}"
            folder.mkdir(parents=True, exist_ok=True)
            with (folder / self._file_name).open("a") as out:
                out.write("\n".join(lines) + "\n")


class PredictionLog(ConfigurableResource):
    """Local profile: JSON-lines files under the state folder (`date=YYYY-MM-DD/` per day)."""

    directory: str

    def writer(self) -> PredictionLogWriter:
        return PredictionLogWriter(Path(self.directory))

    def read(self, day: str = "*") -> pd.DataFrame:
        """Every logged prediction (of one `YYYY-MM-DD` day), oldest first; empty when there is none.

        Corrupt lines are skipped (see `read_counted` for how many)."""
        return self.read_counted(day).frame

    def read_counted(self, day: str = "*") -> PredictionLogRead:
        """Like `read`, also counting the lines that could not be parsed; they never fail the read."""
        frames: list[pd.DataFrame] = []
        corrupt, corrupt_files = 0, []
        for path in sorted(Path(self.directory).glob(f"date={day}/*.jsonl")):
            lines, bad = parse_log_lines(path.read_text(errors="replace"))
            if lines:
                frames.append(pd.read_json(io.StringIO("\n".join(lines)), lines=True, dtype=False))
            if bad:
                corrupt += bad
                corrupt_files.append(f"{path.parent.name}/{path.name}")
                logger.warning("prediction log %s: skipped %d corrupt line(s)", path, bad)
        if not frames:
            return PredictionLogRead(pd.DataFrame(), corrupt, corrupt_files)
        frame = pd.concat(frames, ignore_index=True).sort_values("logged_at", ignore_index=True)
        return PredictionLogRead(frame, corrupt, corrupt_files)
