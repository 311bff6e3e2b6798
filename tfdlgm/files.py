"""File helpers shared by checkpoints (`training`) and presets (`zoo`)."""

import hashlib
import pathlib


def sha256(path: pathlib.Path) -> str:
    """The SHA-256 hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
