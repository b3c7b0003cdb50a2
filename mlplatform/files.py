"""Files other processes read while they are rewritten."""

import os
from pathlib import Path


def replace_text(path: Path, text: str) -> None:
    """Write `path` whole or not at all: written aside in the same folder, then renamed over it, so a
    reader (another run, the API reloading) never sees half a file."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_text(text)
    partial.replace(path)
