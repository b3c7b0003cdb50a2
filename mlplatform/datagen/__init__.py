"""Seeded sample data for the landing zone: card holders, merchants, daily transactions, delayed labels."""

from mlplatform.datagen.bad_files import BAD_FILE_KINDS, write_bad_file
from mlplatform.datagen.generator import DriftConfig, GenerationSummary, GeneratorConfig, generate

__all__ = [
    "BAD_FILE_KINDS",
    "DriftConfig",
    "GenerationSummary",
    "GeneratorConfig",
    "generate",
    "write_bad_file",
]
