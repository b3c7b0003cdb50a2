"""What changed in the landing zone since the last look: plain functions under the landing-zone sensor."""

import hashlib
from dataclasses import dataclass
from pathlib import Path

from mlplatform.resources.landing import LANDING_SUFFIXES, folder_day

FINGERPRINT = "landing_fingerprint"  # materialization metadata: which file contents a raw asset read
# path -> [size, mtime_ns, content hash]: size and mtime say when a file must be hashed again
Seen = dict[str, list]


@dataclass(frozen=True)
class LandedFile:
    table: str
    day: str
    path: Path
    size: int
    mtime_ns: int


def scan(landing_dir: Path, tables: list[str]) -> list[LandedFile]:
    """Every landed file in a `date=YYYY-MM-DD` folder; other folders (`date=latest`) are not read."""
    files = []
    for table in tables:
        for path in sorted((landing_dir / table).glob("date=*/*")):
            day = folder_day(path.parent)
            if day is not None and path.is_file() and path.suffix in LANDING_SUFFIXES:
                stat = path.stat()
                files.append(LandedFile(table, day, path, stat.st_size, stat.st_mtime_ns))
    return files


def content_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as data:
        for block in iter(lambda: data.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def partition_fingerprint(hashes: list[str]) -> str:
    """One value for a partition's set of files: equal exactly when the same contents are landed."""
    return hashlib.sha256("\n".join(sorted(hashes)).encode()).hexdigest()[:16]


def file_fingerprint(path: Path) -> str:
    """Name and content: renaming a file or changing a byte both make a new fingerprint."""
    return f"{path.name}:{content_hash(path)}"


def landed_fingerprint(paths: list[Path]) -> str:
    return partition_fingerprint([file_fingerprint(path) for path in paths])


def landed_changes(seen: Seen, files: list[LandedFile]) -> tuple[Seen, dict[tuple[str, str], list[str]]]:
    """The current view of the landing zone, and per (table, day) with a new or changed file the
    fingerprints of all its files. A file whose size and mtime are unchanged is not read again."""
    current: Seen = {}
    changed: set[tuple[str, str]] = set()
    for f in files:
        key = str(f.path)
        before = seen.get(key)
        if before and before[:2] == [f.size, f.mtime_ns]:
            current[key] = before
            continue
        current[key] = [f.size, f.mtime_ns, file_fingerprint(f.path)]
        if not before or before[2] != current[key][2]:
            changed.add((f.table, f.day))
    partitions = {
        (table, day): [current[str(f.path)][2] for f in files if (f.table, f.day) == (table, day)]
        for table, day in changed
    }
    return current, partitions
