"""The landing zone: where raw daily files arrive, and the quarantine next to it."""

import json
import logging
import shutil
from datetime import UTC, date, datetime
from pathlib import Path

from dagster import ConfigurableResource

LANDING_SUFFIXES = (".parquet", ".csv")
logger = logging.getLogger(__name__)


def folder_day(folder: Path) -> str | None:
    """The day of a `date=YYYY-MM-DD` folder; None for anything else (`date=latest`, `date=2026-13-01`)."""
    value = folder.name.removeprefix("date=")
    if not folder.name.startswith("date=") or len(value) != 10:
        return None
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        return None


def not_date_folders(landing_dir: Path, table: str) -> list[Path]:
    """`date=` folders whose name is not a date: never read, reported so someone renames them."""
    root = landing_dir / table
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("date=*") if p.is_dir() and folder_day(p) is None)


class LandingZone(ConfigurableResource):
    """Files land as `<landing_dir>/<table>/date=YYYY-MM-DD/*.parquet|csv`."""

    landing_dir: str
    quarantine_dir: str

    def partition_dir(self, table: str, day: date | str) -> Path:
        return Path(self.landing_dir) / table / f"date={day}"

    def files(self, table: str, day: date | str) -> list[Path]:
        """The files landed for one table and day, in name order (the order they are validated in)."""
        folder = self.partition_dir(table, day)
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in LANDING_SUFFIXES)

    def landed_days(self, table: str) -> list[str]:
        """Every day that has at least one file for `table`, oldest first."""
        root = Path(self.landing_dir) / table
        if not root.is_dir():
            return []
        for folder in not_date_folders(Path(self.landing_dir), table):
            logger.warning("ignoring %s: a landing folder must be named date=YYYY-MM-DD", folder)
        days = (folder_day(p) for p in root.glob("date=*") if p.is_dir())
        return sorted(day for day in days if day is not None and self.files(table, day))

    def latest_snapshot_day(self, table: str) -> str | None:
        days = self.landed_days(table)
        return days[-1] if days else None

    def quarantine(self, path: Path, table: str, day: str, reason: str, details: list[dict]) -> Path:
        """Move a rejected file out of the landing zone and write why next to it.

        Nothing is deleted: an existing quarantined file of the same name is kept and the new one gets a
        timestamp suffix.
        """
        target_dir = Path(self.quarantine_dir) / table / f"date={day}"
        target_dir.mkdir(parents=True, exist_ok=True)
        now = datetime.now(UTC)
        target = target_dir / path.name
        if target.exists():
            target = target_dir / f"{path.stem}.{now:%Y%m%dT%H%M%S%f}{path.suffix}"
        shutil.move(str(path), target)
        record = {
            "file": path.name,
            "table": table,
            "partition": day,
            "quarantined_at": now.isoformat(),
            "reason": reason,
            "failed_expectations": details,
        }
        reason_path = target.with_name(target.name + ".reason.json")
        reason_path.write_text(json.dumps(record, indent=2, default=str) + "\n")
        return target
