"""The prediction log: every online prediction (and every request failed with a server error) as a JSON
line, one folder per day, for monitoring to read."""

from __future__ import annotations

import collections
import io
import itertools
import json
import logging
import math
import os
import socket
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
from dagster import ConfigurableResource

if TYPE_CHECKING:
    import pandas as pd

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
    """Appends records from a background thread. `record` never blocks and never raises: a full buffer or
    a failing disk drops records and counts them, it does not fail the prediction being logged.

    A record costs the caller one `deque.append` (no lock, no thread wake-up except for the first record
    after the writer went idle); the writer thread gathers what arrived during `linger_seconds`, encodes it
    and appends it to the day's file in one write. `record_lines` encodes many records at once in the
    caller's thread (orjson, ~4 us a record) and leaves the writer only the file append, which releases
    the GIL: a batch request pays for its own log lines instead of competing with the writer thread for
    the interpreter during the next request (that cost the batch endpoint twice the encoding's CPU)."""

    def __init__(self, directory: Path, capacity: int = 10_000, linger_seconds: float = 0.05) -> None:
        self.directory = directory
        self.capacity = capacity  # records (or batches of records) waiting to be written, at most
        self.linger_seconds = linger_seconds
        self.dropped = 0  # records lost because the buffer was full
        self.failed = 0  # records lost because building or writing them failed
        self.last_error: str | None = None
        self._file_name = f"predictions-{socket.gethostname()}-{os.getpid()}.jsonl"
        self._pending: collections.deque = collections.deque()
        self._idle = True  # the writer found nothing to write and waits for `_wake`
        self._wake = threading.Event()
        self._hurry = threading.Event()  # flush or close: write now, do not linger
        self._thread = threading.Thread(target=self._drain, name="prediction-log", daemon=True)
        self._thread.start()

    def record(self, entry: dict) -> None:
        self._take(entry, 1)

    def record_lines(self, entries: list[dict]) -> None:
        """Many records, encoded here (in the caller's thread); never raises either."""
        try:
            lines = encode_by_day(entries)
        except Exception as error:  # a logging failure must never reach a request
            self.failed += len(entries)
            self.last_error = repr(error)
            return
        self._take(EncodedLines(lines), len(entries))

    def record_columns(self, day: str, fields: dict[str, object], features: dict[str, list]) -> bool:
        """Many records of the `YYYY-MM-DD` day given as columns, encoded here by `encode_columns`
        (no dict per record); False (nothing taken) when they must go through `record_lines`."""
        try:
            lines = encode_columns(fields, features)
        except Exception:  # e.g. a value orjson cannot encode: `record_lines` deals with it
            return False
        if lines is None:
            return False
        count = next(len(c) for c in fields.values() if isinstance(c, list))
        self._take(EncodedLines({day: lines}), count)
        return True

    def _take(self, item: object, count: int) -> None:
        if len(self._pending) >= self.capacity:
            self.dropped += count
            return
        self._pending.append((item, count))
        if self._idle:  # checked after the append: a writer going idle meanwhile is woken here
            self._idle = False
            self._wake.set()

    def flush(self) -> None:
        """Wait until every record taken so far is written (or counted as failed)."""
        done = threading.Event()
        self._pending.append((done, 0))
        self._hurry.set()
        self._wake.set()
        done.wait()

    def close(self) -> None:
        self._pending.append((_STOP, 0))
        self._hurry.set()
        self._wake.set()
        self._thread.join(timeout=10)

    def _drain(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self.linger_seconds:
                self._hurry.wait(self.linger_seconds)  # let a burst gather: one write for all of it
            self._hurry.clear()
            self._idle = True
            entries: list = []
            while True:
                try:
                    item, count = self._pending.popleft()
                except IndexError:
                    break
                if isinstance(item, threading.Event) or item is _STOP:
                    self._write(entries)
                    entries = []
                    if item is _STOP:
                        return
                    item.set()
                else:
                    entries.append((item, count))
            self._write(entries)

    def _write(self, items: list) -> None:
        if not items:
            return
        by_day: dict[str, list[bytes]] = {}
        count = 0
        try:
            for item, n in items:
                count += n
                encoded = item if isinstance(item, EncodedLines) else encode_by_day([item])
                for day, lines in encoded.items():
                    by_day.setdefault(day, []).append(lines)
            for day, chunks in by_day.items():
                folder = self.directory / f"date={day}"
                folder.mkdir(parents=True, exist_ok=True)
                with (folder / self._file_name).open("ab") as out:
                    out.write(b"".join(chunks))
        except Exception as error:  # a logging failure must never reach a request
            self.failed += count
            self.last_error = repr(error)


class EncodedLines(dict):
    """Log lines already encoded, by day (`YYYY-MM-DD` -> the day's lines as one bytes object)."""


def encode_by_day(entries: list[dict]) -> dict[str, bytes]:
    by_day: dict[str, list[bytes]] = {}
    for entry in entries:
        by_day.setdefault(entry["logged_at"][:10], []).append(encode_line(entry))
    return {day: b"".join(lines) for day, lines in by_day.items()}


class Same:
    """A value shared by every record of `encode_columns`."""

    def __init__(self, value: object) -> None:
        self.value = value


def encode_columns(fields: dict[str, object], features: dict[str, list]) -> bytes | None:
    """The lines `encode_line` gives for records given as columns: `fields` (the record's keys in order,
    each a list with one value per record or a `Same`) and, last, the nested `features` object. Each
    column is encoded by one orjson call and cut at its commas (a value whose JSON holds a comma makes
    that column encoded value by value), the lines filled in from one template. None when a value is a
    non-finite float (orjson would write null where `encode_line` keeps NaN/Infinity): encode those
    records one by one."""
    template, columns = [b"{"], []
    for index, (name, column) in enumerate([*fields.items(), ("features", None), *features.items()]):
        key = orjson.dumps(name).replace(b"%", b"%%") + b":"
        template.append((b"" if index in (0, len(fields) + 1) else b",") + key)
        if name == "features" and column is None:
            template.append(b"{")
            continue
        if isinstance(column, Same):
            encoded = _fragments([column.value])
            if encoded is None:
                return None
            template.append(encoded[0].replace(b"%", b"%%"))
            continue
        encoded = _fragments(column)  # type: ignore[arg-type]
        if encoded is None:
            return None
        template.append(b"%s")
        columns.append(encoded)
    line = b"".join(template) + b"}}\n"
    return b"".join(line % row for row in zip(*columns, strict=True))


def _fragments(column: list) -> list[bytes] | None:
    """Each value's JSON (as `encode_line` writes it), or None if one is a non-finite float."""
    option = orjson.OPT_SERIALIZE_NUMPY
    text = orjson.dumps(column, default=str, option=option)
    parts = text[1:-1].split(b",")
    if len(parts) != len(column):  # a value's JSON holds a comma (text): value by value
        parts = [orjson.dumps(v, default=str, option=option) for v in column]
    if b"null" in text and any(
        _non_finite(v) for v, part in zip(column, parts, strict=True) if part == b"null"
    ):
        return None
    return parts


def encode_line(entry: dict) -> bytes:
    """One JSON line. orjson (~5x faster than the standard library) unless a value is a non-finite float,
    which orjson writes as null: those lines keep `NaN`/`Infinity`, as `json` writes and reads them, so a
    logged infinite feature stays infinite for the skew check. (Only a line with a null can hold one.)"""
    line = orjson.dumps(entry, default=str, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE)
    if b"null" in line and any(
        _non_finite(v) for v in itertools.chain(entry.values(), (entry.get("features") or {}).values())
    ):
        return (json.dumps(entry, default=_text) + "\n").encode()
    return line


def _text(value: object) -> str:
    """What the standard library cannot encode, as orjson writes it (a datetime in ISO format)."""
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _non_finite(value: object) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def of_model(log: pd.DataFrame, model: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`model`'s records of a read log: its predictions, and its requests that failed with a server error
    (records with an `error`, written by the API: they carry no prediction)."""
    import pandas as pd

    mine = log[log["model_name"] == model] if "model_name" in log else log.iloc[:0]
    failed = mine["error"].notna() if "error" in mine else pd.Series(False, index=mine.index)
    return mine[~failed], mine[failed]


def failure_entry(model: str, status: int, reason: str) -> dict:
    """The log record of a request for `model` answered with a server error (the error rate's numerator)."""
    return {
        "logged_at": datetime.now(UTC).isoformat(),
        "request_id": str(uuid.uuid4()),
        "model_name": model,
        "status": status,
        "error": reason,
    }


class PredictionLog(ConfigurableResource):
    """Local profile: JSON-lines files under the state folder (`date=YYYY-MM-DD/` per day)."""

    directory: str

    def writer(self) -> PredictionLogWriter:
        return PredictionLogWriter(Path(self.directory))

    def read(self, day: str = "*") -> pd.DataFrame:
        """Every logged prediction (of one `YYYY-MM-DD` day), oldest first; empty when there is none.

        Corrupt lines are skipped (see `read_counted` for how many)."""
        return self.read_counted(day).frame

    def recent(self, model: str, hours: float, now: datetime | None = None) -> int:
        """Predictions of `model` logged in the last `hours` (its route's recent traffic)."""
        import pandas as pd

        now = now or datetime.now(UTC)
        days = {f"{now - timedelta(days=back):%Y-%m-%d}" for back in range(int(hours // 24) + 2)}
        frames = [frame for day in sorted(days) if not (frame := self.read(day)).empty]
        if not frames:
            return 0
        log = pd.concat(frames, ignore_index=True)
        since = now - timedelta(hours=hours)
        logged = pd.to_datetime(log["logged_at"], utc=True, format="ISO8601")
        return int(((log["model_name"] == model) & (logged >= since)).sum())

    def read_counted(self, day: str = "*") -> PredictionLogRead:
        """Like `read`, also counting the lines that could not be parsed; they never fail the read."""
        import pandas as pd

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
        frame = pd.concat(frames, ignore_index=True).sort_values(
            "logged_at", ignore_index=True, kind="stable"
        )
        return PredictionLogRead(frame, corrupt, corrupt_files)
